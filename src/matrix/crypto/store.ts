// The Olm machines' crypto store, durable in the bridge's database (table crypto_store, PostgreSQL or PGlite).
//
//   const store = await openCryptoStore({ db, key, name: '@relaybot:example.org', log })
//   const machine = await OlmMachine.initialize(userId, deviceId, store.storeName)   // no passphrase
//   ... every machine call ...; await store.flush()    // before anything the call produced leaves the process
//   machine.close(); await store.close()
//
// The machine keeps its state in IndexedDB. Here that is fake-indexeddb in memory (idb-journal.ts), filled
// from the table when the store opens; each IndexedDB transaction the machine commits is journaled, and
// `flush()` writes what was committed since the last flush in one database transaction. So the table always
// holds the machine's state as of some flush, never half of a machine call.
//
// The rule for callers (the driver of the request loop): call `flush()` after a machine call and before any
// effect of it is seen outside the process: before answering the homeserver's transaction whose to-device
// events and key counts the machine took in, before sending a request from outgoingRequests() (one-time keys
// whose private halves are not stored must never be published), before sending an event encryptRoomEvent
// made. A SIGKILL then loses only work whose effects nobody saw, and which the homeserver sends again (an
// unanswered transaction) or the driver redoes. flush() is cheap when nothing changed, and concurrent calls
// are written in order.
//
// - `name` keys the store in the table: one per Olm machine (its user id; each ghost's own device later).
//   Several stores share the table and the process, each open once at a time.
// - `key` is the secret from the configuration: rows are sealed with AES-256-GCM and IndexedDB keys replaced
//   by HMACs (seal.ts). A store made under another key refuses to open with a sentence (CryptoStoreKeyError).
// - `erase()` deletes the store's rows (reset-encryption): close the machine first; open the store again for a
//   new identity.
import type { Logger } from 'pino'
import type { Db, Queryable } from '../../db/types.ts'
import { installIndexedDb, Journal, type DbSchema, type JournalOp, type RestoredDb } from './idb-journal.ts'
import { decodeKey, encodeKey } from './idb-keys.ts'
import { sealer, WrongKeyError, type Sealer } from './seal.ts'

export { newStoreSecret } from './seal.ts'

export interface CryptoStoreOptions {
  db: Db
  /** The secret from the configuration that the rows are encrypted under. */
  key: string
  /** Which store in the table: one per Olm machine. */
  name: string
  log?: Logger
}

export interface CryptoStore {
  /** What to give OlmMachine.initialize as its store name (and no passphrase: the rows are sealed here). */
  readonly storeName: string
  /** Writes what the machine committed since the last flush, in one database transaction. */
  flush(): Promise<void>
  /** Flushes, then lets go of the store (close the machine first). */
  close(): Promise<void>
  /** Deletes every row of this store, for a fresh identity (close the machine first). */
  erase(): Promise<void>
  /** What the flushes wrote so far: flushes that wrote something, rows upserted or deleted, sealed bytes, time. */
  readonly written: { flushes: number; rows: number; bytes: number; ms: number }
}

export class CryptoStoreKeyError extends Error {}

const CANARY = 'relay-bridge crypto store v1'
const ROWS_PER_STATEMENT = 500

interface Row {
  id: Buffer
  db: string
  store: string
  value: Buffer
}

