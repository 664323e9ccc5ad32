// A fake Synapse for scenario tests: a real HTTP server on loopback that serves the client-server calls an
// appservice makes (strictly, see homeserver/client-api.ts) and pushes transactions to the appservice the
// way Synapse does (homeserver/pusher.ts). Tests act as real Matrix users through the helpers below and
// wait on what the bridge did through waitFor(), which re-checks on every change instead of sleeping.
import { EventEmitter } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { ClientApi } from './homeserver/client-api.ts'
import type { E2eeState, ToDeviceHold, ToDeviceMessage } from './homeserver/e2ee.ts'
import { TransactionPusher } from './homeserver/pusher.ts'
import { RateLimiter } from './homeserver/rate-limit.ts'
import { HomeserverState } from './homeserver/state.ts'
import { upgradeRoom } from './homeserver/upgrade.ts'
import {
  MatrixFault,
  newMediaId,
  type AppserviceRegistration,
  type FakeEvent,
  type FakeHomeserverOptions,
  type InjectedFault,
  type PushAttempt,
  type RecordedCall,
  type TransactionBody,
} from './homeserver/types.ts'
import { PATIENCE_MS } from '../support/patience.ts'

export { MatrixFault }
export type { AppserviceRegistration, FakeEvent, FakeHomeserverOptions, InjectedFault, PushAttempt, RecordedCall, TransactionBody }
export type { E2eeState, ToDeviceHold, ToDeviceMessage }

export interface HelperRoomOptions {
  invite?: string[]
  name?: string
  topic?: string
  /** Adds m.room.encryption: messages from real users then arrive as m.room.encrypted. */
  encrypted?: boolean
  /** join_rule public instead of invite. */
  public?: boolean
  isDirect?: boolean
  roomVersion?: '10' | '11'
  /** Extra power levels on top of the creator's 100. */
  powerLevels?: Record<string, number>
}

export interface WaitOptions {
  timeoutMs?: number
  /** Shown in the timeout error. */
  what?: string
}

export function defaultRegistration(domain = 'example.org'): AppserviceRegistration {
  const dom = domain.replace(/\./g, '\\.')
  return {
    id: 'relay',
    url: null,
    as_token: 'as_token_fake_0123456789abcdef',
    hs_token: 'hs_token_fake_0123456789abcdef',
    sender_localpart: 'relaybot',
    namespaces: {
      users: [
        { exclusive: true, regex: `@signal_.*:${dom}` },
        { exclusive: true, regex: `@whatsapp_.*:${dom}` },
      ],
      aliases: [],
      rooms: [],
    },
    rate_limited: false,
    receive_ephemeral: true,
    'de.sorunome.msc2409.push_ephemeral': true,
  }
}

export class FakeHomeserver {
  readonly domain: string
  readonly registration: AppserviceRegistration
  readonly botUserId: string
  readonly calls: RecordedCall[] = []
  private readonly state: HomeserverState
  private readonly pusher: TransactionPusher
  private readonly api: ClientApi
  private readonly server: Server
  private readonly changes = new EventEmitter()
  private baseUrl = ''
  /** While true, every client-server connection is dropped at once (the homeserver is "down"). */
  offline = false
  /** Requests that arrived after hang(): accepted, read, never answered. */
  readonly hungRequests: string[] = []
  private hung = false
  /** With echoBeforeAnswer: awaited after the echo was acknowledged, before the answer to the send goes out. */
  holdSendAnswer: ((ev: FakeEvent) => Promise<void>) | undefined
  /** With rateLimits: the limiter, whose refusals a test can count. */
  readonly limiter: RateLimiter | undefined

  static async start(opts: FakeHomeserverOptions = {}): Promise<FakeHomeserver> {
    const hs = new FakeHomeserver(opts)
    await new Promise<void>((resolve, reject) => {
      hs.server.once('error', reject)
      hs.server.listen(0, '127.0.0.1', () => resolve())
    })
    hs.baseUrl = `http://127.0.0.1:${(hs.server.address() as AddressInfo).port}`
    return hs
  }

