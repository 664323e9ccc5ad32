// The mission's story: what people assemble today from two bridges and hand-typed commands, done by
// relay-bridge alone. One portal, three networks, every kind of content in all six directions.
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { FakeEvent } from '../fakes/homeserver.ts'
import { edit, groupText, reaction, remoteDelete } from '../fakes/signal-envelopes.ts'
import { DB_KINDS } from '../support/db.ts'
import { E2E } from './harness.ts'
import { ADMIN, BOB, DAVE, SIGNAL_RELAY, setUpPortal, type Portal } from './setup.ts'
import { PATIENCE_MS } from '../support/patience.ts'

const DAVE_GHOST = '@whatsapp_201000000000042:example.org'
const BOB_GHOST = `@signal_${BOB.aci}:example.org`
const PROTOCOL_EDIT = 14
const PROTOCOL_REVOKE = 0

describe.each(DB_KINDS)('the story, end to end, on %s', kind => {
  let e: E2E
  let p: Portal
  beforeAll(async () => {
    e = await E2E.create(kind)
    p = await setUpPortal(e)
  }, PATIENCE_MS * 3)
  afterAll(async () => e?.stop())

  const signalSends = (pred: (params: any) => boolean) => e.daemon.callsOf('send').filter(c => c.params.groupId === p.signalGroup && pred(c.params))
  const waitSignal = (pred: (params: any) => boolean, what: string) => e.until(() => signalSends(pred)[0], `Signal: ${what}`)
  const waitSignalCall = (method: string, pred: (params: any) => boolean, what: string) =>
    e.until(() => e.daemon.callsOf(method).find(c => pred(c.params)), `Signal ${method}: ${what}`)
  const waitWa = async (pred: (s: { content: any; quotedId: string | null; id: string }) => boolean, what: string) =>
    (await e.waitForWaSent(sent => sent.some(pred), what)).find(pred)!
  const waitMatrix = (pred: (ev: FakeEvent) => boolean) => e.hs.waitForEvent(p.room, pred, { timeoutMs: PATIENCE_MS })
  const body = (ev: FakeEvent) => (ev.content as any).body as string | undefined
  const timestampOf = (call: { result?: unknown }) => (call.result as { timestamp: number }).timestamp

  // Three messages, one from each network, that later replies, edits, deletions and reactions point at.
  let m1: string // Matrix event id
  let s1: { timestamp: number; ghostEvent: string; waId: string; }
  let w1: { id: string; ghostEvent: string; signalTs: number }
  let m1Signal: number
  let m1Wa: string

  it('text: Matrix → Signal and WhatsApp, each naming the sender and network once, in bold', async () => {
    m1 = await e.hs.sendMessage(ADMIN, p.room, { msgtype: 'm.text', body: 'dinner at 7?' })
    const toSignal = await waitSignal(x => x.message === 'Admin (Matrix): dinner at 7?', 'the Matrix text')
    expect(toSignal.params.textStyle ?? toSignal.params.textStyles).toEqual(expect.arrayContaining(['0:14:BOLD']))
    m1Signal = timestampOf(toSignal)
    m1Wa = (await waitWa(s => s.content.text === '*Admin (Matrix)*: dinner at 7?', 'the Matrix text')).id
  })

  it('text: Signal → Matrix as Bob\'s ghost, and → WhatsApp through the relay', async () => {
    const env = groupText(BOB, p.signalGroup, 'yes, 7 works')
    e.daemon.push(SIGNAL_RELAY.number!, env)
    const ghost = await waitMatrix(ev => body(ev) === 'yes, 7 works')
    expect(ghost.sender).toBe(BOB_GHOST)
    expect(e.hs.profile(BOB_GHOST)?.displayname).toBe('Bob (Signal)')
    const wa = await waitWa(s => s.content.text === '*Bob (Signal)*: yes, 7 works', 'Bob\'s text')
    s1 = { timestamp: env.timestamp as number, ghostEvent: ghost.event_id, waId: wa.id }
  })

  it('text: WhatsApp → Matrix as Dave\'s ghost, and → Signal through the relay', async () => {
    const msg = await e.wa('deliver', { chat: p.whatsappGroup, from: DAVE, pushName: 'Dave', message: { conversation: 'I bring dessert' } })
    const ghost = await waitMatrix(ev => body(ev) === 'I bring dessert')
    expect(ghost.sender).toBe(DAVE_GHOST)
    expect(e.hs.profile(DAVE_GHOST)?.displayname).toBe('Dave (WhatsApp)')
    const toSignal = await waitSignal(x => x.message === 'Dave (WhatsApp): I bring dessert', 'Dave\'s text')
    w1 = { id: msg.key.id, ghostEvent: ghost.event_id, signalTs: timestampOf(toSignal) }
  })

  it('reply: a WhatsApp reply to a Signal user\'s message quotes Bob\'s message on Signal and is a reply from Dave\'s ghost in Matrix', async () => {
    await e.wa('deliver', {
      chat: p.whatsappGroup, from: DAVE, pushName: 'Dave',
      message: { extendedTextMessage: { text: 'great!', contextInfo: { stanzaId: s1.waId, participant: `${'15550100000'}@s.whatsapp.net`, quotedMessage: { conversation: '*Bob (Signal)*: yes, 7 works' } } } },
    })
    const toSignal = await waitSignal(x => x.message === 'Dave (WhatsApp): great!', 'the reply')
    expect(toSignal.params).toMatchObject({ quoteTimestamp: s1.timestamp, quoteAuthor: BOB.aci })
    const ghost = await waitMatrix(ev => body(ev) === 'great!')
    expect((ghost.content as any)['m.relates_to']).toEqual({ 'm.in_reply_to': { event_id: s1.ghostEvent } })
  })

  it('reply: a Matrix reply to a WhatsApp message quotes Dave\'s message on WhatsApp and the relay\'s copy on Signal', async () => {
    await e.hs.sendMessage(ADMIN, p.room, { msgtype: 'm.text', body: 'thanks Dave', 'm.relates_to': { 'm.in_reply_to': { event_id: w1.ghostEvent } } })
    const toSignal = await waitSignal(x => x.message === 'Admin (Matrix): thanks Dave', 'the reply')
    expect(toSignal.params).toMatchObject({ quoteTimestamp: w1.signalTs, quoteAuthor: SIGNAL_RELAY.aci })
    const wa = await waitWa(s => s.content.text === '*Admin (Matrix)*: thanks Dave', 'the reply')
    expect(wa.quotedId).toBe(w1.id)
  })

  it('reply: a Signal quote of the relay\'s copy of a Matrix message is a reply to the original event and quotes WhatsApp\'s copy', async () => {
    e.daemon.push(SIGNAL_RELAY.number!, groupText(BOB, p.signalGroup, 'sounds good', { quote: { author: SIGNAL_RELAY, id: m1Signal, text: 'Admin (Matrix): dinner at 7?' } }))
    const ghost = await waitMatrix(ev => body(ev) === 'sounds good')
    expect((ghost.content as any)['m.relates_to']).toEqual({ 'm.in_reply_to': { event_id: m1 } })
    const wa = await waitWa(s => s.content.text === '*Bob (Signal)*: sounds good', 'Bob\'s reply')
    expect(wa.quotedId).toBe(m1Wa)
  })

  it('edit: from each network, landing on the right copy of the other two', async () => {
    // Matrix edits its message.
    await e.hs.sendMessage(ADMIN, p.room, { msgtype: 'm.text', body: '* dinner at 8?', 'm.new_content': { msgtype: 'm.text', body: 'dinner at 8?' }, 'm.relates_to': { rel_type: 'm.replace', event_id: m1 } })
    const sEdit = await waitSignal(x => x.message === 'Admin (Matrix): dinner at 8?', 'the Matrix edit')
    expect(sEdit.params.editTimestamp).toBe(m1Signal)
    const wEdit = await waitWa(s => s.content.text === '*Admin (Matrix)*: dinner at 8?', 'the Matrix edit')
    expect(wEdit.content.edit?.id).toBe(m1Wa)
    // Bob edits on Signal.
    e.daemon.push(SIGNAL_RELAY.number!, edit(BOB, p.signalGroup, s1.timestamp, 'yes, 8 works'))
    const mEdit = await waitMatrix(ev => (ev.content as any)['m.new_content']?.body === 'yes, 8 works')
    expect(mEdit.sender).toBe(BOB_GHOST)
    expect((mEdit.content as any)['m.relates_to']).toEqual({ rel_type: 'm.replace', event_id: s1.ghostEvent })
    expect((await waitWa(s => s.content.text === '*Bob (Signal)*: yes, 8 works', 'Bob\'s edit')).content.edit?.id).toBe(s1.waId)
    // Dave edits on WhatsApp.
    await e.wa('deliver', { chat: p.whatsappGroup, from: DAVE, pushName: 'Dave', message: { protocolMessage: { type: PROTOCOL_EDIT, key: { remoteJid: p.whatsappGroup, id: w1.id, fromMe: false, participant: DAVE.lid }, editedMessage: { conversation: 'I bring cake' } } } })
    const dEdit = await waitMatrix(ev => (ev.content as any)['m.new_content']?.body === 'I bring cake')
    expect((dEdit.content as any)['m.relates_to']).toEqual({ rel_type: 'm.replace', event_id: w1.ghostEvent })
    expect((await waitSignal(x => x.message === 'Dave (WhatsApp): I bring cake', 'Dave\'s edit')).params.editTimestamp).toBe(w1.signalTs)
  })

  it('reaction: from each network, on the right copy; relayed people\'s reactions arrive as a short line', async () => {
    // Matrix reacts to Bob's message.
    await e.hs.sendEvent(ADMIN, p.room, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: s1.ghostEvent, key: '👍' } })
    expect((await waitSignal(x => x.message === 'Admin (Matrix) reacted 👍', 'the reaction note')).params).toMatchObject({ quoteTimestamp: s1.timestamp, quoteAuthor: BOB.aci })
    expect((await waitWa(s => s.content.text === '*Admin (Matrix)* reacted 👍', 'the reaction note')).quotedId).toBe(s1.waId)
    // Bob reacts on Signal to the relay's copy of Dave's message.
    e.daemon.push(SIGNAL_RELAY.number!, reaction(BOB, p.signalGroup, { emoji: '❤️', target: SIGNAL_RELAY, targetSentTimestamp: w1.signalTs }))
    const mReact = await waitMatrix(ev => ev.type === 'm.reaction' && ev.sender === BOB_GHOST)
    expect((mReact.content as any)['m.relates_to']).toEqual({ rel_type: 'm.annotation', event_id: w1.ghostEvent, key: '❤️' })
    expect((await waitWa(s => s.content.text === '*Bob (Signal)* reacted ❤️', 'Bob\'s reaction')).quotedId).toBe(w1.id)
    // Dave reacts on WhatsApp to the relay's copy of the Matrix message.
    await e.wa('deliver', { chat: p.whatsappGroup, from: DAVE, pushName: 'Dave', message: { reactionMessage: { key: { remoteJid: p.whatsappGroup, id: m1Wa, fromMe: false, participant: '15550100000@s.whatsapp.net' }, text: '😂', senderTimestampMs: Date.now() } } })
    const dReact = await waitMatrix(ev => ev.type === 'm.reaction' && ev.sender === DAVE_GHOST)
    expect((dReact.content as any)['m.relates_to']).toEqual({ rel_type: 'm.annotation', event_id: m1, key: '😂' })
    expect((await waitSignal(x => x.message === 'Dave (WhatsApp) reacted 😂', 'Dave\'s reaction')).params).toMatchObject({ quoteTimestamp: m1Signal, quoteAuthor: SIGNAL_RELAY.aci })
  })

  it('image and file: from each network to the other two, bytes intact', async () => {
    const png = Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), randomBytes(2000)])
    const pdf = Buffer.concat([Buffer.from('%PDF-1.4\n'), randomBytes(3000)])
    const dataUri = (a: string) => Buffer.from(a.slice(a.indexOf('base64,') + 7), 'base64')
    const attachmentsOf = (params: any): string[] => [params.attachment ?? params.attachments ?? []].flat()

    // From Matrix.
    const mxcImage = e.hs.uploadAs(ADMIN, png, 'image/png', 'cat.png')
    await e.hs.sendMessage(ADMIN, p.room, { msgtype: 'm.image', body: 'cat.png', url: mxcImage, info: { mimetype: 'image/png', size: png.length } })
    const mxcFile = e.hs.uploadAs(ADMIN, pdf, 'application/pdf', 'menu.pdf')
    await e.hs.sendMessage(ADMIN, p.room, { msgtype: 'm.file', body: 'menu.pdf', url: mxcFile, info: { mimetype: 'application/pdf', size: pdf.length } })
    const sImg = await waitSignal(x => attachmentsOf(x).some(a => a.includes('filename=cat.png')), 'the Matrix image')
    expect(dataUri(attachmentsOf(sImg.params)[0]!).equals(png)).toBe(true)
    expect(sImg.params.message).toBe('Admin (Matrix):')
    await waitSignal(x => attachmentsOf(x).some(a => a.includes('filename=menu.pdf') && dataUri(a).equals(pdf)), 'the Matrix file')
    await waitWa(s => s.content.image !== undefined && /Admin \(Matrix\)/.test(s.content.caption ?? ''), 'the Matrix image')
    await waitWa(s => s.content.document !== undefined && s.content.fileName === 'menu.pdf', 'the Matrix file')

    // From Signal.
    e.daemon.attachments.set('sigimg.png', png)
    e.daemon.attachments.set('sigdoc.pdf', pdf)
    e.daemon.push(SIGNAL_RELAY.number!, groupText(BOB, p.signalGroup, 'photos', { attachments: [
      { contentType: 'image/png', id: 'sigimg.png', filename: 'beach.png', size: png.length, width: 10, height: 10 },
      { contentType: 'application/pdf', id: 'sigdoc.pdf', filename: 'tickets.pdf', size: pdf.length },
    ] }))
    const mImg = await waitMatrix(ev => ev.sender === BOB_GHOST && (ev.content as any).msgtype === 'm.image')
    expect(e.hs.media((mImg.content as any).url)?.data.equals(png)).toBe(true)
    const mDoc = await waitMatrix(ev => ev.sender === BOB_GHOST && (ev.content as any).msgtype === 'm.file')
    expect(e.hs.media((mDoc.content as any).url)?.data.equals(pdf)).toBe(true)
    await waitWa(s => s.content.image !== undefined && /Bob \(Signal\)/.test(s.content.caption ?? ''), 'Bob\'s image')
    await waitWa(s => s.content.document !== undefined && s.content.fileName === 'tickets.pdf', 'Bob\'s file')

    // From WhatsApp.
    const img = await e.wa('uploadMedia', png.toString('base64'), 'image')
    await e.wa('deliver', { chat: p.whatsappGroup, from: DAVE, pushName: 'Dave', message: { imageMessage: { ...img, mimetype: 'image/png', caption: 'sunset' } } })
    const doc = await e.wa('uploadMedia', pdf.toString('base64'), 'document')
    await e.wa('deliver', { chat: p.whatsappGroup, from: DAVE, pushName: 'Dave', message: { documentMessage: { ...doc, mimetype: 'application/pdf', fileName: 'recipe.pdf' } } })
    const dImg = await waitMatrix(ev => ev.sender === DAVE_GHOST && (ev.content as any).msgtype === 'm.image')
    expect(e.hs.media((dImg.content as any).url)?.data.equals(png)).toBe(true)
    const dDoc = await waitMatrix(ev => ev.sender === DAVE_GHOST && (ev.content as any).msgtype === 'm.file')
    expect(e.hs.media((dDoc.content as any).url)?.data.equals(pdf)).toBe(true)
    await waitSignal(x => x.message?.startsWith('Dave (WhatsApp): sunset') && attachmentsOf(x).some(a => dataUri(a).equals(png)), 'Dave\'s image')
    await waitSignal(x => attachmentsOf(x).some(a => a.includes('filename=recipe.pdf') && dataUri(a).equals(pdf)), 'Dave\'s file')
  })

  it('deletion: from each network, removing the right copies', async () => {
    // Matrix deletes its message.
    await e.hs.redact(ADMIN, p.room, m1)
    expect((await waitSignalCall('remoteDelete', x => x.targetTimestamp === m1Signal, 'the Matrix deletion')).params.groupId).toBe(p.signalGroup)
    await waitWa(s => s.content.delete?.id === m1Wa, 'the Matrix deletion')
    // Bob deletes on Signal.
    e.daemon.push(SIGNAL_RELAY.number!, remoteDelete(BOB, p.signalGroup, s1.timestamp))
    const redaction = await waitMatrix(ev => ev.type === 'm.room.redaction' && ((ev.content as any).redacts ?? ev.redacts) === s1.ghostEvent)
    expect(redaction.sender).toBe(BOB_GHOST)
    await waitWa(s => s.content.delete?.id === s1.waId, 'Bob\'s deletion')
    // Dave deletes on WhatsApp.
    await e.wa('deliver', { chat: p.whatsappGroup, from: DAVE, pushName: 'Dave', message: { protocolMessage: { type: PROTOCOL_REVOKE, key: { remoteJid: p.whatsappGroup, id: w1.id, fromMe: false, participant: DAVE.lid } } } })
    await waitMatrix(ev => ev.type === 'm.room.redaction' && ((ev.content as any).redacts ?? ev.redacts) === w1.ghostEvent)
    await waitSignalCall('remoteDelete', x => x.targetTimestamp === w1.signalTs, 'Dave\'s deletion')
  })

  it('every relayed message names its sender and network once, never twice', async () => {
    const texts = [
      ...e.daemon.callsOf('send').map(c => String(c.params.message ?? '')),
      ...(await e.waSent()).map(s => String(s.content.text ?? s.content.caption ?? '')),
    ]
    expect(texts.length).toBeGreaterThan(15)
    for (const t of texts) expect(t).not.toMatch(/\((Matrix|Signal|WhatsApp)\)\W*\((Matrix|Signal|WhatsApp)\)/)
    // No bot notice, command or error ever reached a group.
    for (const t of texts) expect(t).not.toMatch(/!relay|⚠️|Linked!|Created the WhatsApp group/)
  })

  it('re-linking a group that was unlinked takes `!relay link` and nothing else', async () => {
    await e.hs.sendMessage(ADMIN, p.room, '!relay unlink signal')
    await e.waitForNotice(p.room, /Unlinked the Signal group/)
    await e.hs.sendMessage(ADMIN, p.room, `!relay link signal ${p.signalGroup}`)
    await e.waitForNotice(p.room, /Linked this room to the Signal group “Family”/)
    await e.hs.sendMessage(ADMIN, p.room, { msgtype: 'm.text', body: 'back again' })
    await waitSignal(x => x.message === 'Admin (Matrix): back again', 'a message after re-linking')
    e.daemon.push(SIGNAL_RELAY.number!, groupText(BOB, p.signalGroup, 'welcome back'))
    await waitMatrix(ev => body(ev) === 'welcome back')
    await waitWa(s => s.content.text === '*Bob (Signal)*: welcome back', 'Bob after re-linking')
  })
})
