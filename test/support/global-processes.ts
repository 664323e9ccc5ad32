// A vitest globalSetup: the run's last line of defence against what tests leave behind. It makes one
// directory per run, points TMPDIR into it (so every mkdtemp of the tests, and of the processes they start,
// lands there) and names it in RELAY_BRIDGE_TEST_RUN_DIR, which every worker and every process a test
// starts inherits. Teardown, and the exit of the vitest process itself (Ctrl-C ends vitest through
// process.exit), kill whatever still carries that name and remove the directory, so a run that passed,
// failed, timed out in a hook, lost a worker or was interrupted leaves neither a process nor a file.
// It imports nothing from vitest: it runs in the main vitest process.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestProject } from 'vitest/node'

export const RUN_DIR_ENV = 'RELAY_BRIDGE_TEST_RUN_DIR'

/** Where a worker records the process group of each child it starts, until the child exits. */
const groupsDir = (runDir: string) => join(runDir, 'groups')

export function recordGroup(pgid: number): void {
  const runDir = process.env[RUN_DIR_ENV]
  if (runDir) writeFileSync(join(groupsDir(runDir), String(pgid)), '')
}

export function forgetGroup(pgid: number): void {
  const runDir = process.env[RUN_DIR_ENV]
  if (runDir) rmSync(join(groupsDir(runDir), String(pgid)), { force: true })
}

/** Sends `signal` to every process of the group. A group that is gone (ESRCH), or whose number now belongs
 * to someone else's processes (EPERM), is not ours to signal. */
export function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code !== 'ESRCH' && code !== 'EPERM') throw err
  }
}

/** The environment a process started with, or undefined where /proc cannot tell (no such process, another
 * user's process, not Linux). */
function environOf(pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0')
  } catch {
    return undefined
  }
}

const carries = (env: string[], runDir: string) =>
  env.some(kv => kv === `${RUN_DIR_ENV}=${runDir}` || kv.startsWith(`${RUN_DIR_ENV}=${runDir}/`))

const HAS_PROC = existsSync('/proc/self/stat')

/** Whether the process still runs: a zombie has finished and only waits for its parent to read its status. */
export function isRunning(pid: number): boolean {
  if (!HAS_PROC) {
    try {
      process.kill(pid, 0)
      return true
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'EPERM'
    }
  }
  try {
    return !/^\d+ \(.*\) Z/s.test(readFileSync(`/proc/${pid}/stat`, 'latin1'))
  } catch {
    return false
  }
}

/** Linux: the live processes that carry this run's directory (or a nested run's below it) in their
 * environment, other than this one. Empty where there is no /proc. */
export function processesOfRun(runDir: string): number[] {
  let pids: number[]
  try {
    pids = readdirSync('/proc').filter(n => /^\d+$/.test(n)).map(Number)
  } catch {
    return []
  }
  return pids.filter(pid => pid !== process.pid && isRunning(pid) && carries(environOf(pid) ?? [], runDir))
}

/** Blocks this thread: the sweep runs in an exit handler, where nothing asynchronous happens any more. */
function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

/** Kills every process of the run with SIGKILL: the recorded groups (whose leader, if it still exists, must
 * carry the run's name, so a reused pid is never touched), then anything else that carries the name.
 * Waits (up to a minute) until they are gone, so none of them writes into the directory removed next. */
export function sweep(runDir: string): number[] {
  const killed = new Set<number>()
  let recorded: string[] = []
  try {
    recorded = readdirSync(groupsDir(runDir))
  } catch {
    // no child was ever started
  }
  for (const name of recorded) {
    const pgid = Number(name)
    const env = environOf(pgid)
    if (env && !carries(env, runDir)) continue
    killGroup(pgid, 'SIGKILL')
    killed.add(pgid)
  }
  const end = Date.now() + 60_000
  for (let left = processesOfRun(runDir); left.length > 0 && Date.now() < end; left = processesOfRun(runDir)) {
    for (const pid of left) {
      killed.add(pid)
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone meanwhile
      }
    }
    pause(20)
  }
  return [...killed]
}

export default function setup(project: TestProject): () => void {
  const runDir = mkdtempSync(join(tmpdir(), 'relay-bridge-run-'))
  mkdirSync(groupsDir(runDir))
  mkdirSync(join(runDir, 'tmp'))
  process.env[RUN_DIR_ENV] = runDir
  process.env.TMPDIR = join(runDir, 'tmp')
  const cleanUp = () => {
    const killed = sweep(runDir)
    if (killed.length > 0) console.warn(`Killed ${killed.length} process(es) the tests left running: ${killed.join(', ')}`)
    rmSync(runDir, { recursive: true, force: true })
  }
  // Vitest made its own temp directory before this ran, and removes it when it closes; an interrupted
  // vitest never closes.
  const onExit = () => {
    cleanUp()
    rmSync(project.tmpDir, { recursive: true, force: true })
  }
  process.on('exit', onExit)
  return () => {
    process.off('exit', onExit)
    cleanUp()
  }
}
