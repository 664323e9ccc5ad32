// The reading side of end-to-bridge encryption: hands each stored transaction's keys and key counts to the
// bot's device in order, opens m.room.encrypted events, and keeps those whose key has not come yet. Such an
// event never holds its room back: it waits (encryption.key_wait_seconds) in `undecrypted_events`, is
// handled as soon as its key arrives, and past the wait is marked failed in the room and counted.
import type { Logger } from 'pino'
import type { Counter } from 'prom-client'
import type { Db } from '../db/types.ts'
import type { NetworkId } from '../core/model.ts'
import type { PortalStore } from '../core/portals.ts'
import type { GhostDevices } from './crypto/ghost-devices.ts'
import type { CryptoMachine } from './crypto/machine.ts'
import { countsOf, forDevice, nothingNew, withoutOwnUsers } from './crypto/transaction.ts'
import { jsonbText, type Inbox, type MatrixEvent } from './inbox.ts'
import type { BotRooms } from './rooms.ts'

/** What mautrix bridges say in the same case, so that people who know one know the other. */
export const NO_KEYS = "the bridge hasn't received the decryption keys"

export interface DecryptionOptions {
  db: Db
  inbox: Inbox
  crypto: Pick<CryptoMachine, 'userId' | 'deviceId' | 'receiveSyncChanges' | 'decrypt' | 'onRoomKeys'>
  /** The bridge's own users (the bot, the ghosts): changes to their devices are no concern of the bot's machine. */
  isOwnUser?: (mxid: string) => boolean
  /** The ghosts' own devices: each transaction's part for them, after the bot's. */
  ghosts?: Pick<GhostDevices, 'receive'>
  rooms: BotRooms
  portals: PortalStore
  waitMs: number
  /** relay_bridge_decryptions_total, by result. */
  counter: Counter<'result'>
  log: Logger
  /** Something is due: a wait ended or keys arrived. The caller runs retry() from its own queue. */
  onDue: () => void
}

type Handle = (event: MatrixEvent) => Promise<void>

export class Decryption {
  private readonly opts: DecryptionOptions
  private timer: NodeJS.Timeout | undefined
  /** Sessions whose keys arrived since the last retry(). */
  private arrived = new Set<string>()
  private due = true
  /** After a restart every waiting event is tried once: its key may have been handed over before the stop. */
  private first = true
  private stopped = false
  /** The bot's key counts the machine was last handed. */
  private lastCounts: string | undefined

  constructor(opts: DecryptionOptions) {
    this.opts = opts
    opts.crypto.onRoomKeys(keys => {
      for (const k of keys) this.arrived.add(`${k.roomId}\u0000${k.sessionId}`)
      if (keys.length > 0) opts.onDue()
    })
  }

  /** Whether retry() has work: keys arrived, or a wait ended. */
  get pending(): boolean {
    return this.due || this.arrived.size > 0
  }

  /** Hands every stored transaction's keys and counts to the device, oldest first. */
  async catchUp(): Promise<void> {
    const { inbox, crypto } = this.opts
    for (;;) {
      const rows = await inbox.pendingCrypto(100)
      for (const row of rows) {
        const all = forDevice(row.crypto, crypto.userId, crypto.deviceId)
        const mine = all && this.opts.isOwnUser ? withoutOwnUsers(all, crypto.userId, this.opts.isOwnUser) : all
        // Each notice the bot sends comes back with its key counts: no news (transaction.ts).
        if (mine && !nothingNew(mine, this.lastCounts)) {
          await crypto.receiveSyncChanges(mine)
          this.lastCounts = countsOf(mine)
        }
        // A ghost's device only sends; what it is sent can be missed (ghost-devices.ts), never the bot's part.
        await this.opts.ghosts?.receive(row.crypto).catch(err => this.opts.log.warn({ err: (err as Error).message }, 'A ghost\'s device could not take in a transaction\'s keys'))
        await inbox.cryptoHandled(row.id)
      }
      if (rows.length < 100) return
    }
  }

  /** The event decrypted, or undefined when it cannot be now (it waits, or was reported as unreadable). */
  async open(ev: MatrixEvent): Promise<MatrixEvent | undefined> {
    const result = await this.opts.crypto.decrypt(ev as unknown as Parameters<CryptoMachine['decrypt']>[0])
    if (result.kind === 'decrypted') {
      this.opts.counter.inc({ result: 'decrypted' })
      return plainEvent(ev, result.event)
    }
    if (result.kind === 'missing-key') {
      const { rowCount } = await this.opts.db.query(
        `INSERT INTO undecrypted_events (event_id, room_id, session_id, event, give_up_at)
         VALUES ($1, $2, $3, $4::jsonb, now() + $5 * interval '1 millisecond') ON CONFLICT (event_id) DO NOTHING`,
        [ev.event_id, ev.room_id, result.sessionId ?? null, jsonbText(ev), this.opts.waitMs])
      if (rowCount) this.opts.counter.inc({ result: 'waiting' })
      this.opts.log.info({ eventId: ev.event_id, room: ev.room_id }, 'An encrypted event came before its key; it waits for the key')
      await this.schedule()
      return undefined
    }
    this.opts.counter.inc({ result: 'failed' })
    this.opts.log.warn({ eventId: ev.event_id, room: ev.room_id, reason: result.message }, 'An encrypted event cannot be decrypted')
    await this.report(ev, `the bridge cannot decrypt it (${result.message})`)
    return undefined
  }

