// The story of issue 15 (item 7), through the whole bridge with the real adapters and the fakes: Carol (Matrix, with
// her own Signal and WhatsApp accounts), Dave (Matrix, with his own WhatsApp account), Alice (only on Signal) and Bob
// (only on WhatsApp). Who appears as whom on each network, for text, a reply, an edit, a deletion, a reaction and an
// image, in both directions; then a restart; then Carol's WhatsApp account logged out on her phone: her messages
// reach WhatsApp through the relay under her name, and she is told once.
import { afterEach, describe, expect, it } from 'vitest'
import { buildDoublePuppetRegistration } from '../../src/registration.ts'
import type { FakeEvent } from '../fakes/homeserver.ts'
import { groupText, reaction, syncSent } from '../fakes/signal-envelopes.ts'
import { DB_KINDS } from '../support/db.ts'
import { SIG_RELAY, bridgedRoom, personalLogins, realScenario, until, type RealScenario } from '../support/networks.ts'
import { content, upload } from '../support/relay.ts'

const OPERATOR = '@operator:example.org'
const CAROL = '@carol:example.org'
const DAVE = '@dave:example.org'
const ALICE_ON_SIGNAL = { number: '+15550100031', aci: '7d3e1f20-5a4b-4c3d-9e2f-1a0b9c8d7e6f', name: 'Alice' }
const BOB_ON_WHATSAPP = { lid: '201000000000051@lid', pn: '15550100051@s.whatsapp.net' }
const CAROL_SIGNAL = { number: '+15550100009', aci: '0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f', name: 'Carol' }
const CAROL_WHATSAPP = { pn: '15550100077', lid: '201000000000077', name: 'Carol' }
const DAVE_WHATSAPP = { pn: '15550100088', lid: '201000000000088', name: 'Dave' }
const DOUBLE_PUPPET = { as_token: 'dp-as-token-for-tests-0123456789abcdef', hs_token: 'dp-hs-token-for-tests-0123456789abcdef' }
const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489', 'hex')

