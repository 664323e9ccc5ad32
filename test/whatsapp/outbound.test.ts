// Neutral → WhatsApp: what the relay account posts into the group (reference §1, §5, §6, §9).
import { randomBytes } from 'node:crypto'
import { proto } from '@whiskeysockets/baileys'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DeliveryError } from '../../src/core/errors.ts'
import type { CopyRef, Delivery, MessageContent, RichText } from '../../src/core/model.ts'
import { plainText } from '../../src/core/model.ts'
import { fromExtra } from '../../src/whatsapp/messages.ts'
import { messageIdFor } from '../../src/whatsapp/send.ts'
import { GROUP } from '../fakes/whatsapp-socket.ts'
import { copyKey, linked, until } from './harness.ts'

const ALICE = { lid: '201000000000042@lid', pn: '15550100042@s.whatsapp.net' }
let env: Awaited<ReturnType<typeof linked>>
let n = 0
const t0 = Date.now()
let clock = t0

beforeAll(async () => {
  env = await linked('pglite', { now: () => clock })
  env.wa.addGroup({ id: GROUP, subject: 'Family', members: [ALICE] })
})
afterAll(() => env.close())

const target = () => ({ network: 'whatsapp' as const, chatId: GROUP, loginId: env.login.id, roomId: '!r:x' })
const sender = { network: 'signal' as const, id: 'aci-1', displayName: 'Alex' }
const content = (body: RichText, extra: Partial<MessageContent> = {}): MessageContent => ({ kind: 'text', body, attachments: [], ...extra })
const message = (body: RichText, extra: Partial<Delivery> = {}): Delivery => ({ kind: 'message', target: target(), sender, deliveryId: `d${++n}`, content: content(body), relayed: true, ...extra }) as Delivery
const lastSent = () => env.wa.sent.at(-1)!
const copyOf = (r: { remoteId?: string; authorId?: string; sentAt?: number; extra?: Record<string, unknown> }): CopyRef => ({ remoteId: r.remoteId!, authorId: r.authorId!, sentAt: r.sentAt!, ...(r.extra ? { extra: r.extra } : {}) })

