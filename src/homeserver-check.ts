// At start: ask the homeserver who the bridge is, register the bot, give it its name, and ping the
// homeserver both ways. Every failure is told as a sentence that says which of these things is wrong.
import type { Logger } from 'pino'
import { CLI } from './cli-name.ts'
import type { Config } from './config.ts'
import type { HomeserverApi } from './matrix/client.ts'
import { AppservicePingError, MatrixApiError, MatrixConnectionError } from './matrix/client-errors.ts'

export type CheckResult = 'ok' | 'unreachable' | 'token_rejected' | 'hs_cannot_reach_bridge'

/** homeserver.domain is not the name the homeserver gives its own users: every id the bridge makes is wrong,
 * and no retry mends that. */
export class DomainMismatchError extends Error {
  constructor(configured: string, actual: string, address: string) {
    super(`homeserver.domain is ${configured}, but the homeserver at ${address} names its users @…:${actual}. ` +
      `Set homeserver.domain to ${actual} (or homeserver.address to the homeserver of ${configured}), ` +
      `then run \`${CLI} generate-registration\` again and give the new registration to the homeserver.`)
    this.name = 'DomainMismatchError'
  }
}

/** The server name in a user id: everything after the first colon. */
const serverOf = (userId: string): string => userId.slice(userId.indexOf(':') + 1)

export function explain(err: unknown, config: Config): { result: CheckResult; sentence: string } {
  if (err instanceof MatrixConnectionError) {
    return {
      result: 'unreachable',
      sentence: `Cannot reach the homeserver at ${config.homeserver.address} (${err.code ?? err.message}). Is homeserver.address right, and is the homeserver running?`,
    }
  }
  if (err instanceof MatrixApiError && (err.errcode === 'M_UNKNOWN_TOKEN' || err.errcode === 'M_MISSING_TOKEN' || err.status === 401)) {
    return {
      result: 'token_rejected',
      sentence: 'The homeserver rejected the bridge\'s as_token: the registration file it loaded does not match this config. ' +
        `Run \`${CLI} generate-registration\`, give registration.yaml to the homeserver and restart it.`,
    }
  }
  return { result: 'unreachable', sentence: `The homeserver answered with an error: ${(err as Error).message}.` }
}

/** Throws DomainMismatchError (not logged: the caller says it once); every other failure is logged and returned. */
export async function checkHomeserver(api: HomeserverApi, config: Config, log: Logger): Promise<CheckResult> {
  try {
    // The appservice's own user, as the homeserver names it: its server name is what homeserver.domain must be.
    const { userId } = await api.whoami()
    if (serverOf(userId) !== config.homeserver.domain) {
      throw new DomainMismatchError(config.homeserver.domain, serverOf(userId), config.homeserver.address)
    }
    await api.registerUser(config.appservice.bot.username)
    const bot = `@${config.appservice.bot.username}:${config.homeserver.domain}`
    const profile = await api.getProfile(bot)
    if (profile?.displayName !== config.appservice.bot.displayname) await api.setDisplayName(bot, config.appservice.bot.displayname)
  } catch (err) {
    if (err instanceof DomainMismatchError) throw err
    const { result, sentence } = explain(err, config)
    log.error({ check: result }, sentence)
    return result
  }
  try {
    const ping = await api.pingAppservice(config.appservice.id, `relay-bridge-start-${Date.now()}`)
    if (ping === 'unsupported') log.info('The homeserver does not support the appservice ping (spec v1.7); skipped that check.')
    else log.info({ durationMs: ping.durationMs }, 'The homeserver reaches the bridge')
  } catch (err) {
    if (err instanceof AppservicePingError) {
      log.error({ check: 'hs_cannot_reach_bridge', failure: err.failure }, `The homeserver cannot deliver to the bridge at ${config.appservice.address}: ${err.hint}`)
      return 'hs_cannot_reach_bridge'
    }
    const { result, sentence } = explain(err, config)
    log.error({ check: result }, sentence)
    return result
  }
  return 'ok'
}
