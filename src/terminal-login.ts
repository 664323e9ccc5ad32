// `npx relay-bridge login signal|whatsapp`: link a relay account from a terminal, printing the QR code there.
// Only the linking step runs here (no event streams), so a running bridge loses nothing meanwhile; the
// bridge picks the new login up at its next start, or at once when it is linked with `!relay login`.
import QRCode from 'qrcode'
import { CLI } from './cli-name.ts'
import type { Config } from './config.ts'
import { createLogger } from './log.ts'
import { SqlLoginStore } from './core/logins.ts'
import type { Login, LoginUi, NetworkContext } from './core/network.ts'
import type { Db } from './db/types.ts'
import type { WaSocketFactory } from './whatsapp/socket.ts'
import type { Logger } from 'pino'
import { migrate } from './db/migrate.ts'
import { openDatabase } from './db/open.ts'

export function terminalUi(out: NodeJS.WritableStream = process.stdout): LoginUi {
  return {
    async showQr(data, caption) {
      out.write(`\n${await QRCode.toString(data, { type: 'terminal', small: true })}\n${caption}\n`)
      if (data.startsWith('sgnl://')) out.write(`The same code as a link, in case you cannot scan this screen (for example to show it as a QR code elsewhere): ${data}\n`)
    },
    async showCode(code, caption) {
      out.write(`\n${caption}\n\n    ${code}\n\n`)
    },
    async say(text) {
      out.write(`${text}\n`)
    },
    again: network => `${CLI} login ${network}`,
  }
}

export async function terminalLogin(config: Config, network: 'signal' | 'whatsapp', opts: { phone?: string; owner: string }): Promise<void> {
  const { owner } = opts
  const db = await openDatabase(config.database.uri, config.data_dir, sentence => void terminalUi().say(sentence))
  try {
    await migrate(db)
    const logins = new SqlLoginStore(db)
    const ui = terminalUi()
    if (network === 'signal') {
      const { SignalClient } = await import('./signal/client.ts')
      const { linkDevice } = await import('./signal/login.ts')
      const { neutralLabel } = await import('./signal/convert.ts')
      const { number, aci } = await linkDevice(new SignalClient({ daemonUrl: config.signal.daemon_url }), ui)
      const login = await logins.save({
        network: 'signal', kind: 'relay', address: number, personId: aci, displayName: neutralLabel(aci), ownerMxid: owner,
        metadata: { linkedAt: Date.now() }, state: 'disconnected',
      })
      await ui.say(`Linked relay account ${login.id}, owned by ${owner}. Restart the bridge (or it will connect at its next start).`)
    } else {
      const login = await linkWhatsAppHere(config, db, { owner, ...(opts.phone ? { phone: opts.phone } : {}) }, ui)
      await ui.say(`Linked as login ${login.id}, owned by ${owner}. Restart the bridge to start relaying with it.`)
    }
  } finally {
    await db.close()
  }
}

/** Links a WhatsApp account from here. Only linking runs: nothing is received, so the context relays nothing.
 * Baileys logs at warn and above (`log`), beside the QR code. */
export async function linkWhatsAppHere(
  config: Config, db: Db, opts: { owner: string; phone?: string }, ui: LoginUi,
  log: Logger = createLogger('warn'), factory?: WaSocketFactory,
): Promise<Login> {
  const { linkWhatsApp } = await import('./whatsapp/login.ts')
  const { People } = await import('./whatsapp/people.ts')
  const { baileysSocketFactory, TtlCache } = await import('./whatsapp/socket.ts')
  const { Registry } = await import('prom-client')
  const { FileMediaStore } = await import('./core/media.ts')
  const ctx: NetworkContext = {
    log, db, media: new FileMediaStore(config.data_dir), metrics: new Registry(), logins: new SqlLoginStore(db),
    receive: async () => {}, ephemeral: () => {}, wantsEphemeral: { typing: false, receipts: false }, reportState: async () => {}, notify: async () => {},
    notifyChat: async () => {}, isBridgedChat: () => false, permissionsChanged: () => {}, findCopy: async () => undefined, forgetKeptContent: async () => {},
  }
  return linkWhatsApp(
    { ctx, factory: factory ?? baileysSocketFactory, people: new People(db, Date.now), retryCache: new TtlCache(3_600_000), timeoutMs: 180_000 },
    { ownerMxid: opts.owner, kind: 'relay', ...(opts.phone ? { phoneNumber: opts.phone.replace(/[^0-9]/g, '') } : {}) }, ui)
}
