// What every command handler gets, and the permission rules they share.
import type { Logger } from 'pino'
import { UserError } from '../errors.ts'
import type { LoginMedia } from '../login-media.ts'
import type { SqlLoginStore } from '../logins.ts'
import { NETWORK_LABEL, type RemoteNetworkId } from '../model.ts'
import type { Login, RemoteNetwork, ServiceStatus } from '../network.ts'
import type { GroupState } from '../group-state.ts'
import type { Members } from '../members.ts'
import type { Outbox } from '../outbox.ts'
import { loginOf, type Portal, type PortalStore } from '../portals.ts'
import type { MatrixRooms } from '../rooms.ts'
import type { ConsoleLinks } from './console.ts'

export type Level = 'none' | 'relay' | 'user' | 'admin'
const RANK: Record<Level, number> = { none: 0, relay: 1, user: 2, admin: 3 }

export interface CommandEnv {
  prefix: string
  permissions: Record<string, 'relay' | 'user' | 'admin'>
  portals: PortalStore
  logins: SqlLoginStore
  networks: Map<RemoteNetworkId, RemoteNetwork>
  rooms: MatrixRooms
  outbox: Outbox
  groupState: GroupState
  loginMedia: LoginMedia
  members: Members
  log: Logger
  /** Renders a QR code as a PNG. */
  qrPng: (data: string) => Promise<Buffer>
  /** The services the bridge depends on, for the bridge-wide status: the homeserver, then each network's. */
  services: () => Promise<ServiceStatus[]>
  /** The operator console's sign-in links, when the console is enabled. */
  console?: ConsoleLinks
}

export interface CommandRequest {
  roomId: string
  sender: string
  /** The direct chat between the sender and the bot (no prefix needed there). */
  isDirect: boolean
  args: string[]
}

export interface Ctx extends CommandRequest {
  env: CommandEnv
  level: Level
  portal: Portal | undefined
  reply(text: string): Promise<void>
}

/** bridge.permissions: an exact user id wins over a server name, which wins over "*". */
export function levelOf(mxid: string, permissions: Record<string, string>): Level {
  return ruleOf(mxid, permissions).level
}

/** The level and the entry of bridge.permissions that gave it (undefined when none matched), for the log. */
export function ruleOf(mxid: string, permissions: Record<string, string>): { level: Level; rule: string | undefined } {
  const server = mxid.slice(mxid.indexOf(':') + 1)
  const rule = [mxid, server, '*'].find(key => Object.hasOwn(permissions, key))
  const level = rule === undefined ? undefined : permissions[rule]
  return { level: level === 'relay' || level === 'user' || level === 'admin' ? level : 'none', rule }
}

export function requireLevel(ctx: Ctx, needed: Level): void {
  if (RANK[ctx.level] >= RANK[needed]) return
  throw new UserError(needed === 'admin'
    ? 'Only bridge admins can do that. Ask the operator of this bridge.'
    : 'You are not allowed to manage this bridge. Ask the operator to give you the "user" permission in bridge.permissions.')
}

/** Commands that change what a room is linked to also need power in that room. */
export async function requireRoomPower(ctx: Ctx): Promise<void> {
  if (ctx.isDirect) throw new UserError(`Run this in the room you want to bridge, not in our direct chat.`)
  if (ctx.level === 'admin') return
  const { user, stateDefault } = await ctx.env.rooms.powerLevels(ctx.roomId, ctx.sender)
  if (user < stateDefault) {
    throw new UserError(`You need power level ${stateDefault} in this room to change its bridge (you have ${user}). Ask a room admin.`)
  }
}

export function parseNetwork(ctx: Ctx, arg: string | undefined, usage: string): RemoteNetworkId {
  const n = arg?.toLowerCase()
  if (n === 'signal' || n === 'whatsapp') return n
  throw new UserError(arg ? `“${arg}” is not a network I know. Say signal or whatsapp, e.g. ${cmd(ctx, usage)}.` : `Say which network, e.g. ${cmd(ctx, usage)}.`)
}

export function networkOf(ctx: Ctx, network: RemoteNetworkId): RemoteNetwork {
  const n = ctx.env.networks.get(network)
  if (!n) throw new UserError(`${label(network)} is not enabled on this bridge.`)
  return n
}

export const label = (n: RemoteNetworkId): string => NETWORK_LABEL[n]

/** A command as it must be typed where this answer is read: with the prefix in a room, bare in our direct
 * chat. A command quoted without its prefix in a room would be ignored if typed as quoted. */
export function cmd(ctx: Pick<Ctx, 'isDirect' | 'env'>, words: string): string {
  return `\`${ctx.isDirect ? '' : `${ctx.env.prefix} `}${words}\``
}

/** A command that only works in a room (linking), always with its prefix. */
export function roomCmd(ctx: Pick<Ctx, 'env'>, words: string): string {
  return `\`${ctx.env.prefix} ${words}\``
}

/**
 * Which login acts for a command: the one named, else the room's relay on that network, else the
 * sender's own, else (for admins) any. With `relayOnly` (everything that joins, lists or relays groups), only
 * relay accounts: a personal account speaks only for its owner and never shows what else it is in.
 */
export async function pickLogin(ctx: Ctx, network: RemoteNetworkId, named?: string, opts: { relayOnly?: boolean } = {}): Promise<Login> {
  const { logins } = ctx.env
  const all = await logins.list(network)
  if (named) {
    const login = all.find(l => l.id === named)
    if (!login) throw new UserError(`There is no ${label(network)} login “${named}”. ${cmd(ctx, 'logins')} lists them.`)
    if (login.ownerMxid !== ctx.sender && ctx.level !== 'admin') throw new UserError(`The login ${named} belongs to someone else; only they or an admin can use it.`)
    if (opts.relayOnly && login.kind !== 'relay') throw new UserError(notRelay(ctx, login))
    return login
  }
  const usable = opts.relayOnly ? all.filter(l => l.kind === 'relay') : all
  const relay = ctx.portal && loginOf(ctx.portal, network)
  const choice = usable.find(l => l.id === relay) ?? usable.find(l => l.ownerMxid === ctx.sender) ?? (ctx.level === 'admin' ? usable[0] : undefined)
  if (!choice) {
    throw new UserError(opts.relayOnly
      ? `You have no ${label(network)} relay account yet. Link a spare number with ${cmd(ctx, `login ${network} relay`)}.`
      : `You have no ${label(network)} login yet. Link one with ${cmd(ctx, `login ${network}`)}.`)
  }
  return choice
}

const notRelay = (ctx: Ctx, login: Login): string =>
  `${login.id} is a personal account: it speaks only for its owner, so it cannot relay a room or list its groups. Link a spare number with ${cmd(ctx, `login ${login.network} relay`)} for that.`

/** "relay account" or "personal account", as `logins` and the login messages say it. */
export const kindLabel = (login: Pick<Login, 'kind'>): string => `${login.kind} account`

export function describeState(login: Login): string {
  const state = { connected: 'connected', connecting: 'connecting', disconnected: 'disconnected', logged_out: 'logged out' }[login.state]
  return login.stateMessage ? `${state} (${login.stateMessage})` : state
}

