// Every process a test starts goes through here, so that none outlives the test that started it, however
// that test ends. A child runs in its own process group (detached), so a signal to the group reaches
// whatever it started in turn, and Ctrl-C in the terminal reaches the test runner, which then decides,
// not the child. The group is recorded in the run's directory (global-processes.ts) until the child exits.
// A child started inside a test is stopped when that test finishes; one started in a hook lives until its
// file ends. When this worker exits for any reason (its file done, a timed-out hook, Ctrl-C, SIGTERM from
// vitest), every child still running is killed; if the worker dies without running any code at all
// (SIGKILL, a crash), the run's teardown sweeps the recorded groups.
import { fork, spawn, type ChildProcess, type ForkOptions, type SpawnOptions } from 'node:child_process'
import { onTestFinished } from 'vitest'
import { forgetGroup, killGroup, recordGroup } from './global-processes.ts'

/** How long a child may take to stop after SIGTERM before it gets SIGKILL. The bridge promises to be gone
 * within 10 s of SIGTERM (docs/operators.md); a child that takes longer is stuck. */
export const GRACE_MS = 10_000

const running = new Set<ChildProcess>()

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null
}

/** child_process.spawn, in a process group of its own that goes away with the test. */
export function spawnChild(command: string, args: string[], options: SpawnOptions = {}): ChildProcess {
  return track(spawn(command, args, { ...options, detached: true }))
}

/** child_process.fork, in a process group of its own that goes away with the test. */
export function forkChild(modulePath: string, args: string[], options: ForkOptions = {}): ChildProcess {
  return track(fork(modulePath, args, { ...options, detached: true }))
}

/** Sends `signal` to the child's group and waits for the child to exit; SIGKILL after GRACE_MS. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.pid === undefined || hasExited(child)) return
  const pid = child.pid
  const gone = new Promise<void>(resolve => child.once('exit', () => resolve()))
  killGroup(pid, signal)
  const stuck = signal === 'SIGKILL' ? undefined : setTimeout(() => killGroup(pid, 'SIGKILL'), GRACE_MS)
  await gone
  clearTimeout(stuck)
}

function track(child: ChildProcess): ChildProcess {
  const pid = child.pid
  if (pid === undefined) return child // it did not start; 'error' says why
  installWorkerHandlers()
  running.add(child)
  recordGroup(pid)
  child.once('exit', () => {
    running.delete(child)
    forgetGroup(pid)
  })
  try {
    onTestFinished(() => stopChild(child))
  } catch {
    // Started by a hook, not a test: it serves the whole file and goes when the worker does.
  }
  return child
}

let installed = false

/** The worker's own line of defence: whatever ends it, its children end first. */
function installWorkerHandlers(): void {
  if (installed) return
  installed = true
  const killAll = () => {
    for (const child of running) if (child.pid !== undefined) killGroup(child.pid, 'SIGKILL')
  }
  process.on('exit', killAll)
  // A signal's default action ends the process without 'exit' handlers: kill the children, then let the
  // signal do what it would have done.
  const onSignal = (signal: NodeJS.Signals) => {
    killAll()
    for (const s of SIGNALS) process.off(s, onSignal)
    process.kill(process.pid, signal)
  }
  const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']
  for (const s of SIGNALS) process.on(s, onSignal)
}
