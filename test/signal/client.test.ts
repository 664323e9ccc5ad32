// The JSON-RPC client against the fake daemon over real HTTP, and how each error code reaches the outbox.
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { PATIENCE_MS } from '../support/patience.ts'
import axios from 'axios'
import { REQUESTS_IN_FLIGHT, SignalClient, SignalRpcError, SignalUnreachableError } from '../../src/signal/client.ts'
import { toDeliveryError } from '../../src/signal/send.ts'
import { FakeSignalDaemon } from '../fakes/signal-daemon.ts'

const RELAY = '+15550100001'
let daemon: FakeSignalDaemon
let client: SignalClient

beforeEach(async () => {
  daemon = await FakeSignalDaemon.start()
  daemon.addAccount({ number: RELAY, aci: '5f0c2a9e-3b7d-4e61-9a2c-7d1e8b4f6a30' })
  client = new SignalClient({ daemonUrl: daemon.url, timeoutMs: PATIENCE_MS })
})
afterEach(() => daemon.stop())

const rpcError = async (p: Promise<unknown>): Promise<SignalRpcError> => {
  const err = await p.then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(SignalRpcError)
  return err as SignalRpcError
}

describe('the fake daemon answers like signal-cli (§3)', () => {
  it('check is 200 for GET and 405 for POST; rpc refuses GET (405) and non-JSON (415); other paths 404', async () => {
    const http = axios.create({ baseURL: daemon.url, validateStatus: () => true })
    expect((await http.get('/api/v1/check')).status).toBe(200)
    expect((await http.post('/api/v1/check')).status).toBe(405)
    expect((await http.get('/api/v1/rpc')).status).toBe(405)
    expect((await http.post('/api/v1/rpc', 'x', { headers: { 'Content-Type': 'text/plain' } })).status).toBe(415)
    expect((await http.get('/api/v1/nothing')).status).toBe(404)
  })

  it('a notification gets 201 with an empty body; an error is HTTP 200', async () => {
    const http = axios.create({ baseURL: daemon.url, validateStatus: () => true })
    const note = await http.post('/api/v1/rpc', { jsonrpc: '2.0', method: 'version' })
    expect([note.status, note.data]).toEqual([201, ''])
    const bad = await http.post('/api/v1/rpc', { jsonrpc: '2.0', method: 'nope', id: 7 })
    expect(bad.status).toBe(200)
    expect(bad.data).toEqual({ jsonrpc: '2.0', error: { code: -32601, message: 'Method not implemented', data: null }, id: 7 })
  })

  it('a raw + in ?account= is form-decoded to a space and refused with 400; percent-encoded it streams', async () => {
    const raw = await axios.get(`${daemon.url}/api/v1/events?account=+15550100001`, { validateStatus: () => true })
    expect(raw.status).toBe(400)
    const ok = await axios.get(`${daemon.url}/api/v1/events?account=${encodeURIComponent(RELAY)}`, { responseType: 'stream' })
    expect(ok.status).toBe(200)
    expect(ok.headers['content-type']).toBe('text/event-stream')
    ok.data.destroy()
  })

  it('typed methods refuse unknown params (-32600); map-based ones ignore them; string timestamps give -32603', async () => {
    expect((await rpcError(client.call('finishLink', { deviceLinkUri: 'x', bogus: 1 }))).code).toBe(-32600)
    const g = daemon.addGroup({ name: 'G', members: [{ number: RELAY, aci: '5f0c2a9e-3b7d-4e61-9a2c-7d1e8b4f6a30' }] })
    await expect(client.call('send', { account: RELAY, groupId: g.id, message: 'x', TargetTimestamp: 5 })).resolves.toMatchObject({ results: [] })
    expect((await rpcError(client.call('remoteDelete', { account: RELAY, groupId: g.id, targetTimestamp: '5' }))).code).toBe(-32603)
  })
})

