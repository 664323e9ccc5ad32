// JSON-RPC 2.0 over HTTP to one signal-cli daemon in multi-account mode (signal-cli.md §3, §5, §7).
import axios, { type AxiosInstance } from 'axios'
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

export class SignalClient {
  readonly daemonUrl: string
  private readonly http: AxiosInstance
  private readonly timeoutMs: number
  private nextId = 1

  constructor(opts: SignalClientOptions) {
    this.daemonUrl = opts.daemonUrl.replace(/\/+$/, '')
    this.timeoutMs = opts.timeoutMs ?? 30_000
    this.http = axios.create({
      baseURL: this.daemonUrl,
      // Every status is inspected by hand: JSON-RPC errors arrive as 200, the rest are daemon trouble.
      validateStatus: () => true,
      // Attachments travel as base64 in one body (up to 150 MiB, §5).
      maxBodyLength: Infinity,
      maxContentLength: Infinity,
      // The daemon is one local endpoint: no redirects to follow and no proxy to look up in the environment
      // on every call (both cost measurable CPU per message; docs/performance.md).
      maxRedirects: 0,
      proxy: false,
    })
  }

  /** Calls a method. `params.account` must be set by the caller for account-bound methods (§5). */
  async call<T>(method: string, params: Record<string, unknown> = {}, opts: CallOptions = {}): Promise<T> {
    const id = this.nextId++
    let res
    try {
      res = await this.http.post<RpcResponse | string>(
        '/api/v1/rpc',
        { jsonrpc: '2.0', method, params, id },
        {
          timeout: opts.timeoutMs ?? this.timeoutMs,
          signal: opts.signal,
          headers: { 'Content-Type': 'application/json' },
        },
      )
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'unknown'
      throw new SignalUnreachableError(`The signal-cli daemon at ${this.daemonUrl} did not answer ${method} (${code}).`, { cause: err })
    }
    if (res.status !== 200 || typeof res.data !== 'object' || res.data === null) {
      throw new SignalUnreachableError(
        `The signal-cli daemon at ${this.daemonUrl} answered ${method} with HTTP ${res.status}; check that signal.daemon_url points at a signal-cli daemon started with --http.`,
        { status: res.status },
      )
    }
    const body = res.data
    if (body.error) {
      const code = typeof body.error.code === 'number' ? body.error.code : -32603
      const message = typeof body.error.message === 'string' ? body.error.message : 'unknown error'
      throw new SignalRpcError(method, code, message, body.error.data ?? null)
    }
    return body.result as T
  }

  /** `GET /api/v1/check`: only says the HTTP server is up, nothing about accounts (§3). */
  async check(): Promise<boolean> {
    try {
      const res = await this.http.get('/api/v1/check', { timeout: this.timeoutMs })
      return res.status === 200
    } catch {
      return false
    }
  }

  listAccounts(): Promise<Array<{ number: string }>> {
    return this.call('listAccounts')
  }
}

/** Whether an error means "the account no longer exists in the daemon" (unlinked, §11.3). */
export function isAccountGone(err: unknown): boolean {
  return err instanceof SignalRpcError && err.code === -32602
}
