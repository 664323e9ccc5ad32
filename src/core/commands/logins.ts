// Linking accounts: login, logins, logout. A QR code or pairing code is a credential in flight, so logins always
// happen in the direct chat with the bot. An account is linked as a relay (a spare number that speaks for others)
// or as its owner's personal account (they post as themselves through it).
import { UserError } from '../errors.ts'
import { defaultLoginKind } from '../access.ts'
import { adapterFor, linkAccount, unlinkAccount } from '../linking.ts'
import { LOGIN_KINDS, type LoginKind, type LoginUi } from '../network.ts'
import { cmd, describeState, kindLabel, label, parseNetwork, pickLogin, requireLevel, type Ctx } from './context.ts'
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

/**
 * The kind asked for, else the default: bridge admins link relay accounts (the operator's spare numbers), everyone
 * else their own personal account.
 */
function kindOf(ctx: Ctx, word: string | undefined): { kind: LoginKind; given: boolean } {
  const w = word?.toLowerCase()
  if (w && (LOGIN_KINDS as readonly string[]).includes(w)) return { kind: w as LoginKind, given: true }
  return { kind: defaultLoginKind(ctx.level), given: false }
}

export async function login(ctx: Ctx): Promise<void> {
  requireLevel(ctx, 'user')
  const network = parseNetwork(ctx, ctx.args[0], 'login whatsapp')
  const { kind, given } = kindOf(ctx, ctx.args[1])
  // People type numbers with spaces (`+1 555 010 0000`): everything after the network (and kind) is the number.
  const rest = ctx.args.slice(given ? 2 : 1)
  const phone = rest.length > 0 ? rest.join(' ') : undefined
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
  // Before the code: which kind of account this becomes (the one notice after the scan names the next step).
  await ui.say(kind === 'relay'
    ? `Linking a ${label(network)} account as a relay account, which speaks for others in the rooms it relays…`
    : `Linking your own ${label(network)} account as your personal account: in bridged rooms whose group it is in, your messages will go out as you…`)
  // The answer in the direct chat is read there: commands named in it need no prefix.
  const here: Ctx = { ...ctx, roomId: dm, isDirect: true }
  // The login waits for a person to scan a code: run it in the background, not in the command queue.
  void linkAccount(ctx.env, network, { ownerMxid: ctx.sender, kind, ...(phone ? { phoneNumber: phone.replace(/[^0-9]/g, '') } : {}) }, ui)
    .then(async l => {
      // One notice with one next step: the adapters report progress before this, never a next step of their own.
      // (linkAccount has released what was held for the network.)
      await ui.say(`Linked! The ${label(network)} account is now login ${l.id}, a ${kindLabel(l)}. ` + (l.kind === 'relay'
        ? await nextAfterLogin(here, network, l.id)
        : `In bridged rooms whose ${label(network)} group it is in, what you write in Matrix goes out through it as you, and what you type on your phone there shows as you in Matrix.`))
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
  // Only their owners and admins see a login at all.
  const mine = ctx.level === 'admin' ? all : all.filter(l => l.ownerMxid === ctx.sender)
  if (mine.length === 0) return ctx.reply(`No accounts are linked yet. Link your own with ${cmd(ctx, 'login signal')} or ${cmd(ctx, 'login whatsapp')}.`)
  // Numbers only in the direct chat (seen by its owner or an admin): a shared room is no place for them.
  const lines = mine.map(l => `• ${l.id} — ${label(l.network)}${ctx.isDirect ? ` ${l.address}` : ''} — ${kindLabel(l)} — ${describeState(l)}${l.ownerMxid !== ctx.sender ? ` — owner ${l.ownerMxid}` : ''}`)
  const out = mine.find(l => l.state === 'logged_out')
  const next = out
    ? `Link ${out.id} again with ${cmd(ctx, `login ${out.network}`)} from the same phone number.`
    : `${cmd(ctx, 'status')} shows how the bridge is doing.`
  await ctx.reply(`Linked accounts:\n${lines.join('\n')}\n${next}`)
}

export async function logout(ctx: Ctx): Promise<void> {
  requireLevel(ctx, 'user')
  const id = ctx.args[0]
  if (!id) throw new UserError(`Say which login: ${cmd(ctx, 'logout <login>')}. ${cmd(ctx, 'logins')} lists them.`)
  const found = await ctx.env.logins.get(id)
  if (!found) throw new UserError(`There is no login “${id}”. ${cmd(ctx, 'logins')} lists them.`)
  const l = await pickLogin(ctx, found.network, id)
  await unlinkAccount(ctx.env, l)
  await ctx.reply(l.kind === 'relay'
    ? `Logged out ${l.id} and deleted everything the bridge kept of it. Rooms it relayed keep their links; their ${label(l.network)} messages wait until a relay account is set there again (${cmd(ctx, `set ${l.network}`)}).`
    : `Logged out ${l.id} and deleted everything the bridge kept of it. Your messages reach ${label(l.network)} through the rooms' relays again, under your name.`)
}
