// `status`: in a room, what the room is linked to; in our direct chat, the bridge as a whole (its services,
// the relay accounts, the messages held), because that is where an operator asks how the bridge is doing.
import { timerLabel } from '../chat-text.ts'
import { NETWORK_LABEL, REMOTE_NETWORKS, type RemoteNetworkId } from '../model.ts'
import { chatOf, groupNameOf, loginOf } from '../portals.ts'
import { cmd, describeState, label, requireLevel, roomCmd, type Ctx } from './context.ts'
import { nextForRoom } from './next.ts'

type Count = { network: string; state: string; n: number }

function queueLine(counts: Count[]): string {
  const name = (n: string) => NETWORK_LABEL[n as 'matrix'] ?? n
  const queued = counts.filter(c => c.state !== 'failed').map(c => `${c.n} ${c.state} for ${name(c.network)}`)
  const failed = counts.filter(c => c.state === 'failed').map(c => `${c.n} for ${name(c.network)}`)
  return `${queued.length ? queued.join(', ') : 'none waiting'}${failed.length ? `; failed in the last week: ${failed.join(', ')}` : ''}`
}

export async function status(ctx: Ctx): Promise<void> {
  requireLevel(ctx, 'relay')
  if (ctx.isDirect && !ctx.portal) return bridgeStatus(ctx)
  const { portal } = ctx
  if (!portal) {
    return ctx.reply(`This room is not bridged. ${(await nextForRoom(ctx, undefined)) ?? `${roomCmd(ctx, 'link signal <group>')} bridges it.`}`)
  }
  const encryption = await ctx.env.rooms.encryptionStatus(ctx.roomId)
  const lines = [`This room is bridged${encryption.encrypted && !encryption.readable ? ' but encrypted, which the bridge cannot read with its encryption off' : ''}:`]
  for (const network of REMOTE_NETWORKS) {
    const group = chatOf(portal, network)
    const name = groupNameOf(portal, network)
    const loginId = loginOf(portal, network)
    const login = loginId ? await ctx.env.logins.get(loginId) : undefined
    // The group's name is what people know it by; its id only when the name was never seen.
    lines.push(`• ${label(network)}: ${group ? (name ? `“${name}”` : `group \`${group}\``) : 'not linked'}; ` +
      (login ? `relayed by ${login.id}, ${describeState(login)}` : 'no relay set'))
  }
  lines.push(`• Disappearing messages: ${(await Promise.all(REMOTE_NETWORKS.filter(n => chatOf(portal, n)).map(async n => `${label(n)} ${await disappearing(ctx, n)}`))).join(', ') || 'no group linked'}`)
  lines.push(`• Encryption: ${encryption.text}`)
  lines.push(`• Deliveries: ${queueLine(await ctx.env.outbox.counts(portal.id))}`)
  lines.push((await nextForRoom(ctx, portal)) ?? 'Nothing to do: messages flow between this room and its groups.')
  await ctx.reply(lines.join('\n'))
}

async function bridgeStatus(ctx: Ctx): Promise<void> {
  const { env } = ctx
  const services = await env.services()
  const lines = ['The bridge:', ...services.map(s => `• ${s.label}: ${s.text}`)]
  const all = await env.logins.list()
  const visible = ctx.level === 'admin' ? all : all.filter(l => l.ownerMxid === ctx.sender)
  lines.push(visible.length
    ? `Relay accounts:\n${visible.map(l => `• ${l.id} — ${label(l.network)} ${l.address} — ${describeState(l)}`).join('\n')}`
    : 'Relay accounts: none linked yet.')
  lines.push(`Messages: ${queueLine(await env.outbox.counts())}.`)
  const portals = env.portals.all().filter(p => p.signalGroup || p.whatsappGroup)
  lines.push(`Rooms bridged: ${portals.length}.`)
  const broken = services.find(s => !s.ok)
  const loggedOut = visible.find(l => l.state === 'logged_out')
  const networks = REMOTE_NETWORKS.filter(n => env.networks.has(n))
  const missing = networks.find(n => !all.some(l => l.network === n))
  lines.push(
    broken ? `Next: fix the ${broken.label} connection (above); the bridge notices by itself when it is back.`
    : missing ? `Next: link a ${label(missing)} relay account with ${cmd(ctx, `login ${missing}`)}.`
    : loggedOut ? `Next: link ${loggedOut.id} again with ${cmd(ctx, `login ${loggedOut.network}`)} from the same phone number.`
    : portals.length === 0 ? `Next: invite me to a Matrix room and type ${roomCmd(ctx, `link ${networks[0] ?? 'signal'} <group id or invite link>`)} there.`
    : `Nothing to do. ${roomCmd(ctx, 'status')} in a bridged room shows that room.`,
  )
  await ctx.reply(lines.join('\n'))
}

/** A group's disappearing-message timer as its relay account sees it now ("off", "1 week", "unknown"). */
async function disappearing(ctx: Ctx, network: RemoteNetworkId): Promise<string> {
  const portal = ctx.portal!
  const loginId = loginOf(portal, network)
  const login = loginId ? await ctx.env.logins.get(loginId) : undefined
  const adapter = ctx.env.networks.get(network)
  const group = login && adapter ? (await adapter.listGroups(login).catch(() => [])).find(g => g.id === chatOf(portal, network)) : undefined
  return group?.disappearingSeconds === undefined ? 'unknown' : timerLabel(group.disappearingSeconds)
}

