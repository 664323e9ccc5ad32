// A real Matrix user's device with real Olm/Megolm (a second wasm OlmMachine), talking to the fake homeserver over
// its client-server API with its own access token, as a client such as Element does: uploads its keys, syncs
// to-device messages and device lists, sends m.room.encrypted messages and decrypts what others send. It can log
// in a second device, log a device out, and leave a room. Never a mock: what it decrypts was encrypted for it.
import { pino } from 'pino'
import { MatrixApiError, type DeviceHttp, type JsonObject } from '../../src/matrix/client.ts'
import { CryptoMachine, type DecryptResult } from '../../src/matrix/crypto/machine.ts'
import type { FakeEvent, FakeHomeserver } from '../fakes/homeserver.ts'

const silent = pino({ level: 'silent' })
let txnCounter = 0

export class OlmPeer {
  readonly userId: string
  readonly deviceId: string
  readonly crypto: CryptoMachine
  private readonly hs: FakeHomeserver
  private readonly http: DeviceHttp
  private since: string | undefined
  private closed = false

  private constructor(hs: FakeHomeserver, userId: string, deviceId: string, http: DeviceHttp, crypto: CryptoMachine) {
    this.hs = hs
    this.userId = userId
    this.deviceId = deviceId
    this.http = http
    this.crypto = crypto
  }

  /** Logs `userId` (a real user of the fake) in on a new device and uploads its keys. */
  static async login(hs: FakeHomeserver, userId: string): Promise<OlmPeer> {
    const { accessToken, deviceId } = hs.login(userId)
    const http = tokenHttp(hs.url, accessToken)
    const crypto = await CryptoMachine.open({ userId, deviceId, http, log: silent })
    const peer = new OlmPeer(hs, userId, deviceId, http, crypto)
    await crypto.processOutgoing()
    return peer
  }

  /** Another device of the same user, logged in beside this one. */
  addDevice(): Promise<OlmPeer> {
    return OlmPeer.login(this.hs, this.userId)
  }

  /** One /sync: to-device messages (room keys), device lists and key counts go into the machine. */
  async sync(): Promise<void> {
    const res = await this.http.request('GET', `/_matrix/client/v3/sync${this.since ? `?since=${encodeURIComponent(this.since)}` : ''}`)
    const lists = res['device_lists'] as { changed?: string[]; left?: string[] } | undefined
    await this.crypto.receiveSyncChanges({
      toDevice: ((res['to_device'] as { events?: JsonObject[] } | undefined)?.events ?? []),
      changed: lists?.changed ?? [],
      left: lists?.left ?? [],
      otkCounts: res['device_one_time_keys_count'] as Record<string, number> | undefined,
      unusedFallbackKeyTypes: res['device_unused_fallback_key_types'] as string[] | undefined,
    })
    this.since = String(res['next_batch'])
  }

  /** Sends `content` (a plain string is m.text) encrypted to everyone joined, as the room's settings say. */
  async send(roomId: string, content: string | JsonObject, type = 'm.room.message'): Promise<string> {
    await this.sync()
    const plain = typeof content === 'string' ? { msgtype: 'm.text', body: content } : content
    const encrypted = await this.crypto.encrypt(roomId, type, plain, {
      members: this.hs.joinedMembers(roomId),
      encryption: this.hs.stateContent(roomId, 'm.room.encryption') ?? {},
      historyVisibility: String(this.hs.stateContent(roomId, 'm.room.history_visibility')?.['history_visibility'] ?? 'shared'),
    })
    const res = await this.http.request('PUT', `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.encrypted/peer${++txnCounter}`, encrypted)
    return String(res['event_id'])
  }

  /** Syncs, then decrypts an event of the room. */
  async read(event: FakeEvent): Promise<DecryptResult> {
    await this.sync()
    return this.crypto.decrypt(event as unknown as JsonObject & { room_id: string })
  }

  /** The plain text of an event this device can decrypt; throws with the reason otherwise. */
  async readText(event: FakeEvent): Promise<string> {
    const r = await this.read(event)
    if (r.kind !== 'decrypted') throw new Error(`${this.userId}/${this.deviceId} cannot decrypt ${event.event_id}: ${r.kind} (${r.message})`)
    return String(r.event.content['body'])
  }

  /** The user leaves the room (POST /rooms/{id}/leave with this device's token). */
  async leave(roomId: string): Promise<void> {
    await this.http.request('POST', `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/leave`, {})
  }

  /** Logs this device out: the homeserver deletes it, and others see the user's device list change. */
  async logout(): Promise<void> {
    await this.http.request('POST', '/_matrix/client/v3/logout', {})
    await this.close()
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.crypto.close()
  }
}

/** A client's calls with its own access token (no appservice identity assertion). */
function tokenHttp(baseUrl: string, token: string): DeviceHttp {
  return {
    async request(method, path, body) {
      const res = await fetch(`${baseUrl}${path}`, {
        method,
        headers: { Authorization: `Bearer ${token}`, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      })
      const json = await res.json() as JsonObject
      if (!res.ok) {
        throw new MatrixApiError({
          status: res.status, errcode: typeof json['errcode'] === 'string' ? json['errcode'] : undefined,
          error: typeof json['error'] === 'string' ? json['error'] : undefined, body: json, request: `${method} ${path}`,
        })
      }
      return json
    },
  }
}
