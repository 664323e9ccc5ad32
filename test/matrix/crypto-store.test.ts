// The Olm machine's crypto store lives in the bridge's database and survives SIGKILL (issue 13, "The crypto
// store is persistent"). The bridge's machine runs in a child process on the store; the other side is a real
// wasm OlmMachine (in memory) in this process, and a Switchboard plays the homeserver's key endpoints.
import type { ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import * as sdk from '@matrix-org/matrix-sdk-crypto-wasm'
import { beforeAll, describe, expect, it } from 'vitest'
import type { Db } from '../../src/db/types.ts'
import { newStoreSecret, openCryptoStore, CryptoStoreKeyError } from '../../src/matrix/crypto/store.ts'
import { forkChild, stopChild } from '../support/children.ts'
import { tempDir } from '../support/config.ts'
import { createPostgresDatabase, DB_KINDS, freshDb, type DbKind } from '../support/db.ts'
import { seedPgliteDataDir } from '../support/global-pglite.ts'
import { PATIENCE_MS } from '../support/patience.ts'
import { drive, send, Switchboard, syncMachine, type PlainRequest } from '../support/olm-switchboard.ts'

const CHILD = fileURLToPath(new URL('./crypto-store-child.ts', import.meta.url))
const BOT = '@relaybot:example.org'
const BOT_DEVICE = 'RELAYBOTDEV'
const ALICE = '@alice:example.org'
const ROOM = '!portal:example.org'
const LATER_ROOM = '!later:example.org'

interface Identity { curve25519: string; ed25519: string }

/** The bridge's machine in its own process, answered by `board` as the homeserver. */
class BotProcess {
  private nextId = 1
  private readonly pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>()
  private output = ''
  readonly child: ChildProcess
  readonly identity: Identity
  private constructor(child: ChildProcess, identity: Identity) {
    this.child = child
    this.identity = identity
  }

  static async start(board: Switchboard, where: { uri: string; dataDir: string; key: string }): Promise<BotProcess> {
    const child = forkChild(CHILD, [where.uri, where.dataDir, where.key, BOT, BOT_DEVICE], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
    let output = ''
    child.stdout!.on('data', (d: Buffer) => (output += d))
    child.stderr!.on('data', (d: Buffer) => (output += d))
    const identity = await new Promise<Identity>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the bot's machine did not start within ${PATIENCE_MS} ms:\n${output}`)), PATIENCE_MS)
      child.on('message', (m: { ready?: Identity }) => {
        if (m.ready) {
          clearTimeout(timer)
          resolve(m.ready)
        }
      })
      child.once('exit', code => {
        clearTimeout(timer)
        reject(new Error(`the bot's machine exited with ${code} while starting:\n${output}`))
      })
    })
    const p = new BotProcess(child, identity)
    p.output = output
    child.on('message', (m: { ask?: number; request?: PlainRequest; id?: number; result?: unknown; error?: string }) => {
      if (m.ask !== undefined) {
        try {
          child.send({ answer: m.ask, body: board.handle(BOT, BOT_DEVICE, m.request!) })
        } catch (err) {
          child.send({ answer: m.ask, error: (err as Error).message })
        }
        return
      }
      if (m.id === undefined) return
      const waiting = p.pending.get(m.id)
      p.pending.delete(m.id)
      if (m.error !== undefined) waiting?.reject(new Error(`${m.error}\n${p.output}`))
      else waiting?.resolve(m.result)
    })
    return p
  }

  call<T = any>(cmd: string, args?: unknown): Promise<T> {
    const id = this.nextId++
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      this.child.send({ id, cmd, args })
    })
  }

  kill(): Promise<void> {
    return stopChild(this.child, 'SIGKILL')
  }
}

const roomEvent = (content: unknown, n: number) => ({
  type: 'm.room.encrypted', event_id: `$event${n}`, sender: ALICE, origin_server_ts: Date.now(), room_id: ROOM, content,
})
const botEvent = (content: unknown, n: number) => ({ ...roomEvent(content, n), sender: BOT })
const untrusted = () => new sdk.DecryptionSettings(sdk.TrustRequirement.Untrusted)

