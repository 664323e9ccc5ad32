// The neutral model: what crosses the bridge, independent of any network.
// Every adapter converts its own events into these types and renders deliveries from them.

export type NetworkId = 'matrix' | 'signal' | 'whatsapp'
export type RemoteNetworkId = Exclude<NetworkId, 'matrix'>
export const NETWORKS: readonly NetworkId[] = ['matrix', 'signal', 'whatsapp']
export const REMOTE_NETWORKS: readonly RemoteNetworkId[] = ['signal', 'whatsapp']

export const NETWORK_LABEL: Record<NetworkId, string> = {
  matrix: 'Matrix',
  signal: 'Signal',
  whatsapp: 'WhatsApp',
}

/** A person on one network. `id` is stable and holds no phone number (Signal: ACI; WhatsApp: the adapter's
 * stable person id; Matrix: the MXID). */
export interface Person {
  network: NetworkId
  id: string
  displayName: string
  /** Set when the event was typed on a relay account's own phone: it speaks as that account's person. */
  viaRelayAccount?: boolean
  /** Their picture: an mxc URL, bytes, or bytes already in the media store (which a queued delivery can carry). */
  avatar?: { url: string } | { data: Buffer; mimetype: string } | { mediaId: string; mimetype: string }
}

// ---- Rich text --------------------------------------------------------------------------------------
// Plain text plus ranges in UTF-16 code units (the unit of JS strings and of Signal's offsets).
// Ranges may overlap. This shape maps directly onto Signal text styles and is easy to render as
// Matrix HTML or WhatsApp markup.

export type InlineStyle = 'bold' | 'italic' | 'strikethrough' | 'monospace' | 'spoiler' | 'code_block' | 'blockquote'
export interface StyleRange {
  start: number
  length: number
  style: InlineStyle
}
export interface LinkRange {
  start: number
  length: number
  url: string
}
/** A mention covers the visible text of the mention (e.g. "@Alice") and points at a person. */
export interface MentionRange {
  start: number
  length: number
  person: Pick<Person, 'network' | 'id'> & { displayName?: string }
}
export interface RichText {
  text: string
  styles: StyleRange[]
  links: LinkRange[]
  mentions: MentionRange[]
}

export const plainText = (text: string): RichText => ({ text, styles: [], links: [], mentions: [] })

// ---- Attachments ------------------------------------------------------------------------------------

export type AttachmentKind = 'image' | 'video' | 'audio' | 'voice' | 'file' | 'sticker'
export interface Attachment {
  kind: AttachmentKind
  mimetype: string
  filename: string
  size: number
  width?: number
  height?: number
  durationMs?: number
  /** Content-addressed id in the media store (core/media.ts). Bytes never travel inside queue rows. */
  mediaId: string
}

export interface Location {
  latitude: number
  longitude: number
  name?: string
}

export interface MessageContent {
  /** `notice` is bot output: it is never relayed to Signal or WhatsApp. */
  kind: 'text' | 'emote' | 'notice'
  body: RichText
  attachments: Attachment[]
  location?: Location
}

// ---- Inbound events ---------------------------------------------------------------------------------

/** Where an event happened: a chat on one network. Matrix: room id; Signal: group id; WhatsApp: group JID. */
export interface ChatRef {
  network: NetworkId
  id: string
}

interface InboundBase {
  chat: ChatRef
  sender: Person
  /** The event's own durable id on its network (Matrix event id, Signal `aci:timestamp`, WhatsApp key id). */
  remoteId: string
  /** Milliseconds since the epoch, as the origin network stamped it. */
  timestamp: number
  /** The relay login that received it (remote networks); lets the core tell which login speaks for whom. */
  loginId?: string
}

