// The delivery queue: one ordered queue per target chat, in the database so that it survives restarts.
// A queue delivers its rows strictly in order; a row waiting for a retry or held for a logged-out relay
// holds back the rows behind it, which is what keeps a conversation in order.
// A row stays 'pending' while it is sent and becomes 'sent' (or 'held', 'failed') in one write when the send is
// answered: a row caught mid-send by a crash is 'pending', so the next start sends it again (at least once), and
// no write marks it in flight first. That write was an update and a commit per message (~0.2 ms of PostgreSQL
// CPU each at low rates) and told the restart nothing that 'pending' does not.
import type { Logger } from 'pino'
import { Coalescer } from '../db/coalesce.ts'
import type { Db, Queryable } from '../db/types.ts'
import { asDeliveryError, DeliveryError } from './errors.ts'
import type { NetworkId } from './model.ts'

export interface OutboxRow {
  id: number
  portal_id: number
  message_id: number | null
  network: NetworkId
  chat_id: string
  op: 'message' | 'edit' | 'delete' | 'reaction' | 'chat_update' | 'members' | 'member_line'
  payload: Record<string, unknown>
  state: 'pending' | 'sending' | 'sent' | 'failed' | 'held'
  attempts: number
  next_attempt_at: Date
  created_at: Date
}

export interface NewDelivery {
  portalId: number
  messageId: number | null
  network: NetworkId
  chatId: string
  op: OutboxRow['op']
  payload: Record<string, unknown>
}

/** A copy the send produced, as data: recorded in the very statement that marks the row sent. */
export interface SentCopy {
  network: NetworkId
  chatId: string
  remoteId: string
  messageId: number
  /** part: a further remote id of a copy (SendResult.parts). */
  role: 'original' | 'revision' | 'part'
  authorId: string
  sentAt: number
  extra?: Record<string, unknown> | undefined
}

/** Sends one row; returns the copies it made, recorded in the statement that marks the row sent. */
export type Dispatch = (row: OutboxRow) => Promise<SentCopy[] | void>

export interface OutboxOptions {
  db: Db
  log: Logger
  dispatch: Dispatch
  /** A delivery failed for good (or was held past retention): report it, in Matrix only. */
  onFailed: (row: OutboxRow, error: DeliveryError) => Promise<void>
  onSent?: (row: OutboxRow) => void
  backoff?: { initialMs: number; maxMs: number; maxAttempts: number }
  holdRetentionMs: number
  now?: () => number
  /** LONE_MARK_LINGER_MS, unless a test needs the merge not to depend on the machine's load. */
  loneMarkLingerMs?: number
  /** MARK_CARRY_MS, unless a test needs the carry not to depend on the machine's load. */
  markCarryMs?: number
}

/**
 * The common table expressions that mark rows sent (`ids`: the parameter of their ids) with the copies their sends
 * made (`copies`: the parameter of a JSON array of message_copies rows, see MarkParams): in a statement of their own
 * (MARK_SENT_SQL) or carried by a message's record (Outbox.carry).
 *
 * The ids are unnested in a subquery, not given to ANY() as they are: PostgreSQL estimates a parameter array's length
 * from its value when it plans for that value, and assumes 10 elements in the plan it keeps for every value, so the
 * kept plan always looked dearer and it planned the statement anew at each execution (150 µs of its CPU per mark
 * alone, 480 µs for a record carrying one). Its estimate for the subquery is the same both ways: the plan is kept.
 */
export const markSentCtes = (ids: string, copies: string): string => `done AS (UPDATE outbox SET state = 'sent', attempts = attempts + 1, finished_at = now(), last_error = NULL WHERE id = ANY(ARRAY(SELECT unnest(${ids}::bigint[])))),
       copies AS (INSERT INTO message_copies (network, chat_id, remote_id, message_id, role, is_origin, author_id, sent_at, extra)
         SELECT c.network, c.chat_id, c.remote_id, c.message_id, c.role, false, c.author_id, c.sent_at, c.extra
         FROM jsonb_to_recordset(${copies}::jsonb) AS c(network text, chat_id text, remote_id text, message_id bigint, role text,
           author_id text, sent_at bigint, extra jsonb)
         ON CONFLICT DO NOTHING)`

