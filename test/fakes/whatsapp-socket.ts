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
import {
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
export interface DeliverSpec {
  chat?: string
  id?: string
  /** A group member (LID and/or PN JIDs), or 'phone' for the relay account's own phone (fromMe, device 0). */
  from: Sender | 'phone'
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

export class FakeWhatsApp {
  readonly account = { pn: '15550100000', lid: '201000000000001', device: 7, name: 'Relay' }
  readonly groups = new Map<string, GroupMetadata>()
  readonly invites = new Map<string, string>()
  readonly sockets: FakeWaSocket[] = []
  readonly sent: SentRecord[] = []
  readonly peerSent: PeerRecord[] = []
  /** Whether the phone still lists this linked device (false after an unlink or logout). */
  linked = true
  echoOwnSends = true
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

  get current(): FakeWaSocket | undefined {
    return this.sockets.at(-1)
  }
  get ownJid() {
    return `${this.account.pn}:${this.account.device}@s.whatsapp.net`
  }

  async start(): Promise<void> {
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
    await new Promise<void>(ok => (this.#cdn ? this.#cdn.close(() => ok()) : ok()))
    this.#cdn = undefined
  }

  // ---- groups --------------------------------------------------------------------------------------
  addGroup(spec: { id?: string; subject: string; members: Array<Sender & { admin?: boolean }>; addressingMode?: 'lid' | 'pn' }): string {
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
  /** Someone joins (e.g. by the invite link). */
  addMember(groupId: string, member: Sender): void {
    const g = this.groups.get(groupId)
    if (!g) throw new Error(`fake: no group ${groupId}`)
    const id = (g.addressingMode === 'pn' ? (member.pn ?? member.lid) : (member.lid ?? member.pn))!
    g.participants.push({ id, ...(member.lid ? { lid: member.lid } : {}), ...(member.pn ? { phoneNumber: member.pn } : {}), admin: null })
  }
  removeSelfFrom(groupId: string): void {
    const g = this.groups.get(groupId)
    if (g) g.participants = g.participants.filter(p => p.lid !== `${this.account.lid}@lid`)
  }
  renameGroup(groupId: string, subject: string): void {
    const g = this.groups.get(groupId)
    if (g) g.subject = subject
    this.current?.ev.emit('groups.update', [{ id: groupId, subject, subjectTime: Math.floor(Date.now() / 1000) }])
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
  scanQr(): void {
    const s = this.current
    if (!s) throw new Error('No socket is waiting for a QR scan.')
    s.pair()
  }
  acceptPairingCode(): void {
    this.scanQr()
  }
  rotateQr(): void {
    this.current?.nextQr()
  }
  deliver(spec: DeliverSpec): WAMessage {
    const s = this.current
    if (!s) throw new Error('No socket to deliver to.')
    return s.deliver(spec)
  }
  undecryptable(spec: Omit<DeliverSpec, 'message'>): WAMessage {
    return this.current!.deliver({ ...spec, message: {} }, true)
  }
  /** Closes the live socket with a disconnect reason (reference §3/§12). */
  disconnect(code: number, opts: { message?: string; data?: unknown } = {}): void {
    if (code === 401) this.linked = false
    this.current?.closeWith(new Boom(opts.message ?? 'Stream Errored', { statusCode: code, data: opts.data }))
  }
  unlinkedLive(): void {
    this.disconnect(401, { message: 'Stream Errored (conflict)', data: { tag: 'conflict', attrs: { type: 'device_removed' } } })
  }
  replaced(): void {
    this.disconnect(440, { message: 'Stream Errored (conflict)', data: { tag: 'conflict', attrs: { type: 'replaced' } } })
  }
  lidMapping(lid: string, pn: string): void {
    this.current?.ev.emit('lid-mapping.update', { lid, pn })
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
  user: WaPort['user'] = undefined
  readonly world: FakeWhatsApp
  readonly auth: Auth
  readonly opts: WaSocketOptions
  state: 'connecting' | 'open' | 'closed' = 'connecting'
  metadataFetches = 0
  #qr = 0

  constructor(world: FakeWhatsApp, auth: Auth, opts: WaSocketOptions) {
    this.world = world
    this.auth = auth
    this.opts = opts
  }

  boot(): void {
    if (this.state === 'closed') return
    this.ev.emit('connection.update', { connection: 'connecting' })
    if (!this.auth.creds.registered) return this.nextQr()
    if (!this.world.linked) return this.closeWith(new Boom('Connection Failure', { statusCode: 401, data: { reason: '401', location: 'frc' } }))
    for (const other of this.world.sockets) if (other !== this && other.state === 'open') other.closeWith(new Boom('Stream Errored (conflict)', { statusCode: 440, data: { tag: 'conflict', attrs: { type: 'replaced' } } }))
    const me = this.auth.creds.me!
    this.user = { id: me.id, ...(me.lid ? { lid: me.lid } : {}), ...(me.name ? { name: me.name } : {}) }
    this.state = 'open'
    this.ev.emit('connection.update', { connection: 'open', receivedPendingNotifications: true })
  }
  nextQr(): void {
    // WhatsApp Web gives up after six codes with 408 "QR refs attempts ended".
    if (++this.#qr > 6) return this.closeWith(new Boom('QR refs attempts ended', { statusCode: DisconnectReason.timedOut }))
    this.ev.emit('connection.update', { qr: `2@fake-qr-${this.#qr},${randomBytes(6).toString('hex')}` })
  }
  pair(): void {
    const w = this.world
    this.auth.creds.me = { id: w.ownJid, lid: `${w.account.lid}:${w.account.device}@lid`, name: w.account.name }
    this.auth.creds.registered = true
    // The phone shares its app-state keys right after the link; rc14 keeps the last one's id in the creds.
    this.auth.creds.myAppStateKeyId = 'AAAA'
    w.linked = true
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
    this.ev.emit('connection.update', { connection: 'close', lastDisconnect: { error, date: new Date() } })
    this.ev.removeAllListeners('connection.update')
  }
  #live(): void {
    if (this.state !== 'open') throw CLOSED()
  }

  deliver(spec: DeliverSpec, stub = false): WAMessage {
    const w = this.world
    const chat = spec.chat ?? GROUP
    let key: WAMessageKey
    if (spec.from === 'phone') key = { remoteJid: chat, fromMe: true, id: spec.id ?? newId(), participant: `${w.account.pn}@s.whatsapp.net` }
    else {
      const mode = spec.addressing ?? (spec.from.lid ? 'lid' : 'pn')
      const participant = mode === 'lid' ? spec.from.lid : spec.from.pn
      const alt = mode === 'lid' ? spec.from.pn : spec.from.lid
      key = { remoteJid: chat, fromMe: false, id: spec.id ?? newId(), participant, ...(alt && !spec.noAlt ? { participantAlt: alt } : {}), addressingMode: mode as WAMessageKey['addressingMode'] }
    }
    const msg: WAMessage = {
      key,
      messageTimestamp: spec.timestamp ?? Math.floor(Date.now() / 1000),
      ...(spec.pushName === null ? {} : { pushName: spec.pushName ?? 'Robin' }),
      ...(stub
        ? { messageStubType: proto.WebMessageInfo.StubType.CIPHERTEXT, messageStubParameters: ['Message absent from node'] }
        : { message: onTheWire(spec.message) }),
    }
    this.ev.emit('messages.upsert', { messages: [msg], type: spec.type ?? 'notify' })
    return msg
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
      if (!g.participants.some(p => p.lid === `${this.world.account.lid}@lid`)) throw iqError('forbidden', 403)
      const mentions = (content as { mentions?: string[] }).mentions ?? []
      for (const m of mentions) if (!g.participants.some(p => p.id === m)) throw new Error(`fake: mention ${m} is not a participant id of ${jid}`)
    }
    const msg = await generateWAMessage(jid, content, {
      userJid: this.world.ownJid,
      upload: async path => ({ mediaUrl: await this.world.putFile(path), directPath: undefined as unknown as string }),
      ...(options?.messageId ? { messageId: options.messageId } : {}),
      ...(options?.quoted ? { quoted: options.quoted } : {}),
    })
    msg.message = onTheWire(msg.message!)
    const plain = Object.fromEntries(Object.entries(content).map(([k, v]) => [k, Buffer.isBuffer(v) ? `<${v.length} bytes>` : v]))
    this.world.sent.push({ jid, id: msg.key.id!, content: plain, options: { ...(options?.messageId ? { messageId: options.messageId } : {}), ...(options?.quoted?.key.id ? { quotedId: options.quoted.key.id } : {}) }, message: msg })
    // Baileys emits its own sends as `append` on the next tick: possibly before this promise resolves.
    if (this.world.echoOwnSends) process.nextTick(() => this.ev.emit('messages.upsert', { messages: [{ ...msg, key: { ...msg.key, fromMe: true } }], type: 'append' }))
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
    return structuredClone(g)
  }
  groupFetchAllParticipating: WASocket['groupFetchAllParticipating'] = async () => {
    this.#live()
    const mine = [...this.world.groups.values()].filter(g => g.participants.some(p => p.lid === `${this.world.account.lid}@lid`))
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
    const me = `${this.world.account.lid}@lid`
    if (!g.participants.some(p => p.lid === me)) g.participants.push({ id: me, lid: me, admin: null })
    return jid
  }
  readMessages: WASocket['readMessages'] = async () => {
    this.#live()
  }
  requestPairingCode: WASocket['requestPairingCode'] = async phone => {
    if (this.state === 'closed') throw CLOSED()
    if (!/^\d{7,15}$/.test(phone)) throw iqError('bad-request', 400)
    return 'K7QW2M9X'
  }
  updateMediaMessage: WASocket['updateMediaMessage'] = async msg => {
    this.#live()
    return this.world.reupload(msg)
  }
  logout: WASocket['logout'] = async () => {
    this.#live()
    this.world.linked = false
    this.closeWith(new Boom('Intentional Logout', { statusCode: DisconnectReason.loggedOut }))
  }
  end: WASocket['end'] = async () => {
    if (this.state === 'closed') return
    this.closeWith(new Boom('Connection Closed', { statusCode: DisconnectReason.connectionClosed }))
  }
}

let seq = 0
const newId = () => `AC${Date.now().toString(16).toUpperCase()}${(++seq).toString(16).toUpperCase()}`
