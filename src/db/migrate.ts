// Numbered SQL files in migrations/, applied in order, each in its own transaction, under an advisory
// lock so that two processes starting at once never both apply one.
import { readdir, readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import type { Db } from './types.ts'

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url))
// Arbitrary constant shared by every relay-bridge process: "rbmg" in ASCII.
const LOCK_KEY = 0x72626d67

export interface Migration {
  version: number
  name: string
  sql: string
}

export async function loadMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter(f => /^\d+_.+\.sql$/.test(f)).sort()
  const migrations: Migration[] = []
  for (const file of files) {
    const version = Number(file.split('_', 1)[0])
    if (migrations.some(m => m.version === version)) throw new Error(`Two migrations share number ${version} (${file}).`)
    migrations.push({ version, name: file, sql: await readFile(`${dir}/${file}`, 'utf8') })
  }
  return migrations
}

/** Applies what is missing; returns the names applied by this call. */
export async function migrate(db: Db, dir = MIGRATIONS_DIR): Promise<string[]> {
  const migrations = await loadMigrations(dir)
  return db.session(async conn => {
    await conn.query('SELECT pg_advisory_lock($1)', [LOCK_KEY])
    try {
      await conn.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`)
      const done = new Set(
        (await conn.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map(r => r.version),
      )
      const applied: string[] = []
      for (const m of migrations) {
        if (done.has(m.version)) continue
        await conn.exec(`BEGIN;\n${m.sql}\n;INSERT INTO schema_migrations (version, name) VALUES (${m.version}, '${m.name.replace(/'/g, "''")}');\nCOMMIT;`).catch(async (err: unknown) => {
          await conn.exec('ROLLBACK').catch(() => {})
          throw new Error(`Migration ${m.name} failed: ${(err as Error).message}`, { cause: err })
        })
        applied.push(m.name)
      }
      return applied
    } finally {
      await conn.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY])
    }
  })
}
