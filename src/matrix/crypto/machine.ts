// The bot's end-to-end encryption device: a driver for the Matrix Rust crypto (its WebAssembly build,
// @matrix-org/matrix-sdk-crypto-wasm), fed from appservice transactions instead of /sync.
//
// API (what the bridge calls):
//
//   const deviceId = <the one kept with the store> (encryption.ts keptDeviceId)
//   await ensureDevice(api.deviceHttp(botUserId), botUserId, deviceId, 'relay bridge')
//       MSC4190 PUT /devices/{id} as the appservice; on a homeserver without it (404), the older
//       m.login.application_service login with that device_id. Keep deviceId with the store: a new one is a new
//       device, and users see a new (unverified) device of the bot.
//   const crypto = await CryptoMachine.open({ userId, deviceId, http: api.deviceHttp(botUserId, deviceId), store, log })
//       store: in memory by default; a durable one names its IndexedDB database and key (CryptoStoreChoice).
//   await crypto.processOutgoing()            uploads the device keys and one-time keys
//   await crypto.bootstrapCrossSigning()      'created' | 'present': the device signed by the bot's own identity
//
//   For each transaction, once stored (transaction-crypto.ts reads every spelling; transaction.ts's forDevice
//   picks out this device's part):
//     const part = forDevice(transactionCrypto(body).crypto, botUserId, deviceId); if (part) await crypto.receiveSyncChanges(part)
//
//   await crypto.encrypt(roomId, type, content, { members, encryption, historyVisibility })
//       → the m.room.encrypted content to send. `encryption` is the room's m.room.encryption content
//         (rotation_period_ms / rotation_period_msgs honoured), `members` whose devices get the key.
//   await crypto.decrypt(event)  → { kind: 'decrypted', event: { type, content }, senderDevice, … }
//                                 | { kind: 'missing-key', sessionId, message }   (retry when the key arrives)
//                                 | { kind: 'failed', message }                    (will never decrypt)
//   crypto.onRoomKeys((keys) => …)           [{ roomId, sessionId }] of room keys as they arrive
//   await crypto.trackUsers(members)         query members' devices now (a room just became encrypted)
//   await crypto.isCrossSignedByOwner(u, d)  as this machine sees another device
//   await crypto.close()                     waits for running calls, then frees the machine
//
// Every outgoing request of the machine (keys upload/query/claim, to-device, signatures) goes through one loop,
// one pass at a time; a call made while a pass runs waits for one more pass (processOutgoing). Encryption for a
// room is serialised per room, and one-time-key claims globally, as matrix-js-sdk's rust-crypto does: the
// machine answers getMissingSessions/shareRoomKey from state that a concurrent call would change under it.
import {
  CollectStrategy,
  DecryptionErrorCode,
  DecryptionSettings,
  DeviceLists,
  EncryptionAlgorithm,
  EncryptionSettings,
  HistoryVisibility,
  KeysClaimRequest,
  KeysQueryRequest,
  KeysUploadRequest,
  MegolmDecryptionError,
  OlmMachine,
  RequestType,
  RoomId,
  RoomMessageRequest,
  SignatureUploadRequest,
  StoreHandle,
  ToDeviceRequest,
  TrustRequirement,
  UploadSigningKeysRequest,
  UserId,
  DeviceId,
  type RoomKeyInfo,
} from '@matrix-org/matrix-sdk-crypto-wasm'
import type { Logger } from 'pino'
import { isMatrixErrcode, MatrixApiError, type DeviceHttp, type JsonObject } from '../client.ts'
import type { TransactionCrypto } from './transaction.ts'

/** Where the machine keeps its keys. Default: in memory (lost on exit: tests only). A durable store (store.ts)
 * makes its IndexedDB available first and names the database here. The machine gets no key or passphrase of its
 * own: store.ts seals every row already, and a second encryption under the machine's key (ChaCha20 inside the
 * sealed AES-GCM) cost a derivation at each start and protected nothing more. */
export interface CryptoStoreChoice {
  name: string
}

