// Puts end-to-bridge encryption together when the configuration allows it: the bot's device (one, kept
// across restarts), its Olm machine, the ghosts' own devices (crypto/ghost-devices.ts), the room knowledge and
// the encrypting API the rest of the bridge uses.
import { randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import type { Db } from '../db/types.ts'
import type { DeviceHttp, HomeserverApi } from './client.ts'
import { GhostDevices, type GhostDeviceStats } from './crypto/ghost-devices.ts'
import { CryptoMachine, ensureDevice } from './crypto/machine.ts'
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
  /** The bot and the ghosts. */
  isOwnUser(mxid: string): boolean
  /** Each ghost's own device (undefined with encryption.ghost_devices off: ghosts send from the bot's). */
  ghosts: Pick<GhostDevices, 'receive' | 'deviceOf' | 'stats'> | undefined
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

/** The device id of one of the appservice's users (the bot, a ghost), made on its first use with encryption
 * and kept in the database: a new id would be a new device, which people see as a new, unverified device. */
export async function keptDeviceId(db: Db, userId: string): Promise<string> {
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
  /** encryption.ghost_devices and what bounds them; undefined: ghosts send from the bot's device. */
  ghostDevices?: { maxLoaded: number; idleMs: number }
}): Promise<Encryption> {
  const api = o.api as Partial<DeviceCapableApi>
  if (typeof api.deviceHttp !== 'function') {
    throw new Error('Encryption needs the homeserver client that can act as a device; turn encryption.allow off for this setup.')
  }
  if (!o.storeKey) throw new Error('encryption.store_key is empty: run `npx relay-bridge generate-registration` (or start through the relay-bridge command), which fills it in.')
  const deviceApi = api as DeviceCapableApi
  const deviceId = await keptDeviceId(o.db, o.botMxid)
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
  const isGhost = (mxid: string) => parseGhost(mxid, o.domain) !== undefined
  const isOwnUser = (mxid: string) => mxid === o.botMxid || isGhost(mxid)
  const rooms = new EncryptedRooms({
    api: o.api, botMxid: o.botMxid,
    // The bridge's own users never need the keys of what the bridge sends: the bot's device reads the room.
    isOwnUser,
  })
  const ghosts = o.ghostDevices && new GhostDevices({
    db: o.db, storeKey: o.storeKey, log: log.child({ part: 'ghost-devices' }), ...o.ghostDevices,
    deviceHttp: (userId, device) => deviceApi.deviceHttp(userId, device),
    keptDeviceId: userId => keptDeviceId(o.db, userId),
    isOwnUser,
  })
  const ghostSender = ghosts && { isGhost, devices: ghosts, log }
  let ready = false
  let problem = 'the device is not set up on the homeserver yet'
  return {
    machine, rooms, ghosts, isOwnUser,
    api: new EncryptingApi(o.api, machine, rooms, ghostSender),
    encrypting: inner => new EncryptingApi(inner, machine, rooms),
    async setUp() {
      try {
        const how = await ensureDevice(deviceApi.deviceHttp(o.botMxid), o.botMxid, deviceId, 'relay-bridge')
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
      const g = ghosts && ghostsLine(ghosts.stats())
      return signed
        ? { ok: true, text: `device ${deviceId}, cross-signed by the bot${g ? `; ${g}` : ''}` }
        : { ok: false, text: `device ${deviceId} is not cross-signed by the bot (run \`npx relay-bridge reset-encryption\` if this stays)` }
    },
    async close() {
      await ghosts?.close()
      await crypto.close()
      await store.close()
    },
  }
}

function ghostsLine(s: GhostDeviceStats): string {
  return `ghosts send from devices of their own (${s.loaded} in memory now)`
}

/**
 * `npx relay-bridge reset-encryption`: forgets the bot's device, every ghost's device and everything their keys
 * were for, so that the next start makes a new device and identity for the bot, and each ghost gets a new one
 * when it next speaks in an encrypted room. The old devices are deleted on the homeserver where MSC4190 lets the
 * appservice do that without a password; elsewhere they stay, answering nothing. Returns the bot's old device id.
 */
export async function resetEncryption(o: { db: Db; botMxid: string; api?: DeviceCapableApi; log: Logger }): Promise<{ deviceId: string | undefined; deletedOnHomeserver: boolean; ghostDevices: number }> {
  const { rows } = await o.db.query<{ user_id: string; device_id: string }>('SELECT user_id, device_id FROM crypto_device')
  const deviceId = rows.find(r => r.user_id === o.botMxid)?.device_id
  await o.db.transaction(async tx => {
    await tx.query('DELETE FROM crypto_device')
    // Keys and counts for the old devices mean nothing to new ones. The stores are deleted whatever their key
    // (it may be the lost key that brought the operator here): a reset must work without it.
    await tx.query('DELETE FROM crypto_inbox')
    await tx.query('DELETE FROM crypto_store')
  })
  let deletedOnHomeserver = false
  for (const row of o.api ? rows : []) {
    try {
      await o.api!.deviceHttp(row.user_id).request('DELETE', `/_matrix/client/v3/devices/${encodeURIComponent(row.device_id)}`, {})
      if (row.user_id === o.botMxid) deletedOnHomeserver = true
    } catch (err) {
      o.log.warn({ user: row.user_id, err: (err as Error).message }, 'Could not delete an old device on the homeserver')
    }
  }
  return { deviceId, deletedOnHomeserver, ghostDevices: rows.filter(r => r.user_id !== o.botMxid).length }
}
