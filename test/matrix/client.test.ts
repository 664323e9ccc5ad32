// The bridge's homeserver client, proven against the strict fake homeserver (and, for what the fake never
// does, a one-off HTTP server).
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import {
  AppservicePingError,
  classifyMatrixError,
  MatrixApiError,
  MatrixClientApi,
  MatrixConnectionError,
  matrixDeliveryError,
  type HomeserverApi,
} from '../../src/matrix/client.ts'
import { FakeHomeserver, type FakeHomeserverOptions } from '../fakes/homeserver.ts'
import { RecordingAppservice } from '../fakes/homeserver/recording-appservice.ts'

const silent = pino({ level: 'silent' })
const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!()
})

async function setup(opts: FakeHomeserverOptions = {}): Promise<{ hs: FakeHomeserver; api: HomeserverApi }> {
  const hs = await FakeHomeserver.start(opts)
  cleanups.push(() => hs.stop())
  const api = new MatrixClientApi({
    homeserverUrl: hs.url, asToken: hs.registration.as_token, domain: hs.domain,
    botLocalpart: hs.registration.sender_localpart, log: silent,
  })
  return { hs, api }
}

async function caught(p: Promise<unknown>): Promise<unknown> {
  try {
    await p
  } catch (err) {
    return err
  }
  throw new Error('expected a rejection')
}

/** A room created by a real user with the bot and a registered ghost joined. */
async function portal(hs: FakeHomeserver, api: HomeserverApi, ghost = '@signal_alice:example.org') {
  hs.createUser('@admin:example.org')
  await api.registerUser(ghost.slice(1, ghost.indexOf(':')))
  const room = await hs.createRoom('@admin:example.org', { invite: [api.botUserId, ghost] })
  await api.join(api.botUserId, room)
  await api.join(ghost, room)
  return room
}

describe('registration and identity assertion', () => {
  it('registers a ghost with inhibit_login, and a second registration counts as success (M_USER_IN_USE)', async () => {
    const { hs, api } = await setup()
    expect(await api.registerUser('signal_4f2a')).toBe('created')
    expect(await api.registerUser('signal_4f2a')).toBe('exists')
    const calls = hs.calls.filter((c) => c.path === '/_matrix/client/v3/register')
    expect(calls.map((c) => c.status)).toEqual([200, 400])
    expect(calls[0]!.body).toEqual({ type: 'm.login.application_service', username: 'signal_4f2a', inhibit_login: true })
    expect(calls[1]!.response).toMatchObject({ errcode: 'M_USER_IN_USE' })
  })

  it('refuses to register a localpart outside the namespaces with M_EXCLUSIVE, a permanent error', async () => {
    const { api } = await setup()
    const err = await caught(api.registerUser('alice'))
    expect(err).toBeInstanceOf(MatrixApiError)
    expect(err).toMatchObject({ status: 400, errcode: 'M_EXCLUSIVE' })
    expect(classifyMatrixError(err)).toBe('permanent')
  })

  it('refuses masquerading as a namespaced user until that user is registered', async () => {
    const { api } = await setup()
    const ghost = '@whatsapp_77:example.org'
    const err = await caught(api.whoami(ghost))
    expect(err).toMatchObject({ status: 403, errcode: 'M_FORBIDDEN' })
    expect((err as MatrixApiError).error).toContain('has not registered this user')
    await api.registerUser('whatsapp_77')
    expect(await api.whoami(ghost)).toEqual({ userId: ghost })
  })

  it('refuses masquerading outside the namespaces, and acts as the bot without user_id', async () => {
    const { hs, api } = await setup()
    hs.createUser('@alice:example.org')
    const err = await caught(api.whoami('@alice:example.org'))
    expect(err).toMatchObject({ status: 403, errcode: 'M_FORBIDDEN' })
    expect((err as MatrixApiError).error).toContain('cannot masquerade')
    expect(await api.whoami()).toEqual({ userId: '@relaybot:example.org' })
  })

  it('a wrong as_token is 401 M_UNKNOWN_TOKEN: permanent', async () => {
    const { hs } = await setup()
    const api = new MatrixClientApi({ homeserverUrl: hs.url, asToken: 'wrong', domain: hs.domain, botLocalpart: 'relaybot', log: silent })
    const err = await caught(api.whoami())
    expect(err).toMatchObject({ status: 401, errcode: 'M_UNKNOWN_TOKEN' })
    expect(classifyMatrixError(err)).toBe('permanent')
  })

  it('sets and reads a ghost profile; an unknown user has none', async () => {
    const { hs, api } = await setup()
    await api.registerUser('signal_bob')
    await api.setDisplayName('@signal_bob:example.org', 'Bob (Signal)')
    await api.setAvatarUrl('@signal_bob:example.org', 'mxc://example.org/abc')
    expect(await api.getProfile('@signal_bob:example.org')).toEqual({ displayName: 'Bob (Signal)', avatarUrl: 'mxc://example.org/abc' })
    expect(await api.getProfile('@nobody:example.org')).toBeUndefined()
    expect(hs.calls.find((c) => c.path.endsWith('/displayname'))?.query['user_id']).toBe('@signal_bob:example.org')
  })
})

