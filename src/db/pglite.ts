// Embedded PostgreSQL (WebAssembly), one connection in this process. A second process on the same
// directory would corrupt it, so we hold a lock file with our pid while it is open.
import { PGlite } from '@electric-sql/pglite'
import { access, link, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join } from 'node:path'
import type { TemplateStore } from './template.ts'
import type { Db, Queryable, QueryResult } from './types.ts'

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** The lock file holds "pid@hostname": in containers every process may be pid 1, so a pid alone cannot tell
 * a live holder on another host from a stale lock. */
async function takeLock(path: string): Promise<void> {
  const me = `${process.pid}@${hostname()}`
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      // Written beside and hard-linked into place: the lock appears with its holder already in it, so a
      // process starting at the same moment never reads an empty lock and takes it for a stale one.
      const tmp = `${path}.${process.pid}.tmp`
      await writeFile(tmp, me)
      try {
        await link(tmp, path)
      } finally {
        await rm(tmp, { force: true })
      }
      return
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const holder = (await readFile(path, 'utf8').catch(() => '')).trim()
      const [pidText, host] = holder.split('@')
      const pid = Number(pidText)
      const sameHost = host === undefined || host === hostname()
      if (holder && (!sameHost || (pid && pid !== process.pid && alive(pid)))) {
        throw new Error(
          `The embedded database in ${join(path, '..')} is already in use by another relay-bridge process (${holder}). ` +
            `Stop that process, or give this one its own data_dir or a PostgreSQL database.uri. If no such process runs any more, delete ${path}.`,
          { cause: err },
        )
      }
      await rm(path, { force: true }) // stale lock from a process that died on this host
    }
  }
  throw new Error(`Could not lock the embedded database at ${path}.`)
}

export interface PgliteOpenOptions {
  /** Told when a new database is being created (it takes seconds, more on a loaded machine), and when done. */
  progress?: (sentence: string) => void
  /** What a new database needs before first use (the migrations): done in memory, before it is written out. */
  prepare?: (db: Db) => Promise<unknown>
  /** A saved copy of a prepared database to start a new one from, and where to save one made by `prepare`. */
  template?: TemplateStore
}

/** Opens the embedded database under dataDir, creating it on the first start. A new one is created and
 * prepared in memory and then written to disk in one go: creating it on disk directly writes and syncs each
 * of initdb's many small files, which took 76 s against 51 s this way on a two-core machine under heavy load
 * (issue 16, defect 13; both are dominated by initdb itself). */
export async function openPglite(dataDir: string, opts: PgliteOpenOptions = {}): Promise<Db> {
  const dir = join(dataDir, 'pglite')
  await mkdir(dir, { recursive: true })
  const lock = join(dataDir, 'pglite.lock')
  await takeLock(lock)
  let pg: PGlite
  try {
    const fresh = await access(join(dir, 'PG_VERSION')).then(() => false, () => true)
    if (fresh && opts.prepare) {
      const started = performance.now()
      const saved = await opts.template?.load()
      opts.progress?.(
        saved
          ? `Creating the embedded database in ${dir} (only on the first start)…`
          : `Creating the embedded database in ${dir} (only on the first start; this takes a few seconds, up to a minute on a busy machine)…`,
      )
      pg = await createFrom(dir, saved, opts.prepare, opts.template)
      opts.progress?.(`Created the embedded database in ${((performance.now() - started) / 1000).toFixed(1)} s.`)
    } else {
      pg = await PGlite.create(dir)
    }
  } catch (err) {
    await rm(lock, { force: true })
    throw err
  }
  return wrapPglite(pg, () => rm(lock, { force: true }))
}

/** A new database in `dir`: from the saved template when there is one that loads, otherwise made with `prepare`
 * (and then saved as the template, for the next new database; a template that cannot be saved, in a read-only
 * installation, only costs the next first start its seconds). */
async function createFrom(dir: string, saved: Blob | undefined, prepare: (db: Db) => Promise<unknown>, store?: TemplateStore): Promise<PGlite> {
  if (saved) {
    try {
      return await PGlite.create(dir, { loadDataDir: saved })
    } catch {
      // A damaged template: start over in an empty directory, the slow way, and replace it.
      await rm(dir, { recursive: true, force: true })
      await mkdir(dir, { recursive: true })
    }
  }
  const made = await pgliteTemplate(prepare)
  await store?.save(made).catch(() => {})
  return PGlite.create(dir, { loadDataDir: made })
}

/** An in-memory embedded database (tests and the benchmark's baseline), empty or a copy of `template`. */
export async function openPgliteMemory(template?: Blob): Promise<Db> {
  return wrapPglite(await PGlite.create(template ? { loadDataDir: template } : {}), async () => {})
}

/** The data directory of an in-memory database after `prepare`, to open copies of: loading one takes a
 * fraction of the time that creating a database takes (tests open hundreds of migrated databases). */
export async function pgliteTemplate(prepare: (db: Db) => Promise<unknown>): Promise<Blob> {
  const pg = await PGlite.create()
  try {
    await prepare(wrapPglite(pg, async () => {}))
    return await pg.dumpDataDir('none')
  } finally {
    await pg.close()
  }
}

function wrapPglite(pg: PGlite, afterClose: () => Promise<void>): Db {
  const wrap = (q: Pick<PGlite, 'query' | 'exec'>): Queryable => ({
    async query<R>(sql: string, params: unknown[] = []): Promise<QueryResult<R>> {
      const res = await q.query<R>(sql, params)
      return { rows: res.rows, rowCount: res.affectedRows || res.rows.length }
    },
    async exec(sql: string) {
      await q.exec(sql)
    },
  })
  const base = wrap(pg)
  return {
    kind: 'pglite',
    query: base.query,
    exec: base.exec,
    transaction: work => pg.transaction(tx => work(wrap(tx))),
    session: work => work(base, new Promise<Error>(() => {})),
    async close() {
      await pg.close()
      await afterClose()
    },
  }
}
