// Durable record of what the homeserver pushed: events land here before the 200 goes out.
import { Coalescer } from '../db/coalesce.ts'
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

  /**
   * Stores every event of a transaction and the txn id, atomically; redelivered events are no-ops. Answers how
   * many events were new, or undefined when this txn id was already handled (only a fast path: the event ids
   * are the durable key). Transactions arriving together are stored in one database transaction.
   */
  store(txnId: string, events: MatrixEvent[]): Promise<number | undefined> {
    return this.writes.add({ txnId, events })
  }

  private readonly writes = new Coalescer<{ txnId: string; events: MatrixEvent[] }, number | undefined>(items => this.storeMany(items))

  private async storeMany(items: Array<{ txnId: string; events: MatrixEvent[] }>): Promise<Array<number | undefined>> {
    return this.db.transaction(async tx => {
      const { rows } = await tx.query<{ txn_id: string }>('SELECT txn_id FROM appservice_txns WHERE txn_id = ANY($1::text[])', [items.map(i => i.txnId)])
      const seen = new Set(rows.map(r => r.txn_id))
      // A txn id twice in one batch (a homeserver's retry racing the first attempt): the first one stores.
      const fresh = items.map(i => !seen.has(i.txnId) && !!seen.add(i.txnId))
      const events = items.flatMap((item, k) => (fresh[k] ? item.events : []))
      const inserted = new Set<string>()
      // In chunks: one statement takes at most 65535 parameters (Synapse sends 100 events; junk may send more).
      for (let from = 0; from < events.length; from += INSERT_CHUNK) {
        const params: unknown[] = []
        const values = events.slice(from, from + INSERT_CHUNK).map((e, i) => {
          params.push(e.event_id, e.room_id ?? null, e.type, jsonbText(e))
          return `($${i * 4 + 1}, $${i * 4 + 2}, $${i * 4 + 3}, $${i * 4 + 4}::jsonb)`
        })
        const res = await tx.query<{ event_id: string }>(
          `INSERT INTO inbox (event_id, room_id, type, event) VALUES ${values.join(', ')} ON CONFLICT (event_id) DO NOTHING RETURNING event_id`,
          params,
        )
        for (const r of res.rows) inserted.add(r.event_id)
      }
      const ids = items.filter((_, k) => fresh[k]).map(i => i.txnId)
      if (ids.length > 0) await tx.query('INSERT INTO appservice_txns (txn_id) SELECT unnest($1::text[]) ON CONFLICT (txn_id) DO NOTHING', [ids])
      // Each new event counts once, for the first transaction that carried it.
      return items.map((item, k) => (fresh[k] ? item.events.filter(e => inserted.delete(e.event_id)).length : undefined))
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
