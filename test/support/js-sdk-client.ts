// A real Matrix client as users run it: matrix-js-sdk with its Rust crypto (the same matrix-sdk-crypto Element
// uses), logged in as a real user of the fake homeserver and talking to it over HTTP: it syncs, joins, sends
// plain and encrypted messages, decrypts what arrives and reports the shield a client shows beside each event.
// `isolation: 'only-signed'` is Element's "exclude insecure devices": messages from a device its owner did not
// cross-sign are not decrypted. Nothing is mocked; what it decrypts was encrypted for its own device.
import { createHook } from 'node:async_hooks'
import loglevel from 'loglevel'
import { expect } from 'vitest'
import {
  ClientEvent, createClient, MatrixEventEvent, RoomEvent, SyncState,
  type MatrixClient, type MatrixEvent,
} from 'matrix-js-sdk'
import type { Logger } from 'matrix-js-sdk/lib/logger.js'
import { DecryptionFailureCode, EventShieldColour, EventShieldReason, OnlySignedDevicesIsolationMode } from 'matrix-js-sdk/lib/crypto-api/index.js'
import type { FakeHomeserver } from '../fakes/homeserver.ts'
import { PATIENCE_MS } from './patience.ts'

export { EventShieldColour, EventShieldReason, DecryptionFailureCode }

/** What a client shows beside an event: the shield's colour and reason, by name. */
export interface Shield {
  colour: keyof typeof EventShieldColour
  reason: keyof typeof EventShieldReason | null
}

/** What a client shows of an encrypted event: its shield once decrypted, or why it could not decrypt it. */
export type Shown =
  | { kind: 'decrypted'; shield: Shield }
  | { kind: 'undecryptable'; reason: keyof typeof DecryptionFailureCode; detail: string }

/** What a client shows, with the event as the client holds it (its clear content when decrypted). */
export type Seen = Shown & { event: MatrixEvent }

/** A Seen without its event (a client model full of references), for a readable comparison. */
export function withoutEvent(s: Seen): Shown {
  return s.kind === 'decrypted' ? { kind: s.kind, shield: s.shield } : { kind: s.kind, reason: s.reason, detail: s.detail }
}

/** Which device encrypts a ghost's messages: the bot's one device (every bridge today), or the ghost's own,
 * cross-signed by the ghost (issue 14). */
export type Ghosts = 'bot-device' | 'own-devices'

/** What a client shows of a ghost's message, for a client trusting all devices or only cross-signed ones. */
export function ghostMessageAsSeen(ghosts: Ghosts, isolation: 'all' | 'only-signed'): Shown {
  if (ghosts === 'own-devices') return { kind: 'decrypted', shield: { colour: 'NONE', reason: null } }
  if (isolation === 'all') return { kind: 'decrypted', shield: { colour: 'RED', reason: 'MISMATCHED_SENDER' } }
  // The sdk has no failure code of its own for this refusal of the Rust crypto: it files it under UNKNOWN_ERROR,
  // with the crypto's words.
  return {
    kind: 'undecryptable', reason: 'UNKNOWN_ERROR',
    detail: expect.stringContaining('trust requirement not satisfied: The sender of the event does not match the owner of the device that created the Megolm session') as string,
  }
}

// The sdk logs through loglevel at debug level, from loggers made at import and children made later (each takes its
// parent's or loglevel's method factory): every one of them writes nothing, unless TEST_LOG asks.
const quiet = !process.env.TEST_LOG
if (quiet) {
  const nothing = () => () => {}
  loglevel.methodFactory = nothing
  for (const l of Object.values(loglevel.getLoggers())) {
    l.methodFactory = nothing
    l.rebuild()
  }
}
const silent: Logger = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, getChild: () => silent }

// The sdk's timeoutSignal ponyfill (src/http-api/utils.ts) arms a timer for every request (60 s for crypto calls, the
// poll timeout + 80 s for /sync) and never clears it, so a stopped client would hold the process for up to a minute
// and a half. While clients run, the timers the sdk arms are noted; when the last one stops, those still pending
// are cleared (all they would do is abort a request that has long ended).
const sdkTimers = new Map<number, NodeJS.Timeout>()
const timerWatch = createHook({
  init(id, type, _trigger, resource) {
    if (type === 'Timeout' && new Error().stack?.includes('/matrix-js-sdk/')) sdkTimers.set(id, resource as NodeJS.Timeout)
  },
  destroy(id) {
    sdkTimers.delete(id)
  },
})
let running = 0

/** How long one /sync long-polls: short, so that stop() is never behind a 30 s request (the fake answers at once
 * when something arrives anyway). */
const POLL_TIMEOUT_MS = 2_000

export class JsClient {
  readonly userId: string
  readonly deviceId: string
  readonly client: MatrixClient
  private stopped = false

  private constructor(userId: string, deviceId: string, client: MatrixClient) {
    this.userId = userId
    this.deviceId = deviceId
    this.client = client
  }

