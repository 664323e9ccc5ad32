// IndexedDB for the Olm machines: fake-indexeddb (pure JS, in memory) as the process's `indexedDB`, with
// every change that a committed IndexedDB transaction made written down in order, so that store.ts can write
// it through to the bridge's database. The wasm crypto store persists only through IndexedDB, and Node has
// no durable one; this keeps IndexedDB's own transaction boundaries (what the machine commits together is
// journaled together, what it aborts is forgotten) and leaves the durability to PostgreSQL.
//
// Only the public IndexedDB API is intercepted (the write methods of object stores and cursors, the schema
// methods of an upgrade): which fake-indexeddb does the storing does not matter. Each crypto store gets an
// IndexedDB factory of its own; `indexedDB.open(name)` picks it by the name's prefix, the store name that
// OlmMachine.initialize was given ("<store name>::matrix-sdk-crypto").
import { deserialize, serialize } from 'node:v8'
import * as fake from 'fake-indexeddb'

/** An IndexedDB key (number, string, Date, binary or an array of keys), as the store hands it out. */
export type IdbKey = unknown

export interface IndexSchema {
  name: string
  keyPath: string | string[]
  unique: boolean
  multiEntry: boolean
}
export interface StoreSchema {
  name: string
  keyPath: string | string[] | null
  autoIncrement: boolean
  indexes: IndexSchema[]
}
export interface DbSchema {
  version: number
  stores: StoreSchema[]
}

/** One committed change. `db` is the database's name after the store name's prefix; values are v8-serialized. */
export type JournalOp =
  | { kind: 'put'; db: string; store: string; key: IdbKey; value: Buffer }
  | { kind: 'delete'; db: string; store: string; key: IdbKey }
  | { kind: 'clear'; db: string; store: string }
  | { kind: 'schema'; db: string; schema: DbSchema }
  | { kind: 'drop'; db: string }

/** What a restored database holds: its schema and, per object store, its records (v8-serialized values). */
export interface RestoredDb {
  schema: DbSchema
  records: Map<string, [IdbKey, Buffer][]>
}

// fake-indexeddb's declarations lean on the DOM library, which this project does not load.
type Any = any
const F = fake as Any

interface TxLog {
  journal: Journal
  db: string
  ops: JournalOp[]
  /** The schema as this upgrade leaves it (upgrades only). */
  schema?: Map<string, StoreSchema>
  done: Promise<void>
}

const SEP = '::'
const journals = new Map<string, Journal>() // by store name
const connections = new WeakMap<object, Journal>()
const logs = new WeakMap<object, TxLog>() // by IndexedDB transaction
const upgrades = new WeakMap<object, TxLog>() // by connection, while its upgrade runs

export class Journal {
  readonly name: string
  readonly factory: Any = new F.IDBFactory()
  readonly schemas = new Map<string, DbSchema>()
  private pending: JournalOp[] = []
  private readonly active = new Set<TxLog>()
  private closed = false

  constructor(name: string) {
    if (journals.has(name)) throw new Error(`The crypto store "${name}" is already open in this process; close it first.`)
    this.name = name
    journals.set(name, this)
  }

  /** Fills the empty in-memory databases from what the bridge's database holds. Nothing of this is journaled. */
  async restore(dbs: Map<string, RestoredDb>): Promise<void> {
    for (const [db, { schema, records }] of dbs) {
      const conn: Any = await request(this.factory.open(this.name + SEP + db, schema.version), (req: Any) => {
        const up: Any = req.result
        for (const s of schema.stores) {
          const store = up.createObjectStore(s.name, { keyPath: s.keyPath, autoIncrement: s.autoIncrement })
          for (const i of s.indexes) store.createIndex(i.name, i.keyPath, { unique: i.unique, multiEntry: i.multiEntry })
          for (const [key, value] of records.get(s.name) ?? []) {
            if (s.keyPath === null) store.put(deserialize(value), key)
            else store.put(deserialize(value))
          }
        }
      })
      conn.close()
      this.schemas.set(db, schema)
    }
  }

  /** Waits for the transactions running now to end, then hands over what was committed since the last call. */
  async take(): Promise<JournalOp[]> {
    await Promise.all([...this.active].map(l => l.done))
    const ops = this.pending
    this.pending = []
    return ops
  }

  /** Puts back ops that could not be written, ahead of any committed since. */
  putBack(ops: JournalOp[]): void {
    this.pending = ops.concat(this.pending)
  }

  get pendingCount(): number {
    return this.pending.length
  }

  /** Ends journaling: a machine still writing to this store fails instead of losing what it wrote. */
  close(): void {
    this.closed = true
    if (journals.get(this.name) === this) journals.delete(this.name)
  }

