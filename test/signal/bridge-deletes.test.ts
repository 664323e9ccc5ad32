// A Matrix redaction of a message that came from Signal, through the whole bridge. The relay account may delete
// its own messages (remoteDelete); someone else's only as a group admin, with signal-cli 0.14's sendAdminDelete
// (SendAdminDeleteCommand). Receiving clients drop an admin delete from a non-admin without a word
// (IncomingMessageHandler), so the bridge has to decide from listGroups before it sends anything. Messages
// carry today's timestamps: deletion for everyone has a 24-hour window (§8).
import { afterEach, describe, expect, it } from 'vitest'
import type { FakeEvent } from '../fakes/homeserver.ts'
import { groupText } from '../fakes/signal-envelopes.ts'
import { ALICE } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { SIG_BOB, SIG_RELAY, bridgedRoom, realScenario, waitForNotice, type RealScenario } from '../support/networks.ts'
import { content, settled } from '../support/relay.ts'

describe.each(DB_KINDS)('Matrix redactions of Signal messages on %s', kind => {
  let s: RealScenario
  afterEach(async () => s?.stop())

  async function setup() {
    s = await realScenario(kind)
    const r = await bridgedRoom(s)
    return { room: r.room, group: r.signalGroup! }
  }
  const said = (room: string, match: (e: FakeEvent) => boolean) => s.hs.waitForEvent(room, match)
  const deletions = () => [...s.daemon.callsOf('remoteDelete'), ...s.daemon.callsOf('sendAdminDelete')]

  it('a Matrix redaction of a Signal member’s message sends nothing to Signal while the relay is not a group admin, and the room is told why', async () => {
    const { room, group } = await setup()
    s.daemon.groups.get(group)!.admins = [SIG_BOB.aci]
    s.daemon.push(SIG_RELAY.number, groupText(SIG_BOB, group, 'oops', { timestamp: Date.now() }))
    const ev = await said(room, e => content(e).body === 'oops')
    await s.hs.redact(ALICE, room, ev.event_id)
    const notice = await waitForNotice(s, room, /deletion .* not delivered to Signal/)
    expect(notice).toMatch(/only group admins .* the relay account is not an admin of this Signal group/)
    await s.hs.sendMessage(ALICE, room, 'after')
    await s.daemon.waitForCall('send', c => c.params.message === 'Alice (Matrix): after')
    expect(deletions()).toEqual([])
  })

  it('as a group admin, the relay deletes a Signal member’s message with sendAdminDelete, and the room is told it did so as admin', async () => {
    const { room, group } = await setup()
    expect(s.daemon.groups.get(group)!.admins).toEqual([SIG_RELAY.aci])
    const bobs = groupText(SIG_BOB, group, 'my address is …', { timestamp: Date.now() })
    s.daemon.push(SIG_RELAY.number, bobs)
    const ev = await said(room, e => content(e).body === 'my address is …')
    await s.hs.redact(ALICE, room, ev.event_id)
    const call = await s.daemon.waitForCall('sendAdminDelete')
    expect(call.params).toMatchObject({ account: SIG_RELAY.number, groupId: group, targetAuthor: SIG_BOB.aci, targetTimestamp: bobs.timestamp })
    expect(s.daemon.adminDeletes).toEqual([{ groupId: group, targetAuthor: SIG_BOB.aci, targetTimestamp: bobs.timestamp, honoured: true }])
    await waitForNotice(s, room, /relay account deleted this message for everyone in the Signal group, as a group admin/)
    await settled(s)
    expect(s.botNotices(room).filter(n => n.startsWith('⚠️'))).toEqual([])
    expect(s.daemon.callsOf('remoteDelete')).toEqual([])
  })

  it('the relay’s own copy is deleted with remoteDelete, admin or not, and nothing is said about it', async () => {
    const { room, group } = await setup()
    s.daemon.groups.get(group)!.admins = [SIG_BOB.aci]
    const mine = await s.hs.sendMessage(ALICE, room, 'typo')
    const sent = await s.daemon.waitForCall('send', c => c.result !== undefined)
    await settled(s)
    await s.hs.redact(ALICE, room, mine)
    const del = await s.daemon.waitForCall('remoteDelete')
    expect(del.params).toMatchObject({ groupId: group, targetTimestamp: (sent.result as { timestamp: number }).timestamp })
    await settled(s)
    expect(s.daemon.callsOf('sendAdminDelete')).toEqual([])
    expect(s.botNotices(room).filter(n => /deleted|⚠️/.test(n))).toEqual([])
  })
})