  /** Logs `userId` (a real user of the fake) in on a new device, starts its Rust crypto and its sync. */
  static async login(hs: FakeHomeserver, userId: string, opts: { isolation?: 'all' | 'only-signed' } = {}): Promise<JsClient> {
    const { accessToken, deviceId } = hs.login(userId)
    if (running++ === 0) timerWatch.enable()
    const client = createClient({ baseUrl: hs.url, accessToken, userId, deviceId, ...(quiet ? { logger: silent } : {}) })
    const me = new JsClient(userId, deviceId, client)
    try {
      await client.initRustCrypto({ useIndexedDB: false })
      // As Element sets up every new account: the user's own cross-signing, which signs this device (the first
      // upload needs no user-interactive auth, MSC3967). A client excluding insecure devices refuses to send without it.
      await me.crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: async (makeRequest) => { await makeRequest(null) } })
      if (opts.isolation === 'only-signed') me.crypto.setDeviceIsolationMode(new OnlySignedDevicesIsolationMode())
      const prepared = new Promise<void>((resolve, reject) => {
        const onSync = (state: SyncState) => {
          if (state === SyncState.Prepared || state === SyncState.Syncing) {
            client.off(ClientEvent.Sync, onSync)
            resolve()
          } else if (state === SyncState.Error) {
            client.off(ClientEvent.Sync, onSync)
            reject(new Error(`${userId}'s client could not sync`))
          }
        }
        client.on(ClientEvent.Sync, onSync)
      })
      await client.startClient({ initialSyncLimit: 20, pollTimeout: POLL_TIMEOUT_MS, lazyLoadMembers: false })
      await withPatience(prepared, `${userId}'s client to finish its first sync`)
    } catch (err) {
      me.stop()
      throw err
    }
    return me
  }

  get crypto() {
    const crypto = this.client.getCrypto()
    if (!crypto) throw new Error('the Rust crypto did not start')
    return crypto
  }

  /** Joins a room the user was invited to (or a public one). */
  async join(roomId: string): Promise<void> {
    await this.client.joinRoom(roomId)
  }

  /** Sends text (m.text) or any message content; encrypted when the room is, as the client decides. */
  async send(roomId: string, content: string | Record<string, unknown>): Promise<string> {
    const c = typeof content === 'string' ? { msgtype: 'm.text', body: content } : content
    const { event_id } = await this.client.sendEvent(roomId, 'm.room.message' as never, c as never)
    return event_id
  }

  /**
   * The first event of the room, as this client sees it once decryption was attempted, that matches: clear
   * events and decrypted ones by their clear content, undecryptable ones by what is visible (sender, type).
   */
  async waitForEvent(roomId: string, match: (ev: MatrixEvent) => boolean, what = `an event in ${roomId}`): Promise<MatrixEvent> {
    const found = (): MatrixEvent | undefined => this.client.getRoom(roomId)?.getLiveTimeline().getEvents()
      .find(ev => !ev.isBeingDecrypted() && !ev.shouldAttemptDecryption() && match(ev))
    const check = (resolve: (ev: MatrixEvent) => void) => () => {
      const ev = found()
      if (ev) resolve(ev)
    }
    let onChange: (() => void) | undefined
    const waiting = new Promise<MatrixEvent>((resolve) => {
      onChange = check(resolve)
      this.client.on(RoomEvent.Timeline, onChange)
      this.client.on(MatrixEventEvent.Decrypted, onChange)
      this.client.on(ClientEvent.Room, onChange)
      onChange()
    })
    try {
      return await withPatience(waiting, `${this.userId}'s client to show ${what}`)
    } finally {
      this.client.off(RoomEvent.Timeline, onChange!)
      this.client.off(MatrixEventEvent.Decrypted, onChange!)
      this.client.off(ClientEvent.Room, onChange!)
    }
  }

  /** The shield the client shows beside a decrypted event (`getEncryptionInfoForEvent`), by name. */
  async shield(event: MatrixEvent): Promise<Shield> {
    const info = await this.crypto.getEncryptionInfoForEvent(event)
    if (!info) throw new Error(`${event.getId()} is not an encrypted event this client decrypted`)
    return { colour: EventShieldColour[info.shieldColour] as Shield['colour'], reason: info.shieldReason === null ? null : EventShieldReason[info.shieldReason] as Shield['reason'] }
  }

  /** The encrypted event with this id, as the client shows it: decrypted with its shield, or why not. */
  async see(roomId: string, eventId: string): Promise<Seen> {
    const event = await this.waitForEvent(roomId, ev => ev.getId() === eventId, eventId)
    const failure = event.decryptionFailureReason
    if (event.isDecryptionFailure() && failure !== null) {
      // The sdk puts the crypto's own words in the body it shows ("** Unable to decrypt: … **").
      return { kind: 'undecryptable', event, reason: DecryptionFailureCode[failure] as keyof typeof DecryptionFailureCode, detail: String(event.getContent().body) }
    }
    return { kind: 'decrypted', event, shield: await this.shield(event) }
  }

  /** Stops syncing and the crypto machine; the client leaves no timer or request behind. */
  stop(): void {
    if (this.stopped) return
    this.stopped = true
    this.client.stopClient()
    if (--running > 0) return
    timerWatch.disable()
    for (const t of sdkTimers.values()) clearTimeout(t)
    sdkTimers.clear()
  }
}

function withPatience<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const limit = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${PATIENCE_MS} ms waiting for ${what}`)), PATIENCE_MS)
  })
  return Promise.race([p, limit]).finally(() => clearTimeout(timer))
}
