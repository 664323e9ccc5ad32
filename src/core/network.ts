// The contract every network adapter implements. The core calls these; it never imports an adapter.
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import type { Db } from '../db/types.ts'
import type { Delivery, EphemeralEvent, InboundEvent, NetworkId, Person, RemoteNetworkId, SendResult } from './model.ts'
import type { MediaStore } from './media.ts'

export type ConnectionState = 'connecting' | 'connected' | 'disconnected' | 'logged_out'

/** A relay account linked to the bridge (one row of `logins`). */
export interface Login {
  id: string
  network: RemoteNetworkId
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
  save(login: Omit<Login, 'id' | 'state' | 'stateMessage'> & { state?: ConnectionState }): Promise<Login>
  remove(id: string): Promise<void>
}

/** What the core hands an adapter when it starts. */
export interface NetworkContext {
  log: Logger
  db: Db
  media: MediaStore
  metrics: Registry
  logins: LoginStore
  /** Record an inbound event durably (dedupe, echo check, queue deliveries). Resolves once committed. */
  receive(event: InboundEvent): Promise<void>
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
  /** Look up a recorded copy by its remote id on this adapter's network (for getMessage, quotes). */
  findCopy(network: NetworkId, chatId: string, remoteId: string): Promise<{ extra: Record<string, unknown> } | undefined>
}

/** The delivery side, shared by all three participants (Matrix included). */
export interface Participant {
  readonly network: NetworkId
  send(delivery: Delivery): Promise<SendResult>
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
  /** WhatsApp pairing-code login: the phone number in international form. */
  phoneNumber?: string
  signal?: AbortSignal
}

export interface RemoteNetwork extends Participant {
  readonly network: RemoteNetworkId
  start(ctx: NetworkContext): Promise<void>
  stop(): Promise<void>
  /** Live connection state of a login, as far as this process knows. */
  state(loginId: string): ConnectionState
  login(request: LoginRequest, ui: LoginUi): Promise<Login>
  logout(login: Login): Promise<void>
  listGroups(login: Login): Promise<GroupInfo[]>
  /** Resolve a group id or invite link to a group the login is a member of (joining by link if needed). */
  joinGroup(login: Login, idOrLink: string): Promise<GroupInfo>
  createGroup(login: Login, name: string): Promise<GroupInfo>
}
