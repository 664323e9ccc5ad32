// Both databases the bridge supports, for tests that touch the database: a fresh PostgreSQL database on
// the server named by RELAY_BRIDGE_TEST_DATABASE_URI (CI starts one), and a fresh in-memory PGlite.
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import pg from 'pg'
import { openPostgres } from '../../src/db/postgres.ts'
import { openPgliteMemory, pgliteTemplate } from '../../src/db/pglite.ts'
import { PGLITE_TEMPLATE_ENV } from './global-pglite.ts'
import { migrate } from '../../src/db/migrate.ts'
import type { Db, Queryable } from '../../src/db/types.ts'
import { underCi } from './global-skips.ts'

export const ADMIN_URI = process.env.RELAY_BRIDGE_TEST_DATABASE_URI ?? ''
// global-skips.ts stops such a run before any file starts; this is the backstop for a run without it.
if (!ADMIN_URI && underCi()) throw new Error('CI must set RELAY_BRIDGE_TEST_DATABASE_URI (see .ci/run).')

export type DbKind = 'postgres' | 'pglite'
/** The kinds to run database tests on: both in CI, PGlite alone where no server is configured. */
export const DB_KINDS: DbKind[] = ADMIN_URI ? ['postgres', 'pglite'] : ['pglite']

/** Creates an empty PostgreSQL database and returns its URI. */
export async function createPostgresDatabase(): Promise<string> {
  const name = `rbtest_${randomBytes(6).toString('hex')}`
  const admin = new pg.Client({ connectionString: ADMIN_URI })
  await admin.connect()
  try {
    await admin.query(`CREATE DATABASE ${name}`)
  } finally {
    await admin.end()
  }
  const uri = new URL(ADMIN_URI)
  uri.pathname = `/${name}`
  return uri.toString()
}

let template: Promise<Blob> | undefined
/** A migrated PGlite data directory: the run's file, or made once in this process when there is none. */
function migratedPglite(): Promise<Blob> {
  const file = process.env[PGLITE_TEMPLATE_ENV]
  template ??= file ? readFile(file).then(b => new Blob([b])) : pgliteTemplate(migrate)
  return template
}

/** A fresh, migrated database of the given kind. */
export async function freshDb(kind: DbKind, opts: { migrate?: boolean } = {}): Promise<Db> {
  if (kind === 'pglite') return opts.migrate === false ? openPgliteMemory() : openPgliteMemory(await migratedPglite())
  const db = openPostgres(await createPostgresDatabase())
  if (opts.migrate !== false) await migrate(db)
  return db
}

/** A Db whose every statement, in a transaction or not, goes through `before` first (which may count it, or hold it
 * back by returning a promise). */
export function beforeEachQuery(db: Db, before: (sql: string, params: unknown[] | undefined) => void | Promise<void>): Db {
  const wrap = <Q extends Queryable>(q: Q): Q => {
    const wrapped = Object.create(q) as Q
    wrapped.query = ((sql: string, params?: unknown[]) => {
      const held = before(sql, params)
      // A statement not held back goes at once, as without the wrapper (no extra turn of the event loop).
      return held ? held.then(() => q.query(sql, params)) : q.query(sql, params)
    }) as Queryable['query']
    return wrapped
  }
  const wrapped = wrap(db)
  wrapped.transaction = work => db.transaction(tx => work(wrap(tx)))
  return wrapped
}

/** A Db that counts the statements `match` picks, in and out of transactions. */
export function countingStatements(db: Db, match: (sql: string) => boolean): { db: Db; count: () => number } {
  let n = 0
  return { db: beforeEachQuery(db, sql => void (match(sql) && n++)), count: () => n }
}
