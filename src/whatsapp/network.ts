// The WhatsApp side of the bridge: one Session per relay login, deliveries through Sender, login, logout
// and group management.
import { Counter, Gauge, type Registry } from 'prom-client'
import { DeliveryError, UserError } from '../core/errors.ts'
import type { ChatField, ChatValue, CopyRef, Delivery, GroupMember, SendResult } from '../core/model.ts'
import { whatsappChatValue } from './group-state.ts'
import type { ConnectionState, GroupInfo, Login, LoginRequest, LoginUi, NetworkContext, RemoteNetwork } from '../core/network.ts'
import { linkWhatsApp } from './login.ts'
import { membersOf } from './membership.ts'
import { MessageStore } from './messages.ts'
import { People } from './people.ts'
import { DAY, HOUR, PhoneWatch } from './phone.ts'
import { Sender, type Connected } from './send.ts'
import { RELINK, Session } from './session.ts'
import { baileysDownloader, baileysSocketFactory, GroupCache, TtlCache, type MediaDownloader, type WaPort, type WaSocketFactory } from './socket.ts'

export interface WhatsAppNetworkOptions {
  socketFactory?: WaSocketFactory
  download?: MediaDownloader
  /** Jitter between two sends to one group, in ms (default [800, 2500]; [0, 0] in tests). */
  paceMs?: [number, number]
  reconnect?: { initialMs: number; maxMs: number }
  /** Baileys' keepalive interval (its default, 30 s, when not given); a socket held back for the backlog is read a
   * little every half of it. */
  keepAliveMs?: number
  now?: () => number
  /** How long a login waits for the phone (default 3 minutes). */
  loginTimeoutMs?: number
  /** How often the phone-activity check runs (default hourly; 0 disables the timer). */
  phoneCheckMs?: number
  /** How long the bridge's own sent messages are kept for retries and edits: the message map's retention
   * (default 90 days). */
  sentRetentionMs?: number
}

const STATES: ConnectionState[] = ['connecting', 'connected', 'disconnected', 'logged_out']

function metric<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make()
}

export class WhatsAppNetwork implements RemoteNetwork {
  readonly network = 'whatsapp' as const
  readonly #opts: Required<Omit<WhatsAppNetworkOptions, 'now' | 'keepAliveMs'>> & { now: () => number; keepAliveMs?: number }
  readonly #sessions = new Map<string, Session>()
  /** Groups whose picture the relay is changing: WhatsApp re-encodes a picture, so its echo cannot be told by its bytes. */
  readonly #ownPictures = new Set<string>()
  readonly #retryCache = new TtlCache(60 * 60_000)
  readonly #groups = new GroupCache()
  #ctx: NetworkContext | undefined
  #people!: People
  #store!: MessageStore
  #phone!: PhoneWatch
  #sender!: Sender
  #timer: NodeJS.Timeout | undefined
  #stateGauge: Gauge | undefined
  #sends: Counter | undefined

