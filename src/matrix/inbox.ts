// Durable record of what the homeserver pushed: events land here before the 200 goes out.
import { createHash } from 'node:crypto'
import { Coalescer } from '../db/coalesce.ts'
import type { Db, Queryable } from '../db/types.ts'
import type { TransactionCrypto } from './transaction-crypto.ts'

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
/** The most stored rows kept in memory for the drain (see Inbox.fresh). */
const FRESH_MAX = 2000

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

/** A transaction's crypto part as stored, waiting to be handed to the Olm machine. */
export interface CryptoRow {
  id: number
  txnId: string
  crypto: TransactionCrypto
}

export class Inbox {
  private readonly db: Db
  /**
   * The rows this process stored since the table was last read with nothing else pending, in the order stored:
   * then they are all that is pending, and the drain takes them from here instead of reading the table back (a
   * round trip per transaction at low rates). undefined when that is not known (at start, after a failure): the
   * drain reads the table. Only this process writes the table (one bridge per database, by its advisory lock).
   */
  private fresh: InboxRow[] | undefined
  /** Stores begun and running, so that a read can tell whether a store overlapped it (see quiet). */
  private storesBegun = 0
  private storesRunning = 0

  constructor(db: Db) {
    this.db = db
  }

  /** Up to `limit` of the rows stored since the table was last read empty, oldest first; undefined when the table
   * must be read (pending) instead. */
  takeFresh(limit: number): InboxRow[] | undefined {
    if (!this.fresh) return undefined
    if (this.fresh.length > 1) this.fresh.sort((a, b) => a.id - b.id)
    return this.fresh.splice(0, limit)
  }

  /** True when nothing is pending, as far as this process knows: the table was read empty since the last failure,
   * every row stored since was taken, and no store is under way. */
  idle(): boolean {
    return this.fresh !== undefined && this.fresh.length === 0 && this.storesRunning === 0
  }

  /** Called just before reading the table: a mark for settled, or undefined when a store is under way (its rows
   * may or may not be in the read). */
  quiet(): number | undefined {
    return this.storesRunning === 0 ? this.storesBegun : undefined
  }

  /** Everything the read after `quiet` returned is handled: if no store began since, nothing else is pending, and
   * from now on every new row is handed over as it is stored. */
  settled(mark: number | undefined): void {
    if (mark !== undefined && mark === this.storesBegun && this.storesRunning === 0) this.fresh ??= []
  }

  /** Something pending was left unhandled (a failure): the table is the only record of what is pending again. */
  unknown(): void {
    this.fresh = undefined
  }

  /**
   * Stores every event of a transaction and the txn id, atomically; events already stored are no-ops (the
   * event ids are the durable key). Answers how many events were new, or undefined when the txn id was already
   * known and brought nothing new (a homeserver's retry). Transactions arriving together are stored together,
   * in one statement when their events fit in one.
   */
  async store(txnId: string, events: MatrixEvent[]): Promise<number | undefined> {
    this.storesBegun++
    this.storesRunning++
    try {
      return await this.writes.add({ txnId, events })
    } finally {
      this.storesRunning--
    }
  }

  private readonly writes = new Coalescer<{ txnId: string; events: MatrixEvent[] }, number | undefined>(items => this.storeMany(items))

  private async storeMany(items: Array<{ txnId: string; events: MatrixEvent[] }>): Promise<Array<number | undefined>> {
    const events = items.flatMap(i => i.events)
    const txnIds = items.map(i => i.txnId)
    // Each event as stored: what a row handed over without reading it back holds (jsonb keeps what JSON.parse does).
    const texts = new Map<string, string>()
    const insertEvents = (chunk: MatrixEvent[], first: number): { sql: string; params: unknown[] } => {
      const params: unknown[] = []
      const values = chunk.map((e, i) => {
        const text = jsonbText(e)
        if (!texts.has(e.event_id)) texts.set(e.event_id, text)
        params.push(e.event_id, e.room_id ?? null, e.type, text)
        const b = first + i * 4
        return `($${b}, $${b + 1}, $${b + 2}, $${b + 3}::jsonb)`
      })
      return { sql: `INSERT INTO inbox (event_id, room_id, type, event) VALUES ${values.join(', ')} ON CONFLICT (event_id) DO NOTHING RETURNING id, event_id`, params }
    }
    const insertTxns = (n: number): string => `INSERT INTO appservice_txns (txn_id) SELECT unnest($${n}::text[]) ON CONFLICT (txn_id) DO NOTHING RETURNING txn_id`
    let rows: Array<{ k: 'e' | 't'; v: string; id: number | null }>
    if (events.length <= INSERT_CHUNK) {
      // The common case, one round trip: both inserts in one statement (itself atomic).
      const ev = events.length > 0 ? insertEvents(events, 1) : undefined
      const n = (ev?.params.length ?? 0) + 1
      rows = (await this.db.query<{ k: 'e' | 't'; v: string; id: number | null }>(
        `WITH ${ev ? `ev AS (${ev.sql}), ` : ''}tx AS (${insertTxns(n)})
         ${ev ? `SELECT 'e' AS k, event_id AS v, id FROM ev UNION ALL ` : ''}SELECT 't' AS k, txn_id AS v, NULL::bigint AS id FROM tx`,
        [...(ev?.params ?? []), txnIds],
      )).rows
    } else {
      // One statement takes at most 65535 parameters (Synapse sends 100 events; junk may send more).
      rows = await this.db.transaction(async tx => {
        const out: Array<{ k: 'e' | 't'; v: string; id: number | null }> = []
        for (let from = 0; from < events.length; from += INSERT_CHUNK) {
          const ev = insertEvents(events.slice(from, from + INSERT_CHUNK), 1)
          out.push(...(await tx.query<{ id: number; event_id: string }>(ev.sql, ev.params)).rows.map(r => ({ k: 'e' as const, v: r.event_id, id: r.id })))
        }
        out.push(...(await tx.query<{ txn_id: string }>(insertTxns(1), [txnIds])).rows.map(r => ({ k: 't' as const, v: r.txn_id, id: null })))
        return out
      })
    }
    if (this.fresh) {
      for (const r of rows) if (r.k === 'e') this.fresh.push({ id: Number(r.id), event: JSON.parse(texts.get(r.v)!) as MatrixEvent, attempts: 0 })
      // A backlog waits in the table, not twice over in memory: past this the drain reads the table again.
      if (this.fresh.length > FRESH_MAX) this.fresh = undefined
    }
    const newEvents = new Set(rows.filter(r => r.k === 'e').map(r => r.v))
    const newTxns = new Set(rows.filter(r => r.k === 't').map(r => r.v))
    return items.map(item => {
      // Each new event counts once, for the first transaction that carried it; likewise a txn id.
      const fresh = newTxns.delete(item.txnId)
      const count = item.events.filter(e => newEvents.delete(e.event_id)).length
      return fresh || count > 0 ? count : undefined
    })
  }

