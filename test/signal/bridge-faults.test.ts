// When the Signal side misbehaves, as seen from Matrix: a dropped event stream and a daemon that goes
// away lose nothing, and each error code signal-cli answers with is handled as its meaning says.
import { afterEach, describe, expect, it } from 'vitest'
import { groupText } from '../fakes/signal-envelopes.ts'
import { ALICE } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { SIG_BOB, SIG_RELAY, bridgedRoom, realScenario, waitForNotice, type RealScenario } from '../support/networks.ts'
import { content, settled } from '../support/relay.ts'

/** Retries spread over a few seconds: long enough for a daemon to come back. */
const PATIENT = { initialMs: 50, maxMs: 400, maxAttempts: 12 }

describe.each(DB_KINDS)('Signal faults through the bridge on %s', kind => {
  let s: RealScenario
  afterEach(async () => s?.stop())

  async function setup() {
    s = await realScenario(kind, { backoff: PATIENT })
    const r = await bridgedRoom(s)
    return { room: r.room, group: r.signalGroup! }
  }
  const messagesSent = () => s.daemon.callsOf('send').filter(c => c.result !== undefined).map(c => c.params.message)
  const statusEvents = (room: string) => s.hs.timeline(room).filter(e => e.type === 'com.beeper.message_send_status')

  it('a dropped event stream reconnects, and what Signal people said meanwhile arrives in Matrix in order', async () => {
    const { room, group } = await setup()
    s.daemon.dropStreams()
    // on-connection mode: the daemon keeps these until a stream is attached again.
    for (const text of ['while', 'you', 'were', 'away']) s.daemon.push(SIG_RELAY.number, groupText(SIG_BOB, group, text))
    await s.daemon.until(() => s.daemon.hasStream(SIG_RELAY.number))
    await s.hs.waitFor(() => s.hs.timeline(room).filter(e => e.sender.startsWith('@signal_') && e.type === 'm.room.message').length === 4)
    expect(s.hs.timeline(room).filter(e => e.sender.startsWith('@signal_') && e.type === 'm.room.message').map(e => content(e).body)).toEqual(['while', 'you', 'were', 'away'])
  })

  it('Matrix messages sent while the daemon is away are queued and delivered in order once it is back, none twice', async () => {
    const { room } = await setup()
    await s.daemon.goAway(600)
    for (const text of ['one', 'two', 'three']) await s.hs.sendMessage(ALICE, room, text)
    await s.daemon.until(() => messagesSent().length === 3)
    await settled(s)
    expect(messagesSent()).toEqual(['Alice (Matrix): one', 'Alice (Matrix): two', 'Alice (Matrix): three'])
    expect(s.botNotices(room).filter(n => n.startsWith('⚠️'))).toEqual([])
  })

  it('a rate limit (-5) is retried after the retryAfterSeconds Signal gave, and then delivered', async () => {
    const { room } = await setup()
    s.daemon.fail('send', -5, 'Failed to send message due to rate limiting', { response: { timestamp: 1, results: [{ recipientAddress: { uuid: SIG_BOB.aci, number: null }, type: 'RATE_LIMIT_FAILURE', retryAfterSeconds: 1 }] } })
    await s.hs.sendMessage(ALICE, room, 'slowly')
    const refused = await s.daemon.waitForCall('send')
    const started = Date.now()
    await s.daemon.until(() => messagesSent().length === 1)
    expect(Date.now() - started).toBeGreaterThanOrEqual(900)
    expect(s.daemon.callsOf('send').map(c => c.params.message)).toEqual([refused.params.message, 'Alice (Matrix): slowly'])
    expect(s.botNotices(room).filter(n => n.startsWith('⚠️'))).toEqual([])
  })

  it('transient errors (-3, -32603, every recipient NETWORK_FAILURE) are retried without a word in Matrix', async () => {
    const { room } = await setup()
    s.daemon.fail('send', -3, 'Failed to send message: IOException')
    s.daemon.fail('send', -32603, 'null (NullPointerException)')
    s.daemon.fail('send', -1, 'Failed to send message', { response: { timestamp: 1, results: [{ recipientAddress: { uuid: SIG_BOB.aci, number: null }, type: 'NETWORK_FAILURE' }] } })
    await s.hs.sendMessage(ALICE, room, 'persistent')
    await s.daemon.until(() => messagesSent().length === 1)
    expect(s.daemon.callsOf('send')).toHaveLength(4)
    await settled(s)
    expect(s.botNotices(room).filter(n => n.startsWith('⚠️'))).toEqual([])
  })

  it('an untrusted identity (-4) is reported in the room with what the operator should do, never in the group', async () => {
    const { room } = await setup()
    s.daemon.fail('send', -4, 'Failed to send message due to untrusted identities', { response: { timestamp: 1, results: [{ recipientAddress: { uuid: SIG_BOB.aci, number: null }, type: 'IDENTITY_FAILURE' }] } })
    const event = await s.hs.sendMessage(ALICE, room, 'hello?')
    const notice = await waitForNotice(s, room, /not delivered to Signal/)
    expect(notice).toMatch(/^⚠️ A message from Alice was not delivered to Signal: .*safety number.*--trust-new-identities always/)
    await s.hs.waitFor(() => statusEvents(room).length > 0 || undefined)
    expect(content(statusEvents(room)[0]!)).toMatchObject({ status: 'FAIL_PERMANENT', network: 'signal', 'm.relates_to': { event_id: event } })
    expect(s.daemon.callsOf('send')).toHaveLength(1) // permanent: not retried
  })

  it('a group the relay is no longer in (-1 Group not found) is reported with how to link another', async () => {
    const { room, group } = await setup()
    s.daemon.groups.delete(group)
    await s.hs.sendMessage(ALICE, room, 'anyone?')
    expect(await waitForNotice(s, room, /not delivered to Signal/)).toMatch(/no longer exists.*`!relay link signal <group>`/)
    // The next message is tried again (a failure does not block the queue) and reported the same way.
    await s.hs.sendMessage(ALICE, room, 'still?')
    await s.hs.waitFor(() => s.botNotices(room).filter(n => n.startsWith('⚠️')).length === 2 || undefined)
  })
})