describe.each(DB_KINDS)('four people, two networks, one room, on %s', kind => {
  let s: RealScenario
  afterEach(async () => s?.stop())

  it('each person appears as themselves everywhere they have an account, and through the relay elsewhere; across a restart and a logout', async () => {
    s = await realScenario(kind, { configure: raw => { raw.appservice.double_puppet = DOUBLE_PUPPET } })
    s.hs.addRegistration(buildDoublePuppetRegistration(s.config))
    const { room, signalGroup, whatsappGroup } = await bridgedRoom(s, { signal: true, whatsapp: true, owner: OPERATOR })
    const sg = signalGroup!
    const wg = whatsappGroup!
    s.daemon.groups.get(sg)!.members.push({ number: ALICE_ON_SIGNAL.number, uuid: ALICE_ON_SIGNAL.aci })
    s.wa.addMember(wg, BOB_ON_WHATSAPP)
    for (const [who, name] of [[CAROL, 'Carol'], [DAVE, 'Dave']] as const) {
      s.hs.createUser(who, { displayname: name })
      await s.hs.invite(OPERATOR, room, who)
      await s.hs.join(who, room)
    }
    const carol = await personalLogins(s, CAROL, { signal: CAROL_SIGNAL, signalGroup: sg, whatsapp: CAROL_WHATSAPP, whatsappGroup: wg })
    const dave = await personalLogins(s, DAVE, { whatsapp: DAVE_WHATSAPP, whatsappGroup: wg })
    const relayWa = s.wa.account.pn

    const inRoom = (match: (e: FakeEvent) => boolean, what: string) => s.hs.waitFor(() => s.hs.timeline(room).find(match), { what })
    const onSignal = (match: (p: Record<string, unknown>) => boolean, method = 'send') => s.daemon.waitForCall(method, c => match(c.params))
    const onWhatsApp = (match: (m: (typeof s.wa.sent)[number]) => boolean, what: string) => until(() => s.wa.sent.find(m => m.jid === wg && match(m)), what)
    const textIs = (t: string) => (m: { content: Record<string, unknown> }) => m.content['text'] === t
    const sentTimestamp = (c: { result?: unknown }) => (c.result as { timestamp: number }).timestamp
    const ghostName = (e: FakeEvent) => s.hs.profile(e.sender)?.displayname

    // ---- text, Matrix → networks: as themselves where they have an account, else through the relay -------------
    await s.hs.sendMessage(CAROL, room, 'hello from Carol')
    const carolsOnSignal = await onSignal(p => p['message'] === 'hello from Carol')
    expect(carolsOnSignal.params['account']).toBe(CAROL_SIGNAL.number)
    const carolsOnWa = await onWhatsApp(textIs('hello from Carol'), 'Carol on WhatsApp')
    expect(carolsOnWa.by).toBe(CAROL_WHATSAPP.pn)
    await s.hs.sendMessage(DAVE, room, 'hello from Dave')
    const davesOnSignal = await onSignal(p => String(p['message']).endsWith('hello from Dave'))
    expect(davesOnSignal.params).toMatchObject({ account: SIG_RELAY.number, message: 'Dave (Matrix): hello from Dave' })
    expect((await onWhatsApp(textIs('hello from Dave'), 'Dave on WhatsApp')).by).toBe(DAVE_WHATSAPP.pn)

    // ---- text, networks → Matrix: ghosts for those without Matrix, themselves for those with it ------------------
    const alices = groupText(ALICE_ON_SIGNAL, sg, 'hello from Alice')
    s.daemon.push(SIG_RELAY.number, alices)
    s.daemon.push(CAROL_SIGNAL.number, alices) // Carol's account is in the group too: the same message
    const alicesEvent = await inRoom(e => content(e).body === 'hello from Alice', 'Alice in Matrix')
    expect(ghostName(alicesEvent)).toBe('Alice (Signal)')
    const alicesOnWa = await onWhatsApp(m => String(m.content['text']).endsWith('hello from Alice'), 'Alice on WhatsApp')
    expect(alicesOnWa).toMatchObject({ by: relayWa, content: { text: '*Alice (Signal)*: hello from Alice' } })
    const bobs = s.wa.deliver({ chat: wg, from: BOB_ON_WHATSAPP, pushName: 'Bob', message: { conversation: 'hello from Bob' } })
    const bobsEvent = await inRoom(e => content(e).body === 'hello from Bob', 'Bob in Matrix')
    expect(ghostName(bobsEvent)).toBe('Bob (WhatsApp)')
    expect((await onSignal(p => String(p['message']).endsWith('hello from Bob'))).params).toMatchObject({ account: SIG_RELAY.number, message: 'Bob (WhatsApp): hello from Bob' })
    // What Carol types on her Signal phone is Carol in Matrix and Carol on WhatsApp; Dave's on his WhatsApp phone is Dave.
    const typed = groupText(CAROL_SIGNAL, sg, 'typed on my phone')
    s.daemon.push(SIG_RELAY.number, typed)
    s.daemon.push(CAROL_SIGNAL.number, syncSent(CAROL_SIGNAL, sg, 'typed on my phone', { timestamp: typed.timestamp as number }))
    expect((await inRoom(e => content(e).body === 'typed on my phone', 'Carol\'s phone message in Matrix')).sender).toBe(CAROL)
    expect((await onWhatsApp(textIs('typed on my phone'), 'Carol\'s phone message on WhatsApp')).by).toBe(CAROL_WHATSAPP.pn)
    s.wa.deliver({ chat: wg, from: 'phone', phoneOf: dave.wa!, pushName: 'Dave', message: { conversation: 'typed on Dave\'s phone' } })
    expect((await inRoom(e => content(e).body === 'typed on Dave\'s phone', 'Dave\'s phone message in Matrix')).sender).toBe(DAVE)
    expect((await onSignal(p => String(p['message']).endsWith('typed on Dave\'s phone'))).params).toMatchObject({ account: SIG_RELAY.number, message: 'Dave (Matrix): typed on Dave\'s phone' })

    // ---- a reply each way -----------------------------------------------------------------------------------------
    await s.hs.sendMessage(DAVE, room, { msgtype: 'm.text', body: 'reply to Alice', 'm.relates_to': { 'm.in_reply_to': { event_id: alicesEvent.event_id } } })
    expect(await onWhatsApp(textIs('reply to Alice'), 'Dave\'s reply on WhatsApp')).toMatchObject({ by: DAVE_WHATSAPP.pn, options: { quotedId: alicesOnWa.id } })
    expect((await onSignal(p => String(p['message']).endsWith('reply to Alice'))).params).toMatchObject({ account: SIG_RELAY.number, message: 'Dave (Matrix): reply to Alice', quoteTimestamp: alices.timestamp, quoteAuthor: ALICE_ON_SIGNAL.aci })
    s.wa.deliver({ chat: wg, from: BOB_ON_WHATSAPP, pushName: 'Bob', message: { extendedTextMessage: { text: 'reply to Carol', contextInfo: { stanzaId: carolsOnWa.id, participant: `${CAROL_WHATSAPP.lid}@lid`, quotedMessage: { conversation: 'hello from Carol' } } } } })
    const carolsEvent = await inRoom(e => content(e).body === 'hello from Carol', 'Carol\'s own event')
    const bobsReply = await inRoom(e => String(content(e).body).endsWith('reply to Carol'), 'Bob\'s reply in Matrix')
    expect(content(bobsReply)['m.relates_to']).toMatchObject({ 'm.in_reply_to': { event_id: carolsEvent.event_id } })
    expect((await onSignal(p => String(p['message']).endsWith('reply to Carol'))).params).toMatchObject({ account: SIG_RELAY.number, message: 'Bob (WhatsApp): reply to Carol', quoteTimestamp: sentTimestamp(carolsOnSignal), quoteAuthor: CAROL_SIGNAL.aci })

    // ---- an edit, a reaction, a deletion --------------------------------------------------------------------------
    await s.hs.sendMessage(CAROL, room, { msgtype: 'm.text', body: '* hello again from Carol', 'm.new_content': { msgtype: 'm.text', body: 'hello again from Carol' }, 'm.relates_to': { rel_type: 'm.replace', event_id: carolsEvent.event_id } })
    expect((await onSignal(p => p['message'] === 'hello again from Carol')).params).toMatchObject({ account: CAROL_SIGNAL.number, editTimestamp: sentTimestamp(carolsOnSignal) })
    expect(await onWhatsApp(m => m.content['text'] === 'hello again from Carol', 'Carol\'s edit on WhatsApp')).toMatchObject({ by: CAROL_WHATSAPP.pn, content: { edit: { id: carolsOnWa.id } } })
    await s.hs.sendEvent(DAVE, room, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: bobsEvent.event_id, key: '👍' } })
    expect(await onWhatsApp(m => (m.content['react'] as { text?: string } | undefined)?.text === '👍', 'Dave\'s reaction on WhatsApp')).toMatchObject({ by: DAVE_WHATSAPP.pn, content: { react: { key: { id: bobs.key.id } } } })
    expect((await onSignal(p => String(p['message']).includes('👍'))).params['account']).toBe(SIG_RELAY.number) // a short line, as the relay
    s.daemon.push(SIG_RELAY.number, reaction(ALICE_ON_SIGNAL, sg, { emoji: '🎉', target: CAROL_SIGNAL, targetSentTimestamp: sentTimestamp(carolsOnSignal) }))
    const alicesReaction = await inRoom(e => e.type === 'm.reaction' && (content(e)['m.relates_to'] as { key?: string }).key === '🎉', 'Alice\'s reaction in Matrix')
    expect(ghostName(alicesReaction)).toBe('Alice (Signal)')
    expect(content(alicesReaction)['m.relates_to']).toMatchObject({ event_id: carolsEvent.event_id, key: '🎉' })
    expect(await onWhatsApp(m => String(m.content['text']).includes('🎉'), 'Alice\'s reaction on WhatsApp')).toMatchObject({ by: relayWa, options: { quotedId: carolsOnWa.id } })
    await s.hs.redact(CAROL, room, carolsEvent.event_id)
    expect((await onSignal(() => true, 'remoteDelete')).params).toMatchObject({ account: CAROL_SIGNAL.number, targetTimestamp: sentTimestamp(carolsOnSignal) })
    expect(await onWhatsApp(m => m.content['delete'] !== undefined, 'Carol\'s deletion on WhatsApp')).toMatchObject({ by: CAROL_WHATSAPP.pn, content: { delete: { id: carolsOnWa.id } } })

    // ---- an image each way ----------------------------------------------------------------------------------------
    const mxc = await upload(s, PNG, 'image/png', 'cat.png')
    await s.hs.sendMessage(DAVE, room, { msgtype: 'm.image', body: 'cat.png', url: mxc, info: { mimetype: 'image/png', size: PNG.length } })
    expect((await onWhatsApp(m => m.content['image'] !== undefined, 'Dave\'s picture on WhatsApp')).by).toBe(DAVE_WHATSAPP.pn)
    expect((await onSignal(p => p['attachments'] !== undefined)).params).toMatchObject({ account: SIG_RELAY.number, message: expect.stringMatching(/^Dave \(Matrix\):/) })
    const media = await s.wa.uploadMedia(PNG, 'image')
    s.wa.deliver({ chat: wg, from: BOB_ON_WHATSAPP, pushName: 'Bob', message: { imageMessage: { ...media, mimetype: 'image/png', width: 1, height: 1 } } })
    const bobsPicture = await inRoom(e => content(e).msgtype === 'm.image' && e.sender !== DAVE, 'Bob\'s picture in Matrix')
    expect(ghostName(bobsPicture)).toBe('Bob (WhatsApp)')
    await s.daemon.until(() => s.daemon.callsOf('send').filter(c => c.params['attachments'] !== undefined).length === 2)
    expect(s.daemon.callsOf('send').filter(c => c.params['attachments'] !== undefined)[1]!.params).toMatchObject({ account: SIG_RELAY.number, message: 'Bob (WhatsApp):' })

    // One person, not three: no ghost of Carol or Dave in the room (the one that stood for them before they linked
    // their own accounts has left), none ever spoke, and nothing arrived twice or came back to where it began.
    for (const ghost of [`@signal_${CAROL_SIGNAL.aci}:example.org`, `@whatsapp_${CAROL_WHATSAPP.lid}:example.org`, `@whatsapp_${DAVE_WHATSAPP.lid}:example.org`]) {
      await s.hs.waitFor(() => s.hs.membership(room, ghost) !== 'join', { what: `${ghost} to have left the room` })
      expect(s.hs.timeline(room).filter(e => e.sender === ghost && e.type === 'm.room.message')).toEqual([])
    }
    for (const text of ['hello from Carol', 'hello from Dave', 'hello from Alice', 'hello from Bob', 'typed on my phone', 'typed on Dave\'s phone']) {
      expect(s.hs.timeline(room).filter(e => content(e).body === text)).toHaveLength(text === 'hello from Carol' ? 0 : 1) // hers was deleted
      expect(s.wa.sent.filter(m => String(m.content['text']).endsWith(text))).toHaveLength(text.endsWith('Bob') || text.endsWith('Dave\'s phone') ? 0 : 1)
      expect(s.daemon.callsOf('send').filter(c => String(c.params['message']).endsWith(text))).toHaveLength(text.endsWith('Alice') || text.endsWith('my phone') ? 0 : 1)
    }

    // ---- a restart: the same people, the same ways ------------------------------------------------------------------
    await s.restart()
    await until(() => s.whatsappNet.state(carol.whatsappLogin!) === 'connected' && s.whatsappNet.state(dave.whatsappLogin!) === 'connected', 'the personal WhatsApp sessions back')
    await s.daemon.until(() => s.daemon.hasStream(CAROL_SIGNAL.number))
    await s.hs.sendMessage(CAROL, room, 'after the restart')
    expect((await onSignal(p => p['message'] === 'after the restart')).params['account']).toBe(CAROL_SIGNAL.number)
    expect((await onWhatsApp(textIs('after the restart'), 'Carol after the restart')).by).toBe(CAROL_WHATSAPP.pn)

    // ---- Carol's WhatsApp account logged out on her phone: the relay, under her name, and one notice ---------------
    s.wa.unlinkedLive(carol.wa!)
    await until(() => s.whatsappNet.state(carol.whatsappLogin!) === 'logged_out', 'Carol\'s WhatsApp login logged out')
    await s.hs.sendMessage(CAROL, room, 'after my logout')
    expect(await onWhatsApp(m => String(m.content['text']).endsWith('after my logout'), 'Carol through the relay')).toMatchObject({ by: relayWa, content: { text: '*Carol (Matrix)*: after my logout' } })
    expect((await onSignal(p => p['message'] === 'after my logout')).params['account']).toBe(CAROL_SIGNAL.number)
    await s.hs.sendMessage(CAROL, room, 'and again')
    await onWhatsApp(m => String(m.content['text']).endsWith('and again'), 'Carol through the relay again')
    const warnings = s.botNotices(room).filter(n => n.startsWith('⚠️'))
    expect(warnings).toEqual([expect.stringMatching(new RegExp(`^⚠️ Carol: your messages reach WhatsApp through the room's relay, under your name, because your own WhatsApp account \\(${carol.whatsappLogin}\\) is logged out`))])
  })
})
