// The homeserver → appservice HTTP API (spec v1.x and the legacy un-prefixed paths). Written on
// node:http rather than with the bot-sdk's Appservice or matrix-appservice-bridge: the spec's error codes,
// constant-time token checks, a body limit and persist-before-acknowledge are the whole point of this
// layer, and neither framework does them (matrix-appservice.md §0).
import { createHash, timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import { eventTypeLabel, type Metrics } from '../metrics.ts'
import { HttpError } from '../http-error.ts'
import type { Inbox, MatrixEvent } from './inbox.ts'
import { isEmpty, transactionCrypto } from './transaction-crypto.ts'

export interface AppserviceOptions {
  hsToken: string
  maxBodyBytes: number
  inbox: Inbox
  log: Logger
  metrics: Metrics
  /** Called after a transaction's events are stored, with how many were new; the answer to the homeserver
   * waits for what it returns (backpressure: see MatrixEvents.stored). */
  onStored?: (count: number) => Promise<void> | void
  /** Records the events at once when it can (MatrixEvents.recordDirect): true when they are recorded, and so need
   * no storing; false to store them in the inbox. */
  recordAtOnce?: (events: MatrixEvent[]) => Promise<boolean>
  /** Events to leave out of the inbox (the bridge's own echoes); they still count in the metrics. */
  ignore?: (event: MatrixEvent) => boolean
  /** The transaction's ephemeral events (typing, receipts, presence), under the stable or the unstable key.
   * Called once per transaction, retries included; must return at once. */
  onEphemeral?: (events: unknown[]) => void
  /** Store the transaction's to-device events, device lists and key counts (encryption on). Off: ignored. */
  storeCrypto?: boolean
  /** Homeserver asks whether a user in our namespace exists; true after creating it. */
  onUserQuery?: (userId: string) => Promise<boolean>
  /** A ping from the homeserver (spec v1.7). */
  onPing?: (transactionId: string | undefined) => void
}


const digest = (s: string): Buffer => createHash('sha256').update(s).digest()

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) })
  res.end(text)
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'])
  if (Number.isFinite(declared) && declared > limit) {
    req.resume()
    throw new HttpError(413, 'M_TOO_LARGE', `Request body is over the ${limit}-byte limit`)
  }
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > limit) {
      req.resume()
      throw new HttpError(413, 'M_TOO_LARGE', `Request body is over the ${limit}-byte limit`)
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

/** A room event the bridge can store: anything else in `events` is skipped, never refused (a refused
 * transaction is retried forever by the homeserver). */
function isStorableEvent(e: unknown): e is MatrixEvent {
  if (typeof e !== 'object' || e === null || Array.isArray(e)) return false
  const ev = e as Record<string, unknown>
  return (
    isId(ev.event_id) && ev.event_id.length > 0 && ev.event_id.length <= 255 &&
    isId(ev.type) && ev.type.length <= 255 &&
    // A homeserver never sends an event without a user id as its sender; relayed, it would speak for no one.
    isId(ev.room_id) && ev.room_id.startsWith('!') && isId(ev.sender) && /^@[^:]+:./.test(ev.sender) &&
    typeof ev.content === 'object' && ev.content !== null && !Array.isArray(ev.content) &&
    shallowerThan(ev, MAX_EVENT_DEPTH)
  )
}

/** Ids go into text columns, which hold no NUL; no Matrix id has one, or a lone surrogate. */
const isId = (v: unknown): v is string => typeof v === 'string' && !v.includes('\u0000') && !LONE_SURROGATE.test(v)
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** Deeper than this no homeserver sends (Synapse's JSON parser stops near 1000), and JSON.stringify
 * overflows the stack near 4000, which would refuse the transaction forever. */
const MAX_EVENT_DEPTH = 512

function shallowerThan(root: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[root, 1]]
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!
    if (typeof v !== 'object' || v === null) continue
    if (depth > max) return false
    for (const child of Object.values(v)) if (typeof child === 'object' && child !== null) stack.push([child, depth + 1])
  }
  return true
}

/** Typing, receipts and presence (matrix-appservice.md §1). Spec v1.13 names the list `ephemeral`, older
 * homeservers `de.sorunome.msc2409.ephemeral`; one that sends both sends the same list twice, so one is read. */
function ephemeralOf(body: object): unknown[] {
  const b = body as Record<string, unknown>
  const list = [b.ephemeral, b['de.sorunome.msc2409.ephemeral']].find(l => Array.isArray(l) && l.length > 0)
  return (list as unknown[] | undefined) ?? []
}