async function peerDecrypts(peer: sdk.OlmMachine, room: string, event: unknown): Promise<string> {
  const d = await peer.decryptRoomEvent(JSON.stringify(event), new sdk.RoomId(room), untrusted())
  return (JSON.parse(d.event) as { content: { body: string } }).content.body
}

async function peerEncrypts(peer: sdk.OlmMachine, room: string, body: string): Promise<Record<string, unknown>> {
  return JSON.parse(await peer.encryptRoomEvent(new sdk.RoomId(room), 'm.room.message', JSON.stringify({ msgtype: 'm.text', body }))) as Record<string, unknown>
}

/** Where a bridge process keeps its data: a PostgreSQL database, or an embedded one in a data_dir. */
async function databaseFor(kind: DbKind): Promise<{ uri: string; dataDir: string }> {
  const dataDir = join(await tempDir('rb-crypto-'), 'data')
  if (kind === 'postgres') return { uri: await createPostgresDatabase(), dataDir }
  await seedPgliteDataDir(dataDir)
  return { uri: '', dataDir }
}

beforeAll(async () => {
  await sdk.initAsync()
})

describe.each(DB_KINDS)('the crypto store on %s', (kind: DbKind) => {
  it('a machine SIGKILLed right after a flush comes back with its identity, its Olm sessions and both Megolm sessions', async () => {
    const where = { ...(await databaseFor(kind)), key: newStoreSecret() }
    const board = new Switchboard()
    const peer = await sdk.OlmMachine.initialize(new sdk.UserId(ALICE), new sdk.DeviceId('ALICEPHONE'))
    await drive(board, peer)

    let bot = await BotProcess.start(board, where)
    const uploads = await bot.call<{ type: sdk.RequestType; body: any }[]>('drive')
    const upload = uploads.find(r => r.type === sdk.RequestType.KeysUpload)
    expect(Object.keys(upload?.body.one_time_keys ?? {}).length).toBeGreaterThan(0) // one-time keys published and marked sent

    // The bot shares its room key with Alice over an Olm session it opens with one of her one-time keys.
    expect(await bot.call('share', { room: ROOM, users: [ALICE] })).toBeGreaterThan(0)
    await peer.updateTrackedUsers([new sdk.UserId(BOT)])
    await syncMachine(board, peer)
    await drive(board, peer)
    const before = await bot.call('encrypt', { room: ROOM, body: 'before the kill' })
    expect(await peerDecrypts(peer, ROOM, botEvent(before, 1))).toBe('before the kill')

    // Alice shares hers with the bot over an Olm session she opens with one of the bot's one-time keys.
    const claim = await peer.getMissingSessions([new sdk.UserId(BOT)])
    if (claim) await send(board, peer, [claim])
    await send(board, peer, await peer.shareRoomKey(new sdk.RoomId(ROOM), [new sdk.UserId(BOT)], new sdk.EncryptionSettings()))
    await bot.call('sync', board.sync(BOT, BOT_DEVICE))
    const one = await bot.call('decrypt', { room: ROOM, event: roomEvent(await peerEncrypts(peer, ROOM, 'one'), 2) })
    expect(one.content.body).toBe('one')

    const first = bot.identity
    await bot.kill() // its answer to 'decrypt' came after a flush, and nothing happened since

    const two = await peerEncrypts(peer, ROOM, 'two, sent while the bridge was down')
    bot = await BotProcess.start(board, where)
    expect(bot.identity).toEqual(first)
    const resent = await bot.call<{ type: sdk.RequestType; body: any }[]>('drive')
    expect(resent.filter(r => r.type === sdk.RequestType.KeysUpload && r.body.device_keys)).toEqual([]) // the device is the same

    // Alice's Megolm session from before the kill opens what she sent while the bridge was down.
    expect((await bot.call('decrypt', { room: ROOM, event: roomEvent(two, 3) })).content.body).toBe('two, sent while the bridge was down')
    // The bot's own Megolm session goes on: still shared with Alice, so no new room key; same session id.
    expect(await bot.call('share', { room: ROOM, users: [ALICE] })).toBe(0)
    const after = await bot.call('encrypt', { room: ROOM, body: 'after the kill' })
    expect(after.session_id).toBe(before.session_id)
    expect(await peerDecrypts(peer, ROOM, botEvent(after, 4))).toBe('after the kill')
    // Alice's Olm session to the bot, made before the kill, carries a room key for another room.
    expect(await peer.getMissingSessions([new sdk.UserId(BOT)])).toBeNull() // no new one-time key claimed
    await send(board, peer, await peer.shareRoomKey(new sdk.RoomId(LATER_ROOM), [new sdk.UserId(BOT)], new sdk.EncryptionSettings()))
    await bot.call('sync', board.sync(BOT, BOT_DEVICE))
    const later = roomEvent(await peerEncrypts(peer, LATER_ROOM, 'over the old Olm session'), 5)
    expect((await bot.call('decrypt', { room: LATER_ROOM, event: { ...later, room_id: LATER_ROOM } })).content.body).toBe('over the old Olm session')
    await bot.kill()
  }, PATIENCE_MS * 3)
})

