// A NetworkContext built for WhatsApp adapter tests: events the core would receive are collected, logins
// live in memory, media in a Map. The full bridge wiring is tested elsewhere.
import { Registry } from 'prom-client'
import { vi } from 'vitest'
import type { InboundEvent } from '../../src/core/model.ts'
import type { ConnectionState, LoginUi, NetworkContext } from '../../src/core/network.ts'
import type { Db } from '../../src/db/types.ts'
import { WhatsAppNetwork, type WhatsAppNetworkOptions } from '../../src/whatsapp/network.ts'
import { FakeWhatsApp, GROUP, type FakeWhatsAppOptions } from '../fakes/whatsapp-socket.ts'
import { freshDb, type DbKind } from '../support/db.ts'
import { captureLog } from '../support/log.ts'
import { MemoryLogins, MemoryMedia } from '../support/memory-stores.ts'
import { PATIENCE_MS } from '../support/patience.ts'

export { MemoryLogins, MemoryMedia }

export interface Harness {
  db: Db
  ctx: NetworkContext
  received: InboundEvent[]
  states: Array<{ loginId: string; state: ConnectionState; message?: string }>
  notices: Array<{ loginId: string; text: string }>
  logins: MemoryLogins
  media: MemoryMedia
  bridged: Set<string>
  /** The adapter's log lines (info and above). */
  logs: ReturnType<typeof captureLog>['lines']
  /** The extras the core would have recorded with copies, by chat and remote id (only the origin copies of received
   * messages: a test records a send's result itself with `copies.set`). */
  copies: Map<string, Record<string, unknown>>
}

export const copyKey = (chat: string, id: string): string => `${chat}\u0000${id}`

export function makeContext(db: Db, logins = new MemoryLogins(), media = new MemoryMedia()): Harness {
  const { log, lines } = captureLog()
  const h: Omit<Harness, 'ctx'> = { db, received: [], states: [], notices: [], logins, media, bridged: new Set([GROUP]), logs: lines, copies: new Map() }
  const ctx: NetworkContext = {
    log,
    db,
    media,
    metrics: new Registry(),
    logins,
    receive: async e => {
      h.received.push(e)
      if (e.kind === 'message' && e.extra && !h.copies.has(copyKey(e.chat.id, e.remoteId))) h.copies.set(copyKey(e.chat.id, e.remoteId), e.extra)
    },
    ephemeral: () => {},
    wantsEphemeral: { typing: false, receipts: false },
    reportState: async (loginId, state, message) => {
      h.states.push({ loginId, state, ...(message ? { message } : {}) })
      const l = logins.rows.get(loginId)
      if (l) logins.rows.set(loginId, { ...l, state, stateMessage: message ?? null })
    },
    notify: async (loginId, text) => void h.notices.push({ loginId, text }),
    notifyChat: async (_n, chatId, text) => void h.notices.push({ loginId: chatId, text }),
    isBridgedChat: (_n, chat) => h.bridged.has(chat),
    permissionsChanged: () => {},
    findCopy: async (_n, chat, id) => {
      const extra = h.copies.get(copyKey(chat, id))
      return extra ? { extra } : undefined
    },
    forgetKeptContent: async (_n, which) => {
      for (const [k, extra] of h.copies) if ('login' in which && extra.login === which.login) h.copies.set(k, Object.fromEntries(Object.entries(extra).filter(([f]) => f !== 'message' && f !== 'login')))
    },
  }
  return { ...h, ctx }
}

export function recordingUi() {
  const shown: Array<{ kind: 'qr' | 'code' | 'say'; data: string }> = []
  const ui: LoginUi = {
    showQr: async data => void shown.push({ kind: 'qr', data }),
    showCode: async data => void shown.push({ kind: 'code', data }),
    say: async data => void shown.push({ kind: 'say', data }),
  }
  return { ui, shown }
}

export const FAST: WhatsAppNetworkOptions = { paceMs: [0, 0], reconnect: { initialMs: 5, maxMs: 20 }, phoneCheckMs: 0, loginTimeoutMs: 5000 }

/** A migrated database, a fake WhatsApp, a started network and a login linked by QR. */
/** A started WhatsApp network on a fresh database, with no login yet. */
export async function started(kind: DbKind = 'pglite', opts: WhatsAppNetworkOptions = {}, world: FakeWhatsAppOptions = {}) {
  const db = await freshDb(kind)
  const wa = new FakeWhatsApp(world)
  await wa.start()
  const h = makeContext(db)
  const net = new WhatsAppNetwork({ ...FAST, socketFactory: wa.factory, ...opts })
  await net.start(h.ctx)
  const close = async () => {
    await net.stop()
    await wa.stop()
    await db.close()
  }
  return { ...h, wa, net, close }
}

/** The same with a login linked by QR and connected. */
export async function linked(kind: DbKind = 'pglite', opts: WhatsAppNetworkOptions = {}, world: FakeWhatsAppOptions = {}) {
  const env = await started(kind, opts, world)
  const { ui, shown } = recordingUi()
  const pending = env.net.login({ ownerMxid: '@owner:example.org', kind: 'relay' }, ui)
  await until(() => shown.some(s => s.kind === 'qr'))
  env.wa.scanQr()
  const login = await pending
  await until(() => env.net.state(login.id) === 'connected')
  return { ...env, login, shown }
}

export async function until<T>(f: () => T | undefined | Promise<T | undefined>, what = 'the condition'): Promise<T> {
  return vi.waitFor(async () => {
    const v = await f()
    if (v === undefined || v === false) throw new Error(`Still waiting for ${what}`)
    return v
  }, { timeout: PATIENCE_MS, interval: 5 })
}
