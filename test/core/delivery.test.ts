// The delivery queue: pending deliveries survive a restart and go out once, in order; a delivery that fails
// for good is reported in Matrix only; a logged-out relay holds deliveries until it is back.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { ALICE, bridgedRoom, scenario, type Scenario } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { bodyOf, botEvents, content, settled, until } from '../support/relay.ts'

describe.each(DB_KINDS)('delivery on %s', kind => {
  let s: Scenario
  let own: Scenario | undefined
  afterEach(async () => {
    await own?.stop()
    own = undefined
  })

  const outboxRows = async (chatId: string) =>
    (await s.db.query<{ state: string; attempts: number }>('SELECT state, attempts FROM outbox WHERE chat_id = $1 ORDER BY id', [chatId])).rows

  it('deliveries pending when the bridge stops go out after the restart, once each, in order', async () => {
    s = own = await scenario(kind)
    const { room, sg, wg } = await bridgedRoom(s)
    // Signal is down and asks for a retry much later: the queue for the group waits behind the first message.
    s.signal.failNext('transient', 'Signal is unreachable.', 1, { retryAfterMs: 3_600_000 })
    for (const text of ['first', 'second', 'third']) await s.hs.sendMessage(ALICE, room, text)
    await s.whatsapp.waitForSentTo(wg.id, 3)
    const rows = await until(async () => {
      const r = await outboxRows(sg.id)
      return r.length === 3 && r[0]!.attempts === 1 && r[0]!.state === 'pending' && r
    }, 'the first Signal delivery to fail once')
    expect(rows.map(r => r.state)).toEqual(['pending', 'pending', 'pending'])
    expect(rows[0]!.attempts).toBe(1)
    expect(s.signal.sentTo(sg.id)).toEqual([])
    // The hour passes while the bridge is down.
    await s.restart(async () => {
      await s.db.query(`UPDATE outbox SET next_attempt_at = now() WHERE state = 'pending'`)
    })
    const sent = await s.signal.waitForSentTo(sg.id, 3)
    await settled(s)
    expect(sent.map(x => x.text)).toEqual(['Alice (Matrix): first', 'Alice (Matrix): second', 'Alice (Matrix): third'])
    expect(s.signal.sentTo(sg.id)).toHaveLength(3)
    expect(s.whatsapp.sentTo(wg.id)).toHaveLength(3)
    expect((await outboxRows(sg.id)).map(r => r.state)).toEqual(['sent', 'sent', 'sent'])
  })

  it('messages behind one waiting for its retry wait behind it, whether queued before its failure or after: none goes out first', async () => {
    s = own = await scenario(kind)
    const { room, sg, wg } = await bridgedRoom(s)
    await s.signal.say(sg.id, { id: 'aci-bob', name: 'Bob' }, 'hello')
    const hello = await s.hs.waitForEvent(room, e => bodyOf(e) === 'hello')
    await settled(s) // the copy of 'hello' recorded, so that a reply to it is rendered as one
    // A reply goes out on its own (never in a run of plain messages), so a plain message queued behind it
    // meets the row-by-row path; 'three' arrives after the failure and meets a queue whose head waits.
    s.signal.failNext('transient', 'Signal is unreachable.', 1, { retryAfterMs: 3_600_000 })
    s.hs.pause()
    await s.hs.sendMessage(ALICE, room, { msgtype: 'm.text', body: 'one', 'm.relates_to': { 'm.in_reply_to': { event_id: hello.event_id } } })
    await s.hs.sendMessage(ALICE, room, 'two')
    s.hs.resume()
    await until(async () => (await outboxRows(sg.id))[0]?.attempts === 1, 'the reply to Signal to fail once')
    await s.hs.sendMessage(ALICE, room, 'three')
    // WhatsApp has all three: the Signal queue was kicked for each of them too.
    await s.whatsapp.waitForSentTo(wg.id, 4)
    // Stopping waits for the queues' work in progress, so what Signal got by then is all it would get.
    await s.restart(async () => {
      expect(s.signal.sentTo(sg.id)).toEqual([])
      expect((await outboxRows(sg.id)).map(r => r.state)).toEqual(['pending', 'pending', 'pending'])
      await s.db.query(`UPDATE outbox SET next_attempt_at = now() WHERE state = 'pending'`)
    })
    const sent = await s.signal.waitForSentTo(sg.id, 3)
    await settled(s)
    expect(sent.map(x => x.text.replace(/ \(reply to .*\)$/, ' (reply)'))).toEqual(['Alice (Matrix): one (reply)', 'Alice (Matrix): two', 'Alice (Matrix): three'])
    expect(s.signal.sentTo(sg.id)).toHaveLength(3)
  })

  it('no delivery is retried before the retry-after the network asked for has passed', async () => {
    // The outbox's own backoff starts at 20 ms here; the network asks for far more.
    s = own = await scenario(kind)
    const { room, sg } = await bridgedRoom(s)
    const retryAfterMs = 1_500
    s.signal.failNext('transient', 'Signal is rate limiting.', 1, { retryAfterMs })
    await s.hs.sendMessage(ALICE, room, 'patient')
    const [sent] = await s.signal.waitForSentTo(sg.id, 1)
    const [refused] = s.signal.refused
    expect(refused!.delivery.target.chatId).toBe(sg.id)
    // A lower bound only: however slow the machine, the send cannot come earlier than this.
    expect(sent!.at).toBeGreaterThanOrEqual(refused!.at + retryAfterMs)
    expect(s.signal.refused).toHaveLength(1)
  })

  describe('with one bridge for the rest', () => {
    let shared: Scenario
    beforeAll(async () => {
      shared = await scenario(kind)
    })
    afterAll(async () => shared?.stop())
    // Each test uses its own room and groups; `s` points at the shared bridge so the helpers above work.
    beforeAll(() => {
      s = shared
    })

    it('a backlog longer than one batch of sends goes out whole after an outage, with no further message to nudge it', async () => {
      const { room, sg } = await bridgedRoom(s)
      s.signal.failNext('transient', 'Signal is unreachable.', 1, { retryAfterMs: 1_000 })
      const texts = Array.from({ length: 30 }, (_, i) => `backlog ${i}`)
      for (const t of texts) await s.hs.sendMessage(ALICE, room, t)
      const sent = await s.signal.waitForSentTo(sg.id, 30)
      expect(sent.map(x => x.text)).toEqual(texts.map(t => `Alice (Matrix): ${t}`))
    })

    it('a delivery that fails for good is a notice and a message-status event in Matrix, and nothing in the other group', async () => {
      const { room, sg, wg } = await bridgedRoom(s)
      s.signal.failNext('permanent', 'The group refused this message.')
      const event = await s.hs.sendMessage(ALICE, room, 'doomed on Signal')
      const status = await s.hs.waitForEvent(room, e => e.type === 'com.beeper.message_send_status')
      expect(status.sender).toBe(s.hs.botUserId)
      expect(content(status)).toMatchObject({
        network: 'signal', status: 'FAIL_PERMANENT', message: 'The group refused this message.',
        'm.relates_to': { rel_type: 'm.reference', event_id: event },
      })
      expect(s.botNotices(room).filter(n => n.startsWith('⚠️'))).toEqual(['⚠️ A message from Alice was not delivered to Signal: The group refused this message.'])
      // The queue goes on behind the failed row.
      await s.hs.sendMessage(ALICE, room, 'next one')
      await s.signal.waitForSentTo(sg.id, 1)
      await settled(s)
      expect(s.signal.sentTo(sg.id).map(x => x.text)).toEqual(['Alice (Matrix): next one'])
      expect(s.whatsapp.sentTo(wg.id).map(x => x.text)).toEqual(['Alice (Matrix): doomed on Signal', 'Alice (Matrix): next one'])
      expect((await outboxRows(sg.id)).map(r => r.state)).toEqual(['failed', 'sent'])
    })

    it('a Signal message that WhatsApp refuses is reported in Matrix as a notice; Signal sees nothing of it', async () => {
      const { room, sg, wg } = await bridgedRoom(s)
      s.whatsapp.failNext('permanent', 'WhatsApp refused the message.')
      await s.signal.say(sg.id, { id: 'aci-bob', name: 'Bob' }, 'from signal')
      await s.hs.waitFor(() => s.botNotices(room).some(n => n.startsWith('⚠️')), { what: 'the failure notice' })
      const ghostEvent = await s.hs.waitForEvent(room, e => e.sender === '@signal_aci-bob:example.org' && e.type === 'm.room.message')
      // A status event needs the message's Matrix copy, which may still be on its way when WhatsApp refuses.
      for (const status of botEvents(s, room, 'com.beeper.message_send_status')) {
        expect(content(status)).toMatchObject({ network: 'whatsapp', status: 'FAIL_PERMANENT', 'm.relates_to': { event_id: ghostEvent.event_id } })
      }
      expect(s.botNotices(room).filter(n => n.startsWith('⚠️'))).toEqual(['⚠️ A message from Bob was not delivered to WhatsApp: WhatsApp refused the message.'])
      await settled(s)
      expect(s.signal.sentTo(sg.id)).toEqual([])
      expect(s.whatsapp.sentTo(wg.id)).toEqual([])
    })

    it('a transient failure that never heals is given up after the last attempt and reported the same way', async () => {
      const { room, sg, wg } = await bridgedRoom(s)
      s.signal.failNext('transient', 'Signal timed out.', 4)
      await s.hs.sendMessage(ALICE, room, 'unlucky')
      await s.hs.waitForEvent(room, e => e.type === 'com.beeper.message_send_status')
      expect(s.botNotices(room).filter(n => n.startsWith('⚠️'))).toEqual(['⚠️ A message from Alice was not delivered to Signal: Signal timed out. The bridge gave up after 4 attempts.'])
      await settled(s)
      expect(s.signal.sentTo(sg.id)).toEqual([])
      expect(s.whatsapp.sentTo(wg.id)).toHaveLength(1)
    })

    it('a relay reported logged out holds deliveries (not failed, nobody told of a failure); connected again, they go out in order', async () => {
      const { room, sg, wg } = await bridgedRoom(s)
      const loginId = s.bridge.portals.byRoom(room)!.signalLogin!
      await s.signal.setState(loginId, 'logged_out', 'the phone was offline for 14 days')
      for (const text of ['one', 'two', 'three']) await s.hs.sendMessage(ALICE, room, text)
      await s.whatsapp.waitForSentTo(wg.id, 3)
      await settled(s)
      const held = await outboxRows(sg.id)
      expect(held[0]!.state).toBe('held')
      expect(held.some(r => r.state === 'failed')).toBe(false)
      expect(s.signal.sentTo(sg.id)).toEqual([])
      expect(botEvents(s, room, 'com.beeper.message_send_status')).toEqual([])
      expect(s.botNotices(room).filter(n => n.startsWith('⚠️'))).toEqual([])
      const status = await s.command(ALICE, room, '!relay status')
      expect(status).toContain(`relayed by ${loginId}, logged out (the phone was offline for 14 days)`)
      expect(status).toMatch(/held for Signal/)
      await s.signal.setState(loginId, 'connected')
      const sent = await s.signal.waitForSentTo(sg.id, 3)
      expect(sent.map(x => x.text)).toEqual(['Alice (Matrix): one', 'Alice (Matrix): two', 'Alice (Matrix): three'])
      await settled(s)
      expect((await outboxRows(sg.id)).map(r => r.state)).toEqual(['sent', 'sent', 'sent'])
    })

    it('deliveries held longer than bridge.hold_retention_hours are dropped with one notice in Matrix, not one per message', async () => {
      const { room, sg } = await bridgedRoom(s)
      const loginId = s.bridge.portals.byRoom(room)!.signalLogin!
      await s.signal.setState(loginId, 'logged_out', 'unlinked')
      for (const text of ['old one', 'old two', 'old three']) await s.hs.sendMessage(ALICE, room, text)
      await settled(s)
      expect((await outboxRows(sg.id))[0]!.state).toBe('held')
      await s.db.query(`UPDATE outbox SET created_at = now() - interval '15 days' WHERE chat_id = $1`, [sg.id])
      await s.bridge.outbox.expireHeld()
      const notices = s.botNotices(room).filter(n => n.startsWith('⚠️'))
      expect(notices).toHaveLength(1)
      expect(notices[0]).toMatch(/was not delivered to Signal: The relay account was logged out for longer than the bridge holds messages \(336 hours\), so 3 messages from then on were dropped/)
      expect((await outboxRows(sg.id)).map(r => r.state)).toEqual(['failed', 'failed', 'failed'])
      await s.signal.setState(loginId, 'connected')
      await s.hs.sendMessage(ALICE, room, 'new one')
      expect((await s.signal.waitForSentTo(sg.id, 1)).map(x => x.text)).toEqual(['Alice (Matrix): new one'])
    })
  })
})
