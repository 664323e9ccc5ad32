import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse, stringify } from 'yaml'
import { describe, expect, it } from 'vitest'
import { applyEnv, ConfigError, envName, loadConfig, missingEssentials, permissionsProblem, validateConfig } from '../../src/config.ts'
import { tempDir } from '../support/config.ts'

const EXAMPLE = fileURLToPath(new URL('../../config/config.example.yaml', import.meta.url))

async function exampleRaw(): Promise<Record<string, any>> {
  return parse(await readFile(EXAMPLE, 'utf8'))
}

function problemsOf(raw: unknown): string[] {
  try {
    validateConfig(raw, 'config.yaml')
  } catch (err) {
    if (err instanceof ConfigError) return err.problems
    throw err
  }
  return []
}

describe('configuration', () => {
  it('the example configuration is valid, and says what a first-time operator must still fill in', async () => {
    const config = validateConfig(await exampleRaw(), 'example')
    expect(config.appservice.port).toBe(29330)
    expect(config.bridge.permissions['@admin:example.org']).toBe('admin')
    expect(missingEssentials(config).join('\n')).toMatch(/as_token.*generate-registration[\s\S]*homeserver\.domain/)
  })

  it('an error names the key path and what is expected', async () => {
    const raw = await exampleRaw()
    raw.appservice.port = 'eighty'
    raw.homeserver.address = 'not a url'
    raw.bridge.permissions['@bob:example.org'] = 'superuser'
    delete raw.signal.daemon_url
    const problems = problemsOf(raw)
    expect(problems).toEqual(expect.arrayContaining([
      expect.stringMatching(/^appservice\.port: expected a port number/),
      expect.stringMatching(/^homeserver\.address: expected an http/),
      expect.stringMatching(/^bridge\.permissions\.@bob:example\.org: expected relay, user or admin/),
      expect.stringMatching(/^signal\.daemon_url: /),
    ]))
  })

  it('a relay template without {message} is refused with a sentence', async () => {
    const raw = await exampleRaw()
    raw.bridge.relay.message_format = '{name} says'
    expect(problemsOf(raw)).toEqual([expect.stringMatching(/^bridge\.relay\.message_format: expected a template containing \{message\}/)])
  })

  it('bridge.admin_power_level is 50 unless set, may be false, and a level the bot could never grant is refused with a sentence', async () => {
    const raw = await exampleRaw()
    delete raw.bridge.admin_power_level
    expect(validateConfig(raw, 'config.yaml').bridge.admin_power_level).toBe(50)
    for (const fine of [false, 1, 99]) {
      raw.bridge.admin_power_level = fine
      expect(problemsOf(raw)).toEqual([])
    }
    for (const wrong of [100, 0, 'moderator', true]) {
      raw.bridge.admin_power_level = wrong
      expect(problemsOf(raw)).toEqual([expect.stringMatching(/^bridge\.admin_power_level: expected a power level from 1 to 99 \(50 is moderator\), or false/)])
    }
  })

  it('any key can be overridden from the environment as RELAY_BRIDGE_<PATH>', async () => {
    const raw = await exampleRaw()
    const used = applyEnv(raw, {
      RELAY_BRIDGE_DATABASE_URI: 'postgres://u@db/relay',
      RELAY_BRIDGE_APPSERVICE_HS_TOKEN: '12345',
      RELAY_BRIDGE_APPSERVICE_PORT: '8081',
      RELAY_BRIDGE_METRICS_ENABLED: 'false',
      RELAY_BRIDGE_BRIDGE_PERMISSIONS: '{"*": "user"}',
    })
    expect(used).toHaveLength(5)
    const config = validateConfig(raw, 'env')
    expect(config.database.uri).toBe('postgres://u@db/relay')
    expect(config.appservice.hs_token).toBe('12345') // a token stays a string even when it looks like a number
    expect(config.appservice.port).toBe(8081)
    expect(config.metrics.enabled).toBe(false)
    expect(config.bridge.permissions).toEqual({ '*': 'user' })
    expect(envName(['appservice', 'as_token'])).toBe('RELAY_BRIDGE_APPSERVICE_AS_TOKEN')
  })

  it('a YAML syntax error is reported as such, with the file name', async () => {
    const dir = await tempDir()
    const path = join(dir, 'config.yaml')
    await writeFile(path, 'homeserver:\n  address: [unclosed\n')
    await expect(loadConfig(path, {})).rejects.toThrow(/config\.yaml is not valid:[\s\S]*YAML syntax/)
  })
})

