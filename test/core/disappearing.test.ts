// Disappearing messages (issue 17, point 5) through the whole bridge with the real adapters: a message from a group
// whose timer is on (Signal: the dataMessage's `expiresInSeconds`, signal-cli.md §4.1; WhatsApp: the message's
// contextInfo.expiration, as a phone stamps every message in an ephemeral chat) has its Matrix copy redacted when the
// timer runs out. Time is the bridge's injected clock, moved on by the test.
import { proto } from '@whiskeysockets/baileys'
import { afterEach, describe, expect, it } from 'vitest'
import type { FakeEvent } from '../fakes/homeserver.ts'
import { groupText } from '../fakes/signal-envelopes.ts'
import { DB_KINDS } from '../support/db.ts'
import { SIG_BOB, SIG_RELAY, WA_DAVE, bridgedRoom, realScenario, type RealScenario } from '../support/networks.ts'
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
