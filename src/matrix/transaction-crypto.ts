// The encryption part of an appservice transaction: to-device events (MSC2409/MSC4203), device lists,
// one-time-key counts and unused fallback key types (MSC3202). Homeservers name each field differently by
// version (the stable name, the MSC's prefix, and Synapse before 1.73's `device_one_time_key_counts`), so
// every spelling is read, the stable one first. A homeserver retries a refused transaction forever, so
// nothing here refuses: what is malformed is left out item by item and named in `problems`.

/** A to-device event as Synapse pushes it to an appservice: `to_user_id`/`to_device_id` name the recipient. */
export interface ToDeviceEvent {
  type: string
  sender: string
  content: Record<string, unknown>
  to_user_id?: string
  to_device_id?: string
}

/** user → device → algorithm → count */
export type OtkCounts = Record<string, Record<string, Record<string, number>>>
/** user → device → key algorithms */
export type FallbackKeyTypes = Record<string, Record<string, string[]>>

export interface TransactionCrypto {
  toDevice: ToDeviceEvent[]
  deviceLists: { changed: string[]; left: string[] }
  otkCounts: OtkCounts
  /** undefined when the homeserver said nothing about fallback keys (not the same as "none unused"). */
  fallbackKeyTypes: FallbackKeyTypes | undefined
}

const FIELDS = {
  toDevice: ['to_device', 'de.sorunome.msc2409.to_device'],
  deviceLists: ['device_lists', 'org.matrix.msc3202.device_lists'],
  otkCounts: ['device_one_time_keys_count', 'org.matrix.msc3202.device_one_time_keys_count', 'org.matrix.msc3202.device_one_time_key_counts'],
  fallback: ['device_unused_fallback_key_types', 'org.matrix.msc3202.device_unused_fallback_key_types'],
} as const

type Json = Record<string, unknown>
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v)
const isUserId = (v: unknown): v is string => typeof v === 'string' && /^@[^:]+:./.test(v) && v.length <= 255 && !v.includes('\u0000')

/** The first spelling present; a homeserver that sends two sends the same content twice. */
function pick(body: Json, names: readonly string[]): { name: string; value: unknown } | undefined {
  for (const name of names) if (body[name] !== undefined && body[name] !== null) return { name, value: body[name] }
  return undefined
}

/** True when the transaction carries anything for the crypto layer. */
export const isEmpty = (c: TransactionCrypto): boolean =>
  c.toDevice.length === 0 && c.deviceLists.changed.length === 0 && c.deviceLists.left.length === 0 &&
  Object.keys(c.otkCounts).length === 0 && c.fallbackKeyTypes === undefined

export function transactionCrypto(body: Json): { crypto: TransactionCrypto; problems: string[] } {
  const problems: string[] = []
  const crypto: TransactionCrypto = { toDevice: [], deviceLists: { changed: [], left: [] }, otkCounts: {}, fallbackKeyTypes: undefined }

  const toDevice = pick(body, FIELDS.toDevice)
  if (toDevice && !Array.isArray(toDevice.value)) problems.push(`${toDevice.name} is not a list of events`)
  else if (toDevice) {
    for (const [i, e] of (toDevice.value as unknown[]).entries()) {
      if (!isObject(e) || typeof e.type !== 'string' || !isUserId(e.sender) || !isObject(e.content) ||
        (e.to_user_id !== undefined && typeof e.to_user_id !== 'string') || (e.to_device_id !== undefined && typeof e.to_device_id !== 'string')) {
        problems.push(`${toDevice.name}[${i}] is not a to-device event (type, sender and content)`)
        continue
      }
      crypto.toDevice.push(e as unknown as ToDeviceEvent)
    }
  }

  const lists = pick(body, FIELDS.deviceLists)
  if (lists && !isObject(lists.value)) problems.push(`${lists.name} is not an object with "changed" and "left"`)
  else if (lists) {
    for (const key of ['changed', 'left'] as const) {
      const v = (lists.value as Json)[key]
      if (v === undefined) continue
      if (!Array.isArray(v)) {
        problems.push(`${lists.name}.${key} is not a list of user ids`)
        continue
      }
      const users = v.filter(isUserId)
      if (users.length < v.length) problems.push(`${lists.name}.${key} holds ${v.length - users.length} entries that are not user ids`)
      crypto.deviceLists[key] = users
    }
  }

  const otk = pick(body, FIELDS.otkCounts)
  if (otk) crypto.otkCounts = perDevice(otk.name, otk.value, problems, (v): v is Record<string, number> =>
    isObject(v) && Object.values(v).every(n => Number.isSafeInteger(n) && (n as number) >= 0), 'an object of non-negative counts')

  const fallback = pick(body, FIELDS.fallback)
  if (fallback) crypto.fallbackKeyTypes = perDevice(fallback.name, fallback.value, problems, (v): v is string[] =>
    Array.isArray(v) && v.every(t => typeof t === 'string'), 'a list of key algorithms')

  return { crypto, problems }
}

/** user → device → T, keeping every well-formed entry. */
function perDevice<T>(name: string, value: unknown, problems: string[], ok: (v: unknown) => v is T, expected: string): Record<string, Record<string, T>> {
  const out: Record<string, Record<string, T>> = {}
  if (!isObject(value)) {
    problems.push(`${name} is not an object of user ids`)
    return out
  }
  for (const [user, devices] of Object.entries(value)) {
    if (!isUserId(user) || !isObject(devices)) {
      problems.push(`${name}["${user.slice(0, 80)}"] is not a user id with an object of devices`)
      continue
    }
    for (const [device, v] of Object.entries(devices)) {
      if (!ok(v)) {
        problems.push(`${name}["${user}"]["${device.slice(0, 80)}"] is not ${expected}`)
        continue
      }
      ;(out[user] ??= {})[device] = v
    }
  }
  return out
}
