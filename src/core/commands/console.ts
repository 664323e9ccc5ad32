// `console`: a one-time sign-in link to the operator console, always in the direct chat (a link that signs
// someone in is a credential, like a login code).
import { UserError } from '../errors.ts'
import { requireLevel, type Ctx } from './context.ts'

export interface ConsoleLinks {
  signInLink(mxid: string): Promise<string>
  readonly linkMinutes: number
}

export async function consoleLink(ctx: Ctx): Promise<void> {
  requireLevel(ctx, 'user')
  const links = ctx.env.console
  if (!links) throw new UserError('The operator console is not enabled on this bridge. Its operator can turn it on with `console.enabled` in the configuration.')
  const link = await links.signInLink(ctx.sender)
  const dm = ctx.isDirect ? ctx.roomId : await ctx.env.rooms.directRoom(ctx.sender)
  if (!ctx.isDirect) await ctx.reply('I sent you a sign-in link in our direct chat: a link that signs you in does not belong in a shared room.')
  await ctx.env.rooms.notice(dm, `Your sign-in link to the relay-bridge console. It works once, in one browser, for the next ${links.linkMinutes} minutes; do not share it, whoever opens it first is signed in as you:\n${link}`)
}
