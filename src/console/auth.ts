// Who is asking: a provisioning client with the shared secret (acting for the user_id it names, as with the
// mautrix bridges), or a browser with a console session. Sessions start from a one-time link the bot sends in a
// direct chat: it works once, for a few minutes, and opens a session for that one browser (a cookie without an
// expiry, so it ends with the browser, and a server-side limit besides). Only hashes of links and sessions are
// stored. Every state-changing request of a session carries its CSRF token.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import type { Db } from '../db/types.ts'
import { HttpError } from './http.ts'

const hash = (secret: string): string => createHash('sha256').update(secret).digest('hex')
const token = (): string => randomBytes(32).toString('base64url')

/** Equal-time comparison, whatever the lengths. */
export function sameSecret(given: string, expected: string): boolean {
  return timingSafeEqual(createHash('sha256').update(given).digest(), createHash('sha256').update(expected).digest())
}

export interface Session {
  mxid: string
  csrf: string
  /** The cookie's value: the session's id, known only to the browser. */
  id: string
}

export interface AuthOptions {
  db: Db
  linkMs: number
  sessionMs: number
  now?: () => number
}

export class ConsoleAuth {
  readonly #db: Db
  readonly #linkMs: number
  readonly #sessionMs: number
  readonly #now: () => number

  constructor(opts: AuthOptions) {
    this.#db = opts.db
    this.#linkMs = opts.linkMs
    this.#sessionMs = opts.sessionMs
    this.#now = opts.now ?? Date.now
  }

  /** A new one-time sign-in token for this person; what expired meanwhile is swept. */
  async mintLink(mxid: string): Promise<string> {
    const now = this.#now()
    await this.#db.query('DELETE FROM console_links WHERE expires_at < $1', [now - this.#linkMs])
    await this.#db.query('DELETE FROM console_sessions WHERE expires_at < $1', [now])
    const t = token()
    await this.#db.query('INSERT INTO console_links (token_hash, mxid, expires_at) VALUES ($1, $2, $3)', [hash(t), mxid, now + this.#linkMs])
    return t
  }

  /** Trades a sign-in token for a session, once. Refused with a sentence when it is unknown, used or expired. */
  async redeem(t: string): Promise<Session> {
    const now = this.#now()
    const used = await this.#db.query<{ mxid: string }>(
      'UPDATE console_links SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING mxid',
      [hash(t), now],
    )
    const mxid = used.rows[0]?.mxid
    if (!mxid) {
      const { rows } = await this.#db.query<{ used_at: string | null }>('SELECT used_at FROM console_links WHERE token_hash = $1', [hash(t)])
      const again = 'Type `console` in your direct chat with the bridge bot for a new link.'
      if (!rows[0]) throw new HttpError(403, 'M_FORBIDDEN', `This sign-in link is not valid. ${again}`)
      if (rows[0].used_at !== null) throw new HttpError(403, 'M_FORBIDDEN', `This sign-in link was already used: each link opens one browser session. ${again}`)
      throw new HttpError(403, 'M_FORBIDDEN', `This sign-in link has expired. ${again}`)
    }
    const id = token()
    const csrf = token()
    await this.#db.query(
      'INSERT INTO console_sessions (session_hash, mxid, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)',
      [hash(id), mxid, csrf, now, now + this.#sessionMs],
    )
    return { id, mxid, csrf }
  }

  async session(id: string): Promise<Session | undefined> {
    const { rows } = await this.#db.query<{ mxid: string; csrf_token: string }>(
      'SELECT mxid, csrf_token FROM console_sessions WHERE session_hash = $1 AND expires_at > $2', [hash(id), this.#now()],
    )
    return rows[0] ? { id, mxid: rows[0].mxid, csrf: rows[0].csrf_token } : undefined
  }

  async end(id: string): Promise<void> {
    await this.#db.query('DELETE FROM console_sessions WHERE session_hash = $1', [hash(id)])
  }
}
