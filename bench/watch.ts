// What the machine and PostgreSQL were doing while a latency run stalled (issue 19, point 4). The stage stamps say
// where a stalled message waited (mostly between arrival and its record's commit); these say why: the kernel's
// accounting of the two cores, sampled every 10 ms from /proc (steal: the hypervisor ran something else on our
// vCPU; iowait and the pressure-stall totals: tasks waiting for the disk or for a core), and, on request
// (--watch-postgres, since its queries cost the server CPU the run's figures would count), what each of
// PostgreSQL's processes was waiting for (pg_stat_activity's wait events).
import { readFileSync } from 'node:fs'
import pg from 'pg'
import { nowMs } from './config.ts'

const EVERY_MS = 10
const TICK_MS = 10 // USER_HZ is 100 on Linux

/** The machine's counters, cumulative, in ms. */
interface Counters { steal: number; iowait: number; cpuSome: number; ioSome: number; ioFull: number }

function pressure(kind: 'cpu' | 'io'): { some: number; full: number } {
  try {
    const text = readFileSync(`/proc/pressure/${kind}`, 'utf8')
    const total = (line: string): number => Number(/total=(\d+)/.exec(text.split('\n').find(l => l.startsWith(line)) ?? '')?.[1] ?? NaN) / 1000
    return { some: total('some'), full: total('full') }
  } catch {
    return { some: NaN, full: NaN } // no PSI in this kernel
  }
}

function counters(): Counters {
  // cpu  user nice system idle iowait irq softirq steal …, summed over the cores
  const f = readFileSync('/proc/stat', 'utf8').slice(0, 200).split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
  const io = pressure('io')
  return { steal: f[7]! * TICK_MS, iowait: f[4]! * TICK_MS, cpuSome: pressure('cpu').some, ioSome: io.some, ioFull: io.full }
}

/** One sample of PostgreSQL: each process's state and wait ("active IO:WALSync", "walwriter LWLock:WALWrite"…). */
interface PgSample { t: number; tookMs: number; waits: string[] }

export interface WindowEvidence {
  /** Machine time in the window (ms, both cores together) against what the run's average would give it. */
  machine: Record<keyof Counters, { ms: number; expectedMs: number }>
  /** The longest gap between two of the watcher's own samples (ms): over 10 the harness itself was held up. */
  watcherLateMs: number
  /** PostgreSQL's processes in the window: how often each state and wait was seen, most frequent first. */
  postgres?: Array<[string, number]>
  /** The slowest pg_stat_activity query in the window (ms): a server that answers slowly is itself held up. */
  postgresSampleMaxMs?: number
}

export class Watch {
  private readonly samples: Array<{ t: number; c: Counters }> = []
  private readonly pgSamples: PgSample[] = []
  private readonly timer: NodeJS.Timeout
  private pgClient?: pg.Client
  private pgBusy = false

  private constructor(dbUri: string | undefined) {
    this.samples.push({ t: nowMs(), c: counters() })
    this.timer = setInterval(() => {
      this.samples.push({ t: nowMs(), c: counters() })
      if (this.pgClient && !this.pgBusy) void this.samplePostgres()
    }, EVERY_MS)
    if (dbUri) this.pgClient = new pg.Client({ connectionString: dbUri })
  }

  static async start(dbUri?: string): Promise<Watch> {
    const w = new Watch(dbUri)
    await w.pgClient?.connect()
    return w
  }

  private async samplePostgres(): Promise<void> {
    this.pgBusy = true
    const t = nowMs()
    try {
      // Every process of the server but this one: client backends by state, the others by their type.
      const { rows } = await this.pgClient!.query<{ w: string }>(
        `SELECT CASE WHEN backend_type = 'client backend' THEN coalesce(state, '?') ELSE backend_type END
                || coalesce(' ' || wait_event_type || ':' || wait_event, '') AS w
         FROM pg_stat_activity WHERE pid <> pg_backend_pid()`)
      this.pgSamples.push({ t, tookMs: nowMs() - t, waits: rows.map(r => r.w) })
    } catch {
      // the server is going away with the run
    } finally {
      this.pgBusy = false
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer)
    await this.pgClient?.end().catch(() => {})
  }

  /** What the samples say about [fromMs, toMs] (nowMs()'s clock, as the stage stamps). */
  window(fromMs: number, toMs: number): WindowEvidence {
    const first = this.samples[0]!
    const last = this.samples.at(-1)!
    const runMs = last.t - first.t
    const inside = this.samples.filter(s => s.t >= fromMs && s.t <= toMs + EVERY_MS)
    const before = [...this.samples].reverse().find(s => s.t < fromMs) ?? first
    const end = inside.at(-1) ?? before
    const keys = Object.keys(first.c) as Array<keyof Counters>
    const machine = Object.fromEntries(keys.map(k => [k, {
      ms: round(end.c[k] - before.c[k]),
      expectedMs: round(((last.c[k] - first.c[k]) * (end.t - before.t)) / Math.max(1, runMs)),
    }])) as WindowEvidence['machine']
    let watcherLateMs = 0
    for (const [i, s] of inside.entries()) watcherLateMs = Math.max(watcherLateMs, s.t - (inside[i - 1] ?? before).t)
    const evidence: WindowEvidence = { machine, watcherLateMs: round(watcherLateMs) }
    if (this.pgClient) {
      const seen = new Map<string, number>()
      let slowest = 0
      for (const s of this.pgSamples.filter(p => p.t >= fromMs && p.t <= toMs)) {
        slowest = Math.max(slowest, s.tookMs)
        for (const w of s.waits) seen.set(w, (seen.get(w) ?? 0) + 1)
      }
      evidence.postgres = [...seen].sort((a, b) => b[1] - a[1])
      evidence.postgresSampleMaxMs = round(slowest)
    }
    return evidence
  }
}

const round = (n: number): number => (Number.isFinite(n) ? Math.round(n * 10) / 10 : n)
