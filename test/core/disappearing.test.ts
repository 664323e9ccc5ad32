// Disappearing messages (issue 17, point 5) through the whole bridge with the real adapters: a message from a group
// whose timer is on (Signal: the dataMessage's `expiresInSeconds`, signal-cli.md §4.1; WhatsApp: the message's
// contextInfo.expiration, as a phone stamps every message in an ephemeral chat) has its Matrix copy redacted when the
// timer runs out. Time is the bridge's injected clock, moved on by the test. A group's timer itself is group state,
// mirrored to the other group through its relay (signal-cli updateGroup `expiration`; Baileys groupToggleEphemeral).
import { proto } from '@whiskeysockets/baileys'
import { afterEach, describe, expect, it } from 'vitest'
import type { FakeEvent } from '../fakes/homeserver.ts'
import { groupText, groupUpdate, timerUpdate } from '../fakes/signal-envelopes.ts'
import { DB_KINDS } from '../support/db.ts'
import { SIG_BOB, SIG_RELAY, WA_DAVE, bridgedRoom, realScenario, until, waitForNotice, type RealScenario } from '../support/networks.ts'
import { content, settled } from '../support/relay.ts'

const WEEK = 604_800

describe.each(DB_KINDS)('disappearing messages on %s', kind => {
  let s: RealScenario
  afterEach(async () => s?.stop())

  let offset = 0
  const now = () => Date.now() + offset

  async function setup() {
    offset = 0
    s = await realScenario(kind, { now })
    const r = await bridgedRoom(s, { whatsapp: true })
    return { room: r.room, sg: r.signalGroup!, wg: r.whatsappGroup! }
  }
  const redactionOf = (event: string) => (e: FakeEvent) => e.type === 'm.room.redaction' && (e.content.redacts ?? e.redacts) === event
  const redacted = (room: string, event: string) => s.hs.timeline(room).some(redactionOf(event))
  const fromBob = (sg: string, text: string, expiresInSeconds = WEEK) => s.daemon.push(SIG_RELAY.number, groupText(SIG_BOB, sg, text, { expiresInSeconds }))

  it('a Signal message in a 1-week-timer group has its Matrix copy redacted a week later, not before; a message without a timer stays', async () => {
    const { room, sg, wg } = await setup()
    fromBob(sg, 'gone in a week')
    const copy = await s.hs.waitForEvent(room, e => content(e).body === 'gone in a week')
    fromBob(sg, 'here to stay', 0)
    const kept = await s.hs.waitForEvent(room, e => content(e).body === 'here to stay')
    // Six days on: still there (the redaction of a later, shorter-timed message is the marker that the loop looked).
    offset = 6 * 86_400_000
    fromBob(sg, 'gone in a second', 1)
    const short = await s.hs.waitForEvent(room, e => content(e).body === 'gone in a second')
    offset += 2_000
    await s.hs.waitForEvent(room, redactionOf(short.event_id))
    expect(redacted(room, copy.event_id)).toBe(false)
    // The week is up.
    offset = WEEK * 1000 + 1_000
    const red = await s.hs.waitForEvent(room, redactionOf(copy.event_id))
    expect(red.sender).toBe(copy.sender) // Bob's ghost takes back its own message
    // The copy the relay sent to WhatsApp is WhatsApp's to let disappear (its own timer), not the bridge's.
    await settled(s)
    const toWhatsApp = s.wa.sent.filter(m => m.jid === wg)
    expect(toWhatsApp.some(m => String(m.content.text).endsWith('gone in a week'))).toBe(true)
    expect(toWhatsApp.filter(m => 'delete' in m.content)).toEqual([])
    expect(redacted(room, kept.event_id)).toBe(false)
  })

  it('the redaction still happens when the week runs out while the bridge is stopped', async () => {
    const { room, sg } = await setup()
    fromBob(sg, 'outlives a restart')
    const copy = await s.hs.waitForEvent(room, e => content(e).body === 'outlives a restart')
    await settled(s)
    await s.restart(async () => { offset = WEEK * 1000 + 1_000 })
    await s.hs.waitForEvent(room, redactionOf(copy.event_id))
  })

  it('a WhatsApp message stamped with a 24-hour timer (contextInfo.expiration) is redacted in Matrix after 24 hours', async () => {
    const { room, wg } = await setup()
    const message = proto.Message.fromObject({ extendedTextMessage: { text: 'gone tomorrow', contextInfo: { expiration: 86_400 } } })
    s.wa.deliver({ chat: wg, from: WA_DAVE, pushName: 'Dave', message })
    const copy = await s.hs.waitForEvent(room, e => content(e).body === 'gone tomorrow')
    offset = 86_400_000 + 1_000
    await s.hs.waitForEvent(room, redactionOf(copy.event_id))
  })
})

