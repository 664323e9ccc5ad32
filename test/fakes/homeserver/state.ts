// Users, rooms (state + timeline) and the authorisation rules Synapse applies to them. Every checked
// operation throws MatrixFault with the status and errcode Synapse gives; unchecked `append` is the one
// place events are created, so every event reaches the `onEvent` hook (the transaction pusher) in order.
import { checkEventSize, checkMemberDisplayName, checkProfileDisplayName, pduOf } from './limits.ts'
import { MatrixFault, newEventId, newRoomId, type AppserviceRegistration, type FakeEvent } from './types.ts'

export interface UserRecord {
  id: string
  displayname?: string
  avatar_url?: string
}

export interface Room {
  id: string
  version: '10' | '11'
  /** `${type}\u0000${stateKey}` → event */
  state: Map<string, FakeEvent>
  timeline: FakeEvent[]
}

export interface AppendOptions {
  stateKey?: string
  redacts?: string
  ts?: number
  /** The client's transaction id, echoed in unsigned.transaction_id to the sending appservice. */
  txnId?: string
}

export interface StoredMeta {
  txnId?: string
}

export interface CreateRoomInput {
  name?: string
  topic?: string
  invite?: string[]
  is_direct?: boolean
  preset?: 'private_chat' | 'trusted_private_chat' | 'public_chat'
  initial_state?: { type: string; state_key?: string; content: Record<string, unknown> }[]
  power_level_content_override?: Record<string, unknown>
  /** Extra keys of m.room.create (e.g. `predecessor`). */
  creation_content?: Record<string, unknown>
  room_version?: string
}

const key = (type: string, stateKey: string) => `${type}\u0000${stateKey}`

export class HomeserverState {
  readonly domain: string
  readonly registration: AppserviceRegistration
  /** Further registrations that receive no transactions (a double-puppeting one): only their tokens are honoured. */
  readonly otherRegistrations: AppserviceRegistration[] = []
  readonly botUserId: string
  readonly users = new Map<string, UserRecord>()
  readonly rooms = new Map<string, Room>()
  readonly meta = new WeakMap<FakeEvent, StoredMeta>()
  /** Every event in the order it was stored: its index + 1 is the event's stream position, which /sync tokens count. */
  readonly stream: FakeEvent[] = []
  private readonly positions = new WeakMap<FakeEvent, number>()
  /** Request path (room, type or redacted event, txnId) → event id: a retried send returns the first event. Like
   * Synapse for appservices, the key has no user: two ghosts reusing one txn id in one room collide. */
  private readonly txns = new Map<string, string>()
  private readonly namespaces: { exclusive: boolean; regex: RegExp }[]
  readonly defaultRoomVersion: '10' | '11'
  onEvent: (ev: FakeEvent) => void = () => {}

  constructor(domain: string, registration: AppserviceRegistration, roomVersion: '10' | '11') {
    this.domain = domain
    this.registration = registration
    this.botUserId = `@${registration.sender_localpart}:${domain}`
    this.namespaces = registration.namespaces.users.map((n) => ({ exclusive: n.exclusive, regex: new RegExp(`^(?:${n.regex})$`) }))
    this.defaultRoomVersion = roomVersion
  }

  /** Users the appservice is interested in: its sender and any user matching its namespaces (local only). */
  isAsUser(userId: string): boolean {
    if (userId === this.botUserId) return true
    return userId.endsWith(`:${this.domain}`) && this.namespaces.some((n) => n.regex.test(userId))
  }

  isExclusive(userId: string): boolean {
    return userId === this.botUserId || this.namespaces.some((n) => n.exclusive && n.regex.test(userId))
  }

  room(roomId: string): Room {
    const room = this.rooms.get(roomId)
    // Synapse answers a room it has never heard of like a room the user is not in.
    if (!room) throw new MatrixFault(403, 'M_FORBIDDEN', `User is not in room ${roomId} (unknown room)`)
    return room
  }

