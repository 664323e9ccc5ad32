// The JSON-RPC client against the fake daemon over real HTTP, and how each error code reaches the outbox.
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { PATIENCE_MS } from '../support/patience.ts'
import axios from 'axios'
import { SignalClient, SignalRpcError, SignalUnreachableError } from '../../src/signal/client.ts'
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