  /**
   * Waiting events whose key arrived are decrypted and handled, in the order they came; those whose wait is
   * over are marked failed. Runs from the caller's queue, so a late event is handled like any other.
   */
  async retry(handle: Handle): Promise<void> {
    const arrived = this.arrived
    const first = this.first
    this.arrived = new Set()
    this.due = false
    this.first = false
    const { rows } = await this.opts.db.query<{ event: MatrixEvent; session_id: string | null; over: boolean }>(
      `SELECT event, session_id, give_up_at <= now() AS over FROM undecrypted_events WHERE state = 'waiting' ORDER BY received_at, event_id`)
    for (const row of rows) {
      const ev = row.event
      const keyCame = first || row.session_id === null || arrived.has(`${ev.room_id}\u0000${row.session_id}`)
      if (!keyCame && !row.over) continue
      const result = await this.opts.crypto.decrypt(ev as unknown as Parameters<CryptoMachine['decrypt']>[0])
      if (result.kind === 'decrypted') {
        try {
          await handle(plainEvent(ev, result.event))
        } catch (err) {
          if (!row.over) continue // tried again when the next key comes, or at the end of the wait
          await this.fail(ev, `it could not be handled (${(err as Error).message})`)
          continue
        }
        await this.finish(ev.event_id, 'decrypted')
        this.opts.counter.inc({ result: 'decrypted_late' })
        continue
      }
      if (result.kind === 'missing-key' && !row.over) continue
      await this.fail(ev, result.kind === 'missing-key' ? NO_KEYS : `the bridge cannot decrypt it (${result.message})`)
    }
    await this.schedule()
  }

  stop(): void {
    this.stopped = true
    clearTimeout(this.timer)
  }

  private async fail(ev: MatrixEvent, why: string): Promise<void> {
    await this.finish(ev.event_id, 'failed')
    this.opts.counter.inc({ result: why === NO_KEYS ? 'failed_no_keys' : 'failed' })
    this.opts.log.warn({ eventId: ev.event_id, room: ev.room_id, why }, 'Gave up on an encrypted event')
    await this.report(ev, why)
  }

  private async finish(eventId: string, state: 'decrypted' | 'failed'): Promise<void> {
    await this.opts.db.query(`UPDATE undecrypted_events SET state = $2, done_at = now() WHERE event_id = $1`, [eventId, state])
  }

  /** Never silent: a notice in the room, and a failed message status per network the message was meant for. */
  private async report(ev: MatrixEvent, why: string): Promise<void> {
    const { rooms, portals } = this.opts
    const portal = portals.byRoom(ev.room_id)
    const networks: NetworkId[] = portal ? (['signal', 'whatsapp'] as const).filter(n => (n === 'signal' ? portal.signalGroup : portal.whatsappGroup)) : []
    const hint = why === NO_KEYS ? ' Your client may share keys only with verified devices; sending the message again may help.' : ''
    await rooms.notice(ev.room_id, portal
      ? `⚠️ A message from ${ev.sender} was not relayed: ${why}.${hint}`
      : `⚠️ I could not read a message from ${ev.sender}: ${why}.${hint}`).catch(err => this.opts.log.warn({ err: (err as Error).message }, 'Could not send a notice'))
    for (const network of networks) {
      await rooms.messageStatus(ev.room_id, ev.event_id, network, 'FAIL_RETRIABLE', { reason: 'com.beeper.undecryptable_event', message: `${why[0]!.toUpperCase()}${why.slice(1)}.` })
        .catch(err => this.opts.log.warn({ err: (err as Error).message }, 'Could not send a message status'))
    }
  }

  /** Wakes the caller when the earliest wait ends. */
  private async schedule(): Promise<void> {
    if (this.stopped) return
    const { rows } = await this.opts.db.query<{ ms: number | null }>(
      `SELECT (extract(epoch FROM min(give_up_at) - now()) * 1000)::float8 AS ms FROM undecrypted_events WHERE state = 'waiting'`)
    clearTimeout(this.timer)
    const ms = rows[0]?.ms
    if (ms === null || ms === undefined) return
    this.timer = setTimeout(() => {
      this.due = true
      this.opts.onDue()
    }, Math.max(0, Math.min(ms, 2_147_000_000)) + 5)
    this.timer.unref()
  }
}

/** The event as if it had been sent in the clear. The Rust crypto moves m.relates_to out of the encrypted
 * payload (a server must see relations), so it is put back from the outer content when missing. */
function plainEvent(ev: MatrixEvent, clear: { type: string; content: Record<string, unknown> }): MatrixEvent {
  const relates = ev.content['m.relates_to']
  const content = clear.content['m.relates_to'] === undefined && relates !== undefined ? { ...clear.content, 'm.relates_to': relates } : clear.content
  return { ...ev, type: clear.type, content }
}
