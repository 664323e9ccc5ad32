// What one message arriving alone costs the database, through the whole bridge with the real adapters: its
// statements (round trips) and commits. At low rates little shares a commit (a message's own copies share their
// 'sent' mark), so each one is paid per message (docs/performance.md, "PostgreSQL at low rates"); these counts fail
// when a change adds one back.
import { afterEach, describe, expect, it } from 'vitest'
import type { Db, Queryable } from '../../src/db/types.ts'
import { groupText } from '../fakes/signal-envelopes.ts'
import { ALICE } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { SIG_BOB, SIG_RELAY, WA_DAVE, bridgedRoom, realScenario, until, type RealScenario } from '../support/networks.ts'
import { content, settled } from '../support/relay.ts'

/** Every statement the bridge sends, and its transactions; `on` starts and stops the record. */
class Counting {
  on = false
  statements: string[] = []
  /** The same, whole. */
  sql: string[] = []
  commits = 0

  wrap(db: Db): Db {
    const counted = (q: Queryable, inTx: boolean): Queryable => ({
      query: (sql: string, params?: unknown[]) => {
        if (this.on) {
          this.statements.push(sql.replace(/\s+/g, ' ').slice(0, 70))
          this.sql.push(sql)
          // An autocommit statement that writes commits by itself (a data-modifying CTE too).
          if (!inTx && /\b(INSERT|UPDATE|DELETE)\b/i.test(sql)) this.commits++
        }
        return q.query(sql, params)
      },
      exec: sql => q.exec(sql),
    } as Queryable)
    const base = counted(db, false)
    return {
      kind: db.kind,
      query: base.query,
      exec: base.exec,
      transaction: work => {
        if (this.on) {
          this.statements.push('BEGIN … COMMIT') // two round trips, counted as the statements around the work
          this.sql.push('BEGIN … COMMIT')
          this.commits++
        }
        return db.transaction(tx => work(counted(tx, true)))
      },
      session: work => db.session(work),
      close: () => db.close(),
    }
  }

  /** Round trips: a transaction's BEGIN and COMMIT are one each. */
  get roundTrips(): number {
    return this.statements.reduce((n, s) => n + (s === 'BEGIN … COMMIT' ? 2 : 1), 0)
  }
}

/** The 'sent' marks among the statements. */
const marks = (c: Counting): number => c.statements.filter(x => x.startsWith('WITH done AS')).length