  stateEvent(roomId: string, type: string, stateKey = ''): FakeEvent | undefined {
    return this.rooms.get(roomId)?.state.get(key(type, stateKey))
  }

  membership(roomId: string, userId: string): string | undefined {
    const m = this.stateEvent(roomId, 'm.room.member', userId)?.content['membership']
    return typeof m === 'string' ? m : undefined
  }

  joinedMembers(roomId: string): string[] {
    const room = this.room(roomId)
    const out: string[] = []
    for (const ev of room.state.values()) {
      if (ev.type === 'm.room.member' && ev.content['membership'] === 'join' && ev.state_key) out.push(ev.state_key)
    }
    return out
  }

  powerLevel(roomId: string, userId: string): number {
    const pl = this.stateEvent(roomId, 'm.room.power_levels')?.content ?? {}
    const users = (pl['users'] ?? {}) as Record<string, number>
    return users[userId] ?? Number(pl['users_default'] ?? 0)
  }

  private required(roomId: string, field: string, fallback: number): number {
    const pl = this.stateEvent(roomId, 'm.room.power_levels')?.content ?? {}
    const v = pl[field]
    return typeof v === 'number' ? v : fallback
  }

  private requiredForEvent(roomId: string, type: string, isState: boolean): number {
    const pl = this.stateEvent(roomId, 'm.room.power_levels')?.content ?? {}
    const events = (pl['events'] ?? {}) as Record<string, number>
    if (events[type] !== undefined) return events[type]
    return isState ? this.required(roomId, 'state_default', 50) : this.required(roomId, 'events_default', 0)
  }

  requireJoined(roomId: string, userId: string): Room {
    const room = this.room(roomId)
    if (this.membership(roomId, userId) !== 'join') {
      throw new MatrixFault(403, 'M_FORBIDDEN', `User ${userId} not in room ${roomId}`)
    }
    return room
  }

  /** Creates an event with no authorisation checks; Synapse's size limits apply to every event (limits.ts). */
  append(roomId: string, sender: string, type: string, content: Record<string, unknown>, opts: AppendOptions = {}): FakeEvent {
    const room = this.room(roomId)
    const ev: FakeEvent = {
      event_id: newEventId(),
      room_id: roomId,
      sender,
      type,
      content: structuredClone(content),
      origin_server_ts: opts.ts ?? Date.now(),
      unsigned: {},
    }
    if (opts.stateKey !== undefined) ev.state_key = opts.stateKey
    if (opts.redacts !== undefined) {
      if (room.version === '11') ev.content['redacts'] = opts.redacts
      else ev.redacts = opts.redacts
    }
    if (type === 'm.room.member') checkMemberDisplayName(ev.content)
    const auth = ['m.room.create', 'm.room.power_levels'].map(t => room.state.get(key(t, ''))?.event_id)
    auth.push(room.state.get(key('m.room.member', sender))?.event_id)
    const last = room.timeline.at(-1)?.event_id
    checkEventSize(pduOf(ev, this.domain, room.timeline.length + 1, auth.filter((id): id is string => id !== undefined), last ? [last] : []))
    if (opts.stateKey !== undefined) {
      const prev = room.state.get(key(type, opts.stateKey))
      if (prev) ev.unsigned = { replaces_state: prev.event_id, prev_content: prev.content }
      room.state.set(key(type, opts.stateKey), ev)
    }
    room.timeline.push(ev)
    this.stream.push(ev)
    this.positions.set(ev, this.stream.length)
    if (opts.txnId !== undefined) this.meta.set(ev, { txnId: opts.txnId })
    if (opts.redacts !== undefined) this.applyRedaction(room, ev, opts.redacts)
    this.onEvent(ev)
    return ev
  }

  /** Where an event stands in the server's stream (1 for the first event ever stored). */
  position(ev: FakeEvent): number {
    return this.positions.get(ev) ?? 0
  }

