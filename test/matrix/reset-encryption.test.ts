// `relay-bridge reset-encryption`: the bot's device, the ghosts' own devices and their stores are forgotten,
// whatever key the stores were sealed with, so that the next start makes new devices; the old ones are deleted
// on the homeserver.
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import type { Db } from '../../src/db/types.ts'
import { MatrixClientApi } from '../../src/matrix/client.ts'
import { keptDeviceId, resetEncryption } from '../../src/matrix/encryption.ts'
import { openCryptoStore } from '../../src/matrix/crypto/store.ts'
import { FakeHomeserver } from '../fakes/homeserver.ts'
import { DB_KINDS, freshDb } from '../support/db.ts'

const BOT = '@relaybot:example.org'
const GHOST = '@signal_11111111-2222-3333-4444-555555555555:example.org'
const log = pino({ level: 'silent' })

describe.each(DB_KINDS)('reset-encryption on %s', kind => {
  let db: Db
  let hs: FakeHomeserver
  afterEach(async () => {
    await hs?.stop()
    await db?.close()
  })

  it('forgets the devices, their stores and pending keys, deletes the devices on the homeserver, and the next start makes new ones', async () => {
    db = await freshDb(kind)
    hs = await FakeHomeserver.start({ registration: { 'org.matrix.msc3202': true, 'io.element.msc4190': true } })
    const api = new MatrixClientApi({ homeserverUrl: hs.url, asToken: hs.registration.as_token, domain: hs.domain, botLocalpart: 'relaybot', log })
    const old = await keptDeviceId(db, BOT)
    expect(await keptDeviceId(db, BOT)).toBe(old) // kept across starts
    await api.deviceHttp(BOT).request('PUT', `/_matrix/client/v3/devices/${old}`, { display_name: 'relay-bridge' })
    const ghostDevice = await keptDeviceId(db, GHOST)
    await api.registerUser(GHOST.slice(1, GHOST.indexOf(':')))
    await api.deviceHttp(GHOST).request('PUT', `/_matrix/client/v3/devices/${ghostDevice}`, { display_name: 'relay-bridge' })
    for (const name of [BOT, GHOST]) await (await openCryptoStore({ db, key: 'b'.repeat(64), name, log })).close()
    expect((await db.query('SELECT 1 FROM crypto_store WHERE store_name = $1', [BOT])).rowCount).toBeGreaterThan(0)
    await db.query(`INSERT INTO crypto_inbox (digest, txn_id, to_device, device_lists, otk_counts) VALUES ('d', '1', '[]', '{"changed":[],"left":[]}', '{}')`)

    expect(await resetEncryption({ db, botMxid: BOT, api, log })).toEqual({ deviceId: old, deletedOnHomeserver: true, ghostDevices: 1 })
    expect(hs.e2ee.device(BOT, old)).toBeUndefined()
    expect(hs.e2ee.device(GHOST, ghostDevice)).toBeUndefined()
    expect((await db.query('SELECT 1 FROM crypto_store')).rowCount).toBe(0)
    expect((await db.query('SELECT 1 FROM crypto_inbox')).rowCount).toBe(0)
    const fresh = await keptDeviceId(db, BOT)
    expect(fresh).not.toBe(old)
    expect(await keptDeviceId(db, GHOST)).not.toBe(ghostDevice)
    // A store under a new key opens on the erased table (with the old rows it would refuse the new key).
    await (await openCryptoStore({ db, key: 'c'.repeat(64), name: BOT, log })).close()
  })
})
