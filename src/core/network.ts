// The contract every network adapter implements. The core calls these; it never imports an adapter.
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import type { Db } from '../db/types.ts'
import type { ChatField, ChatValue, CopyRef, Delivery, EphemeralEvent, GroupMember, InboundEvent, MembersChange, NetworkId, Person, RemoteNetworkId, SendResult } from './model.ts'
import type { MediaStore } from './media.ts'

export type ConnectionState = 'connecting' | 'connected' | 'disconnected' | 'logged_out'

/**
 * What a login is for, chosen when it is linked. `relay`: a spare account that speaks for others (name-prefixed)
 * in the rooms it relays, and the only kind that may be a room's relay or create portals; what is typed on its
 * phone is that account's own. `personal`: its owner's own identity: their Matrix messages go out through it as
 * themselves, and what they type on its phone is shown as their Matrix user.
 */
export type LoginKind = 'relay' | 'personal'
export const LOGIN_KINDS: readonly LoginKind[] = ['relay', 'personal']

/** A Signal or WhatsApp account linked to the bridge (one row of `logins`). */
export interface Login {
  id: string
  network: RemoteNetworkId
  kind: LoginKind
  /** The account's own identifier on its network (Signal number, WhatsApp JID). Shown only to its owner. */
  address: string
  /** Stable person id of the account (Signal ACI; WhatsApp person id): its own messages are echoes. */
  personId: string
  displayName: string
  ownerMxid: string
  state: ConnectionState
  stateMessage: string | null
  metadata: Record<string, unknown>
}

export interface LoginStore {
  get(id: string): Promise<Login | undefined>
  list(network?: RemoteNetworkId): Promise<Login[]>
  /** Creates or replaces the login with this network+address; returns its id (stable across re-links). */
  save(login: NewLogin): Promise<Login>
  remove(id: string): Promise<void>
}

/** What an adapter knows of an account it has just linked. */
export type NewLogin = Omit<Login, 'id' | 'state' | 'stateMessage'> & { state?: ConnectionState }

/** What the core hands an adapter when it starts. */
export interface NetworkContext {
  log: Logger
  db: Db
  media: MediaStore
  metrics: Registry
  logins: LoginStore
  /** Record an inbound event durably (dedupe, echo check, queue deliveries). Resolves once committed. */
  receive(event: InboundEvent): Promise<void>
  /** Record consecutive events together (one transaction), in order. Throws leaving none of them recorded: the
   * caller then hands them over one by one. Optional: without it, an adapter uses receive() for each. */
  receiveMany?(events: InboundEvent[]): Promise<void>
  /** Hand over a typing notice or read receipt. Returns at once and never fails: these are not recorded, and
   * one lost (on a crash, or while the homeserver is away) is superseded by the next. */
  ephemeral(event: EphemeralEvent): void
  /** Which ephemeral events the operator wants in Matrix, so that adapters skip the work (and the network
   * calls, such as a presence subscription) for the rest. */
  readonly wantsEphemeral: { typing: boolean; receipts: boolean }
  /** Report a login's connection state; the core stores it, shows it in `status`, notifies on changes. */
  reportState(loginId: string, state: ConnectionState, message?: string): Promise<void>
  /** Tell the people concerned (the login's owner and its portal rooms) something in Matrix only. */
  notify(loginId: string, text: string): Promise<void>
  /** Tell the Matrix room of the portal linked to this remote chat something, in Matrix only (nothing if none). */
  notifyChat(network: RemoteNetworkId, chatId: string, text: string): Promise<void>
  /** Whether a remote chat is linked to a portal (adapters skip unlinked chats early). */
  isBridgedChat(network: RemoteNetworkId, chatId: string): boolean
  /** Something about who may change a group changed (an admin was made, a permission setting changed): changes of
   * the group's name, description or picture that waited for a permission are tried again. Never fails. */
  permissionsChanged(network: RemoteNetworkId, chatId: string): void
  /** Look up a recorded copy by its remote id on this adapter's network (for getMessage, quotes). */
  findCopy(network: NetworkId, chatId: string, remoteId: string): Promise<{ extra: Record<string, unknown> } | undefined>
  /** Drops the content kept in copies' `extra.message` (CopyRef.extra): of origin copies sent before a time, or of
   * every copy whose `extra.login` is a login (and that login's name with it). */
  forgetKeptContent(network: NetworkId, which: { originSentBefore: number } | { login: string }): Promise<void>
}

