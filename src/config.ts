// The configuration, validated once at start into typed values. Every error names the key path and
// what is expected; every key can be overridden from the environment as RELAY_BRIDGE_<PATH>.
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { parse as parseYaml, parseDocument } from 'yaml'
import { z } from 'zod'
import { CLI } from './cli-name.ts'
import { closest } from './suggest.ts'

const url = z.url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' })
const port = z.number({ error: 'expected a port number' }).int().min(0).max(65535)
/** The bot can grant a level below its own (100 at most), and 0 is no power at all. */
const ADMIN_LEVEL = 'expected a power level from 1 to 99 (50 is moderator), or false to give group admins no power in the room'
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
    // Double puppeting: the tokens of a second registration (no url, the homeserver's own users, not exclusive),
    // through which the bridge posts as the local Matrix user whose personal account wrote on Signal or WhatsApp.
    // Empty: no double puppeting; such messages reach Matrix through the bot, under the person's name.
    double_puppet: z.object({ as_token: z.string().default(''), hs_token: z.string().default('') }).default({ as_token: '', hs_token: '' }),
  }),
  database: z.object({ uri: z.string().default('') }),
  data_dir: z.string().min(1).default('./data'),
  signal: z.object({
    daemon_url: url,
    attachments_dir: z.string().default(''),
    shared_dir: z.string().default(''),
    shared_dir_in_daemon: z.string().default(''),
  }),
  whatsapp: z
    .object({ send_pace_ms: z.tuple([z.number().min(0), z.number().min(0)]).default([800, 2500]) })
    .default({ send_pace_ms: [800, 2500] }),
  bridge: z.object({
    admin: z.string().regex(/^(@[^:\s]+:[a-zA-Z0-9.-]+(:\d+)?)?$/, 'expected a Matrix user id such as @you:example.org').default(''),
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
    // The power level Signal and WhatsApp group admins have in the portal room (their ghosts): moderators by
    // default, so that a room's moderators are the groups' admins. false: group admins get no power in Matrix.
    admin_power_level: z.union([z.number().int(ADMIN_LEVEL).min(1, ADMIN_LEVEL).max(99, ADMIN_LEVEL), z.literal(false)], { error: ADMIN_LEVEL }).default(50),
  }),
  retention: z
    .object({
      message_map_days: z.number().positive().default(90),
      media_days: z.number().positive().default(7),
      processed_events_hours: z.number().positive().default(24),
    })
    .default({ message_map_days: 90, media_days: 7, processed_events_hours: 24 }),
  encryption: z
    .object({
      // Off by default: without the homeserver's appservice extensions (docs/operators.md) the bridge gets no keys.
      allow: z.boolean().default(false),
      default: z.boolean().default(false),
      key_wait_seconds: z.number().positive('expected a positive number of seconds').default(300),
      store_key: z.string().default(''),
      // Each ghost sends from a device of its own, cross-signed by its own identity (no warning shield on its
      // messages); off, ghosts send from the bot's device, as the mautrix bridges do.
      ghost_devices: z.boolean().default(true),
      // Ghosts' encryption machines kept in memory; an idle one is unloaded and loaded again when it speaks.
      ghost_devices_in_memory: z.number().int().positive().default(100),
      ghost_idle_seconds: z.number().positive('expected a positive number of seconds').default(600),
    })
    .refine(e => e.allow || !e.default, { error: 'default: true needs allow: true', path: ['default'] })
    .default({ allow: false, default: false, key_wait_seconds: 300, store_key: '', ghost_devices: true, ghost_devices_in_memory: 100, ghost_idle_seconds: 600 }),
  metrics: z.object({ enabled: z.boolean().default(true), hostname: z.string().default('127.0.0.1'), port }),
  console: z.object({
    enabled: z.boolean().default(false),
    hostname: z.string().min(1).default('127.0.0.1'),
    port: port.default(29331),
    public_url: z.union([z.literal(''), url]).default(''),
    shared_secret: z.string().default(''),
    trusted_proxies: z.array(z.string().min(1)).default([]),
    openid_address: z.union([z.literal(''), url]).default(''),
    link_minutes: z.number().positive().max(60, 'expected at most 60 minutes: a sign-in link is a credential in a chat').default(10),
    session_hours: z.number().positive().default(12),
  }).default({ enabled: false, hostname: '127.0.0.1', port: 29331, public_url: '', shared_secret: '', trusted_proxies: [], openid_address: '', link_minutes: 10, session_hours: 12 }),
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
const FROM_ENV = 'the environment (RELAY_BRIDGE_* variables)'