  private constructor(opts: FakeHomeserverOptions) {
    this.domain = opts.domain ?? 'example.org'
    this.registration = { ...defaultRegistration(this.domain), ...opts.registration }
    this.changes.setMaxListeners(0)
    this.state = new HomeserverState(this.domain, this.registration, opts.roomVersion ?? '11')
    this.botUserId = this.state.botUserId
    this.pusher = new TransactionPusher({
      registration: this.registration,
      style: opts.transactionStyle ?? 'v1',
      backoff: opts.retryBackoff ?? { initialMs: 5, maxMs: 100 },
      maxEvents: opts.maxEventsPerTransaction ?? 100,
      ephemeralKey: opts.ephemeralKey ?? 'stable',
      firstTxnId: opts.firstTxnId ?? 1,
      pushTimeoutMs: opts.pushTimeoutMs ?? 5000,
      onChange: () => this.changed(),
      otkCountKey: opts.otkCountKey ?? 'both',
      keyCounts: (users) => this.api.e2ee.keyCountsFor(users),
      botUserId: this.state.botUserId,
      isAsUser: (u) => this.state.isAsUser(u),
    })
    this.api = new ClientApi(this.state, this.pusher, {
      pingSupported: opts.pingSupported ?? true,
      pingTimeoutMs: opts.pingTimeoutMs ?? 2000,
      authenticatedMedia: opts.authenticatedMedia ?? true,
      legacyMedia: opts.legacyMedia ?? true,
      requireInhibitLogin: opts.requireInhibitLogin ?? true,
      deviceMasquerading: opts.deviceMasquerading ?? true,
      clock: opts.clock ?? Date.now,
    }, (call) => {
      this.calls.push(call)
      this.changed()
    }, () => this.changed())
    this.api.syncsWaitingChanged = () => this.changes.emit('change')
    if (opts.rateLimits) this.api.limiter = this.limiter = new RateLimiter(opts.rateLimits)
    if (opts.echoBeforeAnswer) {
      this.api.beforeAnswer = async (ev) => {
        await this.waitFor(() => this.pusher.delivered.some((t) => t.body.events.some((e) => e.event_id === ev.event_id)),
          { what: `the appservice to acknowledge the transaction carrying ${ev.event_id}` })
        await this.holdSendAnswer?.(ev)
      }
    }
    this.state.onEvent = (ev) => {
      if (this.interested(ev)) this.pusher.enqueueEvent(this.forAppservice(ev))
      if (ev.type === 'm.room.member' && ev.state_key !== undefined) this.api.e2ee.membershipChanged(ev.room_id, ev.state_key, String(ev.content['membership']))
      this.changed()
    }
    this.server = createServer((req, res) => {
      if (this.offline) {
        req.socket.destroy()
        return
      }
      if (this.hung) {
        this.hungRequests.push(`${req.method} ${req.url}`)
        this.changed()
        return
      }
      this.api.handle(req, res).catch((err: unknown) => {
        res.writeHead(500, { 'Content-Type': 'application/json' })
        res.end(JSON.stringify({ errcode: 'M_UNKNOWN', error: String(err) }))
      })
    })
  }

  /** Base URL of the client-server API, e.g. http://127.0.0.1:43123 */
  get url(): string {
    return this.baseUrl
  }

  /** Every push attempt (including refused ones and retries), in order. */
  /** Events queued for the appservice and not yet acknowledged by it. */
  get pendingForAppservice(): number {
    return this.pusher.pending
  }

  get transactions(): readonly PushAttempt[] {
    return this.pusher.attempts
  }

  /** Transactions the appservice acknowledged with a 2xx, in order. */
  get delivered(): readonly { txnId: string; body: TransactionBody }[] {
    return this.pusher.delivered
  }

  /** Events the appservice has acknowledged, in order of delivery. */
  get pushedEvents(): FakeEvent[] {
    return this.pusher.delivered.flatMap((t) => t.body.events)
  }

  /** True when nothing is waiting to be pushed and no transaction is in flight. */
  get pushIdle(): boolean {
    return this.pusher.idle
  }

  /** Loads a further registration, as `app_service_config_files` lists several. Only one without a `url` is modelled
   * (double puppeting): it receives nothing, and its token acts as the local users its namespaces cover. */
  addRegistration(reg: AppserviceRegistration): void {
    if (reg.url) throw new Error('fake homeserver: only a registration without a url can be added (no second pusher)')
    if ([this.registration, ...this.state.otherRegistrations].some(r => r.as_token === reg.as_token || r.id === reg.id)) {
      throw new Error('fake homeserver: two registrations share an id or as_token (Synapse refuses to start)')
    }
    this.state.otherRegistrations.push(reg)
  }

  /** Where to push transactions (the appservice usually listens on a port chosen after the fake started). */
  setAppserviceUrl(url: string | null): void {
    this.registration.url = url
    this.pusher.kick()
  }