describe.each(DB_KINDS)('disappearing-message timers mirrored between the groups on %s', kind => {
  let s: RealScenario
  afterEach(async () => s?.stop())

  async function setup() {
    s = await realScenario(kind)
    const r = await bridgedRoom(s, { whatsapp: true })
    return { room: r.room, sg: r.signalGroup!, wg: r.whatsappGroup! }
  }
  const notices = (room: string) => s.botNotices(room).filter(n => /disappearing/i.test(n))
  const expirations = () => s.daemon.callsOf('updateGroup').filter(c => c.params.expiration !== undefined).map(c => c.params.expiration)
  /** Dave says something on WhatsApp and it reaches Matrix: what WhatsApp sent before it has been handled. */
  async function marker(room: string, wg: string, text: string) {
    s.wa.deliver({ chat: wg, from: WA_DAVE, pushName: 'Dave', message: { conversation: text } })
    await s.hs.waitForEvent(room, e => content(e).body === text)
  }

  it('a Signal timer of 1 week is set on the WhatsApp group (groupToggleEphemeral), told in the room, and WhatsApp’s echo goes no further', async () => {
    const { room, sg, wg } = await setup()
    s.daemon.groups.get(sg)!.expirationSeconds = WEEK
    s.daemon.push(SIG_RELAY.number, timerUpdate(SIG_BOB, sg, 4, WEEK))
    await until(() => s.wa.groups.get(wg)!.ephemeralDuration === WEEK, 'the WhatsApp group’s timer')
    await s.hs.waitFor(() => notices(room).includes('Disappearing messages set to 1 week on Signal'), { what: 'the notice in the room' })
    // WhatsApp told every device, the relay's own included: nothing goes back to Signal, nor to the room again.
    await marker(room, wg, 'marker')
    await settled(s)
    expect(expirations()).toEqual([])
    expect(notices(room)).toEqual(['Disappearing messages set to 1 week on Signal'])
  })

  it('a WhatsApp member turning on a 24-hour timer reaches Signal (updateGroup expiration), and Signal’s next group update is no news', async () => {
    const { room, sg, wg } = await setup()
    s.wa.timerChanged(wg, 86_400, WA_DAVE)
    await s.daemon.until(() => s.daemon.groups.get(sg)!.expirationSeconds === 86_400)
    expect(expirations()).toEqual([86_400])
    await s.hs.waitFor(() => notices(room).includes('Disappearing messages set to 1 day on WhatsApp'), { what: 'the notice in the room' })
    // A later group update re-reads the Signal group, timer and all (listGroups' messageExpirationTime).
    s.daemon.push(SIG_RELAY.number, groupUpdate(SIG_BOB, sg, 5))
    await marker(room, wg, 'marker')
    await settled(s)
    expect(notices(room)).toEqual(['Disappearing messages set to 1 day on WhatsApp'])
    expect(s.wa.groups.get(wg)!.ephemeralDuration).toBe(86_400)
  })

  it('a timer the relay may not set on WhatsApp (info restricted to admins) is reported once, and set when the group opens up', async () => {
    const { room, sg, wg } = await setup()
    s.wa.restrictInfo(wg, true)
    s.daemon.push(SIG_RELAY.number, timerUpdate(SIG_BOB, sg, 4, WEEK))
    const warning = await waitForNotice(s, room, /could not change the WhatsApp group's disappearing-message timer to 1 week/)
    expect(warning).toMatch(/only admins may edit the WhatsApp group’s info/)
    // A second change waits too, and is not reported again.
    s.daemon.push(SIG_RELAY.number, timerUpdate(SIG_BOB, sg, 5, 86_400))
    await marker(room, wg, 'marker')
    await settled(s)
    expect(s.botNotices(room).filter(n => n.startsWith('⚠️'))).toHaveLength(1)
    expect(s.wa.groups.get(wg)!.ephemeralDuration).toBeUndefined()
    // Everyone may edit the info again: the latest timer is set.
    s.wa.restrictInfo(wg, false)
    await until(() => s.wa.groups.get(wg)!.ephemeralDuration === 86_400, 'the waiting timer on WhatsApp')
  })

  it('a WhatsApp timer the relay may not set on Signal (details for admins only) is reported once, and no updateGroup is tried', async () => {
    const { room, sg, wg } = await setup()
    s.daemon.groups.get(sg)!.permissionEditDetails = 'ONLY_ADMINS'
    s.daemon.groups.get(sg)!.admins = [SIG_BOB.aci]
    s.wa.timerChanged(wg, WEEK, WA_DAVE)
    const warning = await waitForNotice(s, room, /could not change the Signal group's disappearing-message timer to 1 week/)
    expect(warning).toMatch(/only admins may edit the Signal group’s details, and the relay account is no admin/)
    s.wa.timerChanged(wg, 0, WA_DAVE)
    await s.hs.waitFor(() => notices(room).includes('Disappearing messages turned off on WhatsApp'), { what: 'the second change in the room' })
    await marker(room, wg, 'marker')
    await settled(s)
    expect(s.botNotices(room).filter(n => n.startsWith('⚠️'))).toHaveLength(1)
    expect(expirations()).toEqual([])
  })
})

describe.each(DB_KINDS)('view-once photos and videos on %s', kind => {
  let s: RealScenario
  afterEach(async () => s?.stop())
  const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489', 'hex')

  async function setup() {
    s = await realScenario(kind)
    const r = await bridgedRoom(s, { whatsapp: true })
    return { room: r.room, sg: r.signalGroup!, wg: r.whatsappGroup! }
  }
  const media = (room: string) => s.hs.timeline(room).filter(e => e.type === 'm.room.message' && ['m.image', 'm.video', 'm.file'].includes(String(content(e).msgtype)))

  it('a Signal view-once photo becomes one line in Matrix and on WhatsApp; the photo is never fetched, nor its caption shown', async () => {
    const { room, sg, wg } = await setup()
    s.daemon.attachments.set('once1', PNG)
    s.daemon.push(SIG_RELAY.number, groupText(SIG_BOB, sg, 'only for you', { viewOnce: true, attachments: [{ contentType: 'image/jpeg', id: 'once1', size: PNG.length }] }))
    const line = await s.hs.waitForEvent(room, e => content(e).msgtype === 'm.emote')
    expect(content(line).body).toBe('sent a view-once photo; open it on Signal')
    expect(line.sender).toMatch(/^@signal_/)
    const copy = await until(() => s.wa.sent.find(m => m.jid === wg), 'the line on WhatsApp')
    expect(String(copy.content.text)).toMatch(/^\* \*?Bob \(Signal\)\*? sent a view-once photo; open it on Signal$/)
    await settled(s)
    expect(s.daemon.callsOf('getAttachment')).toEqual([])
    expect(media(room)).toEqual([])
    expect(JSON.stringify([s.hs.timeline(room), s.wa.sent])).not.toContain('only for you')
  })

  it('a WhatsApp view-once video (viewOnceMessageV2) becomes one line in Matrix and on Signal, and is never downloaded', async () => {
    const { room, sg, wg } = await setup()
    const upload = await s.wa.uploadMedia(PNG, 'video')
    const message = proto.Message.fromObject({ viewOnceMessageV2: { message: { videoMessage: { ...upload, mimetype: 'video/mp4', caption: 'only for you', viewOnce: true } } } })
    s.wa.deliver({ chat: wg, from: WA_DAVE, pushName: 'Dave', message })
    const line = await s.hs.waitForEvent(room, e => content(e).msgtype === 'm.emote')
    expect(content(line).body).toBe('sent a view-once video; open it on WhatsApp')
    await s.daemon.until(() => s.daemon.callsOf('send').some(c => c.params.groupId === sg))
    const sent = s.daemon.callsOf('send').find(c => c.params.groupId === sg)!
    expect(String(sent.params.message)).toBe('* Dave (WhatsApp) sent a view-once video; open it on WhatsApp')
    expect(sent.params.attachment ?? sent.params.attachments).toBeUndefined()
    await settled(s)
    expect(media(room)).toEqual([])
    expect(JSON.stringify(s.hs.timeline(room))).not.toContain('only for you')
  })
})