export interface InboundMessage extends InboundBase {
  kind: 'message'
  content: MessageContent
  /** Remote id (on the same network) of the message this one replies to. */
  replyTo?: string
  /** The message disappears this many seconds after it was sent (its group's timer): its Matrix copy goes then. */
  expiresInSeconds?: number
  /** Adapter-private data recorded with the copy it arrived as (its CopyRef.extra later), in the statement that
   * records the message: no write of the adapter's own per message. */
  extra?: Record<string, unknown>
}
export interface InboundEdit extends InboundBase {
  kind: 'edit'
  /** Remote id of the message (or of its latest revision) being edited. */
  target: string
  content: MessageContent
}
export interface InboundDelete extends InboundBase {
  kind: 'delete'
  target: string
}
export interface InboundReaction extends InboundBase {
  kind: 'reaction'
  target: string
  emoji: string
  removed: boolean
}
// ---- Group state: name, topic (description) and picture (avatar), kept in step (core/group-state.ts) ----

export type ChatField = 'name' | 'topic' | 'avatar' | 'timer'
export const CHAT_FIELDS: readonly ChatField[] = ['name', 'topic', 'avatar', 'timer']
/** A group picture, as bytes in the media store (content-addressed: the same picture has the same id). */
export interface ChatAvatar {
  mediaId: string
  mimetype: string
}
/** A field's value: text for the name and topic; a picture, or null when it was removed, for the avatar; seconds
 * (0: off) for the disappearing-message timer. */
export type ChatValue = string | number | ChatAvatar | null

/** A group's name, topic or picture changed. Fields left out did not change (or are not known). */
export interface InboundChatUpdate extends InboundBase {
  kind: 'chat_update'
  name?: string
  topic?: string
  avatar?: ChatAvatar | null
  /** The disappearing-message timer, in seconds (0: off). Matrix has none. */
  timer?: number
}

// ---- Membership: who is in a group, kept in step with the portal's room (core/members.ts) ----------

/** A person in a group, and whether they are one of its admins. */
export interface GroupMember {
  person: Person
  admin: boolean
  /** false: the network gave no name, and `displayName` is only the neutral label; a name known from elsewhere (their
   * messages) is kept over it. */
  named?: boolean
}

/**
 * Who is in a group changed. A network says it as the whole roster (`members`: whoever is not in it has gone), or as
 * who came or changed (`joined`) and who went (`left`). `sender` is who made the change: someone who went by their
 * own hand left; anyone else was removed, or banned when `banned` names them.
 */
export interface InboundMembers extends InboundBase {
  kind: 'members'
  members?: GroupMember[]
  joined?: GroupMember[]
  /** An empty `displayName`: the network does not know their name (the one recorded is used). */
  left?: Person[]
  /** Person ids the group has banned (Signal): they leave the room banned. */
  banned?: string[]
}

export type InboundEvent = InboundMessage | InboundEdit | InboundDelete | InboundReaction | InboundChatUpdate | InboundMembers

// ---- Ephemeral events: typing and read receipts ----------------------------------------------------
// Not messages: never recorded, never queued (core/ephemeral.ts). Only Signal and WhatsApp people's reach
// Matrix; Matrix people's are not relayed, as the relay account would look like it was typing or reading.

/** A person starts or stops typing in a group. */
export interface InboundTyping {
  kind: 'typing'
  network: RemoteNetworkId
  chatId: string
  sender: Person
  typing: boolean
  loginId: string
}
/** A person has read messages the relay account sent, named by their remote ids on that network. */
export interface InboundRead {
  kind: 'read'
  network: RemoteNetworkId
  /** The group, when the network says it (WhatsApp); Signal receipts name only the messages. */
  chatId?: string
  sender: Person
  targets: string[]
  loginId: string
}
export type EphemeralEvent = InboundTyping | InboundRead

/** Who is typing in a Matrix room now: Matrix says the whole list each time it changes. */
export interface MatrixTyping {
  kind: 'typing'
  roomId: string
  userIds: string[]
}
/** A Matrix person read up to an event (a public `m.read` receipt; private ones stay private). */
export interface MatrixRead {
  kind: 'read'
  roomId: string
  userId: string
  eventId: string
}
/** Matrix people's typing and receipts: they reach a group only through the person's own login there
 * (core/own-ephemeral.ts). */
export type MatrixEphemeral = MatrixTyping | MatrixRead

