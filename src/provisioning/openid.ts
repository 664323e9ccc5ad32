// Matrix OpenID tokens for the provisioning API, as the mautrix bridges accept them (bridgev2/matrix/provisioning.go:
// `Authorization: Bearer openid:<token>`, acting for `?user_id=`). A client asks its homeserver for a token
// (POST /_matrix/client/v3/user/{userId}/openid/request_token) and the bridge asks the homeserver who holds it
// (GET /_matrix/federation/v1/openid/userinfo, server-server API); the answer's `sub` is the user.
//
// Unlike mautrix, which resolves the user's server over federation, the bridge asks only its own homeserver, so
// only that server's users sign in this way: a token from elsewhere is never taken on another server's word.
// A validated token is remembered briefly, so that a client polling a login step does not ask each time.
import { createHash } from 'node:crypto'
import { HttpError } from '../http-error.ts'

export const OPENID_PREFIX = 'openid:'
const USERINFO = '/_matrix/federation/v1/openid/userinfo'
const MXID = /^@[^:\s]+:(\S+)$/

export interface OpenIdOptions {
  /** Where the homeserver serves its federation API's userinfo endpoint (homeserver.address by default). */
  homeserverUrl: string
  /** The homeserver's server name: the only one whose users are accepted. */
  domain: string
  now?: () => number
  /** How long a validated token is trusted without asking again. */
  cacheMs?: number
  timeoutMs?: number
  /** At most this many tokens are remembered; the oldest go first. */
  cacheSize?: number
}

const hash = (token: string): string => createHash('sha256').update(token).digest('hex')

export class OpenIdTokens {
  readonly #o: Required<OpenIdOptions>
  /** By the token's hash: who holds it and until when that is believed. */
  readonly #known = new Map<string, { mxid: string; until: number }>()
  /** Checks under way, so that requests arriving together with one token ask the homeserver once. */
  readonly #asking = new Map<string, Promise<string>>()

  constructor(opts: OpenIdOptions) {
    this.#o = { now: Date.now, cacheMs: 60_000, timeoutMs: 10_000, cacheSize: 1000, ...opts, homeserverUrl: opts.homeserverUrl.replace(/\/+$/, '') }
  }

  /**
   * The Matrix user holding `token`, checked with the homeserver; `claimed` (the request's ?user_id=, if any) must
   * be that user. Refusals are 401 with a sentence; a homeserver that cannot answer is 502.
   */
  async userOf(token: string, claimed: string | null): Promise<string> {
    const local = `users of ${this.#o.domain}, the homeserver this bridge belongs to`
    if (claimed !== null) {
      const server = MXID.exec(claimed)?.[1]
      if (!server) throw new HttpError(400, 'M_INVALID_PARAM', 'user_id must be a Matrix user id such as @someone:your.domain.')
      if (server !== this.#o.domain) {
        throw new HttpError(401, 'M_UNKNOWN_TOKEN',
          `OpenID tokens are accepted only from ${local}; ${claimed} is on another server. Sign in with the link the bridge bot sends when you type \`console\` in your direct chat with it.`)
      }
    }
    if (!token) throw new HttpError(401, 'M_MISSING_TOKEN', 'The OpenID token is empty: send `Authorization: Bearer openid:<token>` with a token from your homeserver.')
    const mxid = await this.#holder(token)
    if (claimed !== null && claimed !== mxid) {
      throw new HttpError(401, 'M_UNKNOWN_TOKEN', `This OpenID token belongs to another user than ${claimed}; ask your homeserver for a token of your own.`)
    }
    return mxid
  }

  async #holder(token: string): Promise<string> {
    const key = hash(token)
    const now = this.#o.now()
    const known = this.#known.get(key)
    if (known && known.until > now) return known.mxid
    if (known) this.#known.delete(key)
    let asking = this.#asking.get(key)
    if (!asking) {
      asking = this.#ask(token).finally(() => this.#asking.delete(key))
      this.#asking.set(key, asking)
    }
    const mxid = await asking
    this.#remember(key, mxid)
    return mxid
  }

  #remember(key: string, mxid: string): void {
    const now = this.#o.now()
    for (const [k, v] of this.#known) if (v.until <= now) this.#known.delete(k)
    while (this.#known.size >= this.#o.cacheSize) this.#known.delete(this.#known.keys().next().value!)
    this.#known.set(key, { mxid, until: now + this.#o.cacheMs })
  }

  async #ask(token: string): Promise<string> {
    const where = `the homeserver at ${this.#o.homeserverUrl}`
    let res: Response
    try {
      res = await fetch(`${this.#o.homeserverUrl}${USERINFO}?access_token=${encodeURIComponent(token)}`, {
        headers: { Accept: 'application/json' }, signal: AbortSignal.timeout(this.#o.timeoutMs),
      })
    } catch (err) {
      const why = (err as Error).name === 'TimeoutError' ? `no answer within ${this.#o.timeoutMs / 1000} s` : ((err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message)
      throw new HttpError(502, 'ORG.RELAY_BRIDGE.HOMESERVER_UNREACHABLE', `The bridge could not check the OpenID token: ${where} did not answer (${why}). Try again shortly.`)
    }
    const body = await res.json().catch(() => undefined) as { sub?: unknown; errcode?: unknown } | undefined
    if (res.status === 401 || res.status === 403) {
      throw new HttpError(401, 'M_UNKNOWN_TOKEN', 'Your homeserver does not know this OpenID token, or it has expired (they last an hour): ask it for a new one and try again.')
    }
    if (res.status === 404 || body?.errcode === 'M_UNRECOGNIZED') {
      throw new HttpError(502, 'ORG.RELAY_BRIDGE.HOMESERVER_UNREACHABLE',
        `The bridge could not check the OpenID token: ${where} does not serve ${USERINFO}. The operator can add the \`openid\` resource to the homeserver's listener, or point console.openid_address at one that serves it.`)
    }
    if (!res.ok) {
      throw new HttpError(502, 'ORG.RELAY_BRIDGE.HOMESERVER_UNREACHABLE', `The bridge could not check the OpenID token: ${where} answered ${res.status}. Try again shortly.`)
    }
    const sub = typeof body?.sub === 'string' ? body.sub : ''
    // The homeserver speaks for its own users only, whatever it says.
    if (MXID.exec(sub)?.[1] !== this.#o.domain) {
      throw new HttpError(502, 'ORG.RELAY_BRIDGE.HOMESERVER_UNREACHABLE', `The bridge could not check the OpenID token: ${where} did not name one of its own users as the holder.`)
    }
    return sub
  }
}