/**
 * Rows marked sent ($1, $2: see markSentCtes) and, when $3 names the queue's next row, whether that row is still to
 * be sent (`next`: not held, failed, moved or deleted since it was read). Exported for the benchmark's PostgreSQL
 * floor, which commits what the bridge commits.
 */
export const MARK_SENT_SQL = `WITH ${markSentCtes('$1', '$2')},
       nxt AS (SELECT 1 FROM outbox WHERE id = $3 AND state IN ('pending', 'sending'))
       SELECT (SELECT count(*)::int FROM nxt) AS next`

/** What markSentCtes takes: the rows' ids, and their copies as JSON text. */
export interface MarkParams {
  ids: number[]
  copies: string
}

/** A row sent, with the copy its send made. */
interface Sent {
  row: OutboxRow
  copy: SentCopy[] | void
}

function markParams(sent: Sent[]): MarkParams {
  return {
    ids: sent.map(x => x.row.id),
    copies: JSON.stringify(sent.flatMap(x => x.copy ?? []).map(c => ({
      network: c.network, chat_id: c.chatId, remote_id: c.remoteId, message_id: c.messageId, role: c.role,
      author_id: c.authorId, sent_at: c.sentAt, extra: c.extra ?? null,
    }))),
  }
}

/** Lone 'sent' marks handed to a message's record statement (Outbox.carry): settle them with its outcome. */
export interface CarriedMarks extends MarkParams {
  /** The statement committed: the rows are marked. */
  done(): void
  /** It failed: the marks are written on their own. */
  failed(): void
}

const queueKey = (network: string, chatId: string): string => `${network}\u0000${chatId}`

/** What a queue's worker knows without reading the table (see Outbox.known). */
interface Known {
  rows?: OutboxRow[] | undefined
  after: number
  meanwhile?: OutboxRow[] | undefined
}

/** A queue's run whose 'sent' mark is still being written while the queue goes on (see Outbox.sendRun). */
interface Flight {
  mark?: Promise<void>
}

/** Waits for the mark in flight, if any; the flight is empty from then on, whether it committed or failed. */
async function settled(flight: Flight): Promise<void> {
  const mark = flight.mark
  flight.mark = undefined
  await mark
}

const release = (waiting: Array<() => void>): void => {
  for (const resolve of waiting) resolve()
}

/** Rows by their queue, each queue's in id order. */
function groupByQueue<R extends OutboxRow>(rows: R[]): Map<string, R[]> {
  const byQueue = new Map<string, R[]>()
  for (const row of [...rows].sort((a, b) => a.id - b.id)) {
    const key = queueKey(row.network, row.chat_id)
    const list = byQueue.get(key)
    if (list) list.push(row)
    else byQueue.set(key, [row])
  }
  return byQueue
}
/**
 * How long a lone 'sent' mark waits for those of lone sends still under way in other queues, to share their
 * statement and commit. A message's copies to Signal and WhatsApp are answered a millisecond or two apart at
 * 100 msg/s: 15 ms catches that with room for a busy event loop, and is small beside a send's own round trip, so a
 * send that hangs holds another queue's mark (its next row, its recorded() waiters) back only that little.
 */
export const LONE_MARK_LINGER_MS = 15
/**
 * How long a lone 'sent' mark, with nothing else to join it, waits for the next message's record statement to carry
 * it (Router.recordPlain) instead of a statement and a commit of its own: at 100 msg/s the next message comes 10 ms
 * after the last, so each message pays one commit, not two. Until then the rows stay 'pending': a crash meanwhile
 * sends them again, as it would a send not yet answered.
 */
