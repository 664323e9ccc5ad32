// The slice of Baileys' socket the adapter uses, the factory seam that builds it, the group-metadata
// cache, and the media download seam. Everything else in src/whatsapp talks to WaPort, never to Baileys'
// socket directly, so tests inject a fake and an upstream API change shows up here at compile time.
import { Boom } from '@hapi/boom'
import makeWASocket, {
  Browsers,
  downloadMediaMessage,
  type AuthenticationState,
  type BaileysEventEmitter,
  type CacheStore,
  type GroupMetadata,
  type WAMessage,
  type WAMessageKey,
  type WASocket,
  type proto,
} from '@whiskeysockets/baileys'
import type { Logger } from 'pino'
import type { WebSocket } from 'ws'

export type WaPort = Pick<
  WASocket,
  | 'sendMessage'
  | 'relayMessage'
  | 'groupMetadata'
  | 'groupFetchAllParticipating'
  | 'groupCreate'
  | 'groupInviteCode'
  | 'groupAcceptInvite'
  | 'groupUpdateSubject'
  | 'groupUpdateDescription'
  | 'groupToggleEphemeral'
  | 'updateProfilePicture'
  | 'removeProfilePicture'
  | 'profilePictureUrl'
  | 'readMessages'
  | 'sendPresenceUpdate'
  | 'presenceSubscribe'
  | 'requestPairingCode'
  | 'updateMediaMessage'
  | 'logout'
  | 'end'
  | 'user'
  | 'ws'
> & { ev: BaileysEventEmitter }

/** Compile-time proof that the real socket fits the slice: this fails to compile if Baileys drifts. */
export const realSocketFits = (s: WASocket): WaPort => s

export interface WaSocketOptions {
  logger: Logger
  /** True for chats whose traffic should not even be decrypted. */
  shouldIgnoreJid: (jid: string) => boolean
  getMessage: (key: WAMessageKey) => Promise<proto.IMessage | undefined>
  cachedGroupMetadata: (jid: string) => Promise<GroupMetadata | undefined>
  msgRetryCounterCache: CacheStore
  /** How often Baileys pings WhatsApp; it ends a connection it has read nothing from for this plus 5 s
   * (rc14 Socket/socket.js startKeepAliveRequest). Baileys' default (30 s) when not given. */
  keepAliveIntervalMs?: number
}

/** Baileys' default keepalive interval (rc14 Defaults: keepAliveIntervalMs). */
export const KEEPALIVE_MS = 30_000

/**
 * The `ws` WebSocket under Baileys' WebSocketClient (null before it connects and after it closes). rc14 keeps it in
 * a protected field and offers no pause of its own; pausing it stops reading the TCP socket, so that WhatsApp's
 * server holds what it has not sent yet (ws: `pause()` stops the net socket; `resume()` reads it again).
 */
export const transportOf = (sock: Pick<WaPort, 'ws'>): WebSocket | null => sock.ws['socket']

export type WaSocketFactory = (auth: AuthenticationState, opts: WaSocketOptions) => WaPort

/** Baileys warns at every socket it makes that history sync is off ("⚠️ DANGER: DISABLING ALL SYNC …"). §1
 * turns it off on purpose, so that line is said at debug; every other warning stays a warning. */
