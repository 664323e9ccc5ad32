// Stage timestamps for the latency runs (issue 19): where a message's time goes between the generator and the
// networks. The bridge process stamps what it sees at its edges, never in the core: a hook on the `pg` client
// (every statement the bridge makes goes through it) and on HTTP responses read as a stream (signal-cli's events).
// Opt-in: bench/bridge-process.ts installs it only when the benchmark asks (BENCH_STAGES=1, read once there).
import { IncomingMessage } from 'node:http'
import pg from 'pg'
import { nowMs, untag } from './config.ts'
import { percentiles } from './load.ts'
import type { WindowEvidence } from './watch.ts'

/** The stages the bridge process stamps, in the order a message passes them. */
export const STAGES = [
  /** The bridge has it: Signal's event read from the stream, WhatsApp's delivered by the socket, Matrix's
   * transaction parsed (its inbox statement issued, or the statement that records it before the answer). */
  'arrival',
  /** The transaction's inbox rows committed (Matrix, when it is not recorded before the answer). */
  'stored',
  /** The message and its outbox rows committed. */
  'recorded',
  /** Its outbox rows read by their queues to be sent, the later of the two (rows handed to their queues by the
   * record itself: when it committed). */
  'read',
  /** Its outbox rows marked sent, the later of the two (after the networks answered). */
  'acknowledged',
] as const
export type Stage = (typeof STAGES)[number]
export type Stamp = [seq: number, stage: number, t: number]

const TAGS = /zq(\d+)qz/g
const tagsIn = (values: unknown): number[] => {
  const out: number[] = []
  if (!Array.isArray(values)) return out
  // A statement taking arrays (unnest) carries its payloads one level down.
  for (const v of values.flat()) {
    if (typeof v !== 'string' || !v.includes('zq')) continue
    for (const m of v.matchAll(TAGS)) out.push(Number(m[1]))
  }
  return out
}

