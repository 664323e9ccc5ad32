// WhatsApp and Matrix (and Signal) through the whole bridge: the real WhatsAppNetwork against the fake
// socket, the real bridge against the fake homeserver. Each kind of content both ways, and replies,
// edits, revokes and reactions landing on the right copies.
import { proto } from '@whiskeysockets/baileys'
import { afterEach, describe, expect, it } from 'vitest'
import type { FakeEvent } from '../fakes/homeserver.ts'
import { groupText } from '../fakes/signal-envelopes.ts'
import { ALICE } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { SIG_BOB, SIG_RELAY, WA_DAVE, WA_ERIN, bridgedRoom, realScenario, until, type RealScenario } from '../support/networks.ts'
import { content, settled, upload } from '../support/relay.ts'

const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489', 'hex')
const { ProtocolMessage } = proto.Message

describe.each(DB_KINDS)('WhatsApp through the bridge on %s', kind => {
  let s: RealScenario
  afterEach(async () => s?.stop())

  async function setup(withSignal = false, reactions: 'message' | 'emoji' = 'message') {
    s = await realScenario(kind, { configure: raw => { raw.bridge.relay.reactions = reactions } })
    const r = await bridgedRoom(s, { signal: withSignal, whatsapp: true })
    return { room: r.room, group: r.whatsappGroup!, signalGroup: r.signalGroup }
  }
  const said = (room: string, match: (e: FakeEvent) => boolean) => s.hs.waitForEvent(room, match)
  const ghostMessages = (room: string) => s.hs.timeline(room).filter(e => e.sender.startsWith('@whatsapp_') && e.type === 'm.room.message')
  /** What the relay sent to the group, after `from`. */
  const sentTo = (group: string, from = 0) => s.wa.sent.slice(from).filter(m => m.jid === group)
  /** A Signal message from Bob, in Matrix and as the relay's copy on WhatsApp. */
  async function bobSays(room: string, group: string, signalGroup: string, text: string) {
    const env = groupText(SIG_BOB, signalGroup, text)
    s.daemon.push(SIG_RELAY.number, env)
    const event = await said(room, e => content(e).body === text)
    const copy = await until(() => sentTo(group).find(m => String(m.content.text).endsWith(text)))
    await settled(s) // the copy is recorded once the socket has answered
    return { timestamp: env.timestamp as number, event, copy }
  }
  /** Dave's reaction to the relay's copy, as rc14 presents it: the target key turned to the bridge's view (fromMe), and
   * a removal as an empty text (baileys.md §1, §2). */
  const daveReacts = (group: string, copyId: string, text: string) => s.wa.deliver({
    chat: group, from: WA_DAVE, pushName: 'Dave',
    message: { reactionMessage: { key: { remoteJid: group, fromMe: true, id: copyId, participant: `${s.wa.account.lid}@lid` }, text, senderTimestampMs: Date.now() } },
  })
  const redactionOf = (event: string) => (e: FakeEvent) => e.type === 'm.room.redaction' && (e.redacts ?? content(e).redacts) === event

  it('a WhatsApp message appears in Matrix as the sender’s ghost under their push name, with formatting and a mention', async () => {
    const { room, group } = await setup()
    s.wa.deliver({ chat: group, from: WA_ERIN, pushName: 'Erin', message: { conversation: 'hello' } })
    await said(room, e => content(e).body === 'hello')
    s.wa.deliver({ chat: group, from: WA_DAVE, pushName: 'Dave', message: { extendedTextMessage: { text: 'hi @201000000000043, *really* _soon_', contextInfo: { mentionedJid: [WA_ERIN.lid] } } } })
    const ev = await said(room, e => String(content(e).body).startsWith('hi '))
    expect(s.hs.profile(ev.sender)?.displayname).toBe('Dave (WhatsApp)')
    expect(ev.sender).not.toContain('15550100042') // no phone number in the ghost id
    expect(content(ev).body).toBe('hi @Erin, really soon')
    expect(content(ev).formatted_body).toMatch(/<strong>really<\/strong> <em>soon<\/em>/)
    expect(content(ev)['m.mentions']?.user_ids).toHaveLength(1)
  })

  it('a WhatsApp user’s quoted reply to a Matrix message arrives in Matrix as a reply to the original event', async () => {
    const { room, group } = await setup()
    const original = await s.hs.sendMessage(ALICE, room, 'dinner at 8?')
    const copy = await until(() => sentTo(group)[0])
    await settled(s)
    s.wa.deliver({
      chat: group, from: WA_DAVE, pushName: 'Dave',
      message: { extendedTextMessage: { text: 'yes!', contextInfo: { stanzaId: copy.id, participant: `${s.wa.account.lid}@lid`, quotedMessage: { conversation: '*Alice (Matrix)*: dinner at 8?' } } } },
    })
    const reply = await said(room, e => content(e).body === 'yes!')
    expect(content(reply)['m.relates_to']).toEqual({ 'm.in_reply_to': { event_id: original } })
  })

  it('a WhatsApp edit replaces the ghost’s message, a reaction annotates it, a revoke redacts it', async () => {
    const { room, group } = await setup()
    const msg = s.wa.deliver({ chat: group, from: WA_DAVE, pushName: 'Dave', message: { conversation: 'helo' } })
    const ev = await said(room, e => content(e).body === 'helo')
    s.wa.deliver({ chat: group, from: WA_DAVE, pushName: 'Dave', message: { protocolMessage: { type: ProtocolMessage.Type.MESSAGE_EDIT, key: msg.key, editedMessage: { conversation: 'hello' } } } })
    const edit = await said(room, e => content(e)['m.relates_to']?.rel_type === 'm.replace')
    expect(content(edit)['m.relates_to'].event_id).toBe(ev.event_id)
    expect(content(edit)['m.new_content'].body).toBe('hello')
    s.wa.deliver({ chat: group, from: WA_ERIN, pushName: 'Erin', message: { reactionMessage: { key: msg.key, text: '😂', senderTimestampMs: Date.now() } } })
    const r = await said(room, e => e.type === 'm.reaction')
    expect(content(r)['m.relates_to']).toEqual({ rel_type: 'm.annotation', event_id: ev.event_id, key: '😂' })
    s.wa.deliver({ chat: group, from: WA_DAVE, pushName: 'Dave', message: { protocolMessage: { type: ProtocolMessage.Type.REVOKE, key: msg.key } } })
    await said(room, e => e.type === 'm.room.redaction' && (e.redacts ?? content(e).redacts) === ev.event_id)
  })

  it('a WhatsApp photo with a caption arrives in Matrix as an image with its bytes; a message that failed to decrypt does not', async () => {
    const { room, group } = await setup()
    const media = await s.wa.uploadMedia(PNG, 'image')
    s.wa.undecryptable({ chat: group, from: WA_DAVE, pushName: 'Dave' })
    s.wa.deliver({ chat: group, from: WA_DAVE, pushName: 'Dave', message: { imageMessage: { ...media, mimetype: 'image/png', caption: 'our cat', width: 1, height: 1 } } })
    const image = await said(room, e => content(e).msgtype === 'm.image')
    expect(s.hs.media(content(image).url)?.data.equals(PNG)).toBe(true)
    await settled(s)
    expect(ghostMessages(room).map(e => content(e).msgtype === 'm.image' ? 'image' : content(e).body)).toEqual(expect.arrayContaining(['image']))
    expect(ghostMessages(room).some(e => content(e).body === '')).toBe(false)
  })

  it('a Matrix message reaches the WhatsApp group with the sender in bold; a reply quotes the WhatsApp original; edit, redaction and reaction hit the relay’s copy', async () => {
    const { room, group } = await setup()
    const daves = s.wa.deliver({ chat: group, from: WA_DAVE, pushName: 'Dave', message: { conversation: 'who is coming?' } })
    const daveEvent = await said(room, e => content(e).body === 'who is coming?')
    const mine = await s.hs.sendMessage(ALICE, room, { msgtype: 'm.text', body: 'me', format: 'org.matrix.custom.html', formatted_body: '<em>me</em>', 'm.relates_to': { 'm.in_reply_to': { event_id: daveEvent.event_id } } })
    const reply = await until(() => sentTo(group)[0])
    expect(reply.content.text).toBe('*Alice (Matrix)*: _me_')
    expect(reply.options.quotedId).toBe(daves.key.id)
    await s.hs.sendMessage(ALICE, room, { msgtype: 'm.text', body: '* me too', 'm.new_content': { msgtype: 'm.text', body: 'me too' }, 'm.relates_to': { rel_type: 'm.replace', event_id: mine } })
    const edit = await until(() => sentTo(group)[1])
    expect(edit.content).toMatchObject({ text: '*Alice (Matrix)*: me too', edit: { id: reply.id, fromMe: true } })
    await s.hs.redact(ALICE, room, mine)
    const revoke = await until(() => sentTo(group)[2])
    expect(revoke.content).toMatchObject({ delete: { id: reply.id, fromMe: true } })
    await s.hs.sendEvent(ALICE, room, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: daveEvent.event_id, key: '👍' } })
    // `reactions: message`: the relay says it in a short message quoting Dave's.
    const note = await until(() => sentTo(group)[3])
    expect(note.content.text).toContain('👍')
    expect(note.options.quotedId).toBe(daves.key.id)
  })

  it('a Matrix image goes to WhatsApp as an image message with its caption', async () => {
    const { room, group } = await setup()
    const mxc = await upload(s, PNG, 'image/png', 'cat.png')
    await s.hs.sendMessage(ALICE, room, { msgtype: 'm.image', body: 'our cat', filename: 'cat.png', url: mxc, info: { mimetype: 'image/png', size: PNG.length } })
    const sent = await until(() => sentTo(group)[0])
    expect(sent.message.message?.imageMessage).toMatchObject({ mimetype: 'image/png', caption: '*Alice (Matrix)*: our cat' })
  })

  it('a WhatsApp user’s reply to a Signal user’s message arrives on Signal as a quote of the Signal original', async () => {
    const { room, group, signalGroup } = await setup(true)
    const bobs = groupText(SIG_BOB, signalGroup!, 'who brings cake?')
    s.daemon.push(SIG_RELAY.number, bobs)
    const relayCopy = await until(() => sentTo(group)[0])
    expect(relayCopy.content.text).toBe('*Bob (Signal)*: who brings cake?')
    await settled(s)
    s.wa.deliver({
      chat: group, from: WA_DAVE, pushName: 'Dave',
      message: { extendedTextMessage: { text: 'I do', contextInfo: { stanzaId: relayCopy.id, participant: `${s.wa.account.lid}@lid`, quotedMessage: { conversation: String(relayCopy.content.text) } } } },
    })
    const onSignal = await s.daemon.waitForCall('send', c => String(c.params.message).endsWith('I do'))
    expect(onSignal.params).toMatchObject({ groupId: signalGroup, message: 'Dave (WhatsApp): I do', quoteTimestamp: bobs.timestamp, quoteAuthor: SIG_BOB.aci })
    await said(room, e => content(e).body === 'I do')
  })

  it('a Signal user’s quote of the relay’s copy of a Matrix message arrives on WhatsApp quoting the relay’s WhatsApp copy', async () => {
    const { group, room, signalGroup } = await setup(true)
    await s.hs.sendMessage(ALICE, room, 'pizza tonight')
    const toSignal = await s.daemon.waitForCall('send')
    const toWhatsApp = await until(() => sentTo(group)[0])
    await settled(s)
    const stamp = (toSignal.result as { timestamp: number }).timestamp
    s.daemon.push(SIG_RELAY.number, groupText(SIG_BOB, signalGroup!, 'yum', { quote: { author: { ...SIG_RELAY }, id: stamp, text: 'Alice (Matrix): pizza tonight' } }))
    const quoted = await until(() => sentTo(group).find(m => String(m.content.text).endsWith('yum')))
    expect(quoted.content.text).toBe('*Bob (Signal)*: yum')
    expect(quoted.options.quotedId).toBe(toWhatsApp.id)
  })

  it('a WhatsApp reaction removed (an empty text, with rc14’s messages.reaction twin) redacts the ghost’s reaction in Matrix and deletes the relay’s line on Signal, once', async () => {
    const { room, group, signalGroup } = await setup(true)
    const bob = await bobSays(room, group, signalGroup!, 'I got the job')
    daveReacts(group, bob.copy.id, '🎉')
    const r = await said(room, e => e.type === 'm.reaction')
    expect(content(r)['m.relates_to']).toEqual({ rel_type: 'm.annotation', event_id: bob.event.event_id, key: '🎉' })
    const note = await s.daemon.waitForCall('send', c => String(c.params.message).includes('reacted'))
    expect(note.params).toMatchObject({ groupId: signalGroup, message: 'Dave (WhatsApp) reacted 🎉', quoteTimestamp: bob.timestamp, quoteAuthor: SIG_BOB.aci })
    await settled(s)
    daveReacts(group, bob.copy.id, '')
    const red = await said(room, redactionOf(r.event_id))
    expect(red.sender).toBe(r.sender)
    const del = await s.daemon.waitForCall('remoteDelete')
    expect(del.params).toMatchObject({ groupId: signalGroup, targetTimestamp: (note.result as { timestamp: number }).timestamp })
    // A later message marks the end: neither twin was relayed a second time.
    s.wa.deliver({ chat: group, from: WA_DAVE, pushName: 'Dave', message: { conversation: 'marker' } })
    await s.daemon.waitForCall('send', c => String(c.params.message).endsWith('marker'))
    await settled(s)
    expect(s.daemon.callsOf('send').filter(c => String(c.params.message).includes('reacted'))).toHaveLength(1)
    expect(s.daemon.callsOf('remoteDelete')).toHaveLength(1)
    expect(s.hs.timeline(room).filter(e => e.type === 'm.reaction' || e.type === 'm.room.redaction')).toHaveLength(2)
  })

  it('with reactions as emoji, a WhatsApp reaction changed, then removed, moves the relay’s one reaction on Signal and the ghost’s in Matrix; a Matrix reaction’s redaction reaches WhatsApp as an empty react', async () => {
    const { room, group, signalGroup } = await setup(true, 'emoji')
    const bob = await bobSays(room, group, signalGroup!, 'which cake?')
    const onSignal = (n: number) => s.daemon.until(() => s.daemon.callsOf('sendReaction').length >= n)
    daveReacts(group, bob.copy.id, '👍')
    const thumbs = await said(room, e => e.type === 'm.reaction')
    await onSignal(1)
    daveReacts(group, bob.copy.id, '❤️')
    const heart = await said(room, e => e.type === 'm.reaction' && content(e)['m.relates_to']?.key === '❤️')
    await said(room, redactionOf(thumbs.event_id))
    await onSignal(2)
    daveReacts(group, bob.copy.id, '')
    await said(room, redactionOf(heart.event_id))
    await onSignal(3)
    // Alice's reaction in Matrix is the relay's on both groups; her redaction takes it away on both.
    const mine = await s.hs.sendEvent(ALICE, room, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: bob.event.event_id, key: '👀' } })
    const reacts = () => sentTo(group).filter(m => m.content.react)
    await until(() => reacts()[0])
    await s.hs.redact(ALICE, room, mine)
    await until(() => reacts()[1])
    await onSignal(5)
    await settled(s)
    expect(reacts().map(m => m.content.react)).toMatchObject([
      { text: '👀', key: { id: bob.copy.id, fromMe: true } },
      { text: '', key: { id: bob.copy.id, fromMe: true } },
    ])
    const calls = s.daemon.callsOf('sendReaction').map(c => c.params)
    expect(calls.map(c => [c.emoji, c.remove])).toEqual([['👍', false], ['❤️', false], ['❤️', true], ['👀', false], ['👀', true]])
    for (const c of calls) expect(c).toMatchObject({ groupId: signalGroup, targetAuthor: SIG_BOB.aci, targetTimestamp: bob.timestamp })
  })
})
