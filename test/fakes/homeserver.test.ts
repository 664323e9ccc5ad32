// The fake homeserver's transaction pushing, proven against a tiny recording appservice: the behaviour
// the bridge's idempotency rests on (same txnId and body until a 2xx, order, restarts at 1, echoes).
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { MatrixClientApi } from '../../src/matrix/client.ts'
import { FakeHomeserver, MatrixFault, type FakeHomeserverOptions } from './homeserver.ts'
import { RecordingAppservice } from './homeserver/recording-appservice.ts'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!()
})

const ADMIN = '@admin:example.org'

async function setup(opts: FakeHomeserverOptions = {}) {
  const as = await RecordingAppservice.start()
  const hs = await FakeHomeserver.start(opts)
  cleanups.push(() => as.stop(), () => hs.stop())
  hs.setAppserviceUrl(as.url)
  hs.createUser(ADMIN, { displayname: 'Admin' })
  const api = new MatrixClientApi({
    homeserverUrl: hs.url, asToken: hs.registration.as_token, domain: hs.domain, botLocalpart: 'relaybot', log: pino({ level: 'silent' }),
  })
  return { as, hs, api }
}

/** A room the bot has joined, so everything in it is pushed. */
async function botRoom(hs: FakeHomeserver, api: MatrixClientApi): Promise<string> {
  const room = await hs.createRoom(ADMIN, { invite: [api.botUserId], name: 'Family' })
  await api.join(api.botUserId, room)
  return room
}

const bodies = (as: RecordingAppservice) => as.accepted.flatMap((t) => (t.body['events'] as { content: { body?: string } }[]))

