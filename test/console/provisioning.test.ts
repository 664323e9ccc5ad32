// The provisioning API (the mautrix bridges' v3 and our /_relay_bridge/v1) and the console's sign-in, against
// the real bridge in this process with the in-memory networks: what a client with the shared secret can do, what
// a browser session can do, and every refusal (no secret, a wrong one, someone else's login, a replayed or
// expired link, a missing or wrong CSRF token) leaving everything as it was.
import type { IncomingMessage } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { requestFacts } from '../../src/console/http.ts'
import { ADMIN, ALICE, bridgedRoom, linkedLogin, scenario, type Scenario } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { until } from '../support/relay.ts'
import { asUser, call, linkToken, SECRET, signIn } from './client.ts'

const BOB = '@bob:example.org'
const MALLORY = '@mallory:elsewhere.example'
const ALICE_SIGNAL_NUMBER = '+15550100077'
const ALICE_WA_NUMBER = '15550100078@s.whatsapp.net'

describe.each(DB_KINDS)('the provisioning API and the console sign-in, on %s', kind => {
  let s: Scenario
  let base: string
  let clock = Date.now()
  let room: string
  let aliceSignal: string
  let aliceWa: string

  beforeAll(async () => {
    s = await scenario(kind, {
      configure: raw => {
        raw.console = { enabled: true, hostname: '127.0.0.1', port: 0, shared_secret: SECRET, trusted_proxies: ['10.9.8.7'] }
      },
      console: { now: () => clock, refreshMs: 50 },
    })
    base = `http://127.0.0.1:${s.bridge.consolePort}/`
    aliceSignal = await linkedLogin(s, s.signal, ALICE, ALICE_SIGNAL_NUMBER)
    aliceWa = await linkedLogin(s, s.whatsapp, ALICE, ALICE_WA_NUMBER)
    ;({ room } = await bridgedRoom(s, ALICE))
  })
  afterAll(async () => s?.stop())

  /** Types `console` in the person's direct chat and returns the sign-in token the bot sent. */
  async function consoleToken(user: string): Promise<string> {
    if (!s.hs.profile(user)) s.hs.createUser(user)
    const dm = await s.hs.createRoom(user, { invite: [s.hs.botUserId], isDirect: true })
    await s.hs.waitFor(() => s.hs.membership(dm, s.hs.botUserId) === 'join', { what: 'the bot to join the direct chat' })
    const reply = await s.command(user, dm, 'console')
    expect(reply).toMatch(/works once, in one browser, for the next 10 minutes/)
    return linkToken([reply])!
  }

  it('a client with the shared secret links a relay account the mautrix way: flows, start, a QR step long-polled until the phone scans it', async () => {
    const flows = await call(base, 'GET', '_matrix/provision/v3/login/flows', asUser(ALICE))
    expect(flows.status).toBe(200)
    expect(flows.body.flows.map((f: { id: string }) => f.id)).toEqual(['signal-qr', 'whatsapp-qr', 'whatsapp-phone'])

    const start = await call(base, 'POST', '_matrix/provision/v3/login/start/signal-qr', asUser(ALICE))
    expect(start.status).toBe(200)
    expect(start.body).toMatchObject({ type: 'display_and_wait', step_id: 'relay-bridge.signal.qr', display_and_wait: { type: 'qr' } })
    expect(start.body.display_and_wait.data).toMatch(/^memory:\/\/signal\/login\/\d+$/)
    expect(start.body.display_and_wait.image_url).toMatch(/^data:image\/svg\+xml;base64,/)

    // The long poll is answered when the phone scans the code, not before.
    const waiting = call(base, 'POST', `_matrix/provision/v3/login/step/${start.body.login_id}/relay-bridge.signal.qr/display_and_wait`, asUser(ALICE))
    await s.signal.waitFor(() => s.signal.loginsWaiting > 0, 'the login to wait for a scan')
    s.signal.scan('+15550100099')
    const done = await waiting
    expect(done.body).toMatchObject({ type: 'complete', complete: { user_login_id: expect.stringMatching(/^sig-/) } })
    const linked = await s.bridge.logins.get(done.body.complete.user_login_id)
    expect(linked).toMatchObject({ address: '+15550100099', ownerMxid: ALICE, state: 'connected' })

    const logins = await call(base, 'GET', '_matrix/provision/v3/logins', asUser(ALICE))
    expect(logins.body.login_ids).toEqual(expect.arrayContaining([aliceSignal, aliceWa, linked!.id]))
    // The finished login process is gone: polling it again is answered as unknown.
    const again = await call(base, 'POST', `_matrix/provision/v3/login/step/${start.body.login_id}/relay-bridge.signal.qr/display_and_wait`, asUser(ALICE))
    expect(again.status).toBe(404)
  })

  it('a request without the shared secret, or with a wrong one, is refused and logs nothing out', async () => {
    const none = await call(base, 'POST', `_matrix/provision/v3/logout/${aliceSignal}`)
    expect(none.status).toBe(401)
    expect(none.body.errcode).toBe('M_MISSING_TOKEN')
    const wrong = await call(base, 'POST', `_matrix/provision/v3/logout/${aliceSignal}`, { secret: { token: `${SECRET}x`, userId: ALICE } })
    expect(wrong.status).toBe(401)
    expect(wrong.body.errcode).toBe('M_UNKNOWN_TOKEN')
    const nobody = await call(base, 'POST', `_matrix/provision/v3/logout/${aliceSignal}`, { secret: { token: SECRET } })
    expect(nobody.status).toBe(400)
    const outsider = await call(base, 'GET', '_relay_bridge/v1/logins', asUser(MALLORY))
    expect(outsider.status).toBe(403)
    expect((await s.bridge.logins.get(aliceSignal))?.state).toBe('connected')
  })

  it('a user cannot see or change another person\'s login: its id in the URL is answered as unknown', async () => {
    const listed = await call(base, 'GET', '_matrix/provision/v3/logins', asUser(BOB))
    expect(listed.status).toBe(200)
    expect(listed.body.login_ids).toEqual([])
    expect((await call(base, 'GET', '_relay_bridge/v1/logins', asUser(BOB))).body.logins).toEqual([])
    const logout = await call(base, 'POST', `_matrix/provision/v3/logout/${aliceWa}`, asUser(BOB))
    expect(logout.status).toBe(404)
    expect(logout.body.errcode).toBe('M_NOT_FOUND')
    const relink = await call(base, 'POST', `_matrix/provision/v3/login/start/whatsapp-qr?login_id=${aliceWa}`, asUser(BOB))
    expect(relink.status).toBe(404)
    expect(s.whatsapp.loginsWaiting).toBe(0)
    expect((await s.bridge.logins.get(aliceWa))?.state).toBe('connected')
    // An admin sees it, with its number.
    const admin = await call(base, 'GET', '_relay_bridge/v1/logins', asUser(ADMIN))
    expect(admin.body.logins.find((l: { id: string }) => l.id === aliceWa)).toMatchObject({ owner: ALICE, address: ALICE_WA_NUMBER, kind: 'relay', state: 'connected' })
  })

  it('the bot\'s one-time link signs one browser in, once: a replayed link is refused', async () => {
    const token = await consoleToken(ALICE)
    const first = await signIn(base, token)
    expect(first.answer.status).toBe(200)
    expect(first.answer.body).toMatchObject({ user_id: ALICE, level: 'user' })
    const cookie = first.answer.headers.get('set-cookie')!
    expect(cookie).toMatch(/^rb_console=[A-Za-z0-9_-]{40,}; Path=\/; HttpOnly; SameSite=Strict$/)
    expect(cookie).not.toMatch(/Max-Age|Expires|Secure/)
    const me = await call(base, 'GET', '_relay_bridge/v1/session', { session: { cookie: first.cookie } })
    expect(me.body).toMatchObject({ user_id: ALICE, csrf_token: first.csrf })

    const replay = await signIn(base, token)
    expect(replay.answer.status).toBe(403)
    expect(replay.answer.body.error).toMatch(/already used/)
    expect(replay.answer.headers.get('set-cookie')).toBeNull()
  })

  it('`!relay console` in a shared room answers there and sends the link to the direct chat only', async () => {
    const tokens = () => s.hs.rooms().flatMap(r => s.botNotices(r).map(n => linkToken([n])).filter((t): t is string => !!t).map(t => ({ r, t })))
    const before = new Set(tokens().map(x => x.t))
    const reply = await s.command(ALICE, room, '!relay console')
    expect(reply).toMatch(/^I sent you a sign-in link in our direct chat/)
    const fresh = await s.hs.waitFor(() => tokens().find(x => !before.has(x.t)), { what: 'the new link in Alice\'s direct chat' })
    expect(fresh.r).not.toBe(room)
    expect(['join', 'invite']).toContain(s.hs.membership(fresh.r, ALICE))
    expect(s.hs.joinedMembers(fresh.r).filter(m => m !== ALICE && m !== s.hs.botUserId)).toEqual([])
    expect((await signIn(base, fresh.t)).answer.status).toBe(200)
  })

  it('an expired link is refused, and so is a session past its hours', async () => {
    const token = await consoleToken(ALICE)
    const kept = await consoleToken(ALICE)
    const session = await signIn(base, kept)
    clock += 11 * 60_000
    const late = await signIn(base, token)
    expect(late.answer.status).toBe(403)
    expect(late.answer.body.error).toMatch(/expired/)
    expect(late.answer.headers.get('set-cookie')).toBeNull()
    expect((await call(base, 'GET', '_relay_bridge/v1/session', { session: { cookie: session.cookie } })).status).toBe(200)
    clock += 12 * 3_600_000
    const ended = await call(base, 'GET', '_relay_bridge/v1/logins', { session: { cookie: session.cookie } })
    expect(ended.status).toBe(401)
  })

  it('a state-changing request without the page\'s CSRF token, or with a wrong one, changes nothing', async () => {
    const spare = await linkedLogin(s, s.whatsapp, ALICE, '15550100077')
    const { cookie, csrf } = await signIn(base, await consoleToken(ALICE))
    const without = await call(base, 'POST', `_matrix/provision/v3/logout/${spare}`, { session: { cookie } })
    expect(without.status).toBe(403)
    const wrong = await call(base, 'POST', `_matrix/provision/v3/logout/${spare}`, { session: { cookie, csrf: `${csrf.slice(0, -1)}${csrf.endsWith('A') ? 'B' : 'A'}` } })
    expect(wrong.status).toBe(403)
    expect(wrong.body.error).toMatch(/CSRF/)
    expect((await s.bridge.logins.get(spare))?.state).toBe('connected')
    // With its token the same request is carried out: a logout deletes the login for good, as `logout` does.
    const right = await call(base, 'POST', `_matrix/provision/v3/logout/${spare}`, { session: { cookie, csrf } })
    expect(right.status).toBe(200)
    expect(await s.bridge.logins.get(spare)).toBeUndefined()
  })

  it('portals: the room\'s admin sees queues and held deliveries with their reasons; another room admin sees no relay\'s number', async () => {
    // WhatsApp logs the relay out (the phone unlinked it): a message from Matrix is held for it.
    await s.whatsapp.setState(aliceWa, 'logged_out', 'WhatsApp logged the relay account out of the bridge.')
    await s.hs.sendMessage(ALICE, room, 'held for WhatsApp')
    const mine = await until(async () => {
      const p = (await call(base, 'GET', '_relay_bridge/v1/portals', asUser(ALICE))).body.portals?.find((x: { room_id: string }) => x.room_id === room)
      return p?.problems.some((d: { state: string }) => d.state === 'held') && p
    }, 'the held delivery in the portal view')
    expect(mine.whatsapp.relay).toMatchObject({ id: aliceWa, state: 'logged_out' })
    expect(mine.signal.name).toBe('Family (Signal)')
    expect(mine.queue.find((q: { network: string }) => q.network === 'whatsapp')).toMatchObject({ held: 1 })
    expect(mine.problems.find((d: { state: string }) => d.state === 'held')).toMatchObject({ network: 'whatsapp', reason: expect.stringMatching(/not linked|logged out/i) })
    expect(mine.matrix_to).toBe(`https://matrix.to/#/${encodeURIComponent(room)}`)
    const held = await call(base, 'GET', '_relay_bridge/v1/held', asUser(ALICE))
    expect(held.body.deliveries.some((d: { room_id: string; state: string }) => d.room_id === room && d.state === 'held')).toBe(true)
    const aliceLogins = (await call(base, 'GET', '_relay_bridge/v1/logins', asUser(ALICE))).body.logins
    expect(aliceLogins.find((l: { id: string }) => l.id === aliceWa)).toMatchObject({ held: { count: 1 }, address: ALICE_WA_NUMBER })

    // Bob is not in the room: no portal. Made a room admin, he sees it, but not Alice's relay numbers.
    expect((await call(base, 'GET', '_relay_bridge/v1/portals', asUser(BOB))).body.portals).toEqual([])
    s.hs.createUser(BOB)
    await s.hs.invite(ALICE, room, BOB)
    await s.hs.join(BOB, room)
    await s.hs.setPowerLevel(room, BOB, 100, ALICE)
    clock += 31_000 // past the half minute the console remembers who administers which room
    const bobs = await until(async () => {
      const b = await call(base, 'GET', '_relay_bridge/v1/portals', asUser(BOB))
      return b.body.portals.length > 0 && b
    }, 'Bob\'s portal view once he administers the room')
    expect(bobs.body.portals[0].room_id).toBe(room)
    expect(JSON.stringify(bobs.body)).not.toMatch(/15550100077|15550100078/)
  })

  it('the page, its script and its style are served under 150 KB together, and load nothing from elsewhere', async () => {
    const parts = await Promise.all(['', 'console.js', 'console.css'].map(p => fetch(new URL(p, base))))
    let bytes = 0
    for (const r of parts) {
      expect(r.status).toBe(200)
      bytes += (await r.arrayBuffer()).byteLength
    }
    expect(bytes).toBeLessThan(150 * 1024)
    const csp = parts[0]!.headers.get('content-security-policy')!
    expect(csp).toContain("default-src 'none'")
    expect(csp).toContain("script-src 'self'")
    expect(csp).toContain("frame-ancestors 'none'")
  })

  it('X-Forwarded-Proto makes the cookie Secure only when a configured proxy sends it', async () => {
    const spoofed = await call(base, 'POST', '_relay_bridge/v1/session', { headers: { 'X-Forwarded-Proto': 'https', 'X-Forwarded-For': '10.9.8.7' } }, { token: await consoleToken(ALICE) })
    expect(spoofed.status).toBe(200)
    expect(spoofed.headers.get('set-cookie')).toMatch(/^rb_console=/)
    expect(spoofed.headers.get('set-cookie')).not.toMatch(/Secure/)
    // The same headers from the configured proxy's address are believed (as Node would show that peer).
    const req = (peer: string) => ({ socket: { remoteAddress: peer }, headers: { 'x-forwarded-proto': 'https', 'x-forwarded-for': '203.0.113.5, 10.9.8.7' } }) as unknown as IncomingMessage
    const trusted = new Set(['10.9.8.7'])
    expect(requestFacts(req('::ffff:10.9.8.7'), trusted)).toEqual({ ip: '203.0.113.5', https: true })
    expect(requestFacts(req('127.0.0.1'), trusted)).toEqual({ ip: '127.0.0.1', https: false })
  })
})
