// A first start loads a saved, migrated embedded database instead of creating one from nothing (issue 16,
// defect 13), and never loads one made from other migrations or another PGlite.
import { cp, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadMigrations, migrate, MIGRATIONS_DIR } from '../../src/db/migrate.ts'
import { openPglite } from '../../src/db/pglite.ts'
import { templateKey, templateStore } from '../../src/db/template.ts'
import type { Db } from '../../src/db/types.ts'
import { tempDir } from '../support/config.ts'

/** The migrations, counting how often a database had to be created from nothing and migrated. */
function countingMigrate() {
  const calls = { made: 0 }
  return { calls, prepare: async (db: Db) => { calls.made++; return migrate(db) } }
}

async function appliedMigrations(db: Db): Promise<string[]> {
  return (await db.query<{ name: string }>('SELECT name FROM schema_migrations ORDER BY version')).rows.map(r => r.name)
}

describe('the embedded database template', () => {
  it('the first new database is made from nothing and saved; the next one is loaded from it, migrated, with the short line', async () => {
    const cache = await tempDir()
    const store = templateStore(cache)
    const { calls, prepare } = countingMigrate()
    const all = (await loadMigrations()).map(m => m.name)

    const first = await openPglite(join(await tempDir(), 'data'), { prepare, template: store })
    expect(await appliedMigrations(first)).toEqual(all)
    await first.close()
    expect(calls.made).toBe(1)
    expect(await readdir(cache)).toEqual([`pglite-${await templateKey()}.tar`])

    const lines: string[] = []
    const second = await openPglite(join(await tempDir(), 'data'), { prepare, template: store, progress: l => lines.push(l) })
    expect(calls.made).toBe(1) // loaded, not made again
    expect(await appliedMigrations(second)).toEqual(all)
    expect(await migrate(second)).toEqual([])
    await second.close()
    expect(lines[0]).toMatch(/^Creating the embedded database in .*pglite \(only on the first start\)…$/)
    expect(lines[1]).toMatch(/^Created the embedded database in \d+\.\d s\.$/)
  })

  it('a template made from other migrations is not used, and is replaced by one of the current ones', async () => {
    const migrations = await tempDir()
    await cp(MIGRATIONS_DIR, migrations, { recursive: true })
    const before = await templateKey(migrations)
    await writeFile(join(migrations, '999_later.sql'), 'CREATE TABLE later (x int);')
    const after = await templateKey(migrations)
    expect(after).not.toBe(before)
    expect(await templateKey()).toBe(before) // the same migrations give the same key

    const cache = await tempDir()
    // The store of the old migrations holds a template; the store of the new ones must not take it.
    const old = templateStore(cache, async () => before)
    await old.save(new Blob(['not even a database']))
    const current = templateStore(cache, async () => after)
    expect(await current.load()).toBeUndefined()

    let made = 0
    const db = await openPglite(join(await tempDir(), 'data'), { template: current, prepare: async d => { made++; return migrate(d, migrations) } })
    expect(made).toBe(1)
    expect((await appliedMigrations(db)).at(-1)).toBe('999_later.sql')
    await db.close()
    expect(await readdir(cache)).toEqual([`pglite-${after}.tar`])
  })

  it('a damaged template costs the slow way once, not the database: it is made from nothing and replaced', async () => {
    const cache = await tempDir()
    const store = templateStore(cache)
    await store.save(new Blob(['a truncated download']))
    const { calls, prepare } = countingMigrate()
    const db = await openPglite(join(await tempDir(), 'data'), { prepare, template: store })
    expect(calls.made).toBe(1)
    expect(await appliedMigrations(db)).toEqual((await loadMigrations()).map(m => m.name))
    await db.close()
    // What was saved now loads: the next new database is not made again.
    const next = await openPglite(join(await tempDir(), 'data'), { prepare, template: store })
    expect(calls.made).toBe(1)
    await next.close()
  })
})
