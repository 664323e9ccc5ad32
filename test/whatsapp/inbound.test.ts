// WhatsApp → neutral: each kind of content a phone sends, built with Baileys' proto (reference §2, §4, §13).
import { randomBytes } from 'node:crypto'
import { proto } from '@whiskeysockets/baileys'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { InboundEvent, InboundMessage } from '../../src/core/model.ts'
import { GROUP } from '../fakes/whatsapp-socket.ts'
import { linked, until } from './harness.ts'

const ALICE = { lid: '201000000000042@lid', pn: '15550100042@s.whatsapp.net' }
let env: Awaited<ReturnType<typeof linked>>

beforeAll(async () => {
  env = await linked()
  env.wa.addGroup({ id: GROUP, subject: 'Family', members: [ALICE] })
})
afterAll(() => env.close())

async function next(id: string): Promise<InboundEvent> {
  return until(() => env.received.find(e => e.remoteId === id))
}
const msg = (e: InboundEvent) => e as InboundMessage

describe('WhatsApp messages become neutral events', () => {
  it('plain text from a LID-addressed member arrives with her push name and a number-free person id', async () => {
    env.wa.deliver({ id: 'T1', from: ALICE, pushName: 'Alice', message: { conversation: 'hello' } })
    const e = msg(await next('T1'))
    expect(e).toMatchObject({ kind: 'message', chat: { network: 'whatsapp', id: GROUP }, sender: { network: 'whatsapp', id: '201000000000042', displayName: 'Alice' }, content: { body: { text: 'hello' } } })
    expect(e.sender.id).not.toContain('15550100042')
  })

  it('markup becomes styles and the markers disappear', async () => {
    env.wa.deliver({ id: 'T2', from: ALICE, message: { conversation: '*bold* and _it_ ~gone~ `x` ```code```' } })
    const e = msg(await next('T2'))
    expect(e.content.body.text).toBe('bold and it gone x code')
    expect(e.content.body.styles).toEqual(expect.arrayContaining([
      { start: 0, length: 4, style: 'bold' }, { start: 9, length: 2, style: 'italic' },
      { start: 12, length: 4, style: 'strikethrough' }, { start: 17, length: 1, style: 'monospace' }, { start: 19, length: 4, style: 'code_block' },
    ]))
  })

  it('a mention of a member becomes a named mention range without the digits', async () => {
    env.wa.deliver({ id: 'T3', from: { pn: '15550100077@s.whatsapp.net', lid: '201000000000077@lid' }, pushName: 'Bob', message: { conversation: 'hey' } })
    await next('T3')
    env.wa.deliver({ id: 'T4', from: ALICE, pushName: 'Alice', message: { extendedTextMessage: { text: 'hi @201000000000077 !', contextInfo: { mentionedJid: ['201000000000077@lid'] } } } })
    const e = msg(await next('T4'))
    expect(e.content.body.text).toBe('hi @Bob !')
    expect(e.content.body.mentions).toEqual([{ start: 3, length: 4, person: { network: 'whatsapp', id: '201000000000077', displayName: 'Bob' } }])
  })

  it('a quoted reply points at the quoted message id', async () => {
    env.wa.deliver({ id: 'T5', from: ALICE, message: { extendedTextMessage: { text: 'yes', contextInfo: { stanzaId: 'T1', participant: ALICE.lid, quotedMessage: { conversation: 'hello' } } } } })
    expect(msg(await next('T5')).replyTo).toBe('T1')
  })

  it('an edit targets the original id, a revoke deletes it, a reaction and its removal point at it', async () => {
    const key = { remoteJid: GROUP, fromMe: false, id: 'T1', participant: ALICE.lid }
    env.wa.deliver({ id: 'E1', from: ALICE, message: { protocolMessage: { type: proto.Message.ProtocolMessage.Type.MESSAGE_EDIT, key, editedMessage: { conversation: 'hello *there*' } } } })
    expect(await next('E1')).toMatchObject({ kind: 'edit', target: 'T1', content: { body: { text: 'hello there', styles: [{ start: 6, length: 5, style: 'bold' }] } } })
    env.wa.deliver({ id: 'R1', from: ALICE, message: { reactionMessage: { key, text: '👍', senderTimestampMs: Date.now() } } })
    expect(await next('R1')).toMatchObject({ kind: 'reaction', target: 'T1', emoji: '👍', removed: false })
    env.wa.deliver({ id: 'R2', from: ALICE, message: { reactionMessage: { key, text: '', senderTimestampMs: Date.now() } } })
    expect(await next('R2')).toMatchObject({ kind: 'reaction', target: 'T1', removed: true })
    env.wa.deliver({ id: 'D1', from: ALICE, message: { protocolMessage: { type: proto.Message.ProtocolMessage.Type.REVOKE, key } } })
    expect(await next('D1')).toMatchObject({ kind: 'delete', target: 'T1' })
  })

  it('an image with a caption is downloaded through the CDN into the media store', async () => {
    const bytes = randomBytes(20_000)
    const media = await env.wa.uploadMedia(bytes, 'image')
    env.wa.deliver({ id: 'M1', from: ALICE, message: { imageMessage: { ...media, mimetype: 'image/jpeg', caption: 'look _here_', width: 640, height: 480 } } })
    const e = msg(await next('M1'))
    expect(e.content.body).toMatchObject({ text: 'look here', styles: [{ start: 5, length: 4, style: 'italic' }] })
    const [a] = e.content.attachments
    expect(a).toMatchObject({ kind: 'image', mimetype: 'image/jpeg', size: bytes.length, width: 640, height: 480 })
    expect(env.media.blobs.get(a!.mediaId)?.equals(bytes)).toBe(true)
  })

  it('a voice note, a document and a sticker keep their kinds', async () => {
    const voice = await env.wa.uploadMedia(randomBytes(3000), 'audio')
    env.wa.deliver({ id: 'M2', from: ALICE, message: { audioMessage: { ...voice, mimetype: 'audio/ogg; codecs=opus', ptt: true, seconds: 3 } } })
    expect(msg(await next('M2')).content.attachments[0]).toMatchObject({ kind: 'voice', durationMs: 3000 })
    const doc = await env.wa.uploadMedia(randomBytes(3000), 'document')
    env.wa.deliver({ id: 'M3', from: ALICE, message: { documentMessage: { ...doc, mimetype: 'application/pdf', fileName: 'plan.pdf' } } })
    expect(msg(await next('M3')).content.attachments[0]).toMatchObject({ kind: 'file', filename: 'plan.pdf', mimetype: 'application/pdf' })
    const st = await env.wa.uploadMedia(randomBytes(3000), 'sticker')
    env.wa.deliver({ id: 'M4', from: ALICE, message: { stickerMessage: { ...st, mimetype: 'image/webp' } } })
    expect(msg(await next('M4')).content.attachments[0]).toMatchObject({ kind: 'sticker', mimetype: 'image/webp' })
  })

  it('expired media (404 on the CDN) is re-requested from the sender once and then delivered', async () => {
    const bytes = randomBytes(5000)
    const media = await env.wa.uploadMedia(bytes, 'video')
    env.wa.expireMedia(media.url as string)
    env.wa.deliver({ id: 'M5', from: ALICE, message: { videoMessage: { ...media, mimetype: 'video/mp4' } } })
    const a = msg(await next('M5')).content.attachments[0]!
    expect(env.media.blobs.get(a.mediaId)?.equals(bytes)).toBe(true)
  })

  it('a location and a shared contact arrive as location and vCard file', async () => {
    env.wa.deliver({ id: 'L1', from: ALICE, message: { locationMessage: { degreesLatitude: 52.5, degreesLongitude: 13.4, name: 'Station' } } })
    expect(msg(await next('L1')).content).toMatchObject({ location: { latitude: 52.5, longitude: 13.4, name: 'Station' }, body: { text: 'Station' } })
    env.wa.deliver({ id: 'C1', from: ALICE, message: { contactMessage: { displayName: 'Carol', vcard: 'BEGIN:VCARD\nFN:Carol\nEND:VCARD' } } })
    const c = msg(await next('C1')).content
    expect(c.body.text).toBe('Shared contact: Carol')
    expect(c.attachments[0]).toMatchObject({ kind: 'file', mimetype: 'text/vcard', filename: 'Carol.vcf' })
  })

  it('an undecryptable stub is not forwarded; the real content under the same id is', async () => {
    env.wa.undecryptable({ id: 'X1', from: ALICE })
    env.wa.deliver({ id: 'X0', from: ALICE, message: { conversation: 'marker' } })
    await next('X0')
    expect(env.received.some(e => e.remoteId === 'X1')).toBe(false)
    env.wa.deliver({ id: 'X1', from: ALICE, message: { conversation: 'now readable' } })
    expect(msg(await next('X1')).content.body.text).toBe('now readable')
  })

  it('text typed on the relay phone speaks as the relay account', async () => {
    env.wa.deliver({ id: 'P1', from: 'phone', message: { conversation: 'from my phone' } })
    expect(await next('P1')).toMatchObject({ sender: { id: env.login.personId, viaRelayAccount: true } })
  })

  it('the same human keeps one person id across PN-only, LID-only and mapped sightings', async () => {
    const dave = { pn: '15550100099@s.whatsapp.net', lid: '201000000000099@lid' }
    env.wa.deliver({ id: 'I1', from: { pn: dave.pn }, pushName: null, message: { conversation: 'old phone-number addressing' } })
    const first = (await next('I1')).sender
    expect(first.id).not.toContain('15550100099')
    expect(first.displayName).toMatch(/^WhatsApp user [0-9a-f]{4}$/)
    env.wa.deliver({ id: 'I2', from: dave, addressing: 'lid', pushName: 'Dave', message: { conversation: 'now LID with participantAlt' } })
    expect((await next('I2')).sender.id).toBe(first.id)
    env.wa.deliver({ id: 'I3', from: { lid: dave.lid }, pushName: null, message: { conversation: 'LID only' } })
    expect((await next('I3')).sender).toMatchObject({ id: first.id, displayName: 'Dave' })
    // A LID seen first and mapped later by lid-mapping.update.
    env.wa.deliver({ id: 'I4', from: { lid: '201000000000055@lid' }, message: { conversation: 'x' } })
    const eve = (await next('I4')).sender.id
    env.wa.lidMapping('201000000000055@lid', '15550100055@s.whatsapp.net')
    env.wa.deliver({ id: 'I5', from: { pn: '15550100055@s.whatsapp.net' }, addressing: 'pn', message: { conversation: 'y' } })
    expect((await next('I5')).sender.id).toBe(eve)
  })

  it('a group rename becomes a chat update', async () => {
    env.wa.renameGroup(GROUP, 'Family & friends')
    expect(await until(() => env.received.find(e => e.kind === 'chat_update'))).toMatchObject({ chat: { id: GROUP }, name: 'Family & friends' })
  })
})
