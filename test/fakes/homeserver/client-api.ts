// The client-server endpoints an appservice calls, with Synapse's checks: the as_token, `user_id`
// assertion, registration rules, membership, power levels, transaction-id idempotency, `ts` for AS users.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { CreateRoomInput, HomeserverState } from './state.ts'
import type { TransactionPusher } from './pusher.ts'
import { E2eeState } from './e2ee.ts'
import { EphemeralRooms } from './ephemeral.ts'
import { OpenIdTokens } from './openid.ts'
import { upgradeRoom } from './upgrade.ts'
import { defaultPushRules } from './push-rules.ts'
import { DEFAULT_TIMELINE_LIMIT, isEmpty, roomsSince } from './room-sync.ts'
import { RateLimited, type RateLimiter, type RateLimitKind } from './rate-limit.ts'
import { MatrixFault, newMediaId, type AppserviceRegistration, type FakeEvent, type FakeHomeserverOptions, type InjectedFault, type RecordedCall } from './types.ts'

export interface StoredMedia {
  data: Buffer
  mimetype: string
  filename: string | undefined
  uploader: string
}

interface Ctx {
  method: string
  query: URLSearchParams
  body: unknown
  raw: Buffer
  headers: IncomingMessage['headers']
  /** Set by authenticate(). */
  user: string | undefined
  /** The caller's device: a real user's token's device, or the appservice's masqueraded one (MSC3202). */
  device: string | undefined
  /** True when the caller used the as_token (the appservice or one of its users). */
  appservice: boolean
  /** Aborted when the client hangs up (a long-polling /sync then ends). */
  gone: AbortSignal
}

type Answer = { status: number; json: unknown } | { status: number; bytes: Buffer; mimetype: string; filename?: string | undefined }
type Handler = (ctx: Ctx, m: string[]) => Promise<Answer> | Answer
const ok = (json: unknown): Answer => ({ status: 200, json })
const LOCALPART = /^[a-z0-9._=\-/+]+$/


/** Synapse's default max_upload_size (50M). */
const MAX_UPLOAD_BYTES = 50 * 1024 * 1024
export class ClientApi {
  readonly media = new Map<string, StoredMedia>()
  /** Checked after authentication, before the endpoint runs. */
  readonly faults: InjectedFault[] = []
  /** Typing and read receipts (homeserver/ephemeral.ts). */
  readonly ephemeral: EphemeralRooms
  /** Devices, keys, to-device messages (homeserver/e2ee.ts). */
  readonly e2ee: E2eeState
  /** OpenID tokens users ask for and third parties check (homeserver/openid.ts). */
  readonly openid: OpenIdTokens
  /** Awaited after a send or redaction made its event and before the answer goes out (see echoBeforeAnswer). */
  beforeAnswer: ((ev: FakeEvent) => Promise<void>) | undefined
  /** Synapse's limits, applied to the appservice's users while its registration says rate_limited: true. */
  limiter: RateLimiter | undefined
  private readonly routes: [string, RegExp, Handler][]
  private readonly s: HomeserverState
  private readonly pusher: TransactionPusher
  private readonly opts: Required<Pick<FakeHomeserverOptions, 'pingSupported' | 'pingTimeoutMs' | 'authenticatedMedia' | 'legacyMedia' | 'requireInhibitLogin' | 'deviceMasquerading' | 'clock'>>
  private readonly record: (call: RecordedCall) => void
  /** Told when a /sync starts or stops waiting (not a change that wakes /syncs: that would wake the sync itself). */
  syncsWaitingChanged: () => void = () => {}
  /** Long-polling /syncs, woken by every change to look again. */
  private readonly syncWaiters = new Set<() => void>()
  /** Global account data: `${userId}\u0000${type}` → content. Not sent in /sync (no test client reads it from there). */
  private readonly accountData = new Map<string, Record<string, unknown>>()
  /** Filters clients uploaded: `${userId}\u0000${filterId}` → definition. */
  private readonly filters = new Map<string, Record<string, unknown>>()

