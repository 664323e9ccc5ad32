// End-to-end encryption as Synapse serves it (synapse/rest/client/keys.py, devices.py, sendtodevice.py, login.py
// and synapse/handlers/e2e_keys.py, appservice/api.py): devices and their access tokens, device keys, one-time
// and fallback keys, cross-signing keys and signatures (checked with real ed25519, as Synapse checks them),
// to-device messages (to a client's /sync, or to the appservice in its transactions under MSC2409/MSC4203),
// and the device-list changes that tell everyone to query keys again.
//
// Synapse's refusals are kept: keys/upload without a device (400 M_UNKNOWN), device_keys naming another user
// or device (400 M_BAD_JSON), a one-time key id reused with another key (400), a masqueraded device that does
// not exist (400 M_EXCLUSIVE), a bad signature (failures[…] M_INVALID_SIGNATURE), replacing a real user's
// cross-signing keys without user-interactive auth (401), the appservice login when the registration opts into
// MSC4190 (400 IO.ELEMENT.MSC4190.M_APPSERVICE_LOGIN_UNSUPPORTED).
import { createPublicKey, randomBytes, verify } from 'node:crypto'
import type { HomeserverState } from './state.ts'
import { MatrixFault } from './types.ts'

type Json = Record<string, unknown>

export interface Device {
  userId: string
  deviceId: string
  displayName: string | undefined
  /** The uploaded device_keys object, signatures included (merged with signatures uploaded later). */
  keys: Json | undefined
  /** "signed_curve25519:AAAAAQ" → the key object. */
  oneTimeKeys: Map<string, unknown>
  /** algorithm → the current fallback key and whether a claim has used it. */
  fallbackKeys: Map<string, { keyId: string; key: unknown; used: boolean }>
}

export interface CrossSigningKeys {
  master?: Json
  self_signing?: Json
  user_signing?: Json
}

/** One to-device message as a recipient gets it; the appservice's copy also names the recipient. */
export interface ToDeviceMessage {
  type: string
  sender: string
  content: Json
  to_user_id: string
  to_device_id: string
}

export interface ToDeviceHold {
  /** Messages held back so far, in order. */
  readonly held: ToDeviceMessage[]
  /** Delivers what was held (in order) and stops holding. */
  release(): void
}

/** Where the appservice's share of E2EE traffic goes (the transaction pusher). */
export interface AppserviceE2eeSink {
  toDevice(message: ToDeviceMessage): void
  deviceListChanged(userId: string): void
}

const ALWAYS_COUNTED = 'signed_curve25519'

export class E2eeState {
  /** user → device id → device. */
  readonly devices = new Map<string, Map<string, Device>>()
  readonly crossSigning = new Map<string, CrossSigningKeys>()
  /** Every to-device message the homeserver accepted, for tests to inspect (who was sent what, when). */
  readonly sentToDevice: (ToDeviceMessage & { at: number })[] = []
  private readonly tokens = new Map<string, { userId: string; deviceId: string }>()
  /** Per real user's device: to-device messages not yet acknowledged by a /sync `since`. */
  private readonly inbox = new Map<string, { pos: number; message: Omit<ToDeviceMessage, 'to_user_id' | 'to_device_id'> }[]>()
  /** Per real user: device-list changes since their last /sync. */
  private readonly pendingLists = new Map<string, { changed: Set<string>; left: Set<string> }>()
  private readonly holds: { match: (m: ToDeviceMessage) => boolean; held: ToDeviceMessage[]; active: boolean }[] = []
  private readonly toDeviceTxns = new Set<string>()
  private streamPos = 1
  private readonly s: HomeserverState
  private readonly sink: AppserviceE2eeSink
  private readonly changed: () => void

  constructor(state: HomeserverState, sink: AppserviceE2eeSink, changed: () => void) {
    this.s = state
    this.sink = sink
    this.changed = changed
  }

  // ---- devices and tokens --------------------------------------------------------------------------

  device(userId: string, deviceId: string): Device | undefined {
    return this.devices.get(userId)?.get(deviceId)
  }

  /** Creates the device if it does not exist; true when it was created. */
  upsertDevice(userId: string, deviceId: string, displayName?: string): boolean {
    const mine = this.devices.get(userId) ?? new Map<string, Device>()
    this.devices.set(userId, mine)
    const existing = mine.get(deviceId)
    if (existing) {
      if (displayName !== undefined) existing.displayName = displayName
      return false
    }
    mine.set(deviceId, { userId, deviceId, displayName, keys: undefined, oneTimeKeys: new Map(), fallbackKeys: new Map() })
    // Synapse's check_device_registered notifies a new device like any device-list change.
    this.deviceListChanged(userId)
    return true
  }

