#!/usr/bin/env -S node --max-semi-space-size=4
// (A 4 MB young generation: V8 otherwise grows it to 64 MB during start-up and keeps it; docs/performance.md.)
// Runs the compiled CLI when the package was built (npm installs, Docker), else the TypeScript sources
// directly (a checkout, on Node >= 22.18 which strips types natively). An older Node stops first, with one
// sentence saying which version is needed (check-node.cjs, plain JavaScript evaluated before anything else).
import './check-node.cjs'
import { existsSync } from 'node:fs'

const dist = new URL('../dist/cli.js', import.meta.url)
const entry = existsSync(dist) ? dist : new URL('../src/cli.ts', import.meta.url)
const { main } = await import(entry.href)
process.exitCode = await main(process.argv)