type StatementKind = 'begin' | 'commit' | 'rollback' | 'inbox' | 'outbox' | 'outbox+sent' | 'read' | 'sent' | 'other'
function classify(text: string): StatementKind {
  if (text === 'BEGIN') return 'begin'
  if (text === 'COMMIT') return 'commit'
  if (text === 'ROLLBACK') return 'rollback'
  if (/^WITH ev AS \(INSERT INTO inbox|^INSERT INTO inbox/.test(text)) return 'inbox'
  if (text.startsWith('INSERT INTO outbox')) return 'outbox'
  // The record statement, and since session 12 the record that also carries the last message's 'sent' mark
  // (Outbox.carry: its two parameters last, after the record's own fifteen and the inbox's handled ids).
  if (/^WITH input AS[^]*INSERT INTO outbox/.test(text)) return text.includes(`done AS (UPDATE outbox SET state = 'sent'`) ? 'outbox+sent' : 'outbox'
  // The queue reads (src/core/outbox.ts, readMany).
  if (text.startsWith('SELECT o.* FROM unnest') || text.startsWith('(SELECT * FROM outbox WHERE')) return 'read'
  if (text.startsWith(`WITH done AS (UPDATE outbox SET state = 'sent'`)) return 'sent'
  return 'other'
}

/** The tag of message `messageId` in a record statement's answer: its row gives its input position (ord), and the
 * deliveries' positions ($11) and payloads ($15) give the tag (MessageMap.createManyAndQueue's parameters). */
function handedOver(params: unknown[], rows: Array<{ ord: number | null; id: number }>, messageId: number): number | undefined {
  const ord = rows.find(r => r.ord != null && Number(r.id) === Number(messageId))?.ord
  const ords = params[10] as unknown[] | undefined
  const payloads = params[14] as unknown[] | undefined
  const k = ords?.findIndex(o => Number(o) === Number(ord)) ?? -1
  return k < 0 ? undefined : untag(String(payloads![k]))
}

/** What the hooks make of what they see: `observe` takes a statement the bridge's `pg` client was answered
 * (`client`: its connection), `stamp` a stage seen elsewhere, `take` hands over the stamps made since it was last
 * called. Apart from the hooks, so that a test can feed it the bridge's own statements without a server. */
export interface StageRecorder {
  observe(client: object, text: string, params: unknown, rows: unknown[] | undefined, start: number): void
  stamp(text: unknown, stage: Stage): void
  take(): Stamp[]
}

/** `onStamp`: called after each stamp, from the wake-up that made it (bench/bridge-process.ts sends its reports
 * from there rather than from a timer of its own). */
export function stageRecorder(onStamp?: () => void): StageRecorder {
  let stamps: Stamp[] = []
  const at = (seqs: Iterable<number>, stage: Stage, t = nowMs()): void => {
    const i = STAGES.indexOf(stage)
    const before = stamps.length
    for (const s of seqs) stamps.push([s, i, t])
    if (stamps.length > before) onStamp?.()
  }

  // Outbox ids → message, learnt from the queue reads (the payload carries the generator's tag).
  const outboxSeq = new Map<number, number>()
  const ofIds = (ids: unknown): number[] => (Array.isArray(ids) ? ids.flatMap(id => outboxSeq.get(Number(id)) ?? []) : [])
  // Per connection: the tags written inside its open transaction, recorded when it commits.
  const open = new WeakMap<object, number[]>()
  // What each statement text is, worked out once: the hooks run in the bridge's process and are counted in its CPU
  // per message, and the record statement's test scans its whole text.
  const kinds = new Map<string, StatementKind>()
  const kindOf = (text: string): StatementKind => {
    let kind = kinds.get(text)
    if (kind === undefined) kinds.set(text, (kind = classify(text)))
    return kind
  }
  const observe = (client: object, text: string, params: unknown, rows: unknown[] | undefined, start: number): void => {
    const kind = kindOf(text)
    if (kind === 'other') return
    if (kind === 'begin') open.set(client, [])
    else if (kind === 'commit') {
      at(open.get(client) ?? [], 'recorded')
      open.delete(client)
    } else if (kind === 'rollback') open.delete(client)
    else if (kind === 'inbox') {
      const seqs = tagsIn(params)
      at(seqs, 'arrival', start)
      at(seqs, 'stored')
    } else if (kind === 'outbox' || kind === 'outbox+sent') {
      // The outbox rows, alone or in the statement that records a few plain messages (MessageMap.createManyWithOrigin).
      // Only the record's own parameters name its messages: a carried mark's copies can hold an earlier message's
      // text, which would stamp that message 'recorded' again one message later.
      const own = kind === 'outbox+sent' ? (params as unknown[]).slice(0, -2) : params
      const seqs = tagsIn(own)
      // A Matrix message recorded before the answer has no inbox statement: it arrived when its record was issued
      // (a Signal or WhatsApp message's earlier arrival stands: StageLog keeps a message's first).
      at(seqs, 'arrival', start)
      const inTxn = open.get(client)
      if (inTxn) inTxn.push(...seqs)
      else at(seqs, 'recorded')
      // Since session 10 the one-statement record returns its outbox rows (MessageMap.createManyAndQueue), handed
      // to their queues without a read: they are "read" as they are recorded.
      for (const r of (rows ?? []) as Array<{ outbox_id?: number | null; id: number; ord: number | null }>) {
        if (r.outbox_id == null) continue
        const seq = handedOver(params as unknown[], rows as Array<{ ord: number | null; id: number }>, r.id)
        if (seq === undefined) continue
        outboxSeq.set(Number(r.outbox_id), seq)
        at([seq], 'read')
      }
      if (kind === 'outbox+sent') acknowledged((params as unknown[]).at(-2))
    } else if (kind === 'read') {
      // The queue reads (src/core/outbox.ts, readMany): a row is stamped the first time a read finds it.
      for (const r of (rows ?? []) as Array<{ id: number; payload: unknown }>) {
        if (outboxSeq.has(Number(r.id))) continue
        const seq = untag(JSON.stringify(r.payload))
        if (seq === undefined) continue
        outboxSeq.set(Number(r.id), seq)
        at([seq], 'read')
      }
    } else if (kind === 'sent') acknowledged((params as unknown[])[0])
  }
  const acknowledged = (ids: unknown): void => {
    at(ofIds(ids), 'acknowledged')
    for (const id of ids as number[]) outboxSeq.delete(Number(id))
  }
  return {
    observe,
    stamp: (text, stage) => at(tagsIn([text]), stage),
    take: () => {
      const taken = stamps
      stamps = []
      return taken
    },
  }
}

/** Installs the hooks; `take` hands over the stamps made since it was last called (bench/bridge-process.ts reports
 * them with the WhatsApp arrivals). */
export function installStageHooks(onStamp?: () => void): Pick<StageRecorder, 'stamp' | 'take'> {
  const { observe, stamp, take } = stageRecorder(onStamp)

  type Callback = (err: Error | null, res: pg.QueryResult) => void
  const query = pg.Client.prototype.query as (this: pg.Client, ...args: unknown[]) => unknown
  ;(pg.Client.prototype as { query: unknown }).query = function (this: pg.Client, config: unknown, values?: unknown, callback?: unknown): unknown {
    const text = typeof config === 'string' ? config : ((config as { text?: string } | undefined)?.text ?? '')
    const params = Array.isArray(values) ? values : (config as { values?: unknown } | undefined)?.values
    const start = nowMs()
    const seen = (res: pg.QueryResult | undefined): void => observe(this, text, params, res?.rows, start)
    const wrap = (cb: Callback): Callback => (err, res) => {
      if (!err) seen(res)
      cb(err, res)
    }
    if (typeof values === 'function') return query.call(this, config, wrap(values as Callback))
    if (typeof callback === 'function') return query.call(this, config, values, wrap(callback as Callback))
    const r = query.call(this, config, values) as Promise<pg.QueryResult> | undefined
    return r && typeof r.then === 'function' ? r.then(res => (seen(res), res)) : r
  }

  // signal-cli's events arrive on a server-sent-events response read chunk by chunk.
  const emitEvent = IncomingMessage.prototype.emit as (this: IncomingMessage, event: string | symbol, ...args: unknown[]) => boolean
  // Every emit of every HTTP message passes here: `arguments` is handed on as it is, with no rest array and spread
  // per call (counted in the bridge's CPU per message, like everything in its process).
  IncomingMessage.prototype.emit = function (this: IncomingMessage, event: string | symbol, chunk?: unknown): boolean {
    if (event === 'data' && this.headers['content-type']?.startsWith('text/event-stream')) stamp(String(chunk), 'arrival')
    // eslint-disable-next-line prefer-rest-params
    return Reflect.apply(emitEvent, this, arguments) as boolean
  } as typeof IncomingMessage.prototype.emit

  return { stamp, take }
}

/** The parent's side: every stamp of a run, and what they say about its slowest messages. */
export class StageLog {
  // Per message: generated, the bridge's stages, delivered (reached both networks: the fakes answer at once).
  private readonly times = new Map<number, Float64Array>()
  private readonly complete: Array<{ seq: number; latency: number }> = []

  private row(seq: number): Float64Array {
    let r = this.times.get(seq)
    if (!r) this.times.set(seq, (r = new Float64Array(STAGES.length + 2).fill(NaN)))
    return r
  }

  add(stamps: Stamp[]): void {
    for (const [seq, i, t] of stamps) {
      const r = this.row(seq)
      const k = i + 1
      // Arrival: the first sighting; the others: the later of a message's two rows.
      r[k] = Number.isNaN(r[k]!) ? t : STAGES[i] === 'arrival' ? Math.min(r[k]!, t) : Math.max(r[k]!, t)
    }
  }

  done(seq: number, t0: number, t: number): void {
    const r = this.row(seq)
    r[0] = t0
    r[STAGES.length + 1] = t
    this.complete.push({ seq, latency: t - t0 })
  }

  reset(): void {
    this.times.clear()
    this.complete.length = 0
  }

  /**
   * The time between consecutive stages (ms): p50 and p99 over every message, and the median over the slowest 1 %
   * (at or above the run's p99) and over the stalled ones (over `stallMs`), with when the stalls were.
   */
  summary(runStart: number, stallMs = 100): StageSummary {
    const names = ['generated', ...STAGES, 'delivered']
    const rows = this.complete.map(c => ({ ...c, r: this.times.get(c.seq)! }))
    // Delivered comes before acknowledged (the rows are marked sent after the networks answered); a stage no
    // message of the run passed ('stored' outside Matrix) is left out.
    const order = [0, 1, 2, 3, 4, 6, 5].filter(i => rows.some(c => !Number.isNaN(c.r[i]!)))
    const spans = order.slice(1).map((to, k) => ({ from: order[k]!, to }))
    const gap = (r: Float64Array, from: number, to: number): number => r[to]! - r[from]!
    const label = (s: { from: number; to: number }): string => `${names[s.from]}→${names[s.to]}`
    const p99 = percentiles(rows.map(c => c.latency)).p99
    const median = (sel: typeof rows): Record<string, number> =>
      Object.fromEntries(spans.map(s => [label(s), round(percentiles(sel.map(c => gap(c.r, s.from, s.to)).filter(Number.isFinite)).p50)]))
    const all = Object.fromEntries(spans.map(s => {
      const p = percentiles(rows.map(c => gap(c.r, s.from, s.to)).filter(Number.isFinite))
      return [label(s), { p50: round(p.p50), p99: round(p.p99), max: round(p.max) }]
    }))
    const stalled = rows.filter(c => c.latency > stallMs)
    // Stalls: runs of stalled messages generated within 1 s of each other, as seconds into the run.
    const windows: StageSummary['stalls'] = []
    for (const c of stalled.sort((a, b) => a.r[0]! - b.r[0]!)) {
      const last = windows.at(-1)
      const atS = (c.r[0]! - runStart) / 1000
      const untilS = (c.r[STAGES.length + 1]! - runStart) / 1000
      if (last && atS - last.atS < 1) {
        last.messages++
        last.worstMs = Math.max(last.worstMs, round(c.latency))
        last.untilS = Math.max(last.untilS, round(untilS, 1000))
      } else windows.push({ atS: round(atS, 1000), untilS: round(untilS, 1000), messages: 1, worstMs: round(c.latency) })
    }
    return { stamped: rows.length, all, slowest1pct: median(rows.filter(c => c.latency >= p99)), stallMs, stalled: stalled.length, ...(stalled.length ? { stalledMedian: median(stalled) } : {}), stalls: windows }
  }
}

export interface StageSummary {
  stamped: number
  all: Record<string, { p50: number; p99: number; max: number }>
  slowest1pct: Record<string, number>
  stallMs: number
  stalled: number
  stalledMedian?: Record<string, number>
  /** Seconds into the run: from the first stalled message's generation to the last one's delivery. */
  stalls: Array<{ atS: number; untilS: number; messages: number; worstMs: number; evidence?: WindowEvidence }>
}

const round = (n: number, by = 10): number => (Number.isFinite(n) ? Math.round(n * by) / by : n)
