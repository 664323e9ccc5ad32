// Linking relay accounts: login, logins, logout. A QR code or pairing code is a credential in flight, so
// logins always happen in the direct chat with the bot.
import { UserError } from '../errors.ts'
import { adapterFor, linkAccount, unlinkAccount } from '../linking.ts'
import type { LoginUi } from '../network.ts'
import { cmd, describeState, label, parseNetwork, pickLogin, requireLevel, type Ctx } from './context.ts'
import { nextAfterLogin } from './next.ts'

/** Shows login progress in the direct chat; a rotating QR code replaces its previous image. */
function chatUi(ctx: Ctx, roomId: string): LoginUi {
  const { rooms, qrPng } = ctx.env
  let qrEvent: string | undefined
  return {
    async showQr(data, caption) {
      const png = await qrPng(data)
      const first = qrEvent === undefined
      qrEvent = first ? await rooms.image(roomId, png, caption) : (await rooms.image(roomId, png, caption, qrEvent), qrEvent)
      // Someone reading this on the phone itself cannot scan it: give the code as text too.
      if (first && data.startsWith('sgnl://')) await rooms.notice(roomId, `The same code as a link, in case you cannot scan this screen (for example to show it as a QR code elsewhere): ${data}`)
    },
    async showCode(code, caption) {
      await rooms.notice(roomId, `${caption}\n\n${code}`)
    },
    async say(text) {
      await rooms.notice(roomId, text)
    },
  }
}

export async function login(ctx: Ctx): Promise<void> {
  requireLevel(ctx, 'user')
  const network = parseNetwork(ctx, ctx.args[0], 'login whatsapp')
  // People type numbers with spaces (`+1 555 010 0000`): everything after the network is the number.
  const phone = ctx.args.length > 1 ? ctx.args.slice(1).join(' ') : undefined
  if (phone !== undefined && (network !== 'whatsapp' || !/^\+?[0-9 ()-]{6,20}$/.test(phone))) {
    throw new UserError(network === 'whatsapp'
      ? `A pairing code needs the phone number in international form, e.g. ${cmd(ctx, 'login whatsapp +15550100042')}.`
      : `Signal links only by QR code: run ${cmd(ctx, 'login signal')} with no number.`)
  }
  adapterFor(ctx.env, network)
  const { rooms, log } = ctx.env
  const dm = ctx.isDirect ? ctx.roomId : await rooms.directRoom(ctx.sender)
  if (!ctx.isDirect) await ctx.reply(`I sent you a direct message to continue: a login code is a credential and does not belong in a shared room.`)
  const ui = chatUi(ctx, dm)
  // The answer in the direct chat is read there: commands named in it need no prefix.
  const here: Ctx = { ...ctx, roomId: dm, isDirect: true }
  // The login waits for a person to scan a code: run it in the background, not in the command queue.
  void linkAccount(ctx.env, network, { ownerMxid: ctx.sender, ...(phone ? { phoneNumber: phone.replace(/[^0-9]/g, '') } : {}) }, ui)
    .then(async l => {
      // One notice with one next step: the adapters report progress before this, never a next step of their own.
      // (linkAccount has released what was held for the network.)
      await ui.say(`Linked! The ${label(network)} account is now login ${l.id}. ${await nextAfterLogin(here, network, l.id)}`)
    })
    .catch(async (err: unknown) => {
      const text = err instanceof UserError ? err.message : `The login failed: ${(err as Error).message}. Try ${cmd(here, `login ${network}`)} again.`
      // The same sentence the person reads, so an operator reading the log knows what happened and what to do.
      log.warn({ network }, `A ${label(network)} login failed: ${text}`)
      await ui.say(text).catch(() => {})
    })
}

export async function logins(ctx: Ctx): Promise<void> {
  requireLevel(ctx, 'user')
  const all = await ctx.env.logins.list()
  const mine = ctx.level === 'admin' ? all : all.filter(l => l.ownerMxid === ctx.sender)
  if (mine.length === 0) return ctx.reply(`No relay accounts are linked yet. Link one with ${cmd(ctx, 'login signal')} or ${cmd(ctx, 'login whatsapp')}.`)
  // Numbers only in the direct chat: a shared room is no place for them.
  const lines = mine.map(l => `• ${l.id} — ${label(l.network)}${ctx.isDirect ? ` ${l.address}` : ''} — ${describeState(l)}${l.ownerMxid !== ctx.sender ? ` — owner ${l.ownerMxid}` : ''}`)
  const out = mine.find(l => l.state === 'logged_out')
  const next = out
    ? `Link ${out.id} again with ${cmd(ctx, `login ${out.network}`)} from the same phone number.`
    : `${cmd(ctx, 'status')} shows how the bridge is doing.`
  await ctx.reply(`Relay accounts:\n${lines.join('\n')}\n${next}`)
}

export async function logout(ctx: Ctx): Promise<void> {
  requireLevel(ctx, 'user')
  const id = ctx.args[0]
  if (!id) throw new UserError(`Say which login: ${cmd(ctx, 'logout <login>')}. ${cmd(ctx, 'logins')} lists them.`)
  const found = await ctx.env.logins.get(id)
  if (!found) throw new UserError(`There is no login “${id}”. ${cmd(ctx, 'logins')} lists them.`)
  const l = await pickLogin(ctx, found.network, id)
  await unlinkAccount(ctx.env, l)
  await ctx.reply(`Logged out ${l.id}. Rooms it relayed keep their links; their ${label(l.network)} messages wait until you link an account again (${cmd(ctx, `login ${l.network}`)}).`)
}