describe('transaction pushing', () => {
  it('retries the same txnId with a byte-identical body until the appservice answers 200', async () => {
    const { as, hs, api } = await setup()
    as.failNext = 3
    const room = await botRoom(hs, api)
    await hs.waitForPushIdle()
    const puts = as.requests.filter((r) => r.method === 'PUT')
    expect(puts.slice(0, 4).map((r) => r.path)).toEqual(Array(4).fill('/_matrix/app/v1/transactions/1'))
    expect(new Set(puts.slice(0, 4).map((r) => r.text)).size).toBe(1)
    expect(puts.every((r) => r.authorization === `Bearer ${hs.registration.hs_token}` && r.query['access_token'] === undefined)).toBe(true)
    expect(hs.transactions.slice(0, 4).map((t) => [t.txnId, t.attempt, t.status])).toEqual([['1', 1, 500], ['1', 2, 500], ['1', 3, 500], ['1', 4, 200]])
    // Everything about the room reached the appservice exactly once, starting with the invite.
    const events = hs.pushedEvents
    expect(new Set(events.map((e) => e.event_id)).size).toBe(events.length)
    expect(events[0]).toMatchObject({ type: 'm.room.member', state_key: api.botUserId, content: { membership: 'invite' }, room_id: room })
  })

  it('also retries when nothing listens, then delivers once the appservice is back', async () => {
    const { as, hs, api } = await setup()
    await as.stop()
    hs.setAppserviceUrl('http://127.0.0.1:1')
    await hs.createRoom(ADMIN, { invite: [api.botUserId] })
    await hs.waitFor(() => hs.transactions.length >= 3)
    expect(hs.transactions.every((t) => t.txnId === '1' && t.status === undefined)).toBe(true)
    const as2 = await RecordingAppservice.start()
    cleanups.push(() => as2.stop())
    hs.setAppserviceUrl(as2.url)
    await as2.waitFor(() => as2.accepted.length === 1)
    expect(as2.accepted[0]!.txnId).toBe('1')
  })

  it('pushes one transaction at a time, in order', async () => {
    const { as, hs, api } = await setup({ maxEventsPerTransaction: 2 })
    as.delayMs = 15
    const room = await botRoom(hs, api)
    for (let i = 0; i < 9; i++) await hs.sendMessage(ADMIN, room, `m${i}`)
    await hs.waitFor(() => bodies(as).filter((c) => c.content.body?.startsWith('m')).length === 9)
    expect(as.maxConcurrent).toBe(1)
    expect(bodies(as).map((e) => e.content.body).filter((b) => b?.startsWith('m'))).toEqual(Array.from({ length: 9 }, (_, i) => `m${i}`))
    expect(as.accepted.map((t) => Number(t.txnId))).toEqual(as.accepted.map((_, i) => i + 1))
    expect(as.accepted.every((t) => (t.body['events'] as unknown[]).length <= 2)).toBe(true)
  })

  it('pushes one transaction after another over one kept-alive connection, as Synapse\'s connection pool does', async () => {
    const { as, hs, api } = await setup()
    const room = await botRoom(hs, api)
    for (let i = 0; i < 5; i++) {
      await hs.sendMessage(ADMIN, room, `k${i}`)
      await hs.waitForPushIdle()
    }
    expect(bodies(as).filter((c) => c.content.body?.startsWith('k'))).toHaveLength(5)
    expect(as.accepted.length).toBeGreaterThanOrEqual(5)
    expect(as.connections).toBe(1)
  })

  it('legacy mode: un-prefixed path with ?access_token= and no Authorization header', async () => {
    const { as, hs, api } = await setup({ transactionStyle: 'legacy' })
    await botRoom(hs, api)
    await hs.waitForPushIdle()
    const put = as.requests.find((r) => r.method === 'PUT')!
    expect(put.path).toBe('/transactions/1')
    expect(put.query['access_token']).toBe(hs.registration.hs_token)
    expect(put.authorization).toBeUndefined()
  })

  it('can restart txn ids at 1, like Synapse on SQLite after a restart', async () => {
    const { as, hs, api } = await setup()
    const room = await botRoom(hs, api)
    await hs.waitForPushIdle()
    await hs.sendMessage(ADMIN, room, 'before restart')
    await hs.waitForPushIdle()
    const before = as.accepted.map((t) => t.txnId)
    hs.resetTxnIds()
    await hs.sendMessage(ADMIN, room, 'after restart')
    await hs.waitForPushIdle()
    const last = as.accepted.at(-1)!
    expect(before).toContain('1')
    expect(last.txnId).toBe('1')
    expect((last.body['events'] as { content: { body: string } }[])[0]!.content.body).toBe('after restart')
  })

  it('echoBeforeAnswer: a ghost\'s send is answered only after the appservice acknowledged the transaction with its echo', async () => {
    const { as, hs, api } = await setup({ echoBeforeAnswer: true })
    const room = await botRoom(hs, api)
    await hs.waitForPushIdle()
    as.failNext = 2 // the echo needs retries: the answer waits for them
    const eventId = await api.sendEvent(api.botUserId, room, 'm.room.message', { msgtype: 'm.text', body: 'echo first' }, 't-echo')
    const echoed = as.accepted.flatMap((t) => t.body['events'] as { event_id: string; unsigned?: Record<string, unknown> }[])
    expect(echoed.find((e) => e.event_id === eventId)?.unsigned?.['transaction_id']).toBe('t-echo')
    expect(hs.transactions.filter((t) => t.body.events.some((e) => e.event_id === eventId)).map((t) => t.status)).toEqual([500, 500, 200])
  })

  it('rateLimits: exempt while rate_limited is false; with true, a burst then 429 M_LIMIT_EXCEEDED with both forms of the wait', async () => {
    const { hs, api } = await setup({ rateLimits: { message: { perSecond: 0.5, burstCount: 2 } } })
    const room = await botRoom(hs, api)
    const send = (txn: string) => api.sendEvent(api.botUserId, room, 'm.room.message', { msgtype: 'm.text', body: txn }, txn)
    for (let i = 0; i < 5; i++) await send(`free${i}`)
    expect(hs.limiter!.refusals).toEqual([])
    hs.registration.rate_limited = true
    await send('a')
    await send('b')
    const err = await send('c').then(() => undefined, (e: unknown) => e)
    // The bucket of 2 drains at one per 2 s: the third waits until the first has drained.
    expect(err).toMatchObject({ status: 429, errcode: 'M_LIMIT_EXCEEDED' })
    const waited = (err as { retryAfterMs: number }).retryAfterMs
    expect(waited).toBeGreaterThan(0)
    expect(waited).toBeLessThanOrEqual(2000)
    const answer = hs.calls.at(-1)!
    expect(answer).toMatchObject({ status: 429, response: { errcode: 'M_LIMIT_EXCEEDED', retry_after_ms: hs.limiter!.refusals[0]!.retryAfterMs } })
    // A retried txn id is answered from the cache, never refused.
    expect(await send('a')).toBe(hs.timeline(room).find((e) => e.content['body'] === 'a')!.event_id)
  })

  it('holds transactions while paused and sends them on resume', async () => {
    const { as, hs, api } = await setup()
    const room = await botRoom(hs, api)
    await hs.waitForPushIdle()
    const seen = as.requests.length
    hs.pause()
    await hs.sendMessage(ADMIN, room, 'held')
    expect(hs.pushIdle).toBe(false)
    expect(as.requests.length).toBe(seen)
    hs.resume()
    await as.waitFor(() => bodies(as).some((e) => e.content.body === 'held'))
  })

  it('only pushes events from rooms with an appservice user in them, plus invites to its users', async () => {
    const { as, hs, api } = await setup()
    const quiet = await hs.createRoom(ADMIN, { name: 'not bridged' })
    await hs.sendMessage(ADMIN, quiet, 'private')
    const room = await botRoom(hs, api)
    await hs.sendMessage(ADMIN, room, 'public')
    await as.waitFor(() => bodies(as).some((e) => e.content.body === 'public'))
    expect(bodies(as).some((e) => e.content.body === 'private')).toBe(false)
    expect(hs.pushedEvents.every((e) => e.room_id === room)).toBe(true)
  })

  it('echoes what the appservice sent, with unsigned.transaction_id', async () => {
    const { hs, api } = await setup()
    const room = await botRoom(hs, api)
    const id = await api.sendEvent(api.botUserId, room, 'm.room.message', { msgtype: 'm.notice', body: 'hello' }, 'txn-abc', 1234)
    const echo = await hs.waitFor(() => hs.pushedEvents.find((e) => e.event_id === id))
    expect(echo).toMatchObject({ sender: api.botUserId, origin_server_ts: 1234, unsigned: { transaction_id: 'txn-abc' } })
    expect(hs.pushedEvents.find((e) => e.type === 'm.room.name')?.unsigned?.['transaction_id']).toBeUndefined()
  })

  it('asks the appservice about an unknown namespaced user before inviting it', async () => {
    const { as, hs } = await setup()
    await hs.createRoom(ADMIN, { invite: ['@signal_zed:example.org'] })
    expect(as.requests.find((r) => r.method === 'GET')).toMatchObject({ path: '/_matrix/app/v1/users/@signal_zed:example.org' })
  })
})