describe('rooms and events', () => {
  it('sends as a ghost with the origin timestamp, and a retried txnId gives the same event once', async () => {
    const { hs, api } = await setup()
    const room = await portal(hs, api)
    const ts = 1_700_000_000_123
    const content = { msgtype: 'm.text', body: 'hi from Signal' }
    const first = await api.sendEvent('@signal_alice:example.org', room, 'm.room.message', content, 'sig-1', ts)
    const again = await api.sendEvent('@signal_alice:example.org', room, 'm.room.message', content, 'sig-1', ts)
    expect(again).toBe(first)
    expect(first).toMatch(/^\$[A-Za-z0-9_-]{43}$/)
    const sent = hs.timeline(room).filter((e) => e.type === 'm.room.message')
    expect(sent).toHaveLength(1)
    expect(sent[0]).toMatchObject({ event_id: first, sender: '@signal_alice:example.org', origin_server_ts: ts, content })
    const call = hs.calls.find((c) => c.method === 'PUT' && c.path.includes('/send/'))!
    expect(call.query).toMatchObject({ user_id: '@signal_alice:example.org', ts: String(ts) })
  })

  it('ghosts sending at the same time each send as themselves (no shared impersonation state)', async () => {
    const { hs, api } = await setup()
    const room = await portal(hs, api)
    await api.registerUser('whatsapp_bob')
    await api.invite(api.botUserId, room, '@whatsapp_bob:example.org')
    await api.join('@whatsapp_bob:example.org', room)
    const senders = Array.from({ length: 20 }, (_, i) => (i % 2 ? '@signal_alice:example.org' : '@whatsapp_bob:example.org'))
    const ids = await Promise.all(senders.map((s, i) => api.sendEvent(s, room, 'm.room.message', { msgtype: 'm.text', body: `${s} ${i}` }, `t${i}`)))
    const byId = new Map(hs.timeline(room).map((e) => [e.event_id, e]))
    ids.forEach((id, i) => expect(byId.get(id)).toMatchObject({ sender: senders[i], content: { body: `${senders[i]} ${i}` } }))
  })

  it('sending into a room the ghost has not joined is 403, permanent', async () => {
    const { hs, api } = await setup()
    hs.createUser('@admin:example.org')
    await api.registerUser('signal_carol')
    const room = await hs.createRoom('@admin:example.org', { invite: ['@signal_carol:example.org'] })
    const err = await caught(api.sendEvent('@signal_carol:example.org', room, 'm.room.message', { msgtype: 'm.text', body: 'x' }, 't1'))
    expect(err).toMatchObject({ status: 403, errcode: 'M_FORBIDDEN' })
    expect(classifyMatrixError(err)).toBe('permanent')
  })

  it('joining an invite-only room needs an invite', async () => {
    const { hs, api } = await setup()
    hs.createUser('@admin:example.org')
    const room = await hs.createRoom('@admin:example.org')
    expect(await caught(api.join(api.botUserId, room))).toMatchObject({ status: 403, errcode: 'M_FORBIDDEN' })
    await hs.invite('@admin:example.org', room, api.botUserId)
    expect(await api.join(api.botUserId, room)).toBe(room)
    expect(hs.membership(room, api.botUserId)).toBe('join')
  })

  it('writes and reads state (m.bridge with a state key, m.room.name with the empty key); missing state is undefined', async () => {
    const { hs, api } = await setup()
    hs.createUser('@admin:example.org')
    const room = await api.createRoom(api.botUserId, { name: 'Family', invite: ['@admin:example.org'], preset: 'private_chat' })
    const info = { bridgebot: api.botUserId, protocol: { id: 'signal', displayname: 'Signal' }, channel: { id: 'g1' } }
    await api.sendState(api.botUserId, room, 'm.bridge', 'sig-wa-relay://signal/g1', info)
    expect(await api.getState(room, 'm.bridge', 'sig-wa-relay://signal/g1')).toEqual(info)
    expect(await api.getState(room, 'm.bridge', 'sig-wa-relay://whatsapp/x')).toBeUndefined()
    await api.sendState(api.botUserId, room, 'm.room.name', '', { name: 'Family (bridged)' })
    expect(await api.getState(room, 'm.room.name')).toEqual({ name: 'Family (bridged)' })
    expect((await api.getPowerLevels(room))?.users?.[api.botUserId]).toBe(100)
    expect(hs.membership(room, '@admin:example.org')).toBe('invite')
  })

  it('a ghost without power cannot write state: 403', async () => {
    const { hs, api } = await setup()
    const room = await portal(hs, api)
    const err = await caught(api.sendState('@signal_alice:example.org', room, 'm.bridge', 'k', { a: 1 }))
    expect(err).toMatchObject({ status: 403, errcode: 'M_FORBIDDEN' })
  })

  it('redacts its own message (room v11: the target is in content.redacts)', async () => {
    const { hs, api } = await setup()
    const room = await portal(hs, api)
    const target = await api.sendEvent('@signal_alice:example.org', room, 'm.room.message', { msgtype: 'm.text', body: 'oops' }, 't1')
    const redaction = await api.redact('@signal_alice:example.org', room, target, 'r1', 'deleted on Signal')
    expect(await api.redact('@signal_alice:example.org', room, target, 'r1', 'deleted on Signal')).toBe(redaction)
    const tl = hs.timeline(room)
    expect(tl.find((e) => e.event_id === redaction)).toMatchObject({ type: 'm.room.redaction', content: { redacts: target, reason: 'deleted on Signal' } })
    expect(tl.find((e) => e.event_id === redaction)!.redacts).toBeUndefined()
    expect(tl.find((e) => e.event_id === target)!.content).toEqual({})
  })

  it('in room version 10 the redaction target is top-level', async () => {
    const { hs, api } = await setup({ roomVersion: '10' })
    const room = await portal(hs, api)
    const target = await api.sendEvent('@signal_alice:example.org', room, 'm.room.message', { msgtype: 'm.text', body: 'x' }, 't1')
    const redaction = await api.redact('@signal_alice:example.org', room, target, 'r1')
    const ev = hs.timeline(room).find((e) => e.event_id === redaction)!
    expect(ev.redacts).toBe(target)
    expect(ev.content['redacts']).toBeUndefined()
  })

  it('lists joined members with their room display names', async () => {
    const { hs, api } = await setup()
    const room = await portal(hs, api)
    await api.setDisplayName('@signal_alice:example.org', 'Alice (Signal)')
    const members = await api.getJoinedMembers(room)
    expect(Object.keys(members).sort()).toEqual(['@admin:example.org', '@relaybot:example.org', '@signal_alice:example.org'])
    expect(members['@signal_alice:example.org']).toEqual({ displayName: 'Alice (Signal)' })
  })
})