/** A bot machine in this process on the store, with Alice's device and both room keys shared, then flushed. */
async function botWithSessions(db: Db, key: string) {
  const store = await openCryptoStore({ db, key, name: BOT })
  const bot = await sdk.OlmMachine.initialize(new sdk.UserId(BOT), new sdk.DeviceId(BOT_DEVICE), store.storeName)
  const peer = await sdk.OlmMachine.initialize(new sdk.UserId(ALICE), new sdk.DeviceId('ALICEPHONE'))
  const board = new Switchboard()
  for (const m of [bot, peer]) await drive(board, m)
  await bot.updateTrackedUsers([new sdk.UserId(ALICE)])
  await peer.updateTrackedUsers([new sdk.UserId(BOT)])
  for (const m of [bot, peer]) {
    await syncMachine(board, m)
    await drive(board, m)
  }
  for (const [from, to] of [[bot, ALICE], [peer, BOT]] as const) {
    const claim = await from.getMissingSessions([new sdk.UserId(to)])
    if (claim) await send(board, from, [claim])
    await send(board, from, await from.shareRoomKey(new sdk.RoomId(ROOM), [new sdk.UserId(to)], new sdk.EncryptionSettings()))
  }
  for (const m of [bot, peer]) await syncMachine(board, m)
  await bot.encryptRoomEvent(new sdk.RoomId(ROOM), 'm.room.message', JSON.stringify({ msgtype: 'm.text', body: 'hello' }))
  await store.flush()
  return { store, bot, peer }
}

/** Every text a reader of these bytes could find: as they are, and inside any base64 run (the machine keeps
 * pickles and device keys as base64 of JSON). */
function readable(bytes: Uint8Array): string {
  const text = Buffer.from(bytes).toString('latin1')
  const decoded = [...text.matchAll(/[A-Za-z0-9+/]{16,}={0,2}/g)].map(m => Buffer.from(m[0], 'base64').toString('latin1'))
  return [text, ...decoded].join('\n')
}

/** What the machine's IndexedDB holds (read through the process's indexedDB), every value made readable. */
async function indexedDbText(dbName: string): Promise<string> {
  const idb = (globalThis as any).indexedDB
  const conn: any = await new Promise((resolve, reject) => {
    const req = idb.open(dbName)
    req.onsuccess = () => resolve(req.result)
    req.onerror = () => reject(req.error as Error)
  })
  const parts: string[] = []
  for (const name of Array.from(conn.objectStoreNames as string[])) {
    const values: unknown[] = await new Promise((resolve, reject) => {
      const req = conn.transaction(name).objectStore(name).getAll()
      req.onsuccess = () => resolve(req.result as unknown[])
      req.onerror = () => reject(req.error as Error)
    })
    parts.push(...values.map(v => readable(Buffer.from(JSON.stringify(v, (_k, x: unknown) => (x instanceof Uint8Array ? Buffer.from(x).toString('base64') : x))))))
  }
  conn.close()
  return parts.join('\n')
}

