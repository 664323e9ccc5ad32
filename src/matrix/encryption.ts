// Puts end-to-bridge encryption together when the configuration allows it: the bot's device (one, kept
// across restarts), its Olm machine, the room knowledge and the encrypting API the rest of the bridge uses.
import { randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import type { Db } from '../db/types.ts'
import type { DeviceHttp, HomeserverApi } from './client.ts'
import { CryptoMachine, ensureBotDevice, type CryptoStoreChoice } from './crypto/machine.ts'
import { EncryptedRooms } from './encrypted-rooms.ts'
import { EncryptingApi } from './encrypting-api.ts'
import { parseGhost } from './ghosts.ts'

/** A HomeserverApi that can act as one device of a user (MatrixClientApi). */
export type DeviceCapableApi = HomeserverApi & { deviceHttp(userId: string, deviceId?: string): DeviceHttp }

export interface Encryption {
  machine: CryptoMachine
  rooms: EncryptedRooms
  /** The API that encrypts what goes into encrypted rooms. */
  api: HomeserverApi
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
  store: CryptoStoreChoice | undefined
  log: Logger
}): Promise<Encryption> {
  const api = o.api as Partial<DeviceCapableApi>
  if (typeof api.deviceHttp !== 'function') {
    throw new Error('Encryption needs the homeserver client that can act as a device; turn encryption.allow off for this setup.')
  }
  const deviceApi = api as DeviceCapableApi
  const deviceId = await botDeviceId(o.db, o.botMxid)
  const log = o.log.child({ part: 'encryption', deviceId })
  const machine = await CryptoMachine.open({
    userId: o.botMxid, deviceId, http: deviceApi.deviceHttp(o.botMxid, deviceId), log,
    ...(o.store ? { store: o.store } : {}),
  })
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
    async setUp() {
      try {
        const how = await ensureBotDevice(deviceApi.deviceHttp(o.botMxid), o.botMxid, deviceId, 'relay-bridge')
        await machine.processOutgoing()
        const identity = await machine.bootstrapCrossSigning()
        ready = true
        log.info({ how, identity }, 'The bridge\'s encryption device is ready')
      } catch (err) {
        problem = `the device could not be set up: ${(err as Error).message}`
        throw err
      }
    },
    async health() {
      if (!ready) return { ok: false, text: `device ${deviceId}: ${problem}` }
      const signed = await machine.isCrossSignedByOwner().catch(() => false)
      return signed
        ? { ok: true, text: `device ${deviceId}, cross-signed by the bot` }
        : { ok: false, text: `device ${deviceId} is not cross-signed by the bot (run \`relay-bridge reset-encryption\` if this stays)` }
    },
    close: () => machine.close(),
  }
}

/**
 * `relay-bridge reset-encryption`: forgets the bot's device and everything its keys were for, so that the
 * next start makes a new device and identity. The old device is deleted on the homeserver where MSC4190 lets
 * the appservice do that without a password; elsewhere it stays, answering nothing. Returns the old device id.
 */
export async function resetEncryption(o: { db: Db; botMxid: string; api?: DeviceCapableApi; log: Logger; storeKey: string }): Promise<{ deviceId: string | undefined; deletedOnHomeserver: boolean }> {
  const { rows } = await o.db.query<{ device_id: string }>('SELECT device_id FROM crypto_device WHERE user_id = $1', [o.botMxid])
  const deviceId = rows[0]?.device_id
  await o.db.transaction(async tx => {
    await tx.query('DELETE FROM crypto_device WHERE user_id = $1', [o.botMxid])
    // Keys and counts for the old device mean nothing to the new one.
    await tx.query('DELETE FROM crypto_inbox')
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