/** The schema of what a key holds, without the wrappers that only supply a default. */
function unwrap(schema: z.ZodType): z.ZodType {
  let s: z.ZodType = schema
  while (s instanceof z.ZodDefault || s instanceof z.ZodOptional) s = s.unwrap() as z.ZodType
  return s
}

interface Leaf {
  path: string[]
  /** Text keys take an environment value as it is; others read it as YAML. */
  text: boolean
}

/** Every key path of the schema, for environment overrides (records and tuples are set whole). */
function leaves(schema: z.ZodType, prefix: string[] = []): Leaf[] {
  const s = unwrap(schema)
  if (s instanceof z.ZodObject) {
    return Object.entries(s.shape as Record<string, z.ZodType>).flatMap(([k, v]) => leaves(v, [...prefix, k]))
  }
  // Every string format (url, regex-checked ids, tokens) has the def type "string".
  return [{ path: prefix, text: (s.def as { type?: string }).type === 'string' }]
}
const ENV_LEAVES = leaves(configSchema)

export const envName = (path: string[]): string => ENV_PREFIX + path.join('_').toUpperCase()

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target
  for (const key of path.slice(0, -1)) {
    if (typeof node[key] !== 'object' || node[key] === null) node[key] = {}
    node = node[key] as Record<string, unknown>
  }
  node[path[path.length - 1]!] = value
}

/** Overrides from RELAY_BRIDGE_* variables; returns the names of those used. A key that holds text takes the
 * value as it is (a token that looks like a number stays text); any other key reads it as YAML, so 8080 is a
 * number and `{"*": relay}` a mapping. */
export function applyEnv(raw: Record<string, unknown>, env: NodeJS.ProcessEnv): string[] {
  const used: string[] = []
  const problems: string[] = []
  for (const { path, text } of ENV_LEAVES) {
    const name = envName(path)
    const value = env[name]
    if (value === undefined) continue
    try {
      setPath(raw, path, text ? value : parseYaml(value))
      used.push(name)
    } catch (err) {
      problems.push(`${name}: not a valid YAML value (${(err as Error).message.split('\n')[0]}); write a mapping as {"key": value, …} and a list as [a, b]`)
    }
  }
  if (problems.length > 0) throw new ConfigError(problems, FROM_ENV)
  return used
}

/** Keys the schema does not know, each with the known key it most probably meant. */
function unknownKeys(raw: unknown, schema: z.ZodType, prefix: string[] = []): string[] {
  const s = unwrap(schema)
  if (!(s instanceof z.ZodObject) || typeof raw !== 'object' || raw === null || Array.isArray(raw)) return []
  const shape = s.shape as Record<string, z.ZodType>
  return Object.entries(raw as Record<string, unknown>).flatMap(([key, value]) => {
    const path = [...prefix, key]
    if (key in shape) return unknownKeys(value, shape[key]!, path)
    const sibling = closest(key, Object.keys(shape))
    const elsewhere = sibling ? undefined : ENV_LEAVES.find(l => l.path.at(-1) === key)?.path
    const meant = sibling ? [...prefix, sibling] : elsewhere
    return [`${path.join('.')}: unknown key${meant ? `; did you mean ${meant.join('.')}?` : ''}`]
  })
}

/** Validates a parsed configuration. `fromEnv` names the RELAY_BRIDGE_* variables applied to it, so that a
 * problem in one of them names the variable rather than the file. */
export function validateConfig(raw: unknown, source: string, fromEnv: string[] = []): Config {
  const problems: string[] = unknownKeys(raw, configSchema)
  let envProblems = 0
  const result = configSchema.safeParse(raw)
  if (result.success && problems.length === 0) return followDomain(result.data)
  for (const issue of result.success ? [] : result.error.issues) {
    const path = issue.path.map(String)
    const got = issue.code === 'invalid_type' && issue.message.includes('received undefined') ? 'is missing' : issue.message
    const leaf = ENV_LEAVES.find(l => fromEnv.includes(envName(l.path)) && l.path.every((k, i) => path[i] === k))
    if (leaf) {
      envProblems++
      const rest = path.slice(leaf.path.length).join('.')
      problems.push(`${envName(leaf.path)} (from the environment, sets ${leaf.path.join('.')}): ${rest ? `${rest}: ` : ''}${got}`)
    } else {
      problems.push(`${path.join('.') || '(top level)'}: ${got}`)
    }
  }
  const where = envProblems === 0 ? source : envProblems === problems.length ? FROM_ENV : `${source} and ${FROM_ENV}`
  throw new ConfigError(problems, where)
}

