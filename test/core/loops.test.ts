// No echo loops: with two portals and all three networks talking at once, and every network echoing back
// what the bridge sent, each group gets exactly the messages meant for it and Matrix exactly one event per
// remote message.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MemoryNetwork } from '../fakes/memory-network.ts'
import { ALICE, bridgedRoom, scenario, type Scenario } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { bodyOf, ghostEvents, settled, until } from '../support/relay.ts'

describe.each(DB_KINDS)('echoes on %s', kind => {
  let s: Scenario
  beforeAll(async () => {
    s = await scenario(kind)
  })
  afterAll(async () => s?.stop())

  /** Networks report the relay account's own sends back (Signal sync messages, WhatsApp fromMe upserts). */
  async function echoAll(net: MemoryNetwork): Promise<void> {
    const logins = await s.bridge.logins.list(net.network)
    for (const sent of [...net.sent]) {
      const login = logins.find(l => l.id === sent.delivery.target.loginId)!
      await net.inbound({
        kind: 'message', chat: { network: net.network, id: sent.delivery.target.chatId },
        sender: { network: net.network, id: login.personId, displayName: login.displayName },
        remoteId: sent.remoteId, timestamp: Date.now(), loginId: login.id,
        content: { kind: 'text', body: { text: sent.text, styles: [], links: [], mentions: [] }, attachments: [] },
      })
    }
  }

  it('two portals, three networks, messages in every direction: every group and room gets exactly what it should, once', async () => {
    const a = await bridgedRoom(s)
    const b = await bridgedRoom(s)
    await s.hs.sendMessage(ALICE, a.room, 'A from Matrix')
    await s.signal.say(a.sg.id, { id: 'aci-bob', name: 'Bob' }, 'A from Signal')
    await s.whatsapp.say(a.wg.id, { id: 'wa-dave', name: 'Dave' }, 'A from WhatsApp')
    await s.hs.sendMessage(ALICE, b.room, 'B from Matrix')
    await s.signal.say(b.sg.id, { id: 'aci-carol', name: 'Carol' }, 'B from Signal')
    await s.whatsapp.say(b.wg.id, { id: 'wa-erin', name: 'Erin' }, 'B from WhatsApp')
    await s.signal.waitFor(() => s.signal.sent.length >= 4, '4 sends')
    await s.whatsapp.waitFor(() => s.whatsapp.sent.length >= 4, '4 sends')
    await settled(s)
    // Every send comes back as an echo; the ghosts' events came back from the homeserver already.
    await echoAll(s.signal)
    await echoAll(s.whatsapp)
    await settled(s)

    // Messages from different networks race each other; within one chat the order is kept (delivery tests).
    expect(s.signal.sentTo(a.sg.id).map(x => x.text).sort()).toEqual(['Alice (Matrix): A from Matrix', 'Dave (WhatsApp): A from WhatsApp'])
    expect(s.whatsapp.sentTo(a.wg.id).map(x => x.text).sort()).toEqual(['Alice (Matrix): A from Matrix', 'Bob (Signal): A from Signal'])
    expect(s.signal.sentTo(b.sg.id).map(x => x.text).sort()).toEqual(['Alice (Matrix): B from Matrix', 'Erin (WhatsApp): B from WhatsApp'])
    expect(s.whatsapp.sentTo(b.wg.id).map(x => x.text).sort()).toEqual(['Alice (Matrix): B from Matrix', 'Carol (Signal): B from Signal'])
    expect(s.signal.sent).toHaveLength(4)
    expect(s.whatsapp.sent).toHaveLength(4)
    expect(ghostEvents(s, a.room).filter(e => e.type === 'm.room.message').map(bodyOf).sort()).toEqual(['A from Signal', 'A from WhatsApp'])
    expect(ghostEvents(s, b.room).filter(e => e.type === 'm.room.message').map(bodyOf).sort()).toEqual(['B from Signal', 'B from WhatsApp'])
    // The bot said nothing after the links: no error notices bouncing around.
    for (const room of [a.room, b.room]) expect(s.botNotices(room).filter(n => !n.startsWith('Linked'))).toEqual([])
  })

  it('edits, reactions and deletions echoed back are not relayed again either', async () => {
    const { room, sg, wg } = await bridgedRoom(s)
    const before = { sig: s.signal.sent.length, wa: s.whatsapp.sent.length }
    const bobMsg = await s.signal.say(sg.id, { id: 'aci-bob', name: 'Bob' }, 'original')
    const ghostMsg = await s.hs.waitForEvent(room, e => bodyOf(e) === 'original')
    await s.whatsapp.waitForSentTo(wg.id, 1)
    await settled(s)
    await s.signal.inbound({ kind: 'edit', chat: { network: 'signal', id: sg.id }, sender: { network: 'signal', id: 'aci-bob', displayName: 'Bob' }, remoteId: 'loop-edit', timestamp: Date.now(), target: bobMsg, content: { kind: 'text', body: { text: 'edited', styles: [], links: [], mentions: [] }, attachments: [] } })
    await s.hs.sendEvent(ALICE, room, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: ghostMsg.event_id, key: '👍' } })
    await s.whatsapp.waitForSentTo(wg.id, 3)
    await s.signal.waitForSentTo(sg.id, 1)
    await settled(s)
    await echoAll(s.signal)
    await echoAll(s.whatsapp)
    await settled(s)
    expect(s.signal.sent.length - before.sig).toBe(1) // Alice's reaction line
    expect(s.whatsapp.sent.length - before.wa).toBe(3) // the message, its edit, Alice's reaction line
    const ghostEdits = s.hs.timeline(room).filter(e => (e.content['m.relates_to'] as { rel_type?: string } | undefined)?.rel_type === 'm.replace')
    expect(ghostEdits).toHaveLength(1)
  })

  it('a message typed on the relay account\'s own phone is no echo: it is relayed as that account', async () => {
    const { room, sg, wg } = await bridgedRoom(s)
    const login = (await s.bridge.logins.list('signal'))[0]!
    await s.signal.inbound({
      kind: 'message', chat: { network: 'signal', id: sg.id }, sender: { network: 'signal', id: login.personId, displayName: 'Relay phone', viaRelayAccount: true },
      remoteId: 'typed-on-the-relay-phone', timestamp: Date.now(), loginId: login.id,
      content: { kind: 'text', body: { text: 'hello from the spare phone', styles: [], links: [], mentions: [] }, attachments: [] },
    })
    await s.hs.waitForEvent(room, e => bodyOf(e) === 'hello from the spare phone')
    const [wa] = await s.whatsapp.waitForSentTo(wg.id, 1)
    expect(wa!.text).toBe('Relay phone (Signal): hello from the spare phone')
  })
})

