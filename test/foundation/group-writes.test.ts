// Writes that many chats make at once share statements, and nothing is lost or mixed up on the way.
import { afterEach, describe, expect, it, vi } from 'vitest'
import { proto } from '@whiskeysockets/baileys'
import { SqlLoginStore } from '../../src/core/logins.ts'
import { Outbox, type OutboxRow } from '../../src/core/outbox.ts'
import { Coalescer } from '../../src/db/coalesce.ts'
import type { Db } from '../../src/db/types.ts'
import { Inbox, type MatrixEvent } from '../../src/matrix/inbox.ts'
import { MessageStore } from '../../src/whatsapp/messages.ts'
import { beforeEachQuery, DB_KINDS, freshDb } from '../support/db.ts'
import { pino } from 'pino'

/** Counts the statements a Db runs, by their first words. */
function counting(db: Db): { db: Db; count: (prefix: string) => number; seen: string[] } {
  const seen: string[] = []
  const wrapped = beforeEachQuery(db, sql => void seen.push(sql.trim()))
  return { db: wrapped, count: prefix => seen.filter(s => s.startsWith(prefix)).length, seen }
}

describe('a coalescer', () => {
  it('writes what is added while a write is under way in one next write, and answers every caller', async () => {
    const writes: number[][] = []
    let release!: () => void
    let started!: () => void
    const first = new Promise<void>(r => (release = r))
    const firstStarted = new Promise<void>(r => (started = r))
    const c = new Coalescer<number>(async items => {
      writes.push(items)
      if (writes.length === 1) {
        started()
        await first
      }
    })
    const a = c.add(1)
    await firstStarted
    const rest = [2, 3, 4, 5].map(n => c.add(n))
    release()
    await Promise.all([a, ...rest])
    expect(writes).toEqual([[1], [2, 3, 4, 5]])
  })

  it('keeps batches within the maximum size', async () => {
    const writes: number[][] = []
    const c = new Coalescer<number>(async items => void writes.push(items), 3)
    await Promise.all([1, 2, 3, 4, 5, 6, 7].map(n => c.add(n)))
    expect(writes).toEqual([[1, 2, 3], [4, 5, 6], [7]])
  })

  it('fails only the caller whose item cannot be written; the others of its batch are written', async () => {
    const written: string[] = []
    const c = new Coalescer<string>(async items => {
      if (items.includes('bad')) throw new Error('value too long')
      written.push(...items)
    })
    const results = await Promise.allSettled(['a', 'bad', 'b'].map(s => c.add(s)))
    expect(results.map(r => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
    expect((results[1] as PromiseRejectedResult).reason).toEqual(new Error('value too long'))
    expect(written.sort()).toEqual(['a', 'b'])
  })
})

/** A coalescer on a fake clock (setTimeout only), with its writes: a write that happened without the clock moving
 * waited for no bound. */
function onFakeClock(lingerMs: number, carryMs = 0) {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
  const writes: string[][] = []
  let wrote: () => void = () => {}
  const c = new Coalescer<string>(async items => {
    writes.push(items)
    wrote()
  }, 200, lingerMs, carryMs)
  /** Resolves at the next write. */
  const nextWrite = () => new Promise<void>(resolve => (wrote = resolve))
  return { c, writes, nextWrite }
}

describe('a coalescer that lingers for announced items', () => {
  afterEach(() => vi.useRealTimers())
  const LINGER = 15
  const lingering = () => onFakeClock(LINGER)

  it('goes at once when nothing is announced', async () => {
    const { c, writes } = lingering()
    await c.add('a')
    expect(writes).toEqual([['a']])
  })

  it('holds a write until the announced items have come, and writes them together', async () => {
    const { c, writes } = lingering()
    const b = c.expect()
    const d = c.expect()
    const a = c.add('a')
    await vi.advanceTimersByTimeAsync(LINGER - 1)
    const bWritten = b.add('b')
    await vi.advanceTimersByTimeAsync(0)
    expect(writes).toEqual([]) // 'd' has not come yet
    await Promise.all([a, bWritten, d.add('d')])
    expect(writes).toEqual([['a', 'b', 'd']])
  })

  it('waits no longer than its bound for an item that does not come, and not at all for one cancelled', async () => {
    const { c, writes, nextWrite } = lingering()
    const hanging = c.expect()
    const written = nextWrite()
    const a = c.add('a')
    await vi.advanceTimersByTimeAsync(LINGER - 1)
    expect(writes).toEqual([])
    await vi.advanceTimersByTimeAsync(1)
    await Promise.all([a, written])
    expect(writes).toEqual([['a']])
    hanging.cancel()
    const failed = c.expect()
    const b = c.add('b')
    failed.cancel()
    await b // the clock did not move
    expect(writes).toEqual([['a'], ['b']])
  })

  it('does not hold a write that follows another under load', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const writes: string[][] = []
    let release!: () => void
    const first = new Promise<void>(r => (release = r))
    const c = new Coalescer<string>(async items => {
      writes.push(items)
      if (writes.length === 1) await first
    }, 200, LINGER)
    const a = c.add('a')
    await vi.advanceTimersByTimeAsync(0) // 'a' is being written
    c.expect() // never comes
    const b = c.add('b')
    release()
    await Promise.all([a, b]) // the clock did not move
    expect(writes).toEqual([['a'], ['b']])
  })

  it('after flush() holds no write any more, the one lingering included', async () => {
    const { c, writes } = lingering()
    c.expect() // never comes
    const a = c.add('a')
    await vi.advanceTimersByTimeAsync(0)
    expect(writes).toEqual([])
    c.flush()
    await a
    await c.add('b')
    expect(writes).toEqual([['a'], ['b']])
  })
})

// At low rates a lone write of announced items waits a while for another statement to carry it (Outbox.carry).
describe('a coalescer whose announced items another statement may carry', () => {
  afterEach(() => vi.useRealTimers())
  const CARRY = 15
  const carrying = () => onFakeClock(0, CARRY)

  it('hands announced items to a carrier, whose commit answers their callers: no write of their own', async () => {
    const { c, writes } = carrying()
    const a = c.expect().add('a')
    const b = c.expect().add('b')
    await vi.advanceTimersByTimeAsync(CARRY - 1)
    const carried = c.take()!
    expect(carried.items).toEqual(['a', 'b'])
    expect(c.take()).toBeUndefined() // taken once
    let answered = false
    void Promise.all([a, b]).then(() => (answered = true))
    await vi.advanceTimersByTimeAsync(0)
    expect(answered).toBe(false) // not before the carrier has committed
    carried.done()
    await Promise.all([a, b])
    await vi.advanceTimersByTimeAsync(CARRY)
    expect(writes).toEqual([])
  })

  it('writes them itself when no carrier comes within its bound, or when the carrier failed', async () => {
    const { c, writes } = carrying()
    const a = c.expect().add('a')
    await vi.advanceTimersByTimeAsync(CARRY - 1)
    expect(writes).toEqual([])
    await vi.advanceTimersByTimeAsync(1)
    await a
    expect(writes).toEqual([['a']])
    const b = c.expect().add('b')
    await vi.advanceTimersByTimeAsync(0)
    const carried = c.take()!
    carried.failed()
    await b // the clock did not move
    expect(writes).toEqual([['a'], ['b']])
  })

  it('does not hold an item added as usual, nor one that someone waits for', async () => {
    const { c, writes } = carrying()
    const a = c.expect().add('a')
    const b = c.add('b') // joins the write, which goes now
    expect(c.take()).toBeUndefined()
    await Promise.all([a, b]) // the clock did not move
    expect(writes).toEqual([['a', 'b']])
    const d = c.expect().add('d')
    c.hurry()
    await d
    expect(writes).toEqual([['a', 'b'], ['d']])
    expect(c.take()).toBeUndefined() // nothing lingering
  })
})

describe.each(DB_KINDS)('on %s', kind => {
  it('the WhatsApp message store writes concurrent sends in one statement and can read each back', async () => {
    const base = await freshDb(kind)
    const { db, count } = counting(base)
    await base.query(`INSERT INTO logins (id, network, address, person_id, display_name, owner_mxid, state) VALUES ('wa-1', 'whatsapp', '+1', 'p', 'Relay', '@o:x', 'connected')`)
    // No copy in the message map: these are what only wa_messages keeps (further parts, revokes, reactions).
    const store = new MessageStore(db, { findCopy: async () => undefined })
    const keys = Array.from({ length: 30 }, (_, i) => ({ remoteJid: '123@g.us', id: `MSG${i}`, fromMe: true }))
    await Promise.all(keys.map((k, i) => store.put('wa-1', k, proto.Message.fromObject({ conversation: `text ${i}` }), true)))
    expect(count('INSERT INTO wa_messages')).toBeLessThanOrEqual(2)
    for (const [i, k] of keys.entries()) {
      expect((await store.sentContent('wa-1', k.remoteJid, k.id))?.conversation).toBe(`text ${i}`)
      expect(await store.isOwnSend('wa-1', k.remoteJid, k.id)).toBe(true)
    }
    // The same message twice in one batch (an inbound copy, then the bridge's own): both land, one row.
    await Promise.all([
      store.put('wa-1', { remoteJid: '123@g.us', id: 'TWICE', fromMe: false }, { conversation: 'first' }, false),
      store.put('wa-1', { remoteJid: '123@g.us', id: 'TWICE', fromMe: true }, { conversation: 'second' }, true),
    ])
    const twice = await store.get('wa-1', 'TWICE')
    expect(twice).toMatchObject({ fromBridge: true, message: { conversation: 'second' } })
    await base.close()
  })

  it('the login store answers repeated reads from memory and always with the latest state', async () => {
    const base = await freshDb(kind)
    const { db, count } = counting(base)
    const logins = new SqlLoginStore(db)
    const saved = await logins.save({ network: 'signal', kind: 'relay', address: '+100', personId: 'aci', displayName: 'Relay', ownerMxid: '@o:x', metadata: {} })
    for (let i = 0; i < 5; i++) expect((await logins.get(saved.id))?.state).toBe('connecting')
    expect(count('SELECT * FROM logins')).toBe(0)
    expect(await logins.setState(saved.id, 'logged_out', 'unlinked on the phone')).toBe('connecting')
    expect(await logins.get(saved.id)).toMatchObject({ state: 'logged_out', stateMessage: 'unlinked on the phone' })
    // A caller changing its copy changes nothing for the next one.
    const copy = (await logins.get(saved.id))!
    copy.state = 'connected'
    expect((await logins.get(saved.id))?.state).toBe('logged_out')
    await logins.remove(saved.id)
    expect(await logins.get(saved.id)).toBeUndefined()
    // A second store (another bridge start) reads what the first wrote.
    expect(await new SqlLoginStore(base).get(saved.id)).toBeUndefined()
    await base.close()
  })

  it('a login’s state changes made at once are written one after the other, so the last one made is the one on record', async () => {
    const base = await freshDb(kind)
    let inFlight = 0
    let most = 0
    // Counts the state writes under way at once (on PostgreSQL each could take its own connection).
    const db = Object.create(base) as Db
    db.query = (async (sql: string, params?: unknown[]) => {
      if (!sql.trim().startsWith('UPDATE logins')) return base.query(sql, params)
      most = Math.max(most, ++inFlight)
      try {
        return await base.query(sql, params)
      } finally {
        inFlight--
      }
    }) as Db['query']
    const logins = new SqlLoginStore(db)
    const saved = await logins.save({ network: 'signal', kind: 'relay', address: '+100', personId: 'aci', displayName: 'Relay', ownerMxid: '@o:x', metadata: {} })
    // A stream dropping and coming back: its states follow each other within milliseconds, none awaited.
    const states = Array.from({ length: 20 }, (_, i) => (['disconnected', 'connecting', 'connected'] as const)[i % 3]!)
    const previous = await Promise.all(states.map(st => logins.setState(saved.id, st, null)))
    expect(most).toBe(1)
    expect(previous).toEqual(['connecting', ...states.slice(0, -1)]) // each saw the one made before it
    expect((await new SqlLoginStore(base).get(saved.id))?.state).toBe(states.at(-1))
    await base.close()
  })

  it('a lone message to two quiet chats: one read-only statement reads both queues, nothing is written before the sends, and each row is marked sent with its attempt counted', async () => {
    const base = await freshDb(kind)
    const { db, count, seen } = counting(base)
    const portal = (await base.query<{ id: number }>(`INSERT INTO portals (room_id) VALUES ('!quiet:x') RETURNING id`)).rows[0]!.id
    // What each send saw in the database while it was under way, and what the outbox had asked of it by then.
    const during: Array<{ state: string; attempts: number }> = []
    const before: string[][] = []
    const sent: string[] = []
    let marked = 0
    let bothMarked!: () => void
    const done = new Promise<void>(resolve => (bothMarked = resolve))
    const outbox = new Outbox({
      db, log: pino({ level: 'silent' }), holdRetentionMs: 3_600_000, onFailed: async () => {},
      onSent: () => { if (++marked === 2) bothMarked() },
      dispatch: async (row: OutboxRow) => {
        before.push([...seen])
        during.push((await base.query<{ state: string; attempts: number }>('SELECT state, attempts FROM outbox WHERE id = $1', [row.id])).rows[0]!)
        sent.push(`${row.network}:${row.chat_id}`)
      },
    })
    await Outbox.enqueue(base, ['signal', 'whatsapp'].map(network => ({
      portalId: portal, messageId: null, network: network as 'signal' | 'whatsapp', chatId: `${network}-group`, op: 'message' as const, payload: { text: 'hi' },
    })))
    outbox.kick('signal', 'signal-group')
    outbox.kick('whatsapp', 'whatsapp-group')
    await done // both marked sent
    await outbox.stop()
    expect(sent.sort()).toEqual(['signal:signal-group', 'whatsapp:whatsapp-group'])
    // A row being sent is still 'pending' (a crash now sends it again at the next start), and the only statement
    // before the sends is the one read of both queues: no write, so no commit.
    expect(during).toEqual([{ state: 'pending', attempts: 0 }, { state: 'pending', attempts: 0 }])
    expect(before.map(list => list.length)).toEqual([1, 1])
    expect(before[0]![0]).toMatch(/^\(SELECT \* FROM outbox WHERE network = \$1 AND chat_id = \$2[^]* UNION ALL \(SELECT/)
    expect(count('UPDATE outbox')).toBe(0)
    const rows = (await base.query<{ state: string; attempts: number }>('SELECT state, attempts FROM outbox')).rows
    expect(rows).toEqual([{ state: 'sent', attempts: 1 }, { state: 'sent', attempts: 1 }])
    await base.close()
  })

  it('transactions arriving together are stored in one statement, each event once, retries answered as such', async () => {
    const base = await freshDb(kind)
    const { db, count } = counting(base)
    const inbox = new Inbox(db)
    const ev = (n: number): MatrixEvent => ({ event_id: `$e${n}`, room_id: '!r:x', type: 'm.room.message', sender: '@a:x', content: { body: `${n}` } })
    // Transaction k carries events k and k+1, so neighbours overlap; "t3" comes twice (a retry racing the first).
    const txns = Array.from({ length: 20 }, (_, k) => ({ id: `t${k}`, events: [ev(k), ev(k + 1)] }))
    const answers = await Promise.all([...txns, txns[3]!].map(t => inbox.store(t.id, t.events)))
    expect(count('WITH ev AS')).toBe(1) // all 21 in one statement
    expect(count('SELECT')).toBe(0)
    expect(answers.slice(0, 20).reduce((n, a) => n! + a!, 0)).toBe(21) // each new event counted once
    expect(answers[20]).toBeUndefined()
    expect((await base.query('SELECT 1 FROM inbox')).rowCount).toBe(21)
    // Later, a retry of a handled transaction is recognised and stores nothing.
    expect(await inbox.store('t5', txns[5]!.events)).toBeUndefined()
    expect(await inbox.store('t-new', [ev(20), ev(21)])).toBe(1)
    // A known txn id with new events (Synapse on SQLite numbers from 1 again after a restart): stored, not skipped.
    expect(await inbox.store('t6', [ev(30)])).toBe(1)
    expect((await base.query('SELECT 1 FROM inbox')).rowCount).toBe(23)
    await base.close()
  })
})
