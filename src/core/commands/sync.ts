// `sync`: which of the room's name, topic and picture are kept in step with the groups, in which direction, and whether
// joins and leaves in one group are told in the other.
import { UserError } from '../errors.ts'
import { SYNC_DIRECTIONS, type SyncDirection } from '../group-state.ts'
import { CHAT_FIELDS, type ChatField } from '../model.ts'
import { requireLevel, requireRoomPower, type Ctx } from './context.ts'

const USAGE = 'sync <name|topic|avatar|timer> <to-matrix|to-networks> <on|off>'
const DIRECTION_LABEL: Record<SyncDirection, string> = { 'to-matrix': 'to Matrix', 'to-networks': 'to the networks' }
const FIELD_LABEL: Record<ChatField, string> = { name: 'name', topic: 'topic (description)', avatar: 'avatar (picture)', timer: 'disappearing-message timer' }

export async function sync(ctx: Ctx): Promise<void> {
  requireLevel(ctx, 'relay')
  const portal = ctx.portal
  if (!portal) throw new UserError('This room is not bridged. `link signal <group>` or `create whatsapp` bridges it.')
  const { groupState, members } = ctx.env
  if (ctx.args.length === 0) {
    const settings = await groupState.settings(portal.id)
    const lines = CHAT_FIELDS.map(f => `• ${FIELD_LABEL[f]}: ${SYNC_DIRECTIONS.map(d => `${DIRECTION_LABEL[d]} ${settings[f][d] ? 'on' : 'off'}`).join(', ')}`)
    // Toward Matrix, members always come: the room shows who is in the groups.
    lines.push(`• members: to Matrix on (always), to the networks ${await members.announced(portal.id) ? 'on' : 'off'}`)
    return ctx.reply(`What this room keeps in step with its groups:\n${lines.join('\n')}\nChange it with \`${USAGE}\` or \`sync members to-networks <on|off>\`.`)
  }
  requireLevel(ctx, 'user')
  const [fieldArg, directionArg, switchArg] = ctx.args.map(a => a.toLowerCase())
  if (fieldArg === 'members') return syncMembers(ctx, portal.id, directionArg, switchArg)
  const field = CHAT_FIELDS.find(f => f === fieldArg)
  const direction = SYNC_DIRECTIONS.find(d => d === directionArg)
  if (!field || !direction || (switchArg !== 'on' && switchArg !== 'off') || ctx.args.length !== 3) {
    throw new UserError(`Say what, which way and whether: \`${USAGE}\`, e.g. \`sync name to-networks on\`.`)
  }
  await requireRoomPower(ctx)
  await groupState.setSetting(portal.id, field, direction, switchArg === 'on')
  await ctx.reply(`The ${FIELD_LABEL[field]} is ${switchArg === 'on' ? 'now' : 'no longer'} carried ${DIRECTION_LABEL[direction]}` +
    (direction === 'to-matrix' ? ' from the groups.' : ' from this room and from each group to the other.'))
}

/** `sync members to-networks on|off`: whether a join or a leave in one group is a line in the other. */
async function syncMembers(ctx: Ctx, portalId: number, direction: string | undefined, switchArg: string | undefined): Promise<void> {
  if (direction === 'to-matrix') {
    throw new UserError('The people of the groups are always in this room, as their ghosts; only `sync members to-networks <on|off>` can be changed.')
  }
  if (direction !== 'to-networks' || (switchArg !== 'on' && switchArg !== 'off') || ctx.args.length !== 3) {
    throw new UserError('Say whether: `sync members to-networks on` (or `off`).')
  }
  await requireRoomPower(ctx)
  await ctx.env.members.setAnnounced(portalId, switchArg === 'on')
  await ctx.reply(switchArg === 'on'
    ? 'Someone joining or leaving one group is now one short line in the other (“Bob (WhatsApp) joined”).'
    : 'Joins and leaves are no longer told in the other group; they still show in this room.')
}
