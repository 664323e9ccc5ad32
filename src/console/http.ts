// The small pieces of HTTP the console's listener needs: JSON answers in the Matrix error shape, bodies with a
// limit, cookies, and what a request says about itself once the reverse proxies that may speak for it are known.
import type { IncomingMessage, ServerResponse } from 'node:http'
import { isIP } from 'node:net'

import { HttpError } from '../http-error.ts'
export { HttpError }

/** Every answer of the listener: not cached, not framed, not sniffed, and no address leaks in a Referer. */
export const SAFE_HEADERS: Record<string, string> = {
  'Cache-Control': 'no-store',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string | string[]> = {}): void {
  res.writeHead(status, { ...SAFE_HEADERS, 'Content-Type': 'application/json; charset=utf-8', ...headers })
  res.end(JSON.stringify(body))
}

export function sendError(res: ServerResponse, err: HttpError): void {
  sendJson(res, err.status, { errcode: err.errcode, error: err.message })
}

/** The JSON body of a request, at most `limit` bytes; an empty body is `{}`. */
export async function readJson(req: IncomingMessage, limit = 16_384): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > limit) throw new HttpError(413, 'M_TOO_LARGE', `The request body is larger than ${limit} bytes.`)
    chunks.push(chunk)
  }
  const text = Buffer.concat(chunks).toString('utf8').trim()
  if (!text) return {}
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    throw new HttpError(400, 'M_NOT_JSON', 'The request body is not JSON.')
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new HttpError(400, 'M_BAD_JSON', 'The request body must be a JSON object.')
  return value as Record<string, unknown>
}

export function cookies(req: IncomingMessage): Map<string, string> {
  const out = new Map<string, string>()
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0) out.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim())
  }
  return out
}

export interface RequestFacts {
  /** The client's address: the peer's, or the one a trusted proxy names. */
  ip: string
  /** Whether the browser spoke https (to us, or to a trusted proxy that says so). */
  https: boolean
}

const bare = (ip: string): string => (ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip)

/**
 * What a request says about itself. X-Forwarded-For and X-Forwarded-Proto are believed only when the peer is one
 * of the configured proxies: anyone else could write them, and the Secure flag of the session cookie follows them.
 */
export function requestFacts(req: IncomingMessage, trustedProxies: ReadonlySet<string>): RequestFacts {
  const peer = bare(req.socket.remoteAddress ?? '')
  const tlsSocket = (req.socket as { encrypted?: boolean }).encrypted === true
  if (!trustedProxies.has(peer)) return { ip: peer, https: tlsSocket }
  const first = (h: string | string[] | undefined) => (Array.isArray(h) ? h[0] : h)?.split(',')[0]?.trim()
  // The right-most address not a trusted proxy is the client (proxies append the address they saw).
  const chain = (first(req.headers['x-forwarded-for']) !== undefined ? String(req.headers['x-forwarded-for']).split(',').map(s => bare(s.trim())) : [])
  let ip = peer
  for (let i = chain.length - 1; i >= 0; i--) {
    ip = chain[i]!
    if (!trustedProxies.has(ip)) break
  }
  return { ip, https: tlsSocket || first(req.headers['x-forwarded-proto'])?.toLowerCase() === 'https' }
}
