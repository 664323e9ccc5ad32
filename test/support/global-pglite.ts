// Vitest global set-up: one migrated PGlite data directory for the whole run, which every test's fresh
// embedded database is loaded from (creating a PGlite database costs seconds of CPU; loading one, a third of
// that). Written to a file of its own and removed when the run ends.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { migrate } from '../../src/db/migrate.ts'
import { pgliteTemplate } from '../../src/db/pglite.ts'
import { PGLITE_TEMPLATE_ENV } from './db.ts'

export default async function setup(): Promise<() => Promise<void>> {
  const dir = await mkdtemp(join(tmpdir(), 'rb-pglite-template-'))
  const file = join(dir, 'migrated.tar')
  await writeFile(file, Buffer.from(await (await pgliteTemplate(migrate)).arrayBuffer()))
  process.env[PGLITE_TEMPLATE_ENV] = file
  return () => rm(dir, { recursive: true, force: true })
}
