// Not a test of the bridge: the purpose-built victim of test/hygiene/leftovers.test.ts, which runs it in a
// vitest of its own. Each scenario starts a real bridge process through the e2e harness, makes a temp
// entry the plain way (mkdtemp in os.tmpdir()), reports the pids, and then ends the way the scenario says,
// never reaching the code that would have stopped the bridge.
import { appendFileSync } from 'node:fs'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { E2E } from '../e2e/harness.ts'

const scenario = process.env.RELAY_BRIDGE_LEFTOVERS_SCENARIO
const report = process.env.RELAY_BRIDGE_LEFTOVERS_REPORT
if (!scenario || !report) throw new Error('Run this fixture through test/hygiene/leftovers.test.ts, which sets RELAY_BRIDGE_LEFTOVERS_SCENARIO and RELAY_BRIDGE_LEFTOVERS_REPORT.')

const never = () => new Promise<never>(() => {})

async function bridgeStarted(): Promise<E2E> {
  const e = await E2E.create('pglite')
  const own = await mkdtemp(join(tmpdir(), 'rb-plain-'))
  await writeFile(join(own, 'left.txt'), 'a file nobody removes')
  appendFileSync(report!, `${JSON.stringify({ worker: process.pid, bridge: e.child!.pid })}\n`)
  return e
}

if (scenario === 'passes') {
  it('starts a bridge and stops it', async () => {
    const e = await bridgeStarted()
    await e.stop()
  })
} else if (scenario === 'fails') {
  it('starts a bridge and fails before stopping it', async () => {
    await bridgeStarted()
    expect('the bridge').toBe('stopped')
  })
} else if (scenario === 'hook-times-out') {
  let e: E2E | undefined
  beforeAll(async () => {
    e = await bridgeStarted()
  })
  it('has a bridge for the whole file', () => {
    expect(e?.child?.pid).toBeGreaterThan(0)
  })
  // The hook that would stop the bridge hangs and times out.
  afterAll(async () => {
    await never()
    await e?.stop()
  }, 1_000)
} else if (scenario === 'worker-crashes') {
  it('starts a bridge, then its worker dies at once', async () => {
    await bridgeStarted()
    process.kill(process.pid, 'SIGKILL')
  })
} else if (scenario === 'interrupted') {
  it('starts a bridge and waits until Ctrl-C', async () => {
    await bridgeStarted()
    await never()
  })
} else {
  throw new Error(`Unknown scenario ${scenario}`)
}
