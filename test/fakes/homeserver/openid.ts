// OpenID tokens as Synapse issues and checks them: a user asks for one (synapse/rest/client/openid.py, valid for an
// hour) and a third party asks the homeserver's federation API who holds it
// (synapse/federation/transport/server/__init__.py, OpenIdUserInfo; unauthenticated, the token in the query).
import { randomInt } from 'node:crypto'
import { MatrixFault } from './types.ts'

/** Synapse's IdTokenServlet.EXPIRES_MS. */
export const OPENID_EXPIRES_MS = 3600 * 1000
const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'

export class OpenIdTokens {
  readonly #tokens = new Map<string, { userId: string; validUntilMs: number }>()
  readonly #now: () => number
  readonly #serverName: string

  constructor(serverName: string, now: () => number) {
    this.#serverName = serverName
    this.#now = now
  }

  /** POST /_matrix/client/v3/user/{userId}/openid/request_token, as `requester` (whoever the access token is). */
  request(requester: string, userId: string, raw: Buffer, body: unknown): Record<string, unknown> {
    if (userId !== requester) throw new MatrixFault(403, 'M_FORBIDDEN', 'Cannot request tokens for other users.')
    // parse_json_object_from_request: the body must be a JSON object, though its contents are ignored.
    if (raw.length === 0) throw new MatrixFault(400, 'M_NOT_JSON', 'Content not JSON.')
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw new MatrixFault(400, 'M_BAD_JSON', 'Content must be a JSON object.')
    // random_string(24): ASCII letters.
    const token = Array.from({ length: 24 }, () => LETTERS[randomInt(LETTERS.length)]).join('')
    this.#tokens.set(token, { userId, validUntilMs: this.#now() + OPENID_EXPIRES_MS })
    return { access_token: token, token_type: 'Bearer', matrix_server_name: this.#serverName, expires_in: OPENID_EXPIRES_MS / 1000 }
  }

  /** GET /_matrix/federation/v1/openid/userinfo?access_token=… */
  userinfo(query: URLSearchParams): Record<string, unknown> {
    const token = query.get('access_token')
    if (token === null) throw new MatrixFault(401, 'M_MISSING_TOKEN', 'Access Token required')
    const held = this.#tokens.get(token)
    // get_user_id_for_open_id_token: only a token still valid now.
    if (!held || held.validUntilMs <= this.#now()) throw new MatrixFault(401, 'M_UNKNOWN_TOKEN', 'Access Token unknown or expired')
    return { sub: held.userId }
  }
}
