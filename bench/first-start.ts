// `npm run bench:first-start` (`-- --runs N`, default 3): how long `npm start` takes from the
// process starting to "Ready", the first time (the embedded database is created) and the next (it is opened),
// on an idle machine and with two busy loops keeping both cores occupied (issue 16, defect 13: at most 5 s
// idle and 15 s busy). The bridge runs as a checkout runs it (bin/relay-bridge.js on the TypeScript sources,
// with npm start's Node flags) against the fake homeserver and signal-cli daemon; each stage is timed by the
// log line that ends it, as the process prints it.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { stringify } from 'yaml'
import { validateConfig } from '../src/config.ts'
import { buildRegistration } from '../src/registration.ts'
import { FakeHomeserver } from '../test/fakes/homeserver.ts'
import { FakeSignalDaemon } from '../test/fakes/signal-daemon.ts'
import { AS_TOKEN, HS_TOKEN } from '../test/support/config.ts'
import { freePort } from '../test/support/ports.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const { values: opt } = parseArgs({ options: { runs: { type: 'string', default: '3' }, out: { type: 'string' } } })

/** The log lines that end a stage of the start, in the order they come. */
const STAGES: Array<[string, RegExp]> = [
  // Only a first start says when the database is ready (a later one opens it without a line).
  ['database created', /^Created the embedded database/],
  ['listening', /^Listening for the homeserver/],
  ['ready', /^Ready, /],
]

interface Start { ms: Record<string, number>; createdIn?: string }

async function oneStart(dataDir: string): Promise<Start> {
  const hs = await FakeHomeserver.start({ domain: 'bench.test' })
  const daemon = await FakeSignalDaemon.start()
  const port = await freePort()
  const raw = {
    homeserver: { address: hs.url, domain: 'bench.test' },
    appservice: { address: `http://127.0.0.1:${port}`, hostname: '127.0.0.1', port, id: 'relay-bridge', bot: { username: 'relaybot', displayname: 'Relay bridge' }, as_token: AS_TOKEN, hs_token: HS_TOKEN },
    database: { uri: '' },
    data_dir: dataDir,
    signal: { daemon_url: daemon.url },
    bridge: { admin: '@admin:bench.test' },
    metrics: { enabled: false, port: 0 },
    logging: { level: 'info' },
  }
  const configPath = join(dataDir, '..', `config-${port}.yaml`)
  await writeFile(configPath, stringify(raw), { mode: 0o600 })
  Object.assign(hs.registration, buildRegistration(validateConfig(raw, 'bench')))
  hs.setAppserviceUrl(`http://127.0.0.1:${port}`)
  const started = performance.now()
  const child = spawn(process.execPath, ['--max-semi-space-size=4', `${ROOT}bin/relay-bridge.js`, 'start', '-c', configPath], { stdio: ['ignore', 'pipe', 'pipe'] })
  const result: Start = { ms: {} }
  let output = ''
  try {
    await new Promise<void>((resolve, reject) => {
      let buffered = ''
      child.stdout!.on('data', (d: Buffer) => {
        buffered += d
        const lines = buffered.split('\n')
        buffered = lines.pop()!
        for (const line of lines) {
          output += line + '\n'
          const msg = (JSON.parse(line) as { msg?: string }).msg ?? ''
          const created = /^Created the embedded database in ([\d.]+ s)/.exec(msg)
          if (created) result.createdIn = created[1]
          for (const [stage, match] of STAGES) if (match.test(msg) && result.ms[stage] === undefined) result.ms[stage] = Math.round(performance.now() - started)
          if (result.ms.ready !== undefined) resolve()
        }
      })
      child.stderr!.on('data', (d: Buffer) => (output += d))
      child.once('exit', code => reject(new Error(`the bridge exited with ${code} before it was ready:\n${output}`)))
    })
  } finally {
    await stop(child)
    await daemon.stop()
    await hs.stop()
  }
  return result
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const gone = new Promise(resolve => child.once('exit', resolve))
  child.kill('SIGTERM')
  await gone
}

/** Two processes that keep both cores busy, as a loaded machine would, until `end` is called. */
function busyLoops(): () => void {
  const loops = [0, 1].map(() => spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' }))
  return () => loops.forEach(l => l.kill('SIGKILL'))
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const runs = Number(opt.runs)
const report: Record<string, Record<string, number[]>> = {}
for (const load of ['idle', 'two busy loops'] as const) {
  const end = load === 'idle' ? () => {} : busyLoops()
  try {
    for (let i = 0; i < runs; i++) {
      const dir = await mkdtemp(join(tmpdir(), 'rb-first-start-'))
      try {
        for (const which of ['first start', 'next start'] as const) {
          const r = await oneStart(join(dir, 'data'))
          const row = (report[`${which}, ${load}`] ??= {})
          for (const [stage, ms] of Object.entries(r.ms)) (row[stage] ??= []).push(ms)
          console.error(`[first-start] ${which}, ${load}, run ${i + 1}: ${STAGES.filter(([s]) => r.ms[s] !== undefined).map(([s]) => `${s} ${r.ms[s]} ms`).join(', ')}${r.createdIn ? ` (database created in ${r.createdIn})` : ''}`)
        }
      } finally {
        await rm(dir, { recursive: true, force: true })
      }
    }
  } finally {
    end()
  }
}

console.log(`From the process starting to each stage's log line (median of ${runs}; node ${process.version}):`)
for (const [name, row] of Object.entries(report)) console.log(`  ${name.padEnd(28)} ${STAGES.filter(([s]) => row[s]).map(([s]) => `${s} ${(median(row[s]!) / 1000).toFixed(1)} s`).join(', ')}`)
const first = (load: string): number => median(report[`first start, ${load}`]!.ready!) / 1000
console.log(`targets: first start ready in at most 5 s idle (${first('idle').toFixed(1)} s) and 15 s with both cores busy (${first('two busy loops').toFixed(1)} s)`)
if (opt.out) await writeFile(opt.out, JSON.stringify({ when: new Date().toISOString(), node: process.version, runs, report }, null, 2) + '\n')
process.exit(0)
