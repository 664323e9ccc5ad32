// One group, three faces: a portal's name and topic kept in step between the Matrix room and its two groups, in the
// directions the portal chose (`!relay sync`), with no change ever going round in a loop, and a change the bridge
// may not make told once in the room and made when the permission arrives. The in-memory networks echo the relay's
// own changes back, as WhatsApp does.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MemoryGroup } from '../fakes/memory-network.ts'
import { ALICE, linkedLogin, scenario, type Scenario } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { settled } from '../support/relay.ts'

const BOB = { id: 'aci-bob', name: 'Bob' }
const DAVE = { id: 'wa-dave', name: 'Dave' }

describe.each(DB_KINDS)('group state kept in step on %s', kind => {
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

  /** A room where the bot may set state, bridged to a fresh Signal and a fresh WhatsApp group. */
  async function portal(opts: { botPower?: number } = {}): Promise<{ room: string; sg: MemoryGroup; wg: MemoryGroup }> {
    const room = await s.hs.createRoom(ALICE, { invite: [s.hs.botUserId], name: 'Family', powerLevels: { [s.hs.botUserId]: opts.botPower ?? 100 } })
    await s.hs.waitFor(() => s.hs.membership(room, s.hs.botUserId) === 'join', { what: 'the bot to join' })
    const sg = s.signal.addGroup('Family (Signal)', ['aci-bob'])
    const wg = s.whatsapp.addGroup('Family (WhatsApp)', ['wa-dave'])
    await s.command(ALICE, room, `!relay link signal ${sg.id} ${sigLogin}`)
    await s.command(ALICE, room, `!relay link whatsapp ${wg.id} ${waLogin}`)
    return { room, sg, wg }
  }
  const roomName = (room: string) => s.hs.stateContent(room, 'm.room.name')?.['name']
  const infoSent = (group: MemoryGroup) => s.signal.sentTo(group.id).concat(s.whatsapp.sentTo(group.id)).filter(x => x.delivery.kind === 'chat_update').map(x => x.text)

  it('a WhatsApp rename names the room and, by default, leaves the Signal group its own name', async () => {
    const { room, sg, wg } = await portal()
    await s.whatsapp.changeInfo(wg.id, DAVE, { name: 'Cousins' })
    await s.hs.waitFor(() => roomName(room) === 'Cousins', { what: 'the room renamed' })
    // A later message reaches Signal: the rename, queued before it, would have gone first.
    await s.whatsapp.say(wg.id, DAVE, 'after the rename')
    await s.signal.waitFor(() => s.signal.sentTo(sg.id).some(x => x.text.endsWith('after the rename')), 'the message after the rename')
    expect(infoSent(sg)).toEqual([])
    expect(sg.name).toBe('Family (Signal)')
  })

  it('with `sync name to-networks on`, a room rename renames both groups, and their echoes go no further', async () => {
    const { room, sg, wg } = await portal()
    expect(await s.command(ALICE, room, '!relay sync name to-networks on')).toMatch(/name is now carried to the networks/)
    await s.hs.sendEvent(ALICE, room, 'm.room.name', { name: 'Reunion 2027' }, { stateKey: '' })
    await s.signal.waitFor(() => sg.name === 'Reunion 2027', 'the Signal group renamed')
    await s.whatsapp.waitFor(() => wg.name === 'Reunion 2027', 'the WhatsApp group renamed')
    // Each network told the bridge of the relay's own change; a message after that marks that the echoes were handled.
    await settled(s)
    await s.whatsapp.say(wg.id, DAVE, 'marker')
    await s.signal.waitFor(() => s.signal.sentTo(sg.id).some(x => x.text.endsWith('marker')), 'the marker on Signal')
    await settled(s)
    expect(infoSent(sg)).toEqual(['set name: Reunion 2027'])
    expect(infoSent(wg)).toEqual(['set name: Reunion 2027'])
    // The bot never renamed the room back (nor again): the only m.room.name after Alice's is none.
    expect(s.hs.timeline(room).filter(e => e.type === 'm.room.name' && e.sender === s.hs.botUserId)).toEqual([])
  })

  it('a Signal rename with to-networks on reaches WhatsApp and the room once each, though WhatsApp echoes it', async () => {
    const { room, sg, wg } = await portal()
    await s.command(ALICE, room, '!relay sync name to-networks on')
    await s.signal.changeInfo(sg.id, BOB, { name: 'Cousins 2' })
    await s.whatsapp.waitFor(() => wg.name === 'Cousins 2', 'the WhatsApp group renamed')
    await s.hs.waitFor(() => roomName(room) === 'Cousins 2', { what: 'the room renamed' })
    await settled(s)
    await s.signal.say(sg.id, BOB, 'marker')
    await s.whatsapp.waitFor(() => s.whatsapp.sentTo(wg.id).some(x => x.text.endsWith('marker')), 'the marker on WhatsApp')
    await settled(s)
    expect(infoSent(wg)).toEqual(['set name: Cousins 2'])
    expect(infoSent(sg)).toEqual([])
    expect(s.hs.timeline(room).filter(e => e.type === 'm.room.name' && e.sender === s.hs.botUserId)).toHaveLength(1)
  })

  it('`!relay sync` shows the choices, and `sync topic to-matrix off` keeps the room its own topic', async () => {
    const { room, wg } = await portal()
    const shown = await s.command(ALICE, room, '!relay sync')
    expect(shown).toContain('• name: to Matrix on, to the networks off')
    expect(shown).toContain('• topic (description): to Matrix on, to the networks off')
    expect(shown).toContain('• avatar (picture): to Matrix on, to the networks off')
    expect(shown).toContain('• disappearing-message timer: to Matrix on, to the networks on')
    await s.whatsapp.changeInfo(wg.id, DAVE, { topic: 'Sunday lunch at noon' })
    await s.hs.waitFor(() => s.hs.stateContent(room, 'm.room.topic')?.['topic'] === 'Sunday lunch at noon', { what: 'the room topic' })
    expect(await s.command(ALICE, room, '!relay sync topic to-matrix off')).toMatch(/no longer carried to Matrix/)
    expect(await s.command(ALICE, room, '!relay sync')).toContain('• topic (description): to Matrix off, to the networks off')
    await s.whatsapp.changeInfo(wg.id, DAVE, { topic: 'Lunch moved to 1pm' })
    await s.whatsapp.changeInfo(wg.id, DAVE, { name: 'Lunch club' })
    await s.hs.waitFor(() => roomName(room) === 'Lunch club', { what: 'the rename after the topic change' })
    expect(s.hs.stateContent(room, 'm.room.topic')?.['topic']).toBe('Sunday lunch at noon')
  })

  it('`sync` with a wrong word says how it is used, and changing it needs the room power', async () => {
    const { room } = await portal()
    expect(await s.command(ALICE, room, '!relay sync name sideways on')).toBe('Say what, which way and whether: `sync <name|topic|avatar|timer> <to-matrix|to-networks> <on|off>`, e.g. `sync name to-networks on`.')
    s.hs.createUser('@carol:example.org', { displayname: 'Carol' })
    await s.hs.invite(ALICE, room, '@carol:example.org')
    await s.hs.join('@carol:example.org', room)
    expect(await s.command('@carol:example.org', room, '!relay sync name to-networks on')).toMatch(/You need power level 50 in this room/)
    expect(await s.command(ALICE, room, '!relay sync')).toContain('• name: to Matrix on, to the networks off')
  })

  it('a rename the relay may not make is said once in the room, and made when the permission arrives', async () => {
    const { room, sg, wg } = await portal()
    await s.command(ALICE, room, '!relay sync name to-networks on')
    s.whatsapp.restrictInfo(wg.id, true)
    await s.hs.sendEvent(ALICE, room, 'm.room.name', { name: 'First try' }, { stateKey: '' })
    await s.signal.waitFor(() => sg.name === 'First try', 'the Signal group renamed')
    const notice = await s.hs.waitFor(() => s.botNotices(room).find(n => n.startsWith('⚠️') && n.includes('WhatsApp group')), { what: 'the notice about WhatsApp' })
    expect(notice).toBe('⚠️ I could not change the WhatsApp group\'s name to “First try”: only admins may edit the group info, and the relay account is no admin. Make the relay account an admin, and I will make the change then.')
    await s.hs.sendEvent(ALICE, room, 'm.room.name', { name: 'Second try' }, { stateKey: '' })
    await s.signal.waitFor(() => sg.name === 'Second try', 'the Signal group renamed again')
    await settled(s)
    expect(s.botNotices(room).filter(n => n.startsWith('⚠️') && n.includes('WhatsApp group'))).toHaveLength(1)
    expect(wg.name).toBe('Family (WhatsApp)')
    s.whatsapp.restrictInfo(wg.id, false)
    await s.whatsapp.waitFor(() => wg.name === 'Second try', 'the WhatsApp group renamed once permitted')
    await settled(s)
    // Only the latest name was set: the first one waited, and the second replaced it.
    expect(infoSent(wg)).toEqual(['set name: Second try'])
  })

  it('a group rename the bot has no power for waits, and a name chosen in the room meanwhile stands', async () => {
    const { room, wg } = await portal({ botPower: 0 })
    await s.whatsapp.changeInfo(wg.id, DAVE, { name: 'Cousins 3' })
    await s.hs.waitFor(() => s.botNotices(room).some(n => n.includes('Cousins 3')), { what: 'the notice about the room name' })
    await s.hs.sendEvent(ALICE, room, 'm.room.name', { name: 'Our own name' }, { stateKey: '' })
    await s.hs.setPowerLevel(room, s.hs.botUserId, 50, ALICE)
    await s.whatsapp.changeInfo(wg.id, DAVE, { topic: 'after the power change' })
    await s.hs.waitFor(() => s.hs.stateContent(room, 'm.room.topic')?.['topic'] === 'after the power change', { what: 'the topic set with the new power' })
    expect(roomName(room)).toBe('Our own name')
  })
})
