// A fake WhatsApp for the adapter (reference §10/§12/§13): one FakeWhatsApp world (the account, its phone,
// its groups, a loopback media CDN) hands out FakeWaSocket instances through `factory`, typed against the
// real WaPort slice. Messages are built with Baileys' own proto and generateWAMessage. Every control
// method takes plain data, so an IPC shim can forward calls from another process.
import { EventEmitter } from 'node:events'
import { createServer, type Server } from 'node:http'
import { readFile, unlink } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
import { Boom } from '@hapi/boom'
import { WebSocketServer, type WebSocket as PeerSocket } from 'ws'
import { WebSocketClient } from '@whiskeysockets/baileys/lib/Socket/Client/index.js'
import {
  DEFAULT_CONNECTION_CONFIG,
  DisconnectReason,
  encryptedStream,
  generateWAMessage,
  proto,
  type AuthenticationState,
  type BaileysEventEmitter,
  type BaileysEventMap,
  type GroupMetadata,
  type MediaType,
  type WAMessage,
  type WAMessageKey,
  type WASocket,
  jidNormalizedUser,
} from '@whiskeysockets/baileys'
import type { WaPort, WaSocketFactory, WaSocketOptions } from '../../src/whatsapp/socket.ts'

class Bus implements BaileysEventEmitter {
  readonly #e = new EventEmitter()
  on<K extends keyof BaileysEventMap>(k: K, f: (a: BaileysEventMap[K]) => void) {
    this.#e.on(k, f)
  }
  off<K extends keyof BaileysEventMap>(k: K, f: (a: BaileysEventMap[K]) => void) {
    this.#e.off(k, f)
  }
  removeAllListeners<K extends keyof BaileysEventMap>(k: K) {
    this.#e.removeAllListeners(k)
  }
  emit<K extends keyof BaileysEventMap>(k: K, a: BaileysEventMap[K]) {
    return this.#e.emit(k, a)
  }
}

/** What decryption yields: the content encoded and decoded with the shipped protobuf. */
export const onTheWire = (m: proto.IMessage): proto.Message =>
  proto.Message.decode(proto.Message.encode(proto.Message.fromObject(m)).finish())

export const GROUP = '120363000000000001@g.us'
export interface Sender {
  lid?: string
  pn?: string
}
/** A WhatsApp account the fake world knows: the relay's (`FakeWhatsApp.account`) and any added with addAccount. */
export interface FakeWaAccount {
  pn: string
  lid: string
  device: number
  name: string
}
export interface DeliverSpec {
  chat?: string
  id?: string
  /** A group member (LID and/or PN JIDs), or 'phone' for an account's own phone (fromMe, device 0). */
  from: Sender | 'phone'
  /** Whose phone 'phone' is: the relay account's unless given. */
  phoneOf?: FakeWaAccount
  /** Force the key's addressing (default: LID when the sender has one). */
  addressing?: 'lid' | 'pn'
  /** Omit participantAlt (a LID sender whose number is unknown). */
  noAlt?: boolean
  pushName?: string | null
  message: proto.IMessage
  type?: 'notify' | 'append'
  timestamp?: number
}
export interface FailSpec {
  method: 'sendMessage' | 'groupMetadata' | 'groupAcceptInvite'
  kind: 'rate-overlimit' | 'no-sessions' | 'timeout' | 'not-participant' | 'item-not-found'
  times?: number
}
/** A message the bridge sent to its own phone with relayMessage (`category: 'peer'`): never seen by the group. */
export interface PeerRecord {
  jid: string
  message: proto.Message
  attrs: Record<string, string>
}
export interface SentRecord {
  /** The number of the account that sent it. */
  by: string
  jid: string
  id: string
  content: Record<string, unknown>
  options: { messageId?: string; quotedId?: string }
  message: WAMessage
}

/** How rc14 fails a query the server answered with an error (assertNodeErrorFree): the code in `data`, and
 * `output.statusCode` left at Boom's default 500. */
const iqError = (text: string, code: number): Boom => new Boom(text, { data: code })
const CLOSED = () => new Boom('Connection Closed', { statusCode: DisconnectReason.connectionClosed })

export interface FakeWhatsAppOptions {
  /** Give every socket a real WebSocket to the fake's server, as rc14's WebSocketClient has to WhatsApp's: messages
   * sent with `deliverOverWire` travel over it, so that a paused socket really stops reading them, and the socket
   * keeps rc14's keepalive (a ping every keepAliveIntervalMs; the connection ends as lost when nothing was read for
   * that plus `keepAliveGraceMs`). */
  wire?: boolean
  /** WhatsApp's end of the sockets' WebSockets is elsewhere (another process: the benchmark's harness), at this
   * `ws://` base: each socket connects to `<server>/<its place in sockets>` (implies `wire`). Such a server sends
   * whole messages, each frame `spec:<DeliverSpec as JSON>`, built into the message when the socket reads it, as
   * rc14 decodes a stanza when it is read. */
  server?: string
  /** rc14 waits 5 s beyond the interval before it ends a silent connection. */
  keepAliveGraceMs?: number
}

/** The size of a message frame on the wire: WhatsApp's frames carry encrypted stanzas of a few hundred bytes. */
const FRAME_BYTES = 512
/** Where sockets connect before the fake's own server listens (unwired worlds never connect). */
const NO_SERVER = 'ws://127.0.0.1:9'

export class FakeWhatsApp {
  readonly wire: boolean
  readonly keepAliveGraceMs: number
  #server: WebSocketServer | undefined
  #wsUrl = NO_SERVER
  /** The sockets' server is another process's (`server`). */
  readonly #external: boolean
  readonly account: FakeWaAccount = { pn: '15550100000', lid: '201000000000001', device: 7, name: 'Relay' }
  /** Further accounts (people's own), each with its own sockets; messages in a group reach every member account. */
  readonly others: FakeWaAccount[] = []
  /** Whether the phone of each further account still lists its linked device (see `linked`). */
  readonly #othersLinked = new Map<FakeWaAccount, boolean>()
  readonly groups = new Map<string, GroupMetadata>()
  readonly invites = new Map<string, string>()
  readonly sockets: FakeWaSocket[] = []
  readonly sent: SentRecord[] = []
  /** Every chat-state and read call the bridge made (typing or reading as the relay account). */
  readonly presenceSent: Array<{ by: string; type: string; jid: string | undefined }> = []
  readonly reads: Array<{ by: string; keys: WAMessageKey[] }> = []
  /** Ids whose revoke WhatsApp carried out. A non-admin's revoke of someone else's message is dropped silently
   * (how WhatsApp reports that refusal is not documented; the strictest reading is that nothing says so). */
  readonly revoked = new Set<string>()
  readonly peerSent: PeerRecord[] = []
  /** The phone numbers (digits) pairing codes were asked for, in order. */
  readonly pairingRequests: string[] = []
  /** Whether the phone still lists this linked device (false after an unlink or logout). */
  linked = true
  /** A refusal WhatsApp answers every connect with, before login (`<failure reason="405">` for a retired WhatsApp Web
   * version; also 402, 403, 406): rc14 closes with "Connection Failure", the reason as the status code (baileys.md §12). */
  refuseAtConnect: number | undefined
  echoOwnSends = true
  /** While set, the echoes of own sends, and the copies the group's other accounts get, wait for releaseEchoes()
   * (what comes late: after sendMessage resolved, or after the bridge recorded the send). */
  holdEchoes = false
  readonly #heldEchoes: Array<() => void> = []
  readonly #failures: FailSpec[] = []
  readonly #blobs = new Map<string, Buffer>()
  readonly #plain = new Map<string, { data: Buffer; type: MediaType }>()
  #cdn: Server | undefined
  #base = ''
  #n = 0

