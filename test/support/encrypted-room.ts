// An encrypted room as a Matrix user's device sees it, shared by the in-process and the end-to-end encrypted
// portal tests: attachments encrypted the way Element encrypts them (WebCrypto AES-CTR, independent of the
// bridge's code), and a reader that shows the clear type and content of every event a real Olm peer can decrypt.
import { createHash, webcrypto } from 'node:crypto'
import { expect } from 'vitest'
import type { FakeEvent, FakeHomeserver } from '../fakes/homeserver.ts'
import type { MemoryGroup } from '../fakes/memory-network.ts'
import type { Scenario } from './bridge.ts'
import type { OlmPeer } from './olm-peer.ts'
import { until } from './relay.ts'

const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64').replace(/=+$/, '')

/** `data` encrypted as an m.room.encrypted attachment; `file(url)` is the event's `file` once uploaded to `url`. */
export async function encryptFile(data: Buffer): Promise<{ ciphertext: Buffer; file: (url: string) => Record<string, unknown> }> {
  const iv = new Uint8Array(16)
  webcrypto.getRandomValues(iv.subarray(0, 8))
  const key = await webcrypto.subtle.generateKey({ name: 'AES-CTR', length: 256 }, true, ['encrypt', 'decrypt'])
  const ciphertext = Buffer.from(await webcrypto.subtle.encrypt({ name: 'AES-CTR', counter: iv, length: 64 }, key, data))
  const jwk = await webcrypto.subtle.exportKey('jwk', key)
  const sha256 = b64(createHash('sha256').update(ciphertext).digest())
  return { ciphertext, file: url => ({ v: 'v2', url, key: { kty: 'oct', key_ops: ['encrypt', 'decrypt'], alg: 'A256CTR', k: jwk.k, ext: true }, iv: b64(iv), hashes: { sha256 } }) }
}

/** The clear bytes of an encrypted attachment, after checking its hash as a client does. */
export async function decryptFile(ciphertext: Buffer, file: Record<string, any>): Promise<Buffer> {
  expect(b64(createHash('sha256').update(ciphertext).digest())).toBe(file.hashes.sha256)
  const key = await webcrypto.subtle.importKey('jwk', file.key, { name: 'AES-CTR' }, false, ['decrypt'])
  const iv = Buffer.from(file.iv, 'base64')
  return Buffer.from(await webcrypto.subtle.decrypt({ name: 'AES-CTR', counter: iv, length: 64 }, key, ciphertext))
}

export type Clear = FakeEvent & { content: Record<string, any> }

/** The room as `peer` sees it: encrypted events it can decrypt show their clear type and content. */
export function reader(hs: FakeHomeserver, peer: OlmPeer) {
  const clear = new Map<string, { type: string; content: Record<string, any> }>()
  const timeline = async (room: string): Promise<FakeEvent[]> => {
    await peer.sync()
    for (const ev of hs.timeline(room)) {
      if (ev.type !== 'm.room.encrypted' || clear.has(ev.event_id)) continue
      const r = await peer.crypto.decrypt(ev as never)
      if (r.kind === 'decrypted') clear.set(ev.event_id, r.event)
    }
    return hs.timeline(room).map(ev => ({ ...ev, ...clear.get(ev.event_id) }))
  }

  return {
    timeline,
    /** The room with what has been decrypted so far, without syncing (for checks that cannot wait). */
    view: (room: string): FakeEvent[] => hs.timeline(room).map(ev => ({ ...ev, ...clear.get(ev.event_id) })),
    /** Waits for an event that, decrypted, matches. */
    find: (room: string, match: (ev: Clear) => boolean, what: string): Promise<Clear> =>
      until(async () => (await timeline(room)).find(ev => match(ev as Clear)) as Clear | undefined, what),
    notice: (room: string, re: RegExp) =>
      until(async () => (await timeline(room)).find(ev => ev.sender === hs.botUserId && ev.type === 'm.room.message' && re.test(String(ev.content.body))), `a bot notice ${re}`),
  }
}

/** An encrypted room `alice` made, linked to fresh groups by commands she types there (encrypted, as Element sends them). */
export async function encryptedPortal(s: Scenario, alice: OlmPeer, read: ReturnType<typeof reader>, logins: { signal: string; whatsapp: string }): Promise<{ room: string; sg: MemoryGroup; wg: MemoryGroup }> {
  const room = await s.hs.createRoom(alice.userId, { invite: [s.hs.botUserId], name: 'Family', encrypted: true })
  await s.hs.waitFor(() => s.hs.membership(room, s.hs.botUserId) === 'join', { what: 'the bot to join' })
  const sg = s.signal.addGroup('Family (Signal)')
  const wg = s.whatsapp.addGroup('Family (WhatsApp)')
  await alice.send(room, `!relay link signal ${sg.id} ${logins.signal}`)
  await read.notice(room, /^Linked this room to the Signal group/)
  await alice.send(room, `!relay link whatsapp ${wg.id} ${logins.whatsapp}`)
  await read.notice(room, /^Linked this room to the WhatsApp group/)
  return { room, sg, wg }
}