  /** Content keys kept by redaction (a simplified redaction algorithm, enough for bridges to see it). */
  private applyRedaction(room: Room, redaction: FakeEvent, targetId: string): void {
    const target = room.timeline.find((e) => e.event_id === targetId)
    if (!target) return
    // Since room v3 a redaction of someone else's event is accepted but only applied if the redacter may
    // redact (power level) or is the original sender.
    const allowed = target.sender === redaction.sender || this.powerLevel(room.id, redaction.sender) >= this.required(room.id, 'redact', 50)
    if (!allowed) return
    const keep: Record<string, string[]> = {
      'm.room.member': ['membership', 'join_authorised_via_users_server'],
      'm.room.create': Object.keys(target.content),
      'm.room.join_rules': ['join_rule', 'allow'],
      'm.room.power_levels': ['ban', 'events', 'events_default', 'invite', 'kick', 'redact', 'state_default', 'users', 'users_default'],
      'm.room.history_visibility': ['history_visibility'],
      'm.room.redaction': ['redacts'],
    }
    const kept = keep[target.type] ?? []
    target.content = Object.fromEntries(Object.entries(target.content).filter(([k]) => kept.includes(k)))
    target.unsigned = { ...target.unsigned, redacted_because: structuredClone(redaction) }
  }

  // ---- checked operations (what a client may do) ---------------------------------------------------

  /** Idempotency for client transaction ids, per (user, endpoint kind, txnId). */
  txnLookup(path: string): string | undefined {
    return this.txns.get(path)
  }
  txnRemember(path: string, eventId: string): void {
    this.txns.set(path, eventId)
  }

  send(sender: string, roomId: string, type: string, content: Record<string, unknown>, opts: AppendOptions = {}): FakeEvent {
    this.requireJoined(roomId, sender)
    const isState = opts.stateKey !== undefined
    if (isState && type === 'm.room.member') return this.memberStateByClient(sender, roomId, opts.stateKey!, content, opts)
    const need = this.requiredForEvent(roomId, type, isState)
    if (this.powerLevel(roomId, sender) < need) {
      throw new MatrixFault(403, 'M_FORBIDDEN', `You don't have permission to post that to the room. user_level (${this.powerLevel(roomId, sender)}) < send_level (${need})`)
    }
    if (type === 'm.room.power_levels' && isState) this.checkPowerLevelChange(roomId, sender, content)
    return this.append(roomId, sender, type, content, opts)
  }

  /** Clients may only re-send their own join (a per-room display name); membership changes have endpoints. */
  private memberStateByClient(sender: string, roomId: string, stateKey: string, content: Record<string, unknown>, opts: AppendOptions): FakeEvent {
    if (stateKey !== sender || content['membership'] !== 'join') {
      throw new MatrixFault(403, 'M_FORBIDDEN', 'Membership changes go through the membership endpoints in this fake')
    }
    return this.append(roomId, sender, 'm.room.member', content, { ...opts, stateKey })
  }

  private checkPowerLevelChange(roomId: string, sender: string, content: Record<string, unknown>): void {
    const mine = this.powerLevel(roomId, sender)
    const oldUsers = ((this.stateEvent(roomId, 'm.room.power_levels')?.content['users'] ?? {}) as Record<string, number>)
    const newUsers = (content['users'] ?? {}) as Record<string, number>
    for (const id of new Set([...Object.keys(oldUsers), ...Object.keys(newUsers)])) {
      const before = oldUsers[id] ?? 0
      const after = newUsers[id] ?? 0
      if (before === after) continue
      if (after > mine || (id !== sender && before >= mine)) {
        throw new MatrixFault(403, 'M_FORBIDDEN', `You don't have permission to change the power level of ${id}`)
      }
    }
  }

  redact(sender: string, roomId: string, eventId: string, reason: string | undefined, opts: AppendOptions = {}): FakeEvent {
    this.requireJoined(roomId, sender)
    return this.append(roomId, sender, 'm.room.redaction', reason ? { reason } : {}, { ...opts, redacts: eventId })
  }