  readonly factory: WaSocketFactory = (auth, opts) => {
    const s = new FakeWaSocket(this, auth, opts)
    this.sockets.push(s)
    queueMicrotask(() => s.boot())
    return s
  }

  /** Emits the echoes held back by holdEchoes, in order; returns how many. */
  releaseEchoes(): number {
    const held = this.#heldEchoes.splice(0)
    for (const emit of held) emit()
    return held.length
  }
  /** Holds an echo back (holdEchoes), or emits it on the next tick, as Baileys does. */
  echo(emit: () => void): void {
    if (this.holdEchoes) this.#heldEchoes.push(emit)
    else process.nextTick(emit)
  }

  /** The relay account's newest socket (or the newest one not yet linked to any account). */
  get current(): FakeWaSocket | undefined {
    return this.sockets.findLast(s => !s.account || s.account === this.account)
  }
  /** An account's newest socket. */
  socketOf(account: FakeWaAccount): FakeWaSocket | undefined {
    return this.sockets.findLast(s => s.account === account)
  }
  get ownJid() {
    return this.jidOf(this.account)
  }
  jidOf(a: FakeWaAccount): string {
    return `${a.pn}:${a.device}@s.whatsapp.net`
  }
  addAccount(a: { pn: string; lid: string; name: string; device?: number }): FakeWaAccount {
    const account = { device: 3, ...a }
    this.others.push(account)
    this.#othersLinked.set(account, false)
    return account
  }
  /** The account a JID (with or without device) belongs to. */
  accountOf(jid: string): FakeWaAccount | undefined {
    const user = jid.split(/[:@]/)[0]
    return [this.account, ...this.others].find(a => a.pn === user || a.lid === user)
  }
  isLinked(a: FakeWaAccount): boolean {
    return a === this.account ? this.linked : this.#othersLinked.get(a) === true
  }
  setLinked(a: FakeWaAccount, linked: boolean): void {
    if (a === this.account) this.linked = linked
    else this.#othersLinked.set(a, linked)
  }
  /** Whether an account is a member of a group. */
  isMember(groupId: string, a: FakeWaAccount): boolean {
    return !!this.groups.get(groupId)?.participants.some(p => p.lid === `${a.lid}@lid`)
  }

  constructor(opts: FakeWhatsAppOptions = {}) {
    this.wire = (opts.wire ?? false) || opts.server !== undefined
    this.#external = opts.server !== undefined
    if (opts.server !== undefined) this.#wsUrl = opts.server
    this.keepAliveGraceMs = opts.keepAliveGraceMs ?? 5000
  }

