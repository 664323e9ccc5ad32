// One HTTP request and its whole answer, through Node's http/https and a caller's keep-alive Agent: what the
// homeserver client and the signal-cli client send on every message, without a library's per-request work
// (docs/performance.md).
import { request as httpRequest, type Agent, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http'
import { request as httpsRequest } from 'node:https'

export interface Exchanged {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
}

export interface ExchangeOptions {
  method: string
  /** The server (its protocol, host and port; its path is not used). */
  url: URL
  /** Path and query on that server. */
  path: string
  agent: Agent
  headers?: OutgoingHttpHeaders
  body?: string | Buffer | undefined
  /** The connection may stay silent this long (0: no limit). */
  idleTimeoutMs?: number
  /** The whole answer must have come within this long (0: no limit): a server that trickles must not hold a call. */
  totalTimeoutMs?: number
  signal?: AbortSignal | undefined
}

/** Rejects with Node's socket error (a `code` such as ECONNREFUSED), ETIMEDOUT when a time limit passed, or the
 * abort's error when `signal` fires; answers any status. */
export function exchange(o: ExchangeOptions): Promise<Exchanged> {
  const https = o.url.protocol === 'https:'
  const headers: OutgoingHttpHeaders = { ...o.headers }
  if (o.body !== undefined) headers['Content-Length'] = Buffer.byteLength(o.body)
  const options = {
    method: o.method, headers, agent: o.agent, signal: o.signal,
    // Options rather than a URL object: no URL to parse and copy on every call.
    hostname: o.url.hostname.replace(/^\[|\]$/g, ''), port: o.url.port || (https ? 443 : 80),
    path: o.path,
  }
  return new Promise((resolve, reject) => {
    const timedOut = (ms: number) => () => req.destroy(Object.assign(new Error(`no answer in ${ms} ms`), { code: 'ETIMEDOUT' }))
    const total = o.totalTimeoutMs ? setTimeout(timedOut(o.totalTimeoutMs), o.totalTimeoutMs) : undefined
    const fail = (err: Error): void => {
      clearTimeout(total)
      reject(err)
    }
    const req = (https ? httpsRequest : httpRequest)(options, (res: IncomingMessage) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.once('error', fail)
      res.once('end', () => {
        clearTimeout(total)
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks) })
      })
    })
    req.once('error', fail)
    if (o.idleTimeoutMs) req.setTimeout(o.idleTimeoutMs, timedOut(o.idleTimeoutMs))
    req.end(o.body)
  })
}