describe('ephemeral events', () => {
  for (const [mode, keys] of [['stable', ['ephemeral']], ['unstable', ['de.sorunome.msc2409.ephemeral']], ['both', ['ephemeral', 'de.sorunome.msc2409.ephemeral']]] as const) {
    it(`puts them under ${keys.join(' and ')} in ${mode} mode`, async () => {
      const { as, hs } = await setup({ ephemeralKey: mode })
      hs.sendTyping('!r:example.org', [ADMIN])
      const txn = await as.waitFor(() => as.accepted[0])
      expect(Object.keys(txn.body).sort()).toEqual(['events', ...keys].sort())
      for (const k of keys) expect(txn.body[k]).toEqual([{ type: 'm.typing', room_id: '!r:example.org', content: { user_ids: [ADMIN] } }])
    })
  }

  it('are not pushed when the registration does not ask for them', async () => {
    const { as, hs } = await setup({ registration: { receive_ephemeral: false, 'de.sorunome.msc2409.push_ephemeral': false } })
    hs.sendTyping('!r:example.org', [ADMIN])
    expect(hs.pushIdle).toBe(true)
    expect(as.requests).toEqual([])
  })
})

describe('client-server strictness', () => {
  async function raw(hs: FakeHomeserver, path: string, init: RequestInit = {}) {
    const res = await fetch(`${hs.url}${path}`, init)
    return { status: res.status, body: await res.json() as Record<string, unknown> }
  }

  it('needs the as_token', async () => {
    const { hs } = await setup()
    expect(await raw(hs, '/_matrix/client/v3/account/whoami')).toMatchObject({ status: 401, body: { errcode: 'M_MISSING_TOKEN' } })
    expect(await raw(hs, '/_matrix/client/v3/account/whoami', { headers: { Authorization: 'Bearer nope' } })).toMatchObject({ status: 401, body: { errcode: 'M_UNKNOWN_TOKEN' } })
    expect(await raw(hs, '/_matrix/client/v3/nothing', { headers: { Authorization: `Bearer ${hs.registration.as_token}` } })).toMatchObject({ status: 404, body: { errcode: 'M_UNRECOGNIZED' } })
  })

  it('OpenID tokens as Synapse issues them: for oneself only, a JSON body, and userinfo names the holder until an hour has passed', async () => {
    let clock = Date.now()
    const { hs } = await setup({ clock: () => clock })
    hs.createUser('@bob:example.org')
    const { accessToken } = hs.login(ADMIN)
    const ask = (userId: string, body: string | undefined) => raw(hs, `/_matrix/client/v3/user/${encodeURIComponent(userId)}/openid/request_token`, {
      method: 'POST', headers: { Authorization: `Bearer ${accessToken}` }, ...(body === undefined ? {} : { body }),
    })
    expect(await ask('@bob:example.org', '{}')).toEqual({ status: 403, body: { errcode: 'M_FORBIDDEN', error: 'Cannot request tokens for other users.' } })
    expect(await ask(ADMIN, undefined)).toMatchObject({ status: 400, body: { errcode: 'M_NOT_JSON' } })
    const issued = await ask(ADMIN, '{}')
    expect(issued).toEqual({ status: 200, body: { access_token: expect.stringMatching(/^[A-Za-z]{24}$/), token_type: 'Bearer', matrix_server_name: 'example.org', expires_in: 3600 } })
    const userinfo = (q: string) => raw(hs, `/_matrix/federation/v1/openid/userinfo${q}`)
    expect(await userinfo(`?access_token=${issued.body['access_token']}`)).toEqual({ status: 200, body: { sub: ADMIN } })
    expect(await userinfo('')).toEqual({ status: 401, body: { errcode: 'M_MISSING_TOKEN', error: 'Access Token required' } })
    expect(await userinfo('?access_token=nope')).toEqual({ status: 401, body: { errcode: 'M_UNKNOWN_TOKEN', error: 'Access Token unknown or expired' } })
    clock += 3600 * 1000
    expect(await userinfo(`?access_token=${issued.body['access_token']}`)).toEqual({ status: 401, body: { errcode: 'M_UNKNOWN_TOKEN', error: 'Access Token unknown or expired' } })
  })

  it('register without inhibit_login is refused like on MAS servers, allowed when configured', async () => {
    const { hs } = await setup()
    const init = (username: string): RequestInit => ({ method: 'POST', headers: { Authorization: `Bearer ${hs.registration.as_token}` }, body: JSON.stringify({ type: 'm.login.application_service', username }) })
    expect(await raw(hs, '/_matrix/client/v3/register', init('signal_a'))).toMatchObject({ status: 400, body: { errcode: 'M_APPSERVICE_LOGIN_UNSUPPORTED' } })
    const old = await FakeHomeserver.start({ requireInhibitLogin: false })
    cleanups.push(() => old.stop())
    expect(await raw(old, '/_matrix/client/v3/register', init('signal_a'))).toMatchObject({ status: 200, body: { user_id: '@signal_a:example.org', access_token: expect.any(String) } })
  })

  it('helpers refuse what Synapse refuses: users in exclusive namespaces, events from non-members', async () => {
    const { hs } = await setup()
    expect(() => hs.createUser('@whatsapp_x:example.org')).toThrow(MatrixFault)
    hs.createUser('@eve:example.org')
    const room = await hs.createRoom(ADMIN)
    await expect(hs.sendMessage('@eve:example.org', room, 'hi')).rejects.toMatchObject({ errcode: 'M_FORBIDDEN' })
  })

  it('a global display name change is copied into every joined room', async () => {
    const { hs } = await setup()
    const room = await hs.createRoom(ADMIN)
    await hs.setDisplayName(ADMIN, 'The Admin')
    expect(hs.timeline(room).at(-1)).toMatchObject({ type: 'm.room.member', state_key: ADMIN, content: { membership: 'join', displayname: 'The Admin' } })
  })

  it('encrypted rooms carry m.room.encrypted from real users', async () => {
    const { hs } = await setup()
    const room = await hs.createRoom(ADMIN, { encrypted: true })
    await hs.sendMessage(ADMIN, room, 'secret')
    expect(hs.timeline(room).at(-1)).toMatchObject({ type: 'm.room.encrypted', content: { algorithm: 'm.megolm.v1.aes-sha2' } })
  })
})