  /** A login: a device (new unless `deviceId` names an existing one) and an access token for it. */
  login(userId: string, deviceId = newDeviceId(), displayName?: string): { accessToken: string; deviceId: string } {
    this.upsertDevice(userId, deviceId, displayName)
    const accessToken = `syt_${randomBytes(18).toString('base64url')}`
    this.tokens.set(accessToken, { userId, deviceId })
    return { accessToken, deviceId }
  }

  tokenOwner(token: string): { userId: string; deviceId: string } | undefined {
    return this.tokens.get(token)
  }

  /** Deletes a device with its keys, tokens and undelivered messages; its owner's device list changed. */
  deleteDevice(userId: string, deviceId: string): void {
    const had = this.devices.get(userId)?.delete(deviceId) ?? false
    for (const [token, owner] of this.tokens) if (owner.userId === userId && owner.deviceId === deviceId) this.tokens.delete(token)
    this.inbox.delete(`${userId}|${deviceId}`)
    if (had) this.deviceListChanged(userId)
  }

  listDevices(userId: string): Json[] {
    return [...(this.devices.get(userId)?.values() ?? [])].map((d) => ({
      device_id: d.deviceId, display_name: d.displayName ?? null, last_seen_ip: null, last_seen_ts: null,
    }))
  }

  // ---- keys ----------------------------------------------------------------------------------------

  /** POST /keys/upload as (userId, deviceId). */
  upload(userId: string, deviceId: string | undefined, body: Json): Json {
    // synapse/rest/client/keys.py KeyUploadServlet
    if (deviceId === undefined) throw new MatrixFault(400, 'M_UNKNOWN', 'To upload keys, you must pass device_id when authenticating')
    const device = this.device(userId, deviceId)
    if (!device) throw new MatrixFault(400, 'M_UNKNOWN', 'To upload keys, you must pass device_id when authenticating')
    if (body['device_keys'] === null) throw new MatrixFault(400, 'M_BAD_JSON', 'device_keys must not be null')
    const deviceKeys = body['device_keys'] as Json | undefined
    if (deviceKeys !== undefined) {
      if (!isObject(deviceKeys) || !Array.isArray(deviceKeys['algorithms']) || !isObject(deviceKeys['keys']) || !isObject(deviceKeys['signatures'])) {
        throw new MatrixFault(400, 'M_BAD_JSON', 'device_keys must have algorithms, device_id, keys, signatures and user_id')
      }
      if (deviceKeys['user_id'] !== userId) throw new MatrixFault(400, 'M_BAD_JSON', 'Provided `user_id` in `device_keys` does not match that of the authenticated user')
      if (deviceKeys['device_id'] !== deviceId) throw new MatrixFault(400, 'M_BAD_JSON', 'Provided `device_id` in `device_keys` does not match that of the authenticated user device')
    }
    const otks = body['one_time_keys']
    const fallbacks = body['fallback_keys']
    for (const [field, map] of [['one_time_keys', otks], ['fallback_keys', fallbacks]] as const) {
      if (map === undefined || map === null) continue
      if (!isObject(map)) throw new MatrixFault(400, 'M_BAD_JSON', `${field} must be a mapping`)
      for (const k of Object.keys(map)) {
        if (k.split(':').length !== 2) throw new MatrixFault(400, 'M_BAD_JSON', `Invalid ${field} key '${k}'. Expected "<algorithm>:<device_id>".`)
      }
    }
    // synapse/handlers/e2e_keys.py upload_keys_for_user: a key id already used with another key is refused
    // (before anything is stored).
    for (const [keyId, key] of Object.entries((otks ?? {}) as Json)) {
      const old = device.oneTimeKeys.get(keyId)
      if (old !== undefined && canonicalJson(old) !== canonicalJson(key)) {
        throw new MatrixFault(400, 'M_UNKNOWN', `One time key ${keyId} already exists. Old key: ${canonicalJson(old)}; new key: ${canonicalJson(key)}`)
      }
    }
    let keysChanged = false
    if (deviceKeys !== undefined) {
      const before = device.keys ? canonicalJson(stripSignatures(device.keys)) : undefined
      device.keys = structuredClone(deviceKeys)
      keysChanged = before !== canonicalJson(stripSignatures(deviceKeys))
    }
    for (const [keyId, key] of Object.entries((otks ?? {}) as Json)) device.oneTimeKeys.set(keyId, structuredClone(key))
    for (const [keyId, key] of Object.entries((fallbacks ?? {}) as Json)) {
      const alg = keyId.split(':')[0]!
      const old = device.fallbackKeys.get(alg)
      // The same key uploaded again keeps its "used" mark (Synapse compares the key JSON).
      if (old && old.keyId === keyId && canonicalJson(old.key) === canonicalJson(key)) continue
      device.fallbackKeys.set(alg, { keyId, key: structuredClone(key), used: false })
    }
    // Synapse's notifier hands the change to the appservice scheduler after the request's writes, so the
    // transaction it causes counts the keys uploaded with it.
    if (keysChanged) this.deviceListChanged(userId)
    this.changed()
    return { one_time_key_counts: this.otkCounts(device) }
  }

