// The next sensible command, so that every answer leaves people knowing what to type next.
import { REMOTE_NETWORKS } from '../model.ts'
import { chatOf, loginOf, type Portal } from '../portals.ts'
import { cmd, label, roomCmd, type Ctx } from './context.ts'

/** What a bridged (or not yet bridged) room still needs, as one sentence naming the command; undefined when it
 * needs nothing. The networks are taken in order: Signal first, then WhatsApp. */
export async function nextForRoom(ctx: Ctx, portal: Portal | undefined): Promise<string | undefined> {
  for (const network of REMOTE_NETWORKS) {
    if (!ctx.env.networks.has(network)) continue
    const group = portal && chatOf(portal, network)
    const loginId = portal && loginOf(portal, network)
    if (!group) {
      const logins = await ctx.env.logins.list(network)
      if (logins.length === 0) return `Next: link a ${label(network)} relay account with ${cmd(ctx, `login ${network}`)}.`
      return `Next: ${roomCmd(ctx, `link ${network} <group id or invite link>`)} bridges a ${label(network)} group here (${roomCmd(ctx, `groups ${network}`)} lists them, ${roomCmd(ctx, `create ${network}`)} makes one).`
    }
    if (!loginId) return `Next: ${roomCmd(ctx, `set ${network}`)} chooses the account that relays ${label(network)} here.`
    const login = await ctx.env.logins.get(loginId)
    if (!login || login.state === 'logged_out') {
      return `Next: the owner of ${loginId} links it again with ${cmd(ctx, `login ${network}`)}; its messages wait until then.`
    }
  }
  return undefined
}

/** After linking an account: where it is wanted next. */
export async function nextAfterLogin(ctx: Ctx, network: (typeof REMOTE_NETWORKS)[number], loginId: string): Promise<string> {
  const relays = ctx.env.portals.all().filter(p => loginOf(p, network) === loginId && chatOf(p, network)).length
  if (relays > 0) return `It relays ${relays === 1 ? 'its room' : `its ${relays} rooms`} again; messages held meanwhile go out now.`
  return `Next: add it to your ${label(network)} group, invite me to the Matrix room for it, and type ${roomCmd(ctx, `link ${network} <group id or invite link>`)} there (${roomCmd(ctx, `groups ${network}`)} lists its groups).`
}
