// The floors relay-bridge is measured against (issue 19): what the bare appservice framework and what PostgreSQL
// alone accept at saturation. Each is driven step by step to its plateau in the same run as the bridge.
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { MessageMap, type NewWithOrigin } from '../src/core/messages.ts'
import { MARK_CARRY_MS, MARK_SENT_SQL, type MarkParams } from '../src/core/outbox.ts'
import { ALONE_MAX } from '../src/core/router.ts'
import { named } from '../src/db/postgres.ts'
import type { Queryable } from '../src/db/types.ts'
import { ALICE, nowMs, tag } from './config.ts'
import { openLoop } from './load.ts'

export interface Plateau {
  /** Each step: the rate offered and what was accepted per second over the step after its first fifth. */
  steps: Array<{ offeredPerS: number; acceptedPerS: number }>
  /** The most accepted in any step: the floor. */
  plateauPerS: number
}

/**
 * Offers `start`, then twice as much, and so on, until what is accepted grows by less than 5 % from one step to the
 * next (or `maxSteps`): the plateau is the floor's own limit, not the load offered.
 */
export async function rampToPlateau(measure: (ratePerS: number) => Promise<number>, start: number, maxSteps = 8): Promise<Plateau> {
  const steps: Plateau['steps'] = []
  for (let rate = start, i = 0; i < maxSteps; i++, rate *= 2) {
    const accepted = await measure(rate)
    const previous = steps.at(-1)?.acceptedPerS
    steps.push({ offeredPerS: rate, acceptedPerS: Math.round(accepted) })
    if (previous !== undefined && accepted < previous * 1.05) break
  }
  return { steps, plateauPerS: Math.max(...steps.map(s => s.acceptedPerS)) }
}

/** The bridge's pool size (src/db/postgres.ts): the floor gets as many concurrent clients, no more. */
export const BRIDGE_POOL_SIZE = 10
/** Messages per batch at saturation: a full Synapse-sized transaction. The bridge, saturated with batches of 50,
 * records ~50–70 messages per router transaction and marks ~35–55 outbox rows per statement (pg_stat_statements,
 * 10 portals, quick run); 50 throughout is that, rounded. */
export const FLOOR_BATCH = 50

export interface FloorPortal { id: number; roomId: string; signalGroup: string; whatsappGroup: string }

/**
 * PostgreSQL alone committing, per Matrix → Signal + WhatsApp message, the rows relay-bridge commits for one, with
 * the bridge's own statements (copied, or MessageMap's): the message and its origin copy with one outbox row per
 * target network, in one transaction, then both outbox rows marked sent together with the copies they produced (one
 * statement; the WhatsApp copy keeps the send's key and content in its extra). No inbox row: since session 11 the
 * bridge records a transaction of plain messages before it answers while nothing waits in its inbox
 * (MatrixEvents.recordDirect), as it does at 100 msg/s and pushed as Synapse pushes; with 64 transactions in flight it
 * stores most of them in the inbox first, a row and a mark more than this floor. Nothing else: the queue reads the
 * bridge also makes are left out (the floor is the higher for it). A few messages recorded alone leave their mark to
 * the next such record, for MARK_CARRY_MS at most, as the bridge does at low rates (Outbox.carry).
 * BRIDGE_POOL_SIZE workers each take up to FLOOR_BATCH of the messages waiting, so at saturation every batch is full.
 */
