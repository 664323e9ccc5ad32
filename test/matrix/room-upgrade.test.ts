// A portal room upgraded on Matrix, as a room admin does it (the fake homeserver's /upgrade does what Synapse
// does: a new room with the old state and power levels, a tombstone in the old room, nobody invited). The
// portal moves to the new room and messages keep flowing both ways, none twice; the old room stops relaying.
import { afterEach, describe, expect, it } from 'vitest'
import type { FakeEvent } from '../fakes/homeserver.ts'
import { bridgeStateKey } from '../../src/matrix/rooms.ts'
import { ALICE, linkedLogin, roomWithBot, scenario, type Scenario } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'

const body = (e: FakeEvent) => (e.content as { body?: string }).body

describe.each(DB_KINDS)('a portal room upgrade on %s', kind => {
  let s: Scenario
  afterEach(async () => s?.stop())

  /** A room bridged to a Signal and a WhatsApp group, where the bot has power 100 (so m.bridge is set). */
  async function portal(opts: { public?: boolean } = {}) {
    s = await scenario(kind)
    const room = opts.public
      ? await (async () => {
        s.hs.createUser(ALICE, { displayname: 'Alice' })
        const r = await s.hs.createRoom(ALICE, { invite: [s.hs.botUserId], name: 'Family', public: true })
        await s.hs.waitFor(() => s.hs.membership(r, s.hs.botUserId) === 'join', { what: 'the bot to join' })
        return r
      })()
      : await roomWithBot(s)
    await s.hs.setPowerLevel(room, s.hs.botUserId, 100)
    const sg = s.signal.addGroup('Family (Signal)', ['sig-bob'])
    const wg = s.whatsapp.addGroup('Family (WhatsApp)', ['wa-dave'])
    await s.command(ALICE, room, `!relay link signal ${sg.id} ${await linkedLogin(s, s.signal)}`)
    await s.command(ALICE, room, `!relay link whatsapp ${wg.id} ${await linkedLogin(s, s.whatsapp)}`)
    await s.signal.say(sg.id, { id: 'aci-bob', name: 'Bob' }, 'before the upgrade')
    await s.hs.waitForEvent(room, e => body(e) === 'before the upgrade', { what: 'Bob’s message in the old room' })
    return { room, sg, wg }
  }

  /** The new room carries the bridge state, and messages flow both ways there, each once; the old room is done. */
  async function flowsIn(next: string, room: string, sg: { id: string }, wg: { id: string }) {
    for (const [network, group] of [['signal', sg.id], ['whatsapp', wg.id]] as const) {
      await s.hs.waitFor(() => s.hs.stateContent(next, 'm.bridge', bridgeStateKey(network, group))?.['bridgebot'] === s.hs.botUserId,
        { what: `the ${network} m.bridge state in the new room` })
    }
    await s.signal.say(sg.id, { id: 'aci-bob', name: 'Bob' }, 'after the upgrade')
    const ghostSays = await s.hs.waitForEvent(next, e => body(e) === 'after the upgrade', { what: 'Bob’s message in the new room' })
    expect(ghostSays.sender).toBe('@signal_aci-bob:example.org')
    await s.hs.sendMessage(ALICE, next, 'hello from the new room')
    await s.hs.sendMessage(ALICE, room, 'said in the old room')
    await s.hs.sendMessage(ALICE, next, 'marker')
    await s.signal.waitFor(() => s.signal.sentTo(sg.id).some(x => x.text === 'Alice (Matrix): marker'), 'the marker on Signal')
    await s.whatsapp.waitFor(() => s.whatsapp.sentTo(wg.id).some(x => x.text === 'Alice (Matrix): marker'), 'the marker on WhatsApp')
    const texts = (sent: { text: string }[]) => sent.map(x => x.text)
    for (const sent of [texts(s.signal.sentTo(sg.id)), texts(s.whatsapp.sentTo(wg.id))]) {
      expect(sent.filter(t => t === 'Alice (Matrix): hello from the new room')).toHaveLength(1)
      expect(sent.some(t => t.includes('said in the old room'))).toBe(false)
    }
    expect(texts(s.whatsapp.sentTo(wg.id)).filter(t => t === 'Bob (Signal): after the upgrade')).toHaveLength(1)
    expect(s.hs.timeline(room).some(e => body(e) === 'after the upgrade')).toBe(false)
  }

  it('upgraded by its admin, who then invites the bot: the portal moves to the new room', async () => {
    const { room, sg, wg } = await portal()
    const next = await s.hs.upgradeRoom(ALICE, room)
    await s.hs.waitFor(() => s.botNotices(room).some(n => n.includes('Invite me to the new room')), { what: 'the bot asking to be invited' })
    await s.hs.invite(ALICE, next, s.hs.botUserId)
    await s.hs.waitFor(() => s.hs.membership(next, s.hs.botUserId) === 'join', { what: 'the bot to join the new room' })
    await flowsIn(next, room, sg, wg)
  })

  it('the invite to the new room reaches the bridge together with the tombstone: the portal moves once', async () => {
    const { room, sg, wg } = await portal()
    s.hs.pause()
    const next = await s.hs.upgradeRoom(ALICE, room)
    await s.hs.invite(ALICE, next, s.hs.botUserId)
    s.hs.resume()
    await s.hs.waitFor(() => s.hs.membership(next, s.hs.botUserId) === 'join', { what: 'the bot to join the new room' })
    await flowsIn(next, room, sg, wg)
    expect(s.botNotices(room).filter(n => n.includes('the bridge continues in the new room'))).toHaveLength(1)
  })

  it('a public portal room: the bot joins the new room by itself', async () => {
    const { room, sg, wg } = await portal({ public: true })
    const next = await s.hs.upgradeRoom(ALICE, room)
    await s.hs.waitFor(() => s.hs.membership(next, s.hs.botUserId) === 'join', { what: 'the bot to join the new room' })
    await flowsIn(next, room, sg, wg)
  })
})