export const MARK_CARRY_MS = 15
/** The most rows of one queue sent before their marks are committed together. */
const RUN_MAX = 20
/** Rows of one queue read at a time. A deep queue sends what it read run after run, each run's mark written while
 * the next is sent, but before it reads again it waits for the last mark (see workRows): a read of five runs makes
 * that wait rarer than one of two and a half. */
const READ_MAX = 100
/** Up to this many queues are read with one arm each (readMany). */
const FEW_QUEUES = 4

export class Outbox {
  private readonly opts: Required<Pick<OutboxOptions, 'backoff' | 'now'>> & OutboxOptions
  private readonly running = new Map<string, Promise<void>>()
  private readonly again = new Set<string>()
  private readonly timers = new Map<string, NodeJS.Timeout>()
  /** Callers of recorded(), per queue, let go when the attempt or run in flight there has been marked. */
  private readonly recordWaiters = new Map<string, Array<() => void>>()
  private stopped = false
  // With many chats busy at once (every message in a chat of its own, at 10,000 portals) each queue holds one
  // row at a time: their reads and 'sent' marks are coalesced across queues, so the cost per message stays that
  // of a few busy chats.
  private readonly reads = new Coalescer<{ network: string; chatId: string }, OutboxRow[]>(queues => this.readMany(queues))
  /**
   * Per queue, what the worker knows without reading: `rows`, when set, are all the queue's open rows it has not
   * taken yet (none when the queue was last seen empty; since then, the rows the router recorded, handed over by
   * kick()), so it takes them instead of reading the table (a round trip per message at low rates). undefined:
   * not known (at start, after anything but a clean finish, after a change made elsewhere): the worker reads.
   * `after`: the last row id the worker has taken; a row handed over at or below it (its record's answer came
   * after a read had already found it, or rows of one chat committed out of id order) makes the queue unknown
   * rather than be sent twice or out of order. The table stays the truth: only this process writes it.
   * `meanwhile`: while a worker that read the table runs, the rows handed over (undefined once a change came without
   * them): if its run ends with the queue empty, they are all the queue holds. At low rates a lone mark waits for
   * the next message's record (MARK_CARRY_MS), so each run ends only after the next message was handed over: without
   * them a queue that once had to read would read again for every message.
   */
  private readonly known = new Map<string, Known>()
  /**
   * Records under way per queue (see recording()): a worker working from what was handed over waits for them,
   * since a record begun now may commit a lower id than one already handed over, and the queue goes in id order.
   */
  private readonly records = new Map<string, number>()
  // At low rates a message's sends to two networks end a millisecond or two apart, never while the other's mark is
  // being written: a lone send announces its mark (expect()), and a lone mark due meanwhile waits for it.
  private readonly finishes: Coalescer<Sent[]>

  constructor(opts: OutboxOptions) {
    this.opts = { backoff: { initialMs: 1000, maxMs: 300_000, maxAttempts: 15 }, now: Date.now, ...opts }
    this.finishes = new Coalescer<Sent[]>(lists => this.markSent(lists.flat()).then(() => {}), undefined,
      opts.loneMarkLingerMs ?? LONE_MARK_LINGER_MS, opts.markCarryMs ?? MARK_CARRY_MS)
  }

  /**
   * The lone 'sent' marks waiting for a carrier (MARK_CARRY_MS), for the record statement about to be sent to write
   * too; undefined when none waits.
   */
  carry(): CarriedMarks | undefined {
    const taken = this.finishes.take()
    return taken && { ...markParams(taken.items.flat()), done: taken.done, failed: taken.failed }
  }

