// A faithful fake of `signal-cli daemon --http` in multi-account mode, over real HTTP (signal-cli.md §3, §5,
// §7, §10, §11.5). Where the notes are unsure it takes the stricter reading.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { randomBytes, randomUUID } from 'node:crypto'
import type { Envelope } from './signal-envelopes.ts'
import { RpcFault, handleRpc, type RpcState } from './signal-daemon-rpc.ts'
import { PATIENCE_MS } from '../support/patience.ts'
import { freePort } from '../support/ports.ts'

export interface FakeDaemonOptions {
  /** 'on-connection' queues events while no stream is attached; 'on-start' discards them (§3.4). */
  receiveMode?: 'on-connection' | 'on-start'
  keepaliveMs?: number
  /** ≤0.14.3: status line and headers only arrive with the first keepalive (§3.3). */
  delayHeaders?: boolean
  /** Add fields the bridge does not know to every event and result (0.14.x keeps adding some). */
  unknownFields?: boolean
  /** How long finishLink waits for a scan before -1 "Link request timed out". */
  linkTimeoutMs?: number
  /** The daemon's `<config>/attachments/` directory (§4.4): getAttachment reads the file named by the id there,
   * as signal-cli does, and fails with -1 once it is gone. Empty: the `attachments` map stands in for it. */
  attachmentsDir?: string
  port?: number
}

export interface FakeAccount {
  number: string
  aci: string
  name: string
}
export interface FakeGroup {
  id: string
  name: string
  description: string
  members: Array<{ number: string | null; uuid: string }>
  admins: string[]
  /** ACIs the group has banned (listGroups' `banned`, as member objects). */
  banned?: string[]
  inviteLink: string | null
  /** joinGroup by link only requests membership (admin approval). */
  requiresApproval: boolean
  /** Who may change the name, description, picture and timer (listGroups' permissionEditDetails). */
  permissionEditDetails?: 'EVERY_MEMBER' | 'ONLY_ADMINS'
  /** The picture last set with updateGroup's `avatar`, as the file's bytes. */
  avatar?: Buffer
  /** The disappearing-message timer in seconds (listGroups' messageExpirationTime; 0 or absent: off). */
  expirationSeconds?: number
}
export interface RecordedCall {
  method: string
  params: Record<string, unknown>
  id: unknown
  /** Which HTTP request carried it: its index in `rpcRequests` (calls batched together share one). */
  request: number
  /** The result the daemon answered with (absent for errors). */
  result?: unknown
}

interface Stream {
  res: ServerResponse
  accounts: Set<string>
  keepalive: NodeJS.Timeout
  /** ≤0.14.3: nothing reaches the client before the first keepalive; events meanwhile wait here, in order. */
  held?: string[]
}

/** Fields the bridge does not know, where 0.14.x keeps adding some: the envelope, the data message, a sync
 * transcript and an edit's new content (§1, §10). */
function withUnknownFields(envelope: Envelope): Envelope {
  const extra = (o: unknown) => (o && typeof o === 'object' ? { ...(o as object), futureField: { x: 1 } } : o)
  const e: Record<string, unknown> = { ...envelope, futureField: { x: 1 } }
  if (e.dataMessage) e.dataMessage = extra(e.dataMessage)
  const edit = e.editMessage as { dataMessage?: unknown } | undefined
  if (edit?.dataMessage) e.editMessage = { ...edit, dataMessage: extra(edit.dataMessage), futureEditField: 1 }
  const sync = e.syncMessage as { sentMessage?: unknown } | undefined
  if (sync?.sentMessage) e.syncMessage = { ...sync, sentMessage: extra(sync.sentMessage) }
  return e as Envelope
}