/** The delivery side, shared by all three participants (Matrix included). */
export interface Participant {
  readonly network: NetworkId
  send(delivery: Delivery): Promise<SendResult>
  /** The copies a delivery's send made (SendResult) are committed now, with its `extra`: what the adapter held in
   * memory for the moments between the send and that commit (an echo, a retry request) may go. */
  recorded?(deliveryId: string): void
  /** A group name, topic or picture as this network would keep it (control characters stripped, cut to its
   * limits), so that the echo of a change the bridge makes reads the same as what it recorded. */
  chatValue?(field: ChatField, value: ChatValue): ChatValue
  /** Brings people's ghosts into a room and takes them out (Matrix only). Throws what send would throw. */
  members?(change: MembersChange): Promise<void>
}

/** Where ephemeral events are shown: Matrix, on the person's ghost (matrix/ephemeral.ts). */
export interface EphemeralSink {
  typing(person: Person, roomId: string, typing: boolean, timeoutMs: number): Promise<void>
  /** The person has read up to this Matrix event. */
  read(person: Person, roomId: string, eventId: string): Promise<void>
}

export interface GroupInfo {
  id: string
  name: string
  /** The group's description, where the network said it. */
  topic?: string
  /** The group's disappearing-message timer in seconds (0: off), where the network said it. */
  disappearingSeconds?: number
  memberCount: number
  inviteLink?: string
}

/** How a login shows its progress to the person logging in (a Matrix DM, or a terminal). */
export interface LoginUi {
  /** Show (or replace) a QR code. `data` is what the code encodes; the UI renders it. */
  showQr(data: string, caption: string): Promise<void>
  /** Show a pairing code to type on the phone. */
  showCode(code: string, caption: string): Promise<void>
  /** Progress in plain words. */
  say(text: string): Promise<void>
  /** How the person starts this login again where they are (a terminal has its own command); the bot's
   * command when not given. */
  again?(network: RemoteNetworkId): string
}

/** The command that starts a login again, as the person sees it where they are. */
export const retryCommand = (ui: LoginUi, network: RemoteNetworkId): string => ui.again?.(network) ?? `!relay login ${network}`

export interface LoginRequest {
  ownerMxid: string
  kind: LoginKind
  /** WhatsApp pairing-code login: the phone number in international form. */
  phoneNumber?: string
  signal?: AbortSignal
}

/** A service the bridge depends on (the homeserver, a daemon), as the bridge-wide status shows it. */
export interface ServiceStatus {
  /** What it is, for people: "Homeserver", "Signal". */
  label: string
  ok: boolean
  /** Sentences: where it is, its state and since when, and when it is not ok what to do. */
  text: string
}

/** A moment as status texts show it: the time of day in UTC. */
export const clockTime = (ms: number): string => `${new Date(ms).toISOString().slice(11, 19)} UTC`

export interface RemoteNetwork extends Participant {
  readonly network: RemoteNetworkId
  start(ctx: NetworkContext): Promise<void>
  stop(): Promise<void>
  /** Live connection state of a login, as far as this process knows. */
  state(loginId: string): ConnectionState
  login(request: LoginRequest, ui: LoginUi): Promise<Login>
  /** Unlinks the account and deletes for good what the bridge keeps of it (keys, sessions, cached messages); the
   * core then deletes the login itself. */
  logout(login: Login): Promise<void>
  listGroups(login: Login): Promise<GroupInfo[]>
  /** Resolve a group id or invite link to a group the login is a member of (joining by link if needed). */
  joinGroup(login: Login, idOrLink: string): Promise<GroupInfo>
  createGroup(login: Login, name: string): Promise<GroupInfo>
  /** Who is in a group the login is a member of now (the login's own account among them, marked by its person id),
   * and whom the group has banned. Names are never phone numbers. */
  roster?(login: Login, groupId: string): Promise<{ members: GroupMember[]; banned?: string[] }>
  /** The service this network goes through, when it has one of its own (Signal's daemon); WhatsApp has none. */
  service?(): Promise<ServiceStatus>
  /** When the network last showed a sign of life for the login (ms): WhatsApp, the relay phone last seen;
   * Signal, the last thing the daemon received for the account. Undefined when unknown. */
  lastActivity?(loginId: string): Promise<number | undefined>
  /** Whether the service the adapter depends on answers (the signal-cli daemon), and its version. */
  health?(): Promise<ServiceHealth>
  /** A personal login's owner started or stopped typing in the portal of this group: shown there as them. */
  typingAs?(login: Login, chatId: string, typing: boolean): Promise<void>
  /** A personal login's owner read a message in the portal of this group: `copy` is the message's copy there
   * (written by someone else), marked read as them. */
  readAs?(login: Login, chatId: string, copy: CopyRef): Promise<void>
}

export interface ServiceHealth {
  name: string
  reachable: boolean
  version?: string
  problem?: string
}