  /**
   * The first rows still to deliver of each queue, in one read-only statement for all of them. A few queues (a
   * message's two or three targets at low rates) are read with an arm of their own each: PostgreSQL keeps one
   * generic plan for such a statement, while it planned the unnest form anew at every read (~0.3 ms, more than
   * the read itself), its generic plan assuming a hundred queues.
   */
  private async readMany(queues: Array<{ network: string; chatId: string }>): Promise<OutboxRow[][]> {
    const open = (network: string, chatId: string): string => `(SELECT * FROM outbox WHERE network = ${network} AND chat_id = ${chatId}
      AND state IN ('pending', 'sending', 'held') ORDER BY id LIMIT ${READ_MAX})`
    const few = queues.length <= FEW_QUEUES
    const { rows } = await this.opts.db.query<OutboxRow>(
      few ? queues.map((_, k) => open(`$${2 * k + 1}`, `$${2 * k + 2}`)).join(' UNION ALL ')
        : `SELECT o.* FROM unnest($1::text[], $2::text[]) AS q(network, chat_id) CROSS JOIN LATERAL ${open('q.network', 'q.chat_id')} o`,
      few ? queues.flatMap(q => [q.network, q.chatId]) : [queues.map(q => q.network), queues.map(q => q.chatId)],
    )
    const byQueue = groupByQueue(rows)
    return queues.map(q => byQueue.get(queueKey(q.network, q.chatId)) ?? [])
  }

  /** Adds deliveries inside the caller's transaction; call kick() after it commits. */
  static async enqueue(tx: Queryable, deliveries: NewDelivery[]): Promise<void> {
    if (deliveries.length === 0) return
    const params: unknown[] = []
    const values = deliveries.map((d, i) => {
      params.push(d.portalId, d.messageId, d.network, d.chatId, d.op, JSON.stringify(d.payload))
      const b = i * 6
      return `($${b + 1}, $${b + 2}, $${b + 3}, $${b + 4}, $${b + 5}, $${b + 6}::jsonb)`
    })
    await tx.query(
      `INSERT INTO outbox (portal_id, message_id, network, chat_id, op, payload) VALUES ${values.join(', ')}`,
      params,
    )
  }

  /** Resumes what the last run left: rows caught mid-send are still 'pending' and are sent again (at-least-once). */
  async start(): Promise<void> {
    const { db, log } = this.opts
    // Earlier versions marked a row 'sending' while it was sent: such rows from before an upgrade go again too.
    const { rowCount } = await db.query(`UPDATE outbox SET state = 'pending' WHERE state = 'sending'`)
    if (rowCount > 0) log.warn({ deliveries: rowCount }, 'Deliveries were in flight when the bridge last stopped; sending them again')
    const { rows } = await db.query<{ network: string; chat_id: string }>(
      `SELECT DISTINCT network, chat_id FROM outbox WHERE state = 'pending'`,
    )
    for (const r of rows) this.kick(r.network, r.chat_id)
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.finishes.flush() // a mark waiting for others goes now
    for (const t of this.timers.values()) clearTimeout(t)
    this.timers.clear()
    await Promise.allSettled([...this.running.values()])
  }

  /** The networks with a delivery being worked on right now. */
  busyNetworks(): string[] {
    return [...new Set([...this.running.keys()].map(k => k.slice(0, k.indexOf('\u0000'))))]
  }

  /**
   * Resolves once the sends to this chat that are in flight now have their copies recorded. A network shows a
   * copy as soon as it is sent, but the bridge records it only when the send is answered (a run's copies at
   * the run's end): an answer to that copy (a reply, reaction, edit or deletion) must wait for the record, or
   * it would find nothing to answer and be lost.
   */
  recorded(network: string, chatId: string): Promise<void> {
    const key = queueKey(network, chatId)
    if (!this.running.has(key)) return Promise.resolve()
    this.finishes.hurry() // a mark lingering for a carrier goes now: it may be this one
    return new Promise(resolve => {
      const waiting = this.recordWaiters.get(key)
      if (waiting) waiting.push(resolve)
      else this.recordWaiters.set(key, [resolve])
    })
  }

  private letRecordWaitersGo(key: string): void {
    release(this.takeRecordWaiters(key))
  }

  private takeRecordWaiters(key: string): Array<() => void> {
    const waiting = this.recordWaiters.get(key) ?? []
    this.recordWaiters.delete(key)
    return waiting
  }

