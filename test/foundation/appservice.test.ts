// The homeserver → appservice endpoint: auth, bad input, size limits, durability and idempotency.
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { AppserviceServer } from '../../src/matrix/appservice.ts'
import { Inbox, type MatrixEvent } from '../../src/matrix/inbox.ts'
import { Metrics } from '../../src/metrics.ts'
import type { Db } from '../../src/db/types.ts'
import { HS_TOKEN } from '../support/config.ts'
import { DB_KINDS, freshDb } from '../support/db.ts'

const LIMIT = 33_554_432
const log = pino({ level: 'silent' })

function textEvent(n: number, body = `message ${n}`) {
  return {
    type: 'm.room.message', event_id: `$event${n}:example.org`, room_id: '!room:example.org', sender: '@alice:example.org',
    origin_server_ts: 1_790_000_000_000 + n, content: { msgtype: 'm.text', body },
  }
}

describe.each(DB_KINDS)('appservice endpoint on %s', kind => {
  let db: Db
  let server: AppserviceServer
  let base: string
  const stored: number[] = []
  let metrics: Metrics

  async function start(database: Db, maxBodyBytes = LIMIT, ignore?: (e: MatrixEvent) => boolean): Promise<void> {
    metrics = new Metrics(false)
    server = new AppserviceServer({
      hsToken: HS_TOKEN, maxBodyBytes, inbox: new Inbox(database), log, metrics,
      onStored: () => void stored.push(Date.now()), onUserQuery: async id => id === '@signal_known:example.org',
      ...(ignore ? { ignore } : {}),
    })
    base = `http://127.0.0.1:${await server.listen(0, '127.0.0.1')}`
  }

  const put = (path: string, body: unknown, auth: Record<string, string> = { Authorization: `Bearer ${HS_TOKEN}` }) =>
    fetch(`${base}${path}`, { method: 'PUT', headers: { 'Content-Type': 'application/json', ...auth }, body: typeof body === 'string' ? body : JSON.stringify(body) })
  const inboxIds = async () => (await db.query<{ event_id: string }>('SELECT event_id FROM inbox ORDER BY id')).rows.map(r => r.event_id)

  afterEach(async () => {
    await server?.close()
    await db?.close()
  })

  it('keeps an idle connection longer than Synapse keeps it pooled (2 minutes), so the homeserver always closes it first', async () => {
    db = await freshDb(kind)
    await start(db)
    // What the server tells a client in every answer on a kept-alive connection (Node's default, 5 s, made a push
    // that reused a connection just as it idled out fail).
    const res = await put('/_matrix/app/v1/transactions/keep', { events: [] })
    expect(res.status).toBe(200)
    expect(Number(/timeout=(\d+)/.exec(res.headers.get('keep-alive') ?? '')?.[1])).toBeGreaterThan(120)
    expect(server.idleConnectionMs).toBeGreaterThan(120_000)
  })

  it('refuses a missing token with 401 M_UNAUTHORIZED and a wrong one with 403 M_FORBIDDEN', async () => {
    db = await freshDb(kind)
    await start(db)
    const none = await put('/_matrix/app/v1/transactions/1', { events: [] }, {})
    expect(none.status).toBe(401)
    expect(await none.json()).toMatchObject({ errcode: 'M_UNAUTHORIZED' })
    const wrong = await put('/_matrix/app/v1/transactions/1', { events: [] }, { Authorization: 'Bearer nope' })
    expect(wrong.status).toBe(403)
    expect(await wrong.json()).toMatchObject({ errcode: 'M_FORBIDDEN' })
    const mixed = await put(`/_matrix/app/v1/transactions/1?access_token=nope`, { events: [] })
    expect(mixed.status).toBe(403) // header and query must agree
    expect(await inboxIds()).toEqual([])
  })

  it('accepts the legacy path with ?access_token= as old homeservers send it', async () => {
    db = await freshDb(kind)
    await start(db)
    const res = await put(`/transactions/7?access_token=${HS_TOKEN}`, { events: [textEvent(1)] }, {})
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({})
    expect(await inboxIds()).toEqual(['$event1:example.org'])
  })

  it('answers bad bodies with M_NOT_JSON or M_BAD_JSON, and skips malformed events inside a good transaction', async () => {
    db = await freshDb(kind)
    await start(db)
    const notJson = await put('/_matrix/app/v1/transactions/1', '{"events": [')
    expect(notJson.status).toBe(400)
    expect(await notJson.json()).toMatchObject({ errcode: 'M_NOT_JSON' })
    for (const body of [[], { events: 'x' }, { nothing: true }, 'null', '42']) {
      const res = await put('/_matrix/app/v1/transactions/2', body)
      expect(res.status).toBe(400)
      expect(await res.json()).toMatchObject({ errcode: 'M_BAD_JSON' })
    }
    const mixed = await put('/_matrix/app/v1/transactions/3', {
      events: [textEvent(1), 'junk', { type: 'm.room.message' }, { ...textEvent(2), content: [] }, null, textEvent(3)],
    })
    expect(mixed.status).toBe(200) // a refused transaction would be retried forever
    expect(await inboxIds()).toEqual(['$event1:example.org', '$event3:example.org'])
  })

  it('accepts the largest transaction Synapse sends and refuses one over the limit with 413', async () => {
    db = await freshDb(kind)
    await start(db)
    // Synapse: up to 100 events of up to 64 KiB each (plus ephemeral and to-device events).
    const big = 'x'.repeat(64 * 1024 - 400)
    const events = Array.from({ length: 100 }, (_, i) => textEvent(i, big))
    const ephemeral = Array.from({ length: 100 }, (_, i) => ({ type: 'm.typing', room_id: '!room:example.org', content: { user_ids: [`@u${i}:example.org`] } }))
    const body = JSON.stringify({ events, ephemeral })
    expect(body.length).toBeGreaterThan(6_500_000)
    const ok = await put('/_matrix/app/v1/transactions/big', body)
    expect(ok.status).toBe(200)
    expect((await inboxIds()).length).toBe(100)
    const tooBig = await put('/_matrix/app/v1/transactions/huge', JSON.stringify({ events: [textEvent(999, 'y'.repeat(LIMIT))] }))
    expect(tooBig.status).toBe(413)
    expect(await tooBig.json()).toMatchObject({ errcode: 'M_TOO_LARGE' })
    expect((await inboxIds()).length).toBe(100)
  })

  it('when the database fails, answers an error so the homeserver retries; the retry is then stored', async () => {
    db = await freshDb(kind)
    await start(db)
    await db.query('ALTER TABLE inbox RENAME TO inbox_away') // the write fails as if the database were down
    const failed = await put('/_matrix/app/v1/transactions/9', { events: [textEvent(1)] })
    expect(failed.status).toBe(500)
    await db.query('ALTER TABLE inbox_away RENAME TO inbox')
    expect(await inboxIds()).toEqual([])
    expect((await db.query('SELECT 1 FROM appservice_txns')).rowCount).toBe(0)
    const retried = await put('/_matrix/app/v1/transactions/9', { events: [textEvent(1)] })
    expect(retried.status).toBe(200)
    expect(await inboxIds()).toEqual(['$event1:example.org'])
  })

  it('processes a transaction once: the same txnId twice, concurrently, and again after a restart', async () => {
    db = await freshDb(kind)
    await start(db)
    const txn = { events: [textEvent(1), textEvent(2)] }
    const [a, b] = await Promise.all([put('/_matrix/app/v1/transactions/5', txn), put('/_matrix/app/v1/transactions/5', txn)])
    expect([a.status, b.status]).toEqual([200, 200])
    expect((await put('/_matrix/app/v1/transactions/5', txn)).status).toBe(200)
    const storedBefore = stored.length
    await server.close()
    await start(db) // a new process on the same database
    expect((await put('/_matrix/app/v1/transactions/5', txn)).status).toBe(200)
    expect(stored.length).toBe(storedBefore) // nothing new to process
    expect(await inboxIds()).toEqual(['$event1:example.org', '$event2:example.org'])
  })

  it('a reused txn id with new events (Synapse on SQLite after its restart) is not skipped once the id has aged out', async () => {
    db = await freshDb(kind)
    await start(db)
    await put('/_matrix/app/v1/transactions/1', { events: [textEvent(1)] })
    await db.query(`UPDATE appservice_txns SET received_at = now() - interval '2 hours'`)
    await new Inbox(db).prune()
    await put('/_matrix/app/v1/transactions/1', { events: [textEvent(2)] })
    expect(await inboxIds()).toEqual(['$event1:example.org', '$event2:example.org'])
  })

  it('a known txn id that brings only ephemeral events is counted as such in the metrics, not as a duplicate', async () => {
    db = await freshDb(kind)
    await start(db)
    const outcomes = async () => Object.fromEntries((await metrics.transactions.get()).values.map(v => [v.labels.result, v.value]))
    const typing = { type: 'm.typing', room_id: '!room:example.org', content: { user_ids: ['@alice:example.org'] } }
    expect((await put('/_matrix/app/v1/transactions/1', { events: [textEvent(1)] })).status).toBe(200)
    expect((await put('/_matrix/app/v1/transactions/1', { events: [textEvent(1)] })).status).toBe(200) // the homeserver's retry
    // The homeserver restarted and numbers from 1 again; this transaction carries only a typing notification.
    expect((await put('/_matrix/app/v1/transactions/1', { events: [], ephemeral: [typing] })).status).toBe(200)
    expect((await put('/_matrix/app/v1/transactions/1', { events: [], 'de.sorunome.msc2409.ephemeral': [typing] })).status).toBe(200)
    expect(await outcomes()).toEqual({ stored: 1, duplicate: 1, ephemeral_only: 2 })
  })

  it('a transaction of nothing but the bridge’s own echoes writes nothing and wakes nothing; one with a person’s event beside them stores that event and its txn id', async () => {
    db = await freshDb(kind)
    await start(db, LIMIT, e => e.sender.startsWith('@signal_'))
    const echo = (n: number) => ({ ...textEvent(n), sender: '@signal_bob:example.org' })
    const txnIds = async () => (await db.query<{ txn_id: string }>('SELECT txn_id FROM appservice_txns ORDER BY txn_id')).rows.map(r => r.txn_id)
    const outcomes = async () => Object.fromEntries((await metrics.transactions.get()).values.map(v => [v.labels.result, v.value]))
    const wokenBefore = stored.length
    expect((await put('/_matrix/app/v1/transactions/1', { events: [echo(1), echo(2)] })).status).toBe(200)
    expect((await put('/_matrix/app/v1/transactions/1', { events: [echo(1), echo(2)] })).status).toBe(200) // a retry: the same
    expect((await put('/_matrix/app/v1/transactions/2', { events: [echo(3), textEvent(4)] })).status).toBe(200)
    expect(await txnIds()).toEqual(['2'])
    expect(await inboxIds()).toEqual(['$event4:example.org'])
    expect(stored.length - wokenBefore).toBe(1) // only the transaction that stored something woke the inbox
    expect(await outcomes()).toEqual({ echoes: 2, stored: 1 })
  })

  it('answers ping, user and alias queries, and unknown routes in JSON', async () => {
    db = await freshDb(kind)
    await start(db)
    const auth = { Authorization: `Bearer ${HS_TOKEN}` }
    const ping = await fetch(`${base}/_matrix/app/v1/ping`, { method: 'POST', headers: auth, body: '{"transaction_id":"t1"}' })
    expect(ping.status).toBe(200)
    expect(await ping.json()).toEqual({})
    expect((await fetch(`${base}/_matrix/app/v1/users/${encodeURIComponent('@signal_known:example.org')}`, { headers: auth })).status).toBe(200)
    const unknown = await fetch(`${base}/_matrix/app/v1/users/${encodeURIComponent('@signal_nobody:example.org')}`, { headers: auth })
    expect(unknown.status).toBe(404)
    expect((await fetch(`${base}/users/${encodeURIComponent('@signal_known:example.org')}?access_token=${HS_TOKEN}`)).status).toBe(200)
    expect((await fetch(`${base}/_matrix/app/v1/rooms/${encodeURIComponent('#x:example.org')}`, { headers: auth })).status).toBe(404)
    const nowhere = await fetch(`${base}/_matrix/app/v1/somewhere`, { headers: auth })
    expect(nowhere.status).toBe(404)
    expect(await nowhere.json()).toMatchObject({ errcode: 'M_UNRECOGNIZED' })
    const wrongMethod = await fetch(`${base}/_matrix/app/v1/transactions/1`, { method: 'POST', headers: auth, body: '{}' })
    expect(wrongMethod.status).toBe(405)
    expect(await wrongMethod.json()).toMatchObject({ errcode: 'M_UNRECOGNIZED' })
  })
})
