// A Signal login's last activity in the console survives a restart of the bridge process: the real bridge (a child
// process) against the fake signal-cli daemon, stopped with SIGTERM and started again, on both databases. The
// second event arrives within the minute after the first, so only the shutdown writes it: the restarted bridge
// showing it proves the shutdown's write, not just the first one.
import { afterEach, describe, expect, it } from 'vitest'
import { receipt } from '../fakes/signal-envelopes.ts'
import { E2E } from '../e2e/harness.ts'
import { ADMIN, BOB, dmWithBot, linkSignal, SIGNAL_RELAY } from '../e2e/setup.ts'
import { DB_KINDS } from '../support/db.ts'
import { freePort } from '../support/ports.ts'
import { PATIENCE_MS } from '../support/patience.ts'
import { asUser, call, SECRET } from './client.ts'

interface LoginView { id: string; network: string; last_activity: number | null }

describe.each(DB_KINDS)('a Signal login\'s last activity across a bridge restart, on %s', kind => {
  let e: E2E | undefined
  afterEach(async () => {
    await e?.stop()
    e = undefined
  })

  it('shows, after SIGTERM and a new start, the last thing the daemon delivered before the stop', async () => {
    const port = await freePort()
    e = await E2E.create(kind, { configure: raw => { raw.console = { enabled: true, hostname: '127.0.0.1', port, shared_secret: SECRET } } })
    const base = `http://127.0.0.1:${port}/`
    const signalLogin = async (): Promise<LoginView> => {
      const answer = await call(base, 'GET', '_relay_bridge/v1/logins', asUser(ADMIN))
      expect(answer.status).toBe(200)
      return (answer.body.logins as LoginView[]).find(l => l.network === 'signal')!
    }
    await linkSignal(e, await dmWithBot(e))
    await e.daemon.until(() => e!.daemon.hasStream(SIGNAL_RELAY.number!))
    const before = (await signalLogin()).last_activity

    e.daemon.push(SIGNAL_RELAY.number!, receipt(BOB, [1_790_000_000_000]))
    const first = await e.until(async () => {
      const at = (await signalLogin()).last_activity
      return at !== null && at !== before && at
    }, 'the console to show the first receipt')
    e.daemon.push(SIGNAL_RELAY.number!, receipt(BOB, [1_790_000_001_000], 'read'))
    const second = await e.until(async () => {
      const at = (await signalLogin()).last_activity
      return at !== null && at > first && at
    }, 'the console to show the second receipt')

    await e.kill('SIGTERM')
    await e.start()
    // The new process has received nothing yet: what it shows came from the database.
    const after = await signalLogin()
    expect(after.last_activity).toBe(second)
  }, PATIENCE_MS * 2)
})