/** What a room's m.room.encryption and history visibility say about sharing its keys. */
export interface RoomEncryption {
  /** Joined (and, with shared history, invited) members: whose devices get the room key. */
  members: string[]
  /** The content of the room's m.room.encryption state event. */
  encryption: JsonObject
  /** The room's m.room.history_visibility; 'shared' when unknown. */
  historyVisibility?: string
}

export type DecryptResult =
  | { kind: 'decrypted'; event: { type: string; content: JsonObject }; senderDevice: string | undefined; senderCurve25519Key: string }
  /** The room key (or this message index of it) has not arrived: retry when onRoomKeys reports its session. */
  | { kind: 'missing-key'; sessionId: string | undefined; message: string }
  /** Will never decrypt (bad ciphertext, unknown algorithm, a sender who withheld the key). */
  | { kind: 'failed'; message: string }

/** The spec's defaults for m.room.encryption (one week, 100 messages). */
const DEFAULT_ROTATION_MS = 604_800_000
const DEFAULT_ROTATION_MSGS = 100

/**
 * Makes sure the device `deviceId` of one of the appservice's users (the bot, a ghost) exists on the homeserver:
 * MSC4190's PUT /devices/{id} as the appservice (201 created, 200 existed), else, on a homeserver without MSC4190
 * (404 for an unknown device), the older `m.login.application_service` login with that device id, after which
 * the device is used by masquerading (MSC3202's device_id parameter). `http` acts as the user with no device yet.
 */
export async function ensureDevice(http: DeviceHttp, userId: string, deviceId: string, displayName: string): Promise<'device-api' | 'login'> {
  try {
    await http.request('PUT', `/_matrix/client/v3/devices/${encodeURIComponent(deviceId)}`, { display_name: displayName })
    return 'device-api'
  } catch (err) {
    if (!(err instanceof MatrixApiError) || !(err.status === 404 || err.errcode === 'M_UNRECOGNIZED')) throw err
  }
  try {
    await http.request('POST', '/_matrix/client/v3/login', {
      type: 'm.login.application_service', identifier: { type: 'm.id.user', user: userId },
      device_id: deviceId, initial_device_display_name: displayName,
    })
    return 'login'
  } catch (err) {
    if (isMatrixErrcode(err, 'IO.ELEMENT.MSC4190.M_APPSERVICE_LOGIN_UNSUPPORTED') || isMatrixErrcode(err, 'M_APPSERVICE_LOGIN_UNSUPPORTED')) {
      throw new Error('The homeserver refuses appservice logins but did not create the bridge\'s device either: '
        + 'add `io.element.msc4190: true` to the registration file and restart the homeserver.', { cause: err })
    }
    throw err
  }
}

export interface CryptoMachineOptions {
  userId: string
  deviceId: string
  /** Acts as this device (for the bot: MatrixClientApi.deviceHttp(userId, deviceId)). */
  http: DeviceHttp
  store?: CryptoStoreChoice
  log: Logger
}

export class CryptoMachine {
  readonly userId: string
  readonly deviceId: string
  private readonly machine: OlmMachine
  private readonly http: DeviceHttp
  private readonly log: Logger
  private loop: Promise<void> | undefined
  private again = false
  private readonly roomLocks = new Map<string, Promise<unknown>>()
  private claimLock: Promise<unknown> = Promise.resolve()
  private readonly keyListeners = new Set<(keys: { roomId: string; sessionId: string }[]) => void>()
  /** Calls into the machine still running: close() waits for them (the machine cannot be freed while borrowed). */
  private readonly inFlight = new Set<Promise<unknown>>()
  private closed = false

  private constructor(machine: OlmMachine, opts: CryptoMachineOptions) {
    this.machine = machine
    this.userId = opts.userId
    this.deviceId = opts.deviceId
    this.http = opts.http
    this.log = opts.log.child({ module: 'crypto' })
  }

