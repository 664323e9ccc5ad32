// The crypto store's rows at rest: every value sealed with AES-256-GCM, every IndexedDB key replaced by an
// HMAC, both under keys derived from the one secret in the configuration. The Olm machine's own passphrase
// encryption is not used: it leaves some keys readable (the user ids of tracked users), and its PBKDF2 costs
// well over a second at every start, per machine (docs/encryption.md, "Crypto store").
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto'

/** Shortest configured secret accepted: a generated one is 64 hex characters. */
export const MIN_SECRET_LENGTH = 32
const FORMAT = 1 // first byte of every sealed value, so that a later format can be told apart
const IV_BYTES = 12
const TAG_BYTES = 16

export class WrongKeyError extends Error {}

export interface Sealer {
  /** The row id of a record: who can read the table learns nothing of the key (a room id, a Curve25519 key). */
  rowId(...parts: (string | Uint8Array)[]): Buffer
  /** `aad` ties the sealed value to its row: a value copied into another row does not open there. */
  seal(plain: Uint8Array, aad: Uint8Array): Buffer
  open(sealed: Uint8Array, aad: Uint8Array): Buffer
}

/** A new secret for the configuration (as the appservice tokens are made). */
export const newStoreSecret = (): string => randomBytes(32).toString('hex')

export function sealer(secret: string): Sealer {
  if (secret.length < MIN_SECRET_LENGTH) {
    throw new Error(
      `The crypto store's encryption key is ${secret.length} characters long; it needs at least ${MIN_SECRET_LENGTH}. ` +
        'Leave it empty in the configuration to have one generated, or put a long random string there.',
    )
  }
  const derive = (info: string) => Buffer.from(hkdfSync('sha256', secret, 'relay-bridge crypto store', info, 32))
  const encKey = derive('aes-256-gcm')
  const macKey = derive('hmac-sha256 row id')
  return {
    rowId(...parts) {
      const mac = createHmac('sha256', macKey)
      // Each part is length-prefixed, so that ("ab", "c") and ("a", "bc") differ.
      for (const p of parts) {
        const bytes = typeof p === 'string' ? Buffer.from(p, 'utf8') : p
        const len = Buffer.alloc(4)
        len.writeUInt32BE(bytes.length)
        mac.update(len).update(bytes)
      }
      return mac.digest()
    },
    seal(plain, aad) {
      const iv = randomBytes(IV_BYTES)
      const cipher = createCipheriv('aes-256-gcm', encKey, iv).setAAD(aad)
      const body = Buffer.concat([cipher.update(plain), cipher.final()])
      return Buffer.concat([Buffer.of(FORMAT), iv, cipher.getAuthTag(), body])
    },
    open(sealed, aad) {
      const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength)
      if (buf[0] !== FORMAT || buf.length < 1 + IV_BYTES + TAG_BYTES) throw new WrongKeyError('unknown sealed format')
      const decipher = createDecipheriv('aes-256-gcm', encKey, buf.subarray(1, 1 + IV_BYTES)).setAAD(aad)
      decipher.setAuthTag(buf.subarray(1 + IV_BYTES, 1 + IV_BYTES + TAG_BYTES))
      try {
        return Buffer.concat([decipher.update(buf.subarray(1 + IV_BYTES + TAG_BYTES)), decipher.final()])
      } catch (err) {
        throw new WrongKeyError('the value does not open with this key', { cause: err })
      }
    },
  }
}
