// The homeserver's end-to-end-encryption endpoints in one object, for Olm machines in tests that need no HTTP:
// keys/upload, keys/query, keys/claim and sendToDevice (client-server API §End-to-End Encryption), each
// answered as Synapse answers it, and a sync per device carrying its to-device events, the users whose
// devices changed and its one-time-key count. Machines in other processes reach it over IPC with plain
// requests (`PlainRequest`); machines in this process through `drive`.
import * as sdk from '@matrix-org/matrix-sdk-crypto-wasm'

/** An outgoing request of an OlmMachine, as plain data (the wasm objects do not cross a process boundary). */
export interface PlainRequest {
  id: string
  type: sdk.RequestType
  body: string
  event_type?: string
  txn_id?: string
}

export interface SyncBatch {
  toDevice: string
  changed: string[]
  otkCounts: Record<string, number>
}

type Json = Record<string, any>

interface Device {
  userId: string
  deviceId: string
  keys?: Json
  otks: Map<string, Json | string>
  fallback: Map<string, Json | string>
  inbox: Json[]
  changed: Set<string>
}

export const plainRequest = (r: any): PlainRequest => ({ id: r.id, type: r.type, body: r.body, event_type: r.event_type, txn_id: r.txn_id })

export class Switchboard {
  private readonly devices = new Map<string, Device>()

  private device(userId: string, deviceId: string): Device {
    const id = `${userId}|${deviceId}`
    let d = this.devices.get(id)
    if (!d) {
      d = { userId, deviceId, otks: new Map(), fallback: new Map(), inbox: [], changed: new Set() }
      this.devices.set(id, d)
    }
    return d
  }

  private signedCount(d: Device): number {
    return [...d.otks.keys()].filter(k => k.startsWith('signed_curve25519:')).length
  }

  /** Answers one request from `userId`'s device `deviceId` with the response body Synapse would give. */
  handle(userId: string, deviceId: string, req: PlainRequest): string {
    const me = this.device(userId, deviceId)
    const body = JSON.parse(req.body) as Json
    switch (req.type) {
      case sdk.RequestType.KeysUpload: {
        if (body.device_keys) {
          const dk = body.device_keys as Json
          if (dk.user_id !== userId || dk.device_id !== deviceId) throw new Error('keys/upload: device_keys for another device (Synapse answers 400)')
          if (me.keys && JSON.stringify(me.keys.keys) !== JSON.stringify(dk.keys)) throw new Error('keys/upload: the device\'s identity keys changed (Synapse refuses)')
          const isNew = !me.keys
          me.keys = dk
          if (isNew) for (const d of this.devices.values()) if (d !== me) d.changed.add(userId)
        }
        for (const [id, key] of Object.entries((body.one_time_keys ?? {}) as Json)) {
          const had = me.otks.get(id)
          // Synapse: the same key id again with other content is a 400 ("One time key … already exists").
          if (had !== undefined && JSON.stringify(had) !== JSON.stringify(key)) throw new Error(`keys/upload: one-time key ${id} already exists with other content`)
          me.otks.set(id, key)
        }
        for (const [id, key] of Object.entries((body.fallback_keys ?? {}) as Json)) {
          me.fallback.clear()
          me.fallback.set(id, key)
        }
        return JSON.stringify({ one_time_key_counts: { signed_curve25519: this.signedCount(me) } })
      }
      case sdk.RequestType.KeysQuery: {
        const device_keys: Json = {}
        for (const [user, wanted] of Object.entries(body.device_keys as Record<string, string[]>)) {
          device_keys[user] = {}
          for (const d of this.devices.values()) {
            if (d.userId === user && d.keys && (wanted.length === 0 || wanted.includes(d.deviceId))) device_keys[user][d.deviceId] = d.keys
          }
        }
        return JSON.stringify({ device_keys, failures: {}, master_keys: {}, self_signing_keys: {}, user_signing_keys: {} })
      }
      case sdk.RequestType.KeysClaim: {
        const one_time_keys: Json = {}
        for (const [user, wanted] of Object.entries(body.one_time_keys as Record<string, Record<string, string>>)) {
          for (const [deviceId, algorithm] of Object.entries(wanted)) {
            const d = this.devices.get(`${user}|${deviceId}`)
            if (!d) continue
            // One key per claim, gone once claimed; the fallback key when none is left (it stays).
            const otk = [...d.otks.entries()].find(([id]) => id.startsWith(`${algorithm}:`))
            if (otk) d.otks.delete(otk[0])
            const pick = otk ?? [...d.fallback.entries()].find(([id]) => id.startsWith(`${algorithm}:`))
            if (!pick) continue
            one_time_keys[user] ??= {}
            one_time_keys[user][deviceId] = { [pick[0]]: pick[1] }
          }
        }
        return JSON.stringify({ one_time_keys, failures: {} })
      }
      case sdk.RequestType.ToDevice: {
        for (const [user, byDevice] of Object.entries(body.messages as Record<string, Record<string, Json>>)) {
          for (const [deviceId, content] of Object.entries(byDevice)) {
            for (const d of this.devices.values()) {
              if (d.userId === user && (deviceId === '*' || d.deviceId === deviceId)) d.inbox.push({ sender: userId, type: req.event_type, content })
            }
          }
        }
        return '{}'
      }
      case sdk.RequestType.SignatureUpload:
        return JSON.stringify({ failures: {} })
      default:
        throw new Error(`the switchboard does not serve request type ${req.type}`)
    }
  }

  /** What the device's next sync carries; taken once, as a sync's next_batch moves past it. */
  sync(userId: string, deviceId: string): SyncBatch {
    const me = this.device(userId, deviceId)
    const batch = { toDevice: JSON.stringify(me.inbox), changed: [...me.changed], otkCounts: { signed_curve25519: this.signedCount(me) } }
    me.inbox = []
    me.changed.clear()
    return batch
  }
}

/** Sends every outgoing request of a machine in this process until it has none left. */
export async function drive(board: Switchboard, machine: sdk.OlmMachine): Promise<void> {
  const userId = machine.userId.toString()
  const deviceId = machine.deviceId.toString()
  for (;;) {
    const requests = (await machine.outgoingRequests()) as any[]
    if (requests.length === 0) return
    for (const r of requests) await machine.markRequestAsSent(r.id, r.type, board.handle(userId, deviceId, plainRequest(r)))
  }
}

/** Hands a machine in this process its sync. */
export async function syncMachine(board: Switchboard, machine: sdk.OlmMachine): Promise<void> {
  const b = board.sync(machine.userId.toString(), machine.deviceId.toString())
  await machine.receiveSyncChanges(b.toDevice, new sdk.DeviceLists(b.changed.map(u => new sdk.UserId(u)), []), new Map(Object.entries(b.otkCounts)), new Set())
}

/** Sends requests that a machine call returned (shareRoomKey's to-device requests, a key claim). */
export async function send(board: Switchboard, machine: sdk.OlmMachine, requests: any[]): Promise<void> {
  for (const r of requests) await machine.markRequestAsSent(r.id, r.type, board.handle(machine.userId.toString(), machine.deviceId.toString(), plainRequest(r)))
}
