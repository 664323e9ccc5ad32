// What a transaction brings for encryption (to-device events, device lists, one-time-key counts, unused
// fallback key types) is stored before the homeserver gets its answer, under every spelling homeservers
// use, once per transaction however often it is retried, and never at the cost of the rest of the
// transaction when a field is malformed.
//
// Shapes: Synapse's synapse/appservice/api.py (1.67 sends `org.matrix.msc3202.device_one_time_key_counts`
// only; 1.73+ sends it and `org.matrix.msc3202.device_one_time_keys_count`, to-device events under
// `de.sorunome.msc2409.to_device` with `to_user_id`/`to_device_id`), MSC3202 and MSC4203 for the stable names.
import { afterEach, describe, expect, it } from 'vitest'
import { AppserviceServer } from '../../src/matrix/appservice.ts'
import { Inbox } from '../../src/matrix/inbox.ts'
import { Metrics } from '../../src/metrics.ts'
import type { Db } from '../../src/db/types.ts'
import { HS_TOKEN } from '../support/config.ts'
import { DB_KINDS, freshDb } from '../support/db.ts'
import { captureLog } from '../support/log.ts'

const BOT = '@relaybot:example.org'
const DEVICE = 'RELAYBRIDGEDEV'

/** An Olm-encrypted to-device event (a room key in transit) as Synapse pushes it to the appservice. */
function roomKeyToDevice(n: number) {
  return {
    type: 'm.room.encrypted', sender: '@alice:example.org',
    content: { algorithm: 'm.olm.v1.curve25519-aes-sha2', sender_key: `aliceCurveKey${n}`, ciphertext: { botCurveKey: { type: 0, body: `olm-body-${n}` } } },
    to_user_id: BOT, to_device_id: DEVICE,
  }
}

const message = (n: number) => ({
  type: 'm.room.encrypted', event_id: `$enc${n}`, room_id: '!room:example.org', sender: '@alice:example.org', origin_server_ts: 1_790_000_000_000 + n,
  content: { algorithm: 'm.megolm.v1.aes-sha2', ciphertext: `megolm-${n}`, session_id: 'session1', sender_key: 'aliceCurveKey', device_id: 'ALICEPHONE' },
})

