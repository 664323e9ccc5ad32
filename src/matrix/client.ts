// The appservice's calls to the homeserver (client-server API with identity assertion, §2 of
// matrix-appservice.md). The rest of the bridge depends only on `HomeserverApi`: tests substitute it, and the
// encryption layer (encrypting-api.ts) wraps it: every outgoing room event passes through sendEvent (state
// events through sendState, which stay plain as the spec wants), every attachment through uploadAttachment.
//
// HTTP goes through Node's http/https with a keep-alive Agent (Bearer auth, JSON). Every relayed message is one
// PUT here, so the client's own cost per request counts: axios (which the Signal client also used until session 9) spent about
// three times Node's own on its config merging, header normalisation and transforms; undici was cheaper still, but
// loading it (its llhttp WebAssembly) added ~15 MB to the idle resident set (docs/performance.md). It used to be
// the bot-sdk's MatrixClient.doRequest, whose loading cost about 17 MB. `user_id` goes into each call's own
// query, so two ghosts sending at once never share state.
import { Agent as HttpAgent, type OutgoingHttpHeaders } from 'node:http'
import { Agent as HttpsAgent } from 'node:https'
import { stringify as queryString } from 'node:querystring'
import type { Logger } from 'pino'
import { exchange } from '../http-exchange.ts'
import type { EncryptedFile } from './attachments.ts'
import {
  isMatrixErrcode,
  isUnrecognized,
  MatrixApiError,
  MatrixConnectionError,
  pingFailureOf,
} from './client-errors.ts'

export type JsonObject = Record<string, unknown>

export interface StateEventInput {
  type: string
  state_key?: string
  content: JsonObject
}

export interface CreateRoomOptions {
  name?: string
  topic?: string
  invite?: string[]
  is_direct?: boolean
  initial_state?: StateEventInput[]
  preset?: 'private_chat' | 'trusted_private_chat' | 'public_chat'
  power_level_content_override?: JsonObject
  room_version?: string
}

export interface PowerLevels {
  users?: Record<string, number>
  users_default?: number
  events?: Record<string, number>
  events_default?: number
  state_default?: number
  ban?: number
  kick?: number
  redact?: number
  invite?: number
  [key: string]: unknown
}

export interface Profile {
  displayName?: string
  avatarUrl?: string
}

export interface DownloadedMedia {
  data: Buffer
  mimetype: string
}

/** Where an attachment is: `url` in a plain room, `file` (its URL and key) in an encrypted one; spread into
 * the event's content. */
export type MediaRef = { url: string } | { file: EncryptedFile }

/** What the bridge needs from the homeserver. `asUser` is the full MXID to act as (the bot or a ghost). */
export interface HomeserverApi {
  readonly domain: string
  readonly botUserId: string

  whoami(asUser?: string): Promise<{ userId: string; deviceId?: string }>
  /** 'exists' when the homeserver says M_USER_IN_USE: registration is idempotent for the bridge. */
  registerUser(localpart: string): Promise<'created' | 'exists'>
  setDisplayName(userId: string, displayName: string): Promise<void>
  setAvatarUrl(userId: string, avatarUrl: string): Promise<void>
  /** undefined when the user has no profile (404). */
  getProfile(userId: string): Promise<Profile | undefined>

  uploadMedia(data: Uint8Array, mimetype: string, filename?: string, asUser?: string): Promise<string>
  /** An attachment for an event in `roomId`: encrypted first when the room is. */
  uploadAttachment(roomId: string, data: Uint8Array, mimetype: string, filename?: string, asUser?: string): Promise<MediaRef>
  downloadMedia(mxc: string): Promise<DownloadedMedia>

  createRoom(asUser: string, options: CreateRoomOptions): Promise<string>
  invite(asUser: string, roomId: string, userId: string, reason?: string): Promise<void>
  /** Returns the room id joined (the argument may be an alias). */
  join(asUser: string, roomIdOrAlias: string, viaServers?: string[]): Promise<string>
  leave(asUser: string, roomId: string, reason?: string): Promise<void>
  /** `asUser` removes `userId` from the room (needs the kick level, and more power than the one removed). */
  kick(asUser: string, roomId: string, userId: string, reason?: string): Promise<void>
  /** `asUser` bans `userId` (needs the ban level): they leave, and cannot come back until unbanned. */
  ban(asUser: string, roomId: string, userId: string, reason?: string): Promise<void>
  unban(asUser: string, roomId: string, userId: string): Promise<void>

