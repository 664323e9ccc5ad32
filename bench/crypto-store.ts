// `node bench/crypto-store.ts`: what the durable crypto store (src/matrix/crypto/store.ts) costs per
// encrypted message, on the embedded database (PGlite in a data directory) and on PostgreSQL
// (RELAY_BRIDGE_BENCH_DATABASE_URI, else RELAY_BRIDGE_TEST_DATABASE_URI; skipped without either). The
// bridge's machine is on the store, with a flush after every call as the driver does it; the room's other
// members are real in-memory OlmMachines. Reports rows and bytes written and time per flush, for messages
// encrypted and decrypted, and how many IndexedDB transactions were still running when a machine call
// resolved (what flush() has to wait for). Figures go into docs/encryption.md.
import { mkdtemp, rm } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as sdk from '@matrix-org/matrix-sdk-crypto-wasm'
import pg from 'pg'
import { migrate } from '../src/db/migrate.ts'
import { openPglite } from '../src/db/pglite.ts'
import { openPostgres } from '../src/db/postgres.ts'
import type { Db } from '../src/db/types.ts'
import { newStoreSecret, openCryptoStore, type CryptoStore } from '../src/matrix/crypto/store.ts'
import { drive, send, Switchboard, syncMachine } from '../test/support/olm-switchboard.ts'

const MESSAGES = Number(process.env.MESSAGES ?? 200)
const BOT = '@relaybot:example.org'
const ROOM = '!bench:example.org'

let running = 0
let runningAtResolve = 0
let counting = false
function countTransactions(): void {
  if (counting) return
  counting = true
  const proto = (globalThis as any).IDBDatabase.prototype
  const orig = proto.transaction
  proto.transaction = function (this: any, ...a: unknown[]) {
    const tx = orig.apply(this, a)
    if (tx.mode === 'readwrite') {
      running++
      const end = () => running--
      tx.addEventListener('complete', end)
      tx.addEventListener('abort', end)
    }
    return tx
  }
}

function stats(ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b)
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!.toFixed(2)
  return `mean ${(s.reduce((a, b) => a + b, 0) / s.length).toFixed(2)} ms, p50 ${at(0.5)}, p99 ${at(0.99)}, max ${at(1)}`
}

/** Runs `call` n times with a flush after each; after each flush, for comparison under the same load, the
 * floor: the same database committing one plain upsert of a 1.7 KB value in its own transaction. */
async function measure(label: string, db: Db, store: CryptoStore, n: number, call: (i: number) => Promise<unknown>): Promise<void> {
  const before = { ...store.written }
  const flushMs: number[] = []
  const floorMs: number[] = []
  for (let i = 0; i < n; i++) {
    await call(i)
    runningAtResolve += running
    let t = performance.now()
    await store.flush()
    flushMs.push(performance.now() - t)
    t = performance.now()
    await db.transaction(tx => tx.query(
      `INSERT INTO crypto_store (store_name, key_hash, idb_database, idb_store, value) VALUES ('floor', $1, 'x', 'x', $2)
       ON CONFLICT (store_name, key_hash) DO UPDATE SET value = EXCLUDED.value`, [Buffer.from('floor'), randomBytes(1745)]))
    floorMs.push(performance.now() - t)
  }
  await db.query("DELETE FROM crypto_store WHERE store_name = 'floor'")
  const rows = (store.written.rows - before.rows) / n
  const bytes = (store.written.bytes - before.bytes) / n
  console.log(`  ${label}: ${rows.toFixed(2)} rows and ${Math.round(bytes)} bytes per message; flush ${stats(flushMs)}`)
  console.log(`    floor (one plain upsert per transaction, in the same loop): ${stats(floorMs)}`)
}