describe('media', () => {
  const png = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex')

  it('uploads and downloads through the authenticated endpoint', async () => {
    const { hs, api } = await setup()
    const mxc = await api.uploadMedia(png, 'image/png', 'cat.png')
    expect(mxc).toMatch(/^mxc:\/\/example\.org\/\w+$/)
    expect(hs.media(mxc)).toMatchObject({ mimetype: 'image/png', filename: 'cat.png' })
    const got = await api.downloadMedia(mxc)
    expect(got.mimetype).toBe('image/png')
    expect(Buffer.compare(got.data, png)).toBe(0)
    expect(hs.calls.filter((c) => c.path.includes('/download/')).map((c) => c.path.split('/download/')[0])).toEqual(['/_matrix/client/v1/media'])
  })

  it('falls back to /_matrix/media/v3/download on a server without authenticated media, and remembers it', async () => {
    const { hs, api } = await setup({ authenticatedMedia: false })
    const mxc = await api.uploadMedia(png, 'image/png')
    expect(Buffer.compare((await api.downloadMedia(mxc)).data, png)).toBe(0)
    expect(Buffer.compare((await api.downloadMedia(mxc)).data, png)).toBe(0)
    const paths = hs.calls.filter((c) => c.path.includes('/download/')).map((c) => `${c.path.split('/download/')[0]} ${c.status}`)
    expect(paths).toEqual(['/_matrix/client/v1/media 404', '/_matrix/media/v3 200', '/_matrix/media/v3 200'])
  })

  it('missing media is a permanent 404', async () => {
    const { api } = await setup()
    const err = await caught(api.downloadMedia('mxc://example.org/doesnotexist'))
    expect(err).toMatchObject({ status: 404, errcode: 'M_NOT_FOUND' })
    expect(classifyMatrixError(err)).toBe('permanent')
    expect(classifyMatrixError(await caught(api.downloadMedia('https://not-mxc')))).toBe('permanent')
  })
})

