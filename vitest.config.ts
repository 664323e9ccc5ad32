import { defineConfig } from 'vitest/config'
import { LongestFirst } from './test/support/sequencer.ts'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    pool: 'forks',
    // Three files at once on two cores: an idle run kept only 1.1 cores busy with two (much of a test is waiting
    // for a bridge, a fake network or a database), and no test depends on timing, so a third overlaps the waits.
    maxWorkers: 3,
    sequence: { sequencer: LongestFirst },
    // Each concern its own file; they combine (set up in this order, torn down in reverse).
    globalSetup: [
      // A directory per run (TMPDIR points into it) and every child process recorded: swept at the end.
      'test/support/global-processes.ts',
      // Around the whole run: says when the PostgreSQL cases were skipped, and fails CI without a server.
      'test/support/global-skips.ts',
      // One migrated embedded database that every test's fresh one is copied from.
      'test/support/global-pglite.ts',
    ],
  },
})
