// A minimal appservice endpoint for testing the fake homeserver itself (and ping results): it records
// every request and answers as told, with no bridge logic at all.
import { EventEmitter } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { PATIENCE_MS } from '../../support/patience.ts'

export interface AsRequest {
  method: string
  path: string
  query: Record<string, string>
  authorization: string | undefined
  /** Raw text, to compare retries byte for byte. */
  text: string
  body: unknown
  at: number
}

export class RecordingAppservice {
  readonly requests: AsRequest[] = []
  /** Transaction bodies answered with 200, by txnId, in order. */
  readonly accepted: { txnId: string; body: Record<string, unknown> }[] = []
  /** Answer the next N transactions with this status before accepting. */
  failNext = 0
  failStatus = 500
  /** Status for pings; 'hang' never answers. */
  pingAnswer: number | 'hang' = 200
  /** Delay before answering a transaction, to observe concurrency. */
  delayMs = 0
  /** Most transactions handled at the same time. */
  maxConcurrent = 0
  /** TCP connections the homeserver opened to this endpoint. */
  connections = 0
  private inFlight = 0
  private readonly server: Server
  private readonly changes = new EventEmitter()
  url = ''

  static async start(): Promise<RecordingAppservice> {
    const as = new RecordingAppservice()
    await new Promise<void>((resolve) => as.server.listen(0, '127.0.0.1', () => resolve()))
    as.url = `http://127.0.0.1:${(as.server.address() as AddressInfo).port}`
    return as
  }

  private constructor() {
    this.changes.setMaxListeners(0)
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => void this.answer(req.method ?? 'GET', req.url ?? '/', req.headers.authorization, Buffer.concat(chunks).toString('utf8'), (status, body) => {
        res.writeHead(status, { 'Content-Type': 'application/json' })
        res.end(JSON.stringify(body))
      }))
    })
    this.server.on('connection', () => this.connections++)
  }

  private async answer(method: string, rawUrl: string, authorization: string | undefined, text: string, reply: (status: number, body: unknown) => void): Promise<void> {
    const url = new URL(rawUrl, 'http://as')
    let body: unknown
    try {
      body = text ? JSON.parse(text) : undefined
    } catch {
      body = undefined
    }
    this.requests.push({ method, path: decodeURIComponent(url.pathname), query: Object.fromEntries(url.searchParams), authorization, text, body, at: Date.now() })
    this.changes.emit('change')
    const txn = /\/transactions\/([^/]+)$/.exec(url.pathname)
    if (txn && method === 'PUT') {
      this.inFlight++
      this.maxConcurrent = Math.max(this.maxConcurrent, this.inFlight)
      if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs))
      this.inFlight--
      if (this.failNext > 0) {
        this.failNext--
        reply(this.failStatus, { errcode: 'M_UNKNOWN', error: 'told to fail' })
      } else {
        this.accepted.push({ txnId: decodeURIComponent(txn[1]!), body: body as Record<string, unknown> })
        reply(200, {})
      }
      this.changes.emit('change')
      return
    }
    if (url.pathname === '/_matrix/app/v1/ping' && method === 'POST') {
      if (this.pingAnswer === 'hang') return
      reply(this.pingAnswer, this.pingAnswer === 200 ? {} : { errcode: 'M_FORBIDDEN', error: 'told to refuse' })
      return
    }
    if (/\/users\/[^/]+$/.test(url.pathname)) {
      reply(404, { errcode: 'M_NOT_FOUND', error: 'no such user' })
      return
    }
    reply(404, { errcode: 'M_UNRECOGNIZED', error: 'Unrecognized request' })
  }

  /** Resolves once `check` holds, re-checked on every request. */
  waitFor<T>(check: () => T | undefined | false, timeoutMs = PATIENCE_MS): Promise<T> {
    return new Promise((resolve, reject) => {
      const onChange = () => {
        const v = check()
        if (!v) return
        clearTimeout(timer)
        this.changes.off('change', onChange)
        resolve(v)
      }
      const timer = setTimeout(() => {
        this.changes.off('change', onChange)
        reject(new Error(`recording appservice: timed out after ${timeoutMs} ms; ${this.requests.length} requests seen`))
      }, timeoutMs)
      this.changes.on('change', onChange)
      onChange()
    })
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}
