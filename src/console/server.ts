// The console's own listener (console.hostname:console.port, loopback by default): the page and its two
// files, the provisioning API v3 of the mautrix bridges, and our own /_relay_bridge/v1 for what v3 has no
// answer to (portals, held messages, health, live updates, the console's sign-in). Described in
// docs/provisioning-api.yaml. Everything here goes through the same core code as the bot's commands.
import { readFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import { mayManageBridge, viewerOf, type Viewer } from '../core/access.ts'
import type { LinkingEnv } from '../core/linking.ts'
import type { PortalStore } from '../core/portals.ts'
import type { MatrixRooms } from '../core/rooms.ts'
import type { Config } from '../config.ts'
import type { Db } from '../db/types.ts'
import { OPENID_PREFIX, OpenIdTokens } from '../provisioning/openid.ts'
import { ProvisioningV3, V3_PREFIX } from '../provisioning/v3.ts'
import { ConsoleAuth, sameSecret, type Session } from './auth.ts'
import type { HealthView } from './health.ts'
import { cookies, HttpError, readJson, requestFacts, SAFE_HEADERS, sendError, sendJson } from './http.ts'
import { LiveUpdates } from './live.ts'
import { ConsoleViews } from './views.ts'

export const V1_PREFIX = '/_relay_bridge/v1'
const COOKIE = 'rb_console'
/** The cookie's name over https: the __Host- prefix makes the browser refuse it unless Secure, Path=/, no Domain. */
const SECURE_COOKIE = '__Host-rb_console'

const STATIC_DIR = new URL('../../console/', import.meta.url)
const STATIC: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/console.js': { file: 'console.js', type: 'text/javascript; charset=utf-8' },
  '/console.css': { file: 'console.css', type: 'text/css; charset=utf-8' },
}
/** Nothing but the page's own files runs or loads; QR codes arrive as data: images. */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

export interface ConsoleOptions extends LinkingEnv {
  config: Config['console']
  permissions: Record<string, string>
  botMxid: string
  domain: string
  /** The homeserver's address: OpenID tokens are checked there unless console.openid_address says otherwise. */
  homeserverUrl: string
  commandPrefix: string
  db: Db
  portals: PortalStore
  rooms: MatrixRooms
  log: Logger
  health: () => Promise<HealthView>
  qrImage: (data: string) => Promise<string>
  now?: () => number
  /** How often open pages are refreshed when nothing said it changed. */
  refreshMs?: number
  waitCapMs?: number
  abandonMs?: number
}

interface Caller {
  viewer: Viewer
  session: Session | undefined
}

export class ConsoleServer {
  readonly auth: ConsoleAuth
  readonly views: ConsoleViews
  readonly v3: ProvisioningV3
  readonly #o: ConsoleOptions
  readonly #openid: OpenIdTokens
  readonly #live: LiveUpdates
  readonly #files = new Map<string, Buffer>()
  readonly #trusted: Set<string>
  #server: Server | undefined
  #health: { at: number; view: Promise<HealthView> } | undefined

