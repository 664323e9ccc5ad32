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

  it('asks for the encryption extensions only with encryption allowed, and makes the store key with the tokens', async () => {
    const dir = await tempDir()
    const config = join(dir, 'config.yaml')
    const reg = join(dir, 'registration.yaml')
    await runCli(['-c', config], { cwd: dir })
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
    const config = join(dir, 'config.yaml')
    await runCli(['-c', config], { cwd: dir })
    const run = await runCli(['migrate', '-c', config], { cwd: dir, env: { RELAY_BRIDGE_ENCRYPTION_DEFAULT: 'true' } })
    expect(run.code).toBe(2)
    expect(run.stderr).toMatch(/encryption\.default: default: true needs allow: true/)
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