describe.each(DB_KINDS)('the crypto store in the %s table', (kind: DbKind) => {
  it('holds no readable key, pickle, user id or room id: values are sealed, IndexedDB keys are HMACs', async () => {
    const db = await freshDb(kind)
    const { store, bot, peer } = await botWithSessions(db, newStoreSecret())
    const needles = [bot.identityKeys.curve25519.toBase64(), bot.identityKeys.ed25519.toBase64(), peer.identityKeys.curve25519.toBase64(), 'pickle', BOT, ALICE, ROOM]
    // The machine did keep every one of them (so their absence from the table means something).
    const inMemory = await indexedDbText(`${store.storeName}::matrix-sdk-crypto`)
    for (const n of needles) expect(inMemory, n).toContain(n)
    const { rows } = await db.query<{ key_hash: Uint8Array; idb_database: string; idb_store: string; value: Uint8Array }>('SELECT * FROM crypto_store')
    expect(rows.length).toBeGreaterThan(10)
    const table = rows.map(r => [readable(r.key_hash), r.idb_database, r.idb_store, readable(r.value)].join('\n')).join('\n')
    for (const n of needles.filter(n => n !== BOT)) expect(table, n).not.toContain(n)
    expect(rows.every(r => r.value.length > 28)).toBe(true)
    bot.close()
    peer.close()
    await store.close()
    await db.close()
  })

  it('a store opened with another key than it was made with is refused with a sentence that says what to do', async () => {
    const db = await freshDb(kind)
    const key = newStoreSecret()
    const { store, bot, peer } = await botWithSessions(db, key)
    bot.close()
    peer.close()
    await store.close()
    const refusal = await openCryptoStore({ db, key: newStoreSecret(), name: BOT }).catch((err: unknown) => err)
    expect(refusal).toBeInstanceOf(CryptoStoreKeyError)
    expect((refusal as Error).message).toBe(
      `The crypto store "${BOT}" in the database was encrypted with another key than the one in the configuration. ` +
        'Put back the key it was made with (from a backup of the configuration), or start a new encryption identity ' +
        'with `npx relay-bridge reset-encryption` (users then see the bridge as a new, unverified device).')
    // An empty store knows its key too, and the right key still opens the refused one.
    const empty = await openCryptoStore({ db, key, name: '@empty:example.org' })
    await empty.close()
    await expect(openCryptoStore({ db, key: newStoreSecret(), name: '@empty:example.org' })).rejects.toThrow(CryptoStoreKeyError)
    const again = await openCryptoStore({ db, key, name: BOT })
    await again.close()
    await expect(openCryptoStore({ db, key: 'too short', name: BOT })).rejects.toThrow(/needs at least 32/)
    await db.close()
  })

  it('two machines share the table, each with its own identity; erasing one leaves the other', async () => {
    const db = await freshDb(kind)
    const key = newStoreSecret()
    const open = async (user: string) => {
      const store = await openCryptoStore({ db, key, name: user })
      const machine = await sdk.OlmMachine.initialize(new sdk.UserId(user), new sdk.DeviceId('DEV'), store.storeName)
      await drive(new Switchboard(), machine)
      await store.flush()
      const identity = machine.identityKeys.curve25519.toBase64()
      machine.close()
      await store.close()
      return identity
    }
    const bob = await open('@signal_bob:example.org')
    const carol = await open('@whatsapp_carol:example.org')
    expect(bob).not.toBe(carol)
    expect(await open('@signal_bob:example.org')).toBe(bob)

    const store = await openCryptoStore({ db, key, name: '@signal_bob:example.org' })
    await store.erase()
    const { rows } = await db.query<{ store_name: string }>('SELECT DISTINCT store_name FROM crypto_store')
    expect(rows.map(r => r.store_name)).toEqual(['@whatsapp_carol:example.org'])
    expect(await open('@signal_bob:example.org')).not.toBe(bob) // a new identity
    expect(await open('@whatsapp_carol:example.org')).toBe(carol)
    await db.close()
  })

  it('what IndexedDB does besides puts is kept too: cursor updates and deletes, range deletes, clears, aborts, a dropped database', async () => {
    const db = await freshDb(kind)
    const key = newStoreSecret()
    const idb = (globalThis as any).indexedDB
    const req = <T>(r: any) => new Promise<T>((resolve, reject) => {
      r.onsuccess = () => resolve(r.result as T)
      r.onerror = () => reject(r.error as Error)
    })
    const done = (tx: any) => new Promise<void>((resolve, reject) => {
      tx.oncomplete = () => resolve()
      tx.onabort = () => reject(tx.error as Error)
    })
    const openDb = (version?: number) => {
      const r = version ? idb.open('raw::things', version) : idb.open('raw::things')
      r.onupgradeneeded = () => {
        const conn = r.result
        const people = conn.createObjectStore('people', { keyPath: 'id' })
        people.createIndex('by_name', 'name', { unique: false })
        conn.createObjectStore('counters')
      }
      return req<any>(r)
    }
    let store = await openCryptoStore({ db, key, name: 'raw' })
    let conn = await openDb(1)
    let tx = conn.transaction(['people', 'counters'], 'readwrite')
    const people = tx.objectStore('people')
    for (let i = 1; i <= 6; i++) people.put({ id: i, name: `p${i}`, bytes: new Uint8Array([i]) })
    tx.objectStore('counters').put(1, ['a', 1])
    tx.objectStore('counters').put(2, 'b')
    await done(tx)
    // A transaction still running when flush() is called is waited for, and written with it.
    tx = conn.transaction('people', 'readwrite')
    const cursorDone = new Promise<void>(resolve => {
      const c = tx.objectStore('people').index('by_name').openCursor()
      c.onsuccess = () => {
        const cursor = c.result
        if (!cursor) return resolve()
        if (cursor.value.id === 2) cursor.update({ ...cursor.value, name: 'renamed' })
        if (cursor.value.id === 3) cursor.delete()
        cursor.continue()
      }
    })
    tx.objectStore('people').delete((globalThis as any).IDBKeyRange.bound(5, 6))
    const flushed = store.flush()
    await cursorDone
    await flushed
    tx = conn.transaction('counters', 'readwrite')
    tx.objectStore('counters').put(99, 'b')
    tx.abort()
    await expect(done(tx)).rejects.toThrow()
    tx = conn.transaction('counters', 'readwrite')
    tx.objectStore('counters').clear()
    tx.objectStore('counters').put(3, 'c')
    await done(tx)
    conn.close()
    await store.close()

    store = await openCryptoStore({ db, key, name: 'raw' })
    conn = await openDb()
    expect(conn.version).toBe(1) // no upgrade ran again
    tx = conn.transaction(['people', 'counters'], 'readonly')
    expect(await req(tx.objectStore('people').getAll())).toEqual([
      { id: 1, name: 'p1', bytes: new Uint8Array([1]) },
      { id: 2, name: 'renamed', bytes: new Uint8Array([2]) },
      { id: 4, name: 'p4', bytes: new Uint8Array([4]) },
    ])
    expect(await req(tx.objectStore('people').index('by_name').getAllKeys('renamed'))).toEqual([2])
    expect(await req(tx.objectStore('counters').getAllKeys())).toEqual(['c'])
    conn.close()
    await req(idb.deleteDatabase('raw::things'))
    await store.close()
    const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM crypto_store WHERE store_name = 'raw' AND idb_database <> ''")
    expect(rows[0]!.n).toBe(0)
    await db.close()
  })
})