describe('client errors', () => {
  it('a JSON-RPC error becomes SignalRpcError with code, message and data.response', async () => {
    const response = { timestamp: 1, results: [{ recipientAddress: { uuid: 'u', number: null }, type: 'RATE_LIMIT_FAILURE', retryAfterSeconds: 42 }] }
    daemon.fail('send', -5, 'Failed to send message due to rate limiting', { response })
    const err = await rpcError(client.call('send', { account: RELAY }))
    expect([err.code, err.rpcMessage, err.response]).toEqual([-5, 'Failed to send message due to rate limiting', response])
    expect(err.retryAfterSeconds).toBe(42)
  })

  it('a daemon that is not there is a SignalUnreachableError, not an RPC error', async () => {
    await daemon.stop()
    await expect(client.call('version')).rejects.toBeInstanceOf(SignalUnreachableError)
    expect(await client.check()).toBe(false)
  })

  it('a daemon that takes a request and never answers fails the call as unreachable at its time limit; an aborted call fails at once', async () => {
    const taken: Array<() => void> = []
    const server = createServer((req, res) => {
      req.resume()
      taken.push(() => res.destroy())
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    try {
      const c = new SignalClient({ daemonUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, timeoutMs: 200 })
      const err = await c.call('version').then(() => undefined, (e: unknown) => e)
      expect(err).toBeInstanceOf(SignalUnreachableError)
      expect(((err as Error).cause as { code?: string }).code).toBe('ETIMEDOUT')
      const abort = new AbortController()
      const linking = c.call('finishLink', {}, { timeoutMs: 0, signal: abort.signal }).then(() => undefined, (e: unknown) => e)
      await expect.poll(() => taken.length, { timeout: PATIENCE_MS }).toBe(2)
      abort.abort()
      expect(await linking).toBeInstanceOf(SignalUnreachableError)
    } finally {
      for (const hangUp of taken) hangUp()
      await new Promise(resolve => server.close(resolve))
    }
  })
})

describe('what each answer means for the outbox (§7)', () => {
  const cases: Array<[string, number, string, unknown, string, RegExp]> = [
    ['-1 group not found is permanent and says how to re-link', -1, 'Group not found: abc', null, 'permanent', /!relay link signal/],
    ['-1 not a member is permanent', -1, 'User is not a member in group: abc', null, 'permanent', /not a member/],
    ['-1 with every recipient NETWORK_FAILURE (unlink not yet noticed) is transient', -1, 'Failed to send message',
      { response: { timestamp: 1, results: [{ recipientAddress: { uuid: 'u', number: null }, type: 'NETWORK_FAILURE' }] } }, 'transient', /retry/],
    ['-3 I/O is transient', -3, 'Failed to send message: closed', null, 'transient', /retry/],
    ['-4 untrusted identity is permanent and names the trust setting', -4, 'Failed to send message due to untrusted identities', null, 'permanent', /--trust-new-identities always/],
    ['-5 rate limit is transient', -5, 'Failed to send message due to rate limiting',
      { response: { timestamp: 1, results: [{ recipientAddress: { uuid: 'u', number: null }, type: 'RATE_LIMIT_FAILURE', retryAfterSeconds: 30 }] } }, 'transient', /rate-limiting/],
    ['-32602 account gone holds the delivery', -32602, 'Specified account does not exist', null, 'hold', /!relay login signal/],
    ['-32603 internal error is transient', -32603, 'null (NullPointerException)', null, 'transient', /retry/],
  ]
  for (const [name, code, message, data, disposition, sentence] of cases) {
    it(name, async () => {
      daemon.fail('send', code, message, data)
      const err = toDeliveryError(await rpcError(client.call('send', { account: RELAY })))
      expect(err.disposition).toBe(disposition)
      expect(err.userMessage).toMatch(sentence)
      expect(err.userMessage).not.toMatch(/\+1555/)
      if (code === -5) expect(err.retryAfterMs).toBe(30_000)
    })
  }

  it('network failure is transient', async () => {
    await daemon.stop()
    const err = toDeliveryError(await client.call('version').catch((e: unknown) => e))
    expect(err.disposition).toBe('transient')
  })
})

describe('calls made together go out as one JSON-RPC batch (§3)', () => {
  // One lane: every call made while a request is in flight waits for it (the lanes themselves: below).
  beforeEach(() => {
    client = new SignalClient({ daemonUrl: daemon.url, timeoutMs: PATIENCE_MS, requestsInFlight: 1 })
  })
  const ACI = '5f0c2a9e-3b7d-4e61-9a2c-7d1e8b4f6a30'
  const groups = (n: number) => Array.from({ length: n }, (_, i) => daemon.addGroup({ name: `G${i}`, members: [{ number: RELAY, aci: ACI }, { number: null, aci: `0000000${i}-0000-4000-8000-000000000000` }] }).id)
  const send = (groupId: string, message = 'hi') => client.call<{ timestamp: number }>('send', { account: RELAY, groupId, message })
  /** Holds the daemon's answers (the calls are carried out) until the returned function is called. */
  const holdAnswers = () => {
    let release!: () => void
    daemon.answersHeld = new Promise<void>(resolve => (release = resolve))
    return () => {
      daemon.answersHeld = undefined
      release()
    }
  }

  it('concurrent sends to different groups share one request, and each caller gets its own timestamp', async () => {
    const ids = groups(3)
    const results = await Promise.all(ids.map(id => send(id)))
    expect(daemon.rpcRequests).toEqual([3])
    // The fake answers a batch in reverse: each caller must still get the answer to its own call.
    for (const [i, id] of ids.entries()) {
      const recorded = daemon.callsOf('send').find(c => c.params.groupId === id)!
      expect(results[i]!.timestamp).toBe((recorded.result as { timestamp: number }).timestamp)
    }
    expect(new Set(results.map(r => r.timestamp)).size).toBe(3)
  })

  it('calls made while a request is in flight go out together in the next one; a lone call goes at once', async () => {
    const ids = groups(4)
    const release = holdAnswers()
    const first = send(ids[0]!)
    await daemon.until(() => daemon.calls.length === 1)
    const rest = ids.slice(1).map(id => send(id))
    // The daemon has only the first: the others wait for it to be answered.
    expect(daemon.rpcRequests).toEqual([1])
    release()
    await Promise.all([first, ...rest])
    expect(daemon.rpcRequests).toEqual([1, 3])
  })

  it('a JSON-RPC error reaches only the caller whose call failed', async () => {
    const [a, b] = groups(2)
    const settled = await Promise.allSettled([send(a!), send('no-such-group'), send(b!)])
    expect(daemon.rpcRequests).toEqual([3])
    expect(settled.map(s => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
    const err = (settled[1] as PromiseRejectedResult).reason as SignalRpcError
    expect(err).toBeInstanceOf(SignalRpcError)
    expect([err.code, err.method, err.rpcMessage]).toEqual([-1, 'send', 'Group not found: no-such-group'])
  })

  it('the daemon going away while a batch is in flight fails every call of it as unreachable', async () => {
    const ids = groups(3)
    holdAnswers()
    const calls = ids.map(id => send(id).then(() => undefined, (e: unknown) => e))
    await daemon.until(() => daemon.calls.length === 3)
    await daemon.stop()
    const errors = await Promise.all(calls)
    expect(daemon.rpcRequests).toEqual([3])
    for (const e of errors) expect(e).toBeInstanceOf(SignalUnreachableError)
  })

  it('large bodies and calls with their own timeout go alone; the small ones share a request', async () => {
    const [a, b, c] = groups(3)
    const big = `data:image/png;filename=big.png;base64,${Buffer.alloc(100_000).toString('base64')}`
    await Promise.all([
      send(a!),
      client.call('send', { account: RELAY, groupId: b, attachments: [big] }),
      client.call('version', {}, { timeoutMs: PATIENCE_MS }),
      send(c!),
    ])
    expect([...daemon.rpcRequests].sort()).toEqual([1, 1, 2])
    const request = (method: string, pred: (p: Record<string, unknown>) => boolean = () => true) => daemon.calls.find(x => x.method === method && pred(x.params))!.request
    expect(request('send', p => p.groupId === a)).toBe(request('send', p => p.groupId === c))
    expect(new Set([request('send', p => p.groupId === a), request('send', p => p.groupId === b), request('version')]).size).toBe(3)
  })

  it('an answer missing from the batch fails that call alone, with a clear error', async () => {
    // A daemon that leaves one answer out (the fake never does): the call with id 2 gets none.
    const server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const batch = [JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: number } | Array<{ id: number }>].flat()
        const body = JSON.stringify(batch.filter(r => r.id !== 2).map(r => ({ jsonrpc: '2.0', result: { version: '0.14.6' }, id: r.id })))
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(body)
      })
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    try {
      const c = new SignalClient({ daemonUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, timeoutMs: PATIENCE_MS, requestsInFlight: 1 })
      const settled = await Promise.allSettled([c.call('version'), c.call('version'), c.call('version')])
      expect(settled.map(s => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
      expect(String((settled[1] as PromiseRejectedResult).reason)).toMatch(/without an answer to version \(id 2\); whether it ran is unknown/)
    } finally {
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  })

  it('the fake answers a batch of notifications alone with 201 and no body, like one notification', async () => {
    const http = axios.create({ baseURL: daemon.url, validateStatus: () => true })
    const notes = await http.post('/api/v1/rpc', [{ jsonrpc: '2.0', method: 'version' }, { jsonrpc: '2.0', method: 'version' }])
    expect([notes.status, notes.data]).toEqual([201, ''])
  })
})

describe('a few requests in flight at once (lanes)', () => {
  const ACI = '5f0c2a9e-3b7d-4e61-9a2c-7d1e8b4f6a30'
  const groups = (n: number) => Array.from({ length: n }, (_, i) => daemon.addGroup({ name: `G${i}`, members: [{ number: RELAY, aci: ACI }] }).id)
  const send = (groupId: string) => client.call<{ timestamp: number }>('send', { account: RELAY, groupId, message: 'hi' })

  it('a slow send does not hold up sends to other groups; once every lane is busy, the next calls share a request', async () => {
    expect(REQUESTS_IN_FLIGHT).toBeGreaterThan(1)
    const ids = groups(REQUESTS_IN_FLIGHT + 2)
    let release!: () => void
    daemon.answersHeld = new Promise<void>(resolve => (release = resolve))
    // Each send while a lane is free goes at once, in a request of its own, though none has been answered.
    const busy = ids.slice(0, REQUESTS_IN_FLIGHT).map(id => send(id))
    await daemon.until(() => daemon.calls.length === REQUESTS_IN_FLIGHT)
    expect(daemon.rpcRequests).toEqual(Array(REQUESTS_IN_FLIGHT).fill(1))
    // Every lane is waiting for its answer now: the next two wait, together.
    const rest = ids.slice(REQUESTS_IN_FLIGHT).map(id => send(id))
    daemon.answersHeld = undefined
    release()
    await Promise.all([...busy, ...rest])
    expect(daemon.rpcRequests).toEqual([...Array(REQUESTS_IN_FLIGHT).fill(1), 2])
  })
})
