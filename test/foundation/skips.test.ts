// The PostgreSQL half of the database tests never goes missing unseen: a run without a server ends by saying
// so and how to run it; under CI the same run fails before any test file starts; a named server that does not
// answer fails the run whether under CI or not. Each is a real `vitest run` of this file (filtered to the one
// quick test below, so it does not start itself again), with the environment the scenario names.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { PATIENCE_MS } from '../support/patience.ts'
import { SKIPPED_LINE } from '../support/global-skips.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const THIS = fileURLToPath(import.meta.url)
const QUICK = 'the skipped line names the variable and the script'

function vitestRun(env: Record<string, string | undefined>) {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VITEST') && k !== 'CI' && k !== 'RELAY_BRIDGE_TEST_DATABASE_URI'))
  const r = spawnSync(process.execPath, ['node_modules/vitest/vitest.mjs', 'run', THIS, '-t', QUICK], {
    cwd: ROOT, encoding: 'utf8', timeout: PATIENCE_MS, env: { ...base, NO_COLOR: '1', FORCE_COLOR: '0', ...env },
  })
  if (r.error) throw r.error
  return { code: r.status, out: r.stdout + r.stderr, stdout: r.stdout }
}

describe('the PostgreSQL cases are never skipped unseen', () => {
  it(QUICK, () => {
    expect(SKIPPED_LINE).toMatch(/^PostgreSQL cases skipped: RELAY_BRIDGE_TEST_DATABASE_URI is not set/)
    expect(SKIPPED_LINE).toContain("scripts/with-postgres.sh sh -c 'RELAY_BRIDGE_TEST_DATABASE_URI=$PG_URI npm test'")
  })

  it('without a server, the run passes and its last line says the PostgreSQL cases were skipped and how to run them', () => {
    const r = vitestRun({})
    expect(r.out).toMatch(/Tests +1 passed/)
    expect(r.code).toBe(0)
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe(SKIPPED_LINE)
  })

  // Needs the server the rest of the suite uses; without one this case is itself one of the skipped.
  it.skipIf(!process.env.RELAY_BRIDGE_TEST_DATABASE_URI)('with a server, the run says nothing about skipping', () => {
    const r = vitestRun({ RELAY_BRIDGE_TEST_DATABASE_URI: process.env.RELAY_BRIDGE_TEST_DATABASE_URI })
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/Tests +1 passed/)
    expect(r.out).not.toContain('PostgreSQL cases skipped')
  })

  it('under CI without a server, the run fails before any test, saying what to set', () => {
    const r = vitestRun({ CI: 'true' })
    expect(r.code).toBe(1)
    expect(r.out).toContain('CI must run the database tests on PostgreSQL too, but RELAY_BRIDGE_TEST_DATABASE_URI is not set')
    expect(r.out).not.toMatch(/Tests +1 passed/)
  })

  it('a named server that does not answer fails the run before any test, saying so', () => {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    const r = vitestRun({ RELAY_BRIDGE_TEST_DATABASE_URI: 'postgres://postgres@127.0.0.1:1/postgres' })
    expect(r.code).toBe(1)
    expect(r.out).toContain('RELAY_BRIDGE_TEST_DATABASE_URI names a PostgreSQL server that does not answer (connect ECONNREFUSED 127.0.0.1:1)')
    expect(r.out).not.toMatch(/Tests +1 passed/)
  })
})
