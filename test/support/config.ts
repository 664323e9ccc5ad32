// A valid configuration for tests, pointing at loopback.
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { validateConfig, type Config } from '../../src/config.ts'

export const AS_TOKEN = 'as-token-for-tests-0123456789abcdef'
export const HS_TOKEN = 'hs-token-for-tests-0123456789abcdef'

export async function tempDir(prefix = 'rb-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix))
}

export function testConfig(overrides: { homeserver?: string; dataDir: string; databaseUri?: string; daemonUrl?: string; extra?: (raw: Record<string, any>) => void }): Config {
  const raw: Record<string, any> = {
    homeserver: { address: overrides.homeserver ?? 'http://127.0.0.1:1', domain: 'example.org' },
    appservice: {
      address: 'http://127.0.0.1:0', hostname: '127.0.0.1', port: 0, id: 'relay-bridge',
      bot: { username: 'relaybot', displayname: 'Relay bridge' }, as_token: AS_TOKEN, hs_token: HS_TOKEN,
    },
    database: { uri: overrides.databaseUri ?? '' },
    data_dir: overrides.dataDir,
    signal: { daemon_url: overrides.daemonUrl ?? 'http://127.0.0.1:1' },
    whatsapp: { send_pace_ms: [0, 0] },
    bridge: {
      command_prefix: '!relay',
      permissions: { '*': 'relay', 'example.org': 'user', '@admin:example.org': 'admin' },
      auto_create_portals: true,
      relay: { message_format: '{name} ({network}): {message}', reactions: 'message' },
      hold_retention_hours: 336,
    },
    metrics: { enabled: false, hostname: '127.0.0.1', port: 0 },
    logging: { level: 'silent' },
  }
  overrides.extra?.(raw)
  return validateConfig(raw, 'test config')
}
