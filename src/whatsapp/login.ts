// Linking a relay account: QR codes (rotating) or a pairing code, then the 515 restart WhatsApp always
// sends after a link, then `open` with the account's identity (reference §7, §12).
import { randomUUID } from 'node:crypto'
import { DisconnectReason, jidNormalizedUser, type BaileysEventMap, type Contact } from '@whiskeysockets/baileys'
import { UserError } from '../core/errors.ts'
import { retryCommand, type Login, type LoginRequest, type LoginUi, type NetworkContext } from '../core/network.ts'
import { loadAuth, moveAuth } from './auth.ts'
import type { People } from './people.ts'
import { CLIENT_OUTDATED, OUTDATED_AT_LOGIN, ignoreJid, statusOf, type TtlCache, type WaPort, type WaSocketFactory } from './socket.ts'

export interface LoginDeps {
  ctx: NetworkContext
  factory: WaSocketFactory
  people: People
  retryCache: TtlCache
  timeoutMs: number
}

export const QR_CAPTION =
  'Scan this code with WhatsApp on the relay phone: Settings → Linked devices → Link a device. The code changes every 20 seconds or so.'
export const CODE_CAPTION =
  'On the relay phone open WhatsApp → Linked devices → Link a device → Link with phone number instead, and type this code.'

/** `shown`: whether a QR code or pairing code reached the person. Baileys reports a WhatsApp it cannot reach
 * (no route, DNS, a connect that times out) with the same 408 as a code that expired unscanned. */
function failure(err: unknown, again: string, shown: boolean): UserError {
  const code = statusOf(err)
  const thenAgain = `then ${again.charAt(0).toLowerCase()}${again.slice(1)}`
  if (code === DisconnectReason.timedOut && !shown) {
    return new UserError(`WhatsApp could not be reached (${(err as Error)?.message ?? 'no answer'}), so no code could be shown. ` +
      `Check that this machine can reach web.whatsapp.com (outgoing HTTPS), ${thenAgain}`)
  }
  if (code === DisconnectReason.timedOut) return new UserError(`The code expired before the phone linked it. ${again}`)
  if (code === DisconnectReason.loggedOut || code === DisconnectReason.forbidden)
    return new UserError(`WhatsApp refused to link the bridge (code ${code}). Check the relay phone's account, ${thenAgain}`)
  if (code === CLIENT_OUTDATED) return new UserError(OUTDATED_AT_LOGIN)
  return new UserError(`Linking WhatsApp failed (${code ?? (err as Error)?.message ?? 'unknown error'}). ${again}`)
}

/** Runs one login to completion; resolves with the saved login (auth rows already under its id). */
export async function linkWhatsApp(deps: LoginDeps, req: LoginRequest, ui: LoginUi): Promise<Login> {
  const { ctx, factory } = deps
  const again = `Type \`${retryCommand(ui, 'whatsapp')}\` to try again.`
  let shown = false
  const pendingId = `pending-${randomUUID()}`
  const auth = await loadAuth(ctx.db, pendingId, ctx.log)
  const digits = req.phoneNumber?.replace(/\D/g, '')
  if (req.phoneNumber !== undefined && !/^\d{7,15}$/.test(digits ?? ''))
    throw new UserError('Give the relay phone number in international form with its country code, for example +15550100042.')
  let sock: WaPort | undefined
  try {
    const user = await new Promise<Contact>((resolve, reject) => {
      const timer = setTimeout(() => reject(new UserError(`Nobody linked the bridge in time. ${again}`)), deps.timeoutMs)
      const fail = (err: unknown) => {
        clearTimeout(timer)
        reject(err)
      }
      req.signal?.addEventListener('abort', () => fail(new UserError(`The login was cancelled. ${again}`)), { once: true })
      let codeShown = false
      const connect = () => {
        const s = factory(auth.state, {
          logger: ctx.log,
          shouldIgnoreJid: ignoreJid(() => []),
          getMessage: async () => undefined,
          cachedGroupMetadata: async () => undefined,
          msgRetryCounterCache: deps.retryCache,
        })
        sock = s
        s.ev.on('creds.update', () => void auth.saveCreds().catch(fail))
        s.ev.on('connection.update', (u: BaileysEventMap['connection.update']) => {
          if (u.qr) {
            if (digits === undefined) {
              shown = true
              void ui.showQr(u.qr, QR_CAPTION).catch(fail)
            } else if (!codeShown) {
              codeShown = true
              void s.requestPairingCode(digits).then(code => {
                shown = true
                return ui.showCode(code, CODE_CAPTION)
              }).catch(err => fail(failure(err, again, shown)))
            }
          }
          if (u.connection === 'open') {
            clearTimeout(timer)
            if (s.user) resolve(s.user)
            else reject(new UserError(`WhatsApp opened the connection without saying which account it is. ${again}`))
          }
          if (u.connection === 'close') {
            const code = statusOf(u.lastDisconnect?.error)
            // Always sent right after a successful link: reconnect with the now registered creds.
            if (code === DisconnectReason.restartRequired) {
              void ui.say('The phone linked the bridge; connecting…').catch(() => {})
              connect()
            } else fail(failure(u.lastDisconnect?.error, again, shown))
          }
        })
      }
      connect()
    })
    // The session reopens the account under its final id; end this socket before moving its rows.
    await sock?.end(undefined).catch(() => {})
    await auth.saveCreds()
    const who = await deps.people.resolve(user.lid, user.id, user.name)
    if (!who) throw new UserError(`WhatsApp gave the bridge an account id it cannot read. ${again}`)
    const address = jidNormalizedUser(user.id)
    const login = await ctx.logins.save({
      network: 'whatsapp',
      kind: req.kind,
      address,
      personId: who.id,
      displayName: user.name || user.notify || 'WhatsApp relay',
      ownerMxid: req.ownerMxid,
      metadata: { linkedAt: Date.now() },
      state: 'connecting',
    })
    await moveAuth(ctx.db, pendingId, login.id)
    return login
  } catch (err) {
    await auth.wipe().catch(() => {})
    throw err instanceof UserError ? err : failure(err, again, shown)
  } finally {
    await sock?.end(undefined).catch(() => {})
  }
}