  register(tx: Any, db: string, schema?: Map<string, StoreSchema>): TxLog {
    if (this.closed) throw new Error(`The crypto store "${this.name}" is closed: close the Olm machine before its store.`)
    let end!: () => void
    const log: TxLog = { journal: this, db, ops: [], schema, done: new Promise<void>(resolve => (end = resolve)) }
    logs.set(tx, log)
    this.active.add(log)
    tx.addEventListener('complete', () => {
      this.active.delete(log)
      if (log.schema) {
        const committed: DbSchema = { version: tx.db.version, stores: [...log.schema.values()] }
        this.schemas.set(db, committed)
        this.pending.push({ kind: 'schema', db, schema: committed })
      }
      this.pending.push(...log.ops)
      end()
    })
    tx.addEventListener('abort', () => {
      this.active.delete(log)
      end()
    })
    return log
  }

  record(op: JournalOp): void {
    if (this.closed) throw new Error(`The crypto store "${this.name}" is closed: close the Olm machine before its store.`)
    this.pending.push(op)
  }
}

function request<T>(req: Any, onUpgrade?: (req: Any) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (onUpgrade) req.addEventListener('upgradeneeded', () => onUpgrade(req))
    req.addEventListener('success', () => resolve(req.result as T))
    req.addEventListener('error', () => reject(req.error as Error))
  })
}

function journalOf(dbName: string): Journal {
  let best: Journal | undefined
  for (const [name, j] of journals) {
    if (dbName.startsWith(name + SEP) && (!best || name.length > best.name.length)) best = j
  }
  if (!best) {
    throw new Error(
      `IndexedDB database "${dbName}" belongs to no open crypto store: open the store (openCryptoStore) under the ` +
        'store name given to OlmMachine.initialize before the machine, and keep it open while the machine runs.',
    )
  }
  return best
}

const suffix = (j: Journal, dbName: string) => dbName.slice(j.name.length + SEP.length)
const cloneSchema = (s: DbSchema | undefined) =>
  new Map((s?.stores ?? []).map(st => [st.name, { ...st, indexes: st.indexes.map(i => ({ ...i })) }]))

/** The process's `indexedDB`: each database goes to the factory of the crypto store its name belongs to. */
const router = {
  open(name: string, version?: number): Any {
    const j = journalOf(name)
    const req = version === undefined ? j.factory.open(name) : j.factory.open(name, version)
    req.addEventListener('upgradeneeded', () => {
      connections.set(req.result, j)
      const db = suffix(j, name)
      upgrades.set(req.result, j.register(req.transaction, db, cloneSchema(j.schemas.get(db))))
    })
    req.addEventListener('success', () => connections.set(req.result, j))
    return req
  },
  deleteDatabase(name: string): Any {
    const j = journalOf(name)
    const req = j.factory.deleteDatabase(name)
    req.addEventListener('success', () => {
      j.schemas.delete(suffix(j, name))
      j.record({ kind: 'drop', db: suffix(j, name) })
    })
    return req
  },
  async databases(): Promise<unknown[]> {
    return (await Promise.all([...journals.values()].map(j => j.factory.databases() as Promise<unknown[]>))).flat()
  },
  cmp(a: unknown, b: unknown): number {
    return F.indexedDB.cmp(a, b)
  },
}

const logOf = (tx: Any): TxLog | undefined => logs.get(tx)
const storeOfCursor = (cursor: Any): Any => (cursor.source instanceof F.IDBIndex ? cursor.source.objectStore : cursor.source)
const after = (req: Any, then: () => void): Any => {
  req.addEventListener('success', then)
  return req
}

function patch(proto: Any, method: string, wrap: (orig: (...a: unknown[]) => Any) => (this: Any, ...a: Any[]) => Any): void {
  const orig = proto[method] as (...a: unknown[]) => Any
  proto[method] = wrap(orig)
}

let installed = false

