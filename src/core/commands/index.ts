// `!relay …` commands. They are handled here and never relayed; the bot's replies are notices, which
// never leave Matrix either.
import { UserError } from '../errors.ts'
import { NETWORK_LABEL, REMOTE_NETWORKS } from '../model.ts'
import { chatOf, loginOf } from '../portals.ts'
import { describeState, label, levelOf, requireLevel, type CommandEnv, type CommandRequest, type Ctx } from './context.ts'
import { create, groups, link, set, unlink, unset } from './links.ts'
import { login, logins, logout } from './logins.ts'

type Handler = (ctx: Ctx) => Promise<void>

const COMMANDS: Array<[string, string, Handler]> = [
  ['help', 'this list', help],
  ['status', 'what this room is linked to, who relays it, and what is queued', status],
  ['login signal|whatsapp [+number]', 'link a relay account (QR code, or a WhatsApp pairing code for +number)', login],
  ['logins', 'the relay accounts and their state', logins],
  ['logout <login>', 'unlink a relay account', logout],
  ['groups signal|whatsapp', 'the groups a relay account is in', groups],
  ['link signal|whatsapp <group id or invite link>', 'bridge this room with a group', link],
  ['create signal|whatsapp [name]', 'make a new group for this room and bridge it', create],
  ['unlink signal|whatsapp', 'stop bridging this room with its group', unlink],
  ['set signal|whatsapp [login]', 'choose the account that relays this room', set],
  ['unset signal|whatsapp', 'stop relaying this room on a network', unset],
]

async function help(ctx: Ctx): Promise<void> {
  const p = ctx.isDirect ? '' : `${ctx.env.prefix} `
  await ctx.reply(`Commands${ctx.isDirect ? ' (no prefix needed here)' : ''}:\n` +
    COMMANDS.map(([usage, what]) => `• ${p}${usage} — ${what}`).join('\n'))
}

async function status(ctx: Ctx): Promise<void> {
  requireLevel(ctx, 'relay')
  const { portal } = ctx
  if (!portal) {
    return ctx.reply(ctx.isDirect
      ? 'This is our direct chat. `logins` shows your relay accounts; in a room, `status` shows its bridge.'
      : 'This room is not bridged. `link signal <group>` or `create whatsapp` bridges it.')
  }
  const encryption = await ctx.env.rooms.encryptionStatus(ctx.roomId)
  const lines = [`This room is bridged${encryption.encrypted && !encryption.readable ? ' but encrypted, which the bridge cannot read with its encryption off' : ''}:`]
  for (const network of REMOTE_NETWORKS) {
    const group = chatOf(portal, network)
    const loginId = loginOf(portal, network)
    const login = loginId ? await ctx.env.logins.get(loginId) : undefined
    lines.push(`• ${label(network)}: ${group ? `group \`${group}\`` : 'not linked'}; ` +
      (login ? `relayed by ${login.id}, ${describeState(login)}` : 'no relay set'))
  }
  const counts = await ctx.env.outbox.counts(portal.id)
  const queued = counts.filter(c => c.state !== 'failed').map(c => `${c.n} ${c.state} for ${NETWORK_LABEL[c.network as 'matrix']}`)
  const failed = counts.filter(c => c.state === 'failed').map(c => `${c.n} for ${NETWORK_LABEL[c.network as 'matrix']}`)
  lines.push(`• Encryption: ${encryption.text}`)
  lines.push(`• Deliveries: ${queued.length ? queued.join(', ') : 'none waiting'}${failed.length ? `; failed in the last week: ${failed.join(', ')}` : ''}`)
  await ctx.reply(lines.join('\n'))
}

export class Commands {
  private readonly env: CommandEnv
  constructor(env: CommandEnv) {
    this.env = env
  }

  /** The command words of a message, or undefined when it is no command. */
  parse(body: string, isDirect: boolean): string[] | undefined {
    const text = body.trim()
    const prefix = this.env.prefix
    if (text === prefix || text.startsWith(`${prefix} `)) return text.slice(prefix.length).trim().split(/\s+/).filter(Boolean)
    if (isDirect) return text.split(/\s+/).filter(Boolean)
    return undefined
  }

  async run(req: CommandRequest): Promise<void> {
    const { rooms, log } = this.env
    const reply = async (text: string) => {
      await rooms.notice(req.roomId, text)
    }
    const level = levelOf(req.sender, this.env.permissions)
    if (level === 'none') return reply('You are not allowed to use this bridge. Ask its operator for access.')
    const [word = 'help', ...args] = req.args
    const ctx: Ctx = { ...req, args, env: this.env, level, portal: this.env.portals.byRoom(req.roomId), reply }
    const command = COMMANDS.find(([usage]) => usage.split(' ')[0] === word.toLowerCase())
    try {
      if (!command) throw new UserError(`I don't know the command “${word}”. Type \`${req.isDirect ? '' : `${this.env.prefix} `}help\` to see what I can do.`)
      await command[2](ctx)
    } catch (err) {
      if (err instanceof UserError) return reply(err.message)
      log.error({ err: (err as Error).message, command: word }, 'A command failed')
      await reply(`That did not work: ${(err as Error).message}. Try again, and if it keeps failing, tell the bridge operator.`)
    }
  }
}
