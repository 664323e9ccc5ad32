// The appservice registration file for the homeserver, generated from the config. Written by hand
// rather than with matrix-appservice's AppServiceRegistration: that class writes only the unstable
// ephemeral flag, which Synapse 1.156 stopped honouring alone (matrix-appservice.md §3).
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { parseDocument, stringify } from 'yaml'
import { CLI } from './cli-name.ts'
import type { Config } from './config.ts'

export const GHOST_PREFIXES = { signal: 'signal_', whatsapp: 'whatsapp_' } as const

const escapeRegex = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

export interface Registration {
  id: string
  url: string
  as_token: string
  hs_token: string
  sender_localpart: string
  rate_limited: false
  receive_ephemeral: true
  'de.sorunome.msc2409.push_ephemeral': true
  /** MSC3202: device lists and one-time-key counts in transactions, and device masquerading (encryption only). */
  'org.matrix.msc3202'?: true
  /** MSC4190: the appservice creates its devices itself, where MAS handles logins (encryption only). */
  'io.element.msc4190'?: true
  namespaces: {
    users: { exclusive: true; regex: string }[]
    aliases: never[]
    rooms: never[]
  }
}

export function buildRegistration(config: Config): Registration {
  const domain = escapeRegex(config.homeserver.domain)
  return {
    id: config.appservice.id,
    url: config.appservice.address,
    as_token: config.appservice.as_token,
    hs_token: config.appservice.hs_token,
    sender_localpart: config.appservice.bot.username,
    rate_limited: false,
    receive_ephemeral: true,
    'de.sorunome.msc2409.push_ephemeral': true,
    // To-device events come with the ephemeral flag (MSC2409/MSC4203 in Synapse); the rest only when asked for,
    // so that a bridge without encryption asks the homeserver for nothing it does not use.
    ...(config.encryption.allow ? { 'org.matrix.msc3202': true as const, 'io.element.msc4190': true as const } : {}),
    namespaces: {
      users: [
        { exclusive: true, regex: `@${escapeRegex(config.appservice.bot.username)}:${domain}` },
        { exclusive: true, regex: `@${GHOST_PREFIXES.signal}.*:${domain}` },
        { exclusive: true, regex: `@${GHOST_PREFIXES.whatsapp}.*:${domain}` },
      ],
      aliases: [],
      rooms: [],
    },
  }
}

/** The id of the double-puppeting registration beside the bridge's own; its posts carry it as their mark. */
export const doublePuppetId = (config: Config): string => `${config.appservice.id}-doublepuppet`

export interface DoublePuppetRegistration {
  id: string
  url: null
  as_token: string
  hs_token: string
  sender_localpart: string
  rate_limited: false
  namespaces: { users: { exclusive: false; regex: string }[]; aliases: never[]; rooms: never[] }
}

/**
 * The second registration of double puppeting, as the mautrix bridges describe it: no url (the homeserver sends it
 * nothing), a non-exclusive namespace over every local user (they keep their accounts), and its own as_token, with
 * which the bridge acts as a local user by `user_id`.
 */
export function buildDoublePuppetRegistration(config: Config): DoublePuppetRegistration {
  return {
    id: doublePuppetId(config),
    url: null,
    as_token: config.appservice.double_puppet.as_token,
    hs_token: config.appservice.double_puppet.hs_token,
    sender_localpart: `${config.appservice.bot.username}-doublepuppet`,
    rate_limited: false,
    namespaces: { users: [{ exclusive: false, regex: `@.*:${escapeRegex(config.homeserver.domain)}` }], aliases: [], rooms: [] },
  }
}

/** Where generate-registration writes the double-puppeting registration: beside the main one. */
export const doublePuppetPath = (registrationPath: string): string => join(dirname(registrationPath), 'doublepuppet.yaml')

const newToken = (): string => randomBytes(32).toString('hex')

/** Fills the empty secrets at `paths` in the config file, keeping its comments and every value already set. */
async function fillSecrets(configPath: string, paths: string[][]): Promise<{ values: string[]; changed: boolean }> {
  const doc = parseDocument(await readFile(configPath, 'utf8'))
  let changed = false
  const values = paths.map(path => {
    const current = doc.getIn(path)
    if (typeof current === 'string' && current.length > 0) return current
    const made = newToken()
    doc.setIn(path, made)
    changed = true
    return made
  })
  if (changed) await writeFile(configPath, doc.toString())
  return { values, changed }
}

/**
 * Fills empty appservice tokens and the crypto store's at-rest key in the config file and returns the tokens
 * in force. The store key is made even while encryption is off, so that turning it on later needs no other step.
 */
export async function ensureTokens(configPath: string): Promise<{ as_token: string; hs_token: string; changed: boolean }> {
  const { values: [as_token = '', hs_token = ''], changed } = await fillSecrets(configPath, [
    ['appservice', 'as_token'], ['appservice', 'hs_token'],
    ['appservice', 'double_puppet', 'as_token'], ['appservice', 'double_puppet', 'hs_token'],
    ['encryption', 'store_key'],
  ])
  return { as_token, hs_token, changed }
}

/** The crypto store's at-rest key, written into the config file on the first start with encryption allowed
 * (an operator who has not run generate-registration since upgrading). Returns the key in force. */
export async function ensureStoreKey(configPath: string): Promise<string> {
  return (await fillSecrets(configPath, [['encryption', 'store_key']])).values[0]!
}

export async function writeRegistration(path: string, config: Config): Promise<void> {
  const header = `# Generated by \`${CLI} generate-registration\`. Give this file to your homeserver\n` +
    '# (Synapse: app_service_config_files) and restart it. It holds secrets: keep it private.\n'
  await writeFile(path, header + stringify(buildRegistration(config)), { mode: 0o600 })
  if (!config.appservice.double_puppet.as_token) return
  const dpHeader = '# Generated by `npx relay-bridge generate-registration`: double puppeting (docs/operators.md §5). List it in\n' +
    '# app_service_config_files beside the bridge\'s own registration and restart the homeserver. It lets the bridge\n' +
    '# post as any local user: keep it private.\n'
  await writeFile(doublePuppetPath(path), dpHeader + stringify(buildDoublePuppetRegistration(config)), { mode: 0o600 })
}
