// A deep queue (few chats, many messages) sends its next run of plain messages while the last run's 'sent' mark is
// being committed, instead of standing still for that commit. What that must not cost: the order of the chat, a
// reply finding the copies it answers, and "nothing lost" (a row is marked sent only once sent, and a mark that
// failed leaves that run and the one after it unmarked, to be sent again in order).
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { MARK_SENT_SQL, Outbox, type OutboxRow } from '../../src/core/outbox.ts'
import type { Db } from '../../src/db/types.ts'
import { beforeEachQuery, DB_KINDS, freshDb } from '../support/db.ts'
import { PATIENCE_MS } from '../support/patience.ts'

const CHAT = 'group'
/** More rows than two runs (a run is at most 20 plain messages, Outbox's RUN_MAX). */
const ROWS = 45
const texts = Array.from({ length: ROWS }, (_, i) => `m${i + 1}`)

/** A promise and the functions that settle it. */
function later<T = void>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void
  let reject!: (e: unknown) => void
  const promise = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

/** The promise, or a failure naming what it waited for once the test's patience is spent. */
async function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), PATIENCE_MS)
  })
  try {
    return await Promise.race([promise, limit])
  } finally {
    clearTimeout(timer)
  }
}

/** A turn of the event loop: every step already due (a waiter let go after a mark) has run. */
const turn = () => new Promise<void>(resolve => setImmediate(resolve))

describe.each(DB_KINDS)('a deep delivery queue on %s', kind => {
  let base: Db | undefined
  let outbox: Outbox | undefined
  const cleanups: Array<() => void> = []
  afterEach(async () => {
    for (const c of cleanups.splice(0)) c()
    await outbox?.stop()
    await base?.close()
    outbox = base = undefined
  })

  /**
   * One queue of ROWS plain messages. The first 'sent' mark is held until the test lets it go (or fails it);
   * `hang` names a row whose send is answered only when the test says so.
   */
  async function setup(opts: { hang?: string } = {}) {
    base = await freshDb(kind)
    const firstMark = later()
    const firstMarkSeen = later()
    cleanups.push(() => firstMark.resolve())
    /** The outbox ids each mark statement carried, in the order they were issued. */
    const marks: number[][] = []
    const db = beforeEachQuery(base, (sql, params) => {
      if (sql !== MARK_SENT_SQL) return
      marks.push((params![0] as number[]).map(Number))
      if (marks.length > 1) return
      firstMarkSeen.resolve()
      return firstMark.promise
    })
    const portal = (await base.query<{ id: number }>(`INSERT INTO portals (room_id) VALUES ('!r:x') RETURNING id`)).rows[0]!.id
    const sent: string[] = []
    const sendWaiters: Array<{ n: number; resolve: () => void }> = []
    const hung = later()
    cleanups.push(() => hung.resolve())
    let marked = 0
    const markWaiters: Array<{ n: number; resolve: () => void }> = []
    outbox = new Outbox({
      db, log: pino({ level: 'silent' }), holdRetentionMs: 3_600_000, onFailed: async () => {},
      // A mark that failed leaves the queue to try again after this long: short, but real time.
      backoff: { initialMs: 20, maxMs: 100, maxAttempts: 5 },
      dispatch: async (row: OutboxRow) => {
        const text = row.payload.text as string
        sent.push(text)
        for (const w of sendWaiters.filter(x => sent.length >= x.n)) w.resolve()
        if (text === opts.hang) await hung.promise
      },
      onSent: () => {
        marked++
        for (const w of markWaiters.filter(x => marked >= x.n)) w.resolve()
      },
    })
    await Outbox.enqueue(base, texts.map(text => ({ portalId: portal, messageId: null, network: 'signal' as const, chatId: CHAT, op: 'message' as const, payload: { text } })))
    const ids = (await base.query<{ id: number }>('SELECT id FROM outbox ORDER BY id')).rows.map(r => Number(r.id))
    /** Until `n` sends have begun in all. */
    const sends = (n: number) => within(new Promise<void>(resolve => {
      if (sent.length >= n) resolve()
      else sendWaiters.push({ n, resolve })
    }), `${n} sends to begin`)
    /** Until `n` rows in all have been marked sent. */
    const marksDone = (n: number) => within(new Promise<void>(resolve => {
      if (marked >= n) resolve()
      else markWaiters.push({ n, resolve })
    }), `${n} rows to be marked sent`)
    const states = async () => (await base!.query<{ state: string }>('SELECT state FROM outbox ORDER BY id')).rows.map(r => r.state)
    outbox.kick('signal', CHAT)
    await within(firstMarkSeen.promise, 'the first run to be marked')
    return { outbox, sent, sends, marksDone, states, marks, ids, letFirstMarkGo: () => firstMark.resolve(), failFirstMark: () => firstMark.reject(new Error('the database went away')), answerHung: () => hung.resolve(), marked: () => marked }
  }

  it('sends the next run while the last run’s mark is being committed, and keeps the chat in order', async () => {
    const { sends, marksDone, states, sent, letFirstMarkGo } = await setup()
    await sends(21) // the second run began while the first run's mark is still being written
    expect((await states()).slice(0, 20)).toEqual(Array(20).fill('pending'))
    letFirstMarkGo()
    await marksDone(ROWS)
    expect(sent).toEqual(texts) // each once, in order
    expect(await states()).toEqual(Array(ROWS).fill('sent'))
  })

  it('a reply waiting for the copies of the sends in flight waits for the run being sent, not only the one before', async () => {
    const { outbox, sends, marksDone, answerHung, letFirstMarkGo, marked } = await setup({ hang: 'm25' })
    await sends(25) // the second run is being sent; the first run's mark is held
    let markedWhenRecorded: number | undefined
    const recorded = outbox.recorded('signal', CHAT).then(() => (markedWhenRecorded = marked()))
    letFirstMarkGo()
    await marksDone(20)
    await turn()
    expect(markedWhenRecorded).toBeUndefined() // m21…m25 have been sent, and their copies are not recorded yet
    answerHung()
    await within(recorded, 'the copies in flight to be recorded')
    expect(markedWhenRecorded).toBeGreaterThanOrEqual(40) // the second run (m21…m40) was marked first
    await marksDone(ROWS)
  })

  it('a mark that fails leaves its run and the one sent meanwhile unmarked: both go again, in order, nothing skipped', async () => {
    const { sends, marksDone, states, sent, marks, ids, failFirstMark } = await setup()
    await sends(40) // the whole second run was sent while the first run's mark was being written
    failFirstMark()
    await marksDone(ROWS)
    // m1…m40 a second time, from m1: the second run was never marked on its own while the first was not.
    expect(sent).toEqual([...texts.slice(0, 40), ...texts])
    expect(marks[1]?.[0]).toBe(ids[0])
    expect(await states()).toEqual(Array(ROWS).fill('sent'))
  })
})
