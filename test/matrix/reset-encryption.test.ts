// `relay-bridge reset-encryption`: the bot's device and its store are forgotten, whatever key the store was
// sealed with, so that the next start makes a new device; the old one is deleted on the homeserver.
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import type { Db } from '../../src/db/types.ts'
import { MatrixClientApi } from '../../src/matrix/client.ts'
import { botDeviceId, resetEncryption } from '../../src/matrix/encryption.ts'
import { openCryptoStore } from '../../src/matrix/crypto/store.ts'
import { FakeHomeserver } from '../fakes/homeserver.ts'
import { DB_KINDS, freshDb } from '../support/db.ts'

const BOT = '@relaybot:example.org'
const log = pino({ level: 'silent' })

describe.each(DB_KINDS)('reset-encryption on %s', kind => {
  let db: Db
  let hs: FakeHomeserver
  afterEach(async () => {
    await hs?.stop()
    await db?.close()
  })

  it('forgets the device, its store and its pending keys, deletes the device on the homeserver, and the next start makes a new one', async () => {
    db = await freshDb(kind)
    hs = await FakeHomeserver.start({ registration: { 'org.matrix.msc3202': true, 'io.element.msc4190': true } })
    const api = new MatrixClientApi({ homeserverUrl: hs.url, asToken: hs.registration.as_token, domain: hs.domain, botLocalpart: 'relaybot', log })
    const old = await botDeviceId(db, BOT)
    expect(await botDeviceId(db, BOT)).toBe(old) // kept across starts
    await api.deviceHttp(BOT).request('PUT', `/_matrix/client/v3/devices/${old}`, { display_name: 'relay-bridge' })
    const store = await openCryptoStore({ db, key: 'b'.repeat(64), name: BOT, log })
    await store.close()
    expect((await db.query('SELECT 1 FROM crypto_store WHERE store_name = $1', [BOT])).rowCount).toBeGreaterThan(0)
    await db.query(`INSERT INTO crypto_inbox (digest, txn_id, to_device, device_lists, otk_counts) VALUES ('d', '1', '[]', '{"changed":[],"left":[]}', '{}')`)

    expect(await resetEncryption({ db, botMxid: BOT, api, log })).toEqual({ deviceId: old, deletedOnHomeserver: true })
    expect(hs.e2ee.device(BOT, old)).toBeUndefined()
    expect((await db.query('SELECT 1 FROM crypto_store WHERE store_name = $1', [BOT])).rowCount).toBe(0)
    expect((await db.query('SELECT 1 FROM crypto_inbox')).rowCount).toBe(0)
    const fresh = await botDeviceId(db, BOT)
    expect(fresh).not.toBe(old)
    // A store under a new key opens on the erased table (with the old rows it would refuse the new key).
    await (await openCryptoStore({ db, key: 'c'.repeat(64), name: BOT, log })).close()
  })
})
