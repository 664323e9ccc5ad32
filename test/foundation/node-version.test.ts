// A Node older than package.json's `engines` is told so in one sentence, at once, by every way of starting
// the bridge or the tests: `relay-bridge …` (bin/relay-bridge.js), `npm start` and `npm test`.
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tempDir } from '../support/config.ts'
import { PATIENCE_MS } from '../support/patience.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string }; scripts: Record<string, string> }

interface NodeCheck {
  atLeast(version: string, minimum: string): boolean
  minimumOf(range: string): string
  problem(version: string, range: string): string | undefined
}
// Plain CommonJS on purpose (an old Node must parse it); loading it under this Node checks and passes.
const check = createRequire(import.meta.url)('../../bin/check-node.cjs') as NodeCheck

/** The one sentence, with the version needed and the version that ran. */
const sentence = (minimum: string, ran: string) =>
  new RegExp(`^relay-bridge needs Node\\.js ${minimum.replaceAll('.', '\\.')} or newer \\(engines\\.node "[^"]+" in package\\.json\\), ` +
    `but this is Node\\.js ${ran.replace(/^v/, '').replaceAll('.', '\\.')} \\([^)]+\\): install Node\\.js 24 LTS and run it again\\.\\n$`)

function run(command: string, args: string[], cwd: string) {
  const r = spawnSync(command, args, { cwd, encoding: 'utf8', timeout: PATIENCE_MS, env: { ...process.env, npm_config_update_notifier: 'false' } })
  if (r.error) throw r.error
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** A script of package.json as argv, for running it with a chosen node binary. */
function scriptArgs(name: string): string[] {
  const [node, ...args] = pkg.scripts[name]!.split(' ')
  expect(node).toBe('node')
  return args
}

describe('the version comparison', () => {
  it.each([
    ['v22.18.0', '22.18', true],
    ['v22.18.1', '22.18', true],
    ['v22.19.0', '22.18', true],
    ['v24.0.0', '22.18', true],
    ['v100.0.0', '22.18', true],
    ['v22.17.9', '22.18', false],
    // Numbers, not strings: "22.9" < "22.18".
    ['v22.9.0', '22.18', false],
    ['v20.20.2', '22.18', false],
    ['v3.0.0', '22.18', false],
    ['v22.18.0', '22.18.1', false],
    ['v23.0.0', '23', true],
  ])('%s against %s: %s', (version, minimum, ok) => {
    expect(check.atLeast(version, minimum)).toBe(ok)
  })

  it("takes the minimum from package.json's engines.node, and refuses a range it cannot read", () => {
    expect(pkg.engines.node).toMatch(/^>=/)
    expect(check.minimumOf(pkg.engines.node)).toBe(pkg.engines.node.replace(/^>=\s*/, ''))
    expect(() => check.minimumOf('^22.18 || >=24')).toThrow(/only an engines\.node range of the form ">=X\.Y\.Z"/)
  })

  it('names the version needed and the one that ran in one sentence, and says nothing on a new enough Node', () => {
    expect(check.problem('v20.20.2', '>=22.18') + '\n').toMatch(sentence('22.18', '20.20.2'))
    expect(check.problem(process.version, pkg.engines.node)).toBeUndefined()
  })

  it('npm start preloads the check, keeping its memory flag, and npm test runs it first', () => {
    expect(scriptArgs('start')).toEqual(['--max-semi-space-size=4', '--require', './bin/check-node.cjs', 'src/cli.ts'])
    expect(scriptArgs('pretest')).toEqual(['bin/check-node.cjs'])
    expect(readFileSync(path.join(ROOT, 'bin/relay-bridge.js'), 'utf8')).toMatch(/^#!\/usr\/bin\/env -S node --max-semi-space-size=4\n/)
  })
})

// Under this Node, a copy of the package that demands Node 999 makes every entry point meet a Node too old
// for it: the same files and scripts, only the number raised. src/cli.ts there leaves a mark if it is loaded.
describe('a Node older than engines (the package copied with engines.node raised to >=999)', () => {
  let dir: string
  const loaded = () => existsSync(path.join(dir, 'cli-was-loaded'))

  beforeAll(async () => {
    dir = await tempDir('rb-node-version-')
    await mkdir(path.join(dir, 'bin'))
    await mkdir(path.join(dir, 'src'))
    for (const f of ['bin/check-node.cjs', 'bin/relay-bridge.js']) await copyFile(path.join(ROOT, f), path.join(dir, f))
    await writeFile(path.join(dir, 'package.json'), JSON.stringify({ ...pkg, engines: { node: '>=999' } }))
    await writeFile(path.join(dir, 'src/cli.ts'), "import { writeFileSync } from 'node:fs'\nwriteFileSync(new URL('../cli-was-loaded', import.meta.url), '')\n")
  })
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('relay-bridge … prints the sentence and exits 1 before loading the CLI', () => {
    const r = run(process.execPath, ['bin/relay-bridge.js', 'start'], dir)
    expect(r.stderr).toMatch(sentence('999', process.version))
    expect(r.code).toBe(1)
    expect(loaded()).toBe(false)
  })

  it('npm start prints the sentence and exits 1 before loading the CLI', () => {
    const r = run('npm', ['start', '--silent'], dir)
    expect(r.stderr).toMatch(sentence('999', process.version))
    expect(r.code).toBe(1)
    expect(loaded()).toBe(false)
  })

  it('npm test prints the sentence and exits 1 without starting vitest', () => {
    const r = run('npm', ['test', '--silent'], dir)
    expect(r.stderr).toMatch(sentence('999', process.version))
    expect(r.code).toBe(1)
    // Had the test script run, it would have looked for vitest, which this copy does not have.
    expect(r.stdout + r.stderr).not.toMatch(/vitest/)
  })
})

/** A node binary on this machine older than engines.node (Debian's /usr/bin/node is v20 here), if any. */
function oldNode(): { path: string; version: string } | undefined {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/bin', '/usr/local/bin', '/bin']
  for (const d of new Set(dirs.filter(Boolean))) {
    const candidate = path.join(d, 'node')
    if (!existsSync(candidate)) continue
    const r = spawnSync(candidate, ['--version'], { encoding: 'utf8', timeout: PATIENCE_MS })
    const version = r.stdout?.trim()
    if (version && !check.atLeast(version, check.minimumOf(pkg.engines.node))) return { path: candidate, version }
  }
  return undefined
}

const old = oldNode()
const minimum = check.minimumOf(pkg.engines.node)

describe.skipIf(!old)(`a real old Node (${old ? `${old.version} at ${old.path}` : `none older than ${minimum} on this machine`})`, () => {
  it('relay-bridge … prints the sentence and exits 1', () => {
    const r = run(old!.path, ['bin/relay-bridge.js', 'start'], ROOT)
    expect(r.stderr).toMatch(sentence(minimum, old!.version))
    expect(r.code).toBe(1)
  })

  it("npm start's command prints the sentence and exits 1 (not ERR_UNKNOWN_FILE_EXTENSION)", () => {
    const r = run(old!.path, scriptArgs('start'), ROOT)
    expect(r.stderr).toMatch(sentence(minimum, old!.version))
    expect(r.code).toBe(1)
  })

  it("npm test's pretest prints the sentence and exits 1", () => {
    const r = run(old!.path, scriptArgs('pretest'), ROOT)
    expect(r.stderr).toMatch(sentence(minimum, old!.version))
    expect(r.code).toBe(1)
  })
})
