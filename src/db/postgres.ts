import pg from 'pg'
import type { Db, Queryable, QueryResult } from './types.ts'

// int8 (bigint) columns hold millisecond timestamps and ids far below 2^53: read them as numbers.
pg.types.setTypeParser(20, (v: string) => Number(v))

// Statements that recur go as named prepared statements: each connection parses and plans them once, instead of
// on every call. At low rates that parse is a good part of PostgreSQL's CPU per message (docs/performance.md).
// Only short texts that have come twice are named (a batch's text varies with its size, and each name costs
// every connection a cached plan); NAMED_MAX bounds the set for the process.
const NAMED_MAX = 300
const NAMED_PARAMS_MAX = 32
const seen = new Set<string>()
const names = new Map<string, string>()
export function named(text: string, values: unknown[]): pg.QueryConfig {
  let name = names.get(text)
  if (name === undefined && values.length <= NAMED_PARAMS_MAX && names.size < NAMED_MAX) {
    if (seen.has(text)) {
      seen.delete(text)
      names.set(text, (name = `relay_bridge_${names.size}`))
    } else if (seen.size < 10 * NAMED_MAX) seen.add(text)
  }
  return name === undefined ? { text, values } : { name, text, values }
}

function wrap(client: pg.Pool | pg.PoolClient): Queryable {
  return {
    async query<R>(sql: string, params: unknown[] = []): Promise<QueryResult<R>> {
      const res = await client.query(named(sql, params))
      return { rows: res.rows as R[], rowCount: res.rowCount ?? 0 }
    },
    async exec(sql: string) {
      await client.query(sql)
    },
  }
}

export function openPostgres(uri: string): Db {
  const pool = new pg.Pool({ connectionString: uri, max: 10, connectionTimeoutMillis: 5000 })
  // An idle client losing its connection (server restart) must not crash the process.
  pool.on('error', () => {})
  // A checked-out client (a transaction, or a session holding an advisory lock) emits 'error' itself when
  // the server goes away; unheard, that event would end the process. The query in flight fails anyway.
  pool.on('connect', client => client.on('error', () => {}))
  const base = wrap(pool)
  return {
    kind: 'postgres',
    query: base.query,
    exec: base.exec,
    async transaction(work) {
      const client = await pool.connect()
      try {
        await client.query('BEGIN')
        const result = await work(wrap(client))
        await client.query('COMMIT')
        return result
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {})
        throw err
      } finally {
        client.release()
      }
    },
    async session(work) {
      const client = await pool.connect()
      let gone: Error | undefined
      let settle!: (err: Error) => void
      const lost = new Promise<Error>(resolve => (settle = resolve))
      const onError = (err: Error) => settle((gone = err))
      const onEnd = () => settle((gone ??= new Error('The database connection ended.')))
      client.on('error', onError)
      client.on('end', onEnd)
      try {
        return await work(wrap(client), lost)
      } finally {
        client.off('error', onError)
        client.off('end', onEnd)
        client.release(gone) // a dropped connection leaves the pool
      }
    },
    close: () => pool.end(),
  }
}