export class FakeSignalDaemon implements RpcState {
  readonly opts: Required<Omit<FakeDaemonOptions, 'port'>>
  readonly accounts = new Map<string, FakeAccount>()
  /** Accounts dropped by unlink() or `unregister`: gone from listAccounts, -32602 on calls, 400 on new streams; their
   * keys and sessions stay on disk until `deleteLocalAccountData`. */
  readonly unlinked = new Map<string, FakeAccount>()
  readonly deletedOnServer: string[] = []
  readonly closed = new Set<string>()
  readonly groups = new Map<string, FakeGroup>()
  readonly attachments = new Map<string, Buffer>()
  readonly stickers = new Map<string, Buffer>()
  /** Every RPC call, in arrival order, for assertions. */
  readonly calls: RecordedCall[] = []
  /** How many calls each HTTP request to /api/v1/rpc carried (1 for a plain request), in arrival order. */
  readonly rpcRequests: number[] = []
  /** Faults to answer the next calls of a method with, in order. */
  readonly faults = new Map<string, RpcFault[]>()
  /** Per-recipient result type of a send; return undefined for SUCCESS. */
  /** `retryAfterSeconds` of RATE_LIMIT_FAILURE results (the server's usual answer is in this range). */
  retryAfterSeconds = 30
  recipientResult: (member: { number: string | null; uuid: string }, method: string) => string | undefined = () => undefined
  /** Optional: before the drop, sends fail with every recipient NETWORK_FAILURE (§11.5). */
  readonly failingAccounts = new Set<string>()
  readonly adminDeletes: RpcState['adminDeletes'] = []
  readonly pendingLinks = new Map<string, { used: boolean; finish?: (r: FakeAccount | Error) => void }>()
  /** While set, every RPC answer waits for it after the call was carried out. */
  answersHeld: Promise<void> | undefined
  /** Requests that arrived after hang(): read to the end, never answered. */
  readonly hungRequests: Array<{ path: string; body: string }> = []
  private hung = false
  private readonly queued = new Map<string, unknown[]>()
  private readonly streams = new Set<Stream>()
  private readonly sockets = new Set<Socket>()
  private readonly waiters: Array<() => void> = []
  /** Keepalive lines written to event streams so far. */
  keepalivesSent = 0
  /** Bytes written to the event streams that their readers have not taken yet (TCP's buffers aside): what waits
   * in the daemon while a bridge holds its stream back. */
  get unreadBytes(): number {
    let n = 0
    for (const s of this.streams) n += s.res.writableLength
    return n
  }
  private server: Server | undefined
  private port: number
  private lastTimestamp = 0

  constructor(opts: FakeDaemonOptions = {}) {
    this.opts = {
      receiveMode: opts.receiveMode ?? 'on-connection',
      keepaliveMs: opts.keepaliveMs ?? 15_000,
      delayHeaders: opts.delayHeaders ?? false,
      unknownFields: opts.unknownFields ?? false,
      linkTimeoutMs: opts.linkTimeoutMs ?? 60_000,
      attachmentsDir: opts.attachmentsDir ?? '',
    }
    this.port = opts.port ?? 0
  }

