import type { Db } from './types.ts'
import { migrate } from './migrate.ts'
import { openPostgres } from './postgres.ts'

/** PostgreSQL when a URI is configured; otherwise the embedded PGlite under data_dir, migrated when new.
 * `progress` hears what takes long (creating the embedded database). */
export async function openDatabase(uri: string, dataDir: string, progress?: (sentence: string) => void): Promise<Db> {
  if (uri) {
    const db = openPostgres(uri)
    try {
      await db.query('SELECT 1')
    } catch (err) {
      await db.close().catch(() => {})
      throw new Error(
        `Cannot connect to PostgreSQL at database.uri (${redactUri(uri)}): ${(err as Error).message}. ` +
          'Check that the server runs and the URI, user and password are right.',
        { cause: err },
      )
    }
    return db
  }
  // Loaded only when embedded: a bridge on PostgreSQL does not carry PGlite in memory.
  const [{ openPglite }, { templateStore }] = await Promise.all([import('./pglite.ts'), import('./template.ts')])
  return openPglite(dataDir, { prepare: migrate, template: templateStore(), ...(progress ? { progress } : {}) })
}

export function redactUri(uri: string): string {
  try {
    const u = new URL(uri)
    if (u.password) u.password = '***'
    return u.toString()
  } catch {
    return '(unparseable URI)'
  }
}
