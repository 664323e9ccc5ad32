// The configuration the leftovers test runs its fixture under: the project's own (so the same globalSetup
// guards it), with only the fixture included. The normal run never includes *.fixture.ts.
import { defineConfig } from 'vitest/config'
import base from '../../vitest.config.ts'

export default defineConfig({ ...base, test: { ...base.test, include: ['test/hygiene/*.fixture.ts'] } })