describe('deliveries to WhatsApp', () => {
  it('a relayed message keeps its bold prefix and styles as markup, with an id derived from the delivery', async () => {
    const body: RichText = { text: 'Alex (Signal): hi there', styles: [{ start: 0, length: 14, style: 'bold' }, { start: 18, length: 5, style: 'italic' }], links: [], mentions: [] }
    const d = message(body)
    const r = await env.net.send(d)
    expect(lastSent().content).toMatchObject({ text: '*Alex (Signal):* hi _there_' })
    expect(r.remoteId).toBe(messageIdFor(d.deliveryId))
    expect(r.authorId).toBe(env.login.personId)
    // The echo Baileys emits for our own send is dropped, never relayed back.
    env.wa.deliver({ id: 'after-echo', from: ALICE, message: { conversation: 'x' } })
    await until(() => env.received.find(e => e.remoteId === 'after-echo'))
    expect(env.received.some(e => e.remoteId === r.remoteId)).toBe(false)
  })

  it('a retried delivery reuses its message id (idempotent)', async () => {
    const d = message(plainText('once'))
    const a = await env.net.send(d)
    const b = await env.net.send(d)
    expect(a.remoteId).toBe(b.remoteId)
  })

  it('links read as "text (url)", spoilers degrade visibly', async () => {
    await env.net.send(message({ text: 'see docs and secret', styles: [{ start: 13, length: 6, style: 'spoiler' }], links: [{ start: 4, length: 4, url: 'https://x.org' }], mentions: [] }))
    expect(lastSent().content.text).toBe('see docs (https://x.org) and [spoiler: secret]')
  })

  it('a mention of a WhatsApp member becomes @<user> with the participant JID from the group metadata', async () => {
    env.wa.deliver({ id: 'A1', from: ALICE, pushName: 'Alice', message: { conversation: 'hi' } })
    const alice = (await until(() => env.received.find(e => e.remoteId === 'A1'))).sender.id
    await env.net.send(message({ text: 'Alex (Signal): ping Alice and Bob', styles: [], links: [], mentions: [{ start: 20, length: 5, person: { network: 'whatsapp', id: alice } }, { start: 30, length: 3, person: { network: 'signal', id: 'bob' } }] }))
    expect(lastSent().content).toMatchObject({ text: 'Alex (Signal): ping @201000000000042 and Bob', mentions: [ALICE.lid] })
  })

  it('a reply quotes the WhatsApp copy of the original', async () => {
    env.wa.deliver({ id: 'Q1', from: ALICE, message: { conversation: 'question?' } })
    await until(() => env.received.find(e => e.remoteId === 'Q1'))
    // The copy as the core hands it over: with the extra the adapter gave it when the message arrived.
    const extra = env.copies.get(copyKey(GROUP, 'Q1'))
    await env.net.send(message(plainText('answer'), { replyTo: { remoteId: 'Q1', authorId: '201000000000042', sentAt: clock, ...(extra ? { extra } : {}) } } as Partial<Delivery>))
    const ctx = lastSent().message.message?.extendedTextMessage?.contextInfo
    expect(ctx?.stanzaId).toBe('Q1')
    expect(ctx?.quotedMessage?.conversation).toBe('question?')
  })

  it('an edit within 15 minutes edits the copy; later it becomes a quoted correction', async () => {
    const orig = copyOf(await env.net.send(message(plainText('typo'))))
    const edit = (c: CopyRef, text: string): Delivery => ({ kind: 'edit', target: target(), sender, deliveryId: `e${++n}`, content: content(plainText(text)), of: c, original: c, editCount: 0, relayed: true })
    clock = t0 + 10 * 60_000
    await env.net.send(edit(orig, 'fixed'))
    const pm = lastSent().message.message?.protocolMessage
    expect(pm?.type).toBe(proto.Message.ProtocolMessage.Type.MESSAGE_EDIT)
    expect(pm?.key?.id).toBe(orig.remoteId)
    clock = orig.sentAt + 16 * 60_000
    await env.net.send(edit(orig, 'fixed again'))
    const m = lastSent().message.message?.extendedTextMessage
    expect(m?.text).toBe('✏️ fixed again')
    expect(m?.contextInfo?.stanzaId).toBe(orig.remoteId)
    clock = t0
  })

  it('a delete within two days revokes; an older one is refused with a sentence', async () => {
    const c = copyOf(await env.net.send(message(plainText('oops'))))
    await env.net.send({ kind: 'delete', target: target(), sender, deliveryId: `x${++n}`, of: c })
    expect(lastSent().message.message?.protocolMessage).toMatchObject({ type: proto.Message.ProtocolMessage.Type.REVOKE, key: { id: c.remoteId } })
    const err = await env.net.send({ kind: 'delete', target: target(), sender, deliveryId: `x${++n}`, of: { ...c, sentAt: clock - 49 * 3600_000 } }).catch(e => e)
    expect(err).toBeInstanceOf(DeliveryError)
    expect(err).toMatchObject({ disposition: 'permanent' })
    expect(err.userMessage).toMatch(/two days/)
  })

  it('a reaction to a member message reacts on her key; an empty reaction removes it', async () => {
    const of: CopyRef = { remoteId: 'Q1', authorId: '201000000000042', sentAt: clock }
    await env.net.send({ kind: 'reaction', target: target(), sender, deliveryId: `r${++n}`, of, emoji: '❤️', removed: false })
    expect(lastSent().message.message?.reactionMessage).toMatchObject({ text: '❤️', key: { id: 'Q1', fromMe: false, participant: ALICE.lid } })
    await env.net.send({ kind: 'reaction', target: target(), sender, deliveryId: `r${++n}`, of, emoji: '❤️', removed: true })
    expect(lastSent().message.message?.reactionMessage?.text).toBe('')
  })

  it('an image goes out with its caption and can be downloaded again; getMessage answers from memory, then from its copy', async () => {
    const bytes = randomBytes(4000)
    const mediaId = await env.media.put(bytes)
    const d = message(plainText('Alex (Signal): photo'), { content: content(plainText('Alex (Signal): photo'), { attachments: [{ kind: 'file', mimetype: 'application/pdf', filename: 'a.pdf', size: bytes.length, mediaId }] }) } as Partial<Delivery>)
    const r = await env.net.send(d)
    const doc = lastSent().message.message?.documentMessage
    expect(doc).toMatchObject({ caption: 'Alex (Signal): photo', fileName: 'a.pdf', mimetype: 'application/pdf' })
    const getMessage = env.wa.current!.opts.getMessage
    // Before the core has recorded the copy (a retry request can come that soon), from what the store holds.
    expect((await getMessage({ remoteJid: GROUP, id: r.remoteId!, fromMe: true }))?.documentMessage?.fileName).toBe('a.pdf')
    expect(await getMessage({ remoteJid: GROUP, id: 'unknown', fromMe: true })).toBeUndefined()
    // The result carries what the copy keeps; once recorded, the copy answers, and no row of the adapter's was written.
    expect(fromExtra(r.extra)?.message.documentMessage?.fileName).toBe('a.pdf')
    env.net.recorded(d.deliveryId)
    expect(await getMessage({ remoteJid: GROUP, id: r.remoteId!, fromMe: true })).toBeUndefined()
    env.copies.set(copyKey(GROUP, r.remoteId!), r.extra!)
    expect((await getMessage({ remoteJid: GROUP, id: r.remoteId!, fromMe: true }))?.documentMessage?.fileName).toBe('a.pdf')
    expect((await env.db.query('SELECT 1 FROM wa_messages WHERE msg_id = $1', [r.remoteId])).rows).toEqual([])
  })

  it('sends use the group metadata cache instead of asking the server every time', async () => {
    const before = env.wa.current!.metadataFetches
    for (let i = 0; i < 3; i++) await env.net.send(message(plainText(`m${i}`)))
    expect(env.wa.current!.metadataFetches - before).toBe(0)
  })

  it('rate limits, timeouts and "No sessions" are transient; a group the relay left is permanent', async () => {
    for (const kind of ['rate-overlimit', 'timeout', 'no-sessions'] as const) {
      env.wa.failNext({ method: 'sendMessage', kind })
      expect(await env.net.send(message(plainText('x'))).catch(e => e)).toMatchObject({ disposition: 'transient' })
    }
    env.wa.failNext({ method: 'sendMessage', kind: 'not-participant' })
    const err = await env.net.send(message(plainText('x'))).catch(e => e)
    expect(err).toMatchObject({ disposition: 'permanent' })
    expect(err.userMessage).toContain('!relay link whatsapp')
  })
})