describe('typing and read receipts (Synapse: handlers/typing.py, rest/client/receipts.py)', () => {
  const GHOST = '@signal_bob:example.org'

  async function roomWithGhost() {
    const { as, hs, api } = await setup()
    const room = await botRoom(hs, api)
    await api.registerUser('signal_bob')
    const said = await hs.sendMessage(ADMIN, room, 'hello')
    return { as, hs, api, room, said }
  }

  it('a ghost not joined to the room gets 403 for typing and for a receipt; once joined both work', async () => {
    const { hs, api, room, said } = await roomWithGhost()
    await expect(api.setTyping(GHOST, room, true, 15_000)).rejects.toMatchObject({ status: 403, errcode: 'M_FORBIDDEN' })
    await expect(api.sendReadReceipt(GHOST, room, said)).rejects.toMatchObject({ status: 403, errcode: 'M_FORBIDDEN' })
    await api.invite(api.botUserId, room, GHOST)
    await expect(api.setTyping(GHOST, room, true, 15_000)).rejects.toMatchObject({ status: 403 }) // invited is not joined
    await api.join(GHOST, room)
    await api.setTyping(GHOST, room, true, 15_000)
    await api.sendReadReceipt(GHOST, room, said)
    expect(hs.typingIn(room)).toEqual([GHOST])
    expect(hs.receiptsIn(room)[GHOST]?.eventId).toBe(said)
  })

  it('typing for another user is refused; typing stops when told or when its timeout runs out, and the appservice is told each change', async () => {
    const { as, hs, api, room } = await roomWithGhost()
    const res = await fetch(`${hs.url}/_matrix/client/v3/rooms/${encodeURIComponent(room)}/typing/${encodeURIComponent(ADMIN)}`, {
      method: 'PUT', headers: { Authorization: `Bearer ${hs.registration.as_token}` }, body: JSON.stringify({ typing: true }),
    })
    expect(res.status).toBe(400)
    await api.setTyping(api.botUserId, room, true, 60_000)
    await api.setTyping(api.botUserId, room, false, 0)
    expect(hs.typingIn(room)).toEqual([])
    await api.setTyping(api.botUserId, room, true, 50)
    await hs.waitFor(() => hs.typingIn(room).length === 0, { what: 'the typing timeout to run out' })
    const typings = () => as.accepted.flatMap(t => (t.body['ephemeral'] as Array<{ type: string; content: { user_ids: string[] } }> | undefined) ?? []).filter(e => e.type === 'm.typing')
    await as.waitFor(() => typings().length >= 4)
    expect(typings().map(e => e.content.user_ids)).toEqual([[api.botUserId], [], [api.botUserId], []])
  })

  it('a receipt needs a JSON body, a known type and a valid event id; one for an unknown event is ignored, an older one does not replace a newer', async () => {
    const { hs, api, room, said } = await roomWithGhost()
    await api.invite(api.botUserId, room, GHOST)
    await api.join(GHOST, room)
    const later = await hs.sendMessage(ADMIN, room, 'later')
    const post = (type: string, eventId: string, body?: string) => fetch(`${hs.url}/_matrix/client/v3/rooms/${encodeURIComponent(room)}/receipt/${type}/${encodeURIComponent(eventId)}?user_id=${encodeURIComponent(GHOST)}`, {
      method: 'POST', headers: { Authorization: `Bearer ${hs.registration.as_token}` }, ...(body !== undefined ? { body } : {}),
    }).then(r => r.status)
    expect(await post('m.read', later)).toBe(400) // no body
    expect(await post('m.unread', later, '{}')).toBe(400)
    expect(await post('m.read', 'not-an-event', '{}')).toBe(400)
    expect(await post('m.read', '$unknown', '{}')).toBe(200)
    expect(hs.receiptsIn(room)[GHOST]).toBeUndefined()
    await api.sendReadReceipt(GHOST, room, later)
    await api.sendReadReceipt(GHOST, room, said)
    expect(hs.receiptsIn(room)[GHOST]?.eventId).toBe(later)
  })
})

