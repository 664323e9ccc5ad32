import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parse, parseDocument } from 'yaml'
import { describe, expect, it } from 'vitest'
import { runCli } from '../support/cli.ts'
import { tempDir } from '../support/config.ts'

/** The first run writes config.yaml; the operator then sets their server's name (keeping the comments). */
async function firstRun(dir: string, domain = 'family.example'): Promise<string> {
  const config = join(dir, 'config.yaml')
  await runCli(['-c', config], { cwd: dir })
  const doc = parseDocument(await readFile(config, 'utf8'))
  doc.setIn(['homeserver', 'domain'], domain)
  await writeFile(config, doc.toString())
  return config
}

const modeOf = async (path: string): Promise<number> => (await stat(path)).mode & 0o777

describe('first run and registration', () => {
  it('with no config file, writes one from the example, says what to fill in, and exits 2', async () => {
    const dir = await tempDir()
    const run = await runCli(['-c', join(dir, 'config.yaml')], { cwd: dir })
    expect(run.code).toBe(2)
    expect(run.stderr).toMatch(/wrote .*config\.yaml from the example[\s\S]*homeserver\.address[\s\S]*generate-registration/)
    expect(await readFile(join(dir, 'config.yaml'), 'utf8')).toContain('command_prefix: "!relay"')
  })

  it('the first run asks for the admin\'s Matrix id, says a command that works from a checkout, and writes the config readable by its owner only', async () => {
    const dir = await tempDir()
    const run = await runCli([], { cwd: dir })
    expect(run.code).toBe(2)
    expect(run.stderr).toMatch(/bridge\.admin \(your own Matrix id/)
    expect(run.stderr).toMatch(/Then run: npx relay-bridge generate-registration\n?$/)
    expect(await modeOf(join(dir, 'config.yaml'))).toBe(0o600)
  })

  it('generate-registration refuses the example\'s domain with a sentence, and writes nothing', async () => {
    const dir = await tempDir()
    const config = join(dir, 'config.yaml')
    await runCli(['-c', config], { cwd: dir })
    const run = await runCli(['generate-registration', '-c', config, '-r', join(dir, 'registration.yaml')], { cwd: dir })
    expect(run.code).toBe(2)
    expect(run.stderr).toMatch(/homeserver\.domain in .*config\.yaml is still example\.org, the example's value\. Set it to your homeserver's server name/)
    expect(parse(await readFile(config, 'utf8')).appservice.as_token).toBe('')
    await expect(stat(join(dir, 'registration.yaml'))).rejects.toThrow(/ENOENT/)
  })

  it('generate-registration makes a config that others could read readable by its owner only, and says so', async () => {
    const dir = await tempDir()
    const config = await firstRun(dir)
    await chmod(config, 0o644)
    const run = await runCli(['generate-registration', '-c', config, '-r', join(dir, 'registration.yaml')], { cwd: dir })
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/Made .*config\.yaml readable by you only \(it was 0644\)/)
    expect(await modeOf(config)).toBe(0o600)
    expect(await modeOf(join(dir, 'registration.yaml'))).toBe(0o600)
  })

  it('generate-registration fills empty tokens, keeps them on the next run, and writes a stable registration', async () => {
    const dir = await tempDir()
    const config = await firstRun(dir)
    const reg = join(dir, 'registration.yaml')
    const first = await runCli(['generate-registration', '-c', config, '-r', reg], { cwd: dir })
    expect(first.code).toBe(0)
    expect(first.stdout).toMatch(/Wrote new appservice tokens/)
    const cfg1 = parse(await readFile(config, 'utf8'))
    expect(cfg1.appservice.as_token).toMatch(/^[0-9a-f]{64}$/)
    expect(cfg1.appservice.hs_token).toMatch(/^[0-9a-f]{64}$/)
    expect(cfg1.appservice.as_token).not.toBe(cfg1.appservice.hs_token)
    expect(await readFile(config, 'utf8')).toContain('# How the homeserver reaches the bridge') // comments survive
    const reg1 = await readFile(reg, 'utf8')

    const second = await runCli(['generate-registration', '-c', config, '-r', reg], { cwd: dir })
    expect(second.code).toBe(0)
    expect(second.stdout).not.toMatch(/new appservice tokens/)
    expect(parse(await readFile(config, 'utf8')).appservice).toEqual(cfg1.appservice)
    expect(await readFile(reg, 'utf8')).toBe(reg1)

    const r = parse(reg1)
    expect(r).toMatchObject({
      id: 'relay-bridge', url: 'http://localhost:29330', as_token: cfg1.appservice.as_token, hs_token: cfg1.appservice.hs_token,
      sender_localpart: 'relaybot', rate_limited: false, receive_ephemeral: true, 'de.sorunome.msc2409.push_ephemeral': true,
      namespaces: { aliases: [], rooms: [] },
    })
    expect(r.namespaces.users).toEqual([
      { exclusive: true, regex: '@relaybot:family\\.example' },
      { exclusive: true, regex: '@signal_.*:family\\.example' },
      { exclusive: true, regex: '@whatsapp_.*:family\\.example' },
    ])
    // The regexes match what they must and nothing else.
    const users = r.namespaces.users.map((u: { regex: string }) => new RegExp(`^${u.regex}$`))
    expect(users.some((re: RegExp) => re.test('@signal_3f1c7a2e-0000-4000-8000-000000000001:family.example'))).toBe(true)
    expect(users.some((re: RegExp) => re.test('@signal_x:familyXexample'))).toBe(false)
  })

  it('asks for the encryption extensions only with encryption allowed, and makes the store key with the tokens', async () => {
    const dir = await tempDir()
    const config = await firstRun(dir)
    const reg = join(dir, 'registration.yaml')
    expect((await runCli(['generate-registration', '-c', config, '-r', reg], { cwd: dir })).code).toBe(0)
    const plain = parse(await readFile(reg, 'utf8'))
    expect(plain['org.matrix.msc3202']).toBeUndefined()
    expect(plain['io.element.msc4190']).toBeUndefined()
    const key = parse(await readFile(config, 'utf8')).encryption.store_key
    expect(key).toMatch(/^[0-9a-f]{64}$/)

    expect((await runCli(['generate-registration', '-c', config, '-r', reg], { cwd: dir, env: { RELAY_BRIDGE_ENCRYPTION_ALLOW: 'true' } })).code).toBe(0)
    expect(parse(await readFile(reg, 'utf8'))).toMatchObject({
      receive_ephemeral: true, 'de.sorunome.msc2409.push_ephemeral': true, 'org.matrix.msc3202': true, 'io.element.msc4190': true,
    })
    expect(parse(await readFile(config, 'utf8')).encryption.store_key).toBe(key) // never replaced: it unlocks the store
  })

  it('encryption.default without encryption.allow is refused with the key path', async () => {
    const dir = await tempDir()
    const config = await firstRun(dir)
    const run = await runCli(['migrate', '-c', config], { cwd: dir, env: { RELAY_BRIDGE_ENCRYPTION_DEFAULT: 'true' } })
    expect(run.code).toBe(2)
    expect(run.stderr).toMatch(/RELAY_BRIDGE_ENCRYPTION_DEFAULT \(from the environment, sets encryption\.default\): default: true needs allow: true/)
  })

  it('generate-registration also writes the double-puppeting registration: no url, every local user, not exclusive, its own tokens', async () => {
    const dir = await tempDir()
    const config = await firstRun(dir)
    const reg = join(dir, 'registration.yaml')
    const run = await runCli(['generate-registration', '-c', config, '-r', reg], { cwd: dir })
    expect(run.stdout).toContain(`Wrote ${reg} and ${join(dir, 'doublepuppet.yaml')} (double puppeting)`)
    const cfg = parse(await readFile(config, 'utf8'))
    const dp = parse(await readFile(join(dir, 'doublepuppet.yaml'), 'utf8'))
    expect(dp).toEqual({
      id: 'relay-bridge-doublepuppet', url: null, as_token: cfg.appservice.double_puppet.as_token, hs_token: cfg.appservice.double_puppet.hs_token,
      sender_localpart: 'relaybot-doublepuppet', rate_limited: false,
      namespaces: { users: [{ exclusive: false, regex: '@.*:family\\.example' }], aliases: [], rooms: [] },
    })
    expect(dp.as_token).toMatch(/^[0-9a-f]{64}$/)
    expect(new Set([cfg.appservice.as_token, cfg.appservice.hs_token, dp.as_token, dp.hs_token]).size).toBe(4)
    const users = new RegExp(`^${dp.namespaces.users[0].regex}$`)
    expect(users.test('@carol:family.example')).toBe(true)
    expect(users.test('@carol:elsewhere.example')).toBe(false)
  })

  it('tokens given in the environment win over the file', async () => {
    const dir = await tempDir()
    const config = await firstRun(dir)
    const reg = join(dir, 'registration.yaml')
    await runCli(['generate-registration', '-c', config, '-r', reg], { cwd: dir })
    await runCli(['generate-registration', '-c', config, '-r', reg], { cwd: dir, env: { RELAY_BRIDGE_APPSERVICE_AS_TOKEN: 'from-env' } })
    expect(parse(await readFile(reg, 'utf8')).as_token).toBe('from-env')
  })

  it('an invalid config stops with the key path, not a stack trace', async () => {
    const dir = await tempDir()
    const config = join(dir, 'config.yaml')
    await runCli(['-c', config], { cwd: dir })
    await writeFile(config, (await readFile(config, 'utf8')).replace('port: 29330', 'port: eighty'))
    const run = await runCli(['migrate', '-c', config], { cwd: dir })
    expect(run.code).toBe(2)
    expect(run.stderr).toMatch(/config\.yaml is not valid:\n {2}- appservice\.port: expected a port number/)
    expect(run.stderr).not.toMatch(/\n\s+at /)
  })

  it('an invalid environment variable is named as such, not blamed on the file', async () => {
    const dir = await tempDir()
    const config = join(dir, 'config.yaml')
    await runCli(['-c', config], { cwd: dir })
    const run = await runCli(['migrate', '-c', config], { cwd: dir, env: { RELAY_BRIDGE_APPSERVICE_PORT: 'abc' } })
    expect(run.code).toBe(2)
    expect(run.stderr).toMatch(/RELAY_BRIDGE_APPSERVICE_PORT \(from the environment, sets appservice\.port\): expected a port number/)
    expect(run.stderr).not.toMatch(/config\.yaml is not valid/)
  })

  it('-c in a directory that does not exist says what to do, in one sentence, once', async () => {
    const dir = await tempDir()
    const run = await runCli(['-c', join(dir, 'nonexist', 'x.yaml')], { cwd: dir })
    expect(run.code).toBe(2)
    expect(run.stderr.trim()).toBe(`The directory ${join(dir, 'nonexist')} does not exist, so the configuration file ${join(dir, 'nonexist', 'x.yaml')} ` +
      'can be neither read nor written: create the directory, or give -c a path in an existing one.')
    expect(run.stdout).toBe('')
  })

  it('-c naming a directory says to name the file, in one sentence, once', async () => {
    const dir = await tempDir()
    await mkdir(join(dir, 'conf'))
    const run = await runCli(['migrate', '-c', join(dir, 'conf')], { cwd: dir })
    expect(run.code).toBe(2)
    expect(run.stderr.trim()).toBe(`${join(dir, 'conf')} is a directory, not a configuration file: give -c the path of the file, such as -c ${join(dir, 'conf', 'config.yaml')}.`)
    expect(run.stdout).toBe('')
  })
})
