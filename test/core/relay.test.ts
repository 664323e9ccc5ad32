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
})
