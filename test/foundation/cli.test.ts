// The command line as an operator meets it: unknown commands, help, the version.
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parse, stringify } from 'yaml'
import { describe, expect, it } from 'vitest'
import { runCli } from '../support/cli.ts'
import { tempDir } from '../support/config.ts'

const PACKAGE = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }

describe('the command line', () => {
  it('an unknown command is called one, with the command it probably meant, and nothing starts', async () => {
    const dir = await tempDir()
    const run = await runCli(['bogus'], { cwd: dir })
    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(/^error: unknown command 'bogus'\. The commands are start, generate-registration, migrate, reset-encryption, login/)
    expect(run.stderr).not.toMatch(/too many arguments/)
    const typo = await runCli(['-c', join(dir, 'config.yaml'), 'migrat'], { cwd: dir })
    expect(typo.stderr).toMatch(/^error: unknown command 'migrat' \(did you mean migrate\?\)/)
    // Nothing ran: not even the first run's config file was written.
    await expect(readFile(join(dir, 'config.yaml'))).rejects.toThrow(/ENOENT/)
  })

  it('a subcommand\'s --help shows the -c and -r options it takes', async () => {
    const run = await runCli(['generate-registration', '--help'])
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/-c, --config <path>/)
    expect(run.stdout).toMatch(/-r, --registration <path>/)
  })

  it('login --help shows the owner a login gets without --owner, read from the configuration', async () => {
    const dir = await tempDir()
    const config = join(dir, 'config.yaml')
    const raw = parse(await readFile(new URL('../../config/config.example.yaml', import.meta.url), 'utf8'))
    raw.homeserver.domain = 'family.example'
    raw.bridge.admin = '@me:family.example'
    await writeFile(config, stringify(raw))
    const run = await runCli(['-c', config, 'login', '--help'])
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/--owner <mxid>/)
    expect(run.stdout).not.toMatch(/default: ""/)
    expect(run.stdout).toMatch(/a login made here without --owner belongs to @me:family\.example/)
  })

  it('--version prints the package version', async () => {
    const run = await runCli(['--version'])
    expect(run.code).toBe(0)
    expect(run.stdout.trim()).toBe(PACKAGE.version)
  })

  it('every instruction to run the command line says a form that works from a checkout', async () => {
    const root = new URL('../../', import.meta.url)
    const files = ['README.md', 'config/config.example.yaml', ...(await readdir(new URL('docs/', root))).map(f => `docs/${f}`),
      ...(await readdir(new URL('src/', root), { recursive: true })).filter(f => f.endsWith('.ts')).map(f => `src/${f}`)]
    const bare: string[] = []
    for (const file of files) {
      const text = await readFile(new URL(file, root), 'utf8')
      // `relay-bridge` is on PATH only where the package is installed; `npx relay-bridge` works everywhere.
      for (const m of text.matchAll(/(?<![\w/.-]|npx )relay-bridge (start|generate-registration|migrate|reset-encryption|login)\b/g)) bare.push(`${file}: ${m[0]}`)
    }
    expect(bare).toEqual([])
  })
})
