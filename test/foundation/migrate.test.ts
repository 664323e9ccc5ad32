import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadMigrations, migrate } from '../../src/db/migrate.ts'
import { openPglite } from '../../src/db/pglite.ts'
import { openPostgres } from '../../src/db/postgres.ts'
import { runCli } from '../support/cli.ts'
import { tempDir, AS_TOKEN, HS_TOKEN } from '../support/config.ts'
import { ADMIN_URI, createPostgresDatabase } from '../support/db.ts'
import { PATIENCE_MS } from '../support/patience.ts'

async function configFile(dir: string, databaseUri: string): Promise<string> {
  const path = join(dir, 'config.yaml')
  await writeFile(path, [
    'homeserver: { address: "http://127.0.0.1:1", domain: test.example }',
    `appservice: { address: "http://127.0.0.1:1", hostname: 127.0.0.1, port: 0, id: rb, bot: { username: relaybot }, as_token: ${AS_TOKEN}, hs_token: ${HS_TOKEN} }`,
    `database: { uri: "${databaseUri}" }`,
    `data_dir: ${join(dir, 'data')}`,
    'signal: { daemon_url: "http://127.0.0.1:1" }',
    'bridge: {}',
    'metrics: { enabled: false, port: 0 }',
    'logging: { level: silent }',
  ].join('\n'))
  return path
}

describe('migrations', async () => {
  const files = (await loadMigrations()).map(m => m.name)

  it.runIf(ADMIN_URI)('two processes migrating one PostgreSQL database at once apply each migration exactly once', async () => {
    const uri = await createPostgresDatabase()
    const dir = await tempDir()
    const config = await configFile(dir, uri)
    const runs = await Promise.all([runCli(['migrate', '-c', config], { timeoutMs: PATIENCE_MS }), runCli(['migrate', '-c', config], { timeoutMs: PATIENCE_MS })])
    expect(runs.map(r => r.code)).toEqual([0, 0])
    const applied = runs.flatMap(r => /Applied (.*)\./.exec(r.stdout)?.[1]?.split(', ') ?? [])
    expect(applied.sort()).toEqual(files) // between them, each file once
    const db = openPostgres(uri)
    const { rows } = await db.query<{ name: string }>('SELECT name FROM schema_migrations ORDER BY version')
    expect(rows.map(r => r.name)).toEqual(files)
    await db.close()
  }, PATIENCE_MS * 3)

  it('a second process on the same embedded database is refused with a sentence, and the first applies everything once', async () => {
    const dir = await tempDir()
    const config = await configFile(dir, '')
    const runs = await Promise.all([runCli(['migrate', '-c', config], { timeoutMs: PATIENCE_MS }), runCli(['migrate', '-c', config], { timeoutMs: PATIENCE_MS })])
    const ok = runs.filter(r => r.code === 0)
    const refused = runs.filter(r => r.code !== 0)
    // Either they ran one after the other (both 0), or one was refused while the other held the database.
    for (const r of refused) expect(r.stderr).toMatch(/already in use by another relay-bridge process/)
    expect(ok.length).toBeGreaterThanOrEqual(1)
    const db = await openPglite(join(dir, 'data'))
    const { rows } = await db.query<{ name: string }>('SELECT name FROM schema_migrations ORDER BY version')
    expect(rows.map(r => r.name)).toEqual(files)
    await db.close()
    const again = await runCli(['migrate', '-c', config], { timeoutMs: PATIENCE_MS })
    expect(again.stdout).toMatch(/up to date/)
  }, PATIENCE_MS * 3)

  it('a new embedded database says it is being created, how long that took, and is migrated', async () => {
    const dir = await tempDir()
    const config = await configFile(dir, '')
    const run = await runCli(['migrate', '-c', config], { timeoutMs: PATIENCE_MS })
    expect(run.code).toBe(0)
    // (The short form when npm's postinstall saved a template to start from: test/foundation/template.test.ts.)
    expect(run.stdout).toMatch(/^Creating the embedded database in .*pglite \(only on the first start(; this takes a few seconds, up to a minute on a busy machine)?\)…\nCreated the embedded database in \d+\.\d s\.\nThe database is up to date\.\n$/)
    const db = await openPglite(join(dir, 'data'))
    const { rows } = await db.query<{ name: string }>('SELECT name FROM schema_migrations ORDER BY version')
    expect(rows.map(r => r.name)).toEqual((await loadMigrations()).map(m => m.name))
    await db.close()
    // Once created, it is opened as it is, without the line.
    expect((await runCli(['migrate', '-c', config], { timeoutMs: PATIENCE_MS })).stdout).toBe('The database is up to date.\n')
  }, PATIENCE_MS * 2)

  it('a migration that fails is rolled back whole and named in the error', async () => {
    const dir = await tempDir()
    await writeFile(join(dir, '001_ok.sql'), 'CREATE TABLE a (x int);')
    await writeFile(join(dir, '002_bad.sql'), 'CREATE TABLE b (x int); SELECT no_such_function();')
    const db = await openPglite(join(dir, 'data'))
    await expect(migrate(db, dir)).rejects.toThrow(/Migration 002_bad\.sql failed/)
    const tables = await db.query<{ t: string }>(`SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`)
    expect(tables.rows.map(r => r.t)).toEqual(['a', 'schema_migrations'])
    await db.close()
  })
})
