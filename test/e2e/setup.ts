// The operator's set-up, done the way an operator does it: link both relays by QR code in a direct chat
// with the bot, let a Signal group's first message make the portal room, and create the WhatsApp group.
import { expect } from 'vitest'
import { groupText, type FakeSender } from '../fakes/signal-envelopes.ts'
import type { E2E } from './harness.ts'

export const ADMIN = '@admin:example.org'
export const SIGNAL_RELAY: FakeSender = { number: '+15550100001', aci: '0e9f0a10-0000-4000-8000-000000000001', name: 'Relay' }
export const BOB: FakeSender = { number: '+15550100002', aci: 'b0b0b0b0-0000-4000-8000-000000000002', name: 'Bob' }
export const DAVE = { lid: '201000000000042@lid', pn: '15550100042@s.whatsapp.net' }

export interface Portal {
  dm: string
  room: string
  signalGroup: string
  whatsappGroup: string
}

export async function dmWithBot(e: E2E): Promise<string> {
  if (!e.hs.profile(ADMIN)) e.hs.createUser(ADMIN, { displayname: 'Admin' })
  const dm = await e.hs.createRoom(ADMIN, { invite: [e.hs.botUserId], isDirect: true })
  await e.hs.waitFor(() => e.hs.membership(dm, e.hs.botUserId) === 'join', { what: 'the bot to join the direct chat' })
  return dm
}

/** `login signal` in the direct chat: a QR code arrives as an image, the phone scans it. */
export async function linkSignal(e: E2E, dm: string): Promise<void> {
  const images = () => e.botEvents(dm).filter(ev => (ev.content as any).msgtype === 'm.image').length
  const before = images()
  await e.hs.sendMessage(ADMIN, dm, 'login signal')
  await e.hs.waitFor(() => images() > before, { what: 'the Signal QR code' })
  await e.daemon.scanLink({ number: SIGNAL_RELAY.number!, aci: SIGNAL_RELAY.aci, name: 'Relay' })
  await e.waitForNotice(dm, /Linked! The Signal account is now login sig-/)
}

/** `login whatsapp` in the direct chat: a QR code arrives as an image, the phone scans it. */
export async function linkWhatsApp(e: E2E, dm: string): Promise<void> {
  const images = () => e.botEvents(dm).filter(ev => (ev.content as any).msgtype === 'm.image').length
  const before = images()
  const linkedBefore = e.notices(dm).filter(n => /^Linked! The WhatsApp/.test(n)).length
  await e.hs.sendMessage(ADMIN, dm, 'login whatsapp')
  await e.hs.waitFor(() => images() > before, { what: 'the WhatsApp QR code' })
  await e.wa('scanQr')
  await e.hs.waitFor(() => e.notices(dm).filter(n => /^Linked! The WhatsApp account is now login wa-/.test(n)).length > linkedBefore, { what: 'the WhatsApp login' })
}

/** The whole set-up of the story; returns the portal. */
export async function setUpPortal(e: E2E): Promise<Portal> {
  const dm = await dmWithBot(e)
  await linkSignal(e, dm)
  await linkWhatsApp(e, dm)

  // An existing Signal group speaks: the bridge makes a portal room and invites the relay's owner.
  const group = e.daemon.addGroup({ name: 'Family', members: [{ number: SIGNAL_RELAY.number, aci: SIGNAL_RELAY.aci }, { number: BOB.number, aci: BOB.aci }] })
  await e.daemon.until(() => e.daemon.hasStream(SIGNAL_RELAY.number!))
  e.daemon.push(SIGNAL_RELAY.number!, groupText(BOB, group.id, 'is anyone here?'))
  const room = await e.hs.waitFor(() => e.hs.rooms().find(r => e.hs.membership(r, ADMIN) === 'invite' && e.hs.stateContent(r, 'm.room.name')?.name === 'Family'), { what: 'a portal room for the Signal group' })
  await e.hs.join(ADMIN, room)
  // In a portal made encrypted, the message was encrypted for the room's joined members only: its arrival is all to see.
  await e.hs.waitForEvent(room, ev => ev.sender === `@signal_${BOB.aci}:example.org` && (ev.type === 'm.room.encrypted' || (ev.content as any).body === 'is anyone here?'))

  // The operator makes the WhatsApp group from the room.
  const created = await e.command(ADMIN, room, '!relay create whatsapp')
  expect(created).toMatch(/Created the WhatsApp group[\s\S]*Share this link so people can join: https:\/\/chat\.whatsapp\.com\//)
  const status = await e.command(ADMIN, room, '!relay status')
  // The groups by their names, as people know them.
  expect(status).toMatch(/Signal: “Family”; relayed by sig-[0-9a-f]+, connected/)
  expect(status).toMatch(/WhatsApp: “Family”; relayed by wa-[0-9a-f]+, connected/)
  const wg = (await e.wa<string | undefined>('groupBySubject', 'Family'))!
  // Someone on WhatsApp joins by the invite link.
  await e.wa('addMember', wg, DAVE)
  return { dm, room, signalGroup: group.id, whatsappGroup: wg }
}
