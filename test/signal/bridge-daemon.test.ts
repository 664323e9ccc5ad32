// What signal-cli produces that a friendlier fake never did, through the whole bridge: fields the bridge does not
// know inside data messages, edits, sync transcripts and send results (0.14.x keeps adding them, §1); the state
// just before an unlink, when every send answers -1 with each recipient NETWORK_FAILURE (§11.1, §11.5); and
// ≤0.14.3's stream whose status line and headers come only with the first keepalive (§3.3), with a backlog
// queued behind them.
import { afterEach, describe, expect, it } from 'vitest'
import type { FakeEvent } from '../fakes/homeserver.ts'
import { edit, groupText, reaction } from '../fakes/signal-envelopes.ts'
import { ALICE } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { SIG_BOB, SIG_CAROL, SIG_RELAY, bridgedRoom, loginSignal, realScenario, waitForNotice, type RealScenario } from '../support/networks.ts'
import { content, settled } from '../support/relay.ts'

/** Retries a few seconds apart: the unlink comes while the message is still being retried. */
const PATIENT = { initialMs: 200, maxMs: 1000, maxAttempts: 15 }

describe.each(DB_KINDS)('signal-cli as it really answers, through the bridge, on %s', kind => {
  let s: RealScenario
  afterEach(async () => s?.stop())

  const said = (room: string, match: (e: FakeEvent) => boolean) => s.hs.waitForEvent(room, match)
  const delivered = (text: string) => s.daemon.callsOf('send').filter(c => c.result !== undefined && c.params.message === `Alice (Matrix): ${text}`)
  const signalTexts = (room: string) => s.hs.timeline(room).filter(e => e.sender.startsWith('@signal_') && e.type === 'm.room.message' && !content(e)['m.new_content']).map(e => content(e).body)

  it('unknown fields inside data messages, edits and send results are ignored: everything is relayed both ways', async () => {
    s = await realScenario(kind, { daemon: { unknownFields: true } })
    const { room, signalGroup } = await bridgedRoom(s)
    const group = signalGroup!
    const first = groupText(SIG_BOB, group, 'hello from 0.14')
    s.daemon.push(SIG_RELAY.number, first)
    const ev = await said(room, e => content(e).body === 'hello from 0.14')
    s.daemon.push(SIG_RELAY.number, edit(SIG_BOB, group, first.timestamp as number, 'hello from 0.14.6'))
    await said(room, e => content(e)['m.new_content']?.body === 'hello from 0.14.6')
    s.daemon.push(SIG_RELAY.number, reaction(SIG_CAROL, group, { emoji: '👍', target: SIG_BOB, targetSentTimestamp: first.timestamp as number }))
    await said(room, e => e.type === 'm.reaction' && content(e)['m.relates_to']?.event_id === ev.event_id)
    const mine = await s.hs.sendMessage(ALICE, room, 'answered with extra fields')
    const call = await s.daemon.waitForCall('send', c => c.result !== undefined)
    expect(call.result).toMatchObject({ futureResultField: { x: 1 }, results: [expect.objectContaining({ futureRecipientField: 'x', type: 'SUCCESS' }), expect.anything()] })
    await settled(s)
    // The copy was recorded from that result: an edit of the Matrix message aims at it.
    await s.hs.sendMessage(ALICE, room, { msgtype: 'm.text', body: '* fixed', 'm.new_content': { msgtype: 'm.text', body: 'fixed' }, 'm.relates_to': { rel_type: 'm.replace', event_id: mine } })
    const editCall = await s.daemon.waitForCall('send', c => c.params.editTimestamp !== undefined)
    expect(editCall.params.editTimestamp).toBe((call.result as { timestamp: number }).timestamp)
    expect(s.botNotices(room).filter(n => n.startsWith('⚠️'))).toEqual([])
  })

  it('sends that fail with every recipient NETWORK_FAILURE just before an unlink are retried, not counted delivered, and go out once after the relink', async () => {
    s = await realScenario(kind, { backoff: PATIENT })
    const { room, dm, signalLogin } = await bridgedRoom(s)
    s.daemon.failingAccounts.add(SIG_RELAY.number)
    await s.hs.sendMessage(ALICE, room, 'before the unlink')
    await s.daemon.until(() => s.daemon.callsOf('send').length >= 2)
    const refused = s.daemon.callsOf('send')
    expect(refused.every(c => c.result === undefined)).toBe(true)
    expect(delivered('before the unlink')).toEqual([])
    expect(s.botNotices(room).filter(n => n.startsWith('⚠️'))).toEqual([])
    // signal-cli then notices the rejected credentials and drops the account.
    s.daemon.unlink(SIG_RELAY.number)
    await waitForNotice(s, room, /no longer linked/)
    expect(await loginSignal(s, dm)).toBe(signalLogin)
    await s.daemon.until(() => delivered('before the unlink').length === 1)
    await s.hs.sendMessage(ALICE, room, 'after the relink')
    await s.daemon.until(() => delivered('after the relink').length === 1)
    await settled(s)
    expect(delivered('before the unlink')).toHaveLength(1)
    expect(s.botNotices(room).filter(n => n.startsWith('⚠️'))).toEqual([])
  })

  it('a backlog queued while the stream’s headers wait for the first keepalive (≤0.14.3) all arrives, in order', async () => {
    s = await realScenario(kind, { daemon: { delayHeaders: true, keepaliveMs: 800 } })
    const { room, signalGroup } = await bridgedRoom(s)
    const group = signalGroup!
    s.daemon.dropStreams()
    const queued = ['one', 'two', 'three', 'four']
    for (const text of queued) s.daemon.push(SIG_RELAY.number, groupText(SIG_BOB, group, text))
    // The bridge reconnects; until the first keepalive it has no response yet, and more arrive meanwhile.
    await s.daemon.until(() => s.daemon.hasStream(SIG_RELAY.number))
    for (const text of ['five', 'six']) s.daemon.push(SIG_RELAY.number, groupText(SIG_CAROL, group, text))
    await s.hs.waitFor(() => signalTexts(room).length >= 6 || undefined, { what: 'six Signal messages in Matrix' })
    await settled(s)
    expect(signalTexts(room)).toEqual([...queued, 'five', 'six'])
  })
})