describe('appservice ping', () => {
  async function withAs(opts: FakeHomeserverOptions = {}) {
    const as = await RecordingAppservice.start()
    cleanups.push(() => as.stop())
    const env = await setup(opts)
    env.hs.setAppserviceUrl(as.url)
    return { ...env, as }
  }

  it('succeeds and the appservice sees the same transaction_id', async () => {
    const { api, as } = await withAs()
    const res = await api.pingAppservice('relay', 'ping-123')
    expect(res).toEqual({ durationMs: expect.any(Number) })
    expect(as.requests.find((r) => r.path === '/_matrix/app/v1/ping')).toMatchObject({
      method: 'POST', body: { transaction_id: 'ping-123' }, authorization: 'Bearer hs_token_fake_0123456789abcdef',
    })
  })

  it('is "unsupported" on an old homeserver (400 M_UNRECOGNIZED)', async () => {
    const { api } = await withAs({ pingSupported: false })
    expect(await api.pingAppservice('relay', 'p')).toBe('unsupported')
  })

  it('reports M_BAD_STATUS with the appservice status', async () => {
    const { api, as } = await withAs()
    as.pingAnswer = 403
    const err = await caught(api.pingAppservice('relay', 'p'))
    expect(err).toBeInstanceOf(AppservicePingError)
    expect(err).toMatchObject({ failure: 'bad_status', status: 502, errcode: 'M_BAD_STATUS', appserviceStatus: 403 })
    expect((err as AppservicePingError).hint).toMatch(/hs_token/)
  })

  it('reports M_CONNECTION_TIMEOUT when the appservice never answers', async () => {
    const { api, as } = await withAs({ pingTimeoutMs: 150 })
    as.pingAnswer = 'hang'
    expect(await caught(api.pingAppservice('relay', 'p'))).toMatchObject({ failure: 'connection_timeout', status: 504 })
  })

  it('reports M_CONNECTION_FAILED when nothing listens, M_URL_NOT_SET without a url, M_FORBIDDEN for another id', async () => {
    const { hs, api, as } = await withAs()
    await as.stop()
    expect(await caught(api.pingAppservice('relay', 'p'))).toMatchObject({ failure: 'connection_failed', errcode: 'M_CONNECTION_FAILED' })
    hs.setAppserviceUrl(null)
    expect(await caught(api.pingAppservice('relay', 'p'))).toMatchObject({ failure: 'url_not_set', status: 400 })
    expect(await caught(api.pingAppservice('someone-else', 'p'))).toMatchObject({ failure: 'forbidden', status: 403 })
  })
})

