// A migrated embedded database that new ones start from. Creating one from nothing (PGlite's initdb, then
// every migration) costs 6–7 s of CPU on a two-core machine, most of a first start; loading a saved copy costs
// under a second (issue 16, defect 13). The copy is made when the package is installed (npm's postinstall runs
// scripts/pglite-template.ts; the Docker image makes it at build time), or else by the first start that finds
// none. It is named by what it was made from, PGlite's version and the migrations, so a copy made by another
// version of either is never used: a checkout that pulls a new migration simply makes a new one.
import { createHash } from 'node:crypto'
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadMigrations, MIGRATIONS_DIR } from './migrate.ts'

/** Where templates are kept: beside the installed dependencies, which a reinstall refreshes. */
export const TEMPLATE_DIR = fileURLToPath(new URL('../../node_modules/.cache/relay-bridge/', import.meta.url))

const PGLITE_PACKAGE = fileURLToPath(new URL('../../node_modules/@electric-sql/pglite/package.json', import.meta.url))

/** What a template's content depends on, as a short hash: PGlite's version and every migration's name and text. */
export async function templateKey(migrationsDir = MIGRATIONS_DIR, pglitePackage = PGLITE_PACKAGE): Promise<string> {
  const hash = createHash('sha256')
  hash.update(JSON.parse(await readFile(pglitePackage, 'utf8')).version)
  for (const m of await loadMigrations(migrationsDir)) hash.update(`\0${m.name}\0${m.sql}`)
  return hash.digest('hex').slice(0, 16)
}

export interface TemplateStore {
  /** The template for the current PGlite and migrations, if one was saved. */
  load(): Promise<Blob | undefined>
  /** Keeps `data` as that template (written beside and renamed, so a reader never sees half of it) and removes
   * templates of other versions. */
  save(data: Blob): Promise<void>
}

export function templateStore(dir = TEMPLATE_DIR, key: () => Promise<string> = () => templateKey()): TemplateStore {
  const file = async () => join(dir, `pglite-${await key()}.tar`)
  return {
    async load() {
      try {
        return new Blob([await readFile(await file())])
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
        throw err
      }
    },
    async save(data) {
      const path = await file()
      await mkdir(dir, { recursive: true })
      const tmp = `${path}.${process.pid}.tmp`
      await writeFile(tmp, Buffer.from(await data.arrayBuffer()))
      await rename(tmp, path)
      for (const other of await readdir(dir)) {
        if (/^pglite-[0-9a-f]+\.tar$/.test(other) && join(dir, other) !== path) await rm(join(dir, other), { force: true })
      }
    },
  }
}
