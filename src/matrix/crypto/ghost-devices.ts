// Each ghost's own encryption device (issue 14). Clients flag a message whose sender does not own the device
// that encrypted it (Element: a red shield, "mismatched sender"; clients that exclude insecure devices hide it),
// and that is what a ghost's message sent from the bot's one device is. So a ghost that speaks in an encrypted
// room sends from a device of its own, cross-signed by the ghost's own identity: the appservice owns the ghosts,
// so it creates their devices (MSC4190, or the older appservice login and MSC3202 masquerading) and holds their
// cross-signing keys, without user-interactive auth.
//
// The cost stays with the ghosts that speak in encrypted rooms: nothing is made for the others. A ghost's machine
// (its Olm account and sessions, in its own crypto store, `store.ts`, named by the ghost's user id) is loaded when
// it speaks and unloaded when it has been idle for a while or when more than `maxLoaded` are in memory; loaded
// again, it is the same device with the same keys. While unloaded it hears nothing: to-device messages for it
// are room keys other people's clients share with every member's devices, which a ghost never needs (the bot's
// device reads the room), and the device-list changes it missed are made up for on load by querying every user
// it tracks again.
import type { Logger } from 'pino'
import type { Db } from '../../db/types.ts'
import type { DeviceHttp, JsonObject } from '../client.ts'
import { countsOf, forDevice, nothingNew, withoutOwnUsers } from './transaction.ts'
import { CryptoMachine, ensureDevice, type RoomEncryption } from './machine.ts'
import { openCryptoStore, type CryptoStore } from './store.ts'
import type { TransactionCrypto } from '../transaction-crypto.ts'

export interface GhostDevicesOptions {
  db: Db
  /** encryption.store_key: seals each ghost's store as it seals the bot's. */
  storeKey: string
  /** Acts as one of the appservice's users, as one of its devices or (no device) as the user. */
  deviceHttp(userId: string, deviceId?: string): DeviceHttp
  /** The device id kept for a user (made on first use): the same function the bot's device uses. */
  keptDeviceId(userId: string): Promise<string>
  /** The bridge's own users (the bot, the ghosts): no ghost's device shares a key with them. */
  isOwnUser(mxid: string): boolean
  log: Logger
  /** The most ghost machines in memory at once; the least recently used idle ones beyond it are unloaded. */
  maxLoaded: number
  /** A ghost machine unused for this long is unloaded. */
  idleMs: number
}

interface Loaded {
  mxid: string
  crypto: CryptoMachine
  store: CryptoStore
  /** Calls using the machine now: it is never unloaded under them. */
  using: number
  lastUsed: number
  /** The key counts last handed to the machine: a transaction that repeats them tells it nothing. */
  counts?: string
}

/** What the ghosts' devices cost so far (the benchmark and `!relay status`). */
export interface GhostDeviceStats {
  /** Devices this process created on the homeserver (with a new cross-signing identity each). */
  created: number
  /** Machines loaded (a device used again after an unload or a restart counts once per load). */
  loads: number
  unloads: number
  /** Machines in memory now. */
  loaded: number
  /** One-time keys claimed for the ghosts' devices: each is a new Olm session to another device. */
  olmSessions: number
}

export class GhostDevices {
  private readonly o: GhostDevicesOptions
  /** In least-recently-used order: a use moves an entry to the end. */
  private readonly loaded = new Map<string, Loaded>()
  private readonly loading = new Map<string, Promise<Loaded>>()
  private readonly unloading = new Map<string, Promise<void>>()
  /** Devices this process knows to exist on the homeserver, set up and cross-signed. */
  private readonly ready = new Set<string>()
  /** Moves on with every transaction that changed someone's devices (see load()). */
  private listChanges = 0
  private readonly counts = { created: 0, loads: 0, unloads: 0, olmSessions: 0 }
  private readonly sweep: NodeJS.Timeout
  private closed = false

  constructor(o: GhostDevicesOptions) {
    this.o = o
    this.sweep = setInterval(() => void this.unloadIdle(), Math.max(10, Math.floor(o.idleMs / 2)))
    this.sweep.unref()
  }

  stats(): GhostDeviceStats {
    return { ...this.counts, loaded: this.loaded.size }
  }

  /** Encrypts one event as `mxid`, from the ghost's own device (set up on its first use). */
  async encrypt(mxid: string, roomId: string, type: string, content: JsonObject, room: RoomEncryption): Promise<JsonObject> {
    const entry = await this.use(mxid)
    try {
      const encrypted = await entry.crypto.encrypt(roomId, type, content, room)
      // Its ratchet step is in the database before the event leaves (store.ts's rule).
      await entry.store.flush()
      return encrypted
    } finally {
      this.release(entry)
    }
  }

  /** The device a ghost sends from, setting it up if needed (for tests). */
  async deviceOf(mxid: string): Promise<string> {
    const entry = await this.use(mxid)
    this.release(entry)
    return entry.crypto.deviceId
  }