export async function openCryptoStore(opts: CryptoStoreOptions): Promise<CryptoStore> {
  const { db, name, log } = opts
  const seal = sealer(opts.key)
  installIndexedDb()
  const journal = new Journal(name)
  try {
    await journal.restore(await load(db, name, seal))
  } catch (err) {
    journal.close()
    throw err
  }
  const written = { flushes: 0, rows: 0, bytes: 0, ms: 0 }
  let chain: Promise<unknown> = Promise.resolve()
  let ended = false

  const write = async (): Promise<void> => {
    const ops = await journal.take()
    if (ops.length === 0) return
    const started = performance.now()
    let rows = 0
    let bytes = 0
    try {
      await db.transaction(async tx => {
        ;({ rows, bytes } = await apply(tx, name, seal, ops))
      })
    } catch (err) {
      journal.putBack(ops)
      throw new Error(
        `Could not write the crypto store "${name}" to the database: ${(err as Error).message}. ` +
          'Nothing the Olm machine did since its last write may leave the bridge until this succeeds.',
        { cause: err },
      )
    }
    const ms = performance.now() - started
    Object.assign(written, { flushes: written.flushes + 1, rows: written.rows + rows, bytes: written.bytes + bytes, ms: written.ms + ms })
    log?.debug({ store: name, rows, bytes, ms: Math.round(ms * 10) / 10 }, 'crypto store flushed')
  }

  const flush = (): Promise<void> => {
    if (ended) return Promise.reject(new Error(`The crypto store "${name}" is closed.`))
    const run = chain.then(write)
    chain = run.catch(() => {})
    return run
  }

  return {
    storeName: name,
    flush,
    written,
    async close() {
      if (ended) return
      try {
        await flush()
      } finally {
        ended = true
        journal.close()
      }
    },
    async erase() {
      ended = true
      journal.close()
      await chain
      await db.query('DELETE FROM crypto_store WHERE store_name = $1', [name])
      log?.info({ store: name }, 'crypto store erased')
    },
  }
}

const aad = (name: string, id: Uint8Array) => Buffer.concat([Buffer.from(`${name}\0`), id])
// The same row id under every key: a store opened with another key must find the mark, not miss it.
const CANARY_ID = Buffer.from('canary')
const schemaId = (seal: Sealer, db: string) => seal.rowId('schema', db)
const recordId = (seal: Sealer, db: string, store: string, key: string) => seal.rowId('record', db, store, key)

/** A record's sealed payload: its key's text, length-prefixed, then the v8-serialized value. */
function recordPayload(key: string, value: Buffer): Buffer {
  const k = Buffer.from(key, 'utf8')
  const len = Buffer.alloc(4)
  len.writeUInt32BE(k.length)
  return Buffer.concat([len, k, value])
}

async function load(db: Db, name: string, seal: Sealer): Promise<Map<string, RestoredDb>> {
  const { rows } = await db.query<{ key_hash: Uint8Array; idb_database: string; idb_store: string; value: Uint8Array }>(
    'SELECT key_hash, idb_database, idb_store, value FROM crypto_store WHERE store_name = $1', [name])
  const open = (id: Uint8Array, value: Uint8Array): Buffer => {
    try {
      return seal.open(value, aad(name, id))
    } catch (err) {
      if (!(err instanceof WrongKeyError)) throw err
      throw new CryptoStoreKeyError(
        `The crypto store "${name}" in the database was encrypted with another key than the one in the configuration. ` +
          'Put back the key it was made with (from a backup of the configuration), or start a new encryption identity ' +
          'with `npx relay-bridge reset-encryption` (users then see the bridge as a new, unverified device).',
        { cause: err },
      )
    }
  }
  const canary = CANARY_ID
  const mark = rows.find(r => Buffer.from(r.key_hash).equals(canary))
  if (mark) open(mark.key_hash, mark.value)
  else {
    // Made under this key from now on: a wrong key is then told apart even while the store holds nothing.
    await db.query(
      'INSERT INTO crypto_store (store_name, key_hash, idb_database, idb_store, value) VALUES ($1, $2, \'\', \'\', $3) ON CONFLICT DO NOTHING',
      [name, canary, seal.seal(Buffer.from(CANARY), aad(name, canary))],
    )
  }
  const dbs = new Map<string, RestoredDb>()
  const records: { db: string; store: string; key: unknown; value: Buffer }[] = []
  for (const r of rows) {
    if (r.idb_database === '') continue
    const plain = open(r.key_hash, r.value)
    if (r.idb_store === '') {
      dbs.set(r.idb_database, { schema: JSON.parse(plain.toString('utf8')) as DbSchema, records: new Map() })
    } else {
      const keyLength = plain.readUInt32BE(0)
      const key = decodeKey(plain.subarray(4, 4 + keyLength).toString('utf8'))
      records.push({ db: r.idb_database, store: r.idb_store, key, value: plain.subarray(4 + keyLength) })
    }
  }
  for (const rec of records) {
    const target = dbs.get(rec.db)
    if (!target?.schema.stores.some(s => s.name === rec.store)) {
      throw new Error(
        `The crypto store "${name}" holds records of ${rec.db}/${rec.store}, which its schema does not have: the table ` +
          'crypto_store was changed by hand or damaged. Restore it from a backup, or reset the encryption identity.',
      )
    }
    const list = target.records.get(rec.store) ?? []
    list.push([rec.key, rec.value])
    target.records.set(rec.store, list)
  }
  return dbs
}

