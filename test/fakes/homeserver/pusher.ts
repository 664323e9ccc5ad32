// Homeserver → appservice traffic, as Synapse does it: one transaction at a time, events in order, the
// same txnId and the very same body retried until a 2xx; user queries; the ping callback.
import { Agent, request } from 'node:http'
import type { ToDeviceMessage } from './e2ee.ts'
import type { AppserviceRegistration, FakeEvent, PushAttempt, TransactionBody } from './types.ts'

export interface PusherOptions {
  registration: AppserviceRegistration
  style: 'v1' | 'legacy'
  backoff: { initialMs: number; maxMs: number }
  maxEvents: number
  ephemeralKey: 'stable' | 'unstable' | 'both'
  firstTxnId: number
  pushTimeoutMs: number
  onChange: () => void
  /** Which MSC3202 key(s) carry one-time-key counts: Synapse before 1.73 sent only `…device_one_time_key_counts`,
   * later versions send both spellings. */
  otkCountKey: 'both' | 'key_counts' | 'keys_count'
  /** MSC3202 key counts and unused fallback key types of these users' devices (homeserver/e2ee.ts). */
  keyCounts?: (users: Iterable<string>) => { counts: Record<string, unknown>; fallback: Record<string, unknown> }
  botUserId: string
  isAsUser: (userId: string) => boolean
}

export interface HttpResult {
  status: number
  body: string
}

/** One HTTP exchange; through `agent` if given, else on a connection of its own. */
export function httpCall(method: string, url: string, headers: Record<string, string>, body: string | undefined, timeoutMs: number, agent: Agent | false = false): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers: { ...headers, ...(body !== undefined ? { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)) } : {}) }, agent })
    req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })))
    req.on('error', reject)
    req.on('response', (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }))
      res.on('error', reject)
    })
    req.end(body)
  })
}

export class TransactionPusher {
  readonly attempts: PushAttempt[] = []
  /** Transactions the appservice acknowledged, in order. */
  readonly delivered: { txnId: string; body: TransactionBody }[] = []
  private readonly opts: PusherOptions
  private readonly events: FakeEvent[] = []
  private readonly ephemeral: Record<string, unknown>[] = []
  private readonly toDevice: ToDeviceMessage[] = []
  private readonly changedDeviceLists = new Set<string>()
  private nextTxnId: number
  private running = false
  private paused = false
  private stopped = false
  private wake: (() => void) | undefined
  /** Synapse pushes through a pool of persistent connections (synapse/http/client.py, SimpleHttpClient:
   * HTTPConnectionPool, idle connections kept 2 minutes, then closed by the pool), so an appservice accepts a
   * connection once, not once per transaction. Idle sockets are unref'd by the Agent, and server.close() ends them on
   * the other side, so neither side's stop waits on them; stop() destroys them. */
  private readonly agent = new Agent({ keepAlive: true, timeout: 120_000 })

  constructor(opts: PusherOptions) {
    this.opts = opts
    this.nextTxnId = opts.firstTxnId
  }

  private get reg(): AppserviceRegistration {
    return this.opts.registration
  }

  get pending(): number {
    return this.events.length + this.ephemeral.length + this.toDevice.length + this.changedDeviceLists.size
  }

  /** MSC2409/MSC4203: to-device messages for the appservice's users' devices, only for a registration that asks
   * for ephemeral events (Synapse sends them beside `ephemeral`, and never otherwise). */
  enqueueToDevice(message: ToDeviceMessage): void {
    if (!this.reg.receive_ephemeral && !this.reg['de.sorunome.msc2409.push_ephemeral']) return
    this.toDevice.push(message)
    this.kick()
  }

  /** MSC3202: a user whose device list changed and who shares a room with one of the appservice's users. */
  enqueueDeviceListChange(userId: string): void {
    if (this.reg['org.matrix.msc3202'] !== true) return
    this.changedDeviceLists.add(userId)
    this.kick()
  }

  /** True when nothing is queued and no transaction is in flight. */
  get idle(): boolean {
    return !this.running && this.pending === 0
  }

  enqueueEvent(ev: FakeEvent): void {
    this.events.push(ev)
    this.kick()
  }

  enqueueEphemeral(ev: Record<string, unknown>): void {
    if (!this.reg.receive_ephemeral && !this.reg['de.sorunome.msc2409.push_ephemeral']) return
    this.ephemeral.push(ev)
    this.kick()
  }

  pause(): void {
    this.paused = true
  }

  resume(): void {
    this.paused = false
    this.wakeUp()
    this.kick()
  }

  /** Synapse on SQLite counts transaction ids from 1 again after a restart. */
  resetTxnIds(next = 1): void {
    this.nextTxnId = next
  }

  stop(): void {
    this.stopped = true
    this.wakeUp()
    this.agent.destroy()
  }

  kick(): void {
    if (this.running || this.paused || this.stopped || !this.reg.url || this.pending === 0) return
    this.running = true
    void this.loop().finally(() => {
      this.running = false
      this.opts.onChange()
      this.kick()
    })
  }

  private async loop(): Promise<void> {
    while (!this.paused && !this.stopped && this.reg.url && this.pending > 0) {
      const events = this.events.splice(0, this.opts.maxEvents)
      const ephemeral = this.ephemeral.splice(0, 100)
      const toDevice = this.toDevice.splice(0, 100)
      const txnId = String(this.nextTxnId++)
      const body: TransactionBody = { events }
      if (ephemeral.length) {
        if (this.opts.ephemeralKey !== 'unstable') body.ephemeral = ephemeral
        if (this.opts.ephemeralKey !== 'stable') body['de.sorunome.msc2409.ephemeral'] = ephemeral
      }
      if (toDevice.length) body['de.sorunome.msc2409.to_device'] = toDevice
      this.addMsc3202(body, events, toDevice)
      // Serialised once: every retry sends byte-identical content.
      await this.deliver(txnId, body, JSON.stringify(body))
    }
  }