  /** `txnId` comes from the caller and must be stable across retries of the same logical send. `ts` sets
   * origin_server_ts (the remote network's send time). Returns the event id. */
  sendEvent(asUser: string, roomId: string, type: string, content: JsonObject, txnId: string, ts?: number): Promise<string>
  sendState(asUser: string, roomId: string, type: string, stateKey: string, content: JsonObject, ts?: number): Promise<string>
  /** undefined when no such state event exists (404). Read as `asUser`, the bot by default. */
  getState(roomId: string, type: string, stateKey?: string, asUser?: string): Promise<JsonObject | undefined>
  getPowerLevels(roomId: string, asUser?: string): Promise<PowerLevels | undefined>
  redact(asUser: string, roomId: string, eventId: string, txnId: string, reason?: string): Promise<string>
  getJoinedMembers(roomId: string, asUser?: string): Promise<Record<string, Profile>>
  /** `asUser` starts typing for `timeoutMs` (the homeserver stops it then), or stops. Needs `asUser` joined. */
  setTyping(asUser: string, roomId: string, typing: boolean, timeoutMs: number): Promise<void>
  /** A public read receipt of `asUser` on an event. Needs `asUser` joined. */
  sendReadReceipt(asUser: string, roomId: string, eventId: string): Promise<void>

  /** AS → HS ping (spec v1.7). 'unsupported' on homeservers older than the endpoint; throws
   * AppservicePingError (with an operator hint) when the homeserver cannot reach the bridge. */
  pingAppservice(appserviceId: string, transactionId: string): Promise<{ durationMs: number } | 'unsupported'>
}

/** One device's client-server calls: a path under /_matrix/client and a JSON body, answered with JSON. */
export interface DeviceHttp {
  request(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: JsonObject): Promise<JsonObject>
}

export interface MatrixClientApiOptions {
  homeserverUrl: string
  asToken: string
  domain: string
  botLocalpart: string
  log: Logger
  /** Per-request timeout; uploads and downloads get the same. */
  requestTimeoutMs?: number
}

interface RequestOptions {
  asUser?: string | undefined
  query?: Record<string, string | number | boolean | string[] | undefined>
  body?: JsonObject | Buffer
  contentType?: string
  /** Return the raw response with a Buffer body (media downloads). */
  raw?: boolean
}

interface RawResponse {
  statusCode: number
  headers: Record<string, string | string[] | undefined>
  body: unknown
}

const enc = encodeURIComponent
const CONNECTION_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ESOCKETTIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'EHOSTUNREACH',
  'ENETUNREACH', 'ECONNABORTED', 'UND_ERR_SOCKET',
])
/** A media download may be redirected (to a CDN), this many times; nothing else is followed. */
const MAX_REDIRECTS = 5
const REDIRECTS = new Set([301, 302, 303, 307, 308])