describe.each(DB_KINDS)('a lone message’s statements and commits on %s', kind => {
  let s: RealScenario
  afterEach(async () => s?.stop())

  async function setup() {
    const counting = new Counting()
    // The sends of one message answer a moment apart, but on a busy machine that moment can pass the outbox's bound
    // for a lone 'sent' mark to wait for the other's: here it waits as long as needed, so the count is the design's.
    s = await realScenario(kind, { wrapDb: db => counting.wrap(db), loneMarkLingerMs: 60_000 })
    const r = await bridgedRoom(s, { whatsapp: true })
    await settled(s)
    counting.on = true
    return { counting, room: r.room, signalGroup: r.signalGroup!, whatsappGroup: r.whatsappGroup! }
  }

  async function done(c: Counting): Promise<void> {
    await settled(s)
    c.on = false
    // The list, for docs/performance.md when it changes.
    if (process.env.SHOW_STATEMENTS) console.log(`${c.roundTrips} round trips, ${c.commits} commits:\n  ${c.statements.join('\n  ')}`)
  }

  it('Matrix → Signal + WhatsApp', async () => {
    const { counting, room } = await setup()
    await s.hs.sendMessage(ALICE, room, 'just one')
    await s.daemon.until(() => s.daemon.callsOf('send').length === 1)
    await until(() => s.wa.sent.find(m => String(m.content.text).endsWith('just one')), 'the WhatsApp copy')
    await done(counting)
    // Read the room's members; record + queue (one statement, before the homeserver's answer: the inbox holds
    // nothing else, so the event is not stored there first, test/matrix/record-at-once.test.ts); read both queues
    // (no write); read the portal's logins; one 'sent' mark for both copies, the WhatsApp one with its key and
    // content (no write of the WhatsApp adapter's own; its echo is known from memory until the mark).
    expect(counting.statements).not.toContain('BEGIN … COMMIT')
    expect(counting.statements.filter(x => x.includes('wa_messages') || x.includes('inbox'))).toEqual([])
    expect(marks(counting)).toBe(1)
    expect(counting.roundTrips).toBeLessThanOrEqual(6)
    expect(counting.commits).toBeLessThanOrEqual(2)
  })

  it('Matrix → Signal + WhatsApp in a room already in use: its caches warm, its queues handed the new rows', async () => {
    const { counting, room } = await setup()
    counting.on = false
    await s.hs.sendMessage(ALICE, room, 'the first')
    await s.daemon.until(() => s.daemon.callsOf('send').length === 1)
    await until(() => s.wa.sent.find(m => String(m.content.text).endsWith('the first')), 'the first WhatsApp copy')
    await settled(s)
    counting.on = true
    await s.hs.sendMessage(ALICE, room, 'the second')
    await s.daemon.until(() => s.daemon.callsOf('send').length === 2)
    await until(() => s.wa.sent.find(m => String(m.content.text).endsWith('the second')), 'the second WhatsApp copy')
    await done(counting)
    // Record + queue, before the homeserver's answer; one 'sent' mark for both copies, the WhatsApp send's content in
    // its copy: 2 round trips, each a commit (one more now and then: the echo check of the WhatsApp copy, when the
    // echo comes after the mark). Both queues were seen empty after the first message, so the record hands them its
    // rows: neither is read.
    expect(counting.statements.filter(x => x.includes('FROM outbox WHERE network'))).toEqual([])
    expect(marks(counting)).toBe(1)
    expect(counting.roundTrips).toBeLessThanOrEqual(3)
    expect(counting.commits).toBeLessThanOrEqual(2)
  })

  it('Signal → Matrix + WhatsApp', async () => {
    const { counting, room, signalGroup } = await setup()
    s.daemon.push(SIG_RELAY.number, groupText(SIG_BOB, signalGroup, 'just one'))
    await s.hs.waitForEvent(room, e => content(e).body === 'just one')
    await until(() => s.wa.sent.find(m => String(m.content.text).endsWith('just one')), 'the WhatsApp copy')
    await done(counting)
    // A first message from Bob also names his ghost (its member event is stored, read and marked handled); the
    // ghost's message comes back from the homeserver as an echo, which writes nothing. The copies to Matrix and
    // WhatsApp share one 'sent' mark, which keeps the WhatsApp copy's key and content.
    expect(counting.statements).not.toContain('BEGIN … COMMIT')
    expect(counting.statements.filter(x => x.includes('appservice_txns') || x.includes('wa_messages'))).toEqual([])
    expect(marks(counting)).toBe(1)
    expect(counting.roundTrips).toBeLessThanOrEqual(9)
    expect(counting.commits).toBeLessThanOrEqual(6)
  })

  it('WhatsApp → Matrix + Signal', async () => {
    const { counting, room, whatsappGroup } = await setup()
    s.wa.deliver({ chat: whatsappGroup, from: WA_DAVE, pushName: 'Dave', message: { conversation: 'just one' } })
    await s.hs.waitForEvent(room, e => content(e).body === 'just one')
    await s.daemon.until(() => s.daemon.callsOf('send').length === 1)
    await done(counting)
    // As from Signal, and a first sight of Dave (his wa_people row, a transaction of its own). What is kept for
    // quoting goes with the origin copy, in the statement that records the message.
    expect(counting.statements.filter(x => x === 'BEGIN … COMMIT')).toHaveLength(1)
    expect(counting.statements.filter(x => x.includes('wa_messages'))).toEqual([])
    expect(marks(counting)).toBe(1)
    expect(counting.roundTrips).toBeLessThanOrEqual(12)
    expect(counting.commits).toBeLessThanOrEqual(6)
  })

  // At 100 msg/s a message comes every 10 ms: a lone mark waits for the next message's record (Outbox.carry). Here
  // it waits for ever unless a record carries it, or someone needs it (an answer to the copy it records).
  const FOR_EVER = 3_600_000

  it('two messages a moment apart: the second one’s record carries the first one’s mark, one statement and commit each', async () => {
    const counting = new Counting()
    s = await realScenario(kind, { wrapDb: db => counting.wrap(db), loneMarkLingerMs: 60_000, markCarryMs: FOR_EVER })
    const { room } = await bridgedRoom(s, { whatsapp: true })
    // The first message in the room: its queues are read (nothing was handed to them yet), and its mark waits. (No
    // settled(): what the set-up sent has its mark waiting too, carried by this message's record.)
    await s.hs.sendMessage(ALICE, room, 'the first')
    await s.daemon.until(() => s.daemon.callsOf('send').length === 1)
    await until(() => s.wa.sent.find(m => String(m.content.text).endsWith('the first')), 'the first WhatsApp copy')
    const firstRows = async () => (await s.db.query<{ state: string }>(
      `SELECT o.state FROM outbox o JOIN message_copies c ON c.message_id = o.message_id AND c.is_origin
       WHERE c.network = 'matrix' AND o.network <> 'matrix' ORDER BY o.id`)).rows.map(r => r.state)
    expect(await firstRows()).toEqual(['pending', 'pending']) // sent, and its mark waiting for a carrier
    counting.on = true
    await s.hs.sendMessage(ALICE, room, 'the second')
    await until(async () => (await firstRows()).every(state => state === 'sent') && (await firstRows()).length === 2, 'the first message marked sent')
    await s.daemon.until(() => s.daemon.callsOf('send').length === 2)
    await until(() => s.wa.sent.find(m => String(m.content.text).endsWith('the second')), 'the second WhatsApp copy')
    counting.on = false
    // The second message's record is the one statement (the set-up's ghosts being made, registered and named
    // meanwhile aside), and the first one's mark (with its WhatsApp copy) is in it; the second's own mark waits for the next
    // message. Its queues were handed its rows while the first message's run waited for that mark: not read again.
    const ours = counting.sql.filter(x => !/\b(ghosts|ghost_memberships)\b/.test(x))
    expect(ours).toHaveLength(1)
    expect(ours[0]).toMatch(/INSERT INTO messages[\s\S]*UPDATE outbox SET state = 'sent'/)
    const { rows } = await s.db.query(`SELECT c.remote_id FROM message_copies c
      JOIN message_copies o ON o.message_id = c.message_id AND o.is_origin AND o.network = 'matrix' WHERE c.network = 'whatsapp'`)
    expect(rows).toHaveLength(1) // the first message's WhatsApp copy, recorded by the carried mark
  })
})
