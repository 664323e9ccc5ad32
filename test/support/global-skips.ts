// Runs once around the whole test run (vitest.config.ts, globalSetup), so that the PostgreSQL half of the
// database tests never goes missing unseen. Without RELAY_BRIDGE_TEST_DATABASE_URI, every
// `describe.each(DB_KINDS)` runs on PGlite alone (test/support/db.ts): the run then ends with a line that says
// so and how to run the rest. Under CI that is a failure, reported before any test file starts, and so is a
// server that is named but does not answer.
import pg from 'pg'

const VAR = 'RELAY_BRIDGE_TEST_DATABASE_URI'
const HOW = `set ${VAR} to a PostgreSQL server's URI (a user that may CREATE DATABASE), or let scripts/with-postgres.sh ` +
  `start a throw-away one: scripts/with-postgres.sh sh -c '${VAR}=$PG_URI npm test'`

/** The line printed at the end of a run without a PostgreSQL server. */
export const SKIPPED_LINE = `PostgreSQL cases skipped: ${VAR} is not set, so the database tests ran on PGlite only. To run them on ` +
  `PostgreSQL too, ${HOW}.`

/** Whether this run is CI's, by the variable CI services set (`CI=true`). */
export const underCi = (env: NodeJS.ProcessEnv = process.env): boolean => !!env.CI && env.CI !== 'false' && env.CI !== '0'

/** Resolves when the server at `uri` answers a query; otherwise rejects with a sentence that says what to do. */
export async function checkServer(uri: string): Promise<void> {
  const client = new pg.Client({ connectionString: uri, connectionTimeoutMillis: 10_000 })
  try {
    await client.connect()
    await client.query('SELECT 1')
  } catch (e) {
    throw new Error(`${VAR} names a PostgreSQL server that does not answer (${(e as Error).message}): start it, ` +
      `or ${underCi() ? 'fix the CI set-up (.ci/run starts one)' : `unset ${VAR} to run on PGlite alone`}.`, { cause: e })
  } finally {
    await client.end().catch(() => undefined)
  }
}

export async function setup(): Promise<() => void> {
  const uri = process.env[VAR]
  if (uri) {
    await checkServer(uri)
    return () => undefined
  }
  if (underCi()) {
    throw new Error(`CI must run the database tests on PostgreSQL too, but ${VAR} is not set: ${HOW} (.ci/run does this).`)
  }
  return () => {
    // After vitest's own summary: the last thing the run prints.
    process.stdout.write(`\n${SKIPPED_LINE}\n`)
  }
}