// ---- Deliveries (what the core asks an adapter to send) --------------------------------------------

/** A copy of a bridged message on one network, as recorded in the message map. */
export interface CopyRef {
  remoteId: string
  /** Who sent that copy on its network: the relay account, a ghost, or the original author. */
  authorId: string
  /** When the copy was sent (ms), for edit/delete windows. */
  sentAt: number
  /** Adapter-private data recorded with the copy (e.g. the WhatsApp key and content for quoting). Two keys mean
   * something to the core: `message`, content the adapter keeps with the copy, which goes with the copy, or earlier
   * when the adapter asks (NetworkContext.forgetKeptContent); and `login`, the login that sent or heard it. */
  extra?: Record<string, unknown>
}

/** Where to deliver: a chat on the target network and, for Signal/WhatsApp, the relay login that sends. */
export interface DeliveryTarget {
  network: NetworkId
  chatId: string
  loginId?: string
  /** The portal's Matrix room, for adapters that need it (always set). */
  roomId: string
}

interface DeliveryBase {
  target: DeliveryTarget
  sender: Person
  /** Stable per delivery: adapters that can fix a message id (WhatsApp `messageId`) use it for idempotency. */
  deliveryId: string
}
export interface MessageDelivery extends DeliveryBase {
  kind: 'message'
  content: MessageContent
  replyTo?: CopyRef
  /** When the sender is a person the relay speaks for, the rendered prefix already sits in `content`. */
  relayed: boolean
}
export interface EditDelivery extends DeliveryBase {
  kind: 'edit'
  content: MessageContent
  /** The latest revision of the copy on this network (Signal wants the latest; others ignore revisions). */
  of: CopyRef
  /** The original copy (for windows counted from the first send). */
  original: CopyRef
  /** How many edits this message has had on the target network before this one. */
  editCount: number
  relayed: boolean
}
export interface DeleteDelivery extends DeliveryBase {
  kind: 'delete'
  of: CopyRef
  /** The latest revision on the target network, when the message was edited there (its `extra` may say what the
   * edit changed, such as which events a Matrix copy is made of now). */
  latest?: CopyRef
}
export interface ReactionDelivery extends DeliveryBase {
  kind: 'reaction'
  of: CopyRef
  /** The emoji shown; on a removal, the one removed (Signal names it; WhatsApp removes with an empty text). */
  emoji: string
  removed: boolean
  /** Matrix: the ghost's reaction event that a removal redacts (Matrix removes by redaction, not by emoji). */
  previous?: CopyRef
}

/** Set a group's name, topic or picture, as the bridge itself (bot or relay account). */
export interface ChatUpdateDelivery extends DeliveryBase {
  kind: 'chat_update'
  field: ChatField
  value: ChatValue
}

export type Delivery = MessageDelivery | EditDelivery | DeleteDelivery | ReactionDelivery | ChatUpdateDelivery

/** How someone left a group: by their own hand, removed by someone, or banned. */
export type Departure = 'leave' | 'kick' | 'ban'

/** Ghosts to bring into a portal's room or to take out, as a group's roster changed (Matrix only). */
export interface MembersChange {
  roomId: string
  /** People who are in the group now (new, renamed, or made or unmade admin). */
  joins: GroupMember[]
  leaves: Array<{ person: Person; how: Departure; reason?: string }>
  /** The power level an admin of a group has in the room; null: group admins get no power there. */
  adminLevel: number | null
}

/** What a successful send produced on the target network. */
export interface SendResult {
  /** The remote id of the new copy (for edits: of the new revision). Omitted when nothing new was created. */
  remoteId?: string
  authorId?: string
  sentAt?: number
  extra?: Record<string, unknown>
  /** A sentence for the Matrix room about what the send did beyond the obvious (a deletion the relay made as
   * a group admin). The core posts it as a bot notice; it is never relayed. */
  notice?: string
  /** Further remote ids of this same copy, when the network needed several (a text split over several Matrix
   * events, its attachments): replies and reactions to any of them resolve to the message. */
  parts?: string[]
}