  /**
   * The caller is about to record rows for these queues in one statement: call the answer with every row it
   * committed (they are handed to the queues, see kick), or with nothing when it failed (the queues are read then,
   * as a statement that failed may have committed all the same).
   */
  recording(queues: Array<{ network: string; chatId: string }>): (committed?: OutboxRow[]) => void {
    const unique = [...new Map(queues.map(q => [queueKey(q.network, q.chatId), q])).entries()]
    for (const [key] of unique) this.records.set(key, (this.records.get(key) ?? 0) + 1)
    return committed => {
      const byQueue = committed ? groupByQueue(committed) : undefined
      for (const [key, q] of unique) {
        const left = this.records.get(key)! - 1
        if (left > 0) this.records.set(key, left)
        else this.records.delete(key)
        this.kick(q.network, q.chatId, byQueue ? byQueue.get(key) ?? [] : undefined)
      }
    }
  }

  /**
   * Makes sure the queue for this chat is being worked on. `recorded`: the rows the caller just committed to it,
   * whole, as a read would return them; without them the queue is read, since the caller may have changed it in
   * any way (held rows released, rows moved from another chat…).
   */
  kick(network: string, chatId: string, recorded?: OutboxRow[]): void {
    if (this.stopped) return
    const key = queueKey(network, chatId)
    const known = this.known.get(key)
    // Nothing new, and no rows waiting for a record's end (see workRows): nothing to do.
    if (recorded?.length === 0 && !known?.rows?.length) return
    if (known?.rows) {
      if (recorded?.every(r => r.id > known.after)) {
        known.rows.push(...recorded)
        if (known.rows.length > 1) known.rows.sort((a, b) => a.id - b.id)
      } else known.rows = undefined
    } else if (known?.meanwhile) {
      if (recorded) known.meanwhile.push(...recorded)
      else known.meanwhile = undefined
    }
    this.run(network, chatId, key)
  }

  private run(network: string, chatId: string, key: string): void {
    if (this.stopped) return
    if (this.running.has(key)) {
      this.again.add(key)
      return
    }
    const t = this.timers.get(key)
    if (t) {
      clearTimeout(t)
      this.timers.delete(key)
    }
    const run = this.work(network, chatId, key)
      .catch(err => {
        // Usually the database went away: try the queue again shortly, or it would wait for the next message.
        this.opts.log.error({ err: (err as Error).message, network }, 'A delivery queue stopped on an error; retrying in a moment')
        this.wakeLater(network, chatId, 1000)
      })
      .finally(() => {
        this.running.delete(key)
        this.letRecordWaitersGo(key)
        if (this.again.delete(key)) this.run(network, chatId, key)
      })
    this.running.set(key, run)
  }

  /** Held deliveries for a network (a relay came back) go out again, in order. */
  async release(network: NetworkId, chatIds?: string[]): Promise<number> {
    const { rows } = await this.opts.db.query<{ chat_id: string }>(
      `UPDATE outbox SET state = 'pending', next_attempt_at = now() WHERE state = 'held' AND network = $1
       ${chatIds ? 'AND chat_id = ANY($2)' : ''} RETURNING chat_id`,
      chatIds ? [network, chatIds] : [network],
    )
    for (const chat of new Set(rows.map(r => r.chat_id))) this.kick(network, chat)
    return rows.length
  }

  /** Fails held deliveries older than the retention, so nobody waits forever without being told. */
  async expireHeld(): Promise<void> {
    // The held head of a queue and everything old waiting behind it go together, and each queue is reported
    // once: a relay away for two weeks must not produce one notice per message.
    const { rows } = await this.opts.db.query<OutboxRow>(
      `UPDATE outbox SET state = 'failed', finished_at = now(), last_error = 'held past retention'
       WHERE state IN ('held', 'pending') AND created_at < $1
         AND (network, chat_id) IN (SELECT network, chat_id FROM outbox WHERE state = 'held')
       RETURNING *`,
      [new Date(this.opts.now() - this.opts.holdRetentionMs)],
    )
    const byQueue = groupByQueue(rows)
    const hours = Math.round(this.opts.holdRetentionMs / 3_600_000)
    for (const queue of byQueue.values()) {
      const first = queue[0]!
      const n = queue.length
      await this.opts.onFailed(first, new DeliveryError('permanent',
        `The relay account was logged out for longer than the bridge holds messages (${hours} hours), so ${n === 1 ? 'this message was' : `${n} messages from then on were`} dropped. Link the account again to resume.`,
        { reason: 'm.event_too_old' }))
      this.kick(first.network, first.chat_id) // newer deliveries wait for the relay again
    }
  }