export async function postgresFloorStep(dbUri: string, portals: FloorPortal[], ratePerS: number, durationMs: number, counted?: { cpuMeter: () => () => number; committed: number; usedCpuUs: number }): Promise<number> {
  const pool = new pg.Pool({ connectionString: dbUri, max: BRIDGE_POOL_SIZE })
  // The database is dropped with its connections (WITH (FORCE)) right after; an idle client told so must not end the run.
  pool.on('error', () => {})
  const run = randomBytes(4).toString('hex')
  let waiting = 0
  let next = 0
  let stopped = false
  const commits: Array<[number, number]> = []
  // Idle workers, woken by the next arrivals (or the stop).
  let idle: Array<() => void> = []
  const wakeAll = (): void => {
    for (const w of idle) w()
    idle = []
  }
  const lingering = new LingeringMarks(run, wakeAll)
  const worker = async (): Promise<void> => {
    const client = await pool.connect()
    try {
      while (!stopped) {
        if (lingering.due) {
          await markSent(client, lingering.take())
          continue
        }
        if (waiting === 0) {
          await new Promise<void>(r => idle.push(r))
          continue
        }
        const n = Math.min(FLOOR_BATCH, waiting)
        waiting -= n
        const msgs = Array.from({ length: n }, () => {
          const i = next++
          return { i, portal: portals[i % portals.length]!, eventId: `$floor${run}x${i}` }
        })
        await commitMessages(client, run, msgs, lingering)
        commits.push([nowMs(), n])
      }
      await markSent(client, lingering.take()) // the last, if no other worker has
    } finally {
      client.release()
    }
  }
  // The server's CPU is read while the pool's backends live: an ended backend takes its CPU time with it.
  const cpuUsed = counted?.cpuMeter()
  const workers = Array.from({ length: BRIDGE_POOL_SIZE }, () => worker())
  const loop = await openLoop({ rate: ratePerS, durationMs, emit: count => {
    waiting += count
    wakeAll()
  } })
  stopped = true
  wakeAll()
  await Promise.all(workers)
  if (counted) {
    counted.usedCpuUs = cpuUsed!()
    counted.committed = commits.reduce((sum, [, k]) => sum + k, 0)
  }
  await pool.end()
  const from = loop.startedAt + durationMs / 5
  const done = commits.filter(([t]) => t >= from && t <= loop.endedAt).reduce((s, [, k]) => s + k, 0)
  return done / ((loop.endedAt - from) / 1000)
}

type QueuedRow = { id: number; network: string; chat_id: string; message_id: number }

/** The marks of messages recorded alone, waiting for the next such record to carry them (Outbox.carry), or written
 * by themselves after MARK_CARRY_MS. */
class LingeringMarks {
  /** No record came in time: a worker writes them (take()). */
  due = false
  #rows: QueuedRow[] = []
  #timer: NodeJS.Timeout | undefined
  readonly #run: string
  readonly #wake: () => void
  constructor(run: string, wake: () => void) {
    this.#run = run
    this.#wake = wake
  }

  add(rows: QueuedRow[]): void {
    this.#rows.push(...rows)
    this.#timer ??= setTimeout(() => {
      this.due = true
      this.#wake()
    }, MARK_CARRY_MS)
  }

  take(): MarkParams | undefined {
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.due = false
    const rows = this.#rows.splice(0)
    return rows.length > 0 ? markParams(this.#run, rows) : undefined
  }
}

async function markSent(c: pg.PoolClient, marks: MarkParams | undefined): Promise<void> {
  if (marks) await c.query(named(MARK_SENT_SQL, [marks.ids, marks.copies, null]))
}

/** The 'sent' mark's parameters for rows as the bridge's sends would have left them: each send's copy, the WhatsApp
 * one with the send's key and content in its extra (src/whatsapp/messages.ts). */
function markParams(run: string, outbox: QueuedRow[]): MarkParams {
  return {
    ids: outbox.map(r => r.id),
    copies: JSON.stringify(outbox.map(r => ({
      network: r.network, chat_id: r.chat_id, remote_id: `${r.network}-${run}-${r.id}`, message_id: r.message_id, role: 'original',
      author_id: r.network === 'signal' ? 'relay-aci' : '15550100000@s.whatsapp.net', sent_at: Date.now(),
      extra: r.network === 'whatsapp'
        ? { key: { remoteJid: r.chat_id, id: `whatsapp-${run}-${r.id}`, fromMe: true }, message: JSON.stringify({ extendedTextMessage: { text: `Alice (Matrix): ${floorText(0)}` } }), login: 'wa-bench1' }
        : null,
    }))),
  }
}

const floorText = (i: number): string => `Hello from the benchmark ${tag(i)}`

/** One step's messages, committed with the bridge's statements, named as the bridge names them (src/db/postgres.ts:
 * each connection plans a recurring statement once). */
