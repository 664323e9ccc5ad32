// Matrix people's typing and read receipts reach the bridge in transactions (`ephemeral`). Through the relay they
// never go (it would look like the relay was typing and reading); a person with their own login in a group has
// theirs carried there through that login, as themselves (issue 15, item 5).
import { afterEach, describe, expect, it } from 'vitest'
import { groupText } from '../fakes/signal-envelopes.ts'
import { ALICE } from '../support/bridge.ts'
import { SIG_BOB, SIG_RELAY, WA_DAVE, bridgedRoom, personalLogins, realScenario, until, type RealScenario } from '../support/networks.ts'
import { content } from '../support/relay.ts'
import { matrixEphemeralOf } from '../../src/matrix/ephemeral.ts'

const CAROL = '@carol:example.org'
const CAROL_SIGNAL = { number: '+15550100009', aci: '0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f', name: 'Carol' }
const CAROL_WHATSAPP = { pn: '15550100077', lid: '201000000000077', name: 'Carol' }

describe('Matrix typing and read receipts', () => {
  let s: RealScenario
  afterEach(async () => s?.stop())

  it('are accepted and counted, and never become a typing, read or presence call to Signal or WhatsApp', async () => {
    s = await realScenario('pglite', { configure: raw => { raw.metrics.enabled = true } })
    const { room, signalGroup, whatsappGroup } = await bridgedRoom(s, { signal: true, whatsapp: true })
    s.daemon.push(SIG_RELAY.number, groupText(SIG_BOB, signalGroup!, 'from Bob'))
    const bobs = await s.hs.waitForEvent(room, e => content(e).body === 'from Bob')
    s.wa.deliver({ chat: whatsappGroup!, from: WA_DAVE, pushName: 'Dave', message: { conversation: 'from Dave' } })
    const daves = await s.hs.waitForEvent(room, e => content(e).body === 'from Dave')

    s.hs.setTyping(ALICE, room, true)
    s.hs.markRead(ALICE, room, bobs.event_id)
    s.hs.markRead(ALICE, room, daves.event_id)
    s.hs.setTyping(ALICE, room, false)
    // The marker, sent after: once it is in both groups, anything the ephemeral events caused would be too.
    await s.hs.sendMessage(ALICE, room, 'marker')
    await s.daemon.waitForCall('send', c => c.params['message'] === 'Alice (Matrix): marker')
    await until(() => s.wa.sent.some(m => m.jid === whatsappGroup && String(m.content['text']).endsWith('marker')), 'the marker on WhatsApp')

    expect(s.daemon.calls.filter(c => c.method === 'sendTyping' || c.method === 'sendReceipt').map(c => c.method)).toEqual([])
    expect(s.wa.presenceSent).toEqual([])
    expect(s.wa.reads).toEqual([])
    const metrics = await (await fetch(`http://127.0.0.1:${s.bridge.metricsPort}/metrics`)).text()
    const counted = (type: string) => Number(new RegExp(`relay_bridge_matrix_ephemeral_total\\{type="${type}",outcome="not_relayed"\\} (\\d+)`).exec(metrics)?.[1] ?? 0)
    // A transaction the homeserver retried is counted again: at least what was sent.
    expect(counted('m.typing')).toBeGreaterThanOrEqual(2) // started, stopped
    expect(counted('m.receipt')).toBeGreaterThanOrEqual(2)
  })

  it('a person with their own logins types and reads in both groups as themselves, only through them; nobody else does', async () => {
    s = await realScenario('pglite')
    const { room, signalGroup, whatsappGroup } = await bridgedRoom(s, { signal: true, whatsapp: true })
    s.hs.createUser(CAROL, { displayname: 'Carol' })
    await s.hs.invite(ALICE, room, CAROL)
    await s.hs.join(CAROL, room)
    const { wa } = await personalLogins(s, CAROL, { signal: CAROL_SIGNAL, signalGroup, whatsapp: CAROL_WHATSAPP, whatsappGroup })
    if (!wa) throw new Error('no WhatsApp account for Carol')
    const bobsEnvelope = groupText(SIG_BOB, signalGroup!, 'from Bob')
    s.daemon.push(SIG_RELAY.number, bobsEnvelope)
    s.daemon.push(CAROL_SIGNAL.number, bobsEnvelope) // her account is in the group too: the same message
    const bobs = await s.hs.waitForEvent(room, e => content(e).body === 'from Bob')
    const bobsOnWhatsApp = await until(() => s.wa.sent.find(m => m.jid === whatsappGroup && String(m.content['text']).endsWith('from Bob')), 'Bob\'s message on WhatsApp')
    const daves = s.wa.deliver({ chat: whatsappGroup!, from: WA_DAVE, pushName: 'Dave', message: { conversation: 'from Dave' } })
    const davesEvent = await s.hs.waitForEvent(room, e => content(e).body === 'from Dave')
    const davesOnSignal = await s.daemon.waitForCall('send', c => c.params['account'] === SIG_RELAY.number && String(c.params['message']).endsWith('from Dave'))
    const notice = s.hs.timeline(room).find(e => e.sender === s.hs.botUserId && content(e).msgtype === 'm.notice')

    // Alice has no login of her own: hers go nowhere, before and after Carol's.
    s.hs.setTyping(ALICE, room, true)
    s.hs.markRead(ALICE, room, bobs.event_id)
    s.hs.setTyping(CAROL, room, true)
    await s.daemon.waitForCall('sendTyping')
    await until(() => s.wa.presenceSent.length > 0, 'Carol typing on WhatsApp')
    s.hs.setTyping(CAROL, room, false)
    s.hs.markRead(CAROL, room, bobs.event_id)
    s.hs.markRead(CAROL, room, davesEvent.event_id)
    if (notice) s.hs.markRead(CAROL, room, notice.event_id) // the bot's notice has no copy anywhere: nothing
    s.hs.setTyping(ALICE, room, false)
    await until(() => s.daemon.callsOf('sendReceipt').length === 2 && s.wa.reads.length === 2, 'Carol\'s receipts in both groups')

    const typing = s.daemon.callsOf('sendTyping').map(c => c.params)
    expect(typing).toEqual([{ account: CAROL_SIGNAL.number, groupId: signalGroup }, { account: CAROL_SIGNAL.number, groupId: signalGroup, stop: true }])
    expect(s.wa.presenceSent).toEqual([{ by: wa.pn, type: 'composing', jid: whatsappGroup }, { by: wa.pn, type: 'paused', jid: whatsappGroup }])
    // Receipts go to each message's author there: Bob himself on Signal, the relay for its copy of Dave's.
    expect(s.daemon.callsOf('sendReceipt').map(c => c.params)).toEqual([
      { account: CAROL_SIGNAL.number, recipient: SIG_BOB.aci, targetTimestamp: bobsEnvelope.timestamp, type: 'read' },
      { account: CAROL_SIGNAL.number, recipient: SIG_RELAY.aci, targetTimestamp: (davesOnSignal.result as { timestamp: number }).timestamp, type: 'read' },
    ])
    expect(s.wa.reads).toEqual([
      { by: wa.pn, keys: [{ remoteJid: whatsappGroup, id: bobsOnWhatsApp.id, fromMe: false, participant: `${s.wa.account.lid}@lid` }] },
      { by: wa.pn, keys: [{ remoteJid: whatsappGroup, id: daves.key.id, fromMe: false, participant: WA_DAVE.lid }] },
    ])

    // Her own message, read by her, is nobody's news; a later marker proves it stayed so.
    const mine = await s.hs.sendMessage(CAROL, room, 'mine')
    await s.daemon.waitForCall('send', c => c.params['account'] === CAROL_SIGNAL.number && c.params['message'] === 'mine')
    s.hs.markRead(CAROL, room, mine)
    s.hs.setTyping(CAROL, room, true)
    await until(() => s.daemon.callsOf('sendTyping').length === 3, 'the marker (Carol typing again)')
    expect(s.daemon.callsOf('sendReceipt')).toHaveLength(2)
    expect(s.wa.reads).toHaveLength(2)
  })
})

describe('what a Matrix ephemeral event says', () => {
  it('a private read receipt, presence and anything malformed say nothing to carry anywhere', () => {
    const room = '!r:example.org'
    expect(matrixEphemeralOf({ type: 'm.receipt', room_id: room, content: { $e1: { 'm.read.private': { [CAROL]: { ts: 1 } } } } })).toEqual([])
    expect(matrixEphemeralOf({ type: 'm.receipt', room_id: room, content: { $e1: { 'm.read': { [CAROL]: { ts: 1 } }, 'm.read.private': { [ALICE]: { ts: 1 } } } } }))
      .toEqual([{ kind: 'read', roomId: room, userId: CAROL, eventId: '$e1' }])
    expect(matrixEphemeralOf({ type: 'm.presence', sender: CAROL, content: { presence: 'online' } })).toEqual([])
    expect(matrixEphemeralOf({ type: 'm.typing', room_id: room, content: { user_ids: [CAROL, 7] } })).toEqual([{ kind: 'typing', roomId: room, userIds: [CAROL] }])
    expect(matrixEphemeralOf({ type: 'm.typing', content: { user_ids: [CAROL] } })).toEqual([])
    expect(matrixEphemeralOf(null)).toEqual([])
  })
})