  private backoffMs(attempts: number, retryAfterMs?: number): number {
    const { initialMs, maxMs } = this.opts.backoff
    const base = Math.min(maxMs, initialMs * 2 ** Math.max(0, attempts - 1))
    const jittered = base * (0.75 + Math.random() * 0.5)
    return Math.max(jittered, retryAfterMs ?? 0)
  }

  /** Works the queue until it is empty or must wait; whether it ended empty tells the next run (see known). */
  private async work(network: string, chatId: string, key: string): Promise<void> {
    let known = this.known.get(key)
    if (!known) this.known.set(key, (known = { after: 0 }))
    if (!known.rows) known.meanwhile = []
    const end = await this.workRows(network, chatId, key, known).catch(err => {
      known.rows = known.meanwhile = undefined
      throw err
    })
    const meanwhile = known.meanwhile
    known.meanwhile = undefined
    // Empty, and nothing recorded since that was not handed over (a kick meanwhile runs the queue again).
    if (end === 'waits') known.rows = undefined
    else if (end === 'empty' && !known.rows) {
      if (!this.again.has(key)) known.rows = []
      // Handed over during the run, none of them at or below a row it took (a read may have found them already).
      else if (meanwhile?.every(r => r.id > known.after)) known.rows = meanwhile.sort((a, b) => a.id - b.id)
    }
  }

  /** The queue's rows in order, until it is empty, must wait (for a retry, a release…), or has records under way
   * (their end kicks it again). Nothing of the queue is left unmarked when it returns (see sendRun). */
  private async workRows(network: string, chatId: string, key: string, known: Known): Promise<'empty' | 'waits' | 'recording'> {
    const flight: Flight = {}
    try {
      while (!this.stopped) {
        if (known.rows && this.records.has(key)) return 'recording'
        // A read would find the last run's rows still 'pending' before their mark commits: it waits for that.
        const rows = known.rows ? known.rows.splice(0, READ_MAX) : await settled(flight).then(() => this.reads.add({ network, chatId }))
        if (rows.length === 0) return 'empty'
        known.after = Math.max(known.after, rows.at(-1)!.id)
        let stale = false
        for (let i = 0; i < rows.length; i++) {
          const row = rows[i]!
          if (this.stopped) return 'waits' // a row being sent stays 'pending': the next start sends it again
          if (row.state === 'held') return 'waits' // the whole queue waits for release()
          const wait = new Date(row.next_attempt_at).getTime() - this.opts.now()
          if (wait > 0) {
            this.wakeLater(network, chatId, wait)
            return 'waits'
          }
          const run = this.batchable(rows, i)
          if (run.length > 1) {
            if (!await this.sendRun(run, key, flight)) return 'waits'
            // The rest of the rows read are still to be sent as read: only this queue's worker changes an open row of
            // it (release and expiry touch held queues, a room upgrade moves Matrix rows, which dispatch follows).
            i += run.length - 1
            continue
          }
          await settled(flight) // a reply, edit, deletion or reaction may look up a copy the last run records
          const outcome = await this.attempt(row, rows[i + 1])
          this.letRecordWaitersGo(key)
          if (outcome === 'stop') return 'waits'
          if (outcome === 'read_again') {
            known.rows = undefined
            stale = true
            break
          }
        }
        // All of a short read is done: rows added since were kicked, and a kick during this run runs the queue
        // again (see kick), so reading once more would only find nothing.
        if (!stale && rows.length < READ_MAX) return 'empty'
      }
      return 'waits'
    } finally {
      await flight.mark
    }
  }

