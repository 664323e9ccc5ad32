// Events the bridge has just stored are worked from memory, not read back from the inbox table (a round trip per
// transaction at low rates), as long as the table is known to hold nothing else; after a failure the table is
// read again, so nothing stored is skipped and nothing is relayed twice.
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import type { InboundEvent } from '../../src/core/model.ts'
import type { Portal } from '../../src/core/portals.ts'
import type { Handled } from '../../src/core/router.ts'
import type { Db } from '../../src/db/types.ts'
import { AppserviceServer } from '../../src/matrix/appservice.ts'
import { MatrixEvents, type MatrixEventsOptions } from '../../src/matrix/events.ts'
import { Inbox, type MatrixEvent } from '../../src/matrix/inbox.ts'
import { Metrics } from '../../src/metrics.ts'
import { HS_TOKEN } from '../support/config.ts'
import { DB_KINDS, freshDb } from '../support/db.ts'
import { until } from '../support/relay.ts'

const ROOM = '!portal:example.org'
const log = pino({ level: 'silent' })
const portal: Portal = { id: 1, roomId: ROOM, name: 'P', signalGroup: 'g', signalLogin: null, whatsappGroup: null, whatsappLogin: null, signalGroupName: null, whatsappGroupName: null, creator: null, encrypted: false }
const text = (n: number, body = `message ${n}`) => ({
  type: 'm.room.message', event_id: `$e${n}:example.org`, room_id: ROOM, sender: '@alice:example.org',
  origin_server_ts: 1_790_000_000_000 + n, content: { msgtype: 'm.text', body },
})
const bodyOf = (e: InboundEvent): string => (e.kind === 'message' && e.content.kind === 'text' ? e.content.body.text : `(${e.kind})`)