async function run(kind: string, db: Db, peers: number): Promise<void> {
  await migrate(db)
  const key = newStoreSecret()
  const name = `${BOT}/${randomBytes(4).toString('hex')}`
  let t = performance.now()
  const store = await openCryptoStore({ db, key, name })
  countTransactions() // the store installed IndexedDB
  const bot = await sdk.OlmMachine.initialize(new sdk.UserId(BOT), new sdk.DeviceId('BENCH'), store.storeName)
  await store.flush()
  const board = new Switchboard()
  await drive(board, bot)
  await store.flush()
  const firstStart = performance.now() - t
  const others: sdk.OlmMachine[] = []
  for (let i = 0; i < peers; i++) {
    const m = await sdk.OlmMachine.initialize(new sdk.UserId(`@user${i}:example.org`), new sdk.DeviceId(`DEV${i}`))
    await drive(board, m)
    others.push(m)
  }
  const users = () => others.map(m => new sdk.UserId(m.userId.toString()))
  await bot.updateTrackedUsers(users())
  await syncMachine(board, bot)
  await drive(board, bot)
  const claim = await bot.getMissingSessions(users())
  if (claim) await send(board, bot, [claim])
  await send(board, bot, await bot.shareRoomKey(new sdk.RoomId(ROOM), users(), new sdk.EncryptionSettings()))
  await store.flush()
  const sender = others[0]!
  await sender.updateTrackedUsers([new sdk.UserId(BOT)])
  await syncMachine(board, sender)
  await drive(board, sender)
  const peerClaim = await sender.getMissingSessions([new sdk.UserId(BOT)])
  if (peerClaim) await send(board, sender, [peerClaim])
  // The peer's session lasts the whole run (the bridge's side of a rotation is measured in the encrypt phase).
  const long = new sdk.EncryptionSettings()
  long.rotationPeriodMessages = BigInt(MESSAGES + 1)
  await send(board, sender, await sender.shareRoomKey(new sdk.RoomId(ROOM), [new sdk.UserId(BOT)], long))
  await syncMachine(board, bot)
  await store.flush()

  console.log(`${kind}, room with ${peers} other device(s); first start (account, keys upload) ${firstStart.toFixed(0)} ms`)
  runningAtResolve = 0
  // shareRoomKey before every encryptRoomEvent, as a driver must: it rotates the session when its period or
  // message count is up (encryptRoomEvent on an expired session is a wasm panic, which kills the process).
  await measure('encrypt (bridge -> room)', db, store, MESSAGES, async i => {
    await send(board, bot, await bot.shareRoomKey(new sdk.RoomId(ROOM), users(), new sdk.EncryptionSettings()))
    return bot.encryptRoomEvent(new sdk.RoomId(ROOM), 'm.room.message', JSON.stringify({ msgtype: 'm.text', body: `message ${i}` }))
  })
  const events: string[] = []
  for (let i = 0; i < MESSAGES; i++) {
    const content = await sender.encryptRoomEvent(new sdk.RoomId(ROOM), 'm.room.message', JSON.stringify({ msgtype: 'm.text', body: `in ${i}` }))
    events.push(JSON.stringify({ type: 'm.room.encrypted', event_id: `$e${i}`, sender: sender.userId.toString(), origin_server_ts: Date.now(), room_id: ROOM, content: JSON.parse(content) }))
  }
  const settings = new sdk.DecryptionSettings(sdk.TrustRequirement.Untrusted)
  await measure('decrypt (room -> bridge)', db, store, MESSAGES, i => bot.decryptRoomEvent(events[i]!, new sdk.RoomId(ROOM), settings))
  console.log(`  IndexedDB transactions still running when a machine call resolved: ${runningAtResolve} in ${2 * MESSAGES} calls`)
  const { rows } = await db.query<{ n: number; bytes: number }>('SELECT count(*)::int AS n, coalesce(sum(length(value)), 0)::int AS bytes FROM crypto_store WHERE store_name = $1', [name])
  console.log(`  the store: ${rows[0]!.n} rows, ${rows[0]!.bytes} bytes`)
  bot.close()
  await store.close()
  t = performance.now()
  const again = await openCryptoStore({ db, key, name })
  const reopened = await sdk.OlmMachine.initialize(new sdk.UserId(BOT), new sdk.DeviceId('BENCH'), again.storeName)
  console.log(`  a restart's open + initialize: ${(performance.now() - t).toFixed(0)} ms`)
  reopened.close()
  await again.erase()
  for (const m of others) m.close()
}

await sdk.initAsync()
const dir = await mkdtemp(join(tmpdir(), 'rb-crypto-bench-'))
try {
  for (const peers of [1, 20]) {
    const lite = await openPglite(join(dir, `pglite-${peers}`))
    try {
      await run('PGlite (data directory)', lite, peers)
    } finally {
      await lite.close()
    }
    const uri = process.env.RELAY_BRIDGE_BENCH_DATABASE_URI ?? process.env.RELAY_BRIDGE_TEST_DATABASE_URI
    if (!uri) continue
    const name = `rbbench_${randomBytes(4).toString('hex')}`
    const admin = new pg.Client({ connectionString: uri })
    await admin.connect()
    await admin.query(`CREATE DATABASE ${name}`)
    const u = new URL(uri)
    u.pathname = `/${name}`
    const db = openPostgres(u.toString())
    try {
      await run('PostgreSQL', db, peers)
    } finally {
      await db.close()
      await admin.query(`DROP DATABASE ${name}`)
      await admin.end()
    }
  }
} finally {
  await rm(dir, { recursive: true, force: true })
}