  /** A stored transaction's part for each ghost whose machine is in memory: its to-device messages, key counts and
   * the device-list changes. */
  async receive(c: TransactionCrypto): Promise<void> {
    const others = (users: string[]) => users.filter(u => !this.o.isOwnUser(u))
    if (others(c.deviceLists.changed).length > 0 || others(c.deviceLists.left).length > 0) this.listChanges++
    for (const entry of [...this.loaded.values()]) {
      const all = forDevice(c, entry.mxid, entry.crypto.deviceId)
      if (!all) continue
      // Handed to every machine in memory, each new ghost device would cost a pass over each machine.
      const part = withoutOwnUsers(all, entry.mxid, this.o.isOwnUser)
      // Each of a ghost's own messages comes back with its key counts (transaction.ts).
      if (nothingNew(part, entry.counts)) continue
      entry.using++
      try {
        await entry.crypto.receiveSyncChanges(part)
        await entry.store.flush()
        entry.counts = countsOf(part)
      } finally {
        this.release(entry)
      }
    }
  }

  /** Unloads every machine (their stores are flushed) and stops the sweep. */
  async close(): Promise<void> {
    this.closed = true
    clearInterval(this.sweep)
    await Promise.allSettled([...this.loading.values()])
    await Promise.allSettled([...this.loaded.keys()].map(mxid => this.unload(mxid)))
    await Promise.allSettled([...this.unloading.values()])
    // Machines still in use: close() waits for their calls, then the store is flushed.
    for (const entry of this.loaded.values()) {
      await entry.crypto.close().catch(() => {})
      await entry.store.close().catch(() => {})
    }
    this.loaded.clear()
  }

  private async use(mxid: string): Promise<Loaded> {
    let entry: Loaded | undefined
    // A machine just loaded can be unloaded again before this call gets to it (others made room meanwhile).
    while (!(entry = this.loaded.get(mxid))) {
      if (this.closed) throw new Error('The ghosts\' encryption devices are closed.')
      let loading = this.loading.get(mxid)
      if (!loading) {
        loading = this.load(mxid).finally(() => this.loading.delete(mxid))
        this.loading.set(mxid, loading)
      }
      await loading
    }
    entry.using++
    entry.lastUsed = Date.now()
    this.loaded.delete(mxid)
    this.loaded.set(mxid, entry)
    return entry
  }

  private release(entry: Loaded): void {
    entry.using--
    entry.lastUsed = Date.now()
    this.trim()
  }

  private async load(mxid: string): Promise<Loaded> {
    await this.unloading.get(mxid)
    const { o } = this
    const deviceId = await o.keptDeviceId(mxid)
    const log = o.log.child({ ghost: mxid, deviceId })
    const store = await openCryptoStore({ db: o.db, key: o.storeKey, name: mxid, log })
    let crypto: CryptoMachine | undefined
    try {
      const inner = o.deviceHttp(mxid, deviceId)
      const http: DeviceHttp = {
        request: async (method, path, body) => {
          await store.flush()
          const answer = await inner.request(method, path, body)
          if (path.endsWith('/keys/claim')) this.counts.olmSessions += countClaimed(answer)
          return answer
        },
      }
      crypto = await CryptoMachine.open({ userId: mxid, deviceId, http, log, store: { name: store.storeName } })
      const changesBefore = this.listChanges
      if (!this.ready.has(mxid)) {
        await ensureDevice(o.deviceHttp(mxid), mxid, deviceId, 'relay-bridge')
        await crypto.processOutgoing()
        if ((await crypto.bootstrapCrossSigning()) === 'created') {
          this.counts.created++
          log.info('A ghost\'s own encryption device is set up and cross-signed')
        }
        this.ready.add(mxid)
      }
      // Device lists it was not told of while it was not in memory (nothing for a new device: it tracks nobody).
      await crypto.markAllTrackedUsersAsDirty()
      await store.flush()
      const entry: Loaded = { mxid, crypto, store, using: 0, lastUsed: Date.now() }
      this.loaded.set(mxid, entry)
      this.counts.loads++
      // A change handed over while it loaded went to the machines in memory, not to this one.
      if (this.listChanges !== changesBefore) await crypto.markAllTrackedUsersAsDirty()
      return entry
    } catch (err) {
      await crypto?.close().catch(() => {})
      await store.close().catch(() => {})
      throw err
    }
  }

  /** Unloads the least recently used idle machines beyond maxLoaded. */
  private trim(): void {
    let over = this.loaded.size - this.o.maxLoaded
    for (const [mxid, entry] of this.loaded) {
      if (over <= 0) return
      if (entry.using > 0) continue
      void this.unload(mxid)
      over--
    }
  }

  private async unloadIdle(): Promise<void> {
    const before = Date.now() - this.o.idleMs
    for (const [mxid, entry] of [...this.loaded]) if (entry.using === 0 && entry.lastUsed <= before) await this.unload(mxid)
  }

  private unload(mxid: string): Promise<void> {
    const entry = this.loaded.get(mxid)
    if (!entry || entry.using > 0) return Promise.resolve()
    this.loaded.delete(mxid)
    this.counts.unloads++
    const done = (async () => {
      try {
        await entry.crypto.close()
        await entry.store.close()
      } catch (err) {
        this.o.log.warn({ ghost: mxid, err: (err as Error).message }, 'A ghost\'s encryption machine did not close cleanly')
      }
    })().finally(() => this.unloading.delete(mxid))
    this.unloading.set(mxid, done)
    return done
  }
}

/** Keys a /keys/claim answer holds: one per device that gets a new Olm session. */
function countClaimed(answer: JsonObject): number {
  let n = 0
  const byUser = answer['one_time_keys']
  if (byUser && typeof byUser === 'object') {
    for (const devices of Object.values(byUser as Record<string, unknown>)) {
      if (devices && typeof devices === 'object') n += Object.keys(devices).length
    }
  }
  return n
}