export function quietHistoryWarning(log: Logger): Logger {
  return new Proxy(log, {
    get(target, prop) {
      if (prop === 'warn') {
        return (obj: unknown, ...rest: unknown[]) => typeof obj === 'string' && obj.includes('DISABLING ALL SYNC')
          ? target.debug(obj)
          : (target.warn as (...args: unknown[]) => void)(obj, ...rest)
      }
      if (prop === 'child') return (...args: Parameters<Logger['child']>) => quietHistoryWarning(target.child(...args) as unknown as Logger)
      const value: unknown = Reflect.get(target, prop, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}

/** The production factory, connecting to `url` instead of WhatsApp when given (a test's closed port). */
export const baileysSocketFactoryAt = (url?: string): WaSocketFactory => (auth, opts) =>
  makeWASocket({
    auth,
    ...(url ? { waWebSocketUrl: url } : {}),
    logger: quietHistoryWarning(opts.logger.child({ module: 'baileys' }, { level: 'warn' })),
    browser: Browsers.ubuntu('Relay bridge'),
    markOnlineOnConnect: false,
    syncFullHistory: false,
    shouldSyncHistoryMessage: () => false,
    shouldIgnoreJid: opts.shouldIgnoreJid,
    getMessage: opts.getMessage,
    cachedGroupMetadata: opts.cachedGroupMetadata,
    msgRetryCounterCache: opts.msgRetryCounterCache,
    ...(opts.keepAliveIntervalMs ? { keepAliveIntervalMs: opts.keepAliveIntervalMs } : {}),
  })

/** Production factory: the settings of reference §1. */
export const baileysSocketFactory: WaSocketFactory = baileysSocketFactoryAt()

/**
 * Which chats Baileys should not decrypt. Groups are never ignored, bridged or not: an unbridged group
 * must still produce its first message (the core may offer to create a portal for it) and its sender keys
 * stay fresh for a later link. One-to-one chats with other people, broadcasts and newsletters are
 * ignored; the account's own chat is not, because the phone's app-state keys and peer answers arrive there.
 */
export function ignoreJid(ownUsers: () => string[]): (jid: string) => boolean {
  return jid => {
    if (jid.endsWith('@g.us')) return false
    if (jid.endsWith('@broadcast') || jid.endsWith('@newsletter')) return true
    const user = jid.split('@', 1)[0]?.split(':', 1)[0]
    return !ownUsers().includes(user ?? '')
  }
}

/** A small Map-backed CacheStore with expiry (Baileys' msgRetryCounterCache and friends). */
export class TtlCache implements CacheStore {
  readonly #entries = new Map<string, { value: unknown; until: number }>()
  readonly #ttlMs: number
  readonly #max: number
  constructor(ttlMs: number, max = 10_000) {
    this.#ttlMs = ttlMs
    this.#max = max
  }
  get<T>(key: string): T | undefined {
    const e = this.#entries.get(key)
    if (!e) return undefined
    if (e.until < Date.now()) {
      this.#entries.delete(key)
      return undefined
    }
    return e.value as T
  }
  set<T>(key: string, value: T): void {
    if (this.#entries.size >= this.#max) {
      const oldest = this.#entries.keys().next().value
      if (oldest !== undefined) this.#entries.delete(oldest)
    }
    this.#entries.set(key, { value, until: Date.now() + this.#ttlMs })
  }
  del(key: string): void {
    this.#entries.delete(key)
  }
  flushAll(): void {
    this.#entries.clear()
  }
}

/**
 * Group metadata per group JID. Without it every group send asks the server and WhatsApp answers
 * rate-overlimit (reference §9). Group events refresh it; the TTL is only a backstop.
 */
export class GroupCache {
  readonly #cache: TtlCache
  constructor(ttlMs = 60 * 60_000) {
    this.#cache = new TtlCache(ttlMs, 1000)
  }
  get(jid: string): GroupMetadata | undefined {
    return this.#cache.get<GroupMetadata>(jid)
  }
  set(meta: GroupMetadata): void {
    this.#cache.set(meta.id, meta)
  }
  forget(jid: string): void {
    this.#cache.del(jid)
  }
  /** Cached metadata, else one fetch through the socket (cached afterwards). */
  async load(sock: Pick<WaPort, 'groupMetadata'>, jid: string): Promise<GroupMetadata> {
    const hit = this.get(jid)
    if (hit) return hit
    const meta = await sock.groupMetadata(jid)
    this.set(meta)
    return meta
  }
}

export type MediaDownloader = (msg: WAMessage, sock: Pick<WaPort, 'updateMediaMessage'>) => Promise<Buffer>

/** WhatsApp retires old WhatsApp Web versions; a client on one is refused at connect with 405 (baileys.md §3, §12). */
export const CLIENT_OUTDATED = 405
const OUTDATED = 'it no longer accepts the WhatsApp Web version this relay-bridge speaks. Upgrade relay-bridge (docs/operators.md, "Upgrading")'
export const OUTDATED_SENTENCE = `WhatsApp refused to connect the bridge (code 405): ${OUTDATED} and restart it; the relay account stays linked.`
export const OUTDATED_AT_LOGIN = `WhatsApp refused to link the bridge (code 405): ${OUTDATED}, restart it, then type \`!relay login whatsapp\` again.`

/** A Baileys error's status code (Boom, also from Baileys' own copy of @hapi/boom). */
export const statusOf = (err: unknown): number | undefined =>
  err instanceof Boom ? err.output.statusCode : (err as { output?: { statusCode?: number } })?.output?.statusCode

/**
 * downloadMediaMessage with the re-upload retry rc14 never performs itself (reference §13): on 404/410
 * the media has expired on the CDN, so ask the sender's phone to upload it again and try once more.
 */
export const baileysDownloader: MediaDownloader = async (msg, sock) => {
  try {
    return await downloadMediaMessage(msg, 'buffer', {})
  } catch (err) {
    const status = statusOf(err)
    if (status !== 404 && status !== 410) throw err
    const fresh = await sock.updateMediaMessage(msg)
    return downloadMediaMessage(fresh, 'buffer', {})
  }
}
