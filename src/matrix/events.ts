// Works through the inbox: each stored Matrix event becomes a command, a relayed event, or bookkeeping.
// Rooms are worked on in parallel, each room's events strictly in order.
import type { Logger } from 'pino'
import { Coalescer } from '../db/coalesce.ts'
import type { Db } from '../db/types.ts'
import type { Commands } from '../core/commands/index.ts'
import { ruleOf } from '../core/commands/context.ts'
import type { MediaStore } from '../core/media.ts'
import type { InboundEvent, Person } from '../core/model.ts'
import type { PortalStore } from '../core/portals.ts'
import type { Router } from '../core/router.ts'
import type { HomeserverApi } from './client.ts'
import { isTransientMatrixError } from './client-errors.ts'
import { fromMatrix, Unsupported } from './convert.ts'
import { isPuppetEcho } from './double-puppet.ts'
import { AttachmentError } from './attachments.ts'
import type { Decryption } from './decryption.ts'
import type { EncryptedRooms } from './encrypted-rooms.ts'
import { parseGhost, type Ghosts } from './ghosts.ts'
import { Inbox, type InboxRow, type MatrixEvent } from './inbox.ts'
import type { BotRooms } from './rooms.ts'
import type { RoomUpgrades } from './upgrade.ts'
import { chatUpdateOf } from './room-state.ts'

export interface MatrixEventsOptions {
  db: Db
  inbox: Inbox
  api: HomeserverApi
  router: Router
  commands: Commands
  rooms: BotRooms
  upgrades: RoomUpgrades
  ghosts: Ghosts
  portals: PortalStore
  media: MediaStore
  domain: string
  botMxid: string
  permissions: Record<string, 'relay' | 'user' | 'admin'>
  /** The mark of what the bridge posted as people (double puppeting), when it does. */
  puppetSource?: string
  /** The room's power levels changed: group changes waiting for the bot's power are tried again. */
  onPowerChanged?: (roomId: string) => Promise<void>
  log: Logger
  batchSize?: number
  /** Attempts before an event that keeps failing is given up on (and reported). */
  maxAttempts?: number
  retryDelayMs?: number
  /** Unprocessed events above which the answer to the next transaction waits (default 1,000). */
  backlogLimit?: number
  /** The longest an answer waits for the backlog, below the homeserver's own timeout (default 20 s). */
  backlogWaitMs?: number
  /** With encryption allowed: opens m.room.encrypted events, and learns which rooms are encrypted. */
  encryption?: { decryption: Decryption; rooms: EncryptedRooms }
}

export class MatrixEvents {
  private readonly opts: MatrixEventsOptions
  private readonly names = new Map<string, string | null>()
  private readonly warnedEncrypted = new Set<string>()
  private running: Promise<void> | undefined
  private again = false
  private stopped = false
  private retryTimer: NodeJS.Timeout | undefined
  /** Events stored and not yet worked through, as far as this process has seen (a floor after a restart). */
  private backlog = 0
  private readonly waiting = new Set<() => void>()
  /** Transactions being recorded before their answer (recordDirect): the drain lets them finish first, so that what
   * arrived first is recorded first. */
  private readonly direct = new Set<Promise<void>>()

  constructor(opts: MatrixEventsOptions) {
    this.opts = opts
  }

  /**
   * `count` new events were stored: work through them. Resolves once the backlog is under the limit, or
   * after backlogWaitMs. A homeserver sends the next transaction only when this one is answered, so while
   * the bridge is behind, events wait in the homeserver (which batches them) instead of piling up here, and
   * the bridge spends its time relaying rather than taking in more than it can relay.
   */
  async stored(count: number): Promise<void> {
    this.backlog += count
    this.kick()
    if (this.backlog < (this.opts.backlogLimit ?? 1000) || this.stopped) return
    await new Promise<void>(resolve => {
      const done = (): void => {
        clearTimeout(timer)
        this.waiting.delete(done)
        resolve()
      }
      const timer = setTimeout(done, this.opts.backlogWaitMs ?? 20_000)
      this.waiting.add(done)
    })
  }

  private worked(count: number): void {
    this.backlog = Math.max(0, this.backlog - count)
    if (this.backlog < (this.opts.backlogLimit ?? 1000) || this.stopped) for (const done of [...this.waiting]) done()
  }