describe('configuration mistakes an operator makes, each named', () => {
  async function configFile(edit: (raw: Record<string, any>) => void): Promise<string> {
    const raw = await exampleRaw()
    edit(raw)
    const path = join(await tempDir(), 'config.yaml')
    await writeFile(path, stringify(raw))
    return path
  }

  async function refusal(path: string, env: NodeJS.ProcessEnv = {}): Promise<string> {
    const err = await loadConfig(path, env).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(ConfigError)
    return (err as Error).message
  }

  it('a bad value in an environment variable names the variable, not the file', async () => {
    const path = await configFile(() => {})
    const message = await refusal(path, { RELAY_BRIDGE_APPSERVICE_PORT: 'abc' })
    expect(message).toMatch(/RELAY_BRIDGE_APPSERVICE_PORT \(from the environment, sets appservice\.port\): expected a port number/)
    expect(message).not.toMatch(/in .*config\.yaml is not valid/)
  })

  it('a malformed RELAY_BRIDGE_BRIDGE_PERMISSIONS names the variable and how to write a mapping', async () => {
    const path = await configFile(() => {})
    const message = await refusal(path, { RELAY_BRIDGE_BRIDGE_PERMISSIONS: '{"*": relay, "example.org": user' })
    expect(message).toMatch(/RELAY_BRIDGE_BRIDGE_PERMISSIONS: not a valid YAML value .*\{"key": value, …\}/)
  })

  it('a Matrix id in RELAY_BRIDGE_BRIDGE_ADMIN is taken as text (YAML would refuse the leading @)', async () => {
    const path = await configFile(() => {})
    const config = await loadConfig(path, { RELAY_BRIDGE_BRIDGE_ADMIN: '@me:example.org' })
    expect(config.bridge.admin).toBe('@me:example.org')
  })

  it('misspelled keys are named with the key they probably meant', async () => {
    const path = await configFile(raw => {
      raw.bridge.auto_create_portal = false
      raw.homesever = raw.homeserver
      delete raw.homeserver
      raw.metrics.hostnme = '0.0.0.0'
      raw.appservice.bot.color = 'blue'
    })
    const message = await refusal(path)
    expect(message).toMatch(/bridge\.auto_create_portal: unknown key; did you mean bridge\.auto_create_portals\?/)
    expect(message).toMatch(/homesever: unknown key; did you mean homeserver\?/)
    expect(message).toMatch(/metrics\.hostnme: unknown key; did you mean metrics\.hostname\?/)
    expect(message).toMatch(/appservice\.bot\.color: unknown key(?!;)/)
  })

  it('a key put under the wrong section is pointed to where it belongs', async () => {
    const path = await configFile(raw => {
      raw.bridge.port = 9100
    })
    expect(await refusal(path)).toMatch(/bridge\.port: unknown key; did you mean appservice\.port\?/)
  })

  it('permissions left as in the example follow homeserver.domain and bridge.admin', async () => {
    const config = validateConfig({ ...(await exampleRaw()), homeserver: { address: 'http://hs:8008', domain: 'family.example' } }, 'config.yaml')
    expect(config.bridge.permissions).toEqual({ '*': 'relay', 'family.example': 'user', '@admin:family.example': 'admin' })
    const raw = await exampleRaw()
    raw.homeserver.domain = 'family.example'
    raw.bridge.admin = '@me:family.example'
    expect(validateConfig(raw, 'config.yaml').bridge.permissions).toEqual({ '*': 'relay', 'family.example': 'user', '@me:family.example': 'admin' })
  })

  it('permissions the operator wrote stay as written, and bridge.admin is an admin besides', async () => {
    const raw = await exampleRaw()
    raw.homeserver.domain = 'family.example'
    raw.bridge.permissions = { '*': 'relay', 'friends.example': 'user' }
    raw.bridge.admin = '@me:family.example'
    expect(validateConfig(raw, 'config.yaml').bridge.permissions).toEqual({ '*': 'relay', 'friends.example': 'user', '@me:family.example': 'admin' })
  })

  it('a first-time operator is asked for their own Matrix id as the admin', async () => {
    const raw = await exampleRaw()
    raw.homeserver.domain = 'family.example'
    raw.appservice.as_token = raw.appservice.hs_token = 'x'.repeat(64)
    expect(missingEssentials(validateConfig(raw, 'config.yaml'))).toEqual([expect.stringMatching(/^bridge\.admin \(your own Matrix id, such as @you:family\.example/)])
    raw.bridge.admin = '@me:family.example'
    expect(missingEssentials(validateConfig(raw, 'config.yaml'))).toEqual([])
  })

  it('a configuration where no permission entry lets homeserver.domain in says so', async () => {
    const raw = await exampleRaw()
    raw.homeserver.domain = 'family.example'
    raw.bridge.permissions = { '*': 'relay', 'example.org': 'user', '@admin:example.org': 'admin', 'other.example': 'user' }
    expect(permissionsProblem(validateConfig(raw, 'config.yaml'))).toMatch(
      /No entry in bridge\.permissions lets anyone on family\.example \(homeserver\.domain\) use the bridge.*Add "family\.example": user/)
    raw.bridge.permissions['@me:family.example'] = 'admin'
    expect(permissionsProblem(validateConfig(raw, 'config.yaml'))).toBeUndefined()
  })
})