  /** Counts of unclaimed one-time keys per algorithm; Synapse always reports signed_curve25519, 0 if none. */
  otkCounts(device: Device): Record<string, number> {
    const counts: Record<string, number> = { [ALWAYS_COUNTED]: 0 }
    for (const keyId of device.oneTimeKeys.keys()) {
      const alg = keyId.split(':')[0]!
      counts[alg] = (counts[alg] ?? 0) + 1
    }
    return counts
  }

  unusedFallbackKeyTypes(device: Device): string[] {
    return [...device.fallbackKeys.entries()].filter(([, f]) => !f.used).map(([alg]) => alg)
  }

  /** POST /keys/query. */
  query(requester: string, body: Json): Json {
    const wanted = body['device_keys']
    if (!isObject(wanted)) throw new MatrixFault(400, 'M_BAD_JSON', "'device_keys' must be a JSON object")
    if (Object.values(wanted).some((v) => !Array.isArray(v) || v.some((d) => typeof d !== 'string'))) {
      throw new MatrixFault(400, 'M_BAD_JSON', "'device_keys' values must be a list of strings")
    }
    const deviceKeys: Json = {}
    const master: Json = {}
    const selfSigning: Json = {}
    const userSigning: Json = {}
    for (const [userId, ids] of Object.entries(wanted as Record<string, string[]>)) {
      const out: Json = {}
      for (const d of this.devices.get(userId)?.values() ?? []) {
        if (!d.keys || (ids.length > 0 && !ids.includes(d.deviceId))) continue
        out[d.deviceId] = { ...structuredClone(d.keys), unsigned: { device_display_name: d.displayName ?? null } }
      }
      deviceKeys[userId] = out
      const cs = this.crossSigning.get(userId)
      if (cs?.master) master[userId] = structuredClone(cs.master)
      if (cs?.self_signing) selfSigning[userId] = structuredClone(cs.self_signing)
      // A user-signing key is private to its owner.
      if (cs?.user_signing && userId === requester) userSigning[userId] = structuredClone(cs.user_signing)
    }
    return { failures: {}, device_keys: deviceKeys, master_keys: master, self_signing_keys: selfSigning, user_signing_keys: userSigning }
  }

  /** POST /keys/claim: one one-time key per asked device, else its fallback key (marked used). */
  claim(body: Json): Json {
    const wanted = body['one_time_keys']
    if (!isObject(wanted)) throw new MatrixFault(400, 'M_BAD_JSON', "'one_time_keys' must be a JSON object")
    const out: Json = {}
    const changedDevices = new Set<Device>()
    for (const [userId, byDevice] of Object.entries(wanted)) {
      if (!isObject(byDevice)) continue
      for (const [deviceId, alg] of Object.entries(byDevice)) {
        const device = this.device(userId, deviceId)
        if (!device || typeof alg !== 'string') continue
        const keyId = [...device.oneTimeKeys.keys()].find((k) => k.startsWith(`${alg}:`))
        let claimed: Json | undefined
        if (keyId !== undefined) {
          claimed = { [keyId]: device.oneTimeKeys.get(keyId) }
          device.oneTimeKeys.delete(keyId)
        } else {
          const fallback = device.fallbackKeys.get(alg)
          if (fallback) {
            claimed = { [fallback.keyId]: fallback.key }
            fallback.used = true
          }
        }
        if (!claimed) continue
        changedDevices.add(device)
        const u = (out[userId] ?? {}) as Json
        u[deviceId] = structuredClone(claimed)
        out[userId] = u
      }
    }
    if (changedDevices.size) this.changed()
    return { one_time_keys: out, failures: {} }
  }

