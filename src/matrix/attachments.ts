// Encrypted attachments (client-server spec, "Sending encrypted attachments"): the file is encrypted with
// AES-256-CTR under a fresh key, uploaded as opaque bytes, and the event carries `file` (the mxc URL, the key
// as a JWK, the counter block and the SHA-256 of the ciphertext) in place of `url`.
import { createCipheriv, createDecipheriv, createHash, randomBytes, timingSafeEqual } from 'node:crypto'

export interface EncryptedFile {
  v: 'v2'
  url: string
  key: { kty: 'oct'; key_ops: string[]; alg: 'A256CTR'; k: string; ext: true }
  iv: string
  hashes: { sha256: string }
}

/** Unpadded base64, as the spec writes keys, counters and hashes. */
const unpadded = (b: Buffer): string => b.toString('base64').replace(/=+$/, '')
/** Either base64 alphabet, padded or not: clients differ. */
const fromBase64 = (s: string): Buffer => Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64')

export class AttachmentError extends Error {}

/** The ciphertext to upload and the `file` to send once it has an mxc URL. */
export function encryptAttachment(data: Uint8Array): { ciphertext: Buffer; file: (url: string) => EncryptedFile } {
  const key = randomBytes(32)
  // The high 64 bits random, the low 64 bits (the block counter) zero: the spec's choice, so that the
  // counter cannot wrap within a file.
  const iv = Buffer.concat([randomBytes(8), Buffer.alloc(8)])
  const cipher = createCipheriv('aes-256-ctr', key, iv)
  const ciphertext = Buffer.concat([cipher.update(data), cipher.final()])
  const sha256 = unpadded(createHash('sha256').update(ciphertext).digest())
  return {
    ciphertext,
    file: url => ({
      v: 'v2', url,
      key: { kty: 'oct', key_ops: ['encrypt', 'decrypt'], alg: 'A256CTR', k: key.toString('base64url'), ext: true },
      iv: unpadded(iv), hashes: { sha256 },
    }),
  }
}

type Json = Record<string, unknown>
const obj = (v: unknown): Json | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : undefined)

/** The `file` of an event's content when it is a well-formed encrypted file, else undefined. */
export function encryptedFileOf(value: unknown): EncryptedFile | undefined {
  const f = obj(value)
  const key = obj(f?.key)
  const hashes = obj(f?.hashes)
  if (!f || !key || !hashes) return undefined
  if (typeof f.url !== 'string' || !f.url.startsWith('mxc://') || typeof f.iv !== 'string' || typeof key.k !== 'string' || typeof hashes.sha256 !== 'string') return undefined
  return f as unknown as EncryptedFile
}

/** Checks the hash before decrypting: a file swapped on the media repository is refused, never relayed. */
export function decryptAttachment(ciphertext: Buffer, file: EncryptedFile): Buffer {
  if (file.v !== undefined && file.v !== 'v2') throw new AttachmentError(`the encrypted file is version ${String(file.v)}, which the bridge cannot read`)
  if (file.key.alg !== 'A256CTR') throw new AttachmentError(`the encrypted file uses ${String(file.key.alg)}, which the bridge cannot read`)
  const key = fromBase64(file.key.k)
  const iv = fromBase64(file.iv)
  if (key.length !== 32) throw new AttachmentError('the encrypted file has a key that is not 256 bits long')
  if (iv.length !== 16) throw new AttachmentError('the encrypted file has a counter block that is not 16 bytes long')
  const expected = fromBase64(file.hashes.sha256)
  const actual = createHash('sha256').update(ciphertext).digest()
  if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) {
    throw new AttachmentError('the encrypted file does not match its hash (it was changed after it was sent)')
  }
  const decipher = createDecipheriv('aes-256-ctr', key, iv)
  return Buffer.concat([decipher.update(ciphertext), decipher.final()])
}
