// One open WhatsApp account (a login): its socket, reconnects per disconnect reason (reference §3/§12),
// and the event wiring that feeds the core, the people table, the group cache and the phone watch.
import type { Boom } from '@hapi/boom'
import { DisconnectReason, extractMessageContent, jidDecode, jidNormalizedUser, proto, type BaileysEventMap, type WAMessage } from '@whiskeysockets/baileys'
import type { GroupMember, InboundEvent } from '../core/model.ts'
import type { ConnectionState, Login, NetworkContext } from '../core/network.ts'
import { loadAuth, lockLogin, type LoginLock, type StoredAuth } from './auth.ts'
import { isViewOnce, needsDownload, toInbound, usableName } from './convert.ts'
import { currentPicture } from './group-state.ts'
import { isSelf, memberOf } from './membership.ts'
import { keptExtra, type MessageStore } from './messages.ts'
import { neutralLabel, type People } from './people.ts'
import type { PhoneWatch } from './phone.ts'
import { MAX_BACKLOG, ReadGate } from './reading.ts'
import { CLIENT_OUTDATED, KEEPALIVE_MS, OUTDATED_SENTENCE, ignoreJid, statusOf, transportOf, type GroupCache, type MediaDownloader, type TtlCache, type WaPort, type WaSocketFactory, type WaSocketOptions } from './socket.ts'

export interface SessionDeps {
  ctx: NetworkContext
  factory: WaSocketFactory
  download: MediaDownloader
  people: People
  store: MessageStore
  groups: GroupCache
  phone: PhoneWatch
  retryCache: TtlCache
  reconnect: { initialMs: number; maxMs: number }
  /** Baileys' keepalive interval (its default when not given). */
  keepAliveMs?: number
  /** How many WhatsApp logins are open: with more than one, one may hear in a group what another sent there. */
  openLogins(): number
  /** Groups whose picture the relay is changing (send.ts): their next picture notification is its echo. */
  ownPictures: Set<string>
  onState(loginId: string, state: ConnectionState): void
}

export const RELINK = 'Type `!relay login whatsapp` in a direct chat with the bridge bot to link it again.'


export class Session {
  readonly login: Login
  state: ConnectionState = 'connecting'
  sock: WaPort | undefined
  /** Set once the session will not reconnect by itself (stopped, logged out, replaced, refused). */
  stopped = false
  readonly #d: SessionDeps
  #auth: StoredAuth | undefined
  #lock: LoginLock | undefined
  #attempts = 0
  #timer: NodeJS.Timeout | undefined
  #chain: Promise<unknown> = Promise.resolve()
  /** Messages queued on #chain and not yet started: an upsert arriving meanwhile, with nothing else in between,
   * joins them (so that what arrives while a run is recorded is recorded together next). */
  #nextMessages: WAMessage[] | undefined
  readonly #gate: ReadGate
  /** The socket once Baileys has logged it in: only its reading is held back (a handshake read a frame per breath
   * would not finish in time). Set as the event comes, not in turn on #chain, which may be busy recording. */
  #loggedIn: WaPort | undefined
  /** Typing and receipts, in order among themselves, apart from messages: neither waits for the other. */
  #ephemeralChain: Promise<unknown> = Promise.resolve()
  /** Groups whose chat states (typing) this socket asked for, and when. */
  #subscribed = new Map<string, number>()
  #loggingOut = false

  constructor(login: Login, deps: SessionDeps) {
    this.login = login
    this.#d = deps
    // Half of Baileys' keepalive: a held socket is read often enough that Baileys never takes it for dead.
    this.#gate = new ReadGate(() => (this.sock && this.sock === this.#loggedIn ? transportOf(this.sock) : undefined), (deps.keepAliveMs ?? KEEPALIVE_MS) / 2)
  }