  createRoom(creator: string, input: CreateRoomInput): string {
    const version = (input.room_version ?? this.defaultRoomVersion) as '10' | '11'
    if (version !== '10' && version !== '11') throw new MatrixFault(400, 'M_UNSUPPORTED_ROOM_VERSION', `Your homeserver does not support room version ${version}`)
    const roomId = newRoomId(this.domain)
    this.rooms.set(roomId, { id: roomId, version, state: new Map(), timeline: [] })
    const preset = input.preset ?? 'private_chat'
    const createContent: Record<string, unknown> = { ...(input.creation_content ?? {}), room_version: version }
    if (version === '10') createContent['creator'] = creator
    this.append(roomId, creator, 'm.room.create', createContent, { stateKey: '' })
    this.append(roomId, creator, 'm.room.member', { membership: 'join', ...this.profileContent(creator) }, { stateKey: creator })
    const users: Record<string, number> = { [creator]: 100 }
    if (preset === 'trusted_private_chat') for (const id of input.invite ?? []) users[id] = 100
    this.append(roomId, creator, 'm.room.power_levels', {
      users, users_default: 0, events: { 'm.room.name': 50, 'm.room.power_levels': 100, 'm.room.history_visibility': 100, 'm.room.canonical_alias': 50, 'm.room.avatar': 50, 'm.room.tombstone': 100, 'm.room.server_acl': 100, 'm.room.encryption': 100 },
      events_default: 0, state_default: 50, ban: 50, kick: 50, redact: 50, invite: 0, historical: 100,
      ...(input.power_level_content_override ?? {}),
    }, { stateKey: '' })
    this.append(roomId, creator, 'm.room.join_rules', { join_rule: preset === 'public_chat' ? 'public' : 'invite' }, { stateKey: '' })
    this.append(roomId, creator, 'm.room.history_visibility', { history_visibility: 'shared' }, { stateKey: '' })
    for (const s of input.initial_state ?? []) this.append(roomId, creator, s.type, s.content, { stateKey: s.state_key ?? '' })
    if (input.name !== undefined) this.append(roomId, creator, 'm.room.name', { name: input.name }, { stateKey: '' })
    if (input.topic !== undefined) this.append(roomId, creator, 'm.room.topic', { topic: input.topic }, { stateKey: '' })
    for (const target of input.invite ?? []) this.invite(creator, roomId, target, input.is_direct)
    return roomId
  }

  invite(sender: string, roomId: string, target: string, isDirect?: boolean, reason?: string): FakeEvent {
    this.requireJoined(roomId, sender)
    const need = this.required(roomId, 'invite', 0)
    if (this.powerLevel(roomId, sender) < need) throw new MatrixFault(403, 'M_FORBIDDEN', `You don't have permission to invite users`)
    const current = this.membership(roomId, target)
    if (current === 'join') throw new MatrixFault(403, 'M_FORBIDDEN', `${target} is already in the room.`)
    if (current === 'ban') throw new MatrixFault(403, 'M_FORBIDDEN', `${target} is banned from the room`)
    const content: Record<string, unknown> = { membership: 'invite', ...this.profileContent(target) }
    if (isDirect) content['is_direct'] = true
    if (reason) content['reason'] = reason
    return this.append(roomId, sender, 'm.room.member', content, { stateKey: target })
  }

  join(userId: string, roomId: string): FakeEvent | undefined {
    const room = this.rooms.get(roomId)
    if (!room) throw new MatrixFault(404, 'M_NOT_FOUND', `Can't join remote room because no servers that are in the room have been provided.`)
    const current = this.membership(roomId, userId)
    // Synapse sends a new join event for a repeated join only when the profile changed; treat it as a no-op.
    if (current === 'join') return undefined
    if (current === 'ban') throw new MatrixFault(403, 'M_FORBIDDEN', 'You are banned from this room')
    const rule = this.stateEvent(roomId, 'm.room.join_rules')?.content['join_rule']
    if (rule !== 'public' && current !== 'invite') {
      throw new MatrixFault(403, 'M_FORBIDDEN', 'You are not invited to this room.')
    }
    return this.append(roomId, userId, 'm.room.member', { membership: 'join', ...this.profileContent(userId) }, { stateKey: userId })
  }

