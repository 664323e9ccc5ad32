// The story again, with the portal encrypted, through the real bridge process: with `encryption.default` on, the
// portal the bridge makes is encrypted; the operator's Matrix account has real Olm devices (second wasm
// OlmMachines, test/support/olm-peer.ts) and sets the portal up by typing encrypted commands; every kind of content
// goes both ways between it and the Signal and WhatsApp fakes. Then the bridge is SIGKILLed, the room hears two
// messages under a new room key that the bridge can only get from transactions delivered after its restart, and
// it relays them once back, with the same device keys it had before.
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { edit, groupText, receipt, remoteDelete, typing } from '../fakes/signal-envelopes.ts'
import { DB_KINDS } from '../support/db.ts'
import { decryptFile, encryptFile, reader, type Clear } from '../support/encrypted-room.ts'
import { OlmPeer } from '../support/olm-peer.ts'
import { PATIENCE_MS } from '../support/patience.ts'
import { E2E } from './harness.ts'
import { ADMIN, BOB, DAVE, SIGNAL_RELAY, setUpPortal, type Portal } from './setup.ts'

const DAVE_GHOST = '@whatsapp_201000000000042:example.org'
const BOB_GHOST = `@signal_${BOB.aci}:example.org`
const RELAY_WA_JID = '15550100000@s.whatsapp.net'

