// The core and the Matrix side, end to end through the fake homeserver and two in-memory networks.
import { afterEach, describe, expect, it } from 'vitest'
import { ALICE, bridgedRoom, scenario, type Scenario } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'

describe.each(DB_KINDS)('relaying on %s', kind => {
  let s: Scenario
  afterEach(async () => s?.stop())

  it('a Matrix message reaches both groups through their relays, with the sender named once, in bold', async () => {
    s = await scenario(kind)
    const { room, sg, wg } = await bridgedRoom(s)
    await s.hs.sendMessage(ALICE, room, { msgtype: 'm.text', body: 'hi all', format: 'org.matrix.custom.html', formatted_body: 'hi <b>all</b>' })
    const [toSignal] = await s.signal.waitForSent(1)
    const [toWhatsApp] = await s.whatsapp.waitForSent(1)
    expect(toSignal!.text).toBe('Alice (Matrix): hi all')
    expect(toSignal!.delivery.target).toMatchObject({ chatId: sg.id })
    expect(toWhatsApp!.delivery.target).toMatchObject({ chatId: wg.id })
    const d = toSignal!.delivery
    if (d.kind !== 'message') throw new Error('expected a message')
    expect(d.content.body.styles).toEqual(expect.arrayContaining([
      { start: 0, length: 'Alice (Matrix)'.length, style: 'bold' },
      { start: 'Alice (Matrix): hi '.length, length: 3, style: 'bold' },
    ]))
  })

  it('a Signal message appears in Matrix as the sender\'s ghost and on WhatsApp through the relay', async () => {
    s = await scenario(kind)
    const { room, sg } = await bridgedRoom(s)
    await s.signal.say(sg.id, { id: 'aci-bob', name: 'Bob' }, 'hello from signal')
    const ev = await s.hs.waitForEvent(room, e => e.type === 'm.room.message' && (e.content as { body?: string }).body === 'hello from signal')
    expect(ev.sender).toBe('@signal_aci-bob:example.org')
    expect(s.hs.profile(ev.sender)?.displayname).toBe('Bob (Signal)')
    const [toWhatsApp] = await s.whatsapp.waitForSent(1)
    expect(toWhatsApp!.text).toBe('Bob (Signal): hello from signal')
    expect(s.signal.sent).toEqual([]) // nothing goes back to where it came from
  })

  it('one transaction carrying several rooms\' messages, replies among them, reaches each group complete and in order', async () => {
    s = await scenario(kind)
    const a = await bridgedRoom(s)
    const b = await bridgedRoom(s)
    // Alice goes by another name in room b: each room's name must reach its own groups.
    await s.hs.sendEvent(ALICE, b.room, 'm.room.member', { membership: 'join', displayname: 'Ally' }, { stateKey: ALICE })
    s.hs.pause() // what is sent meanwhile goes out as one transaction, as Synapse batches a busy moment
    const first = await s.hs.sendMessage(ALICE, a.room, 'a1')
    const bEvents = [await s.hs.sendMessage(ALICE, b.room, 'b1')]
    await s.hs.sendMessage(ALICE, a.room, { msgtype: 'm.text', body: 'a2', 'm.relates_to': { 'm.in_reply_to': { event_id: first } } })
    bEvents.push(await s.hs.sendMessage(ALICE, b.room, 'b2'))
    await s.hs.sendMessage(ALICE, a.room, 'a3')
    bEvents.push(await s.hs.sendMessage(ALICE, b.room, 'b3'))
    s.hs.resume()
    const texts = (sent: Array<{ text: string }>) => sent.map(x => x.text)
    for (const [net, chat, letter] of [[s.signal, a.sg.id, 'a'], [s.whatsapp, a.wg.id, 'a'], [s.signal, b.sg.id, 'b'], [s.whatsapp, b.wg.id, 'b']] as const) {
      const sent = await net.waitForSentTo(chat, 3)
      const name = letter === 'a' ? 'Alice' : 'Ally'
      expect(texts(sent).map(t => t.replace(/ \(reply to .*\)$/, ''))).toEqual([1, 2, 3].map(i => `${name} (Matrix): ${letter}${i}`))
      if (letter === 'a') expect(sent[1]!.delivery.kind === 'message' && sent[1]!.delivery.replyTo?.remoteId).toBe(sent[0]!.remoteId)
    }
    expect(s.signal.sent).toHaveLength(6)
    expect(s.whatsapp.sent).toHaveLength(6)
    // Each message recorded in the batch maps to its own copies: a later reply to each quotes the right one.
    const bSent = s.signal.sentTo(b.sg.id)
    for (const [i, target] of bEvents.entries()) {
      await s.hs.sendMessage(ALICE, b.room, { msgtype: 'm.text', body: `re ${i}`, 'm.relates_to': { 'm.in_reply_to': { event_id: target } } })
      const reply = (await s.signal.waitForSentTo(b.sg.id, 4 + i))[3 + i]!
      expect(reply.delivery.kind === 'message' && reply.delivery.replyTo?.remoteId).toBe(bSent[i]!.remoteId)
    }
  })
})
