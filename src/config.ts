// The configuration, validated once at start into typed values. Every error names the key path and
// what is expected; every key can be overridden from the environment as RELAY_BRIDGE_<PATH>.
import { readFile } from 'node:fs/promises'
import { parse as parseYaml, parseDocument } from 'yaml'
import { z } from 'zod'

const url = z.url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' })
const port = z.number({ error: 'expected a port number' }).int().min(0).max(65535)
const level = z.enum(['relay', 'user', 'admin'], { error: 'expected relay, user or admin' })

export const configSchema = z.object({
  homeserver: z.object({
    address: url,
    domain: z.string().regex(/^[a-zA-Z0-9.-]+(:\d+)?$/, 'expected a server name such as example.org'),
  }),
  appservice: z.object({
    address: url,
    hostname: z.string().min(1),
    port,
    id: z.string().min(1),
    bot: z.object({
      username: z.string().regex(/^[a-z0-9._=/-]+$/, 'expected a user id localpart (a-z, 0-9, ._=-/)'),
      displayname: z.string().default('Relay bridge'),
    }),
    as_token: z.string(),
    hs_token: z.string(),
    max_body_bytes: z.number().int().min(1_048_576, 'expected at least 1048576 (1 MiB)').default(33_554_432),
  }),
  database: z.object({ uri: z.string().default('') }),
  data_dir: z.string().min(1).default('./data'),
  signal: z.object({ daemon_url: url, attachments_dir: z.string().default('') }),
  whatsapp: z
    .object({ send_pace_ms: z.tuple([z.number().min(0), z.number().min(0)]).default([800, 2500]) })
    .default({ send_pace_ms: [800, 2500] }),
  bridge: z.object({
    command_prefix: z.string().min(1).default('!relay'),
    permissions: z.record(z.string(), level).default({ '*': 'relay' }),
    auto_create_portals: z.boolean().default(true),
    relay: z
      .object({
        message_format: z
          .string()
          .refine(s => s.includes('{message}'), 'expected a template containing {message}')
          .default('{name} ({network}): {message}'),
        reactions: z.enum(['message', 'emoji', 'drop'], { error: 'expected message, emoji or drop' }).default('message'),
      })
      .default({ message_format: '{name} ({network}): {message}', reactions: 'message' }),
    hold_retention_hours: z.number().positive().default(336),
    typing_to_matrix: z.boolean().default(true),
    receipts_to_matrix: z.boolean().default(true),
  }),
  encryption: z
    .object({
      // Off by default: without the homeserver's appservice extensions (docs/operators.md) the bridge gets no keys.
      allow: z.boolean().default(false),
      default: z.boolean().default(false),
      key_wait_seconds: z.number().positive('expected a positive number of seconds').default(300),
      store_key: z.string().default(''),
    })
    .refine(e => e.allow || !e.default, { error: 'default: true needs allow: true', path: ['default'] })
    .default({ allow: false, default: false, key_wait_seconds: 300, store_key: '' }),
  metrics: z.object({ enabled: z.boolean().default(true), hostname: z.string().default('127.0.0.1'), port }),
  logging: z.object({
    level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  }),
})

export type Config = z.infer<typeof configSchema>
export type PermissionLevel = z.infer<typeof level>

export class ConfigError extends Error {
  readonly problems: string[]
  constructor(problems: string[], source: string) {
    super(`The configuration in ${source} is not valid:\n${problems.map(p => `  - ${p}`).join('\n')}`)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

const ENV_PREFIX = 'RELAY_BRIDGE_'

/** Every key path of the schema, for environment overrides (records and tuples are set whole). */
function leafPaths(schema: z.ZodType, prefix: string[] = []): string[][] {
  let s: z.ZodType = schema
  while (s instanceof z.ZodDefault || s instanceof z.ZodOptional) s = s.unwrap() as z.ZodType
  if (s instanceof z.ZodObject) {
    return Object.entries(s.shape as Record<string, z.ZodType>).flatMap(([k, v]) => leafPaths(v, [...prefix, k]))
  }
  return [prefix]
}
const ENV_PATHS = leafPaths(configSchema)

export const envName = (path: string[]): string => ENV_PREFIX + path.join('_').toUpperCase()

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target
  for (const key of path.slice(0, -1)) {
    if (typeof node[key] !== 'object' || node[key] === null) node[key] = {}
    node = node[key] as Record<string, unknown>
  }
  node[path[path.length - 1]!] = value
}

/** Overrides from RELAY_BRIDGE_* variables; values are read as YAML scalars (so 8080 is a number). */
export function applyEnv(raw: Record<string, unknown>, env: NodeJS.ProcessEnv): string[] {
  const used: string[] = []
  for (const path of ENV_PATHS) {
    const name = envName(path)
    const value = env[name]
    if (value === undefined) continue
    // Tokens and URIs stay strings even if they look like numbers.
    const parsed = /token|store_key|uri|address|url|domain|hostname|username|displayname|prefix|format|dir/.test(path.at(-1)!)
      ? value
      : parseYaml(value)
    setPath(raw, path, parsed)
    used.push(name)
  }
  return used
}

export function validateConfig(raw: unknown, source: string): Config {
  const result = configSchema.safeParse(raw)
  if (result.success) return result.data
  const problems = result.error.issues.map(issue => {
    const path = issue.path.map(String).join('.') || '(top level)'
    const got = issue.code === 'invalid_type' && issue.message.includes('received undefined') ? 'is missing' : issue.message
    return `${path}: ${got}`
  })
  throw new ConfigError(problems, source)
}

/** Reads, overrides from the environment, and validates. */
export async function loadConfig(path: string, env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  const text = await readFile(path, 'utf8')
  const doc = parseDocument(text)
  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map(e => `YAML syntax: ${e.message.split('\n')[0]}`), path)
  }
  const raw = (doc.toJS() ?? {}) as Record<string, unknown>
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(['(top level): expected a mapping of keys'], path)
  applyEnv(raw, env)
  return validateConfig(raw, path)
}

/** Keys that a first-time operator must fill in before the bridge can start. */
export function missingEssentials(config: Config): string[] {
  const missing: string[] = []
  if (!config.appservice.as_token || !config.appservice.hs_token) {
    missing.push('appservice.as_token / appservice.hs_token (run `relay-bridge generate-registration`)')
  }
  if (config.homeserver.domain === 'example.org') missing.push('homeserver.domain (your server name)')
  return missing
}