  /**
   * Stores a transaction's to-device events, device lists and key counts; called before its room events are
   * stored, so that the keys of an event are always handed over before the event is handled. A retry of the
   * same transaction is stored once (see migrations/011_crypto_inbox.sql). True when it was new.
   */
  async storeCrypto(txnId: string, crypto: TransactionCrypto): Promise<boolean> {
    const toDevice = jsonbText(crypto.toDevice)
    const lists = jsonbText(crypto.deviceLists)
    const otk = jsonbText(crypto.otkCounts)
    const fallback = crypto.fallbackKeyTypes === undefined ? null : jsonbText(crypto.fallbackKeyTypes)
    const digest = createHash('sha256').update(JSON.stringify([txnId, toDevice, lists, otk, fallback])).digest('base64url')
    const { rows } = await this.db.query(
      `INSERT INTO crypto_inbox (digest, txn_id, to_device, device_lists, otk_counts, fallback_key_types)
       VALUES ($1, $2, $3::jsonb, $4::jsonb, $5::jsonb, $6::jsonb) ON CONFLICT (digest) DO NOTHING RETURNING id`,
      [digest, txnId, toDevice, lists, otk, fallback])
    return rows.length > 0
  }

  /** Stored crypto parts not yet handed over, oldest first. */
  async pendingCrypto(limit: number): Promise<CryptoRow[]> {
    const { rows } = await this.db.query<{ id: number; txn_id: string; to_device: TransactionCrypto['toDevice']; device_lists: TransactionCrypto['deviceLists']; otk_counts: TransactionCrypto['otkCounts']; fallback_key_types: TransactionCrypto['fallbackKeyTypes'] | null }>(
      'SELECT id, txn_id, to_device, device_lists, otk_counts, fallback_key_types FROM crypto_inbox WHERE handled_at IS NULL ORDER BY id LIMIT $1',
      [limit])
    return rows.map(r => ({
      id: Number(r.id), txnId: r.txn_id,
      crypto: { toDevice: r.to_device, deviceLists: r.device_lists, otkCounts: r.otk_counts, fallbackKeyTypes: r.fallback_key_types ?? undefined },
    }))
  }

  async cryptoHandled(id: number): Promise<void> {
    await this.db.query('UPDATE crypto_inbox SET handled_at = now() WHERE id = $1', [id])
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

  /** Marks events handled; `q` may be the transaction that recorded what they brought, so both commit together. */
  static async markProcessed(q: Queryable, ids: number[]): Promise<void> {
    if (ids.length > 0) await q.query(Inbox.markProcessedStatement('$1'), [ids])
  }

  /** markProcessed's statement, the ids in `param`: the router may join it to the one that records the events. */
  static markProcessedStatement(param: string): string {
    return `UPDATE inbox SET processed_at = now() WHERE id = ANY(ARRAY(SELECT unnest(${param}::bigint[])))` // see markSentCtes
  }

  async recordFailure(id: number, error: string): Promise<void> {
    await this.db.query('UPDATE inbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1', [id, error])
  }

  /** Old txn ids go: Synapse on SQLite reuses them after a restart. Processed events go after a day. */
  /** Forgets transaction ids after an hour, and processed events after `processedMaxAgeMs`
   * (retention.processed_events_hours): their event ids stop a redelivery being handled twice only that long. */
  async prune(processedMaxAgeMs = 86_400_000): Promise<void> {
    await this.db.query(`DELETE FROM appservice_txns WHERE received_at < now() - interval '1 hour'`)
    await this.db.query('DELETE FROM inbox WHERE processed_at < $1', [new Date(Date.now() - processedMaxAgeMs)])
    await this.db.query('DELETE FROM crypto_inbox WHERE handled_at < $1', [new Date(Date.now() - processedMaxAgeMs)])
  }
}
