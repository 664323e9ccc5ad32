// Disappearing messages (issue 17, point 5): a message from a Signal or WhatsApp group whose timer is on disappears
// there, so its copy in Matrix must go too. When it is due is recorded with the message (expiring_messages); when
// that time comes the copy is redacted through the outbox, as a deletion, in order with whatever else the room is
// sent.
//
// Only the Matrix copy is the bridge's to remove. A copy the relay sent to the other group disappears by that group's
// own timer: Signal and WhatsApp clients stamp their sends with the group's timer (signal-cli and Baileys both do for
// the relay), and a group with none keeps its messages by its members' choice, which the timer mirrored between the
// groups (core/group-state.ts) is there to align.
import type { Logger } from 'pino'
import type { Db, Queryable } from '../db/types.ts'
import type { NetworkId } from './model.ts'
import { Outbox } from './outbox.ts'
import { chatOf, type PortalStore } from './portals.ts'

export interface ExpiryOptions {
  db: Db
  portals: PortalStore
  kick: (network: NetworkId, chatId: string) => void
  log: Logger
  now?: () => number
  /** The longest the loop sleeps before it looks again (a clock moved by a test, a row written by another process). */
  pollMs?: number
}

/** Messages handled per pass; the rest are the next pass's. */
const BATCH = 200

export class Expiry {
  private readonly opts: ExpiryOptions
  private readonly now: () => number
  private timer: NodeJS.Timeout | undefined
  /** When the loop looks next (by this.now), while it sleeps. */
  private nextAt: number | undefined
  private running: Promise<void> | undefined
  /** Woken while a pass ran: another follows it. */
  private again = false
  private stopped = true

  constructor(opts: ExpiryOptions) {
    this.opts = opts
    this.now = opts.now ?? Date.now
  }

  /** Records when a message's Matrix copy must go, inside the caller's transaction; call wake() after it commits. */
  static async schedule(tx: Queryable, items: Array<{ messageId: number; dueAt: number }>): Promise<void> {
    if (items.length === 0) return
    await tx.query(
      `INSERT INTO expiring_messages (message_id, due_at) SELECT * FROM unnest($1::bigint[], $2::timestamptz[])
       ON CONFLICT (message_id) DO NOTHING`,
      [items.map(i => i.messageId), items.map(i => new Date(i.dueAt).toISOString())])
  }

  start(): void {
    this.stopped = false
    this.wake()
  }

  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    await this.running
  }

  /** Looks now, or (given when a new row is due) only if the loop would look later than that: a busy group with a timer
   * records a disappearing message with every message, and each need not cost a pass. */
  wake(dueAt?: number): void {
    if (this.stopped) return
    if (this.running) {
      this.again = true
      return
    }
    if (dueAt !== undefined && this.nextAt !== undefined && this.nextAt <= dueAt) return
    clearTimeout(this.timer)
    this.nextAt = undefined
    this.running = this.pass()
      .catch(err => {
        this.opts.log.warn({ err: (err as Error).message }, 'Could not remove disappearing messages from Matrix; trying again shortly')
        return undefined
      })
      .then(next => {
        this.running = undefined
        if (this.stopped) return
        if (this.again) {
          this.again = false
          this.wake()
          return
        }
        const poll = this.opts.pollMs ?? 60_000
        const wait = next === undefined ? poll : Math.max(0, Math.min(next - this.now(), poll))
        this.nextAt = this.now() + wait
        this.timer = setTimeout(() => this.wake(), wait)
      })
  }

  /** Queues the redaction of every copy now due; returns when the next one is due (undefined: none waits). */
  private async pass(): Promise<number | undefined> {
    const { db, portals, kick } = this.opts
    const now = new Date(this.now()).toISOString()
    for (;;) {
      const kicks: Array<[NetworkId, string]> = []
      const n = await db.transaction(async tx => {
        const { rows } = await tx.query<{ id: number; portal_id: number; sender_network: NetworkId; sender_id: string; sender_name: string; deleted: boolean }>(
          `DELETE FROM expiring_messages e USING messages m
           WHERE e.message_id = m.id AND e.message_id IN (SELECT message_id FROM expiring_messages WHERE due_at <= $1 ORDER BY due_at LIMIT ${BATCH})
           RETURNING m.id, m.portal_id, m.sender_network, m.sender_id, m.sender_name, m.deleted`, [now])
        const live = rows.filter(r => !r.deleted)
        const deliveries = live.flatMap(r => {
          const portal = portals.get(r.portal_id)
          const roomId = portal && chatOf(portal, 'matrix')
          if (!roomId) return []
          kicks.push(['matrix', roomId])
          return [{ portalId: r.portal_id, messageId: r.id, network: 'matrix' as const, chatId: roomId, op: 'delete' as const,
            payload: { sender: { network: r.sender_network, id: r.sender_id, displayName: r.sender_name } } }]
        })
        if (live.length > 0) await tx.query('UPDATE messages SET deleted = true WHERE id = ANY($1::bigint[])', [live.map(r => r.id)])
        await Outbox.enqueue(tx, deliveries)
        return rows.length
      })
      for (const [network, chatId] of kicks) kick(network, chatId)
      if (n > 0) this.opts.log.info({ messages: n }, 'Disappearing messages are due: their Matrix copies are being redacted')
      if (n < BATCH) break
    }
    const { rows } = await db.query<{ due: Date | null }>('SELECT min(due_at) AS due FROM expiring_messages')
    return rows[0]?.due ? new Date(rows[0].due).getTime() : undefined
  }
}
