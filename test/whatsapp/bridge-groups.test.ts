// The relay account's place in the WhatsApp group, through the whole bridge: what it may delete there (only
// its own messages, or anyone's as an admin), and what happens when the group's members change, the relay
// itself included. The fake sends rc14's group-participants.update (after its stub upsert) and drops a
// non-admin's revoke of someone else's message silently, as WhatsApp gives no sign of refusing it.
import { afterEach, describe, expect, it } from 'vitest'
import type { FakeEvent } from '../fakes/homeserver.ts'
import { ALICE } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { WA_DAVE, WA_ERIN, bridgedRoom, realScenario, until, waitForNotice, type RealScenario } from '../support/networks.ts'
import { content, settled } from '../support/relay.ts'

const WA_FRAN = { lid: '201000000000044@lid', pn: '15550100044@s.whatsapp.net' }

describe.each(DB_KINDS)('the WhatsApp relay’s place in its group, through the bridge, on %s', kind => {
  let s: RealScenario
  afterEach(async () => s?.stop())

  async function setup() {
    s = await realScenario(kind)
    const r = await bridgedRoom(s, { signal: false, whatsapp: true })
    return { room: r.room, group: r.whatsappGroup! }
  }
  const said = (room: string, match: (e: FakeEvent) => boolean) => s.hs.waitForEvent(room, match)
  const sentTo = (group: string) => s.wa.sent.filter(m => m.jid === group)
  const revokesOf = (id: string) => s.wa.sent.filter(m => (m.content.delete as { id?: string } | undefined)?.id === id)
  /** Dave says something and it reaches Matrix: everything the group did before it has been handled. */
  async function marker(room: string, group: string, text: string): Promise<FakeEvent> {
    s.wa.deliver({ chat: group, from: WA_DAVE, pushName: 'Dave', message: { conversation: text } })
    return said(room, e => content(e).body === text)
  }

  it('a Matrix redaction of a WhatsApp member’s message sends no revoke while the relay is not a group admin, and the room is told why', async () => {
    const { room, group } = await setup()
    const daves = s.wa.deliver({ chat: group, from: WA_DAVE, pushName: 'Dave', message: { conversation: 'oops, wrong group' } })
    const ev = await said(room, e => content(e).body === 'oops, wrong group')
    await settled(s) // its copy recorded: a redaction of an event the bridge has not recorded yet finds nothing to delete
    await s.hs.redact(ALICE, room, ev.event_id)
    const notice = await waitForNotice(s, room, /deletion .* not delivered to WhatsApp/)
    expect(notice).toMatch(/only group admins .* the relay account is not an admin/)
    await s.hs.waitFor(() => s.hs.timeline(room).some(e => e.type === 'com.beeper.message_send_status' && content(e).status === 'FAIL_PERMANENT'), { what: 'a failure status for the deletion' })
    // A later message went out: the revoke would have been before it.
    await s.hs.sendMessage(ALICE, room, 'after')
    await until(() => sentTo(group).find(m => String(m.content.text).endsWith('after')), 'the later message on WhatsApp')
    expect(revokesOf(daves.key.id!)).toEqual([])
  })

  it('once a group-participants.update makes the relay an admin, a Matrix redaction revokes the member’s message and the room is told the relay did it as admin', async () => {
    const { room, group } = await setup()
    const daves = s.wa.deliver({ chat: group, from: WA_DAVE, pushName: 'Dave', message: { conversation: 'my number is …' } })
    const ev = await said(room, e => content(e).body === 'my number is …')
    s.wa.setAdmin(group, 'self', true)
    await marker(room, group, 'made you admin')
    await s.hs.redact(ALICE, room, ev.event_id)
    const revoke = await until(() => revokesOf(daves.key.id!)[0], 'the revoke on WhatsApp')
    expect(revoke.content.delete).toMatchObject({ id: daves.key.id, fromMe: false, participant: WA_DAVE.lid })
    expect(s.wa.revoked.has(daves.key.id!)).toBe(true)
    expect(await waitForNotice(s, room, /relay account deleted this message for everyone .* as a group admin/)).toBeTruthy()
    expect(s.botNotices(room).filter(n => n.startsWith('⚠️'))).toEqual([])
  })

  it('the relay’s own copy is revoked whatever its role, and nothing is said about it', async () => {
    const { room, group } = await setup()
    const mine = await s.hs.sendMessage(ALICE, room, 'typo')
    const copy = await until(() => sentTo(group)[0], 'the relay’s copy')
    await settled(s)
    await s.hs.redact(ALICE, room, mine)
    await until(() => revokesOf(copy.id)[0], 'the revoke of the relay’s copy')
    expect(s.wa.revoked.has(copy.id)).toBe(true)
    await settled(s)
    expect(s.botNotices(room).filter(n => /deleted|⚠️/.test(n))).toEqual([])
  })

  it('members added, promoted and removed change nothing in the relaying; a new member’s message arrives under their name', async () => {
    const { room, group } = await setup()
    s.wa.addMember(group, WA_FRAN)
    s.wa.setAdmin(group, WA_ERIN, true)
    s.wa.removeMember(group, WA_DAVE)
    s.wa.deliver({ chat: group, from: WA_FRAN, pushName: 'Fran', message: { conversation: 'hi, I am new' } })
    const ev = await said(room, e => content(e).body === 'hi, I am new')
    expect(s.hs.profile(ev.sender)?.displayname).toBe('Fran (WhatsApp)')
    await s.hs.sendMessage(ALICE, room, 'welcome Fran')
    await until(() => sentTo(group).find(m => String(m.content.text).endsWith('welcome Fran')), 'the welcome on WhatsApp')
    await settled(s)
    // The stub upserts that come with each change are no messages: nothing else reached Matrix.
    expect(s.hs.timeline(room).filter(e => e.sender.startsWith('@whatsapp_') && e.type === 'm.room.message').map(e => content(e).body)).toEqual(['hi, I am new'])
    expect(s.botNotices(room).filter(n => n.startsWith('⚠️'))).toEqual([])
  })

  it('the relay removed from the group: the room is told at once, and messages sent meanwhile fail with a sentence instead of vanishing', async () => {
    const { room, group } = await setup()
    s.wa.removeMember(group, 'self')
    expect(await waitForNotice(s, room, /removed from the WhatsApp group/)).toMatch(/messages from this room .* not reach WhatsApp/)
    await s.hs.sendMessage(ALICE, room, 'anyone there?')
    const failed = await waitForNotice(s, room, /A message from Alice was not delivered to WhatsApp/)
    expect(failed).toMatch(/no longer in this group/)
    expect(sentTo(group)).toEqual([])
    // Added back: the room hears it, and relaying resumes.
    s.wa.addMember(group, { lid: `${s.wa.account.lid}@lid`, pn: `${s.wa.account.pn}@s.whatsapp.net` })
    await waitForNotice(s, room, /back in the WhatsApp group/)
    await s.hs.sendMessage(ALICE, room, 'back again')
    await until(() => sentTo(group).find(m => String(m.content.text).endsWith('back again')), 'the message after the relay was re-added')
  })
})