describe.each(DB_KINDS)('encryption fields of transactions on %s', kind => {
  let db: Db
  let server: AppserviceServer
  let base: string
  const captured = captureLog('info')

  async function start(database: Db): Promise<void> {
    server = new AppserviceServer({ hsToken: HS_TOKEN, maxBodyBytes: 33_554_432, inbox: new Inbox(database), log: captured.log, metrics: new Metrics(false), storeCrypto: true })
    base = `http://127.0.0.1:${await server.listen(0, '127.0.0.1')}`
  }
  const put = (txnId: string, body: unknown) => fetch(`${base}/_matrix/app/v1/transactions/${txnId}`, {
    method: 'PUT', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${HS_TOKEN}` }, body: JSON.stringify(body),
  })
  const stored = async () => (await new Inbox(db).pendingCrypto(100))
  const inboxIds = async () => (await db.query<{ event_id: string }>('SELECT event_id FROM inbox ORDER BY id')).rows.map(r => r.event_id)

  afterEach(async () => {
    await server?.close()
    await db?.close()
  })

  it('Synapse 1.67 spellings: to-device events, device lists, key counts and fallback key types are stored before the answer', async () => {
    db = await freshDb(kind)
    await start(db)
    const res = await put('1', {
      events: [message(1)],
      'de.sorunome.msc2409.to_device': [roomKeyToDevice(1), roomKeyToDevice(2)],
      'org.matrix.msc3202.device_lists': { changed: ['@alice:example.org'], left: ['@bob:example.org'] },
      'org.matrix.msc3202.device_one_time_key_counts': { [BOT]: { [DEVICE]: { signed_curve25519: 17 } } },
      'org.matrix.msc3202.device_unused_fallback_key_types': { [BOT]: { [DEVICE]: ['signed_curve25519'] } },
    })
    expect(res.status).toBe(200)
    const rows = await stored()
    expect(rows).toHaveLength(1)
    expect(rows[0]!.crypto).toEqual({
      toDevice: [roomKeyToDevice(1), roomKeyToDevice(2)],
      deviceLists: { changed: ['@alice:example.org'], left: ['@bob:example.org'] },
      otkCounts: { [BOT]: { [DEVICE]: { signed_curve25519: 17 } } },
      fallbackKeyTypes: { [BOT]: { [DEVICE]: ['signed_curve25519'] } },
    })
    expect(await inboxIds()).toEqual(['$enc1'])
  })

  it('Synapse 1.73+ sends the counts under two names and the stable names (MSC3202/MSC4203) are read too', async () => {
    db = await freshDb(kind)
    await start(db)
    const counts = { [BOT]: { [DEVICE]: { signed_curve25519: 50 } } }
    expect((await put('1', { events: [], 'org.matrix.msc3202.device_one_time_key_counts': counts, 'org.matrix.msc3202.device_one_time_keys_count': counts })).status).toBe(200)
    expect((await put('2', {
      events: [], to_device: [roomKeyToDevice(3)], device_lists: { changed: ['@carol:example.org'], left: [] },
      device_one_time_keys_count: { [BOT]: { [DEVICE]: { signed_curve25519: 49 } } }, device_unused_fallback_key_types: { [BOT]: { [DEVICE]: [] } },
    })).status).toBe(200)
    const rows = await stored()
    expect(rows.map(r => r.crypto)).toEqual([
      { toDevice: [], deviceLists: { changed: [], left: [] }, otkCounts: counts, fallbackKeyTypes: undefined },
      { toDevice: [roomKeyToDevice(3)], deviceLists: { changed: ['@carol:example.org'], left: [] }, otkCounts: { [BOT]: { [DEVICE]: { signed_curve25519: 49 } } }, fallbackKeyTypes: { [BOT]: { [DEVICE]: [] } } },
    ])
  })

  it('a retried transaction is stored once, concurrently or after a restart; a reused txn id with new keys is stored again', async () => {
    db = await freshDb(kind)
    await start(db)
    const txn = { events: [message(1)], 'de.sorunome.msc2409.to_device': [roomKeyToDevice(1)] }
    const [a, b] = await Promise.all([put('5', txn), put('5', txn)])
    expect([a.status, b.status]).toEqual([200, 200])
    await server.close()
    await start(db) // a new process on the same database
    expect((await put('5', txn)).status).toBe(200)
    expect((await stored()).map(r => r.crypto.toDevice)).toEqual([[roomKeyToDevice(1)]])
    // Synapse on SQLite numbers from 1 again after its restart: same id, a new room key.
    expect((await put('5', { events: [], 'de.sorunome.msc2409.to_device': [roomKeyToDevice(2)] })).status).toBe(200)
    expect((await stored()).map(r => r.crypto.toDevice)).toEqual([[roomKeyToDevice(1)], [roomKeyToDevice(2)]])
  })

  it('when the database fails, the keys are not acknowledged: the answer is an error and the retry stores them', async () => {
    db = await freshDb(kind)
    await start(db)
    await db.query('ALTER TABLE crypto_inbox RENAME TO crypto_inbox_away')
    const txn = { events: [message(1)], 'de.sorunome.msc2409.to_device': [roomKeyToDevice(1)] }
    expect((await put('9', txn)).status).toBe(500)
    await db.query('ALTER TABLE crypto_inbox_away RENAME TO crypto_inbox')
    // Nothing of it was acknowledged, not even its event: the homeserver keeps the whole transaction.
    expect(await inboxIds()).toEqual([])
    expect((await put('9', txn)).status).toBe(200)
    expect((await stored()).map(r => r.crypto.toDevice)).toEqual([[roomKeyToDevice(1)]])
    expect(await inboxIds()).toEqual(['$enc1'])
  })

  it('malformed fields are named in an error and left out, while the events and every well-formed key are kept', async () => {
    db = await freshDb(kind)
    await start(db)
    const res = await put('1', {
      events: [message(1)],
      'de.sorunome.msc2409.to_device': [roomKeyToDevice(1), 'junk', { type: 7, sender: '@alice:example.org', content: {} }, { ...roomKeyToDevice(2), to_device_id: 12 }, roomKeyToDevice(3)],
      'org.matrix.msc3202.device_lists': { changed: ['@alice:example.org', 42, 'not-a-user'], left: 'everyone' },
      'org.matrix.msc3202.device_one_time_keys_count': { [BOT]: { [DEVICE]: { signed_curve25519: 'many' }, OTHER: { signed_curve25519: 3 } }, nobody: {} },
      'org.matrix.msc3202.device_unused_fallback_key_types': [],
    })
    expect(res.status).toBe(200) // refused, the homeserver would retry it forever and relay nothing more
    expect(await inboxIds()).toEqual(['$enc1'])
    expect((await stored())[0]!.crypto).toEqual({
      toDevice: [roomKeyToDevice(1), roomKeyToDevice(3)],
      deviceLists: { changed: ['@alice:example.org'], left: [] },
      otkCounts: { [BOT]: { OTHER: { signed_curve25519: 3 } } },
      fallbackKeyTypes: {},
    })
    const line = captured.lines.find(l => l.msg.startsWith('The homeserver sent encryption fields the bridge cannot read'))
    expect(line).toBeDefined()
    expect(line!.problems).toEqual([
      'de.sorunome.msc2409.to_device[1] is not a to-device event (type, sender and content)',
      'de.sorunome.msc2409.to_device[2] is not a to-device event (type, sender and content)',
      'de.sorunome.msc2409.to_device[3] is not a to-device event (type, sender and content)',
      'org.matrix.msc3202.device_lists.changed holds 2 entries that are not user ids',
      'org.matrix.msc3202.device_lists.left is not a list of user ids',
      `org.matrix.msc3202.device_one_time_keys_count["${BOT}"]["${DEVICE}"] is not an object of non-negative counts`,
      'org.matrix.msc3202.device_one_time_keys_count["nobody"] is not a user id with an object of devices',
      'org.matrix.msc3202.device_unused_fallback_key_types is not an object of user ids',
    ])
  })

  it('a bridge with encryption off stores none of it', async () => {
    db = await freshDb(kind)
    server = new AppserviceServer({ hsToken: HS_TOKEN, maxBodyBytes: 33_554_432, inbox: new Inbox(db), log: captured.log, metrics: new Metrics(false) })
    base = `http://127.0.0.1:${await server.listen(0, '127.0.0.1')}`
    expect((await put('1', { events: [message(1)], 'de.sorunome.msc2409.to_device': [roomKeyToDevice(1)] })).status).toBe(200)
    expect(await stored()).toEqual([])
    expect(await inboxIds()).toEqual(['$enc1'])
  })
})
