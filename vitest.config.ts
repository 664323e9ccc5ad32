import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Each concern its own file; they combine.
    globalSetup: ['test/support/global-processes.ts'],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    pool: 'forks',
    // Two cores: more parallel files only contend for CPU and make timing-sensitive e2e tests flaky.
    maxWorkers: 2,
  },
})