describe('Synapse’s size limits', () => {
  const text = (bytes: number, ch = 'a') => ch.repeat(Math.floor(bytes / Buffer.byteLength(ch)))
  const send = (api: MatrixClientApi, room: string, body: string, txn: string) =>
    api.sendEvent(api.botUserId, room, 'm.room.message', { msgtype: 'm.text', body }, txn)

  it('refuses an event whose PDU, with what the server adds, is over 65,536 bytes: 413 M_TOO_LARGE', async () => {
    const { hs, api } = await setup()
    const room = await botRoom(hs, api)
    // Content alone under the limit, but not with the envelope (auth and prev events, hashes, signatures…).
    await expect(send(api, room, text(65_400), 't1')).rejects.toMatchObject({ status: 413, errcode: 'M_TOO_LARGE' })
    await expect(send(api, room, text(60_000), 't2')).resolves.toMatch(/^\$/)
    expect(hs.timeline(room).filter(e => e.type === 'm.room.message')).toHaveLength(1)
  })

  it('counts bytes, not characters: 20,000 emoji are 80,000 bytes and refused; 15,000 are accepted', async () => {
    const { hs, api } = await setup()
    const room = await botRoom(hs, api)
    await expect(send(api, room, '😀'.repeat(20_000), 't1')).rejects.toMatchObject({ status: 413, errcode: 'M_TOO_LARGE' })
    await expect(send(api, room, '😀'.repeat(15_000), 't2')).resolves.toMatch(/^\$/)
  })

  it('refuses a display name over 256 characters: 400 M_UNKNOWN from the profile, M_BAD_JSON in a member event', async () => {
    const { hs, api } = await setup()
    await api.registerUser('signal_long')
    const ghost = '@signal_long:example.org'
    await expect(api.setDisplayName(ghost, 'x'.repeat(257))).rejects.toMatchObject({ status: 400, errcode: 'M_UNKNOWN' })
    // Characters are code points: 256 emoji (512 UTF-16 units) are allowed.
    await api.setDisplayName(ghost, '😀'.repeat(256))
    expect(hs.profile(ghost)?.displayname).toBe('😀'.repeat(256))
    const room = await botRoom(hs, api)
    await api.join(ghost, room).catch(async () => {
      await api.invite(api.botUserId, room, ghost)
      await api.join(ghost, room)
    })
    await expect(api.sendState(ghost, room, 'm.room.member', ghost, { membership: 'join', displayname: 'y'.repeat(300) }))
      .rejects.toMatchObject({ status: 400, errcode: 'M_BAD_JSON' })
  })
})

