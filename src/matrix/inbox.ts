// Durable record of what the homeserver pushed: events land here before the 200 goes out.
import type { Db } from '../db/types.ts'

export interface MatrixEvent {
  event_id: string
  room_id: string
  type: string
  sender: string
  origin_server_ts?: number
  state_key?: string
  content: Record<string, unknown>
  redacts?: string
  unsigned?: Record<string, unknown>
}

const INSERT_CHUNK = 1000

/** JSON that PostgreSQL's jsonb accepts: it refuses \u0000 and lone surrogates, which JSON (and so a
 * homeserver) allows in strings. Both become U+FFFD; escapes are matched left to right, so an escaped
 * backslash before "u0000" is never mistaken for one. */
export function jsonbText(value: unknown): string {
  return JSON.stringify(value).replace(/\\(?:u0000|ud[89a-f][0-9a-f]{2}|u[0-9a-f]{4}|[^u])/g, esc =>
    esc === '\\u0000' || /^\\ud[89a-f]/.test(esc) ? '\\ufffd' : esc)
}

export interface InboxRow {
  id: number
  event: MatrixEvent
  attempts: number
}

export class Inbox {
  private readonly db: Db
  constructor(db: Db) {
    this.db = db
  }

  /** Whether the txn was handled recently (only a fast path: the event ids are the durable key). */
  async seenTransaction(txnId: string): Promise<boolean> {
    const { rowCount } = await this.db.query('SELECT 1 FROM appservice_txns WHERE txn_id = $1', [txnId])
    return rowCount > 0
  }

  /** Stores every event of a transaction and the txn id, atomically. Redelivered events are no-ops. */
  async storeTransaction(txnId: string, events: MatrixEvent[]): Promise<number> {
    return this.db.transaction(async tx => {
      let stored = 0
      // In chunks: one statement takes at most 65535 parameters (Synapse sends 100 events; junk may send more).
      for (let from = 0; from < events.length; from += INSERT_CHUNK) {
        const params: unknown[] = []
        const values = events.slice(from, from + INSERT_CHUNK).map((e, i) => {
          params.push(e.event_id, e.room_id ?? null, e.type, jsonbText(e))
          return `($${i * 4 + 1}, $${i * 4 + 2}, $${i * 4 + 3}, $${i * 4 + 4}::jsonb)`
        })
        const res = await tx.query(
          `INSERT INTO inbox (event_id, room_id, type, event) VALUES ${values.join(', ')} ON CONFLICT (event_id) DO NOTHING`,
          params,
        )
        stored += res.rowCount
      }
      await tx.query('INSERT INTO appservice_txns (txn_id) VALUES ($1) ON CONFLICT (txn_id) DO NOTHING', [txnId])
      return stored
    })
  }

  async pending(limit: number): Promise<InboxRow[]> {
    const { rows } = await this.db.query<InboxRow>(
      'SELECT id, event, attempts FROM inbox WHERE processed_at IS NULL ORDER BY id LIMIT $1',
      [limit],
    )
    return rows
  }

  async pendingCount(): Promise<number> {
    const { rows } = await this.db.query<{ n: number }>('SELECT count(*)::int AS n FROM inbox WHERE processed_at IS NULL')
    return rows[0]?.n ?? 0
  }

  async recordFailure(id: number, error: string): Promise<void> {
    await this.db.query('UPDATE inbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1', [id, error])
  }

  /** Old txn ids go: Synapse on SQLite reuses them after a restart. Processed events go after a day. */
  async prune(): Promise<void> {
    await this.db.query(`DELETE FROM appservice_txns WHERE received_at < now() - interval '1 hour'`)
    await this.db.query(`DELETE FROM inbox WHERE processed_at < now() - interval '1 day'`)
  }
}
