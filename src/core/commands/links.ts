// Linking a room to groups, and choosing who relays: groups, link, create, unlink, set, unset.
import { UserError } from '../errors.ts'
import type { RemoteNetworkId } from '../model.ts'
import type { GroupInfo } from '../network.ts'
import { chatOf, loginOf, type Portal } from '../portals.ts'
import { cmd, label, networkOf, parseNetwork, pickLogin, requireLevel, requireRoomPower, roomCmd, type Ctx } from './context.ts'
import { nextForRoom } from './next.ts'

async function portalHere(ctx: Ctx): Promise<Portal> {
  if (ctx.portal) return ctx.portal
  ctx.portal = await ctx.env.portals.create(ctx.roomId, { creator: ctx.sender })
  return ctx.portal
}

async function refuseUnreadable(ctx: Ctx): Promise<void> {
  // Asked of the room itself, not of the portal's record: a room encrypted before the bot came (or made encrypted by
  // the bridge) has no record of it until someone sends m.room.encryption again.
  if ((await ctx.env.rooms.encryptionStatus(ctx.roomId)).readable) return
  throw new UserError('This room is encrypted, and encryption is off in this bridge\'s configuration (encryption.allow). Ask its operator to turn it on, or create an unencrypted room, invite me there and link it instead.')
}

export async function groups(ctx: Ctx): Promise<void> {
  requireLevel(ctx, 'user')
  const network = parseNetwork(ctx, ctx.args[0], 'groups signal')
  const login = await pickLogin(ctx, network, ctx.args[1], { relayOnly: true })
  const list = await networkOf(ctx, network).listGroups(login)
  if (list.length === 0) {
    return ctx.reply(`The ${label(network)} account ${login.id} is in no groups yet. Add it to a group on the phone, or make one for this room with ${roomCmd(ctx, `create ${network}`)}.`)
  }
  const lines = list.map(g => {
    const linked = ctx.env.portals.find(network, g.id)
    return `• ${g.name || '(no name)'} — ${g.memberCount} members — \`${g.id}\`${linked ? ' (already linked)' : ''}`
  })
  const where = ctx.isDirect ? 'In the Matrix room to bridge, type' : 'Link one here with'
  await ctx.reply(`${label(network)} groups of ${login.id}:\n${lines.join('\n')}\n${where} ${roomCmd(ctx, `link ${network} <id>`)}.`)
}

async function attach(ctx: Ctx, network: RemoteNetworkId, group: GroupInfo, loginId: string): Promise<Portal> {
  const { portals, rooms } = ctx.env
  const other = portals.find(network, group.id)
  const portal = await portalHere(ctx)
  if (other && other.id !== portal.id) {
    throw new UserError(`That ${label(network)} group is already linked to another room (${other.roomId}). Run ${roomCmd(ctx, `unlink ${network}`)} there first.`)
  }
  const current = chatOf(portal, network)
  if (current && current !== group.id) {
    throw new UserError(`This room is already linked to a ${label(network)} group. Run ${roomCmd(ctx, `unlink ${network}`)} first if you want to switch.`)
  }
  const linked = await portals.link(portal, network, group.id, loginId, group.name)
  if (!linked.name && group.name) await portals.setName(linked, group.name)
  // What the group shows now: only later changes of it are news to carry.
  await ctx.env.groupState.seed(linked, network, {
    name: group.name, ...(group.topic !== undefined ? { topic: group.topic } : {}),
    ...(group.disappearingSeconds !== undefined ? { timer: group.disappearingSeconds } : {}),
  })
  // The link stands without the m.bridge marker: a bot invited with power level 0 may not set state.
  await rooms.setBridgeInfo(ctx.roomId, network, { network, id: group.id, name: group.name }, portal.creator ?? ctx.sender)
    .catch((err: unknown) => ctx.env.log.warn({ err: (err as Error).message }, 'Could not mark the room as bridged (m.bridge); the bot may need a higher power level'))
  ctx.portal = portals.get(portal.id)
  // Messages held because the room had no group or relay can go now.
  await ctx.env.outbox.release(network, [group.id])
  // Its people come into the room as their ghosts.
  const login = await ctx.env.logins.get(loginId)
  if (login) await ctx.env.members.bringIn(linked, networkOf(ctx, network), login, group.id)
  return linked
}


