import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'
import { describe, expect, it } from 'vitest'
import { applyEnv, ConfigError, envName, loadConfig, missingEssentials, validateConfig } from '../../src/config.ts'
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