  constructor(opts: WhatsAppNetworkOptions = {}) {
    this.#opts = {
      socketFactory: opts.socketFactory ?? baileysSocketFactory,
      download: opts.download ?? baileysDownloader,
      paceMs: opts.paceMs ?? [800, 2500],
      reconnect: opts.reconnect ?? { initialMs: 2000, maxMs: 5 * 60_000 },
      ...(opts.keepAliveMs ? { keepAliveMs: opts.keepAliveMs } : {}),
      now: opts.now ?? Date.now,
      loginTimeoutMs: opts.loginTimeoutMs ?? 3 * 60_000,
      phoneCheckMs: opts.phoneCheckMs ?? HOUR,
      sentRetentionMs: opts.sentRetentionMs ?? 90 * DAY,
    }
  }

  get #c(): NetworkContext {
    if (!this.#ctx) throw new Error('WhatsAppNetwork used before start().')
    return this.#ctx
  }

  async start(ctx: NetworkContext): Promise<void> {
    this.#ctx = ctx
    const now = this.#opts.now
    this.#people = new People(ctx.db, now)
    this.#store = new MessageStore(ctx.db, { findCopy: (chat, id) => ctx.findCopy('whatsapp', chat, id) }, now)
    this.#phone = new PhoneWatch(ctx.db, now, (id, text) => ctx.notify(id, text))
    this.#stateGauge = metric(ctx.metrics, 'relay_whatsapp_connection_state', () => new Gauge({ name: 'relay_whatsapp_connection_state', help: 'WhatsApp logins by connection state (1 = in that state).', labelNames: ['login', 'state'], registers: [ctx.metrics] }))
    this.#sends = metric(ctx.metrics, 'relay_whatsapp_sends_total', () => new Counter({ name: 'relay_whatsapp_sends_total', help: 'Deliveries sent to WhatsApp, by kind and result.', labelNames: ['kind', 'result'], registers: [ctx.metrics] }))
    this.#sender = new Sender({
      connection: id => this.#connection(id),
      groups: this.#groups,
      people: this.#people,
      store: this.#store,
      media: ctx.media,
      log: ctx.log,
      now,
      paceMs: this.#opts.paceMs,
      ownPictures: this.#ownPictures,
      onSent: (ok, kind) => this.#sends?.inc({ kind, result: ok ? 'ok' : 'error' }),
    })
    for (const login of await ctx.logins.list('whatsapp')) if (login.state !== 'logged_out') await this.#open(login)
    if (this.#opts.phoneCheckMs > 0) {
      // Hourly by default: the phone check, and inbound content past its use (start-up alone would let it grow
      // without bound on a bridge that runs for months).
      this.#timer = setInterval(() => {
        void this.checkPhones().catch(() => {})
        void this.prune().catch(() => {})
      }, this.#opts.phoneCheckMs)
      this.#timer.unref()
    }
    void this.prune().catch(() => {})
  }

  /** What arrived is kept for quoting for a week (in its copy, or from before that in wa_messages); what the bridge
   * sent, as long as the message map keeps the message (its copy goes with it; wa_messages rows after as long). */
  prune(): Promise<void> {
    const ctx = this.#c
    return this.#store.prune(7 * DAY, this.#opts.sentRetentionMs, before => ctx.forgetKeptContent('whatsapp', { originSentBefore: before }))
  }

  /** A send's copy is committed: the store stops holding it in memory. */
  recorded(deliveryId: string): void {
    this.#store?.recorded(deliveryId)
  }

  /** Sends held in memory until their copies are recorded (for tests). */
  get heldSends(): number {
    return this.#store?.held ?? 0
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer)
    await Promise.all([...this.#sessions.values()].map(s => s.stop()))
    this.#sessions.clear()
  }

  state(loginId: string): ConnectionState {
    return this.#sessions.get(loginId)?.state ?? 'disconnected'
  }

  send(delivery: Delivery): Promise<SendResult> {
    return this.#sender.send(delivery)
  }

  chatValue(field: ChatField, value: ChatValue): ChatValue {
    return whatsappChatValue(field, value)
  }

  async login(request: LoginRequest, ui: LoginUi): Promise<Login> {
    const login = await linkWhatsApp(
      { ctx: this.#c, factory: this.#opts.socketFactory, people: this.#people, retryCache: this.#retryCache, timeoutMs: this.#opts.loginTimeoutMs },
      request,
      ui,
    )
    await this.#phone.seen(login.id, true) // linking needs the phone: it is online now
    await this.#sessions.get(login.id)?.stop()
    this.#sessions.delete(login.id)
    await this.#open(login)
    await ui.say(`WhatsApp is linked as ${login.displayName}.`)
    return login
  }

  async logout(login: Login): Promise<void> {
    const s = this.#sessions.get(login.id)
    if (s) await s.logout()
    else await this.#c.reportState(login.id, 'logged_out', `The account was logged out. ${RELINK}`)
    this.#sessions.delete(login.id)
    // For good: its keys, the messages it kept for quoting and retries, its phone's sightings, and its number.
    for (const table of ['wa_auth', 'wa_messages', 'wa_phone']) await this.#c.db.query(`DELETE FROM ${table} WHERE login_id = $1`, [login.id])
    await this.#c.forgetKeptContent('whatsapp', { login: login.id })
    await this.#people.forgetAccount(login.personId)
  }

  // A person's typing and receipts go only over a connected socket: held or retried, they would be stale.
  async typingAs(login: Login, chatId: string, typing: boolean): Promise<void> {
    await this.#connectedSocket(login.id)?.sendPresenceUpdate(typing ? 'composing' : 'paused', chatId)
  }

  async readAs(login: Login, chatId: string, copy: CopyRef): Promise<void> {
    const sock = this.#connectedSocket(login.id)
    // The receipt goes to the author's device: without knowing them there is no one to tell.
    const author = sock && await this.#people.byId(copy.authorId)
    if (author) await sock.readMessages([{ remoteJid: chatId, id: copy.remoteId, fromMe: false, participant: author.jid }])
  }

  #connectedSocket(loginId: string): WaPort | undefined {
    const s = this.#sessions.get(loginId)
    return s?.sock && s.state === 'connected' ? s.sock : undefined
  }

  async listGroups(login: Login): Promise<GroupInfo[]> {
    const sock = this.#live(login.id).sock
    const all = await sock.groupFetchAllParticipating()
    return Object.values(all).map(g => {
      this.#groups.set(g)
      return { id: g.id, name: g.subject, memberCount: g.size ?? g.participants.length, disappearingSeconds: g.ephemeralDuration ?? 0 }
    })
  }

  async joinGroup(login: Login, idOrLink: string): Promise<GroupInfo> {
    const sock = this.#live(login.id).sock
    const link = /^(?:https?:\/\/)?chat\.whatsapp\.com\/(?:invite\/)?([A-Za-z0-9]+)/.exec(idOrLink.trim())
    let jid = idOrLink.trim()
    if (link) {
      jid = (await sock.groupAcceptInvite(link[1]!).catch(() => undefined)) ?? ''
      if (!jid) throw new UserError('That WhatsApp invite link is not valid (or was reset). Ask a group admin for a fresh link.')
    } else if (!/^\d+(-\d+)?@g\.us$/.test(jid)) {
      throw new UserError('Give a WhatsApp group id (see `!relay groups whatsapp`) or an invite link like https://chat.whatsapp.com/…')
    }
    const all = await sock.groupFetchAllParticipating()
    const g = all[jid]
    if (!g) throw new UserError('The relay account is not in that WhatsApp group. Add it to the group, or give an invite link.')
    this.#groups.set(g)
    return { id: g.id, name: g.subject, topic: g.desc ?? '', memberCount: g.participants.length, disappearingSeconds: g.ephemeralDuration ?? 0 }
  }

  async createGroup(login: Login, name: string): Promise<GroupInfo> {
    const sock = this.#live(login.id).sock
    const subject = [...name.trim()].slice(0, 100).join('') || 'Relay'
    const g = await sock.groupCreate(subject, [])
    this.#groups.set(g)
    const code = await sock.groupInviteCode(g.id)
    return { id: g.id, name: g.subject, memberCount: g.participants.length, ...(code ? { inviteLink: `https://chat.whatsapp.com/${code}` } : {}) }
  }

  async roster(login: Login, groupId: string): Promise<{ members: GroupMember[] }> {
    const sock = this.#live(login.id).sock
    return { members: await membersOf(await this.#groups.load(sock, groupId), this.#people, sock.user, { sock, media: this.#c.media }) }
  }

  /** Runs the phone check (probe at 10 days, warning at 12) for every open login (the hourly timer calls this;
   * tests too). */
  async checkPhones(): Promise<void> {
    for (const s of this.#sessions.values()) if (s.state !== 'logged_out') await this.#phone.check(s.login.id, () => s.probePhone())
  }

  /** When the relay phone was last seen (ms), for status displays. */
  phoneLastSeen(loginId: string): Promise<number | undefined> {
    return this.#phone.lastSeen(loginId)
  }

  /** How a login's socket is read: its messages that wait for the ones before them to be recorded, and the holds
   * of its reading for them. */
  reading(loginId: string): Session['reading'] | undefined {
    return this.#sessions.get(loginId)?.reading
  }

  lastActivity(loginId: string): Promise<number | undefined> {
    return this.phoneLastSeen(loginId)
  }

  async #open(login: Login): Promise<void> {
    const s = new Session(login, {
      ctx: this.#c,
      factory: this.#opts.socketFactory,
      download: this.#opts.download,
      people: this.#people,
      store: this.#store,
      groups: this.#groups,
      phone: this.#phone,
      retryCache: this.#retryCache,
      reconnect: this.#opts.reconnect,
      ...(this.#opts.keepAliveMs ? { keepAliveMs: this.#opts.keepAliveMs } : {}),
      openLogins: () => this.#sessions.size,
      ownPictures: this.#ownPictures,
      onState: (id, state) => {
        for (const st of STATES) this.#stateGauge?.set({ login: id, state: st }, st === state ? 1 : 0)
      },
    })
    this.#sessions.set(login.id, s)
    await s.open()
  }

  #live(loginId: string): Connected {
    const s = this.#sessions.get(loginId)
    if (!s?.sock || s.state !== 'connected') throw new UserError(`That WhatsApp login is not connected right now. Check \`!relay logins\`; ${RELINK.charAt(0).toLowerCase()}${RELINK.slice(1)}`)
    return { sock: s.sock, loginId, personId: s.login.personId }
  }

  #connection(loginId: string | undefined): Connected {
    const s = loginId ? this.#sessions.get(loginId) : undefined
    if (s?.sock && s.state === 'connected') return { sock: s.sock, loginId: s.login.id, personId: s.login.personId }
    if (s && !s.stopped)
      return this.#throw(new DeliveryError('transient', 'The WhatsApp relay account is reconnecting; the message will be sent shortly.', { retryAfterMs: 5000 }))
    return this.#throw(new DeliveryError('hold', 'The WhatsApp relay account is not linked right now; the message is kept and will be sent once it is linked again.'))
  }

  #throw(err: DeliveryError): never {
    throw err
  }
}