async function commitMessages(c: pg.PoolClient, run: string, msgs: Array<{ i: number; portal: FloorPortal; eventId: string }>, lingering: LingeringMarks): Promise<void> {
  const sender = { network: 'matrix' as const, id: ALICE, displayName: 'Alice' }
  const q = { query: async <R>(sql: string, p: unknown[] = []) => { const r = await c.query(named(sql, p)); return { rows: r.rows as R[], rowCount: r.rowCount ?? 0 } }, exec: async (sql: string) => void (await c.query(sql)) }
  const items = msgs.map(m => ({
    m: { portalId: m.portal.id, sender },
    c: { network: 'matrix' as const, chatId: m.portal.roomId, remoteId: m.eventId, authorId: ALICE, sentAt: Date.now() },
  }))
  const payload = (m: (typeof msgs)[number]) => ({ sender, kind: 'text', text: floorText(m.i), format: 'plain', eventId: m.eventId })
  if (msgs.length <= ALONE_MAX) {
    // A few messages, as the router records them (Router.recordAlone): messages, origin copies and outbox rows in
    // one statement, which answers the outbox rows' ids (the bridge hands them to its queues) and carries the marks
    // waiting; their own mark waits for the next.
    const { queued } = await MessageMap.createManyAndQueue(q, items, {
      deliveries: msgs.flatMap((m, item) => (['signal', 'whatsapp'] as const).map(network => ({
        item, portalId: m.portal.id, network, chatId: network === 'signal' ? m.portal.signalGroup : m.portal.whatsappGroup, payload: JSON.stringify(payload(m)),
      }))),
      marks: lingering.take(),
    })
    lingering.add(queued.map(r => ({ id: r.id, network: r.network, chat_id: r.chatId, message_id: r.messageId })))
    return
  }
  // The outbox (src/core/outbox.ts): both networks' sends marked sent with the copies they produced in one statement
  // (the queues' marks are coalesced under load).
  await markSent(c, markParams(run, await recordMany(c, q, items, msgs, payload)))
}

/** More messages, as the router records them (Router.recordMany): messages + origin copies and the outbox rows, in
 * one transaction. */
async function recordMany(c: pg.PoolClient, q: Queryable, items: NewWithOrigin[], msgs: Array<{ i: number; portal: FloorPortal; eventId: string }>,
  payload: (m: { i: number; portal: FloorPortal; eventId: string }) => Record<string, unknown>): Promise<QueuedRow[]> {
  await c.query('BEGIN')
  const ids = await MessageMap.createManyWithOrigin(q, items)
  const out: unknown[] = []
  const rowsSql = msgs.flatMap((m, k) => (['signal', 'whatsapp'] as const).map((net, j) => {
    out.push(m.portal.id, ids[k], net, net === 'signal' ? m.portal.signalGroup : m.portal.whatsappGroup, 'message', JSON.stringify(payload(m)))
    const b = (k * 2 + j) * 6
    return `($${b + 1}, $${b + 2}, $${b + 3}, $${b + 4}, $${b + 5}, $${b + 6}::jsonb)`
  }))
  // As Outbox.enqueue, plus RETURNING: the floor does not read its queues back (the bridge does) to learn the ids.
  const { rows: outbox } = await c.query<QueuedRow>(named(
    `INSERT INTO outbox (portal_id, message_id, network, chat_id, op, payload) VALUES ${rowsSql.join(', ')} RETURNING id, network, chat_id, message_id`, out))
  await c.query('COMMIT')
  return outbox
}

/** The floor's portals as seeded: ids and chats, read back. */
export async function floorPortals(dbUri: string): Promise<FloorPortal[]> {
  const c = new pg.Client({ connectionString: dbUri })
  await c.connect()
  const { rows } = await c.query<{ id: number; room_id: string; signal_group: string; whatsapp_group: string }>(
    'SELECT id, room_id, signal_group, whatsapp_group FROM portals ORDER BY id')
  await c.end()
  return rows.map(r => ({ id: Number(r.id), roomId: r.room_id, signalGroup: r.signal_group, whatsappGroup: r.whatsapp_group }))
}