  /** POST /keys/device_signing/upload. `appservice`: the caller is an appservice (no user-interactive auth). */
  uploadCrossSigning(userId: string, body: Json, appservice: boolean): Json {
    const current = this.crossSigning.get(userId) ?? {}
    const next: CrossSigningKeys = { ...current }
    for (const [field, usage] of [['master_key', 'master'], ['self_signing_key', 'self_signing'], ['user_signing_key', 'user_signing']] as const) {
      const key = body[field]
      if (key === undefined) continue
      if (!isObject(key) || key['user_id'] !== userId || !Array.isArray(key['usage']) || !key['usage'].includes(usage) || !isObject(key['keys']) || Object.keys(key['keys']).length !== 1) {
        throw new MatrixFault(400, 'M_INVALID_PARAM', `Invalid ${field}`)
      }
      next[usage] = structuredClone(key)
    }
    const same = (['master', 'self_signing', 'user_signing'] as const).every((k) => canonicalJson(next[k] ?? null) === canonicalJson(current[k] ?? null))
    if (same) return {}
    // Synapse: first-time setup needs no auth (MSC3967), a replacement does unless an appservice asks (MSC4190).
    if (current.master && !appservice && !isObject(body['auth'])) {
      throw new MatrixFault(401, 'M_UNAUTHORIZED', 'User-interactive authentication required', {
        session: randomBytes(12).toString('base64url'), flows: [{ stages: ['m.login.password'] }], params: {},
      })
    }
    if (!next.master) throw new MatrixFault(400, 'M_MISSING_PARAM', 'No master key available to verify signature')
    const masterKey = onlyKey(next.master)
    for (const usage of ['self_signing', 'user_signing'] as const) {
      const key = next[usage]
      if (key && key !== current[usage] && !verifySigned(key, userId, masterKey.id, masterKey.key)) {
        throw new MatrixFault(400, 'M_INVALID_SIGNATURE', `Invalid signature on ${usage} key`)
      }
    }
    this.crossSigning.set(userId, next)
    this.deviceListChanged(userId)
    return {}
  }

  /** POST /keys/signatures/upload: signatures of one's own devices and master key, and of others' master keys. */
  uploadSignatures(signer: string, body: Json): Json {
    const failures: Json = {}
    const fail = (userId: string, keyId: string, status: number, errcode: string, message: string) => {
      const u = (failures[userId] ?? {}) as Json
      u[keyId] = { status, errcode, message }
      failures[userId] = u
    }
    const mine = this.crossSigning.get(signer) ?? {}
    for (const [userId, objects] of Object.entries(body)) {
      if (!isObject(objects)) continue
      for (const [keyId, signed] of Object.entries(objects)) {
        if (!isObject(signed) || !isObject(signed['signatures'])) {
          fail(userId, keyId, 400, 'M_INVALID_PARAM', 'Invalid signature')
          continue
        }
        const target = this.signatureTarget(userId, keyId)
        if (!target) {
          fail(userId, keyId, 404, 'M_NOT_FOUND', 'Unknown key or device')
          continue
        }
        if (canonicalJson(stripSignatures(target)) !== canonicalJson(stripSignatures(signed))) {
          fail(userId, keyId, 400, 'M_INVALID_PARAM', 'Key does not match')
          continue
        }
        // Which key may sign what (synapse/handlers/e2e_keys.py _process_self_signatures/_process_other_signatures).
        let signingKey: { id: string; key: string } | undefined
        if (userId !== signer) signingKey = mine.user_signing ? onlyKey(mine.user_signing) : undefined
        else if (mine.master && keyId === onlyKey(mine.master).id.slice('ed25519:'.length)) signingKey = this.deviceSigningKeyOf(signer, signed)
        else signingKey = mine.self_signing ? onlyKey(mine.self_signing) : undefined
        if (!signingKey) {
          fail(userId, keyId, 404, 'M_NOT_FOUND', 'No signing key found')
          continue
        }
        if (!verifySigned(signed, signer, signingKey.id, signingKey.key)) {
          fail(userId, keyId, 400, 'M_INVALID_SIGNATURE', 'Invalid signature')
          continue
        }
        const sigs = (target['signatures'] ?? {}) as Record<string, Json>
        sigs[signer] = { ...sigs[signer], [signingKey.id]: (signed['signatures'] as Record<string, Json>)[signer]![signingKey.id] }
        target['signatures'] = sigs
        this.deviceListChanged(userId)
      }
    }
    return { failures }
  }