  /** The homeserver hangs, as a Synapse stuck on its database does: connections are still accepted but no
   * request is ever answered, and no transaction is pushed. Open requests stay open until stop(). */
  hang(): void {
    this.hung = true
    this.pusher.pause()
  }

  pause(): void {
    this.pusher.pause()
  }

  resume(): void {
    this.pusher.resume()
  }

  /** Like Synapse on SQLite after a restart: the next transaction is numbered `next` (default 1) again. */
  resetTxnIds(next = 1): void {
    this.pusher.resetTxnIds(next)
  }

  /** The next matching client-server call(s) fail with this error, e.g. { path: '/send/', status: 429,
   * errcode: 'M_LIMIT_EXCEEDED', retryAfterMs: 50 } or { path: '/send/', status: 502, times: 3 }. */
  injectFault(fault: InjectedFault): void {
    this.api.faults.push({ ...fault })
  }

  async stop(): Promise<void> {
    this.pusher.stop()
    this.api.ephemeral.stop()
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  // ---- acting as real users ------------------------------------------------------------------------

  /** A real (non-appservice) local user. Refused inside the appservice's exclusive namespaces. */
  createUser(userId: string, profile: { displayname?: string; avatar_url?: string } = {}): string {
    if (this.state.isExclusive(userId)) throw new MatrixFault(400, 'M_EXCLUSIVE', `${userId} is reserved by an application service`)
    if (this.state.users.has(userId)) throw new MatrixFault(400, 'M_USER_IN_USE', 'User ID already taken.')
    const localpart = /^@([^:]+):/.exec(userId)?.[1] ?? userId
    this.state.users.set(userId, { id: userId, displayname: profile.displayname ?? localpart, ...(profile.avatar_url ? { avatar_url: profile.avatar_url } : {}) })
    this.changed()
    return userId
  }

  async createRoom(creator: string, opts: HelperRoomOptions = {}): Promise<string> {
    for (const id of opts.invite ?? []) await this.api.ensureQueried(id)
    const initial = opts.encrypted ? [{ type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } }] : []
    return this.state.createRoom(creator, {
      ...(opts.name !== undefined ? { name: opts.name } : {}),
      ...(opts.topic !== undefined ? { topic: opts.topic } : {}),
      invite: opts.invite ?? [],
      is_direct: opts.isDirect ?? false,
      preset: opts.public ? 'public_chat' : 'private_chat',
      initial_state: initial,
      ...(opts.roomVersion ? { room_version: opts.roomVersion } : {}),
      ...(opts.powerLevels ? { power_level_content_override: { users: { [creator]: 100, ...opts.powerLevels } } } : {}),
    })
  }

  /** A plain string becomes an m.text message. In an encrypted room, real users' messages are m.room.encrypted. */
  async sendMessage(user: string, roomId: string, content: string | Record<string, unknown>): Promise<string> {
    const c = typeof content === 'string' ? { msgtype: 'm.text', body: content } : content
    if (this.state.stateEvent(roomId, 'm.room.encryption') && !this.state.isAsUser(user)) {
      return this.sendEvent(user, roomId, 'm.room.encrypted', {
        algorithm: 'm.megolm.v1.aes-sha2', ciphertext: Buffer.from(JSON.stringify(c)).toString('base64'),
        device_id: 'REALDEVICE', sender_key: 'fakeSenderKey', session_id: 'fakeSession',
      })
    }
    return this.sendEvent(user, roomId, 'm.room.message', c)
  }

  /** Real users cannot set `ts` (it is honoured for appservice users only), so there is no such option. */
  async sendEvent(user: string, roomId: string, type: string, content: Record<string, unknown>, opts: { stateKey?: string; redacts?: string } = {}): Promise<string> {
    if (opts.redacts !== undefined) return this.redact(user, roomId, opts.redacts, str(content['reason']))
    return this.state.send(user, roomId, type, content, opts.stateKey !== undefined ? { stateKey: opts.stateKey } : {}).event_id
  }

  async redact(user: string, roomId: string, eventId: string, reason?: string): Promise<string> {
    return this.state.redact(user, roomId, eventId, reason).event_id
  }

  /** A room upgrade as Synapse performs it (homeserver/upgrade.ts); returns the new room's id. Nobody but the
   * upgrader is in the new room: invite others afterwards, as Element offers to. */
  async upgradeRoom(user: string, roomId: string, newVersion: '10' | '11' = '11'): Promise<string> {
    return upgradeRoom(this.state, user, roomId, newVersion)
  }