  /** How the socket is read: messages handed over that wait to be recorded, and the holds for them. */
  get reading(): Pick<ReadGate, 'backlog' | 'holding' | 'pauses' | 'breaths'> {
    const g = this.#gate
    return { backlog: g.backlog, holding: g.holding, pauses: g.pauses, breaths: g.breaths }
  }

  get #log() {
    return this.#d.ctx.log.child({ login: this.login.id })
  }

  async open(): Promise<void> {
    const lock = await lockLogin(this.#d.ctx.db, this.login.id)
    if (!lock) {
      this.stopped = true
      await this.#setState('disconnected', 'Another relay-bridge process has this WhatsApp account open; run only one bridge per account.')
      return
    }
    this.#hold(lock)
    this.#auth = await loadAuth(this.#d.ctx.db, this.login.id, this.#log)
    this.#connect()
  }

  #hold(lock: LoginLock): void {
    this.#lock = lock
    void lock.lost
      .then(err => this.#relock(lock, err))
      .catch((err: unknown) => this.#log.error({ err: (err as Error).message }, 'Could not report the lost WhatsApp login lock'))
  }

  /** The lock went with its database connection (a server restart, a network cut, an ended backend), so another
   * process could now open this account too and the two would knock each other off WhatsApp. Take it again, as
   * long as the database takes a while to come back; if someone else has it by then, this session gives way. */
  async #relock(lost: LoginLock, err: Error): Promise<void> {
    if (this.stopped || this.#lock !== lost) return // released on purpose
    this.#lock = undefined
    this.#log.warn({ err: err.message }, 'Lost the database lock on this WhatsApp login with its connection; taking it again')
    let delay = 200
    for (;;) {
      if (this.stopped) return
      let again: LoginLock | undefined
      try {
        again = await lockLogin(this.#d.ctx.db, this.login.id)
      } catch (e) {
        this.#log.warn({ err: (e as Error).message, retryInMs: delay }, 'Could not take the WhatsApp login lock again yet; retrying')
        await new Promise(resolve => setTimeout(resolve, delay))
        delay = Math.min(delay * 2, 10_000)
        continue
      }
      if (again && this.stopped) return again.release()
      if (again) {
        this.#hold(again)
        this.#log.info('Took the database lock on this WhatsApp login again')
        return
      }
      break
    }
    const text = 'Another relay-bridge process took this WhatsApp account while this one had lost its database connection, so this one stopped using it. Run only one bridge per account; restart this one once the other is stopped.'
    this.#log.error(text)
    this.stopped = true
    clearTimeout(this.#timer)
    await this.sock?.end(undefined).catch(() => {})
    await this.#setState('disconnected', text)
    await this.#d.ctx.notify(this.login.id, text)
  }

  #connect(): void {
    const auth = this.#auth!
    const ownUsers = () => [this.login.address, String(auth.state.creds.me?.id ?? ''), String(auth.state.creds.me?.lid ?? '')].map(j => j.split(/[:@]/, 1)[0]!)
    const opts: WaSocketOptions = {
      logger: this.#d.ctx.log,
      shouldIgnoreJid: ignoreJid(ownUsers),
      getMessage: async key => (key.id ? this.#d.store.sentContent(this.login.id, key.remoteJid ?? undefined, key.id) : undefined),
      cachedGroupMetadata: async jid => this.#d.groups.get(jid),
      msgRetryCounterCache: this.#d.retryCache,
      ...(this.#d.keepAliveMs ? { keepAliveIntervalMs: this.#d.keepAliveMs } : {}),
    }
    const sock = this.#d.factory(auth.state, opts)
    this.sock = sock
    this.#subscribed = new Map()
    sock.ev.on('connection.update', u => {
      if (u.connection === 'open') this.#loggedIn = sock
      void this.#serial(() => this.#onConnection(sock, u))
    })
    sock.ev.on('creds.update', () => void this.#serial(() => auth.saveCreds()))
    sock.ev.on('messages.upsert', ({ messages }) => this.#upsert(messages))
    // Every frame read ends a breath of a held socket (reading.ts).
    sock.ws.on('message', () => this.#gate.read())
    sock.ev.on('groups.update', updates => void this.#serial(() => this.#persistently(() => this.#onGroupsUpdate(updates))))
    // A personal account's other groups and contacts are none of the bridge's business: only bridged groups are
    // looked at, and nothing is learnt of anyone outside them.
    const mine = (chat: string | null | undefined): boolean => this.login.kind !== 'personal' || (!!chat && this.#d.ctx.isBridgedChat('whatsapp', chat))
    sock.ev.on('groups.upsert', metas => void this.#serial(async () => {
      for (const m of metas) {
        if (!mine(m.id)) continue
        this.#d.groups.set(m)
        await this.#learnParticipants(m.participants)
      }
    }))
    sock.ev.on('group-participants.update', u => void this.#serial(async () => {
      this.#d.groups.forget(u.id)
      if (!mine(u.id)) return
      await this.#persistently(() => this.#learnParticipants(u.participants))
      await this.#ownMembership(u)
      if (this.#d.ctx.isBridgedChat('whatsapp', u.id)) await this.#persistently(() => this.#onParticipants(u))
      if (u.action === 'promote' && u.participants.some(p => isSelf(p, this.sock?.user)) && this.#d.ctx.isBridgedChat('whatsapp', u.id)) {
        this.#d.ctx.permissionsChanged('whatsapp', u.id)
      }
    }))
    sock.ev.on('contacts.update', updates => void this.#serial(() => this.#persistently(() => this.#onPictures(updates))))
    sock.ev.on('lid-mapping.update', ({ lid, pn }) => void this.#serial(async () => { if (this.login.kind !== 'personal') await this.#d.people.link(lid, pn) }))
    sock.ev.on('message-receipt.update', receipts => {
      if (receipts.some(r => this.#isPhone(r.key.participant))) void this.#serial(() => this.#d.phone.seen(this.login.id))
      void this.#ephemeral(() => this.#onReceipts(receipts))
    })
    sock.ev.on('presence.update', update => void this.#ephemeral(() => this.#onPresence(update)))
  }

  #ephemeral(work: () => Promise<void>): Promise<unknown> {
    this.#ephemeralChain = this.#ephemeralChain.then(work).catch((err: unknown) => this.#log.debug({ err: (err as Error).message }, 'A WhatsApp typing notice or receipt was not passed on'))
    return this.#ephemeralChain
  }

  /** Group chat states reach a linked device that subscribed to the group's presence (how long a subscription
   * lasts is not documented: it is renewed hourly, on the group's next message). Only while typing is wanted. */
  #subscribe(chat: string): void {
    const sock = this.sock
    const at = this.#subscribed.get(chat)
    if (!sock || !this.#d.ctx.wantsEphemeral.typing || (at !== undefined && Date.now() - at < 3_600_000)) return
    this.#subscribed.set(chat, Date.now())
    sock.presenceSubscribe(chat).catch(() => this.#subscribed.delete(chat))
  }

  /** presence.update: rc14 reports `composing`, `recording`, and a pause as `available`. */
  async #onPresence({ id, presences }: BaileysEventMap['presence.update']): Promise<void> {
    const { ctx } = this.#d
    if (!ctx.wantsEphemeral.typing || !ctx.isBridgedChat('whatsapp', id)) return
    for (const [jid, presence] of Object.entries(presences)) {
      const sender = await this.#someoneElse(jid)
      if (!sender) continue
      const typing = presence.lastKnownPresence === 'composing' || presence.lastKnownPresence === 'recording'
      ctx.ephemeral({ kind: 'typing', network: 'whatsapp', chatId: id, sender, typing, loginId: this.login.id })
    }
  }

  /** message-receipt.update: in groups, one entry per message and member; `readTimestamp` for read and played. */
  async #onReceipts(receipts: BaileysEventMap['message-receipt.update']): Promise<void> {
    const { ctx } = this.#d
    if (!ctx.wantsEphemeral.receipts) return
    const byReader = new Map<string, { chat: string; reader: string; ids: string[] }>()
    for (const { key, receipt } of receipts) {
      const chat = key.remoteJid
      const reader = receipt.userJid
      if (!chat || !reader || !key.id || !receipt.readTimestamp || !ctx.isBridgedChat('whatsapp', chat)) continue
      const k = `${chat}\u0000${reader}`
      const entry = byReader.get(k) ?? { chat, reader, ids: [] }
      entry.ids.push(key.id)
      byReader.set(k, entry)
    }
    for (const { chat, reader, ids } of byReader.values()) {
      const sender = await this.#someoneElse(reader)
      if (sender) ctx.ephemeral({ kind: 'read', network: 'whatsapp', chatId: chat, sender, targets: ids, loginId: this.login.id })
    }
  }

  /** A group member other than the relay account (any of its devices), known from their earlier messages. */
  async #someoneElse(jid: string): Promise<{ network: 'whatsapp'; id: string; displayName: string } | undefined> {
    const user = jidDecode(jid)?.user
    const own = [this.login.address, this.#auth?.state.creds.me?.id ?? '', this.#auth?.state.creds.me?.lid ?? ''].map(j => j.split(/[:@]/, 1)[0])
    if (!user || own.includes(user)) return undefined
    const person = await this.#d.people.known(jid)
    return person ? { network: 'whatsapp', id: person.id, displayName: person.name ?? neutralLabel(person.id) } : undefined
  }

  /** Events are handled one at a time, in order: an edit never overtakes the message it edits. */
  #serial(work: () => Promise<unknown>, messages = false): Promise<unknown> {
    // Messages after this work go after it.
    if (!messages) this.#nextMessages = undefined
    this.#chain = this.#chain.then(work).catch((err: unknown) => this.#log.error({ err: (err as Error).message }, 'WhatsApp event handling failed'))
    return this.#chain
  }

  async #onConnection(sock: WaPort, u: BaileysEventMap['connection.update']): Promise<void> {
    if (sock !== this.sock) return
    if (u.qr) {
      // A socket asking for a QR has no valid creds: only a new link helps.
      this.stopped = true
      await sock.end(undefined)
      return this.#loggedOut('WhatsApp asked the bridge to be linked again.')
    }
    if (u.connection === 'open') {
      this.#attempts = 0
      await this.#setState('connected')
      await this.#d.phone.check(this.login.id, () => this.probePhone())
      return
    }
    if (u.connection !== 'close' || this.stopped) return
    const err = u.lastDisconnect?.error
    const code = statusOf(err)
    const type = (err as Boom | undefined)?.data?.attrs?.type as string | undefined
    this.#log.info({ code, type }, 'WhatsApp connection closed')
    if (code === DisconnectReason.restartRequired) return this.#connect()
    if (code === DisconnectReason.loggedOut) {
      this.stopped = true
      if (this.#loggingOut) return
      return this.#loggedOut(
        'WhatsApp logged the relay account out of the bridge: the device was unlinked from the phone, usually because the relay phone was offline for about 14 days.',
      )
    }
    if (code === DisconnectReason.connectionReplaced) {
      this.stopped = true
      const text = 'Another client connected to WhatsApp with the same relay account, so the bridge stopped using it. Make sure only one relay-bridge process runs for this account, then restart the bridge.'
      await this.#setState('disconnected', text)
      await this.#d.ctx.notify(this.login.id, text)
      return
    }
    if (code === DisconnectReason.forbidden || code === DisconnectReason.multideviceMismatch || code === 402 || code === 406 || code === CLIENT_OUTDATED) {
      this.stopped = true
      const text = code === CLIENT_OUTDATED
        ? OUTDATED_SENTENCE
        : `WhatsApp refused the relay account (code ${code}); it may be restricted or banned. Check the relay phone, then ${RELINK.charAt(0).toLowerCase()}${RELINK.slice(1)}`
      // The session will not come back by itself: the log says what to do in the same words as the notice.
      this.#log.error({ code, login: this.login.id }, text)
      await this.#setState('disconnected', text)
      await this.#d.ctx.notify(this.login.id, text)
      return
    }
    // 428, 408, 500, 503 and anything unknown: back off and try again.
    const { initialMs, maxMs } = this.#d.reconnect
    const delay = Math.min(maxMs, initialMs * 2 ** this.#attempts++) * (code === DisconnectReason.unavailableService ? 2 : 1)
    await this.#setState('connecting', 'Reconnecting to WhatsApp.')
    this.#timer = setTimeout(() => {
      if (!this.stopped) this.#connect()
    }, Math.min(delay, maxMs))
  }

  async #loggedOut(reason: string): Promise<void> {
    await this.#auth?.wipe()
    await this.#lock?.release()
    this.#lock = undefined
    const text = `${reason} Relaying to WhatsApp is paused and messages are kept until it is back. ${RELINK}`
    await this.#setState('logged_out', text)
    await this.#d.ctx.notify(this.login.id, text)
  }

  async #setState(state: ConnectionState, message?: string): Promise<void> {
    this.state = state
    this.#d.onState(this.login.id, state)
    await this.#d.ctx.reportState(this.login.id, state, message)
  }

  #isPhone(jid: string | null | undefined): boolean {
    if (!jid) return false
    const d = jidDecode(jid)
    const own = [this.login.address, this.#auth?.state.creds.me?.lid ?? ''].map(j => j.split(/[:@]/, 1)[0])
    return !!d && own.includes(d.user) && !d.device
  }

  #upsert(messages: WAMessage[]): void {
    if (messages.length === 0) return
    this.#gate.add(messages.length)
    if (this.#nextMessages) {
      this.#nextMessages.push(...messages)
      return
    }
    const batch = [...messages]
    this.#nextMessages = batch
    void this.#serial(async () => {
      if (this.#nextMessages === batch) this.#nextMessages = undefined
      await this.#onMessages(batch)
    }, true)
  }

  /**
   * Records messages in arrival order. A run of messages that need nothing fetched from WhatsApp (no media to
   * download, no group state to change: most traffic) goes to the core together, in one transaction; anything else
   * goes on its own, between runs. Each keeps its own side effects (the phone's sighting, the presence
   * subscription), taken before it is recorded, as when each went alone; what is kept for quoting goes in the
   * statement that records it (InboundMessage.extra).
   */
  async #onMessages(batch: WAMessage[]): Promise<void> {
    let taken = 0
    try {
      let run: Array<InboundEvent | undefined> = []
      const flush = async () => {
        await this.#recordRun(run)
        taken += run.length
        run = []
      }
      for (const msg of batch) {
        if (selfContained(msg)) {
          run.push(await this.#persistently(() => this.#prepare(msg)))
          // Baileys flushes an offline backlog as one upsert of any size: a run is recorded in pieces, each one
          // statement the event loop gets through quickly.
          if (run.length >= MAX_BACKLOG) await flush()
          continue
        }
        await flush()
        await this.#persistently(async () => {
          const event = await this.#prepare(msg)
          if (event) await this.#d.ctx.receive(event)
        })
        this.#gate.done(1)
        taken++
      }
      await flush()
    } finally {
      // What was not recorded never will be (the session stopped): it waits no more.
      this.#gate.done(batch.length - taken)
    }
  }

  /** Records a run together; should the core refuse the run, each goes on its own. */
  async #recordRun(run: Array<InboundEvent | undefined>): Promise<void> {
    if (run.length === 0) return
    const { ctx } = this.#d
    const events = run.filter(e => e !== undefined)
    let together = false
    if (events.length > 1 && ctx.receiveMany) {
      try {
        await ctx.receiveMany(events)
        together = true
      } catch (err) {
        this.#log.debug({ err: (err as Error).message, events: events.length }, 'WhatsApp messages could not be recorded together; one by one')
      }
    }
    if (!together) for (const e of events) await this.#persistently(() => ctx.receive(e))
    this.#gate.done(run.length)
  }

  /** What one message asks the core to record (undefined: nothing), after its own side effects. */
  async #prepare(msg: WAMessage): Promise<InboundEvent | undefined> {
    const { ctx, store } = this.#d
    const id = msg.key.id
    const chat = msg.key.remoteJid
    // A personal account's chats outside the portals are never read, downloaded or kept.
    if (this.login.kind === 'personal' && !(chat && ctx.isBridgedChat('whatsapp', chat))) return undefined
    // What another of the bridge's logins sent into a group this one is in too is an echo as well.
    if (!msg.key.fromMe && id && (store.holds(id) || (this.#d.openLogins() > 1 && await store.isBridgeSend(chat ?? undefined, id)))) return undefined
    if (msg.key.fromMe && id) {
      // The echo of our own send (racing it, or after it) yields nothing: leave before any other work.
      if (await store.isOwnSend(this.login.id, chat ?? undefined, id)) return undefined
      if (this.#isPhone(msg.key.participant ?? msg.participant ?? msg.key.remoteJid)) await this.#d.phone.seen(this.login.id)
    }
    // Kept for quoting and replying later: messages, not the reactions and edits/revokes about them.
    const content = msg.message ? extractMessageContent(msg.message) : undefined
    // A view-once message is not kept (its media keys would let the bridge fetch what was meant to be seen once).
    const keep = !!content && !content.reactionMessage && !content.protocolMessage && !!id && !!chat && !msg.key.fromMe && !isViewOnce(msg.message!) && ctx.isBridgedChat('whatsapp', chat)
    if (keep) this.#subscribe(chat!)
    const displayName = this.login.displayName || (await this.#d.people.byId(this.login.personId))?.name || 'WhatsApp relay'
    const event = await toInbound(msg, {
      loginId: this.login.id,
      self: { personId: this.login.personId, displayName },
      people: this.#d.people,
      media: ctx.media,
      log: this.#log,
      download: m => this.#d.download(m, this.sock!),
      isOwnSend: i => store.isOwnSend(this.login.id, chat ?? undefined, i),
      groupTimer: jid => this.#d.groups.get(jid)?.ephemeralDuration ?? undefined,
    })
    // The cached metadata's timer is stale now.
    if (event?.kind === 'chat_update') this.#d.groups.forget(event.chat.id)
    // Recorded with the copy it arrives as, in the core's own statement.
    if (keep && event?.kind === 'message') event.extra = keptExtra(this.login.id, msg.key, msg.message!)
    return event
  }

  /** Baileys has acknowledged the message to WhatsApp already: never drop it. Handling (every step of it
   * touches the database, which may be away for a while) is retried until it succeeds or the session stops;
   * it is idempotent, as the core dedupes on the message id. */
  async #persistently<T>(work: () => Promise<T>): Promise<T> {
    let delay = 200
    for (;;) {
      try {
        return await work()
      } catch (err) {
        if (this.stopped) throw err
        this.#log.warn({ err: (err as Error).message, retryInMs: delay }, 'Could not record a WhatsApp event; retrying')
        await new Promise(resolve => setTimeout(resolve, delay))
        delay = Math.min(delay * 2, 10_000)
      }
    }
  }

  async #onGroupsUpdate(updates: BaileysEventMap['groups.update']): Promise<void> {
    for (const u of updates) {
      if (!u.id) continue
      this.#d.groups.forget(u.id)
      // Who may edit the group info changed: changes that waited for that go again.
      if (u.restrict != null && this.#d.ctx.isBridgedChat('whatsapp', u.id)) this.#d.ctx.permissionsChanged('whatsapp', u.id)
      if (u.subject == null && u.desc == null) continue
      const author = u.author ? await this.#d.people.resolve(u.author, u.authorPn) : undefined
      const sender = author
        ? { network: 'whatsapp' as const, id: author.id, displayName: author.name ?? 'WhatsApp' }
        : { network: 'whatsapp' as const, id: this.login.personId, displayName: this.login.displayName }
      const at = Number(u.subjectTime ?? 0) * 1000 || Date.now()
      await this.#d.ctx.receive({
        kind: 'chat_update', chat: { network: 'whatsapp', id: u.id }, sender, remoteId: `${u.id}/subject/${at}`, timestamp: at, loginId: this.login.id,
        ...(u.subject != null ? { name: u.subject } : {}), ...(u.desc != null ? { topic: u.desc } : {}),
      })
    }
  }

  /** A group's picture changed (rc14 says so as contacts.update with `imgUrl` 'changed' or 'removed', and no author). */
  async #onPictures(updates: BaileysEventMap['contacts.update']): Promise<void> {
    const { ctx, ownPictures } = this.#d
    for (const u of updates) {
      const chat = u.id
      if (!chat?.endsWith('@g.us') || (u.imgUrl !== 'changed' && u.imgUrl !== 'removed') || !ctx.isBridgedChat('whatsapp', chat) || !this.sock) continue
      if (ownPictures.delete(chat)) continue // the echo of the relay's own change
      const avatar = u.imgUrl === 'removed' ? null : await currentPicture(this.sock, chat, ctx.media)
      const at = Date.now()
      await ctx.receive({
        kind: 'chat_update', chat: { network: 'whatsapp', id: chat }, remoteId: `${chat}/picture/${at}`, timestamp: at, loginId: this.login.id,
        sender: { network: 'whatsapp', id: this.login.personId, displayName: this.login.displayName }, avatar,
      })
    }
  }

  /**
   * The relay account itself removed from (or added back to) a bridged group: the room hears it at once. Messages
   * sent meanwhile are not held: each fails with a sentence in the room (WhatsApp refuses the send as forbidden),
   * since only a group admin can undo the removal and nobody can tell whether or when one will.
   */
  async #ownMembership(u: BaileysEventMap['group-participants.update']): Promise<void> {
    if ((u.action !== 'remove' && u.action !== 'add') || !this.#d.ctx.isBridgedChat('whatsapp', u.id)) return
    if (!u.participants.some(p => isSelf(p, this.sock?.user))) return
    this.#log.info({ group: u.id, action: u.action }, 'The relay account\'s membership of a bridged WhatsApp group changed')
    await this.#d.ctx.notifyChat('whatsapp', u.id, u.action === 'remove'
      ? 'The WhatsApp relay account was removed from the WhatsApp group, so messages from this room do not reach WhatsApp until a group admin adds it back; each one that fails is reported here.'
      : 'The WhatsApp relay account is back in the WhatsApp group; messages from this room reach WhatsApp again.')
  }

  /** Who came, went, or was made or unmade admin: the core keeps the room's ghosts in step. The author is who did it
   * (someone who went by their own hand left; anyone else was removed by the author). */
  async #onParticipants(u: BaileysEventMap['group-participants.update']): Promise<void> {
    const { people, ctx } = this.#d
    const changed: GroupMember[] = []
    // Someone new comes with their picture.
    const pictures = u.action === 'add' && this.sock ? { sock: this.sock, media: ctx.media } : undefined
    for (const p of u.participants) {
      const m = await memberOf(p, people, this.sock?.user, pictures)
      if (m) changed.push(m)
    }
    if (changed.length === 0) return
    const change = u.action === 'add' ? { joined: changed }
      : u.action === 'promote' ? { joined: changed.map(m => ({ ...m, admin: true })) }
      : u.action === 'demote' ? { joined: changed.map(m => ({ ...m, admin: false })) }
      : u.action === 'remove' ? { left: changed.map(m => (m.named === false ? { ...m.person, displayName: '' } : m.person)) }
      : undefined
    if (!change) return
    const author = u.author ? await people.resolve(u.author, u.authorPn) : undefined
    const sender = author
      ? { network: 'whatsapp' as const, id: author.id, displayName: usableName(author.name) ?? neutralLabel(author.id) }
      : { network: 'whatsapp' as const, id: this.login.personId, displayName: this.login.displayName }
    const at = Date.now()
    await ctx.receive({
      kind: 'members', chat: { network: 'whatsapp', id: u.id }, sender, remoteId: `${u.id}/participants/${u.action}/${at}`, timestamp: at,
      loginId: this.login.id, ...change,
    })
  }

  async #learnParticipants(participants: Array<{ id: string; lid?: string | undefined; phoneNumber?: string | undefined }>): Promise<void> {
    for (const p of participants) {
      const lid = p.lid ?? (p.id.endsWith('@lid') ? p.id : undefined)
      const pn = p.phoneNumber ?? (p.id.endsWith('@s.whatsapp.net') ? p.id : undefined)
      if (lid && pn) await this.#d.people.link(lid, pn)
    }
  }

  /**
   * mautrix-whatsapp's "hacky phone ping" (pkg/connector/phoneping.go): a peer APP_STATE_SYNC_KEY_REQUEST to the
   * account's own phone, naming the last app-state key it shared. A phone that is online answers with its keys,
   * which arrive as its own traffic and count as a sighting. Not yet verified against a live phone.
   */
  async probePhone(): Promise<boolean> {
    const sock = this.sock
    const me = this.#auth?.state.creds.me?.id
    if (!sock || this.state !== 'connected' || !me) return false
    const keyId = this.#auth?.state.creds.myAppStateKeyId
    try {
      await sock.relayMessage(
        jidNormalizedUser(me),
        {
          protocolMessage: {
            type: proto.Message.ProtocolMessage.Type.APP_STATE_SYNC_KEY_REQUEST,
            appStateSyncKeyRequest: { keyIds: keyId ? [{ keyId: Buffer.from(keyId, 'base64') }] : [] },
          },
        },
        // As whatsmeow frames a peer key request, and as rc14's own peer-data requests are framed.
        { additionalAttributes: { category: 'peer', push_priority: 'high' }, additionalNodes: [{ tag: 'meta', attrs: { appdata: 'default' } }] },
      )
      this.#log.info('Probed the WhatsApp relay phone, silent for 10 days, with an app-state key request')
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'Could not probe the WhatsApp relay phone; trying again in a day')
    }
    return true
  }

  async logout(): Promise<void> {
    this.#loggingOut = true
    this.stopped = true
    clearTimeout(this.#timer)
    this.#gate.stop()
    await this.sock?.logout().catch(() => {})
    // What the session still had queued (a sighting of the phone, keys, a message being recorded with its content)
    // is finished now, before the login's rows are deleted (WhatsAppNetwork.logout), so that none is written after.
    await this.#chain
    await this.#ephemeralChain
    await this.#loggedOut('The relay account was logged out of WhatsApp by a command.')
  }

  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.#timer)
    this.#gate.stop()
    await this.sock?.end(undefined).catch(() => {})
    await this.#chain
    await this.#ephemeralChain
    await this.#lock?.release()
    this.#lock = undefined
  }
}

/** A message the core can record as it is converted: nothing to download from WhatsApp first, and no group state
 * (the disappearing-message timer) changed by it. */
function selfContained(msg: WAMessage): boolean {
  if (needsDownload(msg)) return false
  const c = msg.message ? extractMessageContent(msg.message) : undefined
  return c?.protocolMessage?.type !== proto.Message.ProtocolMessage.Type.EPHEMERAL_SETTING
}