  /**
   * A transaction's events recorded before the homeserver is answered, instead of stored in the inbox for the
   * drain to record: one round trip and one commit less per message, which at low rates every message pays. Taken
   * only when nothing is pending (an event stored earlier must be handled first, for its room's order) and only for
   * plain text messages in portals, whose handling is a lookup and a translation: nothing here downloads, waits on a
   * send, or has any effect besides the record. False when not taken; the caller then stores the events as before,
   * and the drain handles them (and accounts for a failure here). A retry of the transaction records nothing twice:
   * the record skips a message it already holds (the redelivery check).
   */
  async recordDirect(events: MatrixEvent[]): Promise<boolean> {
    const decryption = this.opts.encryption?.decryption
    // A few at a time (one commit's wait lets the next message in at 100/s): many transactions at once (a
    // homeserver that sends them in parallel) are stored and recorded in the drain's batches, paced by its backpressure.
    if (this.direct.size >= DIRECT_MAX || this.stopped || this.running || !this.opts.inbox.idle() || decryption?.pending) return false
    if (events.length === 0 || !events.every(e => this.plainInPortal(e))) return false
    const routed: InboundEvent[] = []
    const step: Step = { route: async e => void routed.push(e), flush: () => Promise.reject(NOT_DIRECT) }
    const recording = (async () => {
      for (const ev of events) await this.handle(ev, step)
      if (routed.length > 0) await this.opts.router.receiveMany(routed)
    })()
    this.direct.add(recording)
    try {
      await recording
      return true
    } catch (err) {
      if (err !== NOT_DIRECT) this.opts.log.debug({ err: (err as Error).message }, 'Could not record a transaction at once; it goes through the inbox')
      return false
    } finally {
      this.direct.delete(recording)
    }
  }

  /** A text message that is neither a reply nor an edit, in a portal: what recordDirect takes (a command among them
   * still sends it back, by asking for a flush). */
  private plainInPortal(ev: MatrixEvent): boolean {
    const c = ev.content
    return ev.type === 'm.room.message' && ev.state_key === undefined && typeof c.body === 'string' &&
      (c.msgtype === 'm.text' || c.msgtype === 'm.notice' || c.msgtype === 'm.emote') && c['m.relates_to'] === undefined &&
      this.opts.portals.byRoom(ev.room_id) !== undefined
  }