  async invite(sender: string, roomId: string, target: string): Promise<void> {
    await this.api.ensureQueried(target)
    this.state.invite(sender, roomId, target)
  }

  async join(user: string, roomId: string): Promise<void> {
    this.state.join(user, roomId)
  }

  async leave(user: string, roomId: string): Promise<void> {
    this.state.leave(user, roomId)
  }

  async kick(sender: string, roomId: string, target: string, reason?: string): Promise<void> {
    this.state.kick(sender, roomId, target, reason)
  }

  /** Sets one user's power level; `sender` defaults to the room's creator. */
  async setPowerLevel(roomId: string, userId: string, level: number, sender?: string): Promise<void> {
    const current = this.state.stateEvent(roomId, 'm.room.power_levels')
    const by = sender ?? this.state.stateEvent(roomId, 'm.room.create')?.sender
    if (!current || !by) throw new MatrixFault(404, 'M_NOT_FOUND', `no power levels in ${roomId}`)
    const users = { ...(current.content['users'] as Record<string, number>), [userId]: level }
    this.state.send(by, roomId, 'm.room.power_levels', { ...current.content, users }, { stateKey: '' })
  }

  async setDisplayName(userId: string, name: string): Promise<void> {
    this.state.setProfileField(userId, 'displayname', name)
  }

  sendTyping(roomId: string, userIds: string[]): void {
    this.pusher.enqueueEphemeral({ type: 'm.typing', room_id: roomId, content: { user_ids: userIds } })
  }

  sendReceipt(userId: string, roomId: string, eventId: string, type: 'm.read' | 'm.read.private' = 'm.read'): void {
    this.pusher.enqueueEphemeral({ type: 'm.receipt', room_id: roomId, content: { [eventId]: { [type]: { [userId]: { ts: Date.now() } } } } })
  }

  /** A real user's client sets their typing state, with Synapse's checks (see homeserver/ephemeral.ts). */
  setTyping(userId: string, roomId: string, typing: boolean, timeoutMs = 30_000): void {
    this.api.ephemeral.setTyping(userId, roomId, userId, { typing, ...(typing ? { timeout: timeoutMs } : {}) })
  }

  /** A real user's client marks an event read (POST …/receipt/m.read/{eventId}). */
  markRead(userId: string, roomId: string, eventId: string): void {
    this.api.ephemeral.setReceipt(userId, roomId, 'm.read', eventId, Buffer.from('{}'), {})
  }

  /** Who is typing in a room now, as a client syncing would see it. */
  typingIn(roomId: string): string[] {
    return this.api.ephemeral.typingIn(roomId)
  }

  /** Each user's latest public read receipt in a room. */
  receiptsIn(roomId: string): Record<string, { eventId: string; ts: number }> {
    return this.api.ephemeral.receiptsIn(roomId)
  }

  /** Any ephemeral event, pushed as is (if the registration asks for ephemeral events). */
  sendEphemeral(event: Record<string, unknown>): void {
    this.pusher.enqueueEphemeral(event)
  }

  // ---- end-to-end encryption (homeserver/e2ee.ts) ----------------------------------------------------

  /** A real user's client logs in: a new device (or the one named) and its access token, for the client-server
   * API (keys, to-device, /sync, room sends as that user). */
  login(userId: string, deviceId?: string): { accessToken: string; deviceId: string } {
    if (!this.state.users.has(userId)) throw new MatrixFault(403, 'M_FORBIDDEN', 'Invalid username or password')
    return this.api.e2ee.login(userId, deviceId)
  }

  /** Clients' /syncs long-polling now (waiting for something to arrive). */
  get syncsWaiting(): number {
    return this.api.syncsWaiting
  }

  /** Devices, keys and every to-device message sent, for inspection. */
  get e2ee(): E2eeState {
    return this.api.e2ee
  }

  /** To-device messages for the appservice that match stay out of its transactions until release(): a room key
   * then arrives in a later transaction than the event it unlocks, as happens when a sender's to-device
   * traffic is slower than its room event. */
  holdToDevice(match: (m: ToDeviceMessage) => boolean): ToDeviceHold {
    return this.api.e2ee.holdToDevice(match)
  }

  // ---- inspection ----------------------------------------------------------------------------------

  timeline(roomId: string): FakeEvent[] {
    return [...(this.state.rooms.get(roomId)?.timeline ?? [])]
  }