describe.each(DB_KINDS)('the story in an encrypted portal, end to end, on %s', kind => {
  let e: E2E
  let p: Portal
  let admin: OlmPeer
  let laptop: OlmPeer
  let read: ReturnType<typeof reader>
  beforeAll(async () => {
    e = await E2E.create(kind, { configure: raw => (raw.encryption = { allow: true, default: true, store_key: 'b'.repeat(64) }) })
    e.hs.createUser(ADMIN, { displayname: 'Admin' })
    admin = await OlmPeer.login(e.hs, ADMIN)
    laptop = await admin.addDevice()
    e.useDevice(admin)
    read = reader(e.hs, admin)
    p = await setUpPortal(e)
  }, PATIENCE_MS * 3)
  afterAll(async () => {
    await laptop?.close()
    await admin?.close()
    await e?.stop()
  })

  const signalSends = (pred: (params: any) => boolean) => e.daemon.callsOf('send').filter(c => c.params.groupId === p.signalGroup && pred(c.params))
  const waitSignal = (pred: (params: any) => boolean, what: string) => e.until(() => signalSends(pred)[0], `Signal: ${what}`)
  const waitWa = async (pred: (s: { content: any; quotedId: string | null; id: string }) => boolean, what: string) =>
    (await e.waitForWaSent(sent => sent.some(pred), what)).find(pred)!
  /** An event of the portal as the admin's device reads it, which must have been encrypted in the room. */
  const waitMatrix = async (pred: (ev: Clear) => boolean, what: string): Promise<Clear> => {
    const ev = await read.find(p.room, pred, what)
    expect(e.hs.timeline(p.room).find(x => x.event_id === ev.event_id)!.type).toBe('m.room.encrypted')
    return ev
  }
  const timestampOf = (call: { result?: unknown }) => (call.result as { timestamp: number }).timestamp
  const attachmentsOf = (params: any): string[] => [params.attachment ?? params.attachments ?? []].flat()
  const dataUri = (a: string) => Buffer.from(a.slice(a.indexOf('base64,') + 7), 'base64')
  const devicesOf = (mxid: string) => [...(e.hs.e2ee.devices.get(mxid)?.values() ?? [])]
    .map(d => ({ deviceId: d.deviceId, keys: (d.keys as { keys?: Record<string, string> } | undefined)?.keys }))
  const botDevices = () => devicesOf(e.hs.botUserId)

  let m1: string
  let m1Signal: number
  let m1Wa: string
  let s1: { timestamp: number; ghostEvent: string; waId: string }
  let w1: { id: string; ghostEvent: string; signalTs: number }

  it('the portal the bridge made for the Signal group is encrypted, and the commands that set it up were answered encrypted', () => {
    expect(e.hs.stateContent(p.room, 'm.room.encryption')).toMatchObject({ algorithm: 'm.megolm.v1.aes-sha2' })
    const fromBot = e.hs.timeline(p.room).filter(ev => ev.sender === e.hs.botUserId && ev.state_key === undefined)
    expect(fromBot.map(ev => ev.type)).toContain('m.room.encrypted')
    expect(fromBot.filter(ev => ev.type !== 'm.room.encrypted')).toEqual([])
  })

  it('text from each network: Matrix (encrypted by the admin\'s device) → both groups; Signal and WhatsApp → encrypted ghost messages', async () => {
    m1 = await admin.send(p.room, { msgtype: 'm.text', body: 'dinner at 7?' })
    expect(e.hs.timeline(p.room).find(x => x.event_id === m1)!.type).toBe('m.room.encrypted')
    m1Signal = timestampOf(await waitSignal(x => x.message === 'Admin (Matrix): dinner at 7?', 'the Matrix text'))
    m1Wa = (await waitWa(s => s.content.text === '*Admin (Matrix)*: dinner at 7?', 'the Matrix text')).id

    const env = groupText(BOB, p.signalGroup, 'yes, 7 works')
    e.daemon.push(SIGNAL_RELAY.number!, env)
    const bob = await waitMatrix(ev => ev.content.body === 'yes, 7 works', 'Bob\'s text')
    expect(bob.sender).toBe(BOB_GHOST)
    const bobWa = await waitWa(s => s.content.text === '*Bob (Signal)*: yes, 7 works', 'Bob\'s text')
    s1 = { timestamp: env.timestamp as number, ghostEvent: bob.event_id, waId: bobWa.id }

    const msg = await e.wa('deliver', { chat: p.whatsappGroup, from: DAVE, pushName: 'Dave', message: { conversation: 'I bring dessert' } })
    const dave = await waitMatrix(ev => ev.content.body === 'I bring dessert', 'Dave\'s text')
    expect(dave.sender).toBe(DAVE_GHOST)
    const daveSignal = await waitSignal(x => x.message === 'Dave (WhatsApp): I bring dessert', 'Dave\'s text')
    w1 = { id: msg.key.id, ghostEvent: dave.event_id, signalTs: timestampOf(daveSignal) }
  })

  it('a reply, an edit and a reaction from Matrix land on the right copies; Signal\'s edit and WhatsApp\'s reaction arrive encrypted', async () => {
    await admin.send(p.room, { msgtype: 'm.text', body: 'thanks Dave', 'm.relates_to': { 'm.in_reply_to': { event_id: w1.ghostEvent } } })
    expect((await waitSignal(x => x.message === 'Admin (Matrix): thanks Dave', 'the reply')).params).toMatchObject({ quoteTimestamp: w1.signalTs, quoteAuthor: SIGNAL_RELAY.aci })
    expect((await waitWa(s => s.content.text === '*Admin (Matrix)*: thanks Dave', 'the reply')).quotedId).toBe(w1.id)

    await admin.send(p.room, { msgtype: 'm.text', body: '* dinner at 8?', 'm.new_content': { msgtype: 'm.text', body: 'dinner at 8?' }, 'm.relates_to': { rel_type: 'm.replace', event_id: m1 } })
    expect((await waitSignal(x => x.message === 'Admin (Matrix): dinner at 8?', 'the edit')).params.editTimestamp).toBe(m1Signal)
    expect((await waitWa(s => s.content.text === '*Admin (Matrix)*: dinner at 8?', 'the edit')).content.edit?.id).toBe(m1Wa)

    await admin.send(p.room, { 'm.relates_to': { rel_type: 'm.annotation', event_id: s1.ghostEvent, key: '👍' } }, 'm.reaction')
    expect((await waitSignal(x => x.message === 'Admin (Matrix) reacted 👍', 'the reaction')).params).toMatchObject({ quoteTimestamp: s1.timestamp, quoteAuthor: BOB.aci })
    expect((await waitWa(s => s.content.text === '*Admin (Matrix)* reacted 👍', 'the reaction')).quotedId).toBe(s1.waId)

    e.daemon.push(SIGNAL_RELAY.number!, edit(BOB, p.signalGroup, s1.timestamp, 'yes, 8 works'))
    const bobEdit = await waitMatrix(ev => ev.content['m.new_content']?.body === 'yes, 8 works', 'Bob\'s edit')
    expect(bobEdit.content['m.relates_to']).toEqual({ rel_type: 'm.replace', event_id: s1.ghostEvent })

    await e.wa('deliver', { chat: p.whatsappGroup, from: DAVE, pushName: 'Dave', message: { reactionMessage: { key: { remoteJid: p.whatsappGroup, id: m1Wa, fromMe: false, participant: RELAY_WA_JID }, text: '😂', senderTimestampMs: Date.now() } } })
    const daveReaction = await waitMatrix(ev => ev.type === 'm.reaction' && ev.sender === DAVE_GHOST, 'Dave\'s reaction')
    expect(daveReaction.content['m.relates_to']).toEqual({ rel_type: 'm.annotation', event_id: m1, key: '😂' })
  })

  it('a picture: an encrypted attachment from Matrix reaches both groups as its bytes; a Signal photo arrives as an encrypted file', async () => {
    const png = Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), randomBytes(2000)])
    const { ciphertext, file } = await encryptFile(png)
    const mxc = e.hs.uploadAs(ADMIN, ciphertext, 'application/octet-stream')
    await admin.send(p.room, { msgtype: 'm.image', body: 'cat.png', file: file(mxc), info: { mimetype: 'image/png', size: png.length } })
    const toSignal = await waitSignal(x => attachmentsOf(x).some(a => a.includes('filename=cat.png')), 'the Matrix picture')
    expect(dataUri(attachmentsOf(toSignal.params)[0]!).equals(png)).toBe(true)
    await waitWa(s => s.content.image !== undefined && /Admin \(Matrix\)/.test(s.content.caption ?? ''), 'the Matrix picture')

    e.daemon.attachments.set('beach.png', png)
    e.daemon.push(SIGNAL_RELAY.number!, groupText(BOB, p.signalGroup, '', { attachments: [{ contentType: 'image/png', id: 'beach.png', filename: 'beach.png', size: png.length, width: 10, height: 10 }] }))
    const photo = await waitMatrix(ev => ev.sender === BOB_GHOST && ev.content.msgtype === 'm.image', 'Bob\'s picture')
    expect(photo.content.url).toBeUndefined()
    const stored = e.hs.media(photo.content.file.url)!
    expect(stored.data.includes(png)).toBe(false)
    expect((await decryptFile(stored.data, photo.content.file)).equals(png)).toBe(true)
  })

  it('a redaction from Matrix deletes both copies; a Signal deletion redacts the ghost\'s encrypted message', async () => {
    await e.hs.redact(ADMIN, p.room, m1)
    await e.until(() => e.daemon.callsOf('remoteDelete').find(c => c.params.targetTimestamp === m1Signal), 'the deletion on Signal')
    await waitWa(s => s.content.delete?.id === m1Wa, 'the deletion on WhatsApp')
    e.daemon.push(SIGNAL_RELAY.number!, remoteDelete(BOB, p.signalGroup, s1.timestamp))
    await e.hs.waitForEvent(p.room, ev => ev.type === 'm.room.redaction' && ((ev.content as any).redacts ?? ev.redacts) === s1.ghostEvent)
  })

  it('typing and read receipts from both groups show on the ghosts in the encrypted room, in the clear as Matrix sends them', async () => {
    e.daemon.push(SIGNAL_RELAY.number!, typing(BOB, p.signalGroup, 'STARTED'))
    await e.hs.waitFor(() => e.hs.typingIn(p.room).includes(BOB_GHOST), { what: 'Bob\'s ghost to be typing' })
    e.daemon.push(SIGNAL_RELAY.number!, typing(BOB, p.signalGroup, 'STOPPED'))
    await e.hs.waitFor(() => !e.hs.typingIn(p.room).includes(BOB_GHOST), { what: 'Bob\'s ghost to stop typing' })
    // WhatsApp sends presence only once the bridge has subscribed to the group's (on its messages).
    await e.until(() => e.wa<boolean>('typing', { chat: p.whatsappGroup, from: DAVE, state: 'composing' }), 'Dave typing to reach the bridge')
    await e.hs.waitFor(() => e.hs.typingIn(p.room).includes(DAVE_GHOST), { what: 'Dave\'s ghost to be typing' })

    const read = await admin.send(p.room, 'are you reading?')
    const onSignal = await waitSignal(x => x.message === 'Admin (Matrix): are you reading?', 'the message to read')
    e.daemon.push(SIGNAL_RELAY.number!, receipt(BOB, [timestampOf(onSignal)], 'read'))
    await e.hs.waitFor(() => e.hs.receiptsIn(p.room)[BOB_GHOST]?.eventId === read, { what: 'Bob\'s read receipt on the encrypted message' })
  })

  it('SIGKILLed: messages sent to the room meanwhile, under a room key sent while it was down, are relayed after the restart; its device keys and the ghosts\' are the same', async () => {
    const keysBefore = botDevices()
    const bobBefore = devicesOf(BOB_GHOST)
    expect(bobBefore).toHaveLength(1)
    const bobIdentity = structuredClone(e.hs.e2ee.crossSigning.get(BOB_GHOST))
    expect(bobIdentity?.master).toBeDefined()
    const bobEarlier = e.hs.timeline(p.room).filter(x => x.sender === BOB_GHOST && x.type === 'm.room.encrypted').at(-1)!
    expect(keysBefore).toHaveLength(1)
    expect(Object.keys(keysBefore[0]!.keys ?? {}).sort()).toEqual([`curve25519:${keysBefore[0]!.deviceId}`, `ed25519:${keysBefore[0]!.deviceId}`])
    const sessionOf = (id: string) => (e.hs.timeline(p.room).find(x => x.event_id === id)!.content as { session_id: string }).session_id
    const sessionsBefore = new Set(e.hs.timeline(p.room).filter(x => x.sender === ADMIN && x.type === 'm.room.encrypted').map(x => sessionOf(x.event_id)))
    await e.kill('SIGKILL')
    const killedAt = Date.now()
    const deliveredAtKill = e.hs.delivered.length
    // The admin's laptop is logged out meanwhile, so the phone starts a new room key that only a transaction can bring.
    await laptop.logout()
    const down = [await admin.send(p.room, 'while you were down 1'), await admin.send(p.room, 'while you were down 2')]
    for (const id of down) expect(sessionsBefore.has(sessionOf(id))).toBe(false)
    const keysWhileDown = e.hs.e2ee.sentToDevice.filter(m => m.to_user_id === e.hs.botUserId && m.sender === ADMIN && m.at >= killedAt)
    expect(keysWhileDown.length).toBeGreaterThan(0)

    await e.start()
    await waitSignal(x => x.message === 'Admin (Matrix): while you were down 2', 'the second message sent while down')
    expect(signalSends(x => /while you were down/.test(x.message ?? '')).map(c => c.params.message)).toEqual(['Admin (Matrix): while you were down 1', 'Admin (Matrix): while you were down 2'])
    await e.waitForWaSent(s => s.filter(x => /while you were down/.test(x.content.text ?? '')).length === 2, 'both messages sent while down')
    // The room keys came in transactions the restarted process took.
    const toDeviceOf = (body: object) => Object.entries(body).filter(([k]) => k.endsWith('to_device')).flatMap(([, v]) => v as { sender: string; content: unknown }[])
    const deliveredAfter = new Set(e.hs.delivered.slice(deliveredAtKill).flatMap(t => toDeviceOf(t.body)).map(m => JSON.stringify(m.content)))
    for (const m of keysWhileDown) expect(deliveredAfter.has(JSON.stringify(m.content))).toBe(true)
    expect(botDevices()).toEqual(keysBefore)
    // And the restarted bridge still encrypts for the room with the same device.
    e.daemon.push(SIGNAL_RELAY.number!, groupText(BOB, p.signalGroup, 'welcome back'))
    const back = await waitMatrix(ev => ev.content.body === 'welcome back', 'Bob\'s message after the restart')
    // Bob's ghost speaks from the device it had, under the identity it had; what it said before still opens, from
    // a device its owner signed.
    expect(devicesOf(BOB_GHOST)).toEqual(bobBefore)
    expect(e.hs.e2ee.crossSigning.get(BOB_GHOST)).toEqual(bobIdentity)
    expect((e.hs.timeline(p.room).find(x => x.event_id === back.event_id)!.content as { device_id?: string }).device_id).toBe(bobBefore[0]!.deviceId)
    expect(await admin.read(bobEarlier)).toMatchObject({ kind: 'decrypted', senderDevice: bobBefore[0]!.deviceId })
    await admin.crypto.trackUsers([BOB_GHOST])
    expect(await admin.crypto.isCrossSignedByOwner(BOB_GHOST, bobBefore[0]!.deviceId)).toBe(true)
  })
})