/** Turns the text of a configuration file into a validated configuration, with the environment applied. */
function parseConfig(text: string, path: string, env: NodeJS.ProcessEnv): Config {
  const doc = parseDocument(text)
  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map(e => `YAML syntax: ${e.message.split('\n')[0]}`), path)
  }
  const raw = (doc.toJS() ?? {}) as Record<string, unknown>
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(['(top level): expected a mapping of keys'], path)
  const used = applyEnv(raw, env)
  return validateConfig(raw, path, used)
}

/** Reads, overrides from the environment, and validates. */
export async function loadConfig(path: string, env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  return parseConfig(await readFile(path, 'utf8'), path, env)
}

/** The same, at once: for help texts, which commander asks for synchronously. */
export function loadConfigSync(path: string, env: NodeJS.ProcessEnv = process.env): Config {
  return parseConfig(readFileSync(path, 'utf8'), path, env)
}

/** bridge.permissions as config.example.yaml has it, for a server and its admin. */
function examplePermissions(domain: string, admin: string): Record<string, PermissionLevel> {
  return { '*': 'relay', [domain]: 'user', [admin]: 'admin' }
}
const EXAMPLE_PERMISSIONS = examplePermissions('example.org', '@admin:example.org')

const sameEntries = (a: Record<string, string>, b: Record<string, string>): boolean =>
  Object.keys(a).length === Object.keys(b).length && Object.entries(a).every(([k, v]) => b[k] === v)

/** Permissions left as in the example mean "the people of my server, and me as the admin": they follow
 * homeserver.domain and bridge.admin, so that setting the domain does not lock its people out. bridge.admin
 * is an admin whatever the permissions say. */
function followDomain(config: Config): Config {
  const { domain } = config.homeserver
  const { admin } = config.bridge
  if (sameEntries(config.bridge.permissions, EXAMPLE_PERMISSIONS)) {
    config.bridge.permissions = examplePermissions(domain, admin || `@admin:${domain}`)
  }
  if (admin) config.bridge.permissions[admin] = 'admin'
  return config
}

/** Keys that a first-time operator must fill in before the bridge can start. */
export function missingEssentials(config: Config): string[] {
  const missing: string[] = []
  if (!config.appservice.as_token || !config.appservice.hs_token) {
    missing.push(`appservice.as_token / appservice.hs_token (run \`${CLI} generate-registration\`)`)
  }
  const { domain } = config.homeserver
  if (domain === 'example.org') missing.push('homeserver.domain (your server name: the part after the colon in your Matrix id)')
  if (!config.bridge.admin && sameEntries(config.bridge.permissions, examplePermissions(domain, `@admin:${domain}`))) {
    missing.push(`bridge.admin (your own Matrix id, such as @you:${domain === 'example.org' ? 'your.server' : domain}: the bridge's admin)`)
  }
  return missing
}

/** A sentence when no entry of bridge.permissions lets anyone of homeserver.domain use the bridge: then the
 * bot declines every invitation from the operator's own server. */
export function permissionsProblem(config: Config): string | undefined {
  const { domain } = config.homeserver
  const { permissions } = config.bridge
  const ofDomain = Object.entries(permissions).some(([key, level]) =>
    (level === 'user' || level === 'admin') && (key === '*' || key === domain || key.endsWith(`:${domain}`)))
  if (ofDomain) return undefined
  return `No entry in bridge.permissions lets anyone on ${domain} (homeserver.domain) use the bridge, so the bot will decline ` +
    `their invitations. Add "${domain}": user, or your own id ("@you:${domain}": admin), to bridge.permissions.`
}

/** Who owns a login made in the terminal when --owner is not given: the configured admin, else the one
 * user the permissions make admin. */
export function defaultOwner(config: Config): string | undefined {
  if (config.bridge.admin) return config.bridge.admin
  const admins = Object.entries(config.bridge.permissions).filter(([key, level]) => level === 'admin' && key.startsWith('@'))
  return admins.length === 1 ? admins[0]![0] : undefined
}
