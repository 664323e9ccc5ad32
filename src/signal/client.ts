// JSON-RPC 2.0 over HTTP to one signal-cli daemon in multi-account mode (signal-cli.md §3, §5, §7).
//
// Requests go through Node's http/https with a keep-alive Agent, as the homeserver client's do (src/matrix/client.ts):
// every message relayed to Signal is a POST here, and at low rates (one call per request) axios's config merging,
// header normalisation and transforms cost more of the bridge's CPU than the request itself (docs/performance.md).
import { Agent as HttpAgent } from 'node:http'
import { Agent as HttpsAgent } from 'node:https'
import { Coalescer } from '../db/coalesce.ts'
import { exchange } from '../http-exchange.ts'
import type { SendResultJson } from './types.ts'

/** The daemon answered with a JSON-RPC error object (always HTTP 200, §7). */
export class SignalRpcError extends Error {
  readonly code: number
  readonly method: string
  readonly data: unknown
  /** `data.response` for send-like calls that failed for every recipient (-1, -4, -5). */
  readonly response: SendResultJson | undefined
  /** The daemon's own message, without our prefix. May hold phone numbers: keep it out of info logs. */
  readonly rpcMessage: string

  constructor(method: string, code: number, message: string, data: unknown) {
    super(`signal-cli ${method} failed with ${code}: ${message}`)
    this.name = 'SignalRpcError'
    this.method = method
    this.code = code
    this.data = data
    const response = (data as { response?: unknown } | null | undefined)?.response
    this.response = response && typeof response === 'object' ? (response as SendResultJson) : undefined
    this.rpcMessage = message
  }

  /** Largest `retryAfterSeconds` among the per-recipient results (rate limits, -5). */
  get retryAfterSeconds(): number | undefined {
    const secs = (this.response?.results ?? []).map(r => r.retryAfterSeconds).filter((s): s is number => typeof s === 'number')
    return secs.length ? Math.max(...secs) : undefined
  }
}

/** The daemon could not be reached or answered outside JSON-RPC (connection refused, timeout, HTTP 4xx/5xx). */
export class SignalUnreachableError extends Error {
  readonly status: number | undefined
  constructor(message: string, opts: { cause?: unknown; status?: number } = {}) {
    super(message, { cause: opts.cause })
    this.name = 'SignalUnreachableError'
    this.status = opts.status
  }
}

export interface SignalClientOptions {
  daemonUrl: string
  /** Total timeout of an ordinary call. `finishLink` never times out (it waits for a person). */
  timeoutMs?: number
  /** Requests in flight at once (REQUESTS_IN_FLIGHT); tests narrow it to see batching with few chats. */
  requestsInFlight?: number
}

export interface CallOptions {
  /** 0 means no timeout. */
  timeoutMs?: number
  signal?: AbortSignal
}

interface RpcResponse {
  jsonrpc?: string
  id?: unknown
  result?: unknown
  error?: { code?: unknown; message?: unknown; data?: unknown }
}

/** One call, its request already serialised (a batch is its calls' bodies joined). */
interface Call {
  method: string
  id: number
  body: string
}

/** A call's answer as data: the batch's write answers every call and never throws (see post). */
type Outcome = { ok: true; result: unknown } | { ok: false; error: Error }

/** The most calls one HTTP request carries. */
const BATCH_MAX = 50
/** Requests in flight at once. One would make every chat wait for the slowest send of the batch before it (a large
 * group can take seconds on Signal's side); a few lanes keep a slow send from holding up the others, and calls
 * still share a request whenever every lane is busy, which is when batching pays. */
export const REQUESTS_IN_FLIGHT = 4
/** Bodies larger than this (attachments travel as base64, up to 150 MiB, §5) go alone: they would hold up the
 * small calls batched with them, and joining them into a batch body would copy them once more. */
const BATCH_BODY_MAX = 64 * 1024

export class SignalClient {
  readonly daemonUrl: string
  private readonly base: URL
  private readonly agent: HttpAgent
  private readonly timeoutMs: number
  private nextId = 1
  /**
   * Up to REQUESTS_IN_FLIGHT requests go at once, one per lane; calls made while every lane is busy go out together
   * in a lane's next request, as one JSON-RPC batch (§3): one HTTP round trip and one socket write for up to
   * BATCH_MAX calls instead of one each.
   *
   * The daemon runs a batch's calls concurrently and answers them in any order (§3), so two calls whose order
   * matters must never share a batch. Nothing here keeps them apart, because no caller makes such calls at the
   * same time: every send, edit, deletion, reaction and group update goes through the outbox, which works each
   * chat's queue in order and awaits each dispatch (and each call within one) before the next (Outbox.work,
   * one run per chat at a time), so at most one of its calls per chat is ever in flight; typing notices and
   * read receipts are chained one after another (OwnEphemeral); the rest (listGroups, commands, logout) await
   * each call before the next. A new caller that fires calls to one chat without awaiting them must keep them
   * apart itself.
   */
  private readonly lanes: Array<Coalescer<Call, Outcome>>

