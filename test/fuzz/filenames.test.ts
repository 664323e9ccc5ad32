// Attachment file names from every side are made safe before they cross: Matrix → network (fromMatrix),
// Signal → elsewhere (completeEvent), WhatsApp → elsewhere (toInbound). 1,000 generated names per path; the
// WhatsApp path stores the sender, so its names are split between the databases (DB_KINDS).
import { proto } from '@whiskeysockets/baileys'
import fc from 'fast-check'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MAX_FILENAME_BYTES, safeFilename } from '../../src/core/filename.ts'
import type { Db } from '../../src/db/types.ts'
import { fromMatrix } from '../../src/matrix/convert.ts'
import { completeEvent, convertInner } from '../../src/signal/convert.ts'
import { toInbound } from '../../src/whatsapp/convert.ts'
import { People } from '../../src/whatsapp/people.ts'
import { GROUP, onTheWire } from '../fakes/whatsapp-socket.ts'
import { MemoryMedia, ownFixture } from '../signal/support.ts'
import { DB_KINDS, freshDb } from '../support/db.ts'

const nameArb = fc.oneof(
  fc.array(fc.oneof(
    fc.constantFrom('/', '\\', '..', '.', '../', '..\\', '\u0000', '\n', '\r', '\t', '\u001b', '\u007f', '\u0085', '\u202e', '\u202d', '\u2066', '\u200f', '\ufeff',
      'C:', '~', ' ', '.jpg', '.exe', 'photo', '😀', 'שלום', '\ud800', '\udc00'),
    fc.string({ unit: 'binary', maxLength: 4 }),
  ), { maxLength: 12 }).map(p => p.join('')),
  fc.string({ unit: 'grapheme', minLength: 150, maxLength: 400 }),
  fc.constantFrom('', '.', '..', '...', '/', '/etc/passwd', '..\\..\\boot.ini', 'a'.repeat(10_000), '😀'.repeat(150) + '.jpg', 'x'.repeat(300) + '.tar.gz'),
)

/** The name is safe to put on any disk and in any chat. */
function expectSafe(name: string): void {
  expect(name.length).toBeGreaterThan(0)
  expect(Buffer.byteLength(name)).toBeLessThanOrEqual(MAX_FILENAME_BYTES)
  // eslint-disable-next-line no-control-regex
  expect(name).not.toMatch(/[/\\\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]/u)
  expect(name).not.toMatch(/^\./)
  expect(name).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/)
  expect(name).toBe(name.trim())
}

describe('attachment file names', () => {
  it('safeFilename makes any name safe, keeps safe names as they are and keeps a short extension', () => {
    fc.assert(fc.property(nameArb, n => {
      const safe = safeFilename(n)
      expectSafe(safe)
      expect(safeFilename(safe)).toBe(safe)
    }), { numRuns: 2000 })
    expect(safeFilename('holiday photo.jpg')).toBe('holiday photo.jpg')
    expect(safeFilename('😀'.repeat(150) + '.jpg')).toMatch(/😀\.jpg$/u)
    expect(safeFilename('../../etc/passwd')).toBe('__.._etc_passwd')
  })

  it('Matrix → networks: an m.file keeps a safe name', async () => {
    const media = new MemoryMedia()
    await fc.assert(fc.asyncProperty(nameArb, fc.boolean(), async (n, asBody) => {
      const e = await fromMatrix({
        event_id: '$f', room_id: '!r', type: 'm.room.message', sender: '@a:example.org',
        content: { msgtype: 'm.file', url: 'mxc://example.org/f', ...(asBody ? { body: n } : { body: 'caption', filename: n }) },
      }, { sender: { network: 'matrix', id: '@a:example.org', displayName: 'A' }, media, download: async () => ({ data: Buffer.from('x'), mimetype: 'application/pdf' }), isGhost: () => undefined })
      if (!('kind' in e) || e.kind !== 'message') throw new Error('not converted')
      expectSafe(e.content.attachments[0]!.filename)
    }), { numRuns: 1000 })
  })

  it('Signal → elsewhere: an attachment keeps a safe name', async () => {
    const base = ownFixture('attachments-photo-and-voice.json') as { envelope: { dataMessage: { attachments: Array<Record<string, unknown>> } } }
    const deps = { media: new MemoryMedia(), getAttachment: async () => Buffer.from('x'), getSticker: async () => Buffer.from('x'), groupDetails: async () => undefined }
    await fc.assert(fc.asyncProperty(nameArb, fc.boolean(), async (n, asId) => {
      const input = structuredClone(base)
      const a = input.envelope.dataMessage.attachments[0]!
      if (asId) { a.filename = null; a.id = n } else a.filename = n
      const [c] = convertInner(input, { loginId: 'l', aci: '5f0c2a9e-3b7d-4e61-9a2c-7d1e8b4f6a30', displayName: 'Relay' }).events
      const e = await completeEvent(c!, deps)
      if (e.kind !== 'message') throw new Error('not a message')
      for (const att of e.content.attachments) expectSafe(att.filename)
    }), { numRuns: 1000 })
  })

  describe.each(DB_KINDS)('on %s', kind => {
    let db: Db
    beforeAll(async () => {
      db = await freshDb(kind)
    })
    afterAll(async () => db?.close())

    it('WhatsApp → elsewhere: a document and a contact card keep a safe name', async () => {
      const deps = {
        loginId: 'l', self: { personId: 'relay', displayName: 'Relay' }, people: new People(db), media: new MemoryMedia(), log: pino({ level: 'silent' }),
        download: async () => Buffer.from('x'), isOwnSend: async () => false,
      }
      await fc.assert(fc.asyncProperty(nameArb, fc.boolean(), async (n, contact) => {
        const message: proto.IMessage = contact
          ? { contactMessage: { displayName: n, vcard: 'BEGIN:VCARD\nEND:VCARD' } }
          : { documentMessage: { url: 'https://mmg.example/d', mimetype: 'application/pdf', fileName: n, mediaKey: new Uint8Array(32) } }
        const e = await toInbound({ key: { remoteJid: GROUP, id: 'F1', participant: '201000000000042@lid' }, pushName: 'Alice', message: onTheWire(message) }, deps)
        if (e?.kind !== 'message') throw new Error('not a message')
        for (const att of e.content.attachments) expectSafe(att.filename)
      }), { numRuns: Math.ceil(1000 / DB_KINDS.length) })
    })
  })
})