  /** WhatsApp's end of the sockets' WebSockets: the socket is named by the path it connects to. */
  async #listen(): Promise<void> {
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0 })
    this.#server = server
    await new Promise<void>(ok => server.once('listening', ok))
    this.#wsUrl = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`
    server.on('connection', (peer, req) => {
      const s = this.sockets[Number(req.url?.slice(1))]
      if (s) s.peer = peer
      // WhatsApp answers every ping (rc14 sends `<iq type="get" xmlns="w:p"><ping/></iq>`).
      peer.on('message', data => {
        if (String(data) === 'ping') peer.send('pong')
      })
    })
  }
  /** Where the next socket's WebSocket connects (its place in `sockets`). */
  nextWsUrl(): URL {
    return new URL(`${this.#wsUrl}/${this.sockets.length}`)
  }

  async start(): Promise<void> {
    if (this.wire && !this.#server && !this.#external) await this.#listen()
    if (this.#cdn) return
    this.#cdn = createServer((req, res) => {
      const b = this.#blobs.get(req.url ?? '')
      if (b) res.end(b)
      else res.writeHead(404).end()
    })
    await new Promise<void>(ok => this.#cdn!.listen(0, '127.0.0.1', ok))
    this.#base = `http://127.0.0.1:${(this.#cdn.address() as AddressInfo).port}`
  }
  async stop(): Promise<void> {
    for (const s of this.sockets) s.stopKeepAlive()
    for (const c of this.#server?.clients ?? []) c.terminate()
    await new Promise<void>(ok => (this.#server ? this.#server.close(() => ok()) : ok()))
    this.#server = undefined
    await new Promise<void>(ok => (this.#cdn ? this.#cdn.close(() => ok()) : ok()))
    this.#cdn = undefined
  }

  // ---- groups --------------------------------------------------------------------------------------
  addGroup(spec: { id?: string; subject: string; members: Array<Sender & { admin?: boolean }>; addressingMode?: 'lid' | 'pn' }): string {
    // An added account is a member like anyone else: give it as { lid, pn } JIDs.
    const id = spec.id ?? `1203630000000${String(++this.#n).padStart(5, '0')}@g.us`
    const mode = spec.addressingMode ?? 'lid'
    const self = { lid: `${this.account.lid}@lid`, pn: `${this.account.pn}@s.whatsapp.net` }
    const participants = [self, ...spec.members].map(m => ({
      id: (mode === 'lid' ? (m.lid ?? m.pn) : (m.pn ?? m.lid))!,
      ...(m.lid ? { lid: m.lid } : {}),
      ...(m.pn ? { phoneNumber: m.pn } : {}),
      admin: ('admin' in m && m.admin ? 'admin' : null) as 'admin' | null,
    }))
    this.groups.set(id, { id, subject: spec.subject, addressingMode: mode as GroupMetadata['addressingMode'], participants, owner: undefined })
    return id
  }
  /** The id of the group with this subject: how a test finds a group the bridge created, as a person would. */
  groupBySubject(subject: string): string | undefined {
    return [...this.groups.values()].find(g => g.subject === subject)?.id
  }
  /** Someone joins (e.g. by the invite link): the metadata changes and rc14 tells the socket (add). */
  addMember(groupId: string, member: Sender): void {
    const g = this.#group(groupId)
    const id = (g.addressingMode === 'pn' ? (member.pn ?? member.lid) : (member.lid ?? member.pn))!
    const p = { id, ...(member.lid ? { lid: member.lid } : {}), ...(member.pn ? { phoneNumber: member.pn } : {}), admin: null }
    g.participants.push(p)
    this.current?.participantsChanged(groupId, 'add', [p])
  }
  /** An admin removes a member (the relay account itself when `member` is 'self'). */
  removeMember(groupId: string, member: Sender | 'self'): void {
    const g = this.#group(groupId)
    const gone = g.participants.filter(p => this.#is(p, member))
    g.participants = g.participants.filter(p => !this.#is(p, member))
    this.current?.participantsChanged(groupId, 'remove', gone)
  }
  /** A member leaves by their own hand: rc14 tells it as `remove` with the leaver as the author. */
  leaveGroup(groupId: string, member: Sender): void {
    const g = this.#group(groupId)
    const gone = g.participants.filter(p => this.#is(p, member))
    g.participants = g.participants.filter(p => !this.#is(p, member))
    this.current?.participantsChanged(groupId, 'remove', gone, gone[0]?.id)
  }
  removeSelfFrom(groupId: string): void {
    this.removeMember(groupId, 'self')
  }
  /** An admin makes a member (or the relay account) an admin, or takes it back. */
  setAdmin(groupId: string, member: Sender | 'self', admin: boolean): void {
    const g = this.#group(groupId)
    const changed = g.participants.filter(p => this.#is(p, member))
    for (const p of changed) p.admin = admin ? 'admin' : null
    this.current?.participantsChanged(groupId, admin ? 'promote' : 'demote', changed)
  }
  #group(groupId: string): GroupMetadata {
    const g = this.groups.get(groupId)
    if (!g) throw new Error(`fake: no group ${groupId}`)
    return g
  }
  #is(p: GroupMetadata['participants'][number], m: Sender | 'self'): boolean {
    const who = m === 'self' ? { lid: `${this.account.lid}@lid`, pn: `${this.account.pn}@s.whatsapp.net` } : m
    return [p.id, p.lid, p.phoneNumber].some(j => j && (j === who.lid || j === who.pn))
  }
  isAdmin(groupId: string, m: Sender | 'self'): boolean {
    return !!this.groups.get(groupId)?.participants.some(p => this.#is(p, m) && p.admin)
  }
  renameGroup(groupId: string, subject: string, author?: Sender): void {
    const g = this.groups.get(groupId)
    if (g) g.subject = subject
    this.current?.ev.emit('groups.update', [{ id: groupId, subject, subjectTime: Math.floor(Date.now() / 1000), ...(author ? { author: this.#participantJid(groupId, author) } : {}) }])
  }
  /** A member changes the group's description: rc14 emits groups.update with `desc` (and its id and owner). */
  describeGroup(groupId: string, desc: string, author?: Sender): void {
    const g = this.#group(groupId)
    g.desc = desc
    g.descId = newId()
    this.current?.ev.emit('groups.update', [{ id: groupId, desc, descId: g.descId, ...(author ? { author: this.#participantJid(groupId, author), descOwner: this.#participantJid(groupId, author) } : {}) }])
  }
  /** The group's disappearing-message timer was set (0: off) by a member (or 'phone': the relay account's own): every
   * device hears it as the message rc14 makes of the `ephemeral`/`not_ephemeral` notification (messages-recv.js). */
  timerChanged(groupId: string, seconds: number, by: Sender | 'phone'): WAMessage {
    this.#group(groupId).ephemeralDuration = seconds || undefined
    return this.deliver({ chat: groupId, from: by, message: { protocolMessage: { type: proto.Message.ProtocolMessage.Type.EPHEMERAL_SETTING, ephemeralExpiration: seconds } } })
  }
  /** An admin lets only admins edit the group info (`restrict`), or everyone again. */
  restrictInfo(groupId: string, restrict: boolean): void {
    this.#group(groupId).restrict = restrict
    this.current?.ev.emit('groups.update', [{ id: groupId, restrict }])
  }
  /** The pictures groups have now, as the bytes given (by updateProfilePicture, or a member's setPicture). */
  readonly pictures = new Map<string, Buffer>()
  /** What WhatsApp's CDN serves for a group's picture: the relay's uploads come back re-encoded, as WhatsApp does. */
  readonly #served = new Map<string, Buffer>()
  /** A member sets (or removes) the group's picture: rc14 emits contacts.update for the group with `imgUrl`
   * 'changed' or 'removed' (Socket/messages-recv.js, the `picture` notification), and names no author there. */
  setPicture(groupId: string, data: Buffer | null): void {
    this.#group(groupId)
    this.#picture(groupId, data, data)
  }
  #picture(groupId: string, data: Buffer | null, served: Buffer | null): void {
    if (data && served) {
      this.pictures.set(groupId, data)
      this.#served.set(groupId, served)
    } else {
      this.pictures.delete(groupId)
      this.#served.delete(groupId)
    }
    queueMicrotask(() => this.current?.ev.emit('contacts.update', [{ id: groupId, imgUrl: data ? 'changed' : 'removed' }]))
  }
  /** The relay changed the picture (rc14 makes a 640 px JPEG of it first): stored re-encoded, and every device of the
   * group, the relay's own included, is told. */
  ownPicture(groupId: string, data: Buffer | null): void {
    this.#picture(groupId, data, data ? Buffer.concat([Buffer.from('re-encoded:'), data]) : null)
  }
  /** A person's profile picture, visible to the relay (their privacy allows it). */
  setProfilePicture(who: Sender, data: Buffer): void {
    for (const jid of [who.lid, who.pn]) {
      if (!jid) continue
      this.pictures.set(jid, data)
      this.#served.set(jid, data)
    }
  }
  /** profilePictureUrl: a CDN address of the picture, or undefined for a group without one. */
  pictureUrl(groupId: string): string | undefined {
    const data = this.#served.get(groupId)
    if (!data) return undefined
    const p = `/pp/${randomBytes(6).toString('hex')}.jpg`
    this.#blobs.set(p, data)
    return this.#base + p
  }
  /** A change of the group's info by the relay account itself: WhatsApp refuses it in a `restrict` group unless the
   * relay is an admin (rc14's query fails with 401 not-authorized), and otherwise notifies every device of the group,
   * the relay's own included (the strict reading: nothing says the author's device is spared the echo). */
  editInfo(groupId: string, change: Partial<GroupMetadata>): void {
    const g = this.groups.get(groupId)
    if (!g) throw iqError('item-not-found', 404)
    if (!g.participants.some(p => p.lid === `${this.account.lid}@lid`)) throw iqError('forbidden', 403)
    if (g.restrict && !this.isAdmin(groupId, 'self')) throw iqError('not-authorized', 401)
    Object.assign(g, change)
    const author = `${this.account.lid}@lid`
    if ('subject' in change || 'desc' in change) {
      const update = { id: groupId, author, ...change, ...('subject' in change ? { subjectTime: Math.floor(Date.now() / 1000), subjectOwner: author } : {}) }
      queueMicrotask(() => this.current?.ev.emit('groups.update', [update]))
    }
  }
  addInvite(code: string, groupId: string): void {
    this.invites.set(code, groupId)
  }

  // ---- failures ------------------------------------------------------------------------------------
  failNext(spec: FailSpec): void {
    this.#failures.push({ times: 1, ...spec })
  }
  takeFailure(method: FailSpec['method']): Error | undefined {
    const f = this.#failures.find(x => x.method === method && (x.times ?? 1) > 0)
    if (!f) return undefined
    f.times = (f.times ?? 1) - 1
    switch (f.kind) {
      case 'rate-overlimit':
        return iqError('rate-overlimit', 429)
      case 'no-sessions':
        return new Error('No sessions') // libsignal's SessionError
      case 'timeout':
        return new Boom('Timed Out', { statusCode: DisconnectReason.timedOut })
      case 'not-participant':
        return iqError('forbidden', 403)
      case 'item-not-found':
        return iqError('item-not-found', 404)
    }
  }

  // ---- media ---------------------------------------------------------------------------------------
  /** Encrypts bytes like a phone's upload and returns the media fields (no directPath: it forces https). */
  async uploadMedia(data: Buffer | string, type: MediaType): Promise<Record<string, unknown>> {
    await this.start()
    const plain = typeof data === 'string' ? Buffer.from(data, 'base64') : data
    const e = await encryptedStream(plain, type)
    const url = await this.putFile(e.encFilePath)
    this.#plain.set(url, { data: plain, type })
    return { url, mediaKey: e.mediaKey, fileEncSha256: e.fileEncSha256, fileSha256: e.fileSha256, fileLength: e.fileLength, mediaKeyTimestamp: Math.floor(Date.now() / 1000) }
  }
  async putFile(path: string): Promise<string> {
    const p = `/m/${randomBytes(8).toString('hex')}.enc`
    this.#blobs.set(p, await readFile(path))
    await unlink(path).catch(() => {})
    return this.#base + p
  }
  /** The CDN forgets a blob (media older than its retention): downloads get 404 until re-uploaded. */
  expireMedia(url: string): void {
    this.#blobs.delete(url.slice(this.#base.length))
  }
  async reupload(msg: WAMessage): Promise<WAMessage> {
    const content = msg.message ?? {}
    const field = Object.keys(content).find(k => k.endsWith('Message')) as keyof proto.IMessage | undefined
    const node = field ? (content[field] as { url?: string } | undefined) : undefined
    const orig = node?.url ? this.#plain.get(node.url) : undefined
    if (!field || !orig) throw new Boom('media not found on phone', { statusCode: 404 })
    const fresh = await this.uploadMedia(orig.data, orig.type)
    return { ...msg, message: onTheWire({ [field]: { ...(node as object), ...fresh } }) }
  }
  async fetchBytes(url: string): Promise<Buffer | undefined> {
    return this.#blobs.get(url.slice(this.#base.length))
  }

  // ---- the account's phone -------------------------------------------------------------------------
  /** The person scans the QR code (or types the pairing code): creds get an identity, then 515. */
  scanQr(account: FakeWaAccount = this.account): void {
    const s = this.sockets.findLast(x => !x.account && x.state !== 'closed')
    if (!s) throw new Error('No socket is waiting for a QR scan.')
    s.pair(account)
  }
  /** The numbers pairing codes were asked for (a method, so that a test in another process can ask too). */
  pairingCodeRequests(): string[] {
    return [...this.pairingRequests]
  }
  /** The person types the pairing code on the phone: only a socket that asked for one has a code to type. */
  acceptPairingCode(): void {
    if (!this.current?.pairingCode) throw new Error('No socket waiting to link asked for a pairing code.')
    this.scanQr()
  }
  rotateQr(): void {
    this.current?.nextQr()
  }
  /** A message in a group reaches the relay account's socket and every other member account's open socket, each
   * from its own point of view (its own phone's messages are fromMe). Returns the relay account's copy. */
  deliver(spec: DeliverSpec): WAMessage {
    const s = this.current
    if (!s) throw new Error('No socket to deliver to.')
    const one = { ...spec, id: spec.id ?? newId() }
    const author = spec.from === 'phone' ? (spec.phoneOf ?? this.account) : undefined
    const seenBy = (x: FakeWaSocket): DeliverSpec => author && x.me !== author ? { ...one, from: this.asMember(author) } : one
    for (const other of this.others) {
      const o = this.socketOf(other)
      if (o && o.state === 'open' && this.isMember(one.chat ?? GROUP, other)) o.deliver(seenBy(o))
    }
    return s.deliver(seenBy(s))
  }
  /** How an account appears to the other members of a group. */
  asMember(a: FakeWaAccount): Sender {
    return { lid: `${a.lid}@lid`, pn: `${a.pn}@s.whatsapp.net` }
  }
  /** Several messages in one messages.upsert, as the offline backlog arrives (rc14 flushes its buffer in batches). */
  deliverBatch(specs: DeliverSpec[], type: 'notify' | 'append' = 'append'): WAMessage[] {
    const s = this.current
    if (!s) throw new Error('No socket to deliver to.')
    return s.deliverBatch(specs, type)
  }
  /** Messages sent one by one over the relay socket's WebSocket (the world must be wired): each reaches the bridge
   * as its own messages.upsert once the socket reads its frame, and a socket that does not read leaves the rest
   * with the server. Resolves when the socket's WebSocket is there to send to. */
  async deliverOverWire(specs: DeliverSpec[]): Promise<WAMessage[]> {
    const s = this.current
    if (!s) throw new Error('No socket to deliver to.')
    return s.deliverOverWire(specs)
  }
  /** A delivery/read status for a message (messages.update carrying only `status`). */
  statusUpdate(key: WAMessageKey, status: proto.WebMessageInfo.Status): void {
    this.current?.ev.emit('messages.update', [{ key, update: { status } }])
  }
  undecryptable(spec: Omit<DeliverSpec, 'message'>): WAMessage {
    return this.current!.deliver({ ...spec, message: {} }, true)
  }
  /** Closes an account's live socket (the relay's unless given) with a disconnect reason (reference §3/§12). */
  disconnect(code: number, opts: { message?: string; data?: unknown } = {}, account: FakeWaAccount = this.account): void {
    if (code === 401) this.setLinked(account, false)
    const s = account === this.account ? this.current : this.socketOf(account)
    s?.closeWith(new Boom(opts.message ?? 'Stream Errored', { statusCode: code, data: opts.data }))
  }
  /** The phone removed the linked device while it was connected. */
  unlinkedLive(account: FakeWaAccount = this.account): void {
    this.disconnect(401, { message: 'Stream Errored (conflict)', data: { tag: 'conflict', attrs: { type: 'device_removed' } } }, account)
  }
  replaced(): void {
    this.disconnect(440, { message: 'Stream Errored (conflict)', data: { tag: 'conflict', attrs: { type: 'replaced' } } })
  }
  lidMapping(lid: string, pn: string): void {
    this.current?.ev.emit('lid-mapping.update', { lid, pn })
  }
  /** A member types, records a voice note, or pauses in a group. rc14 (Socket/chats.js handlePresenceUpdate) turns
   * the `chatstate` node into presence.update with `paused` reported as `available`. Whether WhatsApp sends a
   * linked device chat states it has not subscribed to is not documented: the fake takes the stricter reading and
   * sends them only to a socket that called presenceSubscribe for the group. */
  typing(spec: { chat?: string; from: Sender; state: 'composing' | 'recording' | 'paused' }): boolean {
    const s = this.current
    const chat = spec.chat ?? GROUP
    if (!s || s.state !== 'open' || !s.subscribed.has(chat)) return false
    const participant = this.#participantJid(chat, spec.from)
    const lastKnownPresence = spec.state === 'paused' ? 'available' : spec.state
    s.ev.emit('presence.update', { id: chat, presences: { [participant]: { lastKnownPresence } } })
    return true
  }
  /** A member's receipts for messages in a group (Socket/messages-recv.js handleReceipt): one
   * message-receipt.update entry per id, key.fromMe true (the relay's messages), `readTimestamp` for read and
   * played, `receiptTimestamp` for delivery, in seconds; userJid without a device. */
  receipts(spec: { chat?: string; by: Sender; ids: string[]; kind?: 'read' | 'played' | 'delivery' }): void {
    const s = this.current
    if (!s || s.state !== 'open') return
    const chat = spec.chat ?? GROUP
    const participant = this.#participantJid(chat, spec.by)
    const field = spec.kind === 'delivery' ? 'receiptTimestamp' : 'readTimestamp'
    const t = Math.floor(Date.now() / 1000)
    s.ev.emit('message-receipt.update', spec.ids.map(id => ({ key: { remoteJid: chat, id, fromMe: true, participant }, receipt: { userJid: jidNormalizedUser(participant), [field]: t } })))
  }
  /** How a member appears in a group's stanzas: by LID in LID-addressed groups, else by number. */
  #participantJid(chat: string, who: Sender): string {
    const mode = this.groups.get(chat)?.addressingMode ?? 'lid'
    return (mode === 'lid' ? (who.lid ?? who.pn) : (who.pn ?? who.lid))!
  }
  /** Traffic only the phone produces (reference §11). `key-share` is the phone's peer answer to an app-state key
   * request: rc14 stores the keys and still emits the message, `fromMe`, in the account's own chat. */
  phoneActivity(kind: 'receipt' | 'typed' | 'key-share'): void {
    const s = this.current!
    if (kind === 'typed') s.deliver({ from: 'phone', message: { conversation: 'typed on the phone' } })
    else if (kind === 'key-share') {
      const message = onTheWire({ protocolMessage: { type: proto.Message.ProtocolMessage.Type.APP_STATE_SYNC_KEY_SHARE, appStateSyncKeyShare: { keys: [{ keyId: { keyId: Buffer.from('AAAA', 'base64') }, keyData: { keyData: randomBytes(32), timestamp: Date.now() } }] } } })
      s.ev.emit('messages.upsert', { messages: [{ key: { remoteJid: `${this.account.pn}@s.whatsapp.net`, fromMe: true, id: newId() }, category: 'peer', messageTimestamp: Math.floor(Date.now() / 1000), message }], type: 'notify' })
    } else
      s.ev.emit('message-receipt.update', [{ key: { remoteJid: GROUP, id: 'R1', fromMe: true, participant: `${this.account.pn}@s.whatsapp.net` }, receipt: { userJid: `${this.account.pn}@s.whatsapp.net`, readTimestamp: Math.floor(Date.now() / 1000) } }])
  }
}

type Auth = AuthenticationState

export class FakeWaSocket implements WaPort {
  readonly ev = new Bus()
  /** rc14's WebSocketClient, the real one: connected to the fake's server when the world is wired. */
  readonly ws: WebSocketClient
  /** The server's end of `ws` (wired worlds), once connected. */
  peer: PeerSocket | undefined
  /** Messages sent over the wire, by id, until their frame is read. */
  readonly #onWire = new Map<string, WAMessage>()
  #keepAlive: NodeJS.Timeout | undefined
  #lastRead = 0
  /** How many message frames this socket has read (emitted as messages.upsert), and keepalive pings it sent. */
  framesRead = 0
  pings = 0
  user: WaPort['user'] = undefined
  readonly world: FakeWhatsApp
  /** The account this socket is linked as (undefined while it shows QR codes). */
  account: FakeWaAccount | undefined
  readonly auth: Auth
  readonly opts: WaSocketOptions
  state: 'connecting' | 'open' | 'closed' = 'connecting'
  metadataFetches = 0
  /** Chats this socket asked for presence (typing) updates of. */
  readonly subscribed = new Set<string>()
  /** The pairing code this socket was given, if it asked for one. */
  pairingCode: string | undefined
  #qr = 0

  constructor(world: FakeWhatsApp, auth: Auth, opts: WaSocketOptions) {
    this.world = world
    this.auth = auth
    this.opts = opts
    this.account = auth.creds.me?.id ? world.accountOf(auth.creds.me.id) : undefined
    this.ws = new WebSocketClient(world.nextWsUrl(), { ...DEFAULT_CONNECTION_CONFIG, auth })
    this.ws.on('message', (data: Buffer) => this.#frame(String(data)))
    // As rc14 (Socket/socket.js): a WebSocket error or close ends the connection.
    this.ws.on('error', (err: Error) => this.closeWith(new Boom(err.message, { statusCode: DisconnectReason.connectionClosed })))
    this.ws.on('close', () => this.closeWith(new Boom('Connection Terminated', { statusCode: DisconnectReason.connectionClosed })))
  }

  /** rc14's onMessageReceived: any frame read is life for the keepalive; a message frame becomes its upsert. */
  #frame(data: string): void {
    this.#lastRead = Date.now()
    if (data.startsWith('spec:')) {
      this.framesRead++
      const spec = JSON.parse(data.slice(5)) as DeliverSpec
      return this.#upsert([this.#build(spec, false)], spec.type ?? 'notify')
    }
    if (!data.startsWith('msg:')) return
    const id = data.slice(4, data.indexOf(':', 4))
    const msg = this.#onWire.get(id)
    if (!msg) return
    this.#onWire.delete(id)
    this.framesRead++
    this.#upsert([msg], 'notify')
  }

  /** rc14's startKeepAliveRequest: a ping every interval, and the connection ends as lost when nothing was read
   * for the interval plus the grace (rc14: 5 s). */
  #startKeepAlive(): void {
    const every = this.opts.keepAliveIntervalMs ?? 30_000
    this.#lastRead = Date.now()
    this.#keepAlive = setInterval(() => {
      if (Date.now() - this.#lastRead > every + this.world.keepAliveGraceMs) {
        this.closeWith(new Boom('Connection was lost', { statusCode: DisconnectReason.connectionLost }))
      } else if (this.ws.isOpen) {
        this.pings++
        this.ws.send('ping')
      }
    }, every)
  }
  stopKeepAlive(): void {
    clearInterval(this.#keepAlive)
  }

  async deliverOverWire(specs: DeliverSpec[]): Promise<WAMessage[]> {
    await until(() => this.peer !== undefined && this.ws.isOpen)
    const msgs = specs.map(spec => this.#build(spec, false))
    for (const m of msgs) {
      this.#onWire.set(m.key.id!, m)
      const head = `msg:${m.key.id}:`
      this.peer!.send(head.padEnd(FRAME_BYTES, '.'))
    }
    return msgs
  }

  /** The account whose socket this is (the relay's until linked as another). */
  get me(): FakeWaAccount {
    return this.account ?? this.world.account
  }

  boot(): void {
    if (this.state === 'closed') return
    if (this.world.wire) {
      this.ws.connect()
      this.ws.once('open', () => this.#startKeepAlive())
    }
    this.ev.emit('connection.update', { connection: 'connecting' })
    const refusal = this.world.refuseAtConnect
    if (refusal !== undefined) return this.closeWith(new Boom('Connection Failure', { statusCode: refusal, data: { reason: String(refusal), location: 'frc' } }))
    if (!this.auth.creds.registered) return this.nextQr()
    if (!this.world.isLinked(this.me)) return this.closeWith(new Boom('Connection Failure', { statusCode: 401, data: { reason: '401', location: 'frc' } }))
    for (const other of this.world.sockets) if (other !== this && other.me === this.me && other.state === 'open') other.closeWith(new Boom('Stream Errored (conflict)', { statusCode: 440, data: { tag: 'conflict', attrs: { type: 'replaced' } } }))
    // rc14's CB:success: the server's `success` node names the account's LID; creds.update carries it just before
    // `open` (the handler may still be saving it when `open` arrives).
    const a = this.me
    const me = { ...this.auth.creds.me!, lid: `${a.lid}:${a.device}@lid` }
    this.auth.creds.me = me
    this.ev.emit('creds.update', { me })
    this.user = { id: me.id, lid: me.lid, ...(me.name ? { name: me.name } : {}) }
    this.state = 'open'
    this.ev.emit('connection.update', { connection: 'open', receivedPendingNotifications: true })
  }
  nextQr(): void {
    // WhatsApp Web gives up after six codes with 408 "QR refs attempts ended".
    if (++this.#qr > 6) return this.closeWith(new Boom('QR refs attempts ended', { statusCode: DisconnectReason.timedOut }))
    this.ev.emit('connection.update', { qr: `2@fake-qr-${this.#qr},${randomBytes(6).toString('hex')}` })
  }
  pair(account: FakeWaAccount): void {
    const w = this.world
    this.account = account
    this.auth.creds.me = { id: w.jidOf(account), lid: `${account.lid}:${account.device}@lid`, name: account.name }
    this.auth.creds.registered = true
    // The phone shares its app-state keys right after the link; rc14 keeps the last one's id in the creds.
    this.auth.creds.myAppStateKeyId = 'AAAA'
    w.setLinked(account, true)
    this.ev.emit('creds.update', { me: this.auth.creds.me, registered: true, myAppStateKeyId: 'AAAA' })
    // Keys the real handshake would store: proves the key store round trip (app-state keys are protos).
    void Promise.resolve(this.auth.keys.set({
      'pre-key': { '1': { public: randomBytes(32), private: randomBytes(32) } },
      'app-state-sync-key': { AAAA: proto.Message.AppStateSyncKeyData.fromObject({ keyData: randomBytes(32), timestamp: 1 }) },
    })).then(() => this.closeWith(new Boom('Stream Errored (restart required)', { statusCode: DisconnectReason.restartRequired })))
  }
  closeWith(error: Boom): void {
    if (this.state === 'closed') return
    this.state = 'closed'
    this.stopKeepAlive()
    void this.ws.close()
    this.ev.emit('connection.update', { connection: 'close', lastDisconnect: { error, date: new Date() } })
    this.ev.removeAllListeners('connection.update')
  }
  #live(): void {
    if (this.state !== 'open') throw CLOSED()
  }

  deliver(spec: DeliverSpec, stub = false): WAMessage {
    const msg = this.#build(spec, stub)
    this.#upsert([msg], spec.type ?? 'notify')
    return msg
  }
  deliverBatch(specs: DeliverSpec[], type: 'notify' | 'append'): WAMessage[] {
    const msgs = specs.map(spec => this.#build(spec, false))
    this.#upsert(msgs, type)
    return msgs
  }
  #build(spec: DeliverSpec, stub: boolean): WAMessage {
    const w = this.world
    const chat = spec.chat ?? GROUP
    let key: WAMessageKey
    if (spec.from === 'phone') {
      // The account's own phone (device 0): in a LID-addressed group rc14 names it by its LID, the number
      // as participantAlt, like any other member (fromMe judged against creds.me.id and creds.me.lid).
      const lidMode = (w.groups.get(chat)?.addressingMode ?? 'pn') === 'lid'
      const lid = `${this.me.lid}@lid`
      const pn = `${this.me.pn}@s.whatsapp.net`
      key = { remoteJid: chat, fromMe: true, id: spec.id ?? newId(), participant: lidMode ? lid : pn, participantAlt: lidMode ? pn : lid, addressingMode: (lidMode ? 'lid' : 'pn') as WAMessageKey['addressingMode'] }
    } else {
      const mode = spec.addressing ?? (spec.from.lid ? 'lid' : 'pn')
      const participant = mode === 'lid' ? spec.from.lid : spec.from.pn
      const alt = mode === 'lid' ? spec.from.pn : spec.from.lid
      key = { remoteJid: chat, fromMe: false, id: spec.id ?? newId(), participant, ...(alt && !spec.noAlt ? { participantAlt: alt } : {}), addressingMode: mode as WAMessageKey['addressingMode'] }
    }
    return {
      key,
      messageTimestamp: spec.timestamp ?? Math.floor(Date.now() / 1000),
      ...(spec.pushName === null ? {} : { pushName: spec.pushName ?? 'Robin' }),
      ...(stub
        ? { messageStubType: proto.WebMessageInfo.StubType.CIPHERTEXT, messageStubParameters: ['Message absent from node'] }
        : { message: onTheWire(spec.message) }),
    }
  }
  /** What rc14 emits for received messages: the upsert, then (processMessage) the events derived from each one:
   * messages.reaction for a reaction, messages.update for an edit or a revoke. */
  #upsert(messages: WAMessage[], type: 'notify' | 'append'): void {
    this.ev.emit('messages.upsert', { messages, type })
    for (const msg of messages) {
      this.#processed(msg)
      const p = msg.message?.protocolMessage
      if (p?.type === proto.Message.ProtocolMessage.Type.REVOKE) {
        this.ev.emit('messages.update', [{ key: { ...msg.key, id: p.key?.id ?? null }, update: { message: null, messageStubType: proto.WebMessageInfo.StubType.REVOKE, key: msg.key } }])
      }
      if (p?.type === proto.Message.ProtocolMessage.Type.MESSAGE_EDIT) {
        this.ev.emit('messages.update', [{ key: { ...msg.key, id: p.key?.id ?? null }, update: { message: { editedMessage: { message: p.editedMessage ?? null } }, messageTimestamp: p.timestampMs ?? null } }])
      }
    }
  }
  /** rc14 on a group notification: a stub message upsert, then group-participants.update (process-message.js). */
  participantsChanged(groupId: string, action: 'add' | 'remove' | 'promote' | 'demote', participants: GroupMetadata['participants'], by?: string): void {
    const T = proto.WebMessageInfo.StubType
    const stub = { add: T.GROUP_PARTICIPANT_ADD, remove: T.GROUP_PARTICIPANT_REMOVE, promote: T.GROUP_PARTICIPANT_PROMOTE, demote: T.GROUP_PARTICIPANT_DEMOTE }[action]
    // Whoever did it: an admin if the group has one, else another member (the fake does not model who may).
    const others = (this.world.groups.get(groupId)?.participants ?? []).filter(p => !participants.some(q => q.id === p.id))
    const author = by ?? (others.find(p => p.admin) ?? others.find(p => p.id !== `${this.world.account.lid}@lid`))?.id ?? ''
    this.ev.emit('messages.upsert', {
      type: 'notify',
      messages: [{ key: { remoteJid: groupId, fromMe: false, id: newId(), participant: author }, messageTimestamp: Math.floor(Date.now() / 1000), messageStubType: stub, messageStubParameters: participants.map(p => JSON.stringify(p)) }],
    })
    this.ev.emit('group-participants.update', { id: groupId, author, participants: structuredClone(participants), action })
  }

  /** What rc14's processMessage emits after the upsert of the same message (Utils/process-message.js): a reaction
   * comes again as `messages.reaction`, target key and the reaction with the reactor's key; `text: ''` is a removal. */
  #processed(msg: WAMessage): void {
    const r = msg.message?.reactionMessage
    if (r?.key) this.ev.emit('messages.reaction', [{ key: r.key, reaction: { ...r, key: msg.key } }])
  }

  sendMessage: WASocket['sendMessage'] = async (jid, content, options) => {
    this.#live()
    const fail = this.world.takeFailure('sendMessage')
    if (fail) throw fail
    if (jid.endsWith('@g.us')) {
      // Like relayMessage: the cache first, the server only when the cache has nothing.
      const meta = (await this.opts.cachedGroupMetadata(jid)) ?? (await this.groupMetadata(jid))
      const g = this.world.groups.get(jid)
      if (!g || !meta) throw iqError('item-not-found', 404)
      if (!this.world.isMember(jid, this.me)) throw iqError('forbidden', 403)
      const mentions = (content as { mentions?: string[] }).mentions ?? []
      for (const m of mentions) if (!g.participants.some(p => p.id === m)) throw new Error(`fake: mention ${m} is not a participant id of ${jid}`)
    }
    const msg = await generateWAMessage(jid, content, {
      userJid: this.world.jidOf(this.me),
      upload: async path => ({ mediaUrl: await this.world.putFile(path), directPath: undefined as unknown as string }),
      ...(options?.messageId ? { messageId: options.messageId } : {}),
      ...(options?.quoted ? { quoted: options.quoted } : {}),
    })
    msg.message = onTheWire(msg.message!)
    const revoke = (content as { delete?: WAMessageKey }).delete
    // Only an admin's revoke of someone else's message takes effect; the sender learns nothing either way.
    if (revoke?.id && (revoke.fromMe || this.world.isAdmin(jid, 'self'))) this.world.revoked.add(revoke.id)
    const plain = Object.fromEntries(Object.entries(content).map(([k, v]) => [k, Buffer.isBuffer(v) ? `<${v.length} bytes>` : v]))
    this.world.sent.push({ by: this.me.pn, jid, id: msg.key.id!, content: plain, options: { ...(options?.messageId ? { messageId: options.messageId } : {}), ...(options?.quoted?.key.id ? { quotedId: options.quoted.key.id } : {}) }, message: msg })
    // Baileys emits its own sends as `append` on the next tick: possibly before this promise resolves.
    if (this.world.echoOwnSends) {
      this.world.echo(() => {
        const echo = { ...msg, key: { ...msg.key, fromMe: true } }
        this.ev.emit('messages.upsert', { messages: [echo], type: 'append' })
        this.#processed(echo)
      })
    }
    // Every other account in the group gets it as a member's message.
    if (jid.endsWith('@g.us')) {
      const from = this.world.asMember(this.me)
      for (const other of [this.world.account, ...this.world.others]) {
        const o = other === this.me ? undefined : this.world.socketOf(other)
        if (!o || o.state !== 'open' || !this.world.isMember(jid, other)) continue
        const theirs: WAMessage = { ...msg, key: { remoteJid: jid, fromMe: false, id: msg.key.id!, participant: from.lid!, participantAlt: from.pn!, addressingMode: 'lid' as WAMessageKey['addressingMode'] }, pushName: this.me.name }
        this.world.echo(() => {
          o.ev.emit('messages.upsert', { messages: [theirs], type: 'notify' })
          o.#processed(theirs)
        })
      }
    }
    return msg
  }
  /** rc14's low-level send. Only its peer use is modelled: a protocol message to the account's own phone. */
  relayMessage: WASocket['relayMessage'] = async (jid, message, opts) => {
    this.#live()
    const attrs = (opts.additionalAttributes ?? {}) as Record<string, string>
    if (attrs.category !== 'peer') throw new Error('fake: relayMessage is only modelled for peer messages; send to groups with sendMessage')
    this.world.peerSent.push({ jid, message: onTheWire(message), attrs })
    return opts.messageId ?? newId()
  }
  groupMetadata: WASocket['groupMetadata'] = async jid => {
    this.#live()
    this.metadataFetches++
    const fail = this.world.takeFailure('groupMetadata')
    if (fail) throw fail
    const g = this.world.groups.get(jid)
    if (!g) throw iqError('item-not-found', 404)
    // A group the account has left (or was removed from) no longer answers it.
    if (!this.world.isMember(jid, this.me)) throw iqError('forbidden', 403)
    return structuredClone(g)
  }
  groupFetchAllParticipating: WASocket['groupFetchAllParticipating'] = async () => {
    this.#live()
    const mine = [...this.world.groups.values()].filter(g => this.world.isMember(g.id, this.me))
    return Object.fromEntries(mine.map(g => [g.id, structuredClone(g)]))
  }
  groupCreate: WASocket['groupCreate'] = async (subject, participants) => {
    this.#live()
    if (subject.length > 100) throw iqError('bad-request', 400)
    const id = this.world.addGroup({ subject, members: participants.map(p => ({ pn: p })) })
    const meta = structuredClone(this.world.groups.get(id)!)
    this.ev.emit('groups.upsert', [meta])
    return meta
  }
  groupUpdateSubject: WASocket['groupUpdateSubject'] = async (jid, subject) => {
    this.#live()
    if ([...subject].length > 100) throw iqError('bad-request', 400)
    this.world.editInfo(jid, { subject })
  }
  /** rc14 sends `<ephemeral expiration>` or `<not_ephemeral>` (groups.js); WhatsApp refuses it like any info edit in
   * a `restrict` group, and tells every device of the group, as the EPHEMERAL_SETTING message rc14 makes of it. */
  groupToggleEphemeral: WASocket['groupToggleEphemeral'] = async (jid, expiration) => {
    this.#live()
    this.world.editInfo(jid, { ephemeralDuration: expiration || undefined })
    queueMicrotask(() => this.world.timerChanged(jid, expiration, 'phone'))
  }
  groupUpdateDescription: WASocket['groupUpdateDescription'] = async (jid, desc) => {
    this.#live()
    this.world.editInfo(jid, { desc: desc ?? '' })
  }
  updateProfilePicture: WASocket['updateProfilePicture'] = async (jid, content) => {
    this.#live()
    if (!Buffer.isBuffer(content)) throw new Error('fake: updateProfilePicture is only modelled with a Buffer')
    this.world.editInfo(jid, {})
    this.world.ownPicture(jid, content)
  }
  removeProfilePicture: WASocket['removeProfilePicture'] = async jid => {
    this.#live()
    this.world.editInfo(jid, {})
    this.world.ownPicture(jid, null)
  }
  profilePictureUrl: WASocket['profilePictureUrl'] = async jid => {
    this.#live()
    const url = this.world.pictureUrl(jid)
    // rc14 queries the server, which answers a person without a picture (or hiding it) with an error (404, 401).
    if (!url && !jid.endsWith('@g.us')) throw iqError('item-not-found', 404)
    return url
  }
  groupInviteCode: WASocket['groupInviteCode'] = async jid => {
    this.#live()
    if (!this.world.groups.has(jid)) throw iqError('item-not-found', 404)
    const code = `INV${jid.slice(-10, -5)}`
    this.world.invites.set(code, jid)
    return code
  }
  groupAcceptInvite: WASocket['groupAcceptInvite'] = async code => {
    this.#live()
    const fail = this.world.takeFailure('groupAcceptInvite')
    if (fail) throw fail
    const jid = this.world.invites.get(code)
    const g = jid ? this.world.groups.get(jid) : undefined
    if (!jid || !g) throw iqError('item-not-found', 404)
    const me = `${this.me.lid}@lid`
    if (!g.participants.some(p => p.lid === me)) g.participants.push({ id: me, lid: me, admin: null })
    return jid
  }
  readMessages: WASocket['readMessages'] = async keys => {
    this.#live()
    this.world.reads.push({ by: this.me.pn, keys })
  }
  presenceSubscribe: WASocket['presenceSubscribe'] = async jid => {
    this.#live()
    this.subscribed.add(jid)
  }
  sendPresenceUpdate: WASocket['sendPresenceUpdate'] = async (type, jid) => {
    this.#live()
    this.world.presenceSent.push({ by: this.me.pn, type, jid })
  }
  requestPairingCode: WASocket['requestPairingCode'] = async phone => {
    if (this.state === 'closed') throw CLOSED()
    if (!/^\d{7,15}$/.test(phone)) throw iqError('bad-request', 400)
    this.world.pairingRequests.push(phone)
    this.pairingCode = 'K7QW2M9X'
    return this.pairingCode
  }
  updateMediaMessage: WASocket['updateMediaMessage'] = async msg => {
    this.#live()
    return this.world.reupload(msg)
  }
  logout: WASocket['logout'] = async () => {
    this.#live()
    this.world.setLinked(this.me, false)
    this.closeWith(new Boom('Intentional Logout', { statusCode: DisconnectReason.loggedOut }))
  }
  end: WASocket['end'] = async () => {
    if (this.state === 'closed') return
    this.closeWith(new Boom('Connection Closed', { statusCode: DisconnectReason.connectionClosed }))
  }
}

let seq = 0
const newId = () => `AC${Date.now().toString(16).toUpperCase()}${(++seq).toString(16).toUpperCase()}`

/** Waits for a condition of the fake's own (a connection being made), re-checked on each turn of the event loop. */
async function until(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error('fake WhatsApp: timed out waiting for its WebSocket')
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}