/** Makes fake-indexeddb the process's IndexedDB (globals included: the wasm checks `instanceof IDBDatabase`). */
export function installIndexedDb(): void {
  if (installed) return
  installed = true
  const globals: Record<string, unknown> = {
    indexedDB: router,
    IDBCursor: F.IDBCursor, IDBCursorWithValue: F.IDBCursorWithValue, IDBDatabase: F.IDBDatabase,
    IDBFactory: F.IDBFactory, IDBIndex: F.IDBIndex, IDBKeyRange: F.IDBKeyRange, IDBObjectStore: F.IDBObjectStore,
    IDBOpenDBRequest: F.IDBOpenDBRequest, IDBRequest: F.IDBRequest, IDBTransaction: F.IDBTransaction,
    IDBVersionChangeEvent: F.IDBVersionChangeEvent,
  }
  for (const [name, value] of Object.entries(globals)) {
    Object.defineProperty(globalThis, name, { value, configurable: true, writable: true, enumerable: false })
  }

  patch(F.IDBDatabase.prototype, 'transaction', orig => function (this: Any, ...a) {
    const tx = orig.apply(this, a)
    const j = connections.get(this)
    if (j && tx.mode === 'readwrite') j.register(tx, suffix(j, this.name))
    return tx
  })
  for (const method of ['put', 'add']) {
    patch(F.IDBObjectStore.prototype, method, orig => function (this: Any, ...a) {
      const log = logOf(this.transaction)
      const req = orig.apply(this, a)
      if (!log) return req
      const value = serialize(a[0]) // the record as given: the caller may change its object afterwards
      const store = this.name as string
      return after(req, () => log.ops.push({ kind: 'put', db: log.db, store, key: req.result, value }))
    })
  }
  patch(F.IDBObjectStore.prototype, 'delete', orig => function (this: Any, query: Any) {
    const log = logOf(this.transaction)
    if (!log) return orig.call(this, query)
    const store = this.name as string
    // A range names no keys: ask for them first, in the same transaction, so they are exactly those deleted.
    const keys: Any = query instanceof F.IDBKeyRange ? this.getAllKeys(query) : undefined
    const req = orig.call(this, query)
    return after(req, () => {
      for (const key of keys ? (keys.result as unknown[]) : [query]) log.ops.push({ kind: 'delete', db: log.db, store, key })
    })
  })
  patch(F.IDBObjectStore.prototype, 'clear', orig => function (this: Any) {
    const log = logOf(this.transaction)
    const req = orig.call(this)
    if (!log) return req
    const store = this.name as string
    return after(req, () => log.ops.push({ kind: 'clear', db: log.db, store }))
  })
  patch(F.IDBCursor.prototype, 'update', orig => function (this: Any, value: unknown) {
    const store = storeOfCursor(this)
    const log = logOf(store.transaction)
    const key: unknown = this.primaryKey
    const req = orig.call(this, value)
    if (!log) return req
    const bytes = serialize(value)
    return after(req, () => log.ops.push({ kind: 'put', db: log.db, store: store.name as string, key, value: bytes }))
  })
  patch(F.IDBCursor.prototype, 'delete', orig => function (this: Any) {
    const store = storeOfCursor(this)
    const log = logOf(store.transaction)
    const key: unknown = this.primaryKey
    const req = orig.call(this)
    if (!log) return req
    return after(req, () => log.ops.push({ kind: 'delete', db: log.db, store: store.name as string, key }))
  })

  // The schema, as each upgrade changes it; a deleted object store takes its records with it.
  patch(F.IDBDatabase.prototype, 'createObjectStore', orig => function (this: Any, ...a) {
    const store = orig.apply(this, a)
    upgrades.get(this)?.schema!.set(store.name, { name: store.name, keyPath: store.keyPath, autoIncrement: store.autoIncrement, indexes: [] })
    return store
  })
  patch(F.IDBDatabase.prototype, 'deleteObjectStore', orig => function (this: Any, name: string) {
    const r = orig.call(this, name)
    const log = upgrades.get(this)
    if (log) {
      log.schema!.delete(name)
      log.ops.push({ kind: 'clear', db: log.db, store: name })
    }
    return r
  })
  patch(F.IDBObjectStore.prototype, 'createIndex', orig => function (this: Any, ...a) {
    const index = orig.apply(this, a)
    const s = logOf(this.transaction)?.schema?.get(this.name)
    s?.indexes.push({ name: index.name, keyPath: index.keyPath, unique: index.unique, multiEntry: index.multiEntry })
    return index
  })
  patch(F.IDBObjectStore.prototype, 'deleteIndex', orig => function (this: Any, name: string) {
    const r = orig.call(this, name)
    const s = logOf(this.transaction)?.schema?.get(this.name)
    if (s) s.indexes = s.indexes.filter(i => i.name !== name)
    return r
  })
  // Renames would need their own journal entries; the crypto store never renames, so refuse rather than lose one.
  for (const cls of [F.IDBObjectStore, F.IDBIndex]) {
    const desc = Object.getOwnPropertyDescriptor(cls.prototype, 'name')!
    Object.defineProperty(cls.prototype, 'name', {
      ...desc,
      set(this: Any, value: string) {
        const tx = cls === F.IDBIndex ? this.objectStore.transaction : this.transaction
        if (logOf(tx)) throw new Error('Renaming an IndexedDB object store or index is not supported by the durable crypto store.')
        desc.set!.call(this, value)
      },
    })
  }
}