describe.each(DB_KINDS)('the inbox handed over in memory on %s', kind => {
  let db: Db
  let server: AppserviceServer
  let events: MatrixEvents
  afterEach(async () => {
    await server?.close()
    await events?.stop()
    await db?.close()
  })

  /** `atOnce`: a quiet portal's messages are recorded before the answer (MatrixEvents.recordDirect), as in the bridge. */
  async function bridge(o: { atOnce?: boolean } = {}) {
    db = await freshDb(kind)
    const reads = { n: 0 }
    // Counts the drain's reads of the table; everything else goes through untouched.
    const counted: Db = {
      ...db,
      query: (sql: string, params?: unknown[]) => {
        if (sql.startsWith('SELECT id, event, attempts FROM inbox')) reads.n++
        return db.query(sql, params)
      },
    } as Db
    const inbox = new Inbox(counted)
    const relayed: string[] = []
    // Bodies whose recording fails, and how many more times: the batch's attempt, then the event's own.
    const failing = new Map<string, number>()
    const record = async (evs: InboundEvent[], handled?: Handled): Promise<void> => {
      for (const e of evs) {
        const left = failing.get(bodyOf(e)) ?? 0
        if (left > 0) {
          failing.set(bodyOf(e), left - 1)
          throw Object.assign(new Error('connection reset'), { code: 'ECONNRESET' })
        }
      }
      // Like the real router, marks the inbox rows handled with what it recorded (Router.receiveMany), and only
      // then is it recorded: a test that saw it relayed may look for its row marked.
      if (handled) await db.query(handled.statement('$1'), [handled.ids])
      relayed.push(...evs.map(bodyOf))
    }
    events = new MatrixEvents({
      db, inbox, log, domain: 'example.org', botMxid: '@bot:example.org', permissions: {},
      router: { receiveMany: record, receive: (e: InboundEvent) => record([e]) },
      portals: { byRoom: (id: string) => (id === ROOM ? portal : undefined) },
      commands: { parse: () => undefined },
      api: { getState: async () => undefined },
      retryDelayMs: 20,
      maxAttempts: 1000,
    } as unknown as MatrixEventsOptions)
    server = new AppserviceServer({
      hsToken: HS_TOKEN, maxBodyBytes: 1 << 20, inbox, log, metrics: new Metrics(false), onStored: n => events.stored(n),
      ...(o.atOnce ? { recordAtOnce: (evs: MatrixEvent[]) => events.recordDirect(evs) } : {}),
    })
    const base = `http://127.0.0.1:${await server.listen(0, '127.0.0.1')}`
    const push = async (txn: number, evs: unknown[]) => {
      const res = await fetch(`${base}/_matrix/app/v1/transactions/${txn}`, {
        method: 'PUT', headers: { Authorization: `Bearer ${HS_TOKEN}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ events: evs }),
      })
      expect(res.status).toBe(200)
    }
    // The table is known empty once a drain that read it has ended on its short read: a peek at the drain in
    // progress, which nothing outside shows (an event stored while it runs would send the next one to the table).
    const drained = () => until(async () => (events as unknown as { running?: unknown }).running === undefined, 'the drain to end')
    return { push, relayed, reads, failing, drained }
  }

  it('once the table was read empty, later events are relayed without reading it back', async () => {
    const { push, relayed, reads, drained } = await bridge()
    await push(1, [text(1)])
    await until(async () => relayed.length === 1, 'the first event relayed')
    await drained()
    const afterFirst = reads.n
    // Stored events hand over what PostgreSQL keeps (a NUL is not storable in jsonb), not what the homeserver sent.
    await push(2, [text(2, 'two\u0000')])
    await until(async () => relayed.length === 2, 'the second event relayed')
    await push(3, [text(3), text(4)])
    await until(async () => relayed.length === 4, 'the third and fourth relayed')
    expect(relayed).toEqual(['message 1', 'two\ufffd', 'message 3', 'message 4'])
    expect(reads.n).toBe(afterFirst)
  })

  it('an event whose recording fails is retried from the table, in order, and nothing is relayed twice', async () => {
    const { push, relayed, reads, failing, drained } = await bridge()
    await push(1, [text(1)])
    await until(async () => relayed.length === 1, 'the first event relayed')
    await drained()
    const afterFirst = reads.n
    failing.set('message 2', 2)
    await push(2, [text(2), text(3)])
    await until(async () => relayed.length === 3, 'the failed event and the one after it relayed on the retry')
    expect(reads.n).toBeGreaterThan(afterFirst) // the retry read the table
    await drained() // the retry's, caught up: the table is known empty again
    const afterRetry = reads.n
    // The marker: a later event, relayed from memory again, and the whole record once each, in order.
    await push(3, [text(4)])
    await until(async () => relayed.length === 4, 'the marker relayed')
    expect(reads.n).toBe(afterRetry)
    expect(relayed).toEqual(['message 1', 'message 2', 'message 3', 'message 4'])
    expect((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM inbox WHERE processed_at IS NULL')).rows[0]!.n).toBe(0)
  })

  it('messages are recorded before the answer only while the table holds nothing: behind a failing event, a later one waits its turn', async () => {
    const { push, relayed, failing, drained } = await bridge({ atOnce: true })
    await push(1, [text(1)]) // the table is not yet known empty: stored, then relayed by the drain
    await until(async () => relayed.length === 1, 'the first event relayed')
    await drained()
    await push(2, [text(2)])
    expect(relayed).toEqual(['message 1', 'message 2']) // recorded before the answer
    failing.set('message 3', Number.POSITIVE_INFINITY)
    await push(3, [text(3)]) // cannot be recorded at once, so it is stored; the drain keeps failing on it
    await push(4, [text(4)])
    await until(async () => ((await db.query<{ attempts: number }>(`SELECT attempts FROM inbox WHERE event_id = '$e3:example.org'`)).rows[0]?.attempts ?? 0) >= 2, 'the stored event retried')
    failing.delete('message 3')
    await until(async () => relayed.length === 4, 'both relayed once the failure ends')
    expect(relayed).toEqual(['message 1', 'message 2', 'message 3', 'message 4'])
  })
})
