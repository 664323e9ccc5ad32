// The disk under PostgreSQL, alone: what one commit's flush costs when nothing else runs. PostgreSQL (fsync on,
// synchronous_commit on) ends each commit with an fdatasync of its WAL; at 100 msg/s the bridge commits several
// times per message, so a flush that takes hundreds of milliseconds now and then shows in the latency runs' p99
// whatever the bridge does. This writes and flushes 8 KiB (a WAL page) at the latency rate, as those commits do,
// and reports how long each flush took.
import { spawnSync } from 'node:child_process'
import { open, rm } from 'node:fs/promises'
import { percentiles } from './load.ts'

export interface DiskProbe {
  ratePerS: number
  flushes: number
  flushMs: { p50: number; p99: number; p999: number; max: number }
  /** Flushes over 50 ms (the p99 target), and when they came (seconds from the start). */
  over50ms: number
  slowAtS: number[]
}

export async function probeDisk(path: string, ratePerS: number, durationMs: number): Promise<DiskProbe> {
  const file = await open(path, 'w')
  const page = Buffer.alloc(8192, 0x5a)
  const took: number[] = []
  const slowAtS: number[] = []
  const start = performance.now()
  try {
    for (let i = 0; performance.now() - start < durationMs; i++) {
      await file.write(page, 0, page.length, (i % 2048) * page.length) // a 16 MiB ring, as a WAL segment
      const t = performance.now()
      await file.datasync()
      const ms = performance.now() - t
      took.push(ms)
      if (ms > 50) slowAtS.push(Math.round((t - start) / 100) / 10)
      const wait = start + ((i + 1) * 1000) / ratePerS - performance.now()
      if (wait > 0) await new Promise(r => setTimeout(r, wait))
    }
  } finally {
    await file.close()
    await rm(path, { force: true })
  }
  const { p50, p99, max } = percentiles(took)
  const p999 = [...took].sort((a, b) => a - b)[Math.ceil(0.999 * took.length) - 1] ?? NaN
  const r2 = (n: number): number => Math.round(n * 100) / 100
  return { ratePerS, flushes: took.length, flushMs: { p50: r2(p50), p99: r2(p99), p999: r2(p999), max: r2(max) }, over50ms: slowAtS.length, slowAtS }
}

/** What settleDisk waited for: each second's slowest flush, and whether the last was quick. */
export interface DiskSettle {
  waitedMs: number
  settled: boolean
  windowMaxMs: number[]
}

/**
 * Waits until the disk has finished with the benchmark's own writes before a latency run is measured: emptying the
 * tables, loading the history and its checkpoint return once PostgreSQL has flushed them, but the virtual disk
 * under it can go on writing them out for seconds, and a commit's flush then waits behind that (session 10 found
 * 14 of 19 stalls in the first run after a server's set-up, 14 in a run's first 10 s). Everything written is first
 * handed to the disk (`sync`); then a second of flushes at the latency rate is probed until its slowest is under
 * `quickMs`, at most `maxMs`. Not a filter: a run is measured whether or not the disk settled, and the wait is
 * reported with it.
 */
export async function settleDisk(path: string, ratePerS: number, maxMs = 20_000, quickMs = 20): Promise<DiskSettle> {
  const start = performance.now()
  spawnSync('sync')
  const windowMaxMs: number[] = []
  for (;;) {
    const probe = await probeDisk(path, ratePerS, 1000)
    windowMaxMs.push(probe.flushMs.max)
    const settled = probe.flushMs.max < quickMs
    if (settled || performance.now() - start > maxMs) return { waitedMs: Math.round(performance.now() - start), settled, windowMaxMs }
  }
}
