import pg from 'pg'
import type { Db, Queryable, QueryResult } from './types.ts'

// int8 (bigint) columns hold millisecond timestamps and ids far below 2^53: read them as numbers.
pg.types.setTypeParser(20, (v: string) => Number(v))

function wrap(client: pg.Pool | pg.PoolClient): Queryable {
  return {
    async query<R>(sql: string, params: unknown[] = []): Promise<QueryResult<R>> {
      const res = await client.query(sql, params)
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
