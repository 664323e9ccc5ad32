// A message's copies to two networks are answered a moment apart, each by its own queue: their 'sent' marks share
// one statement and commit, yet no mark waits long for another queue, and a stop never waits for one at all. A
// lone mark waits a moment more for the next message's record to carry it (Outbox.carry), and no longer.
// Time here is a fake clock (setTimeout only): a mark that went out was never waiting for the bound unless the test
// moved the clock.
import { pino } from 'pino'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { LONE_MARK_LINGER_MS, MARK_CARRY_MS, MARK_SENT_SQL, Outbox, type OutboxRow } from '../../src/core/outbox.ts'
import type { Db } from '../../src/db/types.ts'
import { countingStatements, DB_KINDS, freshDb } from '../support/db.ts'

type Network = 'signal' | 'whatsapp'
const CHAT: Record<Network, string> = { signal: 'signal-group', whatsapp: 'whatsapp-group' }

/** A promise and the function that resolves it. */
function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void
  const promise = new Promise<void>(r => (resolve = r))
  return { promise, resolve }
}

/** A turn of the event loop: every step already due (an answered send's mark being added, written) has run. */
const turn = () => new Promise<void>(resolve => setImmediate(resolve))

describe.each(DB_KINDS)('sent marks on %s', kind => {
  let base: Db | undefined
  let outbox: Outbox | undefined
  // Sends still unanswered when a test ends (it failed half-way): answered, or stop() would wait for them forever.
  const unanswered = new Set<() => void>()
  afterEach(async () => {
    vi.useRealTimers()
    for (const resolve of unanswered) resolve()
    unanswered.clear()
    await outbox?.stop()
    await base?.close()
    outbox = base = undefined
  })

  /** An outbox whose sends are answered by hand, with a message queued for each of `networks`. */
  async function setup(networks: Network[]) {
    base = await freshDb(kind)
    const { db, count: marks } = countingStatements(base, sql => sql === MARK_SENT_SQL)
    const portal = (await base.query<{ id: number }>(`INSERT INTO portals (room_id) VALUES ('!r:x') RETURNING id`)).rows[0]!.id
    const answer = new Map<Network, () => void>()
    const sending = new Map(networks.map(n => [n, signal()]))
    const marked = new Map(networks.map(n => [n, signal()]))
    outbox = new Outbox({
      db, log: pino({ level: 'silent' }), holdRetentionMs: 3_600_000, onFailed: async () => {},
      onSent: row => marked.get(row.network as Network)!.resolve(),
      dispatch: (row: OutboxRow) => new Promise<void>(resolve => {
        unanswered.add(resolve)
        answer.set(row.network as Network, () => {
          unanswered.delete(resolve)
          resolve()
        })
        sending.get(row.network as Network)!.resolve()
      }),
    })
    await Outbox.enqueue(base, networks.map(network => ({
      portalId: portal, messageId: null, network, chatId: CHAT[network], op: 'message' as const, payload: { text: 'hi' },
    })))
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    for (const n of networks) outbox.kick(n, CHAT[n])
    await Promise.all(networks.map(n => sending.get(n)!.promise))
    const states = async () => Object.fromEntries((await base!.query<{ network: string; state: string }>('SELECT network, state FROM outbox')).rows.map(r => [r.network, r.state]))
    let isMarked: Partial<Record<Network, boolean>> = {}
    for (const n of networks) void marked.get(n)!.promise.then(() => (isMarked = { ...isMarked, [n]: true }))
    return { outbox, marks, states, answer: (n: Network) => answer.get(n)!(), marked: (n: Network) => marked.get(n)!.promise, isMarked: () => isMarked }
  }

  it('the two sends of one message answered apart are marked sent in one statement, and a reply waits for it', async () => {
    const { outbox, marks, states, answer, marked } = await setup(['signal', 'whatsapp'])
    answer('signal')
    await turn() // Signal's mark is due; alone it would be on its way now
    let marksWhenRecorded: number | undefined
    const recorded = outbox.recorded('signal', CHAT.signal).then(() => (marksWhenRecorded = marks()))
    answer('whatsapp')
    await Promise.all([marked('signal'), marked('whatsapp'), recorded])
    expect(marks()).toBe(1)
    expect(marksWhenRecorded).toBe(1) // an answer to the Signal copy found it recorded
    expect(await states()).toEqual({ signal: 'sent', whatsapp: 'sent' })
  })

  it('a lone send with nothing else in flight is marked by itself when no record carries its mark within the bound', async () => {
    const { marks, states, answer, marked, isMarked } = await setup(['signal'])
    answer('signal')
    await vi.advanceTimersByTimeAsync(MARK_CARRY_MS - 1)
    expect(isMarked()).toEqual({})
    await vi.advanceTimersByTimeAsync(1)
    await marked('signal')
    expect(marks()).toBe(1)
    expect(await states()).toEqual({ signal: 'sent' })
  })

  it('a lone send’s mark is handed to the next message’s record, and the send counts as marked when that commits', async () => {
    const { outbox, marks, states, answer, marked, isMarked } = await setup(['signal'])
    answer('signal')
    await turn()
    const carried = outbox.carry()!
    expect(outbox.carry()).toBeUndefined() // handed over once
    // The record statement (MessageMap.createManyAndQueue) writes it with its own rows; here only the mark.
    await base!.query(MARK_SENT_SQL, [carried.ids, carried.copies, null])
    await turn()
    expect(isMarked()).toEqual({}) // not before the record has committed and said so
    carried.done()
    await marked('signal') // the fake clock never moved
    expect(marks()).toBe(0)
    expect(await states()).toEqual({ signal: 'sent' })
  })

  it('a send that hangs holds the other queue’s mark back only for the bound', async () => {
    const { outbox, marks, states, answer, marked } = await setup(['signal', 'whatsapp'])
    answer('signal')
    await turn()
    await vi.advanceTimersByTimeAsync(LONE_MARK_LINGER_MS)
    await Promise.all([marked('signal'), outbox.recorded('signal', CHAT.signal)])
    // WhatsApp still has not answered.
    expect(await states()).toEqual({ signal: 'sent', whatsapp: 'pending' })
    expect(marks()).toBe(1)
    answer('whatsapp')
    await vi.advanceTimersByTimeAsync(MARK_CARRY_MS) // alone now: no record comes to carry it
    await marked('whatsapp')
    expect(marks()).toBe(2)
    expect(await states()).toEqual({ signal: 'sent', whatsapp: 'sent' })
  })

  it('stopping while a mark waits for another queue writes it at once; the send still in flight is marked when answered', async () => {
    const { outbox, marks, states, answer, marked } = await setup(['signal', 'whatsapp'])
    answer('signal')
    await turn()
    const stopped = outbox.stop()
    await marked('signal') // the fake clock never moved
    expect(await states()).toEqual({ signal: 'sent', whatsapp: 'pending' })
    answer('whatsapp') // stop() waits for sends in flight, as before
    await Promise.all([stopped, marked('whatsapp')])
    expect(marks()).toBe(2)
    expect(await states()).toEqual({ signal: 'sent', whatsapp: 'sent' })
  })
})