  /** synapse/appservice/api.py push_bulk and scheduler.py: key counts for the appservice's sender and for its users
   * named in the transaction (event senders, to-device recipients), device lists changed meanwhile. */
  private addMsc3202(body: TransactionBody, events: FakeEvent[], toDevice: ToDeviceMessage[]): void {
    if (this.reg['org.matrix.msc3202'] !== true) return
    const users = [this.opts.botUserId, ...events.map((e) => e.sender), ...toDevice.map((m) => m.to_user_id)]
    const { counts, fallback } = this.opts.keyCounts?.(users.filter((u) => this.opts.isAsUser(u))) ?? { counts: {}, fallback: {} }
    if (Object.keys(counts).length) {
      if (this.opts.otkCountKey !== 'keys_count') body['org.matrix.msc3202.device_one_time_key_counts'] = counts
      if (this.opts.otkCountKey !== 'key_counts') body['org.matrix.msc3202.device_one_time_keys_count'] = counts
    }
    if (Object.keys(fallback).length) body['org.matrix.msc3202.device_unused_fallback_key_types'] = fallback
    if (this.changedDeviceLists.size) {
      body['org.matrix.msc3202.device_lists'] = { changed: [...this.changedDeviceLists], left: [] }
      this.changedDeviceLists.clear()
    }
  }

  private async deliver(txnId: string, body: TransactionBody, text: string): Promise<void> {
    let delay = this.opts.backoff.initialMs
    for (let attempt = 1; ; attempt++) {
      while (this.paused && !this.stopped) await this.sleep(60_000)
      if (this.stopped) return
      const url = this.reg.url
      if (!url) return
      const { target, headers } = this.target(url, `transactions/${encodeURIComponent(txnId)}`)
      const record: PushAttempt = { txnId, attempt, url: target.replace(/access_token=[^&]+/, 'access_token=…'), body, status: undefined, at: Date.now() }
      try {
        const res = await httpCall('PUT', target, headers, text, this.opts.pushTimeoutMs, this.agent)
        record.status = res.status
        if (res.status < 200 || res.status >= 300) record.error = res.body.slice(0, 500)
      } catch (err) {
        record.error = (err as Error & { code?: string }).code ?? (err as Error).message
      }
      this.attempts.push(record)
      if (record.status !== undefined && record.status >= 200 && record.status < 300) {
        this.delivered.push({ txnId, body })
        this.opts.onChange()
        return
      }
      this.opts.onChange()
      await this.sleep(delay)
      delay = Math.min(delay * 2, this.opts.backoff.maxMs)
    }
  }

  /** v1: prefixed path + Bearer (Synapse ≥ 1.90); legacy: bare path + ?access_token= only (Synapse ≤ 1.69). */
  target(baseUrl: string, tail: string): { target: string; headers: Record<string, string> } {
    const base = baseUrl.replace(/\/+$/, '')
    if (this.opts.style === 'legacy') {
      const sep = tail.includes('?') ? '&' : '?'
      return { target: `${base}/${tail}${sep}access_token=${encodeURIComponent(this.reg.hs_token)}`, headers: {} }
    }
    return { target: `${base}/_matrix/app/v1/${tail}`, headers: { Authorization: `Bearer ${this.reg.hs_token}` } }
  }

  /** Asks the appservice about a user in its namespace that does not exist yet (before an invite). */
  async queryUser(userId: string): Promise<boolean> {
    const url = this.reg.url
    if (!url) return false
    const { target, headers } = this.target(url, `users/${encodeURIComponent(userId)}`)
    try {
      const res = await httpCall('GET', target, headers, undefined, this.opts.pushTimeoutMs, this.agent)
      return res.status >= 200 && res.status < 300
    } catch {
      return false
    }
  }

  /** The HS side of POST /_matrix/client/v1/appservice/{id}/ping: returns what the client API answers. */
  async ping(transactionId: string | undefined, timeoutMs: number): Promise<{ status: number; body: Record<string, unknown> }> {
    const url = this.reg.url
    if (!url) return { status: 400, body: { errcode: 'M_URL_NOT_SET', error: 'Application service URL is not configured.' } }
    const base = url.replace(/\/+$/, '')
    const started = Date.now()
    try {
      const res = await httpCall('POST', `${base}/_matrix/app/v1/ping`, { Authorization: `Bearer ${this.reg.hs_token}` },
        JSON.stringify(transactionId !== undefined ? { transaction_id: transactionId } : {}), timeoutMs)
      if (res.status < 200 || res.status >= 300) {
        return { status: 502, body: { errcode: 'M_BAD_STATUS', error: 'Application service returned an error status', status: res.status, body: res.body } }
      }
      return { status: 200, body: { duration_ms: Date.now() - started } }
    } catch (err) {
      if ((err as Error & { code?: string }).code === 'ETIMEDOUT') {
        return { status: 504, body: { errcode: 'M_CONNECTION_TIMEOUT', error: 'Connection to application service timed out' } }
      }
      return { status: 502, body: { errcode: 'M_CONNECTION_FAILED', error: 'Could not connect to application service' } }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = undefined
        resolve()
      }, ms)
      this.wake = () => {
        clearTimeout(t)
        this.wake = undefined
        resolve()
      }
    })
  }

  private wakeUp(): void {
    this.wake?.()
  }
}
