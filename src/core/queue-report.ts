// What the delivery queue holds, read for people (the console, the provisioning API): how deep each portal's
// queues are, which deliveries are held or failed and why, and when each portal last carried a message.
import type { Queryable } from '../db/types.ts'
import type { NetworkId } from './model.ts'

export type OpenState = 'pending' | 'sending' | 'held' | 'failed'

export interface QueueCount {
  portalId: number
  network: NetworkId
  state: OpenState
  n: number
  /** When the oldest of them was queued (ms). */
  since: number
}

export interface Problem {
  id: number
  portalId: number
  network: NetworkId
  state: 'held' | 'failed'
  op: string
  attempts: number
  reason: string | null
  createdAt: number
}

const ms = (t: Date | string | number): number => new Date(t).getTime()

/** Open deliveries per portal, network and state (failed ones stay until pruned after a week). */
export async function queueCounts(db: Queryable): Promise<QueueCount[]> {
  const { rows } = await db.query<{ portal_id: string | number; network: NetworkId; state: OpenState; n: number; since: Date }>(
    `SELECT portal_id, network, state, count(*)::int AS n, min(created_at) AS since FROM outbox
     WHERE state IN ('pending', 'sending', 'held', 'failed') GROUP BY portal_id, network, state`,
  )
  return rows.map(r => ({ portalId: Number(r.portal_id), network: r.network, state: r.state, n: r.n, since: ms(r.since) }))
}

/** The newest held and failed deliveries of each portal, at most `perPortal` of each, with the reason recorded. */
export async function problems(db: Queryable, perPortal = 20): Promise<Problem[]> {
  const { rows } = await db.query<{ id: string | number; portal_id: string | number; network: NetworkId; state: 'held' | 'failed'; op: string; attempts: number; last_error: string | null; created_at: Date }>(
    `SELECT id, portal_id, network, state, op, attempts, last_error, created_at FROM (
       SELECT *, row_number() OVER (PARTITION BY portal_id ORDER BY id DESC) AS nth FROM outbox WHERE state IN ('held', 'failed')
     ) newest WHERE nth <= $1 ORDER BY id`,
    [perPortal],
  )
  return rows.map(r => ({
    id: Number(r.id), portalId: Number(r.portal_id), network: r.network, state: r.state, op: r.op, attempts: r.attempts,
    reason: r.last_error, createdAt: ms(r.created_at),
  }))
}

/** When each portal's newest message was recorded (ms), by portal id. */
export async function lastMessageTimes(db: Queryable): Promise<Map<number, number>> {
  const { rows } = await db.query<{ id: string | number; at: Date | null }>(
    `SELECT p.id, (SELECT m.created_at FROM messages m WHERE m.portal_id = p.id ORDER BY m.id DESC LIMIT 1) AS at FROM portals p`,
  )
  return new Map(rows.filter(r => r.at !== null).map(r => [Number(r.id), ms(r.at!)]))
}