  constructor(o: ConsoleOptions) {
    this.#o = o
    this.#trusted = new Set(o.config.trusted_proxies)
    this.auth = new ConsoleAuth({ db: o.db, linkMs: o.config.link_minutes * 60_000, sessionMs: o.config.session_hours * 3_600_000, ...(o.now ? { now: o.now } : {}) })
    this.views = new ConsoleViews({ db: o.db, logins: o.logins, portals: o.portals, networks: o.networks, rooms: o.rooms, log: o.log, ...(o.now ? { now: o.now } : {}) })
    this.#live = new LiveUpdates(v => this.snapshot(v), o.log, o.refreshMs ?? 2_000)
    this.v3 = new ProvisioningV3({
      ...o, onChange: () => this.poke(), waitCapMs: o.waitCapMs ?? 45_000, abandonMs: o.abandonMs ?? 120_000,
    })
    this.#openid = new OpenIdTokens({
      homeserverUrl: o.config.openid_address || o.homeserverUrl, domain: o.domain, ...(o.now ? { now: o.now } : {}),
    })
    for (const { file } of Object.values(STATIC)) this.#files.set(file, readFileSync(new URL(file, STATIC_DIR)))
  }

  /** The address people open: console.public_url, else this listener's. */
  get publicUrl(): string {
    const base = this.#o.config.public_url || `http://${this.#o.config.hostname}:${this.port}/`
    return base.endsWith('/') ? base : `${base}/`
  }

  get port(): number {
    return (this.#server?.address() as { port: number } | null)?.port ?? this.#o.config.port
  }

  async listen(): Promise<number> {
    const server = createServer((req, res) => void this.#handle(req, res))
    this.#server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.#o.config.port, this.#o.config.hostname, () => resolve())
    })
    return this.port
  }

  async close(): Promise<void> {
    this.v3.close()
    this.#live.close()
    const server = this.#server
    if (!server) return
    server.closeAllConnections()
    await new Promise<void>(resolve => server.close(() => resolve()))
  }

  /** A one-time sign-in link for this person. The token is in the fragment: it never reaches a log or a proxy. */
  async signInLink(mxid: string): Promise<string> {
    return `${this.publicUrl}#signin=${await this.auth.mintLink(mxid)}`
  }

  get linkMinutes(): number {
    return this.#o.config.link_minutes
  }

  /** Something changed that open pages show. */
  poke(): void {
    this.#live.poke()
  }

  async snapshot(viewer: Viewer) {
    const [logins, portals, health] = await Promise.all([this.views.logins(viewer), this.views.portals(viewer), this.#healthView()])
    return { logins, portals, health }
  }

  /** Health is asked of the homeserver and the daemon at most every ten seconds, however many pages are open. */
  #healthView(): Promise<HealthView> {
    const now = Date.now()
    if (!this.#health || now - this.#health.at > 10_000) this.#health = { at: now, view: this.#o.health() }
    return this.#health.view
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://console.invalid')
      const path = url.pathname
      if (path.startsWith('/_matrix/provision/')) {
        // As the mautrix bridges do: any origin may call with the shared secret (cookies never cross origins).
        res.setHeader('Access-Control-Allow-Origin', '*')
        res.setHeader('Access-Control-Allow-Headers', 'X-Requested-With, Content-Type, Authorization')
        res.setHeader('Access-Control-Allow-Methods', 'GET, POST, OPTIONS')
        if (req.method === 'OPTIONS') return void res.writeHead(200, SAFE_HEADERS).end()
      }
      if (req.method === 'GET' && STATIC[path === '/index.html' ? '/' : path]) return this.#static(res, STATIC[path === '/index.html' ? '/' : path]!)
      if (path === `${V1_PREFIX}/session`) return await this.#sessionRoute(req, res)
      if (path.startsWith(`${V3_PREFIX}/`)) {
        const caller = await this.#caller(req, url)
        if (await this.v3.handle(req, res, path.slice(V3_PREFIX.length), url, caller.viewer)) return
      } else if (path.startsWith(`${V1_PREFIX}/`)) {
        const caller = await this.#caller(req, url)
        if (await this.#v1(req, res, path.slice(V1_PREFIX.length), caller)) return
      }
      throw new HttpError(404, 'M_UNRECOGNIZED', 'Unrecognized request')
    } catch (err) {
      if (err instanceof HttpError) return sendError(res, err)
      this.#o.log.error({ err: (err as Error).message }, 'A console request failed')
      if (!res.headersSent) sendError(res, new HttpError(500, 'M_UNKNOWN', 'The bridge hit an unexpected error; see its log.'))
      else res.end()
    }
  }

  #static(res: ServerResponse, entry: { file: string; type: string }): void {
    res.writeHead(200, { ...SAFE_HEADERS, 'Content-Type': entry.type, 'Content-Security-Policy': CSP })
    res.end(this.#files.get(entry.file))
  }

  /**
   * Who is asking. With an Authorization header, as the mautrix bridges: the shared secret, acting for ?user_id=;
   * or `openid:<token>`, a Matrix OpenID token of a user of our homeserver (?user_id=, if given, must be its holder).
   * Otherwise the console's session cookie, and for anything but reading, its CSRF token in X-CSRF-Token.
   */
  async #caller(req: IncomingMessage, url: URL): Promise<Caller> {
    const header = req.headers.authorization
    let caller: Caller
    if (header !== undefined) {
      const given = header.replace(/^Bearer\s+/i, '')
      const secret = this.#o.config.shared_secret
      if (!given) throw new HttpError(401, 'M_MISSING_TOKEN', 'Missing auth token')
      if (secret && sameSecret(given, secret)) {
        const userId = url.searchParams.get('user_id') ?? ''
        if (!/^@[^:\s]+:[^\s]+$/.test(userId)) throw new HttpError(400, 'M_MISSING_PARAM', 'Say which Matrix user the request acts for: ?user_id=@someone:your.domain')
        caller = { viewer: viewerOf(userId, this.#o.permissions), session: undefined }
      } else if (given.startsWith(OPENID_PREFIX)) {
        const userId = await this.#openid.userOf(given.slice(OPENID_PREFIX.length), url.searchParams.get('user_id'))
        caller = { viewer: viewerOf(userId, this.#o.permissions), session: undefined }
      } else {
        throw new HttpError(401, 'M_UNKNOWN_TOKEN', 'Invalid auth token')
      }
    } else {
      const session = await this.#session(req)
      if (!session) throw new HttpError(401, 'M_MISSING_TOKEN', 'Missing auth token: sign in with the link the bridge bot sends when you type `console` in your direct chat with it.')
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        const csrf = req.headers['x-csrf-token']
        if (typeof csrf !== 'string' || !sameSecret(csrf, session.csrf)) {
          throw new HttpError(403, 'M_FORBIDDEN', 'The request lacks the page\'s CSRF token; reload the console and try again.')
        }
      }
      caller = { viewer: viewerOf(session.mxid, this.#o.permissions), session }
    }
    if (!mayManageBridge(caller.viewer)) throw new HttpError(403, 'M_FORBIDDEN', 'User does not have login permissions')
    return caller
  }

  async #session(req: IncomingMessage): Promise<Session | undefined> {
    const jar = cookies(req)
    const id = jar.get(SECURE_COOKIE) ?? jar.get(COOKIE)
    return id ? this.auth.session(id) : undefined
  }

  /** POST: trade a sign-in token for a session. GET: who is signed in (and the CSRF token). DELETE: sign out. */
  async #sessionRoute(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const facts = requestFacts(req, this.#trusted)
    const secure = facts.https || this.#o.config.public_url.startsWith('https:')
    const name = secure ? SECURE_COOKIE : COOKIE
    if (req.method === 'POST') {
      const { token } = await readJson(req)
      if (typeof token !== 'string' || !token) throw new HttpError(400, 'M_MISSING_PARAM', 'Give the sign-in token from the link.')
      const s = await this.auth.redeem(token)
      const viewer = viewerOf(s.mxid, this.#o.permissions)
      this.#o.log.info({ user: s.mxid, ip: facts.ip }, 'Signed in to the console')
      // No Max-Age: the cookie ends with the browser session; the server ends it after session_hours anyway.
      const cookie = `${name}=${s.id}; Path=/; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`
      return sendJson(res, 200, { user_id: s.mxid, level: viewer.level, csrf_token: s.csrf }, { 'Set-Cookie': cookie })
    }
    const caller = await this.#caller(req, new URL('http://console.invalid/'))
    if (req.method === 'GET') return sendJson(res, 200, { user_id: caller.viewer.mxid, level: caller.viewer.level, csrf_token: caller.session?.csrf ?? null })
    if (req.method === 'DELETE' && caller.session) {
      await this.auth.end(caller.session.id)
      return sendJson(res, 200, {}, { 'Set-Cookie': `${name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0${secure ? '; Secure' : ''}` })
    }
    throw new HttpError(405, 'M_UNRECOGNIZED', 'Use GET, POST or DELETE here.')
  }

  async #v1(req: IncomingMessage, res: ServerResponse, path: string, caller: Caller): Promise<boolean> {
    if (req.method !== 'GET') return false
    const v = caller.viewer
    switch (path) {
      case '/logins': sendJson(res, 200, { logins: await this.views.logins(v) }); return true
      case '/portals': sendJson(res, 200, { portals: await this.views.portals(v) }); return true
      case '/held': {
        const portals = await this.views.portals(v)
        sendJson(res, 200, { deliveries: portals.flatMap(p => p.problems.map(d => ({ ...d, portal_id: p.id, room_id: p.room_id }))) })
        return true
      }
      case '/health': sendJson(res, 200, await this.#healthView()); return true
      case '/events': this.#live.open(v, res); return true
      default: return false
    }
  }
}