export async function link(ctx: Ctx): Promise<void> {
  requireLevel(ctx, 'user')
  const network = parseNetwork(ctx, ctx.args[0], 'link signal <group id or invite link>')
  const target = ctx.args[1]
  if (!target) throw new UserError(`Say which group: ${roomCmd(ctx, `link ${network} <group id or invite link>`)}. ${roomCmd(ctx, `groups ${network}`)} lists the ones I am in.`)
  await requireRoomPower(ctx)
  await refuseUnreadable(ctx)
  const login = await pickLogin(ctx, network, ctx.args[2], { relayOnly: true })
  const group = await networkOf(ctx, network).joinGroup(login, target)
  await attach(ctx, network, group, login.id)
  await ctx.reply(`Linked this room to the ${label(network)} group “${group.name}” (${group.memberCount} members), relayed by ${login.id}. ${await afterLink(ctx)}`)
}

export async function create(ctx: Ctx): Promise<void> {
  requireLevel(ctx, 'user')
  const network = parseNetwork(ctx, ctx.args[0], 'create whatsapp [name]')
  await requireRoomPower(ctx)
  await refuseUnreadable(ctx)
  if (ctx.portal && chatOf(ctx.portal, network)) {
    throw new UserError(`This room is already linked to a ${label(network)} group. Run ${roomCmd(ctx, `unlink ${network}`)} first.`)
  }
  const login = await pickLogin(ctx, network, undefined, { relayOnly: true })
  const name = ctx.args.slice(1).join(' ').trim() || ctx.portal?.name || 'Relay bridge'
  const group = await networkOf(ctx, network).createGroup(login, name)
  await attach(ctx, network, group, login.id)
  await ctx.reply(`Created the ${label(network)} group “${group.name}” and linked it here.` +
    (group.inviteLink ? ` Share this link so people can join: ${group.inviteLink}` : '') + ` ${await afterLink(ctx)}`)
}

export async function unlink(ctx: Ctx): Promise<void> {
  requireLevel(ctx, 'user')
  const network = parseNetwork(ctx, ctx.args[0], 'unlink signal')
  await requireRoomPower(ctx)
  const groupId = ctx.portal && chatOf(ctx.portal, network)
  if (!ctx.portal || !groupId) throw new UserError(`This room is not linked to a ${label(network)} group. ${roomCmd(ctx, 'status')} shows what it is linked to.`)
  ctx.portal = await ctx.env.portals.unlink(ctx.portal, network)
  await ctx.env.members.groupUnlinked(ctx.portal, network)
  await ctx.env.rooms.clearBridgeInfo(ctx.roomId, network, groupId)
    .catch((err: unknown) => ctx.env.log.warn({ err: (err as Error).message }, 'Could not clear the room’s m.bridge marker; the bot may need a higher power level'))
  await ctx.reply(`Unlinked the ${label(network)} group. Link it again any time with ${roomCmd(ctx, `link ${network} ${groupId}`)}.`)
}

export async function set(ctx: Ctx): Promise<void> {
  requireLevel(ctx, 'user')
  const network = parseNetwork(ctx, ctx.args[0], 'set signal [login]')
  await requireRoomPower(ctx)
  const login = await pickLogin(ctx, network, ctx.args[1], { relayOnly: true })
  const portal = await portalHere(ctx)
  ctx.portal = await ctx.env.portals.setRelay(portal, network, login.id)
  const group = chatOf(ctx.portal, network)
  if (group) await ctx.env.outbox.release(network, [group])
  await ctx.reply(`${login.id} now relays this room on ${label(network)}. ${await afterLink(ctx)}`)
}

export async function unset(ctx: Ctx): Promise<void> {
  requireLevel(ctx, 'user')
  const network = parseNetwork(ctx, ctx.args[0], 'unset signal')
  await requireRoomPower(ctx)
  if (!ctx.portal || !loginOf(ctx.portal, network)) {
    throw new UserError(`No ${label(network)} relay is set in this room. ${roomCmd(ctx, `set ${network}`)} sets one.`)
  }
  ctx.portal = await ctx.env.portals.setRelay(ctx.portal, network, null)
  await ctx.reply(`No account relays this room on ${label(network)} now; messages for ${label(network)} wait until you ${roomCmd(ctx, `set ${network}`)} again.`)
}

/** The sentence that ends an answer about a room's links: what it still needs, or that it is complete. */
async function afterLink(ctx: Ctx): Promise<string> {
  return (await nextForRoom(ctx, ctx.portal)) ?? `Messages now flow between this room and its groups; ${cmd(ctx, 'status')} shows how the bridge is doing.`
}
