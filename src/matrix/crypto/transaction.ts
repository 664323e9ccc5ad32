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