describe('room upgrades as Synapse does them', () => {
  it('a new room naming its predecessor, with the old state and power levels but not m.bridge; a tombstone; the old room muted', async () => {
    const { hs, api } = await setup()
    const room = await api.createRoom(api.botUserId, { name: 'Family', preset: 'private_chat', power_level_content_override: { users: { [api.botUserId]: 100, [ADMIN]: 100 } } })
    await api.sendState(api.botUserId, room, 'm.bridge', 'relay-bridge://signal/g1', { bridgebot: api.botUserId })
    await api.invite(api.botUserId, room, ADMIN)
    await hs.join(ADMIN, room)
    await api.registerUser('signal_bob')
    await api.invite(api.botUserId, room, '@signal_bob:example.org')
    await api.join('@signal_bob:example.org', room)
    const res = await fetch(`${hs.url}/_matrix/client/v3/rooms/${encodeURIComponent(room)}/upgrade?user_id=${encodeURIComponent(api.botUserId)}`, {
      method: 'POST', headers: { Authorization: `Bearer ${hs.registration.as_token}` }, body: JSON.stringify({ new_version: '11' }),
    })
    const { replacement_room: next } = await res.json() as { replacement_room: string }
    expect(res.status).toBe(200)
    expect(hs.stateContent(next, 'm.room.create')).toMatchObject({ room_version: '11', predecessor: { room_id: room } })
    expect(hs.stateContent(next, 'm.room.name')).toEqual({ name: 'Family' })
    expect(hs.powerLevel(next, ADMIN)).toBe(100)
    expect(hs.stateContent(next, 'm.bridge', 'relay-bridge://signal/g1')).toBeUndefined()
    expect(hs.joinedMembers(next)).toEqual([api.botUserId])
    expect(hs.stateContent(room, 'm.room.tombstone')).toMatchObject({ replacement_room: next })
    // Members at level 0 can no longer speak in the old room.
    await expect(api.sendEvent('@signal_bob:example.org', room, 'm.room.message', { msgtype: 'm.text', body: 'hi' }, 't1')).rejects.toMatchObject({ status: 403 })
  })

  it('refuses an upgrade by someone without the power to send a tombstone', async () => {
    const { hs } = await setup()
    hs.createUser('@eve:example.org')
    const room = await hs.createRoom(ADMIN, { invite: ['@eve:example.org'] })
    await hs.join('@eve:example.org', room)
    await expect(hs.upgradeRoom('@eve:example.org', room)).rejects.toMatchObject({ status: 403, errcode: 'M_FORBIDDEN' })
  })
})