  static async open(opts: CryptoMachineOptions): Promise<CryptoMachine> {
    const handle = await StoreHandle.open(opts.store?.name ?? null, null)
    const machine = await OlmMachine.initFromStore(new UserId(opts.userId), new DeviceId(opts.deviceId), handle)
    handle.free()
    const crypto = new CryptoMachine(machine, opts)
    await machine.registerRoomKeyUpdatedCallback(async (keys: RoomKeyInfo[]) => crypto.roomKeysArrived(keys))
    return crypto
  }

  /** The device's curve25519 and ed25519 keys (what others see in /keys/query). */
  get identityKeys(): { curve25519: string; ed25519: string } {
    const keys = this.machine.identityKeys
    return { curve25519: keys.curve25519.toBase64(), ed25519: keys.ed25519.toBase64() }
  }

  /** Called with the rooms and sessions of room keys as they arrive (to retry what was missing them). */
  onRoomKeys(listener: (keys: { roomId: string; sessionId: string }[]) => void): () => void {
    this.keyListeners.add(listener)
    return () => this.keyListeners.delete(listener)
  }

  /** One transaction's (or /sync's) to-device events, device lists and key counts; then sends what the machine
   * wants sent (new one-time keys, key queries). */
  receiveSyncChanges(changes: TransactionCrypto): Promise<void> {
    return this.track(() => this.receive(changes))
  }

  private async receive(changes: TransactionCrypto): Promise<void> {
    const counts = new Map<string, number>(Object.entries(changes.otkCounts ?? {}))
    const lists = new DeviceLists(changes.changed.map((u) => new UserId(u)), changes.left.map((u) => new UserId(u)))
    await this.machine.receiveSyncChanges(
      JSON.stringify(changes.toDevice), lists, counts,
      changes.unusedFallbackKeyTypes !== undefined ? new Set(changes.unusedFallbackKeyTypes) : undefined,
      new DecryptionSettings(TrustRequirement.Untrusted),
    )
    await this.processOutgoing()
  }

  /** Sends every outgoing request of the machine and marks each sent. A call while a pass runs makes one more. */
  processOutgoing(): Promise<void> {
    if (this.closed) return Promise.resolve()
    if (this.loop) {
      this.again = true
      return this.loop
    }
    this.loop = (async () => {
      do {
        this.again = false
        for (const request of await this.machine.outgoingRequests() as OutgoingRequest[]) {
          try {
            await this.send(request)
          } catch (err) {
            // The machine hands out an unsent request again on the next pass.
            this.log.warn({ err, request: RequestType[request.type] }, 'An end-to-end encryption request to the homeserver failed; it will be retried')
          }
        }
      } while (this.again)
    })().finally(() => {
      this.loop = undefined
    })
    const loop = this.loop
    this.inFlight.add(loop)
    void loop.catch(() => {}).finally(() => this.inFlight.delete(loop))
    return loop
  }

  /**
   * Encrypts one room event: tracks the members, claims one-time keys for devices without an Olm session,
   * shares the room key (a new one when the room's rotation period or message count has passed, or a member or
   * device left) and encrypts. Returns the m.room.encrypted content to send.
   */
  encrypt(roomId: string, type: string, content: JsonObject, room: RoomEncryption): Promise<JsonObject> {
    return this.track(() => this.inRoom(roomId, async () => {
      // The machine takes ownership of the ids it is given: each call gets its own.
      await this.machine.updateTrackedUsers(userIds(room.members))
      // The key queries for newly tracked users go out before sessions are looked for.
      await this.processOutgoing()
      await this.claimMissingSessions(room.members)
      const requests = await this.machine.shareRoomKey(new RoomId(roomId), userIds(room.members), settingsOf(room))
      for (const request of requests) await this.send(request as OutgoingRequest)
      return JSON.parse(await this.machine.encryptRoomEvent(new RoomId(roomId), type, JSON.stringify(content))) as JsonObject
    }))
  }

  /** Decrypts an m.room.encrypted event; a missing key is an answer, not an error. */
  decrypt(event: JsonObject & { room_id: string }): Promise<DecryptResult> {
    return this.track(() => this.decryptNow(event))
  }

