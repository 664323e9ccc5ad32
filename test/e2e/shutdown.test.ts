// Stopping: on SIGTERM the bridge process is gone within 10 s, even when the homeserver, the signal-cli
// daemon or PostgreSQL hangs with work of the bridge in flight; and it says what it could not finish.
// (docker stop and systemd send SIGKILL after 10 s by default: a bridge that outlives that loses whatever
// it had not written yet, and one that ignores SIGTERM piles up.) This is the one place where a duration is
// the requirement itself: it is measured from the signal to the exit.
import { afterEach, describe, expect, it } from 'vitest'
import { groupText } from '../fakes/signal-envelopes.ts'
import { ADMIN_URI, createPostgresDatabase } from '../support/db.ts'
import { PATIENCE_MS } from '../support/patience.ts'
import { E2E } from './harness.ts'
import { ADMIN, BOB, SIGNAL_RELAY, setUpPortal } from './setup.ts'
import { TcpProxy } from './tcp-proxy.ts'

/** SIGTERM to the bridge process alone, as docker stop sends it; resolves with how long it took to exit. */
async function terminate(e: E2E): Promise<{ afterMs: number; code: number | null; signal: NodeJS.Signals | null }> {
  const child = e.child!
  let exit: { at: number; code: number | null; signal: NodeJS.Signals | null } | undefined
  child.once('exit', (code, signal) => (exit = { at: performance.now(), code, signal }))
  const sent = performance.now()
  process.kill(child.pid!, 'SIGTERM')
  await e.until(() => exit, 'the bridge to exit after SIGTERM')
  return { afterMs: exit!.at - sent, code: exit!.code, signal: exit!.signal }
}

describe('SIGTERM stops the bridge within 10 s, whatever hangs', () => {
  let e: E2E | undefined
  let proxy: TcpProxy | undefined
  afterEach(async () => {
    await e?.stop()
    await proxy?.stop()
    e = proxy = undefined
  })

  it('the homeserver accepts connections and never answers while a Signal message is on its way into Matrix', async () => {
    e = await E2E.create('pglite')
    const p = await setUpPortal(e)
    e.hs.hang()
    e.daemon.push(SIGNAL_RELAY.number!, groupText(BOB, p.signalGroup, 'into a hung homeserver'))
    await e.hs.waitFor(() => e!.hs.hungRequests.some(r => r.includes('/send/m.room.message/')), { what: 'the message to be sent to the hung homeserver' })

    const stopped = await terminate(e)
    console.log(`${expect.getState().currentTestName}: exited with ${stopped.code} ${Math.round(stopped.afterMs)} ms after SIGTERM`)
    expect(stopped.code, e.logs()).toBe(1)
    expect(stopped.afterMs).toBeLessThan(10_000)
    expect(e.logs()).toMatch(/Stopped without finishing: [^"]*sending the messages in flight to [^";]*\bMatrix\b/)
  }, PATIENCE_MS * 3)

  it('the signal-cli daemon never answers while a Matrix message is on its way to Signal', async () => {
    e = await E2E.create('pglite')
    const p = await setUpPortal(e)
    e.daemon.hang()
    await e.hs.sendMessage(ADMIN, p.room, 'into a hung daemon')
    await e.daemon.until(() => e!.daemon.hungRequests.some(r => r.body.includes('"method":"send"')))

    const stopped = await terminate(e)
    console.log(`${expect.getState().currentTestName}: exited with ${stopped.code} ${Math.round(stopped.afterMs)} ms after SIGTERM`)
    expect(stopped.code, e.logs()).toBe(1)
    expect(stopped.afterMs).toBeLessThan(10_000)
    expect(e.logs()).toMatch(/Stopped without finishing: [^"]*sending the messages in flight to [^";]*\bSignal\b/)
  }, PATIENCE_MS * 3)

  it.runIf(ADMIN_URI)('PostgreSQL stops answering, its connections left open, while a Signal message is being stored', async () => {
    const real = new URL(await createPostgresDatabase())
    proxy = await TcpProxy.start({ host: real.hostname, port: Number(real.port) })
    const viaProxy = new URL(real)
    viaProxy.port = String(proxy.port)
    e = await E2E.create('postgres', { databaseUri: viaProxy.toString() })
    const p = await setUpPortal(e)
    proxy.freeze()
    e.daemon.push(SIGNAL_RELAY.number!, groupText(BOB, p.signalGroup, 'into a hung database'))
    await e.until(() => proxy!.swallowedBytes > 0, 'the bridge to query the hung database')

    const stopped = await terminate(e)
    console.log(`${expect.getState().currentTestName}: exited with ${stopped.code} ${Math.round(stopped.afterMs)} ms after SIGTERM`)
    expect(stopped.code, e.logs()).toBe(1)
    expect(stopped.afterMs).toBeLessThan(10_000)
    expect(e.logs()).toMatch(/Stopped without finishing: [^"]*closing the database/)
  }, PATIENCE_MS * 3)
})