/** Longer than the 2 minutes Synapse's connection pool keeps an idle connection (SimpleHttpClient's pool). */
const IDLE_CONNECTION_MS = 130_000

const ROUTE = /^(?:\/_matrix\/app\/v1)?\/(transactions|users|rooms)\/([^/]+)$/

export class AppserviceServer {
  private server: Server | undefined
  private readonly hsDigest: Buffer
  /** A retry that arrives while the first attempt is still storing waits for it instead of racing it. */
  private readonly inFlight = new Map<string, Promise<unknown>>()

  private readonly opts: AppserviceOptions

  constructor(opts: AppserviceOptions) {
    this.opts = opts
    this.hsDigest = digest(opts.hsToken)
  }

  listen(port: number, hostname: string): Promise<number> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        const e = err instanceof HttpError ? err : new HttpError(500, 'M_UNKNOWN', 'Internal error')
        if (!(err instanceof HttpError)) this.opts.log.error({ err }, 'Unexpected error in the appservice endpoint')
        if (!res.headersSent) send(res, e.status, { errcode: e.errcode, error: e.message })
        else res.end()
      })
    })
    // Synapse keeps an idle connection in its pool for 2 minutes and reuses it for the next push. Node closes an
    // idle one after 5 s by default, so a push that came just then met a closed connection and failed (Twisted
    // does not retry a PUT), and Synapse backs off from the bridge. Kept longer, the homeserver always closes first.
    server.keepAliveTimeout = IDLE_CONNECTION_MS
    this.server = server
    return new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, hostname, () => {
        server.off('error', reject)
        const addr = server.address()
        resolve(typeof addr === 'object' && addr ? addr.port : port)
      })
    })
  }

  /** How long the listening server keeps an idle connection open (undefined before listen). */
  get idleConnectionMs(): number | undefined {
    return this.server?.keepAliveTimeout
  }

  async close(): Promise<void> {
    const server = this.server
    if (!server) return
    await new Promise<void>(resolve => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
  }

  private authenticate(req: IncomingMessage, url: URL): void {
    const header = req.headers.authorization
    const bearer = header?.startsWith('Bearer ') ? header.slice(7) : undefined
    const query = url.searchParams.get('access_token') ?? undefined
    if (bearer === undefined && query === undefined) {
      throw new HttpError(401, 'M_UNAUTHORIZED', 'Missing access token')
    }
    // Transitional homeservers send both; then they must agree.
    for (const token of [bearer, query]) {
      if (token !== undefined && !timingSafeEqual(digest(token), this.hsDigest)) {
        throw new HttpError(403, 'M_FORBIDDEN', 'Invalid access token')
      }
    }
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost')
    const path = url.pathname
    if (path === '/_matrix/app/v1/ping') {
      if (req.method !== 'POST') throw new HttpError(405, 'M_UNRECOGNIZED', 'Method not allowed')
      this.authenticate(req, url)
      const body = await this.readJson(req)
      const txn = (body as { transaction_id?: unknown }).transaction_id
      this.opts.onPing?.(typeof txn === 'string' ? txn : undefined)
      return send(res, 200, {})
    }
    const match = ROUTE.exec(path)
    if (!match) throw new HttpError(404, 'M_UNRECOGNIZED', 'Unrecognized request')
    const [, kind, rawId] = match as unknown as [string, string, string]
    const expected = kind === 'transactions' ? 'PUT' : 'GET'
    if (req.method !== expected) throw new HttpError(405, 'M_UNRECOGNIZED', 'Method not allowed')
    this.authenticate(req, url)
    let id: string
    try {
      id = decodeURIComponent(rawId)
    } catch {
      throw new HttpError(400, 'M_INVALID_PARAM', 'The path is not valid percent-encoded UTF-8')
    }
    if (id.includes('\u0000')) throw new HttpError(400, 'M_INVALID_PARAM', 'The path holds a NUL character')
    if (kind === 'transactions') return this.transaction(req, res, id)
    if (kind === 'users') {
      const exists = (await this.opts.onUserQuery?.(id)) ?? false
      return exists ? send(res, 200, {}) : send(res, 404, { errcode: 'M_NOT_FOUND', error: 'No such user' })
    }
    // One room per portal, created by the bridge: there are no aliases to conjure rooms from.
    return send(res, 404, { errcode: 'M_NOT_FOUND', error: 'No such room alias' })
  }

  private async readJson(req: IncomingMessage): Promise<unknown> {
    const raw = await readBody(req, this.opts.maxBodyBytes)
    if (raw.length === 0) return {}
    try {
      return JSON.parse(raw.toString('utf8'))
    } catch {
      throw new HttpError(400, 'M_NOT_JSON', 'Body is not valid JSON')
    }
  }

  /** A retried transaction brings its ephemeral events again: they are counted again, harmless for what is only
   * counted. */
  private ephemeral(list: unknown[], txnId: string): void {
    if (list.length === 0) return
    try {
      this.opts.onEphemeral?.(list)
    } catch (err) {
      this.opts.log.warn({ txnId, err: (err as Error).message }, 'Could not handle the ephemeral events of a transaction')
    }
  }

  private async transaction(req: IncomingMessage, res: ServerResponse, txnId: string): Promise<void> {
    const { metrics, inbox, log } = this.opts
    let body: unknown
    try {
      body = await this.readJson(req)
    } catch (err) {
      metrics.transactions.inc({ result: err instanceof HttpError && err.status === 413 ? 'too_large' : 'bad_json' })
      throw err
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body) || !Array.isArray((body as { events?: unknown }).events)) {
      metrics.transactions.inc({ result: 'bad_json' })
      throw new HttpError(400, 'M_BAD_JSON', 'A transaction is an object with an "events" array')
    }
    const ephemeral = ephemeralOf(body)
    this.ephemeral(ephemeral, txnId)
    const running = this.inFlight.get(txnId)
    if (running) {
      await running
      metrics.transactions.inc({ result: 'duplicate' })
      return send(res, 200, {})
    }
    const work = (async () => {
      const all = (body as { events: unknown[] }).events
      const events = all.filter(isStorableEvent)
      if (events.length < all.length) {
        log.warn({ txnId, skipped: all.length - events.length }, 'Skipped malformed events in a transaction')
      }
      // The keys first: once an event is stored it may be handled, and its key must be there before it.
      let newCrypto = false
      if (this.opts.storeCrypto) {
        const { crypto, problems } = transactionCrypto(body as Record<string, unknown>)
        if (problems.length > 0) {
          log.error({ txnId, problems: problems.slice(0, 20) }, 'The homeserver sent encryption fields the bridge cannot read; they are left out and the rest of the transaction is kept. Check that the homeserver version is one docs/operators.md lists')
        }
        if (!isEmpty(crypto)) newCrypto = await inbox.storeCrypto(txnId, crypto)
      }
      const kept = this.opts.ignore ? events.filter(e => !this.opts.ignore!(e)) : events
      if (kept.length === 0 && events.length > 0 && !newCrypto) {
        // Only the bridge's own echoes (each message it relays into Matrix comes back so): nothing to keep, not
        // even the txn id, as a retry of it is left out the same way. Stored, it cost a write and a commit per
        // relayed message, and woke the inbox to read nothing.
        for (const e of events) metrics.events.inc({ type: eventTypeLabel(e.type) })
        metrics.transactions.inc({ result: 'echoes' })
        return undefined
      }
      if (!newCrypto && await this.opts.recordAtOnce?.(kept)) {
        // Recorded is stored and more: the drain has nothing left to do with them (and a retry records nothing twice).
        for (const e of events) metrics.events.inc({ type: eventTypeLabel(e.type) })
        metrics.transactions.inc({ result: 'recorded' })
        return undefined
      }
      const stored = await inbox.store(txnId, kept)
      if (stored === undefined && newCrypto) {
        metrics.transactions.inc({ result: 'stored' })
        return 0
      }
      if (stored === undefined) {
        // Ephemeral events carry no id, so a known txn id that brings only those cannot be told apart as a
        // retry or a reuse (a restarted homeserver numbering from 1): counted on its own, not as a duplicate.
        metrics.transactions.inc({ result: all.length === 0 && ephemeral.length > 0 ? 'ephemeral_only' : 'duplicate' })
        return undefined
      }
      for (const e of events) metrics.events.inc({ type: eventTypeLabel(e.type) })
      metrics.transactions.inc({ result: 'stored' })
      return stored
    })()
    this.inFlight.set(txnId, work)
    let stored: number | undefined
    try {
      stored = await work
    } catch (err) {
      // Not acknowledged: the homeserver keeps the transaction and retries it.
      metrics.transactions.inc({ result: 'db_error' })
      log.error({ txnId, err: (err as Error).message }, 'Could not store a transaction; the homeserver will retry it')
      throw new HttpError(500, 'M_UNKNOWN', 'Could not store the transaction; retry later')
    } finally {
      this.inFlight.delete(txnId)
    }
    // Stored, so safe either way; waiting here only paces the homeserver while a backlog is worked through.
    if (stored !== undefined) await this.opts.onStored?.(stored)
    send(res, 200, {})
  }
}