  /** Whether a row may be sent now (not held, not waiting for a retry). */
  private ready(row: OutboxRow): boolean {
    return row.state !== 'held' && new Date(row.next_attempt_at).getTime() <= this.opts.now()
  }

  /**
   * A run of consecutive plain messages ready to go, starting at rows[i]. Replies, edits, deletions and
   * reactions are never in a run: they look up copies that earlier rows of the run would only record at its end.
   */
  private batchable(rows: OutboxRow[], i: number): OutboxRow[] {
    const run: OutboxRow[] = []
    for (let k = i; k < rows.length && run.length < RUN_MAX; k++) {
      const row = rows[k]!
      if (row.op !== 'message' || (row.payload as { replyTo?: unknown }).replyTo !== undefined || !this.ready(row)) break
      run.push(row)
    }
    return run
  }

  /**
   * Sends a run in order and marks the sent ones with their copies in one statement at the end: one commit for the
   * run instead of one per row. That mark is written while the queue sends its next run (`flight`), so that a deep
   * queue does not stand still for a commit between runs; the queue awaits it before that run's own mark, before
   * anything else it does and before it stops working. Until it commits the rows stay 'pending': a crash sends them
   * again, at most this run and the one before, in order. Returns whether the queue may go on.
   */
  private async sendRun(run: OutboxRow[], key: string, flight: Flight): Promise<boolean> {
    // Who waits for the sends in flight now waits for the last run's mark: nothing else of the queue is unmarked.
    const before = this.takeRecordWaiters(key)
    if (flight.mark) void flight.mark.then(() => release(before), () => release(before))
    else release(before)
    const sent: Sent[] = []
    let failure: { row: OutboxRow; err: unknown } | undefined
    for (const row of run) {
      if (this.stopped) break
      try {
        sent.push({ row, copy: await this.opts.dispatch({ ...row, attempts: row.attempts + 1 }) })
      } catch (err) {
        failure = { row, err }
        break
      }
    }
    // The last run's mark first: if it failed, this run is not marked either, and both are sent again in order.
    await settled(flight)
    const during = this.takeRecordWaiters(key)
    const mark = this.finishes.add(sent)
      .then(() => {
        for (const { row } of sent) this.opts.onSent?.(row)
      })
      .finally(() => release(during))
    if (!failure) {
      flight.mark = mark
      return !this.stopped
    }
    await mark
    return (await this.failed(failure.row, failure.row.attempts + 1, failure.err)) === 'next'
  }

  /**
   * Marks rows sent and records their copies in one statement; with `next`, the same statement answers whether that
   * next row of the queue is still to be sent (it may have been held, failed, moved or deleted meanwhile).
   */
  private async markSent(sent: Sent[], next?: number): Promise<boolean> {
    if (sent.length === 0) return false
    const { ids, copies } = markParams(sent)
    const { rows } = await this.opts.db.query<{ next: number }>(MARK_SENT_SQL, [ids, copies, next ?? null])
    return (rows[0]?.next ?? 0) > 0
  }

  private wakeLater(network: string, chatId: string, ms: number): void {
    const key = queueKey(network, chatId)
    clearTimeout(this.timers.get(key))
    this.timers.set(key, setTimeout(() => {
      this.timers.delete(key)
      this.kick(network, chatId)
    }, Math.min(ms, 2 ** 31 - 1)))
  }

  /** One attempt: 'stop' when the queue must wait, 'read_again' when the next row read is no longer to be sent. */
  private async attempt(row: OutboxRow, next?: OutboxRow): Promise<'stop' | 'next' | 'read_again'> {
    const attempts = row.attempts + 1
    // Alone, the mark joins those of other queues: announced now, so that one due meanwhile waits for it.
    const lone = next ? undefined : this.finishes.expect()
    try {
      const copy = await this.opts.dispatch({ ...row, attempts })
      // With a next row, one statement marks this one sent and checks that one.
      const marked = next && !this.stopped ? this.markSent([{ row, copy }], next.id) : (lone ?? this.finishes).add([{ row, copy }]).then(() => true)
      if (this.recordWaiters.has(queueKey(row.network, row.chat_id))) this.finishes.hurry() // an answer to the copy waits
      const goOn = await marked
      this.opts.onSent?.(row)
      return goOn ? 'next' : 'read_again'
    } catch (err) {
      lone?.cancel() // no mark coming: none waits for it
      return this.failed(row, attempts, err)
    }
  }

