// At low rates a delivery's 'sent' mark, with nothing to share its statement, waits for the next message's record
// statement to carry it (Outbox.carry): one commit per message instead of two. Here it waits for ever unless a record
// carries it, so each test shows what else must let it go: someone answering the copy it records, and a record that
// failed. Nothing may be lost or sent twice on the way. (Its cost: test/core/lone-message-cost.test.ts.)
import { afterEach, describe, expect, it } from 'vitest'
import type { FakeEvent } from '../fakes/homeserver.ts'
import { ALICE, bridgedRoom, scenario, type Scenario } from '../support/bridge.ts'
import { beforeEachQuery, DB_KINDS } from '../support/db.ts'
import { bodyOf, until } from '../support/relay.ts'

const FOR_EVER = 3_600_000
const BOB = { id: 'aci-bob', name: 'Bob' }

describe.each(DB_KINDS)('a lone mark waiting for a carrier, on %s', kind => {
  let s: Scenario | undefined
  afterEach(async () => {
    await s?.stop()
    s = undefined
  })

  it('goes at once when a reply needs the copy it records', async () => {
    s = await scenario(kind, { markCarryMs: FOR_EVER })
    const { room, sg } = await bridgedRoom(s)
    const asked = await s.signal.say(sg.id, BOB, 'who is in?')
    const bobs = await s.hs.waitForEvent(room, e => bodyOf(e) === 'who is in?')
    // Nothing else comes to carry the copy's mark: the reply, which must find the copy it answers, makes it go. (The
    // reply comes after the send was answered: it makes its way through the homeserver. The next test has it first.)
    await s.hs.sendMessage(ALICE, room, { msgtype: 'm.text', body: 'me', 'm.relates_to': { 'm.in_reply_to': { event_id: bobs.event_id } } })
    const reply = await s.signal.waitFor(() => s!.signal.sentTo(sg.id).find(x => x.text.startsWith('Alice (Matrix): me')), 'the reply on Signal')
    expect(reply.delivery).toMatchObject({ replyTo: { remoteId: asked } })
  }, 60_000)

  it('goes as soon as the send is answered when a reply came while it was under way', async () => {
    // Synapse shows a ghost's event to the room before it answers the send: a reply can come first.
    s = await scenario(kind, { markCarryMs: FOR_EVER, homeserver: { echoBeforeAnswer: true } })
    let held: { ev: FakeEvent; release: () => void } | undefined
    let heldSeen!: () => void
    const seen = new Promise<void>(resolve => (heldSeen = resolve))
    s.hs.holdSendAnswer = ev => bodyOf(ev) !== 'who is in?' ? Promise.resolve() : new Promise(release => {
      held = { ev, release: () => release() }
      heldSeen()
    })
    const { room, sg } = await bridgedRoom(s)
    const asked = await s.signal.say(sg.id, BOB, 'who is in?')
    await seen
    await s.hs.sendMessage(ALICE, room, { msgtype: 'm.text', body: 'me', 'm.relates_to': { 'm.in_reply_to': { event_id: held!.ev.event_id } } })
    await until(async () => (await s!.db.query(`SELECT 1 FROM inbox WHERE processed_at IS NULL`)).rows.length > 0 || undefined, 'the reply waiting')
    held!.release()
    const reply = await s.signal.waitFor(() => s!.signal.sentTo(sg.id).find(x => x.text.startsWith('Alice (Matrix): me')), 'the reply on Signal')
    expect(reply.delivery).toMatchObject({ replyTo: { remoteId: asked } })
  }, 60_000)

  it('is written on its own when the record carrying it fails, and nothing is sent twice or lost', async () => {
    let failed = false
    s = await scenario(kind, {
      markCarryMs: FOR_EVER,
      wrapDb: db => beforeEachQuery(db, sql => {
        if (failed || !/INSERT INTO messages[\s\S]*UPDATE outbox SET state = 'sent'/.test(sql)) return
        failed = true
        return Promise.reject(new Error('Connection terminated unexpectedly'))
      }),
    })
    const { room, sg, wg } = await bridgedRoom(s)
    await s.hs.sendMessage(ALICE, room, 'the first')
    await s.signal.waitForSentTo(sg.id, 1)
    await s.whatsapp.waitForSentTo(wg.id, 1)
    await s.hs.sendMessage(ALICE, room, 'the second') // its record carries the first one's mark, and fails
    await s.signal.waitForSentTo(sg.id, 2)
    await s.whatsapp.waitForSentTo(wg.id, 2)
    expect(failed).toBe(true)
    await s.hs.sendMessage(ALICE, room, 'the third') // carries the second one's mark
    await s.signal.waitForSentTo(sg.id, 3)
    await s.whatsapp.waitForSentTo(wg.id, 3)
    for (const chat of [sg.id, wg.id]) {
      expect((chat === sg.id ? s.signal : s.whatsapp).sentTo(chat).map(x => x.text)).toEqual(
        ['Alice (Matrix): the first', 'Alice (Matrix): the second', 'Alice (Matrix): the third'])
    }
    // The first two messages' rows marked, the third's mark waiting for the next message.
    const marked = await s.db.query<{ state: string }>(`SELECT state FROM outbox WHERE network <> 'matrix' ORDER BY id`)
    expect(marked.rows.map(r => r.state)).toEqual(['sent', 'sent', 'sent', 'sent', 'pending', 'pending'])
  })
})
