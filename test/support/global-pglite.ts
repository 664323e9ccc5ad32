// Vitest global set-up: migrated PGlite databases for the whole run to copy from, because creating one costs
// seconds of CPU and the suite creates hundreds. Two forms: a data directory dump that every test's in-memory
// database is loaded from (test/support/db.ts), and a data directory on disk that the end-to-end harness copies
// into each bridge process's data_dir. Removed when the run ends. A vitest run started by a test (the hygiene
// and skips tests run vitest itself) finds them in its environment and uses the outer run's.
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { migrate } from '../../src/db/migrate.ts'
import { openPglite, pgliteTemplate } from '../../src/db/pglite.ts'
import { templateStore } from '../../src/db/template.ts'

/** Where the run's migrated PGlite dump lies, for test/support/db.ts. (Defined here, not there: importing db.ts
 * under CI without a server throws before global-skips.ts can say so in its own words.) */
export const PGLITE_TEMPLATE_ENV = 'RELAY_BRIDGE_TEST_PGLITE_TEMPLATE'
/** Where the run's migrated on-disk PGlite directory lies (the `pglite` folder of a data_dir). */
export const PGLITE_DIR_TEMPLATE_ENV = 'RELAY_BRIDGE_TEST_PGLITE_DIR_TEMPLATE'

/** Puts a migrated embedded database into `dataDir`, as the bridge would find it after its first start. */
export async function seedPgliteDataDir(dataDir: string): Promise<void> {
  const template = process.env[PGLITE_DIR_TEMPLATE_ENV]
  if (template) await cp(template, join(dataDir, 'pglite'), { recursive: true })
}

export default async function setup(): Promise<(() => Promise<void>) | undefined> {
  if (process.env[PGLITE_TEMPLATE_ENV] && process.env[PGLITE_DIR_TEMPLATE_ENV]) return undefined
  const dir = await mkdtemp(join(tmpdir(), 'rb-pglite-template-'))
  const file = join(dir, 'migrated.tar')
  // From the installed template when npm's postinstall made one (src/db/template.ts), which spares the run
  // creating two databases from nothing (and where there is none, the first database made saves one).
  const template = templateStore()
  const onDisk = await openPglite(join(dir, 'data'), { prepare: migrate, template })
  await onDisk.close()
  const migrated = (await template.load()) ?? (await pgliteTemplate(migrate))
  await writeFile(file, Buffer.from(await migrated.arrayBuffer()))
  process.env[PGLITE_TEMPLATE_ENV] = file
  process.env[PGLITE_DIR_TEMPLATE_ENV] = join(dir, 'data', 'pglite')
  return () => rm(dir, { recursive: true, force: true })
}
