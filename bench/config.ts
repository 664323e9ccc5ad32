// The configuration every benchmark process shares: the bridge's (validated like the real one) and the
// fixed identities the load generator speaks as.
import { validateConfig, type Config } from '../src/config.ts'

export const AS_TOKEN = 'as-token-for-bench-0123456789abcdef'
export const HS_TOKEN = 'hs-token-for-bench-0123456789abcdef'
export const DOMAIN = 'example.org'
export const ALICE = `@alice:${DOMAIN}`
export const SIGNAL_RELAY = { number: '+15550100001', aci: '5f0c2a9e-3b7d-4e61-9a2c-7d1e8b4f6a30', name: 'Relay' }
export const SIGNAL_ALEX = { number: '+15550100002', aci: 'a3e91c47-0d52-4b8e-b6f1-2c9d7e0a5b14', name: 'Alex' }
export const WA_ROBIN = { lid: '300000000000001@lid', pn: '15550300001@s.whatsapp.net' }
export const SIGNAL_LOGIN = 'sig-bench1'
export const WHATSAPP_LOGIN = 'wa-bench1'

export interface BenchConfigInput {
  databaseUri: string
  homeserver: string
  daemonUrl: string
  dataDir: string
  /** encryption.allow, with a fixed store key: the bridge's device and its crypto store are loaded. */
  encrypted?: boolean
}

const BENCH_STORE_KEY = 'bench-store-key-'.repeat(4)

export function benchConfig(i: BenchConfigInput): Config {
  return validateConfig({
    homeserver: { address: i.homeserver, domain: DOMAIN },
    appservice: {
      address: 'http://127.0.0.1:0', hostname: '127.0.0.1', port: 0, id: 'relay-bridge',
      bot: { username: 'relaybot', displayname: 'Relay bridge' }, as_token: AS_TOKEN, hs_token: HS_TOKEN,
    },
    database: { uri: i.databaseUri },
    data_dir: i.dataDir,
    signal: { daemon_url: i.daemonUrl },
    // Production pacing (WhatsApp's 0.8–2.5 s jitter between two sends to a group) is off in the benchmark.
    whatsapp: { send_pace_ms: [0, 0] },
    bridge: {
      command_prefix: '!relay',
      permissions: { '*': 'relay', [DOMAIN]: 'user' },
      auto_create_portals: false,
      relay: { message_format: '{name} ({network}): {message}', reactions: 'message' },
      hold_retention_hours: 336,
    },
    ...(i.encrypted ? { encryption: { allow: true, store_key: BENCH_STORE_KEY } } : {}),
    metrics: { enabled: false, hostname: '127.0.0.1', port: 0 },
    logging: { level: process.env.BENCH_LOG ?? 'silent' },
  }, 'bench config')
}

/** Every generated message carries its sequence number between these markers, which survive rendering. */
export const tag = (seq: number): string => `zq${seq}qz`
const TAG = /zq(\d+)qz/
export const untag = (text: unknown): number | undefined => {
  const m = typeof text === 'string' ? TAG.exec(text) : null
  return m ? Number(m[1]) : undefined
}

/** Monotonic milliseconds comparable across processes on one machine (CLOCK_MONOTONIC). */
export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6

export const signalGroupId = (i: number): string => {
  const b = Buffer.alloc(32)
  b.writeUInt32BE(i, 28)
  b.write('relaybench', 0)
  return b.toString('base64')
}
export const whatsappGroupId = (i: number): string => `120363${String(1_000_000 + i).padStart(12, '0')}@g.us`
export const benchRoomId = (i: number): string => `!bench${i}:${DOMAIN}`

/** Node's flags for the bridge process: the same as the Docker image's entrypoint, `bin/relay-bridge.js` and
 * `npm start` give it (a 4 MB young generation; see docs/performance.md, Memory). */
export const BRIDGE_NODE_FLAGS = ['--max-semi-space-size=4']
