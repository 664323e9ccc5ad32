// `!relay …` commands. They are handled here and never relayed; the bot's replies are notices, which
// never leave Matrix either.
import { UserError } from '../errors.ts'
import { consoleLink } from './console.ts'
import { cmd, levelOf, type CommandEnv, type CommandRequest, type Ctx } from './context.ts'
import { create, groups, link, set, unlink, unset } from './links.ts'
import { login, logins, logout } from './logins.ts'
import { status } from './status.ts'
import { sync } from './sync.ts'

type Handler = (ctx: Ctx) => Promise<void>

const COMMANDS: Array<[string, string, Handler]> = [
  ['help', 'this list', help],
  ['status', 'in a room: what it is linked to, who relays it, what is queued; in our direct chat: the whole bridge', status],
  ['login signal|whatsapp [relay|personal] [+number]', 'link your own account (personal, the default) or, for admins by default, a relay account that speaks for others (QR code, or a WhatsApp pairing code for +number)', login],
  ['logins', 'your linked accounts, their kind and state (admins: everyone\'s)', logins],
  ['logout <login>', 'unlink an account and delete what the bridge kept of it', logout],
  ['groups signal|whatsapp', 'the groups a relay account is in', groups],
  ['link signal|whatsapp <group id or invite link>', 'bridge this room with a group', link],
  ['create signal|whatsapp [name]', 'make a new group for this room and bridge it', create],
  ['unlink signal|whatsapp', 'stop bridging this room with its group', unlink],
  ['set signal|whatsapp [login]', 'choose the account that relays this room', set],
  ['unset signal|whatsapp', 'stop relaying this room on a network', unset],
  ['console', 'a sign-in link to the operator console in your browser', consoleLink],
  ['sync [name|topic|avatar|timer|members to-matrix|to-networks on|off]', 'show or choose what of the room’s name, topic, picture and disappearing-message timer is kept in step with the groups, and whether a join or a leave in one group is told in the other', sync],
]

async function help(ctx: Ctx): Promise<void> {
  const p = ctx.isDirect ? '' : `${ctx.env.prefix} `
  await ctx.reply(`Commands${ctx.isDirect ? ' (no prefix needed here)' : ''}:\n` +
    COMMANDS.map(([usage, what]) => `• ${p}${usage} — ${what}`).join('\n') +
    `\nStart with ${cmd(ctx, 'status')}: it says what to do next.`)
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
      if (!command) throw new UserError(`I don't know the command “${word}”. Type ${cmd(ctx, 'help')} to see what I can do.`)
      await command[2](ctx)
    } catch (err) {
      if (err instanceof UserError) return reply(err.message)
      log.error({ err: (err as Error).message, command: word }, 'A command failed')
      await reply(`That did not work: ${(err as Error).message}. Try again, and if it keeps failing, tell the bridge operator.`)
    }
  }
}
