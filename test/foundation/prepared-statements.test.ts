// On PostgreSQL a statement the bridge runs again and again is parsed and planned once per connection (a named
// prepared statement), not on every call; statements whose text changes with their batch are left unnamed, so
// that no connection piles up plans nobody reuses.
import { describe, expect, it } from 'vitest'
import type { Queryable } from '../../src/db/types.ts'
import { DB_KINDS, freshDb } from '../support/db.ts'

const prepared = async (conn: Queryable, text: string): Promise<number> =>
  (await conn.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_prepared_statements WHERE statement = $1', [text])).rows[0]!.n

describe.skipIf(!DB_KINDS.includes('postgres'))('on postgres', () => {
  it('a recurring statement is prepared once on its connection and answers as before', async () => {
    const db = await freshDb('postgres')
    try {
      const text = `SELECT state, count(*)::int AS n FROM outbox WHERE network = $1 GROUP BY state /* ${Math.random()} */`
      await db.session(async conn => {
        for (let i = 0; i < 3; i++) expect((await conn.query(text, ['signal'])).rows).toEqual([])
        expect(await prepared(conn, text)).toBe(1)
      })
    } finally {
      await db.close()
    }
  })

  it('a statement with many parameters (a batch, whose text varies with its size) is not prepared', async () => {
    const db = await freshDb('postgres')
    try {
      const params = Array.from({ length: 40 }, (_, i) => `chat-${i}`)
      const text = `SELECT count(*)::int AS n FROM outbox WHERE chat_id IN (${params.map((_, i) => `$${i + 1}`).join(', ')})`
      await db.session(async conn => {
        for (let i = 0; i < 3; i++) expect((await conn.query(text, params)).rows).toEqual([{ n: 0 }])
        expect(await prepared(conn, text)).toBe(0)
      })
    } finally {
      await db.close()
    }
  })
})
