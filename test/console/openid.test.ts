// Matrix OpenID tokens on the provisioning API, as the mautrix bridges accept them (`Authorization: Bearer
// openid:<token>`, ?user_id=): the real bridge in this process checks each token with the fake homeserver's
// federation userinfo endpoint, which answers as Synapse does (tokens last an hour). A user sees and changes only
// her own logins; an unknown, expired or someone else's token, a token from another server and a homeserver that
// cannot answer are each refused with a sentence and change nothing.
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { FakeHomeserver } from '../fakes/homeserver.ts'
import { ALICE, linkedLogin, scenario, STRANGER, type Scenario } from '../support/bridge.ts'
import { call, openIdToken, withOpenId } from './client.ts'

const BOB = '@bob:example.org'
const ALICE_WA_NUMBER = '15550100078@s.whatsapp.net'
const USERINFO = '/_matrix/federation/v1/openid/userinfo'

describe('Matrix OpenID tokens on the provisioning API', () => {
  let s: Scenario
  let base: string
  let clock = Date.now()
  let aliceSignal: string
  let aliceWa: string
  let bobWa: string

  beforeAll(async () => {
    s = await scenario('pglite', {
      configure: raw => {
        // No shared secret: OpenID tokens stand on their own. The other server's users may manage logins, so that
        // refusing them below is the token rule's doing, not the permissions'.
        raw.console = { enabled: true, hostname: '127.0.0.1', port: 0 }
        raw.bridge.permissions['elsewhere.example'] = 'user'
      },
      homeserver: { clock: () => clock },
      console: { now: () => clock, refreshMs: 50 },
    })
    base = `http://127.0.0.1:${s.bridge.consolePort}/`
    aliceSignal = await linkedLogin(s, s.signal, ALICE, '+15550100077')
    aliceWa = await linkedLogin(s, s.whatsapp, ALICE, ALICE_WA_NUMBER)
    bobWa = await linkedLogin(s, s.whatsapp, BOB, '15550100088@s.whatsapp.net')
  })
  afterAll(async () => s?.stop())

  const userinfoCalls = (hs: FakeHomeserver) => hs.calls.filter(c => c.path === USERINFO).length
  const stillThere = async (id: string) => expect((await s.bridge.logins.get(id))?.state).toBe('connected')

  it('a user with an OpenID token from her homeserver sees only her own logins, and logs one out with it', async () => {
    const token = await openIdToken(s.hs, ALICE)
    expect(token).toMatchObject({ token_type: 'Bearer', matrix_server_name: 'example.org', expires_in: 3600 })
    const before = userinfoCalls(s.hs)

    const ids = await call(base, 'GET', '_matrix/provision/v3/logins', withOpenId(token.access_token, ALICE))
    expect(ids.status).toBe(200)
    expect(ids.body.login_ids.sort()).toEqual([aliceSignal, aliceWa].sort())
    // Without ?user_id= the token's holder is the user; she sees her numbers, and nothing of Bob's.
    const detail = await call(base, 'GET', '_relay_bridge/v1/logins', withOpenId(token.access_token))
    expect(detail.body.logins.map((l: { id: string }) => l.id).sort()).toEqual([aliceSignal, aliceWa].sort())
    expect(detail.body.logins.find((l: { id: string }) => l.id === aliceWa)).toMatchObject({ owner: ALICE, address: ALICE_WA_NUMBER })
    expect(JSON.stringify(detail.body)).not.toContain('15550100088')
    const whoami = await call(base, 'GET', '_matrix/provision/v3/whoami', withOpenId(token.access_token, ALICE))
    expect(whoami.body.logins.map((l: { id: string }) => l.id).sort()).toEqual([aliceSignal, aliceWa].sort())
    // Bob's login is answered as unknown and stays.
    const theirs = await call(base, 'POST', `_matrix/provision/v3/logout/${bobWa}`, withOpenId(token.access_token, ALICE))
    expect(theirs).toMatchObject({ status: 404, body: { errcode: 'M_NOT_FOUND' } })
    await stillThere(bobWa)
    // Four requests, one question to the homeserver: a checked token is remembered for a minute, then asked again.
    expect(userinfoCalls(s.hs) - before).toBe(1)
    clock += 61_000
    expect((await call(base, 'GET', '_matrix/provision/v3/logins', withOpenId(token.access_token, ALICE))).status).toBe(200)
    expect(userinfoCalls(s.hs) - before).toBe(2)

    // A state change needs no CSRF token with a bearer token (no cookie is involved): her spare login goes.
    const spare = await linkedLogin(s, s.whatsapp, ALICE, '15550100079@s.whatsapp.net')
    const out = await call(base, 'POST', `_matrix/provision/v3/logout/${spare}`, withOpenId(token.access_token, ALICE))
    expect(out.status).toBe(200)
    expect(await s.bridge.logins.get(spare)).toBeUndefined()
  })

  it('an unknown or expired OpenID token, or one of another user, is refused with a sentence and logs nothing out', async () => {
    const unknown = await call(base, 'POST', `_matrix/provision/v3/logout/${aliceWa}`, withOpenId('NoSuchTokenAtAllXXXXXXXX', ALICE))
    expect(unknown.status).toBe(401)
    expect(unknown.body).toEqual({ errcode: 'M_UNKNOWN_TOKEN', error: expect.stringMatching(/^Your homeserver does not know this OpenID token, or it has expired .*ask it for a new one/) })

    // A token past its hour: the homeserver no longer knows it.
    const late = await openIdToken(s.hs, ALICE)
    clock += 3600 * 1000
    const expired = await call(base, 'POST', `_matrix/provision/v3/logout/${aliceWa}`, withOpenId(late.access_token, ALICE))
    expect(expired).toMatchObject({ status: 401, body: { errcode: 'M_UNKNOWN_TOKEN' } })

    // One the bridge checked and remembers is not believed past its hour either: the memory is shorter.
    const used = await openIdToken(s.hs, ALICE)
    expect((await call(base, 'GET', '_matrix/provision/v3/logins', withOpenId(used.access_token, ALICE))).status).toBe(200)
    clock += 3600 * 1000
    const outlived = await call(base, 'POST', `_matrix/provision/v3/logout/${aliceWa}`, withOpenId(used.access_token, ALICE))
    expect(outlived).toMatchObject({ status: 401, body: { errcode: 'M_UNKNOWN_TOKEN' } })

    // Bob's valid token does not act for Alice.
    const bobs = await openIdToken(s.hs, BOB)
    const borrowed = await call(base, 'POST', `_matrix/provision/v3/logout/${aliceWa}`, withOpenId(bobs.access_token, ALICE))
    expect(borrowed.status).toBe(401)
    expect(borrowed.body.error).toMatch(/belongs to another user than @alice:example\.org/)
    const empty = await call(base, 'GET', '_matrix/provision/v3/logins', withOpenId('', ALICE))
    expect(empty).toMatchObject({ status: 401, body: { errcode: 'M_MISSING_TOKEN' } })

    await stillThere(aliceWa)
    await stillThere(aliceSignal)
  })

  it('a token from another server is not trusted for a local user, nor taken on that server\'s word for its own', async () => {
    const elsewhere = await FakeHomeserver.start({ domain: 'elsewhere.example' })
    try {
      elsewhere.createUser(STRANGER)
      const token = await openIdToken(elsewhere, STRANGER)
      expect(token.matrix_server_name).toBe('elsewhere.example')
      // Claiming Alice: our homeserver is asked, and knows no such token.
      const asAlice = await call(base, 'POST', `_matrix/provision/v3/logout/${aliceWa}`, withOpenId(token.access_token, ALICE))
      expect(asAlice).toMatchObject({ status: 401, body: { errcode: 'M_UNKNOWN_TOKEN' } })
      const unnamed = await call(base, 'POST', `_matrix/provision/v3/logout/${aliceWa}`, withOpenId(token.access_token))
      expect(unnamed).toMatchObject({ status: 401, body: { errcode: 'M_UNKNOWN_TOKEN' } })
      // Claiming its own user: refused without asking anyone, with the way in that does work.
      const own = await call(base, 'GET', '_matrix/provision/v3/logins', withOpenId(token.access_token, STRANGER))
      expect(own.status).toBe(401)
      expect(own.body.error).toMatch(/only from users of example\.org.*@mallory:elsewhere\.example is on another server.*`console`/)
      expect(userinfoCalls(elsewhere)).toBe(0)
      await stillThere(aliceWa)
    } finally {
      await elsewhere.stop()
    }
  })

  it('a homeserver that cannot answer the check is a 502 with a sentence, and nothing changes', async () => {
    const token = await openIdToken(s.hs, ALICE)
    s.hs.injectFault({ path: USERINFO, status: 500, errcode: 'M_UNKNOWN', error: 'Internal server error' })
    const failing = await call(base, 'POST', `_matrix/provision/v3/logout/${aliceWa}`, withOpenId(token.access_token, ALICE))
    expect(failing.status).toBe(502)
    expect(failing.body.error).toMatch(/could not check the OpenID token: the homeserver at http:\/\/127\.0\.0\.1:\d+ answered 500\. Try again/)
    // A listener without Synapse's openid resource answers 404 M_UNRECOGNIZED: the sentence says what to add.
    s.hs.injectFault({ path: USERINFO, status: 404, errcode: 'M_UNRECOGNIZED', error: 'Unrecognized request' })
    const missing = await call(base, 'POST', `_matrix/provision/v3/logout/${aliceWa}`, withOpenId(token.access_token, ALICE))
    expect(missing.status).toBe(502)
    expect(missing.body.error).toMatch(/does not serve \/_matrix\/federation\/v1\/openid\/userinfo.*`openid` resource.*console\.openid_address/)
    s.hs.offline = true
    try {
      const down = await call(base, 'POST', `_matrix/provision/v3/logout/${aliceWa}`, withOpenId(token.access_token, ALICE))
      expect(down.status).toBe(502)
      expect(down.body.error).toMatch(/the homeserver at .* did not answer \(.+\)\. Try again shortly\./)
    } finally {
      s.hs.offline = false
    }
    await stillThere(aliceWa)
    // Once the homeserver answers, the same token works.
    expect((await call(base, 'GET', '_matrix/provision/v3/logins', withOpenId(token.access_token, ALICE))).status).toBe(200)
  })

  it('the OpenAPI document parses and offers the OpenID way beside the shared secret and the console session', () => {
    const doc = parse(readFileSync(new URL('../../docs/provisioning-api.yaml', import.meta.url), 'utf8')) as {
      security: unknown[]; components: { securitySchemes: Record<string, { description: string }> }
    }
    expect(Object.keys(doc.components.securitySchemes)).toEqual(['sharedSecret', 'matrixOpenId', 'consoleSession'])
    expect(doc.security).toContainEqual({ matrixOpenId: [] })
    expect(doc.components.securitySchemes['matrixOpenId']!.description).toMatch(/openid:.*\/_matrix\/federation\/v1\/openid\/userinfo/)
  })
})