  /** A device's key or master key that a signature upload names. */
  private signatureTarget(userId: string, keyId: string): Json | undefined {
    const master = this.crossSigning.get(userId)?.master
    if (master && onlyKey(master).id === `ed25519:${keyId}`) return master
    return this.device(userId, keyId)?.keys
  }

  /** A master key is signed by one of its owner's devices: the device key whose signature is on it. */
  private deviceSigningKeyOf(userId: string, signed: Json): { id: string; key: string } | undefined {
    const sigs = ((signed['signatures'] as Record<string, Json>)[userId] ?? {}) as Json
    for (const id of Object.keys(sigs)) {
      if (!id.startsWith('ed25519:')) continue
      const d = this.device(userId, id.slice('ed25519:'.length))
      const key = (d?.keys?.['keys'] as Record<string, string> | undefined)?.[id]
      if (key) return { id, key }
    }
    return undefined
  }

  // ---- to-device -----------------------------------------------------------------------------------

  /** PUT /sendToDevice/{type}/{txnId} from (sender, senderDevice). Local users only; unknown devices are
   * dropped silently, as Synapse does; '*' means every device of the user. */
  sendToDevice(sender: string, senderDevice: string | undefined, type: string, txnId: string, body: Json): Json {
    const key = `${sender}|${senderDevice ?? ''}|${type}|${txnId}`
    if (this.toDeviceTxns.has(key)) return {}
    const messages = body['messages']
    if (!isObject(messages)) throw new MatrixFault(400, 'M_BAD_JSON', 'messages must be an object')
    this.toDeviceTxns.add(key)
    for (const [userId, byDevice] of Object.entries(messages)) {
      if (!isObject(byDevice) || !userId.endsWith(`:${this.s.domain}`)) continue
      for (const [deviceId, content] of Object.entries(byDevice)) {
        if (!isObject(content)) continue
        const targets = deviceId === '*' ? [...(this.devices.get(userId)?.keys() ?? [])] : [deviceId]
        for (const target of targets) {
          if (!this.device(userId, target)) continue
          this.deliver({ type, sender, content: structuredClone(content), to_user_id: userId, to_device_id: target })
        }
      }
    }
    this.changed()
    return {}
  }

  /** Holds back to-device messages for the appservice that match, until release(). */
  holdToDevice(match: (m: ToDeviceMessage) => boolean): ToDeviceHold {
    const hold = { match, held: [] as ToDeviceMessage[], active: true }
    this.holds.push(hold)
    return {
      held: hold.held,
      release: () => {
        hold.active = false
        this.holds.splice(this.holds.indexOf(hold), 1)
        for (const m of hold.held.splice(0)) this.sink.toDevice(m)
      },
    }
  }

  private deliver(m: ToDeviceMessage): void {
    this.sentToDevice.push({ ...m, at: Date.now() })
    // MSC4203 (behind Synapse's MSC2409 flag): messages to the appservice's users go into its transactions.
    if (this.s.isAsUser(m.to_user_id)) {
      const hold = this.holds.find((h) => h.active && h.match(m))
      if (hold) hold.held.push(m)
      else this.sink.toDevice(m)
      return
    }
    const box = this.inbox.get(`${m.to_user_id}|${m.to_device_id}`) ?? []
    box.push({ pos: this.streamPos++, message: { type: m.type, sender: m.sender, content: m.content } })
    this.inbox.set(`${m.to_user_id}|${m.to_device_id}`, box)
  }

  // ---- device lists and /sync ----------------------------------------------------------------------

  /** A user's devices or keys changed: everyone who shares a room with them is told (the appservice if one of
   * its users does), and so is the user. */
  deviceListChanged(userId: string): void {
    const sharing = this.usersSharingRoomWith(userId)
    sharing.add(userId)
    let asInterested = false
    for (const other of sharing) {
      if (this.s.isAsUser(other)) asInterested = true
      else this.pending(other).changed.add(userId)
    }
    if (asInterested) this.sink.deviceListChanged(userId)
    this.changed()
  }

