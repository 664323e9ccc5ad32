// Stopping within a deadline. docker stop and systemd send SIGKILL 10 s after SIGTERM; a step that waits on
// a homeserver, a signal-cli daemon or a database that hangs must not hold the process until then, because
// whatever comes after it (closing the database, above all) would never run. So each part of the stop gets
// a time budget, and what did not finish within it is named, for the operator's log.

export interface StopStep {
  /** What the step does, as the log names it when it does not finish ("closing the database"). */
  what: string | (() => string)
  run: () => Promise<unknown>
}

const nameOf = (step: StopStep): string => (typeof step.what === 'function' ? step.what() : step.what)

/** Runs the steps one after another until `ms` have passed. Returns what did not finish: the step running
 * when the time ran out, the steps never started, and steps that failed (with their error). */
export async function stopWithin(ms: number, steps: StopStep[]): Promise<string[]> {
  const unfinished: string[] = []
  let timer: NodeJS.Timeout | undefined
  const timeUp = new Promise<'time up'>(resolve => (timer = setTimeout(() => resolve('time up'), ms)))
  let i = 0
  for (; i < steps.length; i++) {
    const step = steps[i]!
    const what = nameOf(step) // named before it runs: it may say what it is waiting for
    const outcome = await Promise.race([step.run().then(() => 'done' as const, (err: unknown) => err as Error), timeUp])
    if (outcome === 'time up') {
      unfinished.push(what)
      i++
      break
    }
    if (outcome !== 'done') unfinished.push(`${what} (failed: ${outcome.message})`)
  }
  for (; i < steps.length; i++) unfinished.push(`${nameOf(steps[i]!)} (not started)`)
  clearTimeout(timer)
  return unfinished
}
