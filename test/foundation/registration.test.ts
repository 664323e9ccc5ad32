import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parse } from 'yaml'
import { describe, expect, it } from 'vitest'
import { runCli } from '../support/cli.ts'
import { tempDir } from '../support/config.ts'

describe('first run and registration', () => {
  it('with no config file, writes one from the example, says what to fill in, and exits 2', async () => {
    const dir = await tempDir()
    const run = await runCli(['-c', join(dir, 'config.yaml')], { cwd: dir })
    expect(run.code).toBe(2)
    expect(run.stderr).toMatch(/wrote .*config\.yaml from the example[\s\S]*homeserver\.address[\s\S]*generate-registration/)
    expect(await readFile(join(dir, 'config.yaml'), 'utf8')).toContain('command_prefix: "!relay"')
  })

  it('generate-registration fills empty tokens, keeps them on the next run, and writes a stable registration', async () => {
    const dir = await tempDir()
    const config = join(dir, 'config.yaml')
    const reg = join(dir, 'registration.yaml')
    await runCli(['-c', config], { cwd: dir }) // first run writes config.yaml
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
      { exclusive: true, regex: '@relaybot:example\\.org' },
      { exclusive: true, regex: '@signal_.*:example\\.org' },
      { exclusive: true, regex: '@whatsapp_.*:example\\.org' },
    ])
    // The regexes match what they must and nothing else.
    const users = r.namespaces.users.map((u: { regex: string }) => new RegExp(`^${u.regex}$`))
    expect(users.some((re: RegExp) => re.test('@signal_3f1c7a2e-0000-4000-8000-000000000001:example.org'))).toBe(true)
    expect(users.some((re: RegExp) => re.test('@signal_x:exampleXorg'))).toBe(false)
  })

  it('generate-registration also writes the double-puppeting registration: no url, every local user, not exclusive, its own tokens', async () => {
    const dir = await tempDir()
    const config = join(dir, 'config.yaml')
    const reg = join(dir, 'registration.yaml')
    await runCli(['-c', config], { cwd: dir })
    const run = await runCli(['generate-registration', '-c', config, '-r', reg], { cwd: dir })
    expect(run.stdout).toContain(`Wrote ${reg} and ${join(dir, 'doublepuppet.yaml')} (double puppeting)`)
    const cfg = parse(await readFile(config, 'utf8'))
    const dp = parse(await readFile(join(dir, 'doublepuppet.yaml'), 'utf8'))
    expect(dp).toEqual({
      id: 'relay-bridge-doublepuppet', url: null, as_token: cfg.appservice.double_puppet.as_token, hs_token: cfg.appservice.double_puppet.hs_token,
      sender_localpart: 'relaybot-doublepuppet', rate_limited: false,
      namespaces: { users: [{ exclusive: false, regex: '@.*:example\\.org' }], aliases: [], rooms: [] },
    })
    expect(dp.as_token).toMatch(/^[0-9a-f]{64}$/)
    expect(new Set([cfg.appservice.as_token, cfg.appservice.hs_token, dp.as_token, dp.hs_token]).size).toBe(4)
    const users = new RegExp(`^${dp.namespaces.users[0].regex}$`)
    expect(users.test('@carol:example.org')).toBe(true)
    expect(users.test('@carol:elsewhere.example')).toBe(false)
  })

  it('tokens given in the environment win over the file', async () => {
    const dir = await tempDir()
    const config = join(dir, 'config.yaml')
    const reg = join(dir, 'registration.yaml')
    await runCli(['-c', config], { cwd: dir })
    await runCli(['generate-registration', '-c', config, '-r', reg], { cwd: dir })
    await runCli(['generate-registration', '-c', config, '-r', reg], { cwd: dir, env: { RELAY_BRIDGE_APPSERVICE_AS_TOKEN: 'from-env' } })
    expect(parse(await readFile(reg, 'utf8')).as_token).toBe('from-env')
  })

  it('an invalid config stops with the key path, not a stack trace', async () => {
    const dir = await tempDir()
    const config = join(dir, 'config.yaml')
    await runCli(['-c', config], { cwd: dir })
    const run = await runCli(['migrate', '-c', config], { cwd: dir, env: { RELAY_BRIDGE_APPSERVICE_PORT: 'abc' } })
    expect(run.code).toBe(2)
    expect(run.stderr).toMatch(/appservice\.port: expected a port number/)
    expect(run.stderr).not.toMatch(/\n\s+at /)
  })
})
