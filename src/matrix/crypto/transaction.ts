// What OlmMachine.receiveSyncChanges takes for one device: the crypto part of one appservice transaction
// (MSC2409/MSC4203 to-device events, MSC3202 device lists, one-time-key counts and unused fallback key
// types), as forDevice picks it out of what transaction-crypto.ts stored.
import type { TransactionCrypto as Stored } from '../transaction-crypto.ts'

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

/** This device's part of a stored transaction, as the machine takes it; undefined when nothing concerns it. */
export function forDevice(c: Stored, userId: string, deviceId: string): TransactionCrypto | undefined {
  const toDevice = c.toDevice
    .filter(e => e.to_user_id === userId && e.to_device_id === deviceId)
    .map(({ to_user_id: _u, to_device_id: _d, ...event }) => event as Record<string, unknown>)
  const otkCounts = c.otkCounts[userId]?.[deviceId]
  const unusedFallbackKeyTypes = c.fallbackKeyTypes?.[userId]?.[deviceId]
  const { changed, left } = c.deviceLists
  if (!toDevice.length && !changed.length && !left.length && otkCounts === undefined && unusedFallbackKeyTypes === undefined) return undefined
  return { toDevice, changed, left, otkCounts, unusedFallbackKeyTypes }
}

/**
 * Whether a part tells the machine nothing it has not heard: no to-device event, no device-list change, and the
 * key counts it was last handed (`lastCounts`, from countsOf). Synapse names the key counts of every user that
 * sent an event in a transaction, so each message the bridge sends comes back with its sender's counts, and a
 * machine pass over them costs an account commit (the Rust crypto unpickles the account, recomputing the public
 * half of every one-time key) and a store flush.
 */
export function nothingNew(part: TransactionCrypto, lastCounts: string | undefined): boolean {
  return part.toDevice.length === 0 && part.changed.length === 0 && part.left.length === 0 && countsOf(part) === lastCounts
}

export const countsOf = (part: TransactionCrypto): string => JSON.stringify([part.otkCounts ?? null, part.unusedFallbackKeyTypes ?? null])

/** The part for `self`'s machine without device-list changes of the bridge's other users (the bot, the ghosts):
 * none of its machines shares a key with another, and each new ghost device is such a change. Its own stay: the
 * machine learns from them that its device is cross-signed. */
export function withoutOwnUsers(part: TransactionCrypto, self: string, isOwnUser: (mxid: string) => boolean): TransactionCrypto {
  const keep = (u: string) => u === self || !isOwnUser(u)
  return { ...part, changed: part.changed.filter(keep), left: part.left.filter(keep) }
}