/** Writes the journal in order. Puts and deletes of one key are folded to the last; a clear or a dropped database
 * first writes what came before it. */
async function apply(tx: Queryable, name: string, seal: Sealer, ops: JournalOp[]): Promise<{ rows: number; bytes: number }> {
  const upserts = new Map<string, Row>()
  const deletes = new Map<string, Buffer>()
  let rows = 0
  let bytes = 0
  const drain = async () => {
    const del = [...deletes.values()]
    for (let i = 0; i < del.length; i += ROWS_PER_STATEMENT) {
      const chunk = del.slice(i, i + ROWS_PER_STATEMENT)
      await tx.query(`DELETE FROM crypto_store WHERE store_name = $1 AND key_hash IN (${chunk.map((_, j) => `$${j + 2}`).join(', ')})`, [name, ...chunk])
    }
    const up = [...upserts.values()]
    for (let i = 0; i < up.length; i += ROWS_PER_STATEMENT) {
      const chunk = up.slice(i, i + ROWS_PER_STATEMENT)
      const values = chunk.map((_, j) => `($1, $${j * 4 + 2}, $${j * 4 + 3}, $${j * 4 + 4}, $${j * 4 + 5})`).join(', ')
      await tx.query(
        `INSERT INTO crypto_store (store_name, key_hash, idb_database, idb_store, value) VALUES ${values}
         ON CONFLICT (store_name, key_hash) DO UPDATE SET value = EXCLUDED.value`,
        [name, ...chunk.flatMap(r => [r.id, r.db, r.store, r.value])],
      )
      bytes += chunk.reduce((n, r) => n + r.value.length, 0)
    }
    rows += del.length + up.length
    deletes.clear()
    upserts.clear()
  }
  const put = (id: Buffer, db: string, store: string, plain: Buffer) => {
    const hex = id.toString('hex')
    deletes.delete(hex)
    upserts.set(hex, { id, db, store, value: seal.seal(plain, aad(name, id)) })
  }
  for (const op of ops) {
    switch (op.kind) {
      case 'put': {
        const key = encodeKey(op.key)
        put(recordId(seal, op.db, op.store, key), op.db, op.store, recordPayload(key, op.value))
        break
      }
      case 'delete': {
        const id = recordId(seal, op.db, op.store, encodeKey(op.key))
        upserts.delete(id.toString('hex'))
        deletes.set(id.toString('hex'), id)
        break
      }
      case 'schema':
        put(schemaId(seal, op.db), op.db, '', Buffer.from(JSON.stringify(op.schema)))
        break
      case 'clear':
        await drain()
        await tx.query('DELETE FROM crypto_store WHERE store_name = $1 AND idb_database = $2 AND idb_store = $3', [name, op.db, op.store])
        break
      case 'drop':
        await drain()
        await tx.query('DELETE FROM crypto_store WHERE store_name = $1 AND idb_database = $2', [name, op.db])
        break
    }
  }
  await drain()
  return { rows, bytes }
}