describe('error classification', () => {
  it('an unreachable homeserver is a transient connection error', async () => {
    const probe = createServer()
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()))
    const port = (probe.address() as AddressInfo).port
    await new Promise<void>((r) => probe.close(() => r()))
    const api = new MatrixClientApi({ homeserverUrl: `http://127.0.0.1:${port}`, asToken: 't', domain: 'example.org', botLocalpart: 'relaybot', log: silent })
    const err = await caught(api.whoami())
    expect(err).toBeInstanceOf(MatrixConnectionError)
    expect(err).toMatchObject({ kind: 'connection', code: 'ECONNREFUSED' })
    expect(classifyMatrixError(err)).toBe('transient')
  })

  it('429 M_LIMIT_EXCEEDED carries retryAfterMs and is transient; 5xx transient; other 4xx permanent', async () => {
    const answers = [
      [429, { errcode: 'M_LIMIT_EXCEEDED', error: 'Too many requests', retry_after_ms: 1500 }],
      [502, '<html>bad gateway</html>'],
      [404, { errcode: 'M_NOT_FOUND', error: 'nope' }],
    ] as const
    let i = 0
    const server = createServer((_req, res) => {
      const [status, body] = answers[i++]!
      res.writeHead(status, { 'Content-Type': typeof body === 'string' ? 'text/html' : 'application/json' })
      res.end(typeof body === 'string' ? body : JSON.stringify(body))
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
    cleanups.push(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()) }))
    const api = new MatrixClientApi({ homeserverUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, asToken: 't', domain: 'example.org', botLocalpart: 'relaybot', log: silent })
    const limited = await caught(api.whoami())
    expect(limited).toMatchObject({ status: 429, errcode: 'M_LIMIT_EXCEEDED', retryAfterMs: 1500 })
    expect(classifyMatrixError(limited)).toBe('transient')
    const gateway = await caught(api.whoami())
    expect(gateway).toMatchObject({ status: 502, errcode: undefined })
    expect(classifyMatrixError(gateway)).toBe('transient')
    expect(classifyMatrixError(await caught(api.whoami()))).toBe('permanent')
  })
})

