// A delivery queue seen empty is handed the rows recorded into it, instead of reading them back: at low rates that
// read was a round trip per message. The table stays the truth: whatever the queue cannot be sure of (rows queued
// elsewhere, a row handed over late or out of order, a record that failed) makes it read again, and no row is
// sent twice, skipped or out of order.
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { Outbox, type OutboxRow } from '../../src/core/outbox.ts'
import type { Db } from '../../src/db/types.ts'
import { countingStatements, DB_KINDS, freshDb } from '../support/db.ts'

const CHAT = 'group'

/** A turn of the event loop: every step already due (a worker finishing after its last mark) has run. */
const turn = () => new Promise<void>(resolve => setImmediate(resolve))

describe.each(DB_KINDS)('the delivery queue handed its new rows on %s', kind => {
  let base: Db | undefined
  let outbox: Outbox | undefined
  afterEach(async () => {
    await outbox?.stop()
    await base?.close()
    outbox = base = undefined
  })

  async function setup() {
    base = await freshDb(kind)
    // The queue's head reads (Outbox.readMany).
    const { db, count: reads } = countingStatements(base, sql => /FROM outbox WHERE network = /.test(sql))
    const portal = (await base.query<{ id: number }>(`INSERT INTO portals (room_id) VALUES ('!r:x') RETURNING id`)).rows[0]!.id
    const sent: string[] = []
    let marked = 0
    const waiters: Array<{ n: number; resolve: () => void }> = []
    outbox = new Outbox({
      db, log: pino({ level: 'silent' }), holdRetentionMs: 3_600_000, onFailed: async () => {},
      dispatch: async (row: OutboxRow) => void sent.push(row.payload.text as string),
      // Resolved once marked sent: the next step of a test starts from a queue at rest.
      onSent: () => {
        marked++
        for (const w of waiters.filter(x => marked >= x.n)) w.resolve()
      },
    })
    const o = outbox
    /** Rows committed to the queue, returned whole as a read returns them (as the router hands them over). */
    const insert = async (...texts: string[]): Promise<OutboxRow[]> => (await base!.query<OutboxRow>(
      `INSERT INTO outbox (portal_id, network, chat_id, op, payload)
       SELECT $1, 'signal', $2, 'message', jsonb_build_object('text', t) FROM unnest($3::text[]) WITH ORDINALITY AS x(t, n) ORDER BY n
       RETURNING *`, [portal, CHAT, texts])).rows
    /** Until `n` sends in all have been answered and marked sent. */
    const sends = (n: number) => new Promise<void>(resolve => {
      if (marked >= n) resolve()
      else waiters.push({ n, resolve })
    })
    /** The queue is at rest once each row is 'sent': nothing is left pending. */
    const pending = async () => Number((await base!.query<{ n: number }>(`SELECT count(*)::int AS n FROM outbox WHERE state = 'pending'`)).rows[0]!.n)
    // The queue is seen empty once: from then on it knows its rows.
    const [first] = await insert('first')
    o.recording([{ network: 'signal', chatId: CHAT }])([first!])
    await sends(1)
    return { outbox: o, reads, sent, insert, sends, pending }
  }

  it('rows recorded into a queue seen empty are sent in order as handed over, without reading the queue', async () => {
    const { outbox, reads, sent, insert, sends, pending } = await setup()
    const readsBefore = reads()
    for (const text of ['one', 'two']) outbox.recording([{ network: 'signal', chatId: CHAT }])(await insert(text))
    outbox.recording([{ network: 'signal', chatId: CHAT }])(await insert('three', 'four'))
    await sends(5)
    expect(sent).toEqual(['first', 'one', 'two', 'three', 'four'])
    expect(reads()).toBe(readsBefore)
    expect(await pending()).toBe(0)
  })

  it('rows queued without being handed over (a change made elsewhere) are read and sent', async () => {
    const { outbox, reads, sent, insert, sends } = await setup()
    const readsBefore = reads()
    await insert('queued elsewhere')
    outbox.kick('signal', CHAT)
    await sends(2)
    expect(sent).toEqual(['first', 'queued elsewhere'])
    expect(reads()).toBeGreaterThan(readsBefore)
  })

  it('a row handed over after a read already found and sent it is not sent again', async () => {
    const { outbox, sent, insert, sends, pending } = await setup()
    // Its record's answer is late: a read for another row finds it first.
    const record = outbox.recording([{ network: 'signal', chatId: CHAT }])
    const [late] = await insert('late')
    await insert('other')
    outbox.kick('signal', CHAT)
    await sends(3)
    await turn() // the queue is at rest, seen empty
    record([late!])
    // Then a row handed over as usual: once it is sent, the late one had its chance to go twice.
    outbox.recording([{ network: 'signal', chatId: CHAT }])(await insert('after'))
    await sends(4)
    expect(sent).toEqual(['first', 'late', 'other', 'after'])
    expect(await pending()).toBe(0)
  })

  it('rows of one chat committed in one order and handed over in the other are sent in id order', async () => {
    const { outbox, sent, insert, sends, pending } = await setup()
    // Two records under way at once: the later one's answer comes first.
    const earlier = outbox.recording([{ network: 'signal', chatId: CHAT }])
    const later = outbox.recording([{ network: 'signal', chatId: CHAT }])
    const a = await insert('a')
    const b = await insert('b')
    later(b)
    earlier(a)
    await sends(3)
    expect(sent).toEqual(['first', 'a', 'b'])
    expect(await pending()).toBe(0)
  })

  it('a record that failed (it may have committed all the same) makes the queue read: its rows are not stranded', async () => {
    const { outbox, sent, insert, sends, pending } = await setup()
    const record = outbox.recording([{ network: 'signal', chatId: CHAT }])
    await insert('committed, but the answer was lost')
    record()
    await sends(2)
    expect(sent).toEqual(['first', 'committed, but the answer was lost'])
    expect(await pending()).toBe(0)
  })
})
