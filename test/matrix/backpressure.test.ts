// While the bridge is behind, it answers the homeserver's transactions only as fast as it relays: the events
// are stored at once (nothing is lost), but the answer waits, so the homeserver holds and batches the rest.
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import type { InboundEvent } from '../../src/core/model.ts'
import type { Portal } from '../../src/core/portals.ts'
import type { Db } from '../../src/db/types.ts'
import { AppserviceServer } from '../../src/matrix/appservice.ts'
import { MatrixEvents, type MatrixEventsOptions } from '../../src/matrix/events.ts'
import { Inbox } from '../../src/matrix/inbox.ts'
import { Metrics } from '../../src/metrics.ts'
import { HS_TOKEN } from '../support/config.ts'
import { DB_KINDS, freshDb } from '../support/db.ts'

const ROOM = '!portal:example.org'
const log = pino({ level: 'silent' })
const portal: Portal = { id: 1, roomId: ROOM, name: 'P', signalGroup: 'g', signalLogin: null, whatsappGroup: null, whatsappLogin: null, creator: null, encrypted: false }
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

  it('holds the answer while more than the limit waits, answers once relayed, and never holds past the wait bound', async () => {
    db = await freshDb(kind)
    const inbox = new Inbox(db)
    const relayed: InboundEvent[] = []
    let open!: () => void
    let gate = new Promise<void>(r => (open = r))
    events = new MatrixEvents({
      db, inbox, log, domain: 'example.org', botMxid: '@bot:example.org', permissions: {},
      router: { receiveMany: async (evs: InboundEvent[]) => { await gate; relayed.push(...evs) } },
      portals: { byRoom: (id: string) => (id === ROOM ? portal : undefined) },
      commands: { parse: () => undefined },
      api: { getState: async () => undefined },
      backlogLimit: 3, backlogWaitMs: 1500,
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
    const stored = async () => (await db.query('SELECT 1 FROM inbox')).rowCount

    // The relaying is stuck: the answer comes only at the bound, but the events were stored long before.
    const stuck = push(1, [1, 2, 3, 4, 5].map(text))
    await new Promise(r => setTimeout(r, 300))
    expect(await stored()).toBe(5)
    expect(await stuck).toMatchObject({ status: 200, ms: expect.any(Number) })
    expect((await stuck).ms).toBeGreaterThanOrEqual(1400)

    // Behind again: this answer waits exactly until the backlog is relayed.
    const behind = push(2, [6, 7].map(text))
    await new Promise(r => setTimeout(r, 300))
    let answered = false
    void behind.then(() => (answered = true))
    await new Promise(r => setTimeout(r, 100))
    expect(answered).toBe(false)
    open()
    expect((await behind).status).toBe(200)
    expect((await behind).ms).toBeLessThan(1400)
    await new Promise(r => setTimeout(r, 100))
    expect(relayed.map(e => e.remoteId)).toEqual([1, 2, 3, 4, 5, 6, 7].map(n => `$e${n}:example.org`))

    // Caught up: the next transaction is answered at once.
    gate = Promise.resolve()
    expect((await push(3, [text(8)])).ms).toBeLessThan(1000)
  })
})