  private async decryptNow(event: JsonObject & { room_id: string }): Promise<DecryptResult> {
    try {
      const res = await this.machine.decryptRoomEvent(JSON.stringify(event), new RoomId(event.room_id), new DecryptionSettings(TrustRequirement.Untrusted))
      const clear = JSON.parse(res.event) as { type: string; content: JsonObject }
      return { kind: 'decrypted', event: clear, senderDevice: res.senderDevice?.toString(), senderCurve25519Key: res.senderCurve25519Key }
    } catch (err) {
      if (err instanceof MegolmDecryptionError) {
        const sessionId = typeof (event.content as JsonObject | undefined)?.['session_id'] === 'string' ? String((event.content as JsonObject)['session_id']) : undefined
        if (err.code === DecryptionErrorCode.MissingRoomKey || err.code === DecryptionErrorCode.UnknownMessageIndex) {
          return { kind: 'missing-key', sessionId, message: err.description }
        }
        return { kind: 'failed', message: err.description }
      }
      return { kind: 'failed', message: err instanceof Error ? err.message : String(err) }
    }
  }

  /**
   * Gives the bot a cross-signing identity, unless its store has one, and signs this device with it: uploads the
   * master, self-signing and user-signing keys (an appservice needs no user-interactive auth for this, MSC4190)
   * and the device's signature. Returns whether an identity was created.
   */
  bootstrapCrossSigning(): Promise<'created' | 'present'> {
    return this.track(() => this.bootstrap())
  }

  private async bootstrap(): Promise<'created' | 'present'> {
    await this.processOutgoing()
    const status = await this.machine.crossSigningStatus()
    if (status.hasMaster && status.hasSelfSigning && status.hasUserSigning) return 'present'
    const requests = await this.machine.bootstrapCrossSigning(true)
    if (requests.uploadKeysRequest) await this.send(requests.uploadKeysRequest as OutgoingRequest)
    await this.send(requests.uploadSigningKeysRequest)
    await this.send(requests.uploadSignaturesRequest)
    return 'created'
  }

  /** Whether this device carries a valid signature of its owner's self-signing key, as the machine sees it. */
  isCrossSignedByOwner(userId = this.userId, deviceId = this.deviceId): Promise<boolean> {
    return this.track(async () => {
      const device = await this.machine.getDevice(new UserId(userId), new DeviceId(deviceId))
      try {
        return device?.isCrossSignedByOwner() ?? false
      } finally {
        device?.free()
      }
    })
  }

  /** Tracks these users' devices and queries their keys now (say, for a room's members once it is encrypted),
   * rather than at the first message. */
  trackUsers(users: string[]): Promise<void> {
    return this.track(async () => {
      await this.machine.updateTrackedUsers(userIds(users))
      await this.processOutgoing()
    })
  }

  /** Queries every tracked user's devices again before the next encryption: for a machine that was not told of
   * device-list changes for a while (unloaded from memory, or stopped), as a client does after a gap in its sync. */
  markAllTrackedUsersAsDirty(): Promise<void> {
    return this.track(async () => {
      await this.machine.markAllTrackedUsersAsDirty()
      await this.processOutgoing()
    })
  }

