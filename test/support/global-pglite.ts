// Vitest global set-up: one migrated PGlite data directory for the whole run, which every test's fresh
// embedded database is loaded from (creating a PGlite database costs seconds of CPU; loading one, a third of
// that). Written to a file of its own and removed when the run ends.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { migrate } from '../../src/db/migrate.ts'
import { pgliteTemplate } from '../../src/db/pglite.ts'

/** Where the run's migrated PGlite template lies, for test/support/db.ts. (Defined here, not there: importing
 * db.ts under CI without a server throws before global-skips.ts can say so in its own words.) */
export const PGLITE_TEMPLATE_ENV = 'RELAY_BRIDGE_TEST_PGLITE_TEMPLATE'

export default async function setup(): Promise<() => Promise<void>> {
  const dir = await mkdtemp(join(tmpdir(), 'rb-pglite-template-'))
  const file = join(dir, 'migrated.tar')
  await writeFile(file, Buffer.from(await (await pgliteTemplate(migrate)).arrayBuffer()))
  process.env[PGLITE_TEMPLATE_ENV] = file
  return () => rm(dir, { recursive: true, force: true })
}
