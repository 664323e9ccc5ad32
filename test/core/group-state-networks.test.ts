// A portal's name, description and picture through the whole bridge with the real adapters: the fake signal-cli
// daemon (updateGroup; a group update says nothing of what changed, so the bridge reads listGroups) and the fake
// WhatsApp (groups.update; groupUpdateSubject, groupUpdateDescription, updateProfilePicture, refused with 401
// not-authorized in a group whose info only admins may edit, and echoed back to the relay's own socket).
import { readFile } from 'node:fs/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { groupUpdate } from '../fakes/signal-envelopes.ts'
import { ALICE } from '../support/bridge.ts'
import { tempDir } from '../support/config.ts'
import { DB_KINDS } from '../support/db.ts'
import { SIG_BOB, SIG_RELAY, WA_DAVE, bridgedRoom, realScenario, until, type RealScenario } from '../support/networks.ts'
import { content, settled, upload } from '../support/relay.ts'

const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489', 'hex')

describe.each(DB_KINDS)('group name, description and picture through the real adapters on %s', kind => {
  let s: RealScenario
  afterEach(async () => s?.stop())

  /** A room bridged to a Signal and a WhatsApp group, where the bot may set the room's state. */
  async function setup(opts: { sharedDir?: string } = {}) {
    s = await realScenario(kind, opts.sharedDir ? { configure: raw => { raw.signal.shared_dir = opts.sharedDir } } : {})
    const r = await bridgedRoom(s, { whatsapp: true })
    await s.hs.setPowerLevel(r.room, s.hs.botUserId, 100, ALICE)
    return { room: r.room, sg: r.signalGroup!, wg: r.whatsappGroup! }
  }
  const state = (room: string, type: string, key: string) => s.hs.stateContent(room, type)?.[key]
  const updates = () => s.daemon.callsOf('updateGroup')
  const fromSignal = (group: string, revision: number) => s.daemon.push(SIG_RELAY.number, groupUpdate(SIG_BOB, group, revision))
  /** Dave says something on WhatsApp and it reaches Matrix: what WhatsApp sent before it has been handled. */
  async function marker(room: string, wg: string, text: string) {
    s.wa.deliver({ chat: wg, from: WA_DAVE, pushName: 'Dave', message: { conversation: text } })
    await s.hs.waitForEvent(room, e => content(e).body === text)
  }

  it('a Signal group’s new name and description become the room’s name and topic, and so do a WhatsApp subject and description', async () => {
    const { room, sg, wg } = await setup()
    s.daemon.groups.get(sg)!.name = 'Family 2027'
    s.daemon.groups.get(sg)!.description = 'Everyone, everywhere'
    fromSignal(sg, 4)
    await s.hs.waitFor(() => state(room, 'm.room.name', 'name') === 'Family 2027' && state(room, 'm.room.topic', 'topic') === 'Everyone, everywhere', { what: 'the Signal name and description in the room' })
    s.wa.renameGroup(wg, 'Cousins', WA_DAVE)
    s.wa.describeGroup(wg, 'Lunch on Sundays', WA_DAVE)
    await s.hs.waitFor(() => state(room, 'm.room.name', 'name') === 'Cousins' && state(room, 'm.room.topic', 'topic') === 'Lunch on Sundays', { what: 'the WhatsApp subject and description in the room' })
    // Toward the networks is off by default: neither group heard of the other's change.
    await settled(s)
    expect(updates()).toEqual([])
    expect(s.wa.groups.get(wg)!.subject).toBe('Cousins')
  })

  it('with to-networks on, a room rename and topic reach Signal by updateGroup and WhatsApp by subject and description, and WhatsApp’s echo goes no further', async () => {
    const { room, sg, wg } = await setup()
    await s.command(ALICE, room, '!relay sync name to-networks on')
    await s.command(ALICE, room, '!relay sync topic to-networks on')
    await s.hs.sendEvent(ALICE, room, 'm.room.name', { name: 'Reunion' }, { stateKey: '' })
    await s.hs.sendEvent(ALICE, room, 'm.room.topic', { topic: 'June 12, at the lake' }, { stateKey: '' })
    await until(() => s.wa.groups.get(wg)!.subject === 'Reunion' && s.wa.groups.get(wg)!.desc === 'June 12, at the lake', 'the WhatsApp subject and description')
    await s.daemon.until(() => s.daemon.groups.get(sg)!.name === 'Reunion' && s.daemon.groups.get(sg)!.description === 'June 12, at the lake')
    expect(updates().map(c => c.params)).toEqual([
      { account: SIG_RELAY.number, groupId: sg, name: 'Reunion' },
      { account: SIG_RELAY.number, groupId: sg, description: 'June 12, at the lake' },
    ])
    // WhatsApp told the relay's own socket of both changes (groups.update): nothing more is sent anywhere.
    await marker(room, wg, 'marker')
    await settled(s)
    expect(updates()).toHaveLength(2)
    expect(s.hs.timeline(room).filter(e => (e.type === 'm.room.name' || e.type === 'm.room.topic') && e.sender === s.hs.botUserId)).toEqual([])
  })

  it('a WhatsApp description with to-networks on reaches Signal’s description, once', async () => {
    const { room, sg, wg } = await setup()
    await s.command(ALICE, room, '!relay sync topic to-networks on')
    s.wa.describeGroup(wg, 'Bring a dish', WA_DAVE)
    await s.daemon.until(() => s.daemon.groups.get(sg)!.description === 'Bring a dish')
    await s.hs.waitFor(() => state(room, 'm.room.topic', 'topic') === 'Bring a dish', { what: 'the room topic' })
    // Signal's next group update (a member joined, say) re-reads the group: the description is no news.
    fromSignal(sg, 5)
    await marker(room, wg, 'marker')
    await settled(s)
    expect(updates().map(c => c.params.description)).toEqual(['Bring a dish'])
    expect(s.hs.timeline(room).filter(e => e.type === 'm.room.topic' && e.sender === s.hs.botUserId)).toHaveLength(1)
  })

  it('a room picture with to-networks on reaches Signal as a file the daemon reads and WhatsApp by updateProfilePicture', async () => {
    const shared = await tempDir()
    const { room, sg, wg } = await setup({ sharedDir: shared })
    await s.command(ALICE, room, '!relay sync avatar to-networks on')
    const mxc = await upload(s, PNG, 'image/png', 'lake.png')
    await s.hs.sendEvent(ALICE, room, 'm.room.avatar', { url: mxc, info: { mimetype: 'image/png' } }, { stateKey: '' })
    const call = await s.daemon.waitForCall('updateGroup')
    expect(call.params.avatar).toMatch(new RegExp(`^${shared.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/group-avatar-`))
    expect(await readFile(String(call.params.avatar))).toEqual(PNG)
    // The daemon records the call before it has read the file.
    await s.daemon.until(() => s.daemon.groups.get(sg)!.avatar !== undefined)
    expect(s.daemon.groups.get(sg)!.avatar).toEqual(PNG)
    await until(() => s.wa.pictures.get(wg), 'the WhatsApp group picture')
    expect(s.wa.pictures.get(wg)).toEqual(PNG)
    // WhatsApp tells the relay's own socket of the new picture, which it serves re-encoded: still no news.
    await marker(room, wg, 'marker')
    await settled(s)
    expect(s.daemon.callsOf('updateGroup')).toHaveLength(1)
    expect(s.hs.timeline(room).filter(e => e.type === 'm.room.avatar' && e.sender === s.hs.botUserId)).toEqual([])
  })

  it('a WhatsApp group picture becomes the room’s avatar and, with to-networks on, the Signal group’s', async () => {
    const shared = await tempDir()
    const { room, sg, wg } = await setup({ sharedDir: shared })
    await s.command(ALICE, room, '!relay sync avatar to-networks on')
    s.wa.setPicture(wg, PNG)
    const avatar = await s.hs.waitFor(() => state(room, 'm.room.avatar', 'url'), { what: 'the room avatar' })
    const res = await fetch(`${s.hs.url}/_matrix/client/v1/media/download/${String(avatar).slice('mxc://'.length)}`, { headers: { Authorization: `Bearer ${s.hs.registration.as_token}` } })
    expect(Buffer.from(await res.arrayBuffer())).toEqual(PNG)
    await s.daemon.until(() => s.daemon.groups.get(sg)!.avatar !== undefined)
    expect(s.daemon.groups.get(sg)!.avatar).toEqual(PNG)
  })

  it('where only admins may edit, each network’s refusal is said once in the room, and the change is made when the relay becomes admin', async () => {
    const { room, sg, wg } = await setup()
    await s.command(ALICE, room, '!relay sync name to-networks on')
    s.wa.restrictInfo(wg, true)
    s.daemon.groups.get(sg)!.permissionEditDetails = 'ONLY_ADMINS'
    s.daemon.groups.get(sg)!.admins = [SIG_BOB.aci]
    await s.hs.sendEvent(ALICE, room, 'm.room.name', { name: 'Picnic' }, { stateKey: '' })
    const wa = await s.hs.waitFor(() => s.botNotices(room).find(n => n.startsWith('⚠️') && n.includes('WhatsApp group')), { what: 'the WhatsApp refusal' })
    expect(wa).toBe('⚠️ I could not change the WhatsApp group\'s name to “Picnic”: only admins may edit the WhatsApp group’s info, and the relay account is no admin. Make the relay account an admin of the WhatsApp group (or let all members edit the group info), and I will make the change then.')
    const sig = await s.hs.waitFor(() => s.botNotices(room).find(n => n.startsWith('⚠️') && n.includes('Signal group')), { what: 'the Signal refusal' })
    expect(sig).toMatch(/only admins may edit the Signal group’s details, and the relay account is no admin\. Make the relay account an admin/)
    await s.hs.sendEvent(ALICE, room, 'm.room.name', { name: 'Picnic at noon' }, { stateKey: '' })
    await marker(room, wg, 'after the second rename')
    await settled(s)
    expect(s.botNotices(room).filter(n => n.startsWith('⚠️'))).toHaveLength(2)
    expect(updates()).toEqual([])
    // WhatsApp: the relay is made an admin (group-participants.update promote).
    s.wa.setAdmin(wg, 'self', true)
    await until(() => s.wa.groups.get(wg)!.subject === 'Picnic at noon', 'the WhatsApp subject once the relay is admin')
    // Signal: made admin; the group update that says so (what changed is not said) lets the change through.
    s.daemon.groups.get(sg)!.admins.push(SIG_RELAY.aci)
    fromSignal(sg, 6)
    await s.daemon.until(() => s.daemon.groups.get(sg)!.name === 'Picnic at noon')
    expect(updates().map(c => c.params.name)).toEqual(['Picnic at noon'])
  })

  it('a hostile name and description on each network arrive cut to each network’s limits, without control characters, HTML as text', async () => {
    const { room, sg, wg } = await setup()
    await s.command(ALICE, room, '!relay sync name to-networks on')
    await s.command(ALICE, room, '!relay sync topic to-networks on')
    const hostile = `<b>Fam\u0000ily</b>\u202E\u0007\n${'𝔸'.repeat(10_000)}`
    // From WhatsApp (WhatsApp itself would cut a subject at 100; the fake passes on whatever it is given).
    s.wa.renameGroup(wg, hostile, WA_DAVE)
    const name = await s.hs.waitFor(() => String(state(room, 'm.room.name', 'name') ?? '').startsWith('<b>') && String(state(room, 'm.room.name', 'name')), { what: 'the room renamed' })
    expect(name.startsWith('<b>Family</b> 𝔸𝔸')).toBe(true)
    expect(Buffer.byteLength(name)).toBeLessThanOrEqual(255)
    expect(name.endsWith('…')).toBe(true)
    await s.daemon.until(() => s.daemon.groups.get(sg)!.name.startsWith('<b>'))
    const signalName = s.daemon.groups.get(sg)!.name
    expect([...signalName]).toHaveLength(32)
    expect(signalName).toBe(`<b>Family</b> ${'𝔸'.repeat(17)}…`)
    // From Signal: a description of 10,000 characters with controls.
    s.daemon.groups.get(sg)!.description = `line one\u0000\nline two <script>x</script> ${'z'.repeat(10_000)}`
    fromSignal(sg, 7)
    const topic = await s.hs.waitFor(() => String(state(room, 'm.room.topic', 'topic') ?? '').startsWith('line one') && String(state(room, 'm.room.topic', 'topic')), { what: 'the room topic' })
    expect(topic.startsWith('line one\nline two <script>x</script> zzz')).toBe(true)
    expect([...topic]).toHaveLength(4096)
    await until(() => s.wa.groups.get(wg)!.desc?.startsWith('line one'), 'the WhatsApp description')
    expect([...s.wa.groups.get(wg)!.desc!]).toHaveLength(2048)
    // From Matrix: a room name of 10,000 characters reaches WhatsApp cut to 100.
    await s.hs.sendEvent(ALICE, room, 'm.room.name', { name: `\u0001${'w'.repeat(10_000)}` }, { stateKey: '' })
    await until(() => s.wa.groups.get(wg)!.subject.startsWith('www'), 'the WhatsApp subject')
    expect(s.wa.groups.get(wg)!.subject).toBe(`${'w'.repeat(99)}…`)
    await s.daemon.until(() => s.daemon.groups.get(sg)!.name.startsWith('www'))
    expect(s.daemon.groups.get(sg)!.name).toBe(`${'w'.repeat(31)}…`)
    // No change went round: WhatsApp's echoes of its cut subject are what the bridge recorded for it.
    await marker(room, wg, 'marker')
    await settled(s)
    expect(s.hs.timeline(room).filter(e => e.type === 'm.room.name' && e.sender === s.hs.botUserId)).toHaveLength(1)
  })

  it('`!relay status` shows each group’s disappearing-message timer', async () => {
    const { room, sg, wg } = await setup()
    expect(await s.command(ALICE, room, '!relay status')).toContain('• Disappearing messages: Signal off, WhatsApp off')
    s.daemon.groups.get(sg)!.expirationSeconds = 86_400
    s.wa.groups.get(wg)!.ephemeralDuration = 604_800
    expect(await s.command(ALICE, room, '!relay status')).toContain('• Disappearing messages: Signal 1 day, WhatsApp 1 week')
  })
})
