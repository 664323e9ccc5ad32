// The crypto part of one appservice transaction (MSC2409/MSC4203 to-device events, MSC3202 device lists,
// one-time-key counts and unused fallback key types), picked out for one device: what
// OlmMachine.receiveSyncChanges takes. A plain JSON value, so that the bridge can store it with the
// transaction's events before answering the homeserver and feed it to the machine afterwards.
//
// Homeservers differ in spelling: Synapse before 1.73 sent the counts only as
// `org.matrix.msc3202.device_one_time_key_counts`, later versions send that and
// `org.matrix.msc3202.device_one_time_keys_count` (the MSC's name) with the same value; either is read.

export interface TransactionCrypto {
  /** To-device events for this device, as the homeserver sent them (to_user_id/to_device_id removed). */
  toDevice: Record<string, unknown>[]
  /** Users whose device lists changed, or who no longer share a room with the appservice's users. */
  changed: string[]
  left: string[]
  /** algorithm → unclaimed one-time keys of this device; undefined when the transaction did not say. */
  otkCounts: Record<string, number> | undefined
  /** Algorithms of this device's unused fallback keys; undefined when the transaction did not say. */
  unusedFallbackKeyTypes: string[] | undefined
}

const COUNT_KEYS = ['org.matrix.msc3202.device_one_time_keys_count', 'org.matrix.msc3202.device_one_time_key_counts'] as const

/** The part of `body` that concerns `deviceId` of `userId`; undefined when there is none. */
export function cryptoOfTransaction(body: unknown, userId: string, deviceId: string): TransactionCrypto | undefined {
  if (!isObject(body)) return undefined
  const toDevice: Record<string, unknown>[] = []
  const list = body['de.sorunome.msc2409.to_device']
  if (Array.isArray(list)) {
    for (const ev of list) {
      if (!isObject(ev) || ev['to_user_id'] !== userId || ev['to_device_id'] !== deviceId) continue
      if (typeof ev['type'] !== 'string' || typeof ev['sender'] !== 'string' || !isObject(ev['content'])) continue
      const { to_user_id: _u, to_device_id: _d, ...event } = ev
      toDevice.push(event)
    }
  }
  const lists = isObject(body['org.matrix.msc3202.device_lists']) ? body['org.matrix.msc3202.device_lists'] : {}
  const changed = strings(lists['changed'])
  const left = strings(lists['left'])
  let otkCounts: Record<string, number> | undefined
  for (const key of COUNT_KEYS) {
    const mine = deviceEntry(body[key], userId, deviceId)
    if (!isObject(mine)) continue
    otkCounts = Object.fromEntries(Object.entries(mine).filter((e): e is [string, number] => Number.isInteger(e[1]) && (e[1] as number) >= 0))
    break
  }
  const fallback = deviceEntry(body['org.matrix.msc3202.device_unused_fallback_key_types'], userId, deviceId)
  const unusedFallbackKeyTypes = Array.isArray(fallback) ? strings(fallback) : undefined
  if (!toDevice.length && !changed.length && !left.length && otkCounts === undefined && unusedFallbackKeyTypes === undefined) return undefined
  return { toDevice, changed, left, otkCounts, unusedFallbackKeyTypes }
}

function deviceEntry(v: unknown, userId: string, deviceId: string): unknown {
  if (!isObject(v)) return undefined
  const user = v[userId]
  return isObject(user) ? user[deviceId] : undefined
}

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((s): s is string => typeof s === 'string') : []
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