  leave(userId: string, roomId: string, reason?: string): FakeEvent {
    this.room(roomId)
    const current = this.membership(roomId, userId)
    if (current !== 'join' && current !== 'invite' && current !== 'knock') {
      throw new MatrixFault(403, 'M_FORBIDDEN', `User ${userId} is not in room ${roomId}`)
    }
    return this.append(roomId, userId, 'm.room.member', { membership: 'leave', ...(reason ? { reason } : {}) }, { stateKey: userId })
  }

  kick(sender: string, roomId: string, target: string, reason?: string): FakeEvent {
    this.requireJoined(roomId, sender)
    const current = this.membership(roomId, target)
    if (current !== 'join' && current !== 'invite' && current !== 'knock') throw new MatrixFault(403, 'M_FORBIDDEN', `${target} is not in the room`)
    if (this.powerLevel(roomId, sender) < this.required(roomId, 'kick', 50) || this.powerLevel(roomId, target) >= this.powerLevel(roomId, sender)) {
      throw new MatrixFault(403, 'M_FORBIDDEN', `You cannot kick user ${target}.`)
    }
    return this.append(roomId, sender, 'm.room.member', { membership: 'leave', ...(reason ? { reason } : {}) }, { stateKey: target })
  }

  /** Synapse's rules: the ban level, and more power than the one banned; anyone may be banned, in the room or not. */
  ban(sender: string, roomId: string, target: string, reason?: string): FakeEvent {
    this.requireJoined(roomId, sender)
    if (this.powerLevel(roomId, sender) < this.required(roomId, 'ban', 50) || this.powerLevel(roomId, target) >= this.powerLevel(roomId, sender)) {
      throw new MatrixFault(403, 'M_FORBIDDEN', `You cannot ban user ${target}.`)
    }
    return this.append(roomId, sender, 'm.room.member', { membership: 'ban', ...(reason ? { reason } : {}) }, { stateKey: target })
  }

  /** Lifting a ban needs the ban level too; the user is then out of the room (leave), free to be invited. */
  unban(sender: string, roomId: string, target: string): FakeEvent {
    this.requireJoined(roomId, sender)
    if (this.membership(roomId, target) !== 'ban') throw new MatrixFault(403, 'M_FORBIDDEN', `${target} is not banned from this room`)
    if (this.powerLevel(roomId, sender) < this.required(roomId, 'ban', 50)) throw new MatrixFault(403, 'M_FORBIDDEN', `You cannot unban user ${target}.`)
    return this.append(roomId, sender, 'm.room.member', { membership: 'leave' }, { stateKey: target })
  }

  profileContent(userId: string): Record<string, unknown> {
    const u = this.users.get(userId)
    return { ...(u?.displayname !== undefined ? { displayname: u.displayname } : {}), ...(u?.avatar_url !== undefined ? { avatar_url: u.avatar_url } : {}) }
  }

  /** A global profile change is copied into a new join event in every room the user is in (Synapse does). */
  setProfileField(userId: string, field: 'displayname' | 'avatar_url', value: string | undefined): void {
    if (field === 'displayname' && value !== undefined) checkProfileDisplayName(value)
    const user = this.users.get(userId)
    // Synapse 1.67 updated an existing profile row only: for a user never registered the call "worked" and
    // stored nothing (matrix-appservice.md §3, the unregistered bot).
    if (!user) return
    if (value === undefined) delete user[field]
    else user[field] = value
    for (const room of this.rooms.values()) {
      const member = room.state.get(key('m.room.member', userId))
      if (member?.content['membership'] !== 'join') continue
      const content = { ...member.content }
      if (value === undefined) delete content[field]
      else content[field] = value
      this.append(room.id, userId, 'm.room.member', content, { stateKey: userId })
    }
  }
}
