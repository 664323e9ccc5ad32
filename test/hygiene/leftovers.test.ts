// Nothing left behind: however a test run ends (passing, failing, a hook timing out, its worker crashing,
// Ctrl-C), no process it started is still alive afterwards and the temp directory holds nothing new. Each
// scenario runs a real vitest, as a child process, on leftovers.fixture.ts, which starts a real bridge
// process and then ends that way; afterwards the bridge, the worker and anything else that carried the
// run's name must be gone, and the TMPDIR the run was given must be empty.
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { spawnChild } from '../support/children.ts'
import { tempDir } from '../support/config.ts'
import { isRunning, processesOfRun } from '../support/global-processes.ts'
import { until } from '../support/networks.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const VITEST = join(ROOT, 'node_modules/vitest/vitest.mjs')
const CONFIG = 'test/hygiene/fixture.config.ts'

interface Outcome {
  code: number | null
  signal: NodeJS.Signals | null
  output: string
  started: Array<{ worker: number; bridge: number }>
  tmp: string
}

/** Runs the fixture's scenario in a vitest of its own, with a fresh, empty TMPDIR. */
async function runScenario(scenario: string, interrupt = false): Promise<Outcome> {
  const tmp = await tempDir('rb-run-tmp-')
  const report = join(await tempDir('rb-run-report-'), 'started.jsonl')
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('VITEST')) env[k] = v
  const run = spawnChild(process.execPath, [VITEST, 'run', '--config', CONFIG], {
    cwd: ROOT,
    env: { ...env, TMPDIR: tmp, RELAY_BRIDGE_LEFTOVERS_SCENARIO: scenario, RELAY_BRIDGE_LEFTOVERS_REPORT: report },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  run.stdout!.on('data', (d: Buffer) => (output += d))
  run.stderr!.on('data', (d: Buffer) => (output += d))
  const exited = new Promise<[number | null, NodeJS.Signals | null]>(resolve => run.once('exit', (code, signal) => resolve([code, signal])))
  const started = () => (existsSync(report) ? readFileSync(report, 'utf8').split('\n').filter(Boolean).map(l => JSON.parse(l) as { worker: number; bridge: number }) : [])
  if (interrupt) {
    await until(() => started().length > 0, `the fixture to start its bridge; output:\n${output}`)
    process.kill(-run.pid!, 'SIGINT') // what Ctrl-C does: SIGINT to the terminal's foreground process group
  }
  const [code, signal] = await exited
  return { code, signal, output, started: started(), tmp }
}

/** Every process of the run gone, and its TMPDIR empty. */
async function expectNothingLeft(o: Outcome): Promise<void> {
  expect(o.started.length, `the fixture never started a bridge:\n${o.output}`).toBeGreaterThan(0)
  const pids = o.started.flatMap(s => [s.worker, s.bridge])
  await until(
    () => !pids.some(isRunning) && processesOfRun(o.tmp).length === 0,
    `the run's processes to be gone; still alive: ${pids.filter(isRunning).join(', ')} ${processesOfRun(o.tmp).join(', ')}\n${o.output}`,
  )
  expect(readdirSync(o.tmp), o.output).toEqual([])
}

describe('after a test run, no process it started is alive and its temp directory holds nothing new', () => {
  it('when the test that started a bridge passes', async () => {
    const o = await runScenario('passes')
    expect(o.code, o.output).toBe(0)
    await expectNothingLeft(o)
  })

  it('when the test fails before stopping its bridge', async () => {
    const o = await runScenario('fails')
    expect(o.output).toMatch(/expected 'the bridge' to be 'stopped'/)
    expect(o.code).toBe(1)
    await expectNothingLeft(o)
  })

  it('when the hook that would stop the bridge times out', async () => {
    const o = await runScenario('hook-times-out')
    expect(o.output).toMatch(/Hook timed out in 1000ms/)
    expect(o.code).toBe(1)
    await expectNothingLeft(o)
  })

  it('when the worker running the test dies', async () => {
    const o = await runScenario('worker-crashes')
    expect(o.code, o.output).toBe(1)
    await expectNothingLeft(o)
  })

  it('when the run is interrupted with Ctrl-C', async () => {
    const o = await runScenario('interrupted', true)
    expect(o.code === 130 || o.signal === 'SIGINT', o.output).toBe(true)
    await expectNothingLeft(o)
  })
})