  /** A failed attempt: held, retried later, or failed for good and reported. 'stop' when the queue must wait. */
  private async failed(row: OutboxRow, attempts: number, err: unknown): Promise<'stop' | 'next'> {
    const { db, log } = this.opts
    const e = asDeliveryError(err)
    const internal = e.message.slice(0, 500)
    if (e.disposition === 'hold') {
      await db.query(`UPDATE outbox SET state = 'held', attempts = $3, last_error = $2 WHERE id = $1`, [row.id, internal, attempts])
      log.info({ id: row.id, network: row.network }, 'Delivery held until the relay account is back')
      return 'stop'
    }
    if (e.rateLimited) {
      // Paced, not failed: the attempt is not counted, so that a busy homeserver never makes the bridge give up
      // on a message; the queue waits as long as the network asked (at least a tenth of the first backoff, so
      // a server that says "now" again and again is not hammered).
      const delay = Math.max(e.retryAfterMs ?? 0, this.opts.backoff.initialMs / 10)
      await db.query(
        `UPDATE outbox SET last_error = $2, next_attempt_at = $3 WHERE id = $1`,
        [row.id, internal, new Date(this.opts.now() + delay)],
      )
      log.info({ id: row.id, network: row.network, delayMs: Math.round(delay) }, 'Delivery rate-limited; waiting as asked')
      this.wakeLater(row.network, row.chat_id, delay)
      return 'stop'
    }
    if (e.disposition === 'transient' && attempts < this.opts.backoff.maxAttempts) {
      const delay = this.backoffMs(attempts, e.retryAfterMs)
      await db.query(
        `UPDATE outbox SET attempts = $4, last_error = $2, next_attempt_at = $3 WHERE id = $1`,
        [row.id, internal, new Date(this.opts.now() + delay), attempts],
      )
      log.warn({ id: row.id, network: row.network, attempts, delayMs: Math.round(delay), err: internal }, 'Delivery failed; will retry')
      this.wakeLater(row.network, row.chat_id, delay)
      return 'stop'
    }
    await db.query(`UPDATE outbox SET state = 'failed', attempts = $3, finished_at = now(), last_error = $2 WHERE id = $1`, [row.id, internal, attempts])
    log.warn({ id: row.id, network: row.network, attempts, err: internal }, 'Delivery failed for good')
    const final = e.disposition === 'permanent' ? e : new DeliveryError('permanent',
      `${e.userMessage} The bridge gave up after ${attempts} attempts.`, { cause: e, internal })
    await this.opts.onFailed({ ...row, attempts }, final).catch(err2 =>
      log.error({ err: (err2 as Error).message }, 'Could not report a failed delivery in Matrix'))
    return 'next' // a failed row does not block the ones behind it
  }

  /** Counts per network and state, for `status` and metrics. */
  async counts(portalId?: number): Promise<Array<{ network: string; state: string; n: number }>> {
    const { rows } = await this.opts.db.query<{ network: string; state: string; n: number }>(
      `SELECT network, state, count(*)::int AS n FROM outbox
       WHERE state IN ('pending', 'sending', 'held', 'failed') ${portalId ? 'AND portal_id = $1' : ''}
       GROUP BY network, state`,
      portalId ? [portalId] : [],
    )
    return rows
  }

  async prune(): Promise<void> {
    await this.opts.db.query(`DELETE FROM outbox WHERE state IN ('sent', 'failed') AND finished_at < now() - interval '7 days'`)
  }
}
