// What OlmMachine.receiveSyncChanges takes for one device: the crypto part of one appservice transaction
// (MSC2409/MSC4203 to-device events, MSC3202 device lists, one-time-key counts and unused fallback key
// types), as decryption.ts's forDevice picks it out of what transaction-crypto.ts stored.

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