  constructor(opts: SignalClientOptions) {
    this.daemonUrl = opts.daemonUrl.replace(/\/+$/, '')
    this.timeoutMs = opts.timeoutMs ?? 30_000
    this.lanes = Array.from({ length: opts.requestsInFlight ?? REQUESTS_IN_FLIGHT }, () => new Coalescer<Call, Outcome>(calls => this.post(calls, {}), BATCH_MAX))
    this.base = new URL(this.daemonUrl)
    this.agent = this.base.protocol === 'https:' ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true })
  }

  /** Calls a method. `params.account` must be set by the caller for account-bound methods (§5). */
  async call<T>(method: string, params: Record<string, unknown> = {}, opts: CallOptions = {}): Promise<T> {
    const id = this.nextId++
    const call: Call = { method, id, body: JSON.stringify({ jsonrpc: '2.0', method, params, id }) }
    // A call with a time limit of its own (finishLink waits for a person) or a large body goes alone, at once.
    const alone = opts.timeoutMs !== undefined || opts.signal !== undefined || call.body.length > BATCH_BODY_MAX
    const outcome = alone ? (await this.post([call], opts))[0]! : await this.lane().add(call)
    if (!outcome.ok) throw outcome.error
    return outcome.result as T
  }

  /** An idle lane (the call goes at once); else the busy lane whose next request already has calls waiting, so that
   * they form one batch rather than one request each (until it is full). */
  private lane(): Coalescer<Call, Outcome> {
    let best: Coalescer<Call, Outcome> | undefined
    for (const lane of this.lanes) {
      const { running, waiting } = lane.load
      if (!running) return lane
      if (waiting < BATCH_MAX && (!best || waiting > best.load.waiting)) best = lane
    }
    return best ?? this.lanes[0]!
  }

  /**
   * One HTTP request carrying these calls (one alone as a plain request, more as a batch); answers each call,
   * in order. Trouble with the request fails every call of it; a JSON-RPC error only its own call. Never throws:
   * the Coalescer would send each call of a batch that threw again alone, and a send the daemon had carried out
   * would reach the group twice.
   */
  private async post(calls: Call[], opts: CallOptions): Promise<Outcome[]> {
    const what = calls.length === 1 ? calls[0]!.method : `a batch of ${calls.length} calls (${[...new Set(calls.map(c => c.method))].join(', ')})`
    const failAll = (error: Error): Outcome[] => calls.map(() => ({ ok: false, error }))
    let res: { status: number; body: string }
    try {
      res = await this.exchange('POST', '/api/v1/rpc', calls.length === 1 ? calls[0]!.body : `[${calls.map(c => c.body).join(',')}]`, opts.timeoutMs ?? this.timeoutMs, opts.signal)
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'unknown'
      return failAll(new SignalUnreachableError(`The signal-cli daemon at ${this.daemonUrl} did not answer ${what} (${code}).`, { cause: err }))
    }
    // Every status is inspected here: JSON-RPC errors arrive as 200, the rest is daemon trouble.
    let parsed: unknown
    try {
      parsed = res.status === 200 ? JSON.parse(res.body) : undefined
    } catch {
      parsed = undefined
    }
    if (res.status !== 200 || typeof parsed !== 'object' || parsed === null) {
      return failAll(new SignalUnreachableError(
        `The signal-cli daemon at ${this.daemonUrl} answered ${what} with HTTP ${res.status}; check that signal.daemon_url points at a signal-cli daemon started with --http.`,
        { status: res.status },
      ))
    }
    const body = parsed as RpcResponse | RpcResponse[]
    if (calls.length === 1 && !Array.isArray(body)) return [outcomeOf(calls[0]!, body)]
    if (!Array.isArray(body)) {
      return failAll(new SignalUnreachableError(
        `The signal-cli daemon at ${this.daemonUrl} answered ${what} with a single response instead of an array: ${JSON.stringify(body).slice(0, 200)}`,
        { status: res.status },
      ))
    }
    // The daemon answers a batch in any order (§3): each answer finds its call by id.
    const byId = new Map(body.map(r => [r?.id, r]))
    return calls.map(call => {
      const answer = byId.get(call.id)
      if (!answer) {
        return { ok: false, error: new Error(`The signal-cli daemon at ${this.daemonUrl} answered ${what} without an answer to ${call.method} (id ${call.id}); whether it ran is unknown.`) }
      }
      return outcomeOf(call, answer)
    })
  }

  /** `GET /api/v1/check`: only says the HTTP server is up, nothing about accounts (§3). */
  async check(): Promise<boolean> {
    try {
      return (await this.exchange('GET', '/api/v1/check', undefined, this.timeoutMs)).status === 200
    } catch {
      return false
    }
  }

  listAccounts(): Promise<Array<{ number: string }>> {
    return this.call('listAccounts')
  }

  /** One request and its whole answer as text (any status); rejects as `exchange` does, ETIMEDOUT when the whole
   * answer took longer than `timeoutMs` (0: no limit). */
  private async exchange(method: string, path: string, body: string | undefined, timeoutMs: number, signal?: AbortSignal): Promise<{ status: number; body: string }> {
    const res = await exchange({
      method, url: this.base, agent: this.agent, body, signal,
      // A total limit, as axios's was: a daemon that trickles its answer must not hold a call for ever.
      totalTimeoutMs: timeoutMs,
      path: `${this.base.pathname.replace(/\/+$/, '')}${path}`,
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    })
    return { status: res.status, body: res.body.toString('utf8') }
  }
}

function outcomeOf(call: Call, answer: RpcResponse): Outcome {
  if (answer.error) {
    const code = typeof answer.error.code === 'number' ? answer.error.code : -32603
    const message = typeof answer.error.message === 'string' ? answer.error.message : 'unknown error'
    return { ok: false, error: new SignalRpcError(call.method, code, message, answer.error.data ?? null) }
  }
  return { ok: true, result: answer.result }
}

/** Whether an error means "the account no longer exists in the daemon" (unlinked, §11.3). */
export function isAccountGone(err: unknown): boolean {
  return err instanceof SignalRpcError && err.code === -32602
}
