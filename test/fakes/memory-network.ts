// An in-memory network that implements the adapter contract, for the core's own tests: groups, logins,
// sends and inbound events, with failures on demand. It knows nothing of Signal or WhatsApp wire formats.
import { DeliveryError, NotPermitted, UserError } from '../../src/core/errors.ts'
import { plainText, type Delivery, type InboundEvent, type MessageContent, type RemoteNetworkId, type SendResult } from '../../src/core/model.ts'
import type { ConnectionState, GroupInfo, Login, LoginRequest, LoginUi, NetworkContext, RemoteNetwork } from '../../src/core/network.ts'
import { PATIENCE_MS } from '../support/patience.ts'

export interface MemoryGroup {
  id: string
  name: string
  topic?: string
  members: string[]
  inviteLink: string
  /** Only admins may change the name, topic and picture, and the relay account is none. */
  restricted?: boolean
}

export interface Sent {
  delivery: Delivery
  remoteId: string
  /** The text as a member of the group would see it. */
  text: string
  /** When the network took it (Date.now()). */
  at: number
}

/** A send the network refused (see failNext), and when. */
export interface Refusal {
  delivery: Delivery
  disposition: 'transient' | 'permanent' | 'hold'
  at: number
}

type Failure = { disposition: 'transient' | 'permanent' | 'hold'; message: string; times: number; retryAfterMs?: number }

export class MemoryNetwork implements RemoteNetwork {
  readonly network: RemoteNetworkId
  readonly groups = new Map<string, MemoryGroup>()
  readonly sent: Sent[] = []
  readonly refused: Refusal[] = []
  private ctx: NetworkContext | undefined
  private readonly states = new Map<string, ConnectionState>()
  private failures: Failure[] = []
  private counter = 0
  private waiters: Array<() => void> = []
  /** Logins waiting for the test to "scan" their code. */
  private pendingLogins: Array<(address: string) => void> = []

  constructor(network: RemoteNetworkId) {
    this.network = network
  }

  async start(ctx: NetworkContext): Promise<void> {
    this.ctx = ctx
    for (const l of await ctx.logins.list(this.network)) {
      if (l.state !== 'logged_out') await this.setState(l.id, 'connected')
    }
  }

  async stop(): Promise<void> {
    this.ctx = undefined
  }

  private need(): NetworkContext {
    if (!this.ctx) throw new Error('memory network not started')
    return this.ctx
  }

  state(loginId: string): ConnectionState {
    return this.states.get(loginId) ?? 'disconnected'
  }

  async setState(loginId: string, state: ConnectionState, message?: string): Promise<void> {
    this.states.set(loginId, state)
    await this.need().reportState(loginId, state, message)
  }

  // ---- test controls --------------------------------------------------------------------------

  addGroup(name: string, members: string[] = []): MemoryGroup {
    const id = `${this.network}-group-${++this.counter}`
    const g = { id, name, members, inviteLink: `https://invite.example/${id}` }
    this.groups.set(id, g)
    return g
  }

  /** Only admins may edit the group's info now (and the relay is none), or everyone may again: the network says so,
   * as Signal's group updates and WhatsApp's groups.update do. */
  restrictInfo(groupId: string, restricted: boolean): void {
    this.groups.get(groupId)!.restricted = restricted
    this.need().permissionsChanged(this.network, groupId)
  }

  /** Someone in the group changes its name or topic. */
  async changeInfo(groupId: string, from: { id: string; name: string }, change: { name?: string; topic?: string }): Promise<void> {
    const g = this.groups.get(groupId)!
    Object.assign(g, change)
    await this.inbound({
      kind: 'chat_update', chat: { network: this.network, id: groupId }, sender: { network: this.network, id: from.id, displayName: from.name },
      remoteId: `${this.network}-info-${++this.counter}`, timestamp: Date.now(), ...change,
    })
  }

  /** The next `times` sends fail this way (a transient failure may ask for a retry no sooner than `retryAfterMs`). */
  failNext(disposition: Failure['disposition'], message: string, times = 1, opts: { retryAfterMs?: number } = {}): void {
    this.failures.push({ disposition, message, times, ...opts })
  }

