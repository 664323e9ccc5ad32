// Matrix messages to several Signal groups at once share the bridge's HTTP requests to signal-cli (one JSON-RPC
// batch, §3), yet each group's messages still arrive in order, and a batch the daemon drops is delivered later.
import { afterEach, describe, expect, it, vi } from 'vitest'
import { ALICE, roomWithBot } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { bridgedRoom, realScenario, signalGroup, type RealScenario } from '../support/networks.ts'
import { settled } from '../support/relay.ts'

/** Retries spread over a few seconds: long enough for a daemon to come back. */
const PATIENT = { initialMs: 50, maxMs: 400, maxAttempts: 12 }

describe.each(DB_KINDS)('Signal sends batched through the bridge on %s', kind => {
  let s: RealScenario
  afterEach(async () => s?.stop())

  /** Three rooms, each bridged to a Signal group of its own through the one relay. */
  async function setup(): Promise<Array<{ room: string; group: string }>> {
    // One request in flight at a time (the client's lanes narrowed to one), so that three groups show batching.
    s = await realScenario(kind, { backoff: PATIENT, signal: { rpcRequestsInFlight: 1 } })
    const first = await bridgedRoom(s)
    const out = [{ room: first.room, group: first.signalGroup! }]
    for (const name of ['Cousins', 'Neighbours']) {
      const room = await roomWithBot(s)
      const group = signalGroup(s, name)
      const reply = await s.command(ALICE, room, `!relay link signal ${group}`)
      if (!reply.startsWith('Linked this room')) throw new Error(`link signal failed: ${reply}`)
      out.push({ room, group })
    }
    return out
  }
  const sends = () => s.daemon.callsOf('send')
  const sendOf = (text: string) => sends().find(c => c.params.message === `Alice (Matrix): ${text}`)
  /** The messages each group received (sends the daemon carried out), in arrival order. */
  const receivedIn = (group: string) => sends().filter(c => c.params.groupId === group && c.result !== undefined).map(c => String(c.params.message).replace('Alice (Matrix): ', ''))
  /** Holds the daemon's answers to the requests that arrive from now on (their calls are carried out). */
  function holdAnswers(): () => void {
    let release!: () => void
    s.daemon.answersHeld = new Promise<void>(resolve => (release = resolve))
    return release
  }

  /**
   * The first room's send goes out and its answer is held; the other two rooms' sends then reach the client
   * (seen by a spy on its entry point) and wait there for the request in flight.
   */
  async function twoWaitingBehindOne(rooms: Array<{ room: string }>, texts: [string, string, string]) {
    const calls = vi.spyOn(s.signalNet.client, 'call')
    const entered = (text: string) => calls.mock.calls.some(([method, params]) => method === 'send' && params?.message === `Alice (Matrix): ${text}`)
    const release = holdAnswers()
    await s.hs.sendMessage(ALICE, rooms[0]!.room, texts[0])
    await s.daemon.until(() => sendOf(texts[0]) !== undefined)
    await s.hs.sendMessage(ALICE, rooms[1]!.room, texts[1])
    await s.hs.sendMessage(ALICE, rooms[2]!.room, texts[2])
    await s.daemon.until(() => entered(texts[1]) && entered(texts[2]))
    expect(sendOf(texts[1])).toBeUndefined() // waiting for the request in flight, not sent on their own
    return release
  }

  it('sends to other groups made while one is in flight share the next request, and each group gets its messages in order', async () => {
    const rooms = await setup()
    const release = await twoWaitingBehindOne(rooms, ['a0', 'b0', 'c0'])
    // More for every group while they wait: each group's queue sends them in turn behind its first.
    const texts = rooms.map((_, r) => Array.from({ length: 8 }, (_, i) => `${'abc'[r]}${i + 1}`))
    for (let i = 0; i < 8; i++) for (const [r, { room }] of rooms.entries()) await s.hs.sendMessage(ALICE, room, texts[r]![i]!)
    s.daemon.answersHeld = undefined
    release()
    await s.daemon.until(() => rooms.every(({ group }) => receivedIn(group).length === 9))
    expect(sendOf('b0')!.request).toBe(sendOf('c0')!.request)
    expect(s.daemon.rpcRequests[sendOf('b0')!.request]).toBeGreaterThanOrEqual(2)
    for (const [r, { group }] of rooms.entries()) expect(receivedIn(group)).toEqual([`${'abc'[r]}0`, ...texts[r]!])
    await settled(s)
    expect(s.botNotices(rooms[0]!.room).filter(n => n.startsWith('⚠️'))).toEqual([])
  })

  it('the daemon going away while a batch is in flight fails all of its sends, and the outbox delivers them once it is back', async () => {
    const rooms = await setup()
    const releaseFirst = await twoWaitingBehindOne(rooms, ['a0', 'b0', 'c0'])
    // The first request is answered; the batch behind it is carried out, but its answer never comes.
    holdAnswers()
    releaseFirst()
    await s.daemon.until(() => sendOf('b0') !== undefined && sendOf('c0') !== undefined)
    const batch = sendOf('b0')!.request
    expect(sendOf('c0')!.request).toBe(batch)
    await s.hs.sendMessage(ALICE, rooms[1]!.room, 'b1')
    s.daemon.answersHeld = undefined
    await s.daemon.goAway(300)
    // Both are sent again in a later request (at least once: the daemon had carried them out), then what followed.
    await s.daemon.until(() => receivedIn(rooms[1]!.group).includes('b1') && receivedIn(rooms[2]!.group).length === 2)
    expect(receivedIn(rooms[1]!.group)).toEqual(['b0', 'b0', 'b1'])
    expect(receivedIn(rooms[2]!.group)).toEqual(['c0', 'c0'])
    expect(sends().filter(c => c.params.message === 'Alice (Matrix): c0').map(c => c.request > batch)).toEqual([false, true])
    await settled(s)
    const { rows } = await s.db.query<{ state: string }>(`SELECT DISTINCT state FROM outbox WHERE network = 'signal'`)
    expect(rows.map(r => r.state)).toEqual(['sent'])
    for (const { room } of rooms) expect(s.botNotices(room).filter(n => n.startsWith('⚠️'))).toEqual([])
  })
})