describe('the HTTP client (what the move from axios to node:http had to keep)', () => {
  it('a homeserver that takes the request and never answers fails the call after requestTimeoutMs: transient', async () => {
    const hs = await FakeHomeserver.start()
    cleanups.push(() => hs.stop())
    const api = new MatrixClientApi({ homeserverUrl: hs.url, asToken: hs.registration.as_token, domain: hs.domain, botLocalpart: 'relaybot', log: silent, requestTimeoutMs: 200 })
    hs.hang()
    const err = await caught(api.whoami())
    expect(hs.hungRequests).toEqual(['GET /_matrix/client/v3/account/whoami'])
    expect(err).toBeInstanceOf(MatrixConnectionError)
    expect(classifyMatrixError(err)).toBe('transient')
  })

  it('keeps the path prefix of the homeserver URL, follows a download\'s redirect (to a CDN, without the token), and never a send\'s', async () => {
    const cdnSaw: (string | undefined)[] = []
    const cdn = createServer((req, res) => {
      cdnSaw.push(req.headers.authorization)
      res.writeHead(200, { 'Content-Type': 'image/png' })
      res.end(Buffer.from('png bytes'))
    })
    await new Promise<void>((r) => cdn.listen(0, '127.0.0.1', () => r()))
    const seen: string[] = []
    const server = createServer((req, res) => {
      seen.push(`${req.method} ${req.url} ${req.headers.authorization}`)
      req.resume()
      res.writeHead(req.method === 'GET' ? 302 : 307, { Location: `http://127.0.0.1:${(cdn.address() as AddressInfo).port}/blob` })
      res.end()
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
    cleanups.push(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()) }))
    cleanups.push(() => new Promise<void>((r) => { cdn.closeAllConnections(); cdn.close(() => r()) }))
    const api = new MatrixClientApi({ homeserverUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/matrix/`, asToken: 't', domain: 'example.org', botLocalpart: 'relaybot', log: silent })
    const got = await api.downloadMedia('mxc://example.org/abc')
    expect({ mimetype: got.mimetype, data: got.data.toString() }).toEqual({ mimetype: 'image/png', data: 'png bytes' })
    expect(cdnSaw).toEqual([undefined])
    const err = await caught(api.sendEvent('@signal_a:example.org', '!r:example.org', 'm.room.message', { body: 'x' }, 't1'))
    expect(err).toMatchObject({ status: 307 })
    expect(seen).toEqual([
      'GET /matrix/_matrix/client/v1/media/download/example.org/abc Bearer t',
      'PUT /matrix/_matrix/client/v3/rooms/!r%3Aexample.org/send/m.room.message/t1?user_id=%40signal_a%3Aexample.org Bearer t',
    ])
  })
})

describe('the wait a rate limit asks for', () => {
  /** A homeserver that answers every call with this 429. */
  async function limitedBy(body: Record<string, unknown>, headers: Record<string, string>): Promise<MatrixClientApi> {
    const server = createServer((_req, res) => {
      res.writeHead(429, { ...headers, 'Content-Type': 'application/json' })
      res.end(JSON.stringify(body))
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
    cleanups.push(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()) }))
    return new MatrixClientApi({ homeserverUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, asToken: 't', domain: 'example.org', botLocalpart: 'relaybot', log: silent })
  }
  const limit = { errcode: 'M_LIMIT_EXCEEDED', error: 'Too Many Requests' }

  it('both forms (Synapse since MSC4041): the body\'s retry_after_ms, exact to the millisecond, not the header\'s whole seconds', async () => {
    const api = await limitedBy({ ...limit, retry_after_ms: 1500 }, { 'Retry-After': '2' })
    expect(await caught(api.sendEvent('@signal_a:example.org', '!r:example.org', 'm.room.message', { body: 'x' }, 't1'))).toMatchObject({ status: 429, retryAfterMs: 1500 })
    expect(await caught(api.uploadMedia(Buffer.from('x'), 'text/plain'))).toMatchObject({ status: 429, retryAfterMs: 1500 })
  })

  it('only the Retry-After header (seconds): its wait, in milliseconds', async () => {
    const api = await limitedBy(limit, { 'Retry-After': '3' })
    const err = await caught(api.join('@signal_a:example.org', '!r:example.org'))
    expect(err).toMatchObject({ status: 429, retryAfterMs: 3000 })
    expect(matrixDeliveryError(err)).toMatchObject({ disposition: 'transient', retryAfterMs: 3000 })
  })

  it('only the body: retry_after_ms', async () => {
    const api = await limitedBy({ ...limit, retry_after_ms: 250 }, {})
    expect(await caught(api.setDisplayName('@signal_a:example.org', 'A (Signal)'))).toMatchObject({ status: 429, retryAfterMs: 250 })
  })
})

describe('logging', () => {
  it('logs a failed homeserver call without tokens or bodies', async () => {
    const lines: string[] = []
    const sink = new Writable({ write(chunk: Buffer, _enc, cb) { lines.push(chunk.toString()); cb() } })
    const log = pino({ level: 'debug' }, sink)
    const hs = await FakeHomeserver.start()
    cleanups.push(() => hs.stop())
    const api = new MatrixClientApi({ homeserverUrl: hs.url, asToken: hs.registration.as_token, domain: hs.domain, botLocalpart: 'relaybot', log })
    await api.registerUser('signal_secretive')
    await caught(api.registerUser('secret_body_text'))
    const all = lines.join('')
    expect(all).toContain('homeserver call failed')
    expect(all).not.toContain(hs.registration.as_token)
    expect(all).not.toContain('secret_body_text')
  })
})

describe('faults injected into the fake homeserver', () => {
  it('a rate-limited send is transient with retryAfterMs, and the retry with the same txnId lands once', async () => {
    const { hs, api } = await setup()
    const room = await portal(hs, api)
    hs.injectFault({ path: '/send/', status: 429, errcode: 'M_LIMIT_EXCEEDED', retryAfterMs: 40 })
    const send = () => api.sendEvent('@signal_alice:example.org', room, 'm.room.message', { msgtype: 'm.text', body: 'x' }, 'same')
    const err = await caught(send())
    expect(err).toMatchObject({ status: 429, retryAfterMs: 40 })
    expect(classifyMatrixError(err)).toBe('transient')
    await send()
    await send()
    expect(hs.timeline(room).filter((e) => e.type === 'm.room.message')).toHaveLength(1)
  })

  it('an offline homeserver drops connections: transient', async () => {
    const { hs, api } = await setup()
    hs.offline = true
    const err = await caught(api.whoami())
    expect(err).toBeInstanceOf(MatrixConnectionError)
    expect(classifyMatrixError(err)).toBe('transient')
    hs.offline = false
    expect(await api.whoami()).toEqual({ userId: api.botUserId })
  })
})