export class MatrixClientApi implements HomeserverApi {
  readonly domain: string
  readonly botUserId: string
  /** The homeserver's URL, and its path prefix without a trailing slash (behind a reverse proxy, say). */
  private readonly base: URL
  private readonly basePath: string
  private readonly agents = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) }
  private readonly auth: string
  private readonly timeoutMs: number
  private readonly log: Logger
  /** Set once the authenticated media endpoint answered M_UNRECOGNIZED: old servers stay old. */
  private legacyMediaOnly = false

  constructor(opts: MatrixClientApiOptions) {
    this.domain = opts.domain
    this.botUserId = `@${opts.botLocalpart}:${opts.domain}`
    this.timeoutMs = opts.requestTimeoutMs ?? 60_000
    this.log = opts.log.child({ module: 'matrix-client' })
    this.base = new URL(opts.homeserverUrl)
    this.basePath = this.base.pathname.replace(/\/+$/, '')
    this.auth = `Bearer ${opts.asToken}`
  }

  async whoami(asUser?: string): Promise<{ userId: string; deviceId?: string }> {
    const res = await this.request('GET', '/_matrix/client/v3/account/whoami', { asUser })
    return { userId: String(res['user_id']), ...(typeof res['device_id'] === 'string' ? { deviceId: res['device_id'] } : {}) }
  }

  async registerUser(localpart: string): Promise<'created' | 'exists'> {
    try {
      // inhibit_login: servers without the legacy login API (MAS, spec v1.17) refuse registration without it,
      // and the bridge never needs a per-user access token anyway.
      await this.request('POST', '/_matrix/client/v3/register', {
        body: { type: 'm.login.application_service', username: localpart, inhibit_login: true },
      })
      return 'created'
    } catch (err) {
      if (isMatrixErrcode(err, 'M_USER_IN_USE')) return 'exists'
      throw err
    }
  }

  async setDisplayName(userId: string, displayName: string): Promise<void> {
    await this.request('PUT', `/_matrix/client/v3/profile/${enc(userId)}/displayname`, {
      asUser: userId,
      body: { displayname: displayName },
    })
  }

  async setAvatarUrl(userId: string, avatarUrl: string): Promise<void> {
    await this.request('PUT', `/_matrix/client/v3/profile/${enc(userId)}/avatar_url`, {
      asUser: userId,
      body: { avatar_url: avatarUrl },
    })
  }

  async getProfile(userId: string): Promise<Profile | undefined> {
    try {
      const res = await this.request('GET', `/_matrix/client/v3/profile/${enc(userId)}`, { asUser: this.botUserId })
      return toProfile(res['displayname'], res['avatar_url'])
    } catch (err) {
      if (err instanceof MatrixApiError && err.status === 404) return undefined
      throw err
    }
  }

  async uploadMedia(data: Uint8Array, mimetype: string, filename?: string, asUser?: string): Promise<string> {
    const res = await this.request('POST', '/_matrix/media/v3/upload', {
      asUser: asUser ?? this.botUserId,
      query: { filename },
      body: Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength),
      contentType: mimetype,
    })
    const uri = res['content_uri']
    if (typeof uri !== 'string' || !uri.startsWith('mxc://')) {
      throw new MatrixApiError({ status: 502, errcode: undefined, error: 'upload answered without a content_uri' })
    }
    return uri
  }

  async uploadAttachment(_roomId: string, data: Uint8Array, mimetype: string, filename?: string, asUser?: string): Promise<MediaRef> {
    return { url: await this.uploadMedia(data, mimetype, filename, asUser) }
  }

  async downloadMedia(mxc: string): Promise<DownloadedMedia> {
    const m = /^mxc:\/\/([^/]+)\/([^/?#]+)$/.exec(mxc)
    if (!m) {
      // A client-side refusal, but typed like the server's so that it classifies as permanent.
      throw new MatrixApiError({ status: 400, errcode: 'M_INVALID_PARAM', error: `not an mxc:// URI: ${mxc.slice(0, 80)}` })
    }
    const tail = `${enc(m[1]!)}/${enc(m[2]!)}`
    if (!this.legacyMediaOnly) {
      try {
        return toMedia(await this.rawRequest(`/_matrix/client/v1/media/download/${tail}`))
      } catch (err) {
        // Authenticated media is spec v1.11; older servers only have the v3 media paths. A plain 404 may also
        // mean "no such media", so only M_UNRECOGNIZED is remembered for later calls.
        if (!(err instanceof MatrixApiError) || !(err.status === 404 || err.errcode === 'M_UNRECOGNIZED')) throw err
        if (err.errcode === 'M_UNRECOGNIZED') this.legacyMediaOnly = true
      }
    }
    return toMedia(await this.rawRequest(`/_matrix/media/v3/download/${tail}`, { allow_remote: 'true' }))
  }

  async createRoom(asUser: string, options: CreateRoomOptions): Promise<string> {
    const res = await this.request('POST', '/_matrix/client/v3/createRoom', { asUser, body: { ...options } })
    return String(res['room_id'])
  }

  async invite(asUser: string, roomId: string, userId: string, reason?: string): Promise<void> {
    await this.request('POST', `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, {
      asUser,
      body: { user_id: userId, ...(reason ? { reason } : {}) },
    })
  }

  async join(asUser: string, roomIdOrAlias: string, viaServers?: string[]): Promise<string> {
    const res = await this.request('POST', `/_matrix/client/v3/join/${enc(roomIdOrAlias)}`, {
      asUser,
      query: viaServers?.length ? { server_name: viaServers, via: viaServers } : {},
      body: {},
    })
    return String(res['room_id'])
  }

  async leave(asUser: string, roomId: string, reason?: string): Promise<void> {
    await this.request('POST', `/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {
      asUser,
      body: reason ? { reason } : {},
    })
  }

  async kick(asUser: string, roomId: string, userId: string, reason?: string): Promise<void> {
    await this.request('POST', `/_matrix/client/v3/rooms/${enc(roomId)}/kick`, { asUser, body: { user_id: userId, ...(reason ? { reason } : {}) } })
  }

  async ban(asUser: string, roomId: string, userId: string, reason?: string): Promise<void> {
    await this.request('POST', `/_matrix/client/v3/rooms/${enc(roomId)}/ban`, { asUser, body: { user_id: userId, ...(reason ? { reason } : {}) } })
  }

  async unban(asUser: string, roomId: string, userId: string): Promise<void> {
    await this.request('POST', `/_matrix/client/v3/rooms/${enc(roomId)}/unban`, { asUser, body: { user_id: userId } })
  }

  async sendEvent(asUser: string, roomId: string, type: string, content: JsonObject, txnId: string, ts?: number): Promise<string> {
    const res = await this.request('PUT', `/_matrix/client/v3/rooms/${enc(roomId)}/send/${enc(type)}/${enc(txnId)}`, {
      asUser,
      query: { ts },
      body: content,
    })
    return String(res['event_id'])
  }

  async sendState(asUser: string, roomId: string, type: string, stateKey: string, content: JsonObject, ts?: number): Promise<string> {
    const res = await this.request('PUT', `/_matrix/client/v3/rooms/${enc(roomId)}/state/${enc(type)}/${enc(stateKey)}`, {
      asUser,
      query: { ts },
      body: content,
    })
    return String(res['event_id'])
  }

  async getState(roomId: string, type: string, stateKey = '', asUser?: string): Promise<JsonObject | undefined> {
    try {
      return await this.request('GET', `/_matrix/client/v3/rooms/${enc(roomId)}/state/${enc(type)}/${enc(stateKey)}`, {
        asUser: asUser ?? this.botUserId,
      })
    } catch (err) {
      if (isMatrixErrcode(err, 'M_NOT_FOUND')) return undefined
      throw err
    }
  }

  async getPowerLevels(roomId: string, asUser?: string): Promise<PowerLevels | undefined> {
    return (await this.getState(roomId, 'm.room.power_levels', '', asUser)) as PowerLevels | undefined
  }

  async redact(asUser: string, roomId: string, eventId: string, txnId: string, reason?: string): Promise<string> {
    const res = await this.request('PUT', `/_matrix/client/v3/rooms/${enc(roomId)}/redact/${enc(eventId)}/${enc(txnId)}`, {
      asUser,
      body: reason ? { reason } : {},
    })
    return String(res['event_id'])
  }

  async getJoinedMembers(roomId: string, asUser?: string): Promise<Record<string, Profile>> {
    const res = await this.request('GET', `/_matrix/client/v3/rooms/${enc(roomId)}/joined_members`, {
      asUser: asUser ?? this.botUserId,
    })
    const joined = (res['joined'] ?? {}) as Record<string, Record<string, unknown>>
    const out: Record<string, Profile> = {}
    for (const [id, p] of Object.entries(joined)) out[id] = toProfile(p['display_name'], p['avatar_url'])
    return out
  }

  async setTyping(asUser: string, roomId: string, typing: boolean, timeoutMs: number): Promise<void> {
    await this.request('PUT', `/_matrix/client/v3/rooms/${enc(roomId)}/typing/${enc(asUser)}`, {
      asUser,
      body: typing ? { typing, timeout: timeoutMs } : { typing },
    })
  }

  async sendReadReceipt(asUser: string, roomId: string, eventId: string): Promise<void> {
    // Synapse refuses an empty body (M_NOT_JSON): the receipt endpoint takes an object, here an empty one.
    await this.request('POST', `/_matrix/client/v3/rooms/${enc(roomId)}/receipt/m.read/${enc(eventId)}`, { asUser, body: {} })
  }

  async pingAppservice(appserviceId: string, transactionId: string): Promise<{ durationMs: number } | 'unsupported'> {
    try {
      const res = await this.request('POST', `/_matrix/client/v1/appservice/${enc(appserviceId)}/ping`, {
        body: { transaction_id: transactionId },
      })
      return { durationMs: Number(res['duration_ms'] ?? 0) }
    } catch (err) {
      if (isUnrecognized(err) || (err instanceof MatrixApiError && err.status === 405)) return 'unsupported'
      const failure = err instanceof MatrixApiError ? pingFailureOf(err) : undefined
      if (failure) throw failure
      throw err
    }
  }

  /**
   * Client-server calls for one device of an appservice user (the crypto layer's keys, to-device messages,
   * device management): `user_id` asserts the user, and `org.matrix.msc3202.device_id` (MSC3202 device
   * masquerading) the device, once there is one. Errors are the typed ones of every other call.
   */
  deviceHttp(userId: string, deviceId?: string): DeviceHttp {
    return {
      request: (method, path, body) => this.request(method, path, {
        asUser: userId,
        query: deviceId !== undefined ? { 'org.matrix.msc3202.device_id': deviceId } : {},
        ...(body !== undefined ? { body } : {}),
      }),
    }
  }

  // ---- HTTP ------------------------------------------------------------------------------------------

  private async request(method: string, path: string, opts: RequestOptions = {}): Promise<JsonObject> {
    const res = await this.call(method, path, opts)
    return res && typeof res === 'object' ? (res as JsonObject) : {}
  }

  private async rawRequest(path: string, query: Record<string, string> = {}): Promise<RawResponse> {
    return (await this.call('GET', path, { query, raw: true })) as RawResponse
  }

  private async call(method: string, path: string, opts: RequestOptions): Promise<unknown> {
    const qs: Record<string, string | string[]> = {}
    for (const [k, v] of Object.entries(opts.query ?? {})) {
      if (v === undefined) continue
      qs[k] = Array.isArray(v) ? v : String(v)
    }
    if (opts.asUser) qs['user_id'] = opts.asUser
    const query = queryString(qs) // arrays as repeated keys (a=1&a=2), as the spec's query parameters want
    const body = opts.body === undefined ? undefined : Buffer.isBuffer(opts.body) ? opts.body : JSON.stringify(opts.body)
    const started = Date.now()
    try {
      // A path on the homeserver, or once redirected, a URL (only a download is).
      let target: string | URL = `${this.basePath}${path}${query ? `?${query}` : ''}`
      for (let hops = 0; ; hops++) {
        const res = await this.exchange(method, target, body, Buffer.isBuffer(opts.body) ? opts.contentType ?? 'application/octet-stream' : 'application/json')
        const location = res.headers['location']
        if (method === 'GET' && REDIRECTS.has(res.statusCode) && location && hops < MAX_REDIRECTS) {
          target = new URL(location, typeof target === 'string' ? new URL(target, this.base) : target)
          continue
        }
        if (res.statusCode < 200 || res.statusCode >= 300) throw res
        return opts.raw ? res : jsonOrText(res.body as Buffer)
      }
    } catch (err) {
      const typed = toTypedError(err, `${method} ${path}`)
      this.log.debug({ request: `${method} ${path}`, ms: Date.now() - started, err: typed.message }, 'homeserver call failed')
      throw typed
    }
  }

  /** One request and its whole answer (any status). Rejects with Node's socket error (a `code` such as
   * ECONNREFUSED), or ETIMEDOUT when the connection stays silent for the request timeout. */
  private async exchange(method: string, target: string | URL, body: string | Buffer | undefined, contentType: string): Promise<RawResponse> {
    const url = typeof target === 'string' ? this.base : target
    // The token goes to the homeserver only, never to where a download is redirected.
    const headers: OutgoingHttpHeaders = typeof target === 'string' || target.origin === this.base.origin ? { Authorization: this.auth } : {}
    if (body !== undefined) headers['Content-Type'] = contentType
    const res = await exchange({
      method, url, headers, body, idleTimeoutMs: this.timeoutMs,
      agent: url.protocol === 'https:' ? this.agents.https : this.agents.http,
      path: typeof target === 'string' ? target : `${target.pathname}${target.search}`,
    })
    return { statusCode: res.status, headers: res.headers, body: res.body }
  }
}

/** A response body as the callers take it: JSON when it parses, else its text. */
function jsonOrText(body: Buffer): unknown {
  const text = body.toString('utf8')
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

function toProfile(displayName: unknown, avatarUrl: unknown): Profile {
  return {
    ...(typeof displayName === 'string' ? { displayName } : {}),
    ...(typeof avatarUrl === 'string' ? { avatarUrl } : {}),
  }
}

function toMedia(res: RawResponse): DownloadedMedia {
  const type = res.headers['content-type']
  const mimetype = (Array.isArray(type) ? type[0] : type) ?? 'application/octet-stream'
  const data = Buffer.isBuffer(res.body) ? res.body : Buffer.from(String(res.body ?? ''))
  return { data, mimetype }
}

function parseBody(body: unknown): Record<string, unknown> | undefined {
  if (body && typeof body === 'object' && !Buffer.isBuffer(body)) return body as Record<string, unknown>
  const text = Buffer.isBuffer(body) ? body.toString('utf8') : typeof body === 'string' ? body : undefined
  if (!text) return undefined
  try {
    const parsed: unknown = JSON.parse(text)
    return parsed && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}

/**
 * The wait a rate-limited answer asks for: the body's retry_after_ms when there is one (exact, and what every
 * homeserver sends), else the Retry-After header in seconds (MSC4041; Synapse sends both, the header rounded
 * up to whole seconds, so the body's is the truer wait).
 */
function retryAfterOf(body: Record<string, unknown> | undefined, header: string | string[] | undefined): number | undefined {
  const ms = body?.['retry_after_ms']
  if (typeof ms === 'number' && Number.isFinite(ms) && ms >= 0) return ms
  const h = Array.isArray(header) ? header[0] : header
  return typeof h === 'string' && /^\d+$/.test(h.trim()) ? Number(h.trim()) * 1000 : undefined
}

/** call() throws the raw response of a non-2xx answer (its body a Buffer), or Node's socket or timeout error
 * (with a code such as ECONNREFUSED, or ETIMEDOUT for a timeout). */
function toTypedError(err: unknown, request: string): Error {
  if (err instanceof MatrixApiError || err instanceof MatrixConnectionError) return err
  if (err && typeof err === 'object' && typeof (err as RawResponse).statusCode === 'number') {
    const res = err as RawResponse
    const body = parseBody(res.body)
    const retryAfterMs = retryAfterOf(body, res.headers?.['retry-after'])
    return new MatrixApiError({
      status: res.statusCode,
      errcode: typeof body?.['errcode'] === 'string' ? body['errcode'] : undefined,
      error: typeof body?.['error'] === 'string' ? body['error'] : undefined,
      retryAfterMs, body, request,
    })
  }
  if (err instanceof Error) {
    const code = (err as Error & { code?: unknown }).code
    const codeStr = typeof code === 'string' ? code : undefined
    if (codeStr && (CONNECTION_CODES.has(codeStr) || codeStr.startsWith('E'))) {
      return new MatrixConnectionError(`${request}: homeserver unreachable (${codeStr})`, codeStr, err)
    }
    return err
  }
  return new Error(`${request}: ${String(err)}`)
}

export * from './client-errors.ts'