  /** New events were stored: work through the inbox. */
  kick(): void {
    if (this.stopped) return
    if (this.running) {
      this.again = true
      return
    }
    this.running = this.drain()
      .catch(err => {
        this.opts.log.error({ err: (err as Error).message }, 'Could not work through the inbox; retrying shortly')
        this.retryLater()
      })
      .finally(() => {
        this.running = undefined
        if (this.again) {
          this.again = false
          this.kick()
        }
      })
  }

  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.retryTimer)
    this.worked(0)
    await this.running
  }

  private retryLater(): void {
    clearTimeout(this.retryTimer)
    this.retryTimer = setTimeout(() => this.kick(), this.opts.retryDelayMs ?? 2000)
  }

  private async drain(): Promise<void> {
    try {
      await this.drainOnce()
    } catch (err) {
      this.opts.inbox.unknown()
      throw err
    }
  }

  private async drainOnce(): Promise<void> {
    const { inbox, db } = this.opts
    const limit = this.opts.batchSize ?? 200
    if (this.direct.size > 0) await Promise.allSettled(this.direct)
    for (;;) {
      // The rows this process stored, when they are known to be all that is pending; else the table's.
      const handed = inbox.takeFresh(limit)
      const mark = handed ? undefined : inbox.quiet()
      const rows = handed ?? await inbox.pending(limit)
      // Read after the rows: a transaction's keys are stored before its events, so every key these rows need
      // is handed to the device before they are handled.
      await this.cryptoCatchUp()
      if (this.stopped) return
      if (rows.length === 0) {
        if (!handed) inbox.settled(mark)
        return
      }
      const byRoom = new Map<string, InboxRow[]>()
      for (const r of rows) {
        const list = byRoom.get(r.event.room_id) ?? []
        list.push(r)
        byRoom.set(r.event.room_id, list)
      }
      const done: number[] = []
      let recorded = 0
      let failed = false
      await Promise.all([...byRoom.values()].map(async list => {
        // Consecutive relayable events of a room are recorded in one transaction (one commit for the lot);
        // anything with another effect (a command, a membership) first lets the batch before it go.
        const batch: Array<{ row: InboxRow; event: InboundEvent }> = []
        const flush = async (): Promise<boolean> => {
          const items = batch.splice(0)
          if (items.length === 0) return true
          try {
            // Marked handled in the transaction that records them: one commit for both.
            await this.opts.router.receiveMany(items.map(i => i.event), { ids: items.map(i => i.row.id), statement: Inbox.markProcessedStatement })
            recorded += items.length
            return true
          } catch {
            // One by one, so that each event gets its own failure accounting.
            for (const item of items) {
              if (await this.processRow(item.row, { route: e => this.opts.router.receive(e).then(() => {}), flush: async () => {} })) done.push(item.row.id)
              else return false
            }
            return true
          }
        }
        for (const row of list) {
          let batched = false
          const ok = await this.processRow(row, {
            route: async event => {
              batch.push({ row, event })
              batched = true
            },
            flush: async () => {
              if (!(await flush())) throw new Error('an earlier event of this room could not be recorded yet')
            },
          })
          if (!ok) {
            failed = true
            return // later events of this room wait, to keep its order
          }
          if (!batched) done.push(row.id)
        }
        if (!(await flush())) failed = true
      }))
      await Inbox.markProcessed(db, done)
      this.worked(done.length + recorded)
      if (failed) {
        inbox.unknown()
        this.retryLater()
        return
      }
      // A short read is all there was: events stored since kicked, and a kick during a drain drains again.
      if (!handed && rows.length < limit) {
        inbox.settled(mark)
        return
      }
    }
  }

  /** Keys and counts to the device; then events that were waiting for a key that came, or whose wait ended. */
  private async cryptoCatchUp(): Promise<void> {
    const decryption = this.opts.encryption?.decryption
    if (!decryption) return
    await decryption.catchUp()
    if (decryption.pending) {
      // Handled as if it had just arrived, after the room's events already relayed (it is late, not lost).
      await decryption.retry(ev => this.handle(ev, { route: e => this.opts.router.receive(e).then(() => {}), flush: async () => {} }))
    }
  }

  /** true when the row is finished with (handled, or given up on). */
  private async processRow(row: InboxRow, step: Step): Promise<boolean> {
    try {
      await this.handle(row.event, step)
      return true
    } catch (err) {
      const attempts = row.attempts + 1
      const message = (err as Error).message
      await this.opts.inbox.recordFailure(row.id, message)
      // A file that fails its hash stays broken however often it is fetched.
      const giveUp = attempts >= (this.opts.maxAttempts ?? 10) || err instanceof AttachmentError || !isTransientMatrixError(err) && !isDbError(err)
      this.opts.log.warn({ eventId: row.event.event_id, attempts, err: message, giveUp }, 'Could not handle a Matrix event')
      if (giveUp && this.opts.portals.byRoom(row.event.room_id)) {
        await this.opts.rooms.notice(row.event.room_id, `⚠️ A message could not be relayed: ${message}`).catch(() => {})
      }
      return giveUp
    }
  }

  private async displayName(roomId: string, mxid: string): Promise<string> {
    const key = `${roomId}\u0000${mxid}`
    let name = this.names.get(key)
    if (name === undefined) {
      const row = await this.memberNames.add({ roomId, mxid })
      name = row?.displayname ?? null
      if (!row) {
        const state = await this.opts.api.getState(roomId, 'm.room.member', mxid, this.opts.botMxid).catch(() => undefined)
        name = typeof state?.displayname === 'string' ? state.displayname : null
      }
      this.names.set(key, name)
    }
    return name || mxid.slice(1, mxid.indexOf(':'))
  }

  /** Senders' names as the bridge last saw them; the first message of many rooms at once asks in one statement. */
  private readonly memberNames = new Coalescer<{ roomId: string; mxid: string }, { displayname: string | null } | undefined>(async asked => {
    const { rows } = await this.opts.db.query<{ room_id: string; mxid: string; displayname: string | null }>(
      `SELECT m.room_id, m.mxid, m.displayname FROM unnest($1::text[], $2::text[]) AS q(room_id, mxid)
       JOIN room_members m ON m.room_id = q.room_id AND m.mxid = q.mxid`,
      [asked.map(a => a.roomId), asked.map(a => a.mxid)],
    )
    const found = new Map(rows.map(r => [`${r.room_id}\u0000${r.mxid}`, r]))
    return asked.map(a => found.get(`${a.roomId}\u0000${a.mxid}`))
  })

  private async member(ev: MatrixEvent): Promise<void> {
    const { db, botMxid, api, rooms, log } = this.opts
    const target = ev.state_key!
    const membership = String(ev.content.membership ?? '')
    const displayname = typeof ev.content.displayname === 'string' ? ev.content.displayname : null
    const ghost = parseGhost(target, this.opts.domain)
    this.opts.encryption?.rooms.membershipChanged(ev.room_id)
    // Names are only ever looked up for people (the bot's and ghosts' own events are never relayed).
    if (target !== botMxid && !ghost) {
      await db.query(
        `INSERT INTO room_members (room_id, mxid, displayname, membership) VALUES ($1, $2, $3, $4)
         ON CONFLICT (room_id, mxid) DO UPDATE SET displayname = EXCLUDED.displayname, membership = EXCLUDED.membership`,
        [ev.room_id, target, displayname, membership])
      this.names.set(`${ev.room_id}\u0000${target}`, displayname)
      await this.personCameOrWent(ev, target, membership, displayname)
    }
    if (target === botMxid && membership === 'invite') {
      const { level, rule } = ruleOf(ev.sender, this.opts.permissions)
      if (level === 'user' || level === 'admin') {
        await api.join(botMxid, ev.room_id)
        if (ev.content.is_direct === true) await rooms.rememberDirect(ev.sender, ev.room_id)
        log.info({ room: ev.room_id }, 'Joined a room on invitation')
        await this.opts.upgrades.joined(ev.room_id)
      } else {
        // Said in the log too: the operator is often the one declined, by a permission they did not mean.
        log.warn({ room: ev.room_id, sender: ev.sender, rule: rule ?? null, granted: level },
          `Declined the invitation of ${ev.sender}: ${rule === undefined ? 'no entry of bridge.permissions matches them' : `the bridge.permissions entry "${rule}" gives them "${level}"`}, ` +
            `and joining a room needs "user" or "admin". To let them in, add "${ev.sender}": user (or their server) to bridge.permissions.`)
        await api.leave(botMxid, ev.room_id, 'You are not allowed to use this bridge.').catch(() => {})
      }
    }
    if (ghost && (membership === 'leave' || membership === 'ban')) await this.opts.ghosts.forgetMembership(target, ev.room_id)
  }

  /**
   * A person (never the bot, never a ghost) joined the portal's room or left it: the core may tell the groups. What
   * the membership was before is the event's own `prev_content` (a display name change is a join after a join).
   */
  private async personCameOrWent(ev: MatrixEvent, target: string, membership: string, displayname: string | null): Promise<void> {
    if (!this.opts.portals.byRoom(ev.room_id) || isPuppetEcho(ev, this.opts.puppetSource)) return
    const prev = ev.unsigned?.['prev_content'] as { membership?: unknown; displayname?: unknown } | undefined
    const came = membership === 'join' && prev?.membership !== 'join'
    const went = (membership === 'leave' || membership === 'ban') && prev?.membership === 'join'
    if (!came && !went) return
    // A leave carries no name: the one they had in the room is in what it replaced.
    const named = displayname || (typeof prev?.displayname === 'string' ? prev.displayname : '')
    const person: Person = { network: 'matrix', id: target, displayName: named || await this.displayName(ev.room_id, target) }
    const sender: Person = { network: 'matrix', id: ev.sender, displayName: ev.sender === target ? person.displayName : await this.displayName(ev.room_id, ev.sender) }
    await this.opts.router.receive({
      kind: 'members', chat: { network: 'matrix', id: ev.room_id }, sender, remoteId: ev.event_id, timestamp: ev.origin_server_ts ?? Date.now(),
      ...(came ? { joined: [{ person, admin: false }] } : { left: [person], ...(membership === 'ban' ? { banned: [target] } : {}) }),
    })
  }

  private async handle(ev: MatrixEvent, step: Step): Promise<void> {
    const { botMxid, domain, portals, commands, rooms, media, api } = this.opts
    if (ev.type === 'm.room.member' && typeof ev.state_key === 'string') {
      await step.flush()
      return this.member(ev)
    }
    if (isEcho(ev, botMxid, domain, this.opts.puppetSource)) return
    const portal = portals.byRoom(ev.room_id)
    const encryption = this.opts.encryption
    if (ev.type === 'm.room.encryption' && typeof ev.state_key === 'string') {
      await step.flush()
      encryption?.rooms.encrypted(ev.room_id, ev.content)
      if (portal) {
        await portals.setEncrypted(portal, true)
        // With encryption allowed nothing changes for the people in the room: no notice.
        if (!encryption) await rooms.notice(ev.room_id, 'This room is now encrypted. Encryption is off in this bridge\'s configuration (encryption.allow), so messages here are no longer relayed. Ask its operator to turn it on, or use an unencrypted room for the bridge.')
      }
      return
    }
    if (ev.type === 'm.room.encrypted') {
      await step.flush()
      if (encryption) {
        const plain = await encryption.decryption.open(ev)
        // Handled exactly as if it had come in the clear: relayed, or run as a command.
        return plain ? this.handle(plain, step) : undefined
      }
      // Outside portals too: a command typed in an encrypted room or direct chat must not meet silence.
      if (!this.warnedEncrypted.has(ev.room_id)) {
        this.warnedEncrypted.add(ev.room_id)
        await rooms.notice(ev.room_id, portal
          ? 'I cannot read encrypted messages: encryption is off in this bridge\'s configuration (encryption.allow), so they are not relayed. Ask its operator to turn it on, or use an unencrypted room for the bridge.'
          : 'I cannot read encrypted messages: encryption is off in this bridge\'s configuration (encryption.allow), so I cannot see commands here. Talk to me in an unencrypted room.')
      }
      if (portal) await rooms.messageStatus(ev.room_id, ev.event_id, 'signal', 'FAIL_PERMANENT', { reason: 'com.beeper.undecryptable_event', message: 'The bridge cannot read encrypted messages: its encryption is off.' })
      return
    }
    if (ev.type === 'm.room.history_visibility' && ev.state_key === '') {
      encryption?.rooms.historyVisibility(ev.room_id, ev.content.history_visibility)
      return
    }
    if ((ev.type === 'm.room.name' || ev.type === 'm.room.topic' || ev.type === 'm.room.avatar') && typeof ev.state_key === 'string') {
      if (!portal) return
      const sender: Person = { network: 'matrix', id: ev.sender, displayName: await this.displayName(ev.room_id, ev.sender) }
      const update = await chatUpdateOf(ev, sender, { media, download: mxc => api.downloadMedia(mxc) })
      if (update) await step.route(update)
      return
    }
    if (ev.type === 'm.room.power_levels' && ev.state_key === '') {
      await step.flush()
      if (portal) await this.opts.onPowerChanged?.(ev.room_id)
      return
    }
    if (ev.type === 'm.room.tombstone' && ev.state_key === '') {
      await step.flush()
      const next = ev.content.replacement_room
      if (portal && typeof next === 'string' && next !== ev.room_id) await this.opts.upgrades.tombstone(portal, next)
      return
    }
    if (typeof ev.state_key === 'string') return
    if (ev.type === 'm.room.message' && (ev.content.msgtype === 'm.text' || ev.content.msgtype === undefined) && typeof ev.content.body === 'string') {
      const isDirect = !portal && (await rooms.isDirect(ev.room_id)) === ev.sender
      const args = commands.parse(ev.content.body, isDirect)
      if (args) {
        await step.flush()
        return commands.run({ roomId: ev.room_id, sender: ev.sender, isDirect, args })
      }
    }
    if (!portal) return
    const sender: Person = { network: 'matrix', id: ev.sender, displayName: await this.displayName(ev.room_id, ev.sender) }
    const event = await fromMatrix(ev, {
      sender, media,
      download: mxc => api.downloadMedia(mxc),
      isGhost: mxid => parseGhost(mxid, domain),
    })
    if (event instanceof Unsupported) {
      this.opts.log.debug({ eventId: ev.event_id, reason: event.reason }, 'Not relayed')
      return
    }
    await step.route(event)
  }
}

/** Transactions recordDirect records at once at most. */
const DIRECT_MAX = 4

/** recordDirect's answer to a flush: the event has other effects than a record, so the transaction goes through the inbox. */
const NOT_DIRECT = new Error('not for recordDirect')

/** How handle() hands on a relayable event, and lets earlier ones go before an event with other effects. */
interface Step {
  route: (event: InboundEvent) => Promise<void>
  flush: () => Promise<void>
}

/**
 * Whatever the bot and the ghosts sent comes back from the homeserver: it is never relayed again, and the
 * endpoint does not even store it. Memberships are kept (the bot's invitations, ghosts leaving rooms).
 */
export function isEcho(ev: Pick<MatrixEvent, 'type' | 'sender' | 'content'>, botMxid: string, domain: string, puppetSource?: string): boolean {
  return ev.type !== 'm.room.member' && (ev.sender === botMxid || parseGhost(ev.sender, domain) !== undefined || isPuppetEcho(ev, puppetSource))
}

function isDbError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code
  return typeof code === 'string' && (/^[0-9A-Z]{5}$/.test(code) || code.startsWith('ECONN'))
}