  static async start(opts: FakeDaemonOptions = {}): Promise<FakeSignalDaemon> {
    // A port outside the ephemeral range: the daemon comes back on it after stop() or goAway().
    const d = new FakeSignalDaemon({ ...opts, port: opts.port ?? (await freePort()) })
    await d.listen()
    return d
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`
  }

  async listen(): Promise<void> {
    const server = createServer((req, res) => void this.handle(req, res))
    server.on('connection', s => {
      this.sockets.add(s)
      s.on('close', () => this.sockets.delete(s))
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.port, '127.0.0.1', () => resolve())
    })
    this.port = (server.address() as AddressInfo).port
    this.server = server
  }

  /** Stops listening and cuts every connection (streams included). */
  async stop(): Promise<void> {
    this.dropStreams()
    for (const s of this.sockets) s.destroy()
    const server = this.server
    this.server = undefined
    if (server) await new Promise<void>(resolve => server.close(() => resolve()))
  }

  /** A daemon restart on the same port: streams cut, state kept. */
  async restart(): Promise<void> {
    await this.stop()
    await this.listen()
  }

  /** The daemon hangs (a stuck JVM): connections are accepted, requests read and never answered, and the
   * open event streams fall silent, keepalives included. Everything stays open until stop(). */
  hang(): void {
    this.hung = true
    for (const st of this.streams) clearInterval(st.keepalive)
  }

  /** Refuses connections for `ms` (daemon down), then comes back on the same port. */
  async goAway(ms: number): Promise<void> {
    await this.stop()
    setTimeout(() => void this.listen(), ms)
  }

  // ---- accounts, groups, events --------------------------------------------------------------------

  addAccount(a: { number: string; aci?: string; name?: string }): FakeAccount {
    const account = { number: a.number, aci: a.aci ?? randomUUID(), name: a.name ?? 'Relay' }
    this.unlinked.delete(a.number)
    this.accounts.set(a.number, account)
    return account
  }

  addGroup(g: { id?: string; name: string; members: Array<{ number: string | null; aci: string }>; link?: boolean; requiresApproval?: boolean }): FakeGroup {
    const id = g.id ?? randomBytes(32).toString('base64')
    const group: FakeGroup = {
      id,
      name: g.name,
      description: '',
      members: g.members.map(m => ({ number: m.number, uuid: m.aci })),
      admins: g.members.slice(0, 1).map(m => m.aci),
      inviteLink: g.link === false ? null : `https://signal.group/#${randomBytes(24).toString('base64url')}`,
      requiresApproval: g.requiresApproval ?? false,
    }
    this.groups.set(id, group)
    return group
  }

  /** Receives an envelope for `account`: to every attached stream, else queued or lost by receive mode. */
  push(account: string, envelope: Envelope, exception?: { message: string; type: string }): void {
    if (!this.accounts.has(account)) return // an unlinked account receives nothing (§11.1)
    // Key order on the wire: exception, envelope, account (§4.0).
    const inner: Record<string, unknown> = {
      ...(exception ? { exception } : {}),
      envelope: this.opts.unknownFields ? withUnknownFields(envelope) : envelope,
      account,
    }
    const targets = [...this.streams].filter(s => s.accounts.has(account))
    if (targets.length === 0) {
      if (this.opts.receiveMode === 'on-connection') this.queued.set(account, [...(this.queued.get(account) ?? []), inner])
      return
    }
    for (const s of targets) this.writeEvent(s, inner)
  }

  /** The phone removed the device: the account vanishes, open streams stay up with keepalives only (§11.5). */
  unlink(account: string): void {
    const a = this.accounts.get(account)
    if (!a) return
    this.accounts.delete(account)
    this.unlinked.set(account, a)
    this.dropFromStreams(account)
  }

  dropFromStreams(account: string): void {
    this.queued.delete(account)
    this.failingAccounts.delete(account)
    for (const s of this.streams) s.accounts.delete(account)
  }

  /** Whether the daemon's config directory still holds the account's keys and sessions (registered or not). */
  hasLocalData(account: string): boolean {
    return this.accounts.has(account) || this.unlinked.has(account)
  }

  /** The next `count` calls of `method` answer with this JSON-RPC error. */
  fail(method: string, code: number, message: string, data: unknown = null, count = 1): void {
    const list = this.faults.get(method) ?? []
    for (let i = 0; i < count; i++) list.push(new RpcFault(code, message, data))
    this.faults.set(method, list)
  }

  /** Cuts every open event stream (the client must reconnect). */
  dropStreams(): void {
    for (const s of this.streams) this.closeStream(s)
  }

  streamCount(account?: string): number {
    return [...this.streams].filter(s => !account || s.accounts.has(account)).length
  }

  /** Resolves once `check()` holds, re-evaluated after every call, stream and link change. */
  async until(check: () => boolean, timeoutMs = PATIENCE_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!check()) {
      if (Date.now() > deadline) throw new Error('FakeSignalDaemon.until timed out')
      await new Promise<void>(resolve => {
        const t = setTimeout(resolve, 25)
        this.waiters.push(() => {
          clearTimeout(t)
          resolve()
        })
      })
    }
  }

  async waitForCall(method: string, predicate: (c: RecordedCall) => boolean = () => true, from = 0): Promise<RecordedCall> {
    let found: RecordedCall | undefined
    await this.until(() => (found = this.calls.slice(from).find(c => c.method === method && predicate(c))) !== undefined)
    return found!
  }

  callsOf(method: string): RecordedCall[] {
    return this.calls.filter(c => c.method === method)
  }

  /** The person scans the QR code: the oldest waiting finishLink returns this account's number. */
  async scanLink(a: { number: string; aci?: string; name?: string }): Promise<void> {
    await this.until(() => [...this.pendingLinks.values()].some(l => l.finish))
    const link = [...this.pendingLinks.values()].find(l => l.finish)!
    const finish = link.finish!
    link.finish = undefined
    if (this.accounts.has(a.number)) {
      finish(new RpcFault(-1, `The user ${a.number} already exists\nDelete "/var/lib/signal-cli/data/${a.number}" before trying again.`))
      return
    }
    finish(this.addAccount(a))
  }

  nextTimestamp(): number {
    this.lastTimestamp = Math.max(Date.now(), this.lastTimestamp + 1)
    return this.lastTimestamp
  }

  notify(): void {
    for (const w of this.waiters.splice(0)) w()
  }

  hasStream(account: string): boolean {
    return this.streamCount(account) > 0
  }

  // ---- HTTP ----------------------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x')
    if (this.hung) {
      const chunks: Buffer[] = []
      for await (const c of req) chunks.push(c as Buffer)
      this.hungRequests.push({ path: url.pathname, body: Buffer.concat(chunks).toString('utf8') })
      this.notify()
      return
    }
    if (url.pathname === '/api/v1/check') {
      res.writeHead(req.method === 'GET' ? 200 : 405, { 'Content-Length': '0' }).end()
      return
    }
    if (url.pathname === '/api/v1/events') {
      if (req.method !== 'GET') return void res.writeHead(405, { 'Content-Length': '0' }).end()
      return this.openStream(req, res, url)
    }
    if (url.pathname !== '/api/v1/rpc') return void res.writeHead(404, { 'Content-Length': '0' }).end()
    if (req.method !== 'POST') return void res.writeHead(405, { 'Content-Length': '0' }).end()
    if (!(req.headers['content-type'] ?? '').startsWith('application/json')) {
      return void res.writeHead(415, { 'Content-Length': '0' }).end()
    }
    const chunks: Buffer[] = []
    for await (const c of req) chunks.push(c as Buffer)
    const answer = await handleRpc(this, Buffer.concat(chunks).toString('utf8'))
    this.notify()
    // A slow network: the call is done (a message is on Signal) but its answer has not reached the client yet.
    if (this.answersHeld) await this.answersHeld
    if (answer === undefined) return void res.writeHead(201, { 'Content-Length': '0' }).end()
    const body = JSON.stringify(answer)
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) }).end(body)
  }

  private openStream(req: IncomingMessage, res: ServerResponse, url: URL): void {
    // URLSearchParams form-decodes: a raw `+` becomes a space and the lookup fails, as on the real server (§3.1).
    const wanted = url.searchParams.get('account')
    let accounts: Set<string>
    if (wanted !== null) {
      if (!this.accounts.has(wanted)) return void res.writeHead(400, { 'Content-Length': '0' }).end()
      accounts = new Set([wanted])
    } else {
      accounts = new Set(this.accounts.keys()) // only the accounts existing now (§3.4)
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Transfer-Encoding': 'chunked' })
    if (!this.opts.delayHeaders) res.flushHeaders()
    const stream: Stream = {
      res,
      accounts,
      keepalive: setInterval(() => {
        // The first keepalive releases the status line, the headers and whatever was queued behind them.
        const held = stream.held
        stream.held = undefined
        res.write(`${(held ?? []).join('')}:\n`)
        this.keepalivesSent++
        this.notify()
      }, this.opts.keepaliveMs),
      ...(this.opts.delayHeaders ? { held: [] } : {}),
    }
    this.streams.add(stream)
    req.on('close', () => this.closeStream(stream))
    for (const a of accounts) {
      const queued = this.queued.get(a) ?? []
      this.queued.delete(a)
      for (const inner of queued) this.writeEvent(stream, inner)
    }
    this.notify()
  }

  private writeEvent(s: Stream, inner: unknown): void {
    // Exactly `event:receive`, `data:{json}`, blank line: no space after the colon, no id (§3.2).
    const frame = `event:receive\ndata:${JSON.stringify(inner)}\n\n`
    if (s.held) s.held.push(frame)
    else s.res.write(frame)
  }

  private closeStream(s: Stream): void {
    if (!this.streams.delete(s)) return
    clearInterval(s.keepalive)
    s.res.destroy()
    this.notify()
  }
}
