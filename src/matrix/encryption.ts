// Puts end-to-bridge encryption together when the configuration allows it: the bot's device (one, kept
// across restarts), its Olm machine, the room knowledge and the encrypting API the rest of the bridge uses.
import { randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import type { Db } from '../db/types.ts'
import type { DeviceHttp, HomeserverApi } from './client.ts'
import { CryptoMachine, ensureBotDevice } from './crypto/machine.ts'
import { openCryptoStore } from './crypto/store.ts'
import { EncryptedRooms } from './encrypted-rooms.ts'
import { EncryptingApi } from './encrypting-api.ts'
import { parseGhost } from './ghosts.ts'

/** A HomeserverApi that can act as one device of a user (MatrixClientApi). */
export type DeviceCapableApi = HomeserverApi & { deviceHttp(userId: string, deviceId?: string): DeviceHttp }

export interface Encryption {
  /** The machine, with every call that changes its state written to the database before its effects leave. */
  machine: Pick<CryptoMachine, 'userId' | 'deviceId' | 'decrypt' | 'onRoomKeys' | 'receiveSyncChanges' | 'encrypt'>
  rooms: EncryptedRooms
  /** The API that encrypts what goes into encrypted rooms. */
  api: HomeserverApi
  /** Another API (double puppeting's) made to encrypt the same way, by the bot's device. */
  encrypting(inner: HomeserverApi): HomeserverApi
  /** Creates the device on the homeserver, uploads its keys and cross-signs it; safe to call again. */
  setUp(): Promise<void>
  /** The device, in a sentence for `!relay status`. */
  health(): Promise<{ ok: boolean; text: string }>
  close(): Promise<void>
}

/** The bot's device id, made on the first start with encryption and kept in the database. */
export async function botDeviceId(db: Db, userId: string): Promise<string> {
  const made = `RELAYBRIDGE${randomBytes(5).toString('hex').toUpperCase()}`
  await db.query('INSERT INTO crypto_device (user_id, device_id) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING', [userId, made])
  const { rows } = await db.query<{ device_id: string }>('SELECT device_id FROM crypto_device WHERE user_id = $1', [userId])
  return rows[0]!.device_id
}

export async function openEncryption(o: {
  api: HomeserverApi
  db: Db
  botMxid: string
  domain: string
  /** encryption.store_key: seals the store's rows. */
  storeKey: string
  log: Logger
}): Promise<Encryption> {
  const api = o.api as Partial<DeviceCapableApi>
  if (typeof api.deviceHttp !== 'function') {
    throw new Error('Encryption needs the homeserver client that can act as a device; turn encryption.allow off for this setup.')
  }
  if (!o.storeKey) throw new Error('encryption.store_key is empty: run `npx relay-bridge generate-registration` (or start through the relay-bridge command), which fills it in.')
  const deviceApi = api as DeviceCapableApi
  const deviceId = await botDeviceId(o.db, o.botMxid)
  const log = o.log.child({ part: 'encryption', deviceId })
  const store = await openCryptoStore({ db: o.db, key: o.storeKey, name: o.botMxid, log })
  // The rule of store.ts: what the machine committed is in the database before any effect of it leaves the
  // process. Every request the machine makes goes through this http, so each is preceded by a flush.
  const inner = deviceApi.deviceHttp(o.botMxid, deviceId)
  const http: DeviceHttp = { request: async (method, path, body) => (await store.flush(), inner.request(method, path, body)) }
  const crypto = await CryptoMachine.open({
    userId: o.botMxid, deviceId, http, log,
    // Unencrypted by the machine: the store seals each row once (seal.ts).
    store: { name: store.storeName },
  })
  const machine: Encryption['machine'] = {
    userId: crypto.userId, deviceId: crypto.deviceId,
    decrypt: event => crypto.decrypt(event),
    onRoomKeys: listener => crypto.onRoomKeys(listener),
    // Flushed before the caller marks the transaction's keys as handed over.
    receiveSyncChanges: async changes => {
      await crypto.receiveSyncChanges(changes)
      await store.flush()
    },
    // Flushed before the encrypted event is sent: its ratchet step is then in the database.
    encrypt: async (roomId, type, content, room) => {
      const encrypted = await crypto.encrypt(roomId, type, content, room)
      await store.flush()
      return encrypted
    },
  }
  const rooms = new EncryptedRooms({
    api: o.api, botMxid: o.botMxid,
    // The bot and the ghosts have no devices of their own (yet): no key goes to them.
    isOwnUser: mxid => mxid === o.botMxid || parseGhost(mxid, o.domain) !== undefined,
  })
  let ready = false
  let problem = 'the device is not set up on the homeserver yet'
  return {
    machine, rooms,
    api: new EncryptingApi(o.api, machine, rooms),
    encrypting: inner => new EncryptingApi(inner, machine, rooms),
    async setUp() {
      try {
        const how = await ensureBotDevice(deviceApi.deviceHttp(o.botMxid), o.botMxid, deviceId, 'relay-bridge')
        await crypto.processOutgoing()
        const identity = await crypto.bootstrapCrossSigning()
        await store.flush()
        ready = true
        log.info({ how, identity }, 'The bridge\'s encryption device is ready')
      } catch (err) {
        problem = `the device could not be set up: ${(err as Error).message}`
        throw err
      }
    },
    async health() {
      if (!ready) return { ok: false, text: `device ${deviceId}: ${problem}` }
      const signed = await crypto.isCrossSignedByOwner().catch(() => false)
      return signed
        ? { ok: true, text: `device ${deviceId}, cross-signed by the bot` }
        : { ok: false, text: `device ${deviceId} is not cross-signed by the bot (run \`npx relay-bridge reset-encryption\` if this stays)` }
    },
    async close() {
      await crypto.close()
      await store.close()
    },
  }
}

/**
 * `npx relay-bridge reset-encryption`: forgets the bot's device and everything its keys were for, so that the
 * next start makes a new device and identity. The old device is deleted on the homeserver where MSC4190 lets
 * the appservice do that without a password; elsewhere it stays, answering nothing. Returns the old device id.
 */
export async function resetEncryption(o: { db: Db; botMxid: string; api?: DeviceCapableApi; log: Logger }): Promise<{ deviceId: string | undefined; deletedOnHomeserver: boolean }> {
  const { rows } = await o.db.query<{ device_id: string }>('SELECT device_id FROM crypto_device WHERE user_id = $1', [o.botMxid])
  const deviceId = rows[0]?.device_id
  await o.db.transaction(async tx => {
    await tx.query('DELETE FROM crypto_device WHERE user_id = $1', [o.botMxid])
    // Keys and counts for the old device mean nothing to the new one. The store is deleted whatever its key
    // (it may be the lost key that brought the operator here): a reset must work without it.
    await tx.query('DELETE FROM crypto_inbox')
    await tx.query('DELETE FROM crypto_store WHERE store_name = $1', [o.botMxid])
  })
  let deletedOnHomeserver = false
  if (deviceId && o.api) {
    try {
      await o.api.deviceHttp(o.botMxid).request('DELETE', `/_matrix/client/v3/devices/${encodeURIComponent(deviceId)}`, {})
      deletedOnHomeserver = true
    } catch (err) {
      o.log.warn({ err: (err as Error).message }, 'Could not delete the old device on the homeserver')
    }
  }
  return { deviceId, deletedOnHomeserver }
}