  /** A membership change: for clients, a newly shared room puts the joiner in `changed`, no shared room left
   * puts the leaver in `left` (what Synapse's /sync computes). The appservice learns of new members from the
   * room's events; Synapse's MSC3202 `left` stays empty. */
  membershipChanged(roomId: string, userId: string, membership: string): void {
    const members = this.s.joinedMembers(roomId).filter((u) => u !== userId)
    for (const other of members) {
      if (this.s.isAsUser(other)) continue
      const p = this.pending(other)
      if (membership === 'join') {
        p.changed.add(userId)
        p.left.delete(userId)
      } else if (!this.usersSharingRoomWith(userId).has(other)) {
        p.left.add(userId)
        p.changed.delete(userId)
      }
    }
    if (membership === 'join' && !this.s.isAsUser(userId)) for (const other of members) this.pending(userId).changed.add(other)
    this.changed()
  }

  /** GET /sync for a real user's device: to-device messages after `since`, device lists, key counts. Answers at
   * once (no long-poll: tests call it when they expect something). */
  sync(userId: string, deviceId: string, since: string | null): Json {
    const box = this.inbox.get(`${userId}|${deviceId}`) ?? []
    const after = since === null ? 0 : Number(since)
    // Synapse deletes what the client acknowledged by syncing from a later token.
    const remaining = box.filter((m) => m.pos > after)
    this.inbox.set(`${userId}|${deviceId}`, remaining)
    const events = remaining.slice(0, 100)
    const lists = this.pending(userId)
    this.pendingLists.delete(userId)
    const device = this.device(userId, deviceId)
    const nextPos = events.length ? events.at(-1)!.pos : Math.max(after, this.streamPos - 1)
    return {
      next_batch: String(nextPos),
      to_device: { events: events.map((m) => m.message) },
      device_lists: { changed: [...lists.changed], left: [...lists.left] },
      device_one_time_keys_count: device ? this.otkCounts(device) : {},
      device_unused_fallback_key_types: device ? this.unusedFallbackKeyTypes(device) : [],
      rooms: { join: {}, invite: {}, leave: {} },
    }
  }

  /** MSC3202 for a transaction: one-time-key counts and unused fallback key types of every device of `users`. */
  keyCountsFor(users: Iterable<string>): { counts: Json; fallback: Json } {
    const counts: Json = {}
    const fallback: Json = {}
    for (const userId of new Set(users)) {
      for (const d of this.devices.get(userId)?.values() ?? []) {
        counts[userId] = { ...(counts[userId] as Json | undefined), [d.deviceId]: this.otkCounts(d) }
        fallback[userId] = { ...(fallback[userId] as Json | undefined), [d.deviceId]: this.unusedFallbackKeyTypes(d) }
      }
    }
    return { counts, fallback }
  }

  private pending(userId: string): { changed: Set<string>; left: Set<string> } {
    const p = this.pendingLists.get(userId) ?? { changed: new Set<string>(), left: new Set<string>() }
    this.pendingLists.set(userId, p)
    return p
  }

  private usersSharingRoomWith(userId: string): Set<string> {
    const out = new Set<string>()
    for (const room of this.s.rooms.values()) {
      if (this.s.membership(room.id, userId) !== 'join') continue
      for (const u of this.s.joinedMembers(room.id)) if (u !== userId) out.add(u)
    }
    return out
  }
}

// ---- signing ---------------------------------------------------------------------------------------

/** Matrix canonical JSON: keys sorted, no insignificant whitespace. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (isObject(value)) {
    return `{${Object.keys(value).sort().filter((k) => value[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(',')}}`
  }
  return JSON.stringify(value)
}

function stripSignatures(obj: Json): Json {
  const { signatures: _s, unsigned: _u, ...rest } = obj
  return rest
}

function onlyKey(key: Json): { id: string; key: string } {
  const [id, value] = Object.entries(key['keys'] as Record<string, string>)[0]!
  return { id, key: value }
}

const ED25519_SPKI = Buffer.from('302a300506032b6570032100', 'hex')

/** True when `obj` carries a valid ed25519 signature by `signer`'s key `keyId` (public key `publicKey`). */
export function verifySigned(obj: Json, signer: string, keyId: string, publicKey: string): boolean {
  const sig = ((obj['signatures'] as Record<string, Record<string, string>> | undefined)?.[signer])?.[keyId]
  if (typeof sig !== 'string') return false
  try {
    const key = createPublicKey({ key: Buffer.concat([ED25519_SPKI, Buffer.from(publicKey, 'base64')]), format: 'der', type: 'spki' })
    return verify(null, Buffer.from(canonicalJson(stripSignatures(obj))), key, Buffer.from(sig, 'base64'))
  } catch {
    return false
  }
}

function newDeviceId(): string {
  const letters = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'
  let s = ''
  for (const b of randomBytes(10)) s += letters[b % letters.length]
  return s
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