  /** The content of a current state event, or undefined. */
  stateContent(roomId: string, type: string, stateKey = ''): Record<string, unknown> | undefined {
    return this.state.stateEvent(roomId, type, stateKey)?.content
  }

  membership(roomId: string, userId: string): string | undefined {
    return this.state.membership(roomId, userId)
  }

  joinedMembers(roomId: string): string[] {
    return this.state.joinedMembers(roomId)
  }

  powerLevel(roomId: string, userId: string): number {
    return this.state.powerLevel(roomId, userId)
  }

  rooms(): string[] {
    return [...this.state.rooms.keys()]
  }

  /** A real user uploads a file to the media repository (as their client would); returns the mxc URI. */
  uploadAs(userId: string, data: Buffer, mimetype: string, filename?: string): string {
    const id = newMediaId()
    this.api.media.set(id, { data: Buffer.from(data), mimetype, filename, uploader: userId })
    return `mxc://${this.domain}/${id}`
  }

  profile(userId: string): { displayname?: string; avatar_url?: string } | undefined {
    const u = this.state.users.get(userId)
    return u ? this.state.profileContent(userId) as { displayname?: string; avatar_url?: string } : undefined
  }

  isRegistered(userId: string): boolean {
    return this.state.users.has(userId)
  }

  media(mxc: string): { data: Buffer; mimetype: string; filename: string | undefined } | undefined {
    const id = mxc.startsWith(`mxc://${this.domain}/`) ? mxc.slice(`mxc://${this.domain}/`.length) : undefined
    return id ? this.api.media.get(id) : undefined
  }

  /** Resolves with the first truthy value of `check`, re-evaluated after every call, event and push. */
  waitFor<T>(check: () => T | undefined | null | false, opts: WaitOptions = {}): Promise<T> {
    const timeoutMs = opts.timeoutMs ?? PATIENCE_MS
    return new Promise<T>((resolve, reject) => {
      const evaluate = (): boolean => {
        let value: T | undefined | null | false
        try {
          value = check()
        } catch (err) {
          done()
          reject(err as Error)
          return true
        }
        if (!value) return false
        done()
        resolve(value)
        return true
      }
      const onChange = () => void evaluate()
      const timer = setTimeout(() => {
        done()
        const recent = this.calls.slice(-8).map((c) => `${c.method} ${c.path} → ${c.status}`).join('\n  ')
        reject(new Error(`fake homeserver: timed out after ${timeoutMs} ms waiting for ${opts.what ?? 'a condition'}; last calls:\n  ${recent}`))
      }, timeoutMs)
      const done = () => {
        clearTimeout(timer)
        this.changes.off('change', onChange)
      }
      this.changes.on('change', onChange)
      evaluate()
    })
  }

  waitForEvent(roomId: string, match: (ev: FakeEvent) => boolean, opts: WaitOptions = {}): Promise<FakeEvent> {
    return this.waitFor(() => this.timeline(roomId).find(match), { what: `an event in ${roomId}`, ...opts })
  }

  waitForCall(match: (call: RecordedCall) => boolean, opts: WaitOptions = {}): Promise<RecordedCall> {
    return this.waitFor(() => this.calls.find(match), { what: 'a client-server call', ...opts })
  }

  /** Until everything queued so far has been acknowledged by the appservice. */
  waitForPushIdle(opts: WaitOptions = {}): Promise<true> {
    return this.waitFor(() => this.pusher.idle, { what: 'the transaction queue to drain', ...opts })
  }

  // ---- internals -----------------------------------------------------------------------------------

  /** Synapse's interest rule: the sender or a membership target is an appservice user, or one is joined. */
  private interested(ev: FakeEvent): boolean {
    if (this.state.isAsUser(ev.sender)) return true
    if (ev.type === 'm.room.member' && ev.state_key !== undefined && this.state.isAsUser(ev.state_key)) return true
    return this.state.joinedMembers(ev.room_id).some((id) => this.state.isAsUser(id))
  }

  /** The copy the appservice gets: a snapshot, with unsigned.transaction_id on echoes of its own sends. */
  private forAppservice(ev: FakeEvent): FakeEvent {
    const copy = structuredClone(ev)
    const txnId = this.state.meta.get(ev)?.txnId
    if (txnId !== undefined && this.state.isAsUser(ev.sender)) copy.unsigned = { ...copy.unsigned, transaction_id: txnId }
    return copy
  }

  private changed(): void {
    this.api.wakeSyncs()
    this.changes.emit('change')
  }
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined
}
