// `status` in the direct chat with the bot reports the bridge as a whole: the homeserver, the signal-cli daemon
// (reachable or not, its version, the accounts it holds), each login's state and the messages waiting; and the
// bridge notices by itself, within seconds, when the daemon goes away and when it comes back (issue 16, defect 12).
import { afterEach, describe, expect, it, vi } from 'vitest'
import { ADMIN } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { SIG_RELAY, directChat, loginSignal, realScenario, type RealScenario } from '../support/networks.ts'
import { PATIENCE_MS } from '../support/patience.ts'

describe.each(DB_KINDS)('the bridge-wide status on %s', kind => {
  let s: RealScenario
  afterEach(async () => s?.stop())

  /** Asks `status` in the direct chat until its answer matches: the bridge notices changes by itself; status reports. */
  const statusUntil = (dm: string, match: RegExp, what: string): Promise<string> => vi.waitFor(async () => {
    const answer = await s.command(ADMIN, dm, 'status')
    if (!match.test(answer)) throw new Error(`still waiting for ${what}; status said: ${answer}`)
    return answer
  }, { timeout: PATIENCE_MS, interval: 50 })

  it('with no account linked it names the homeserver and the daemon, and sees the daemon go away and come back', async () => {
    s = await realScenario(kind, { signal: { daemonCheckMs: 50 } })
    const dm = await directChat(s, ADMIN)
    const first = await statusUntil(dm, /daemon at \S+ answers/, 'the first daemon check')
    expect(first.split('\n')[0]).toBe('The bridge:')
    expect(first).toContain(`• Homeserver: ${s.config.homeserver.address} (example.org) answers and reaches the bridge (checked at `)
    expect(first).toMatch(new RegExp(`• Signal: the signal-cli daemon at ${s.daemon.url} answers since \\d\\d:\\d\\d:\\d\\d UTC: version 0\\.14\\.6, holding no account yet\\.`))
    expect(first).toContain('Relay accounts: none linked yet.')
    expect(first).toContain('Messages: none waiting.')
    expect(first.split('\n').at(-1)).toBe('Next: link a Signal relay account with `login signal`.')

    await s.daemon.stop()
    const down = await statusUntil(dm, /does not answer/, 'the daemon to be missed')
    // A check in flight when the daemon stops sees its connection reset; the next ones are refused.
    expect(down).toMatch(new RegExp(`• Signal: the signal-cli daemon at ${s.daemon.url} does not answer since \\d\\d:\\d\\d:\\d\\d UTC \\((ECONNREFUSED|ECONNRESET)\\)\\. Check that signal-cli runs`))
    expect(down.split('\n').at(-1)).toBe('Next: fix the Signal connection (above); the bridge notices by itself when it is back.')

    await s.daemon.listen()
    const back = await statusUntil(dm, /daemon at \S+ answers/, 'the daemon to be back')
    expect(back.split('\n').at(-1)).toBe('Next: link a Signal relay account with `login signal`.')
  })

  it('with an account linked, its login goes down with the daemon and is connected again within seconds of its return, whatever the stream backoff', async () => {
    // A stream backoff longer than the test's patience: only the daemon check can bring the login back in time.
    s = await realScenario(kind, { signal: { daemonCheckMs: 50, backoffInitialMs: 600_000, backoffMaxMs: 600_000 } })
    const dm = await directChat(s, ADMIN)
    const login = await loginSignal(s, dm, SIG_RELAY, ADMIN)
    const up = await statusUntil(dm, new RegExp(`holding 1 account \\(${login}\\)`), 'the daemon to hold the account')
    expect(up).toContain(`• ${login} — Signal ${SIG_RELAY.number} — connected`)
    expect(up.split('\n').at(-1)).toBe('Next: link a WhatsApp relay account with `login whatsapp`.')

    await s.daemon.stop()
    // The stream's end and the next daemon check are separate news: the status waits for both.
    const down = await statusUntil(dm, new RegExp(`^(?=[\\s\\S]*does not answer since)[\\s\\S]*${login} — Signal \\S+ — disconnected`), 'the login and the daemon to be down')
    expect(down).toMatch(/does not answer since/)

    await s.daemon.listen()
    const back = await statusUntil(dm, new RegExp(`${login} — Signal \\S+ — connected`), 'the login to be back')
    expect(back).toMatch(new RegExp(`answers since .* holding 1 account \\(${login}\\)`))
    await s.daemon.until(() => s.daemon.hasStream(SIG_RELAY.number))
  })
})