describe.each(DB_KINDS)('the echo race on %s', kind => {
  let s: Scenario
  beforeAll(async () => {
    // Synapse pushes a ghost's event as soon as it is stored, so its echo can be in the bridge before the answer
    // to the send that made it, and so before the outbox has recorded the copy's event id.
    s = await scenario(kind, { homeserver: { echoBeforeAnswer: true } })
    // A ghost's answer is also slow on its way back: it comes only once the bridge has worked through its inbox.
    // (Not the bot's: it answers commands from inside that work.)
    s.hs.holdSendAnswer = async ev => {
      if (ev.sender === s.hs.botUserId) return
      await until(async () => (await s.db.query<{ n: number }>('SELECT count(*)::int AS n FROM inbox WHERE processed_at IS NULL')).rows[0]!.n === 0,
        'the bridge to work through the echo of a ghost\'s send')
    }
  })
  afterAll(async () => s?.stop())

  it('a ghost\'s message whose echo arrives before the answer to its send is not relayed back to either group', async () => {
    const { room, sg, wg } = await bridgedRoom(s)
    await s.signal.say(sg.id, { id: 'aci-bob', name: 'Bob' }, 'hello from Signal')
    await s.whatsapp.say(wg.id, { id: 'wa-dave', name: 'Dave' }, 'hello from WhatsApp')
    await s.hs.waitFor(() => ghostEvents(s, room).filter(e => e.type === 'm.room.message').length === 2, { what: 'both ghosts\' messages' })
    // Markers sent after the echoes: each group's queue had the echo (if it was relayed) before its marker.
    await s.signal.say(sg.id, { id: 'aci-bob', name: 'Bob' }, 'marker from Signal')
    await s.whatsapp.say(wg.id, { id: 'wa-dave', name: 'Dave' }, 'marker from WhatsApp')
    await s.signal.waitFor(() => s.signal.sentTo(sg.id).some(x => x.text.endsWith('marker from WhatsApp')), 'the WhatsApp marker on Signal')
    await s.whatsapp.waitFor(() => s.whatsapp.sentTo(wg.id).some(x => x.text.endsWith('marker from Signal')), 'the Signal marker on WhatsApp')
    await settled(s)
    expect(s.signal.sentTo(sg.id).map(x => x.text)).toEqual(['Dave (WhatsApp): hello from WhatsApp', 'Dave (WhatsApp): marker from WhatsApp'])
    expect(s.whatsapp.sentTo(wg.id).map(x => x.text)).toEqual(['Bob (Signal): hello from Signal', 'Bob (Signal): marker from Signal'])
    expect(ghostEvents(s, room).filter(e => e.type === 'm.room.message').map(bodyOf)).toHaveLength(4)
  })
})
