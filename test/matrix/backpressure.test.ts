// While the bridge is behind, it answers the homeserver's transactions only as fast as it relays: the events
// are stored at once (nothing is lost), but the answer waits, so the homeserver holds and batches the rest.
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import type { InboundEvent } from '../../src/core/model.ts'
import type { Portal } from '../../src/core/portals.ts'
import type { Handled } from '../../src/core/router.ts'
import type { Db } from '../../src/db/types.ts'
import { AppserviceServer } from '../../src/matrix/appservice.ts'
import { MatrixEvents, type MatrixEventsOptions } from '../../src/matrix/events.ts'
import { Inbox } from '../../src/matrix/inbox.ts'
import { Metrics } from '../../src/metrics.ts'
import { HS_TOKEN } from '../support/config.ts'
import { DB_KINDS, freshDb } from '../support/db.ts'
import { PATIENCE_MS } from '../support/patience.ts'
import { until } from '../support/relay.ts'

const ROOM = '!portal:example.org'
const log = pino({ level: 'silent' })
const portal: Portal = { id: 1, roomId: ROOM, name: 'P', signalGroup: 'g', signalLogin: null, whatsappGroup: null, whatsappLogin: null, signalGroupName: null, whatsappGroupName: null, creator: null, encrypted: false }
const text = (n: number) => ({
  type: 'm.room.message', event_id: `$e${n}:example.org`, room_id: ROOM, sender: '@alice:example.org',
  origin_server_ts: 1_790_000_000_000 + n, content: { msgtype: 'm.text', body: `message ${n}` },
})

describe.each(DB_KINDS)('backpressure on %s', kind => {
  let db: Db
  let server: AppserviceServer
  let events: MatrixEvents
  afterEach(async () => {
    await server?.close()
    await events?.stop()
    await db?.close()
  })

  /** The bridge's Matrix side with the relaying behind `gate`, answering transactions on a real port. */
  async function behindGate(backlogWaitMs: number) {
    db = await freshDb(kind)
    const inbox = new Inbox(db)
    const relayed: InboundEvent[] = []
    const gate = { open: () => {}, closed: true }
    const opened = new Promise<void>(r => (gate.open = () => { gate.closed = false; r() }))
    events = new MatrixEvents({
      db, inbox, log, domain: 'example.org', botMxid: '@bot:example.org', permissions: {},
      // Like the real router, marks the inbox rows handled with what it recorded (Router.receiveMany).
      router: { receiveMany: async (evs: InboundEvent[], handled?: Handled) => { if (gate.closed) await opened; relayed.push(...evs); if (handled) await db.query(handled.statement('$1'), [handled.ids]) } },
      portals: { byRoom: (id: string) => (id === ROOM ? portal : undefined) },
      commands: { parse: () => undefined },
      api: { getState: async () => undefined },
      backlogLimit: 3, backlogWaitMs,
    } as unknown as MatrixEventsOptions)
    server = new AppserviceServer({ hsToken: HS_TOKEN, maxBodyBytes: 1 << 20, inbox, log, metrics: new Metrics(false), onStored: n => events.stored(n) })
    const base = `http://127.0.0.1:${await server.listen(0, '127.0.0.1')}`
    const push = async (txn: number, evs: unknown[]) => {
      const t0 = Date.now()
      const res = await fetch(`${base}/_matrix/app/v1/transactions/${txn}`, {
        method: 'PUT', headers: { Authorization: `Bearer ${HS_TOKEN}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ events: evs }),
      })
      return { status: res.status, ms: Date.now() - t0 }
    }
    const stored = async () => Number((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM inbox')).rows[0]!.n)
    return { push, stored, relayed, gate }
  }

  it('stores a stuck transaction at once but answers it only at the wait bound, never later', async () => {
    const { push, stored, relayed, gate } = await behindGate(1500)
    const stuck = push(1, [1, 2, 3, 4, 5].map(text))
    await until(async () => (await stored()) === 5, 'the five events stored')
    expect(relayed).toEqual([])
    const answer = await stuck
    expect(answer.status).toBe(200)
    // A lower bound only: a busy machine may answer later, never earlier than the bound.
    expect(answer.ms).toBeGreaterThanOrEqual(1400)
    expect(relayed).toEqual([])
    gate.open() // so that stopping does not wait for the stuck relaying
    await until(async () => relayed.length === 5 && relayed, 'the five relayed once unstuck')
  })

  it('holds the answer while more than the limit waits, answers once relayed, and at once when caught up', async () => {
    // The bound is far away, so nothing but the relaying can release the answer.
    const { push, stored, relayed, gate } = await behindGate(PATIENCE_MS * 10)
    let answered = false
    const behind = push(1, [1, 2, 3, 4, 5].map(text)).then(r => ((answered = true), r))
    await until(async () => (await stored()) === 5, 'the five events stored')
    // The answer would follow the storing at once if it were not held; a later transaction is stored too.
    const second = push(2, [6, 7].map(text))
    await until(async () => (await stored()) === 7, 'the next transaction stored')
    expect(answered).toBe(false)
    gate.open()
    expect((await behind).status).toBe(200)
    expect((await second).status).toBe(200)
    await until(async () => relayed.length === 7 && relayed, 'all seven relayed')
    expect(relayed.map(e => e.remoteId)).toEqual([1, 2, 3, 4, 5, 6, 7].map(n => `$e${n}:example.org`))

    // Caught up: the next transaction is answered without waiting for the (distant) bound.
    expect((await push(3, [text(8)])).status).toBe(200)
    await until(async () => relayed.length === 8 && relayed, 'the eighth relayed')
  })
})