  constructor(state: HomeserverState, pusher: TransactionPusher, opts: ClientApi['opts'], record: (call: RecordedCall) => void, changed: () => void = () => {}) {
    this.s = state
    this.pusher = pusher
    this.ephemeral = new EphemeralRooms(state, pusher, changed)
    this.e2ee = new E2eeState(state, {
      toDevice: (m) => pusher.enqueueToDevice(m),
      deviceListChanged: (u) => pusher.enqueueDeviceListChange(u),
    }, changed)
    this.opts = opts
    this.openid = new OpenIdTokens(state.domain, opts.clock)
    this.record = record
    const C = '/_matrix/client/v3'
    const R = `${C}/rooms/([^/]+)`
    this.routes = [
      ['GET', /^\/_matrix\/client\/versions$/, () => ok({ versions: ['v1.1', 'v1.7', 'v1.11', 'v1.13'], unstable_features: {} })],
      ['POST', re(`${C}/register`), (c) => this.register(c)],
      ['GET', re(`${C}/account/whoami`), (c) => ok({ user_id: c.user, is_guest: false })],
      ['GET', re(`${C}/profile/([^/]+)`), (_c, m) => this.getProfile(m[1]!)],
      ['PUT', re(`${C}/profile/([^/]+)/(displayname|avatar_url)`), (c, m) => this.setProfile(c, m[1]!, m[2] as 'displayname' | 'avatar_url')],
      ['POST', re(`${C}/createRoom`), (c) => this.createRoom(c)],
      ['POST', re(`${R}/invite`), (c, m) => this.invite(c, m[1]!)],
      ['POST', re(`${R}/upgrade`), (c, m) => ok({ replacement_room: upgradeRoom(this.s, c.user!, m[1]!, obj(c.body)['new_version']) })],
      ['POST', re(`${C}/join/([^/]+)`), (c, m) => this.join(c, m[1]!)],
      ['POST', re(`${R}/join`), (c, m) => this.join(c, m[1]!)],
      ['POST', re(`${R}/leave`), (c, m) => { this.s.leave(c.user!, m[1]!, str(obj(c.body)['reason'])); return ok({}) }],
      ['POST', re(`${R}/kick`), (c, m) => { this.s.kick(c.user!, m[1]!, target(c), str(obj(c.body)['reason'])); return ok({}) }],
      ['POST', re(`${R}/ban`), (c, m) => { this.s.ban(c.user!, m[1]!, target(c), str(obj(c.body)['reason'])); return ok({}) }],
      ['POST', re(`${R}/unban`), (c, m) => { this.s.unban(c.user!, m[1]!, target(c)); return ok({}) }],
      ['PUT', re(`${R}/send/([^/]+)/([^/]+)`), (c, m) => this.send(c, m[1]!, m[2]!, m[3]!)],
      ['PUT', re(`${R}/state/([^/]+)(?:/([^/]*))?`), (c, m) => this.putState(c, m[1]!, m[2]!, m[3] ?? '')],
      ['GET', re(`${R}/state/([^/]+)(?:/([^/]*))?`), (c, m) => this.getState(c, m[1]!, m[2]!, m[3] ?? '')],
      ['GET', re(`${R}/state`), (c, m) => ok([...this.s.requireJoined(m[1]!, c.user!).state.values()])],
      ['PUT', re(`${R}/redact/([^/]+)/([^/]+)`), (c, m) => this.redact(c, m[1]!, m[2]!, m[3]!)],
      ['GET', re(`${R}/joined_members`), (c, m) => this.joinedMembers(c, m[1]!)],
      ['PUT', re(`${R}/typing/([^/]+)`), (c, m) => { this.ephemeral.setTyping(c.user!, m[1]!, m[2]!, obj(c.body)); return ok({}) }],
      ['POST', re(`${R}/receipt/([^/]+)/([^/]+)`), (c, m) => { this.ephemeral.setReceipt(c.user!, m[1]!, m[2]!, m[3]!, c.raw, c.body); return ok({}) }],
      ['POST', re('/_matrix/media/v3/upload'), (c) => this.upload(c)],
      ['GET', re('/_matrix/client/v1/media/download/([^/]+)/([^/]+)(?:/[^/]*)?'), (_c, m) => this.download(m[1]!, m[2]!, 'authenticated')],
      ['GET', re('/_matrix/media/v3/download/([^/]+)/([^/]+)(?:/[^/]*)?'), (_c, m) => this.download(m[1]!, m[2]!, 'legacy')],
      ['POST', re('/_matrix/client/v1/appservice/([^/]+)/ping'), (c, m) => this.ping(c, m[1]!)],
      ['POST', re(`${C}/login`), (c) => this.login(c)],
      ['POST', re(`${C}/logout`), (c) => this.logout(c)],
      ['GET', re(`${C}/sync`), (c) => this.sync(c)],
      ['GET', re(`${C}/pushrules/?`), () => ok(defaultPushRules())],
      ['GET', re(`${C}/capabilities`), () => this.capabilities()],
      ['GET', re(`${C}/user/([^/]+)/account_data/([^/]+)`), (c, m) => this.getAccountData(c, m[1]!, m[2]!)],
      ['PUT', re(`${C}/user/([^/]+)/account_data/([^/]+)`), (c, m) => this.putAccountData(c, m[1]!, m[2]!)],
      // No key backup is ever made here: Synapse's answer when a user has none.
      ['GET', re(`${C}/room_keys/version`), () => { throw new MatrixFault(404, 'M_NOT_FOUND', 'No backup found') }],
      ['POST', re(`${C}/user/([^/]+)/filter`), (c, m) => this.uploadFilter(c, m[1]!)],
      ['GET', re(`${C}/user/([^/]+)/filter/([^/]+)`), (c, m) => this.getFilter(c, m[1]!, m[2]!)],
      ['GET', re(`${C}/devices`), (c) => ok({ devices: this.e2ee.listDevices(c.user!) })],
      ['GET', re(`${C}/devices/([^/]+)`), (c, m) => this.getDevice(c, m[1]!)],
      ['PUT', re(`${C}/devices/([^/]+)`), (c, m) => this.putDevice(c, m[1]!)],
      ['DELETE', re(`${C}/devices/([^/]+)`), (c, m) => this.deleteDevice(c, m[1]!)],
      ['POST', re(`${C}/keys/upload`), (c) => ok(this.e2ee.upload(c.user!, c.device, obj(c.body)))],
      ['POST', re(`${C}/keys/query`), (c) => ok(this.e2ee.query(c.user!, obj(c.body)))],
      ['POST', re(`${C}/keys/claim`), (c) => ok(this.e2ee.claim(obj(c.body)))],
      ['POST', re(`${C}/keys/device_signing/upload`), (c) => ok(this.e2ee.uploadCrossSigning(c.user!, obj(c.body), c.appservice))],
      ['POST', re(`${C}/keys/signatures/upload`), (c) => ok(this.e2ee.uploadSignatures(c.user!, obj(c.body)))],
      ['PUT', re(`${C}/sendToDevice/([^/]+)/([^/]+)`), (c, m) => ok(this.e2ee.sendToDevice(c.user!, c.device, m[1]!, m[2]!, obj(c.body)))],
      ['POST', re(`${C}/user/([^/]+)/openid/request_token`), (c, m) => ok(this.openid.request(c.user!, m[1]!, c.raw, c.body))],
      // The federation API's one unauthenticated endpoint a third party calls (no X-Matrix signature needed).
      ['GET', re('/_matrix/federation/v1/openid/userinfo'), (c) => ok(this.openid.userinfo(c.query))],
    ]
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake')
    const raw = await readAll(req)
    const path = decodePath(url.pathname)
    const gone = new AbortController()
    // Only a client hanging up before the answer is "gone": aborting at every normal close made a DOMException
    // (with its stack trace) per request, a measurable part of the benchmark harness's CPU.
    res.once('close', () => { if (!res.writableFinished) gone.abort() })
    const ctx: Ctx = { method: req.method ?? 'GET', query: url.searchParams, body: undefined, raw, headers: req.headers, user: undefined, device: undefined, appservice: false, gone: gone.signal }
    let answer: Answer
    let headers: Record<string, string> = {}
    try {
      answer = await this.dispatch(ctx, url.pathname)
    } catch (err) {
      const fault = err instanceof MatrixFault ? err : new MatrixFault(500, 'M_UNKNOWN', `fake homeserver bug: ${(err as Error).message}`)
      answer = { status: fault.status, json: fault.toJSON() }
      if (fault instanceof RateLimited) headers = fault.headers
    }
    const query = Object.fromEntries([...url.searchParams.entries()].filter(([k]) => k !== 'access_token'))
    this.record({
      method: ctx.method, path, query, user: ctx.user, status: answer.status, at: Date.now(),
      body: ctx.body, response: 'json' in answer ? answer.json : { bytes: answer.bytes.length },
    })
    if ('json' in answer) {
      const text = JSON.stringify(answer.json)
      res.writeHead(answer.status, { ...headers, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) })
      res.end(text)
    } else {
      res.writeHead(answer.status, {
        'Content-Type': answer.mimetype, 'Content-Length': answer.bytes.length,
        ...(answer.filename ? { 'Content-Disposition': `inline; filename="${answer.filename}"` } : {}),
      })
      res.end(answer.bytes)
    }
  }

  private async dispatch(ctx: Ctx, rawPath: string): Promise<Answer> {
    let methodMismatch = false
    for (const [method, pattern, handler] of this.routes) {
      const m = pattern.exec(rawPath)
      if (!m) continue
      if (method !== ctx.method) {
        methodMismatch = true
        continue
      }
      const args = m.map((part) => (part === undefined ? part : decodeURIComponent(part))) as string[]
      if (!rawPath.startsWith('/_matrix/client/versions') && !rawPath.endsWith('/login') && !rawPath.startsWith('/_matrix/federation/')) this.authenticate(ctx)
      this.injectedFault(ctx, decodePath(rawPath))
      if (ctx.raw.length && !rawPath.startsWith('/_matrix/media/v3/upload')) {
        try {
          ctx.body = JSON.parse(ctx.raw.toString('utf8'))
        } catch {
          throw new MatrixFault(400, 'M_NOT_JSON', 'Content not JSON.')
        }
      } else if (ctx.raw.length) {
        ctx.body = { bytes: ctx.raw.length }
      }
      return await handler(ctx, args)
    }
    if (methodMismatch) throw new MatrixFault(405, 'M_UNRECOGNIZED', 'Unrecognized request')
    throw new MatrixFault(404, 'M_UNRECOGNIZED', 'Unrecognized request')
  }

  private injectedFault(ctx: Ctx, path: string): void {
    const i = this.faults.findIndex((f) =>
      (f.method === undefined || f.method === ctx.method) &&
      (f.user === undefined || f.user === ctx.user) &&
      (f.path === undefined || (typeof f.path === 'string' ? path.includes(f.path) : f.path.test(path))))
    if (i < 0) return
    const f = this.faults[i]!
    f.times = (f.times ?? 1) - 1
    if (f.times <= 0) this.faults.splice(i, 1)
    throw new MatrixFault(f.status, f.errcode ?? 'M_UNKNOWN', f.error ?? 'injected fault',
      f.retryAfterMs !== undefined ? { retry_after_ms: f.retryAfterMs } : {})
  }

  private authenticate(ctx: Ctx): void {
    const header = ctx.headers.authorization
    const query = ctx.query.get('access_token')
    // Synapse refuses both at once ("Mixing Authorization headers and access_token query parameters.") and a
    // header that is not Bearer, rather than picking one.
    if (header !== undefined && query !== null) throw new MatrixFault(401, 'M_MISSING_TOKEN', 'Mixing Authorization headers and access_token query parameters.')
    if (header !== undefined && !/^Bearer \S+$/.test(header)) throw new MatrixFault(401, 'M_MISSING_TOKEN', 'Invalid Authorization header.')
    const token = header !== undefined ? header.slice(7) : (query ?? undefined)
    if (!token) throw new MatrixFault(401, 'M_MISSING_TOKEN', 'Missing access token.')
    const other = this.s.otherRegistrations.find(r => r.as_token === token)
    if (other) return this.authenticateOther(ctx, other)
    const owner = this.e2ee.tokenOwner(token)
    if (owner) {
      // A real user's (or a logged-in appservice user's) own token: `user_id` is not theirs to assert.
      ctx.user = owner.userId
      ctx.device = owner.deviceId
      return
    }
    if (token !== this.s.registration.as_token) throw new MatrixFault(401, 'M_UNKNOWN_TOKEN', 'Unrecognised access token.', { soft_logout: false })
    ctx.appservice = true
    const asserted = ctx.query.get('user_id')
    if (asserted === null || asserted === this.s.botUserId) {
      ctx.user = this.s.botUserId
    } else {
      if (!this.s.isAsUser(asserted)) throw new MatrixFault(403, 'M_FORBIDDEN', `Application service cannot masquerade as this user (${asserted}).`)
      if (!this.s.users.has(asserted)) throw new MatrixFault(403, 'M_FORBIDDEN', `Application service has not registered this user (${asserted})`)
      ctx.user = asserted
    }
    // MSC3202 device masquerading (synapse/api/auth/base.py): only with the experimental flag on; a device the
    // user does not have is refused with 400 M_EXCLUSIVE.
    const device = ctx.query.get('org.matrix.msc3202.device_id')
    if (device !== null && this.opts.deviceMasquerading) {
      if (!this.e2ee.device(ctx.user, device)) {
        throw new MatrixFault(400, 'M_EXCLUSIVE', `Application service trying to use a device that doesn't exist ('${device}' for ${ctx.user})`)
      }
      ctx.device = device
    }
  }

  /**
   * A further appservice (double puppeting: no url, a non-exclusive namespace over the server's own users): as
   * Synapse's get_appservice_user, it may act as any existing local user its namespaces cover, and only as them.
   */
  private authenticateOther(ctx: Ctx, reg: AppserviceRegistration): void {
    const asserted = ctx.query.get('user_id') ?? `@${reg.sender_localpart}:${this.s.domain}`
    const covered = asserted.endsWith(`:${this.s.domain}`) && reg.namespaces.users.some(n => new RegExp(`^(?:${n.regex})$`).test(asserted))
    if (!covered) throw new MatrixFault(403, 'M_FORBIDDEN', `Application service cannot masquerade as this user (${asserted}).`)
    if (!this.s.users.has(asserted)) throw new MatrixFault(403, 'M_FORBIDDEN', `Application service has not registered this user (${asserted})`)
    ctx.user = asserted
  }

  /** Counts one action of the caller against its limit, or throws the 429 (every caller here is an AS user). */
  private limit(ctx: Ctx, kind: RateLimitKind): void {
    if (ctx.appservice && this.s.registration.rate_limited === true) this.limiter?.check(ctx.user!, kind)
  }

  /** `ts` is honoured for appservice users only; every caller here is one. */
  private ts(ctx: Ctx): number | undefined {
    const v = ctx.query.get('ts')
    if (v === null || !ctx.appservice) return undefined
    if (!/^\d+$/.test(v)) throw new MatrixFault(400, 'M_INVALID_PARAM', 'ts must be an integer')
    return Number(v)
  }

  private register(ctx: Ctx): Answer {
    const body = obj(ctx.body)
    if (body['type'] !== 'm.login.application_service') throw new MatrixFault(400, 'M_BAD_JSON', 'Invalid login type for application service registration')
    const username = str(body['username'])
    if (!username) throw new MatrixFault(400, 'M_MISSING_PARAM', 'Missing username')
    if (!LOCALPART.test(username)) throw new MatrixFault(400, 'M_INVALID_USERNAME', 'User ID can only contain characters a-z, 0-9, or \'=_-./+\'')
    const userId = `@${username}:${this.s.domain}`
    if (!this.s.isAsUser(userId)) throw new MatrixFault(400, 'M_EXCLUSIVE', 'Invalid user localpart for this application service.')
    const inhibit = body['inhibit_login'] === true
    if (!inhibit && this.opts.requireInhibitLogin) {
      throw new MatrixFault(400, 'M_APPSERVICE_LOGIN_UNSUPPORTED', 'This server does not support logging in as an application service user; set inhibit_login')
    }
    if (this.s.users.has(userId)) throw new MatrixFault(400, 'M_USER_IN_USE', 'User ID already taken.')
    this.s.users.set(userId, { id: userId, displayname: username })
    return ok(inhibit ? { user_id: userId, home_server: this.s.domain } : { user_id: userId, home_server: this.s.domain, access_token: `syt_${username}_fake`, device_id: 'FAKEDEVICE' })
  }

  private getProfile(userId: string): Answer {
    const u = this.s.users.get(userId)
    if (!u) throw new MatrixFault(404, 'M_NOT_FOUND', 'Profile was not found')
    return ok(this.s.profileContent(userId))
  }

  private setProfile(ctx: Ctx, userId: string, field: 'displayname' | 'avatar_url'): Answer {
    if (userId !== ctx.user) throw new MatrixFault(403, 'M_FORBIDDEN', `Cannot set another user's ${field}`)
    this.limit(ctx, 'message')
    const value = obj(ctx.body)[field]
    if (value !== undefined && value !== null && typeof value !== 'string') throw new MatrixFault(400, 'M_BAD_JSON', `'${field}' must be a string`)
    this.s.setProfileField(userId, field, typeof value === 'string' ? value : undefined)
    return ok({})
  }

  private async createRoom(ctx: Ctx): Promise<Answer> {
    const body = obj(ctx.body)
    const invite = Array.isArray(body['invite']) ? (body['invite'] as string[]) : []
    for (const id of invite) await this.ensureQueried(id)
    const roomId = this.s.createRoom(ctx.user!, body as CreateRoomInput)
    return ok({ room_id: roomId })
  }

  private async invite(ctx: Ctx, roomId: string): Promise<Answer> {
    const body = obj(ctx.body)
    const target = str(body['user_id'])
    if (!target) throw new MatrixFault(400, 'M_MISSING_PARAM', 'Missing user_id')
    await this.ensureQueried(target)
    this.s.invite(ctx.user!, roomId, target, undefined, str(body['reason']))
    return ok({})
  }

  /** Inviting a not-yet-existing user in the namespace makes Synapse ask the appservice first. */
  async ensureQueried(userId: string): Promise<void> {
    if (userId === this.s.botUserId || !this.s.isAsUser(userId) || this.s.users.has(userId)) return
    await this.pusher.queryUser(userId)
  }

  private join(ctx: Ctx, target: string): Answer {
    if (target.startsWith('#')) throw new MatrixFault(404, 'M_NOT_FOUND', 'Room alias not found')
    this.limit(ctx, 'join')
    // rc_joins_per_room: joins to one room, whoever makes them (a repeated join of a member changes nothing, and
    // Synapse does not count it).
    if (this.s.membership(target, ctx.user!) !== 'join' && ctx.appservice && this.s.registration.rate_limited === true) this.limiter?.check(target, 'joinPerRoom')
    this.s.join(ctx.user!, target)
    return ok({ room_id: target })
  }

  private async send(ctx: Ctx, roomId: string, type: string, txnId: string): Promise<Answer> {
    const key = `/rooms/${roomId}/send/${type}/${txnId}`
    const prior = this.s.txnLookup(key)
    if (prior) return ok({ event_id: prior })
    this.limit(ctx, 'message')
    const ts = this.ts(ctx)
    const ev = this.s.send(ctx.user!, roomId, type, obj(ctx.body), { txnId, ...(ts !== undefined ? { ts } : {}) })
    this.s.txnRemember(key, ev.event_id)
    await this.beforeAnswer?.(ev)
    return ok({ event_id: ev.event_id })
  }

  private putState(ctx: Ctx, roomId: string, type: string, stateKey: string): Answer {
    this.limit(ctx, 'message')
    const ts = this.ts(ctx)
    const ev = this.s.send(ctx.user!, roomId, type, obj(ctx.body), { stateKey, ...(ts !== undefined ? { ts } : {}) })
    return ok({ event_id: ev.event_id })
  }

  private getState(ctx: Ctx, roomId: string, type: string, stateKey: string): Answer {
    this.s.requireJoined(roomId, ctx.user!)
    const ev = this.s.stateEvent(roomId, type, stateKey)
    if (!ev) throw new MatrixFault(404, 'M_NOT_FOUND', 'Event not found.')
    return ok(ev.content)
  }

  private async redact(ctx: Ctx, roomId: string, eventId: string, txnId: string): Promise<Answer> {
    const key = `/rooms/${roomId}/redact/${eventId}/${txnId}`
    const prior = this.s.txnLookup(key)
    if (prior) return ok({ event_id: prior })
    this.limit(ctx, 'message')
    const ev = this.s.redact(ctx.user!, roomId, eventId, str(obj(ctx.body)['reason']), { txnId })
    this.s.txnRemember(key, ev.event_id)
    await this.beforeAnswer?.(ev)
    return ok({ event_id: ev.event_id })
  }

  private joinedMembers(ctx: Ctx, roomId: string): Answer {
    this.s.requireJoined(roomId, ctx.user!)
    const joined: Record<string, Record<string, unknown>> = {}
    for (const id of this.s.joinedMembers(roomId)) {
      const c = this.s.stateEvent(roomId, 'm.room.member', id)!.content
      joined[id] = { ...(c['displayname'] !== undefined ? { display_name: c['displayname'] } : {}), ...(c['avatar_url'] !== undefined ? { avatar_url: c['avatar_url'] } : {}) }
    }
    return ok({ joined })
  }

  private upload(ctx: Ctx): Answer {
    if (!ctx.raw.length) throw new MatrixFault(400, 'M_BAD_JSON', 'Upload body is empty')
    if (ctx.raw.length > MAX_UPLOAD_BYTES) throw new MatrixFault(413, 'M_TOO_LARGE', 'Upload request body is too large')
    this.limit(ctx, 'media')
    const id = newMediaId()
    this.media.set(id, {
      data: Buffer.from(ctx.raw), mimetype: String(ctx.headers['content-type'] ?? 'application/octet-stream'),
      filename: ctx.query.get('filename') ?? undefined, uploader: ctx.user!,
    })
    return ok({ content_uri: `mxc://${this.s.domain}/${id}` })
  }

  private download(server: string, mediaId: string, path: 'authenticated' | 'legacy'): Answer {
    if (path === 'authenticated' && !this.opts.authenticatedMedia) throw new MatrixFault(404, 'M_UNRECOGNIZED', 'Unrecognized request')
    if (path === 'legacy' && !this.opts.legacyMedia) throw new MatrixFault(404, 'M_NOT_FOUND', 'Not found')
    const m = server === this.s.domain ? this.media.get(mediaId) : undefined
    if (!m) throw new MatrixFault(404, 'M_NOT_FOUND', 'Not found')
    return { status: 200, bytes: m.data, mimetype: m.mimetype, filename: m.filename }
  }

  /** Only the appservice login (m.login.application_service, with the as_token) is served: real users' devices
   * come from the test helper FakeHomeserver.login(). */
  private login(ctx: Ctx): Answer {
    const body = obj(ctx.body)
    if (body['type'] !== 'm.login.application_service') throw new MatrixFault(400, 'M_UNKNOWN', 'Unknown login type')
    this.authenticate(ctx)
    if (!ctx.appservice) throw new MatrixFault(401, 'M_MISSING_TOKEN', 'Missing access token.')
    // synapse/handlers/auth.py: an appservice opted into MSC4190 may not log in.
    if (this.s.registration['io.element.msc4190'] === true) {
      throw new MatrixFault(400, 'IO.ELEMENT.MSC4190.M_APPSERVICE_LOGIN_UNSUPPORTED', 'This appservice has MSC4190 enabled, so appservice login cannot be used.')
    }
    const identifier = obj(body['identifier'] ?? {})
    const user = str(identifier['user']) ?? str(body['user'])
    if (!user) throw new MatrixFault(400, 'M_MISSING_PARAM', 'Missing identifier.user')
    const userId = user.startsWith('@') ? user : `@${user}:${this.s.domain}`
    if (!this.s.isAsUser(userId)) throw new MatrixFault(403, 'M_FORBIDDEN', 'Invalid username or password')
    if (!this.s.users.has(userId) && userId !== this.s.botUserId) throw new MatrixFault(403, 'M_FORBIDDEN', 'Invalid username or password')
    const requested = str(body['device_id'])
    const { accessToken, deviceId } = this.e2ee.login(userId, requested, str(body['initial_device_display_name']))
    return ok({ user_id: userId, access_token: accessToken, device_id: deviceId, home_server: this.s.domain })
  }

  private logout(ctx: Ctx): Answer {
    if (ctx.appservice || !ctx.device) throw new MatrixFault(400, 'M_UNKNOWN', 'Application services cannot log out with the as_token')
    this.e2ee.deleteDevice(ctx.user!, ctx.device)
    return ok({})
  }

  /** GET /capabilities (synapse/rest/client/capabilities.py) for a server with default settings; the room versions
   * are the ones this fake makes. */
  private capabilities(): Answer {
    return ok({
      capabilities: {
        'm.room_versions': { default: this.s.defaultRoomVersion, available: { '10': 'stable', '11': 'stable' } },
        'm.change_password': { enabled: true },
        'm.set_displayname': { enabled: true },
        'm.set_avatar_url': { enabled: true },
        'm.3pid_changes': { enabled: true },
        'm.get_login_token': { enabled: false },
      },
    })
  }

  /** How many /syncs are waiting for something to arrive. */
  get syncsWaiting(): number {
    return this.syncWaiters.size
  }

  /** GET /user/{userId}/account_data/{type} (synapse/rest/client/account_data.py). */
  private getAccountData(ctx: Ctx, userId: string, type: string): Answer {
    if (userId !== ctx.user) throw new MatrixFault(403, 'M_FORBIDDEN', 'Cannot get account data for other users.')
    const content = this.accountData.get(`${userId}\u0000${type}`)
    if (!content) throw new MatrixFault(404, 'M_NOT_FOUND', 'Account data not found')
    return ok(content)
  }

  private putAccountData(ctx: Ctx, userId: string, type: string): Answer {
    if (userId !== ctx.user) throw new MatrixFault(403, 'M_FORBIDDEN', 'Cannot add account data for other users.')
    this.accountData.set(`${userId}\u0000${type}`, obj(ctx.body))
    return ok({})
  }

  /** Something changed: every long-polling /sync looks again. */
  wakeSyncs(): void {
    for (const wake of [...this.syncWaiters]) wake()
  }

  /**
   * GET /sync for a device: to-device messages, device lists and key counts (homeserver/e2ee.ts) and the rooms
   * (homeserver/room-sync.ts). The token is `s<event position>_<to-device position>`. As Synapse, an
   * incremental sync with nothing new waits up to `timeout` ms (default 0) for something to arrive.
   */
  private async sync(ctx: Ctx): Promise<Answer> {
    if (!ctx.device) throw new MatrixFault(400, 'M_UNKNOWN', 'This fake serves /sync to devices only')
    const sinceRaw = ctx.query.get('since')
    const since = sinceRaw === null ? null : /^s(\d+)_(\d+)$/.exec(sinceRaw)
    if (sinceRaw !== null && !since) throw new MatrixFault(400, 'M_INVALID_PARAM', `Invalid stream token: ${sinceRaw}`)
    const timeout = Number(ctx.query.get('timeout') ?? 0)
    if (!Number.isInteger(timeout) || timeout < 0) throw new MatrixFault(400, 'M_INVALID_PARAM', 'timeout must be a non-negative integer')
    const limit = this.timelineLimit(ctx.user!, ctx.query.get('filter'))
    const deadline = Date.now() + timeout
    for (;;) {
      const upTo = this.s.stream.length
      const crypto = this.e2ee.sync(ctx.user!, ctx.device, since ? since[2]! : null)
      const rooms = roomsSince(this.s, ctx.user!, since ? Number(since[1]) : null, upTo, limit, pos => `s${pos}_${crypto['next_batch'] as string}`)
      const lists = crypto['device_lists'] as { changed: string[]; left: string[] }
      const news = !since || (crypto['to_device'] as { events: unknown[] }).events.length > 0 || lists.changed.length > 0 || lists.left.length > 0 || !isEmpty(rooms)
      if (news || Date.now() >= deadline || ctx.gone.aborted) {
        return ok({ ...crypto, next_batch: `s${upTo}_${crypto['next_batch'] as string}`, rooms, account_data: { events: [] }, presence: { events: [] } })
      }
      await this.nextChange(deadline - Date.now(), ctx.gone)
    }
  }

  /** Resolves at the next change, after `ms`, or when the client hangs up, whichever comes first. */
  private nextChange(ms: number, gone: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer)
        this.syncWaiters.delete(done)
        gone.removeEventListener('abort', done)
        this.syncsWaitingChanged()
        resolve()
      }
      const timer = setTimeout(done, ms)
      this.syncWaiters.add(done)
      gone.addEventListener('abort', done)
      this.syncsWaitingChanged()
    })
  }

  /** The timeline limit of a sync's filter: inline JSON or the id of an uploaded one (Synapse's default otherwise). */
  private timelineLimit(userId: string, filter: string | null): number {
    if (filter === null) return DEFAULT_TIMELINE_LIMIT
    let def: Record<string, unknown> | undefined
    if (filter.startsWith('{')) {
      try {
        def = obj(JSON.parse(filter))
      } catch {
        throw new MatrixFault(400, 'M_NOT_JSON', 'Invalid filter JSON')
      }
    } else {
      def = this.filters.get(`${userId}\u0000${filter}`)
      if (!def) throw new MatrixFault(404, 'M_NOT_FOUND', 'No such filter')
    }
    const limit = (((def['room'] as Record<string, unknown> | undefined)?.['timeline']) as Record<string, unknown> | undefined)?.['limit']
    return typeof limit === 'number' && limit > 0 ? limit : DEFAULT_TIMELINE_LIMIT
  }

  /** POST /user/{userId}/filter (synapse/rest/client/filter.py): only for oneself; ids count up from 0. */
  private uploadFilter(ctx: Ctx, userId: string): Answer {
    if (userId !== ctx.user) throw new MatrixFault(403, 'M_FORBIDDEN', 'Can only create filters for local users')
    const id = String([...this.filters.keys()].filter(k => k.startsWith(`${userId}\u0000`)).length)
    this.filters.set(`${userId}\u0000${id}`, obj(ctx.body))
    return ok({ filter_id: id })
  }

  private getFilter(ctx: Ctx, userId: string, filterId: string): Answer {
    if (userId !== ctx.user) throw new MatrixFault(403, 'M_FORBIDDEN', 'Cannot get filters for other users')
    const def = this.filters.get(`${userId}\u0000${filterId}`)
    if (!def) throw new MatrixFault(404, 'M_NOT_FOUND', 'No such filter')
    return ok(def)
  }

  private getDevice(ctx: Ctx, deviceId: string): Answer {
    const d = this.e2ee.device(ctx.user!, deviceId)
    if (!d) throw new MatrixFault(404, 'M_NOT_FOUND', 'No device found')
    return ok({ device_id: d.deviceId, display_name: d.displayName ?? null, last_seen_ip: null, last_seen_ts: null })
  }

  /** MSC4190 (synapse/rest/client/devices.py): an opted-in appservice creates the device (201) or updates it
   * (200); anyone else only renames an existing one. */
  private putDevice(ctx: Ctx, deviceId: string): Answer {
    const body = obj(ctx.body)
    const name = body['display_name']
    if (name !== undefined && name !== null && typeof name !== 'string') throw new MatrixFault(400, 'M_BAD_JSON', 'display_name must be a string')
    if (ctx.appservice && this.s.registration['io.element.msc4190'] === true) {
      const created = this.e2ee.upsertDevice(ctx.user!, deviceId, typeof name === 'string' ? name : undefined)
      return { status: created ? 201 : 200, json: {} }
    }
    if (!this.e2ee.device(ctx.user!, deviceId)) throw new MatrixFault(404, 'M_NOT_FOUND', 'Unknown device')
    this.e2ee.upsertDevice(ctx.user!, deviceId, typeof name === 'string' ? name : undefined)
    return ok({})
  }

  private deleteDevice(ctx: Ctx, deviceId: string): Answer {
    if (!(ctx.appservice && this.s.registration['io.element.msc4190'] === true)) {
      throw new MatrixFault(401, 'M_UNAUTHORIZED', 'User-interactive authentication required', { session: 'fake', flows: [{ stages: ['m.login.password'] }], params: {} })
    }
    this.e2ee.deleteDevice(ctx.user!, deviceId)
    return ok({})
  }

  private async ping(ctx: Ctx, appserviceId: string): Promise<Answer> {
    if (!this.opts.pingSupported) throw new MatrixFault(400, 'M_UNRECOGNIZED', 'Unrecognized request')
    if (appserviceId !== this.s.registration.id) throw new MatrixFault(403, 'M_FORBIDDEN', 'Provided appservice ID does not match the one this access token belongs to')
    const result = await this.pusher.ping(str(obj(ctx.body)['transaction_id']), this.opts.pingTimeoutMs)
    return { status: result.status, json: result.body }
  }
}

// The client encodes path segments; match on the raw path so that an encoded "/" stays inside its segment.
function re(path: string): RegExp {
  return new RegExp(`^${path}$`)
}

function decodePath(p: string): string {
  try {
    return decodeURIComponent(p)
  } catch {
    return p
  }
}

/** The `user_id` a membership endpoint acts on. */
function target(c: Ctx): string {
  const id = str(obj(c.body)['user_id'])
  if (!id) throw new MatrixFault(400, 'M_MISSING_PARAM', 'Missing user_id')
  return id
}

function obj(v: unknown): Record<string, unknown> {
  if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>
  if (v === undefined) return {}
  throw new MatrixFault(400, 'M_BAD_JSON', 'Body must be a JSON object')
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined
}

/** The request body. Events rather than `for await`: the async iterator cost a stream wrapper per request. */
function readAll(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)))
    req.once('error', reject)
  })
}