  /** Waits for what is running, then frees the machine; later calls fail. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.keyListeners.clear()
    while (this.inFlight.size) await Promise.allSettled([...this.inFlight])
    this.machine.close()
  }

  /** Runs one public operation, counted for close(). */
  private track<T>(work: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new Error('The encryption machine is closed.'))
    const run = work()
    this.inFlight.add(run)
    void run.catch(() => {}).finally(() => this.inFlight.delete(run))
    return run
  }

  private async claimMissingSessions(users: string[]): Promise<void> {
    const run = this.claimLock.then(async () => {
      const claim = await this.machine.getMissingSessions(userIds(users))
      if (claim) await this.send(claim)
    })
    this.claimLock = run.catch(() => {})
    await run
  }

  private async inRoom<T>(roomId: string, work: () => Promise<T>): Promise<T> {
    const prior = this.roomLocks.get(roomId) ?? Promise.resolve()
    const run = prior.catch(() => {}).then(work)
    const tail = run.catch(() => {})
    this.roomLocks.set(roomId, tail)
    try {
      return await run
    } finally {
      if (this.roomLocks.get(roomId) === tail) this.roomLocks.delete(roomId)
    }
  }

  private roomKeysArrived(keys: RoomKeyInfo[]): void {
    const list = keys.map((k) => ({ roomId: k.roomId.toString(), sessionId: k.sessionId }))
    for (const listener of this.keyListeners) {
      try {
        listener(list)
      } catch (err) {
        this.log.error({ err }, 'A room-key listener failed')
      }
    }
  }

  /** One request to the homeserver, then marked sent with the homeserver's answer. */
  private async send(request: OutgoingRequest | UploadSigningKeysRequest): Promise<void> {
    const C = '/_matrix/client/v3'
    const e = encodeURIComponent
    const body = JSON.parse(request.body) as JsonObject
    let response: JsonObject
    if (request instanceof UploadSigningKeysRequest) {
      // Not a machine request: nothing to mark.
      await this.http.request('POST', `${C}/keys/device_signing/upload`, body)
      return
    } else if (request instanceof KeysUploadRequest) {
      response = await this.http.request('POST', `${C}/keys/upload`, body)
    } else if (request instanceof KeysQueryRequest) {
      response = await this.http.request('POST', `${C}/keys/query`, body)
    } else if (request instanceof KeysClaimRequest) {
      response = await this.http.request('POST', `${C}/keys/claim`, body)
    } else if (request instanceof SignatureUploadRequest) {
      response = await this.http.request('POST', `${C}/keys/signatures/upload`, body)
    } else if (request instanceof ToDeviceRequest) {
      response = await this.http.request('PUT', `${C}/sendToDevice/${e(request.event_type)}/${e(request.txn_id)}`, body)
    } else if (request instanceof RoomMessageRequest) {
      response = await this.http.request('PUT', `${C}/rooms/${e(request.room_id)}/send/${e(request.event_type)}/${e(request.txn_id)}`, body)
    } else {
      // Key backup is not enabled, so no other request is ever made.
      this.log.warn({ request: RequestType[(request as { type: RequestType }).type] }, 'Unsupported end-to-end encryption request skipped')
      return
    }
    if (request.id) await this.machine.markRequestAsSent(request.id, request.type, JSON.stringify(response))
  }
}

const userIds = (users: string[]): UserId[] => users.map((u) => new UserId(u))

type OutgoingRequest = KeysUploadRequest | KeysQueryRequest | KeysClaimRequest | ToDeviceRequest | SignatureUploadRequest | RoomMessageRequest

/** EncryptionSettings from m.room.encryption: its rotation period (ms → µs) and message count, the room's
 * history visibility, and keys shared with every device of the members, verified or not, as bridges do. */
function settingsOf(room: RoomEncryption): EncryptionSettings {
  const s = new EncryptionSettings()
  s.algorithm = EncryptionAlgorithm.MegolmV1AesSha2
  const ms = positiveInt(room.encryption['rotation_period_ms']) ?? DEFAULT_ROTATION_MS
  const msgs = positiveInt(room.encryption['rotation_period_msgs']) ?? DEFAULT_ROTATION_MSGS
  s.rotationPeriod = BigInt(ms) * 1000n
  s.rotationPeriodMessages = BigInt(msgs)
  s.historyVisibility = historyVisibilityOf(room.historyVisibility)
  s.sharingStrategy = CollectStrategy.deviceBasedStrategy(false, false)
  return s
}

function positiveInt(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : undefined
}

function historyVisibilityOf(v: string | undefined): HistoryVisibility {
  switch (v) {
    case 'invited': return HistoryVisibility.Invited
    case 'joined': return HistoryVisibility.Joined
    case 'world_readable': return HistoryVisibility.WorldReadable
    default: return HistoryVisibility.Shared
  }
}
