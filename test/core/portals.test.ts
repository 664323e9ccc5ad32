// Portal rooms: created for groups that speak first (auto_create_portals), marked with m.bridge and
// uk.half-shot.bridge state per linked network, and clear about encryption instead of silent.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bridgeStateKey } from '../../src/matrix/rooms.ts'
import { ALICE, linkedLogin, scenario, type Scenario } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { bodyOf, botEvents, content, settled } from '../support/relay.ts'

describe.each(DB_KINDS)('portal rooms on %s', kind => {
  let s: Scenario
  let sigLogin: string
  let waLogin: string
  beforeAll(async () => {
    s = await scenario(kind)
    s.hs.createUser(ALICE, { displayname: 'Alice' })
    sigLogin = await linkedLogin(s, s.signal)
    waLogin = await linkedLogin(s, s.whatsapp)
  })
  afterAll(async () => s?.stop())

  /** A room where the bot may set state (power 100), as a room admin would arrange. */
  async function adminRoom(opts: { encrypted?: boolean } = {}): Promise<string> {
    const room = await s.hs.createRoom(ALICE, { invite: [s.hs.botUserId], name: 'Family', powerLevels: { [s.hs.botUserId]: 100 }, ...opts })
    await s.hs.waitFor(() => s.hs.membership(room, s.hs.botUserId) === 'join', { what: 'the bot to join' })
    return room
  }

  it('a message from a group with no portal creates a room named for the group, invites the relay\'s owner and shows the message there', async () => {
    const g = s.signal.addGroup('Cousins')
    const roomsBefore = new Set(s.hs.rooms())
    await s.signal.say(g.id, { id: 'aci-zoe', name: 'Zoe' }, 'is this thing on?', { loginId: sigLogin })
    const room = await s.hs.waitFor(() => s.hs.rooms().find(r => !roomsBefore.has(r) && s.hs.stateContent(r, 'm.room.name')?.['name'] === 'Cousins'), { what: 'a portal room' })
    expect(s.hs.membership(room, ALICE)).toBe('invite')
    const ev = await s.hs.waitForEvent(room, e => bodyOf(e) === 'is this thing on?')
    expect(ev.sender).toBe('@signal_aci-zoe:example.org')
    expect(s.hs.stateContent(room, 'm.bridge', bridgeStateKey('signal', g.id))).toMatchObject({ protocol: { id: 'signal' }, channel: { id: g.id, displayname: 'Cousins' } })
    expect(s.bridge.portals.find('signal', g.id)?.roomId).toBe(room)
    // The second message from the group uses the same room.
    await s.signal.say(g.id, { id: 'aci-zoe', name: 'Zoe' }, 'hello?', { loginId: sigLogin })
    await s.hs.waitForEvent(room, e => bodyOf(e) === 'hello?')
    expect(s.hs.rooms().filter(r => !roomsBefore.has(r))).toHaveLength(1)
  })

  it('linking marks the room with m.bridge and uk.half-shot.bridge for each network; unlinking clears them', async () => {
    const room = await adminRoom()
    const sg = s.signal.addGroup('Family (Signal)')
    const wg = s.whatsapp.addGroup('Family (WhatsApp)')
    await s.command(ALICE, room, `!relay link signal ${sg.id} ${sigLogin}`)
    await s.command(ALICE, room, `!relay link whatsapp ${wg.id} ${waLogin}`)
    for (const type of ['m.bridge', 'uk.half-shot.bridge']) {
      expect(s.hs.stateContent(room, type, bridgeStateKey('signal', sg.id))).toEqual({
        bridgebot: s.hs.botUserId, creator: ALICE,
        protocol: { id: 'signal', displayname: 'Signal', external_url: 'https://signal.org' },
        channel: { id: sg.id, displayname: 'Family (Signal)' },
      })
      expect(s.hs.stateContent(room, type, bridgeStateKey('whatsapp', wg.id))).toMatchObject({
        bridgebot: s.hs.botUserId, protocol: { id: 'whatsapp' }, channel: { id: wg.id, displayname: 'Family (WhatsApp)' },
      })
    }
    await s.command(ALICE, room, '!relay unlink signal')
    for (const type of ['m.bridge', 'uk.half-shot.bridge']) {
      expect(s.hs.stateContent(room, type, bridgeStateKey('signal', sg.id))).toEqual({})
      expect(s.hs.stateContent(room, type, bridgeStateKey('whatsapp', wg.id))).toMatchObject({ channel: { id: wg.id } })
    }
  })

  it('a room where the bot has no power to set state can still be linked; the link works without the marker', async () => {
    const room = await s.hs.createRoom(ALICE, { invite: [s.hs.botUserId] })
    await s.hs.waitFor(() => s.hs.membership(room, s.hs.botUserId) === 'join', { what: 'the bot to join' })
    const sg = s.signal.addGroup('Low power')
    expect(await s.command(ALICE, room, `!relay link signal ${sg.id} ${sigLogin}`)).toMatch(/^Linked this room to the Signal group “Low power”/)
    await s.hs.sendMessage(ALICE, room, 'still relayed')
    expect((await s.signal.waitForSentTo(sg.id, 1))[0]!.text).toBe('Alice (Matrix): still relayed')
    expect(await s.command(ALICE, room, '!relay unlink signal')).toMatch(/^Unlinked the Signal group/)
  })

  it('with encryption off, a portal room that turns encrypted says so once per kind of event, relays nothing, and refuses link', async () => {
    const room = await adminRoom()
    const sg = s.signal.addGroup('Soon encrypted')
    await s.command(ALICE, room, `!relay link signal ${sg.id} ${sigLogin}`)
    const before = s.botNotices(room).length
    await s.hs.sendEvent(ALICE, room, 'm.room.encryption', { algorithm: 'm.megolm.v1.aes-sha2' }, { stateKey: '' })
    await s.hs.waitFor(() => s.botNotices(room).length > before, { what: 'the encryption notice' })
    expect(s.botNotices(room).at(-1)).toMatch(/^This room is now encrypted/)
    const first = await s.hs.sendMessage(ALICE, room, 'secret one')
    await s.hs.sendMessage(ALICE, room, 'secret two')
    await s.hs.waitFor(() => botEvents(s, room, 'com.beeper.message_send_status').length >= 2, { what: 'two status events' })
    expect(s.hs.timeline(room).find(e => e.event_id === first)?.type).toBe('m.room.encrypted')
    await settled(s)
    const notices = s.botNotices(room).slice(before)
    expect(notices.filter(n => n.startsWith('I cannot read encrypted messages'))).toHaveLength(1)
    expect(content(botEvents(s, room, 'com.beeper.message_send_status')[0]!)).toMatchObject({ status: 'FAIL_PERMANENT', 'm.relates_to': { event_id: first } })
    expect(s.signal.sentTo(sg.id)).toEqual([])
    // A client that sends in the clear still cannot link more networks here.
    const wg = s.whatsapp.addGroup('Nope')
    const n = s.botNotices(room).length
    await s.hs.sendEvent(ALICE, room, 'm.room.message', { msgtype: 'm.text', body: `!relay link whatsapp ${wg.id}` })
    await s.hs.waitFor(() => s.botNotices(room).length > n, { what: 'the refusal' })
    expect(s.botNotices(room).at(-1)).toMatch(/^This room is encrypted, and encryption is off in this bridge's configuration \(encryption\.allow\)/)
    expect(s.bridge.portals.byRoom(room)?.whatsappGroup).toBeNull()
  })

  it('with encryption off, a room that was encrypted before the bot came is not linked, even by a client that sends the command in the clear', async () => {
    const room = await adminRoom({ encrypted: true })
    const sg = s.signal.addGroup('Encrypted all along')
    const n = s.botNotices(room).length
    await s.hs.sendEvent(ALICE, room, 'm.room.message', { msgtype: 'm.text', body: `!relay link signal ${sg.id} ${sigLogin}` })
    await s.hs.waitFor(() => s.botNotices(room).length > n, { what: 'the refusal' })
    expect(s.botNotices(room).at(-1)).toMatch(/^This room is encrypted, and encryption is off in this bridge's configuration \(encryption\.allow\)/)
    expect(s.bridge.portals.byRoom(room)?.signalGroup ?? null).toBeNull()
  })

  it('in a room that was encrypted before the bot came, a command is not met with silence', async () => {
    const room = await adminRoom({ encrypted: true })
    const n = s.botNotices(room).length
    await s.hs.sendMessage(ALICE, room, '!relay link signal whatever')
    await s.hs.waitFor(() => s.botNotices(room).length > n, { what: 'a notice about encryption' })
    expect(s.botNotices(room).at(-1)).toMatch(/encrypted/)
    expect(s.bridge.portals.byRoom(room)).toBeUndefined()
  })
})

describe.each(DB_KINDS)('without auto_create_portals on %s', kind => {
  let s: Scenario
  beforeAll(async () => {
    s = await scenario(kind, { configure: raw => { raw.bridge.auto_create_portals = false } })
  })
  afterAll(async () => s?.stop())

  it('a message from a group with no portal makes no room and goes nowhere', async () => {
    const login = await linkedLogin(s, s.signal)
    const g = s.signal.addGroup('Quiet')
    const roomsBefore = s.hs.rooms().length
    await s.signal.say(g.id, { id: 'aci-zoe', name: 'Zoe' }, 'hello?', { loginId: login })
    await settled(s)
    expect(s.hs.rooms()).toHaveLength(roomsBefore)
    expect(s.bridge.portals.find('signal', g.id)).toBeUndefined()
    expect(s.whatsapp.sent).toEqual([])
  })
})