  /** What was sent to one group, in order. */
  sentTo(chatId: string): Sent[] {
    return this.sent.filter(x => x.delivery.target.chatId === chatId)
  }

  /** Resolves with the first truthy value of `check`, re-evaluated after every send. */
  async waitFor<T>(check: () => T | undefined | null | false, what = 'a condition', timeoutMs = PATIENCE_MS): Promise<T> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const value = check()
      if (value) return value
      if (Date.now() > deadline) throw new Error(`${this.network}: timed out waiting for ${what}; sent: ${JSON.stringify(this.sent.map(s => s.text))}`)
      await new Promise<void>(resolve => {
        this.waiters.push(resolve)
        setTimeout(resolve, 50)
      })
    }
  }

  /** Resolves once `count` sends to one group have been recorded. */
  waitForSentTo(chatId: string, count: number, timeoutMs = PATIENCE_MS): Promise<Sent[]> {
    return this.waitFor(() => this.sentTo(chatId).length >= count && this.sentTo(chatId), `${count} sends to ${chatId}`, timeoutMs)
  }

  /** The person scans the code shown by a pending `login`. */
  scan(address: string): void {
    const next = this.pendingLogins.shift()
    if (!next) throw new Error('no login is waiting for a scan')
    next(address)
  }

  get loginsWaiting(): number {
    return this.pendingLogins.length
  }

  /** Something a person typed in a group: goes through the bridge like a real inbound event. */
  async say(groupId: string, from: { id: string; name: string }, text: string, extra: { replyTo?: string; remoteId?: string; loginId?: string } = {}): Promise<string> {
    const remoteId = extra.remoteId ?? `${this.network}-in-${++this.counter}`
    await this.inbound({
      kind: 'message', chat: { network: this.network, id: groupId }, sender: { network: this.network, id: from.id, displayName: from.name },
      remoteId, timestamp: Date.now(), content: { kind: 'text', body: plainText(text), attachments: [] },
      ...(extra.replyTo ? { replyTo: extra.replyTo } : {}), ...(extra.loginId ? { loginId: extra.loginId } : {}),
    })
    return remoteId
  }

  async inbound(event: InboundEvent): Promise<void> {
    await this.need().receive(event)
  }

  /** Resolves once `count` sends have been recorded. */
  async waitForSent(count: number, timeoutMs = PATIENCE_MS): Promise<Sent[]> {
    const deadline = Date.now() + timeoutMs
    while (this.sent.length < count) {
      if (Date.now() > deadline) throw new Error(`${this.network}: expected ${count} sends, got ${this.sent.length}: ${JSON.stringify(this.sent.map(s => s.text))}`)
      await new Promise<void>(resolve => {
        this.waiters.push(resolve)
        setTimeout(resolve, 50)
      })
    }
    return this.sent
  }

  // ---- the contract -----------------------------------------------------------------------------

  async send(d: Delivery): Promise<SendResult> {
    if (d.target.loginId && this.state(d.target.loginId) === 'logged_out') {
      throw new DeliveryError('hold', 'The relay account is logged out.')
    }
    const f = this.failures[0]
    if (f) {
      if (--f.times <= 0) this.failures.shift()
      this.refused.push({ delivery: d, disposition: f.disposition, at: Date.now() })
      throw new DeliveryError(f.disposition, f.message, f.retryAfterMs !== undefined ? { retryAfterMs: f.retryAfterMs } : {})
    }
    const group = this.groups.get(d.target.chatId)
    if (!group) throw new DeliveryError('permanent', 'The group does not exist.')
    const login = d.target.loginId ? await this.need().logins.get(d.target.loginId) : undefined
    // A personal account posts only where it is a member (relay accounts are taken to be in every group they relay).
    if (login?.kind === 'personal' && !group.members.includes(login.address)) {
      this.refused.push({ delivery: d, disposition: 'permanent', at: Date.now() })
      throw new DeliveryError('permanent', 'The account is not a member of the group.', { loginUnusable: true })
    }
    if (d.kind === 'chat_update') return this.changeByRelay(d)
    const remoteId = `${this.network}-out-${++this.counter}`
    this.sent.push({ delivery: d, remoteId, text: describe(d), at: Date.now() })
    for (const w of this.waiters.splice(0)) w()
    return { remoteId, authorId: login?.kind === 'personal' ? login.personId : (d.target.loginId ?? 'relay'), sentAt: Date.now() }
  }

  /** The relay changes the group's info: refused where only admins may; otherwise done, and (as WhatsApp does)
   * every device of the group hears of it, the relay's own included: the bridge gets its own change back. */
  private async changeByRelay(d: Extract<Delivery, { kind: 'chat_update' }>): Promise<SendResult> {
    const g = this.groups.get(d.target.chatId)!
    if (g.restricted) throw new NotPermitted('only admins may edit the group info, and the relay account is no admin', 'Make the relay account an admin, and I will make the change then.')
    if (d.field === 'name') g.name = String(d.value)
    if (d.field === 'topic') g.topic = String(d.value)
    this.sent.push({ delivery: d, remoteId: '', text: describe(d), at: Date.now() })
    for (const w of this.waiters.splice(0)) w()
    const relay = d.target.loginId ? await this.need().logins.get(d.target.loginId) : undefined
    if (d.field !== 'avatar') {
      setImmediate(() => void this.inbound({
        kind: 'chat_update', chat: { network: this.network, id: g.id },
        sender: { network: this.network, id: relay?.personId ?? 'relay', displayName: relay?.displayName ?? 'Relay' },
        remoteId: `${this.network}-info-${++this.counter}`, timestamp: Date.now(), [d.field]: d.value,
      }).catch(() => {}))
    }
    return {}
  }

  async login(request: LoginRequest, ui: LoginUi): Promise<Login> {
    const ctx = this.need()
    await ui.showQr(`memory://${this.network}/login/${++this.counter}`, 'Scan this code.')
    const address = await new Promise<string>(resolve => this.pendingLogins.push(resolve))
    const login = await ctx.logins.save({
      network: this.network, kind: request.kind, address, personId: `person-${address}`, displayName: `Relay ${address}`,
      ownerMxid: request.ownerMxid, metadata: {},
    })
    await this.setState(login.id, 'connected')
    return login
  }

  async logout(login: Login): Promise<void> {
    this.states.set(login.id, 'logged_out')
  }

  async listGroups(): Promise<GroupInfo[]> {
    return [...this.groups.values()].map(g => ({ id: g.id, name: g.name, memberCount: g.members.length }))
  }

  async joinGroup(_login: Login, idOrLink: string): Promise<GroupInfo> {
    const g = [...this.groups.values()].find(x => x.id === idOrLink || x.inviteLink === idOrLink)
    if (!g) throw new UserError(`I am not in a group “${idOrLink}”.`)
    return { id: g.id, name: g.name, topic: g.topic ?? '', memberCount: g.members.length, inviteLink: g.inviteLink }
  }

  async createGroup(_login: Login, name: string): Promise<GroupInfo> {
    const g = this.addGroup(name)
    return { id: g.id, name: g.name, memberCount: 1, inviteLink: g.inviteLink }
  }
}

function textOf(c: MessageContent): string {
  return c.body.text + c.attachments.map(a => ` [${a.kind}: ${a.filename}]`).join('')
}

function describe(d: Delivery): string {
  switch (d.kind) {
    case 'message':
      return `${textOf(d.content)}${d.replyTo ? ` (reply to ${d.replyTo.remoteId})` : ''}`
    case 'edit':
      return `edit ${d.of.remoteId}: ${textOf(d.content)}`
    case 'delete':
      return `delete ${d.of.remoteId}`
    case 'reaction':
      return `${d.removed ? 'unreact' : 'react'} ${d.emoji} on ${d.of.remoteId}`
    case 'chat_update':
      return `set ${d.field}: ${typeof d.value === 'string' || d.value === null ? String(d.value) : typeof d.value === 'number' ? `${d.value} s` : `picture ${d.value.mediaId}`}`
  }
}
