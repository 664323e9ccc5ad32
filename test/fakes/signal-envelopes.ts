// Builders for realistic signal-cli 0.14.x envelopes (signal-cli.md §4): every field present as null or
// omitted exactly as §4.1 says, server timestamps included, U+FFFC mentions, overlapping styles.

export interface FakeSender {
  number: string | null
  aci: string
  name: string | null
  device?: number
}

export type Envelope = Record<string, unknown>
export interface Mention {
  aci: string
  number?: string | null
  start: number
}
export interface Style {
  style: 'BOLD' | 'ITALIC' | 'STRIKETHROUGH' | 'MONOSPACE' | 'SPOILER' | 'NONE'
  start: number
  length: number
}
export interface AttachmentSpec {
  contentType: string
  id: string
  filename?: string | null
  size?: number | null
  width?: number | null
  height?: number | null
  caption?: string | null
}
export interface MessageOpts {
  timestamp?: number
  styles?: Style[]
  mentions?: Mention[]
  quote?: { author: FakeSender; id: number; text?: string | null }
  attachments?: AttachmentSpec[]
  sticker?: { packId: string; stickerId: number }
  groupName?: string | null
  revision?: number
  /** The group's disappearing-message timer the sender's client stamps on the message (§4.1: 0 when off). */
  expiresInSeconds?: number
  /** A view-once photo or video (§4.1: `viewOnce`, false on everything else). */
  viewOnce?: boolean
}

let clock = 1_790_000_000_000
/** Strictly increasing timestamps, like one author's clock. */
export const nextTimestamp = (): number => (clock += 1000 + Math.floor(Math.random() * 50))

function head(from: FakeSender, timestamp: number): Envelope {
  return {
    source: from.number ?? from.aci,
    sourceNumber: from.number,
    sourceUuid: from.aci,
    sourceName: from.name,
    sourceDevice: from.device ?? 1,
    timestamp,
    serverReceivedTimestamp: timestamp + 80,
    serverDeliveredTimestamp: timestamp + 95,
  }
}

const groupInfo = (groupId: string, o: MessageOpts = {}, type = 'DELIVER') => ({
  groupId,
  groupName: o.groupName === undefined ? 'Family' : o.groupName,
  revision: o.revision ?? 3,
  type,
})

/** dataMessage fields: non-null ones always present, lists omitted when empty (§4.1). */
export function dataMessage(groupId: string | null, text: string | null, o: MessageOpts = {}, timestamp = o.timestamp ?? nextTimestamp()): Envelope {
  const dm: Envelope = { timestamp, message: text, expiresInSeconds: o.expiresInSeconds ?? 0, viewOnce: o.viewOnce ?? false }
  if (o.quote) {
    dm.quote = {
      id: o.quote.id,
      author: o.quote.author.number ?? o.quote.author.aci,
      authorNumber: o.quote.author.number,
      authorUuid: o.quote.author.aci,
      text: o.quote.text ?? null,
      attachments: [],
    }
  }
  if (o.mentions?.length) {
    dm.mentions = o.mentions.map(m => ({ name: m.number ?? m.aci, number: m.number ?? null, uuid: m.aci, start: m.start, length: 1 }))
  }
  if (o.attachments?.length) {
    dm.attachments = o.attachments.map(a => ({
      contentType: a.contentType,
      filename: a.filename ?? null,
      id: a.id,
      size: a.size ?? null,
      width: a.width ?? null,
      height: a.height ?? null,
      caption: a.caption ?? null,
      uploadTimestamp: timestamp - 500,
    }))
  }
  if (o.sticker) dm.sticker = o.sticker
  if (o.styles?.length) dm.textStyles = o.styles
  if (groupId) dm.groupInfo = groupInfo(groupId, o)
  return dm
}

export function groupText(from: FakeSender, groupId: string, text: string, o: MessageOpts = {}): Envelope {
  const ts = o.timestamp ?? nextTimestamp()
  return { ...head(from, ts), dataMessage: dataMessage(groupId, text, o, ts) }
}

export function directText(from: FakeSender, text: string): Envelope {
  const ts = nextTimestamp()
  return { ...head(from, ts), dataMessage: dataMessage(null, text, {}, ts) }
}

/** An edit aims at the latest revision (§4.3); its own timestamp is the new revision's id. */
export function edit(from: FakeSender, groupId: string, targetSentTimestamp: number, text: string, o: MessageOpts = {}): Envelope {
  const ts = o.timestamp ?? nextTimestamp()
  return { ...head(from, ts), editMessage: { targetSentTimestamp, dataMessage: dataMessage(groupId, text, o, ts) } }
}

export function remoteDelete(from: FakeSender, groupId: string, targetTimestamp: number): Envelope {
  const ts = nextTimestamp()
  return { ...head(from, ts), dataMessage: { ...dataMessage(groupId, null, {}, ts), remoteDelete: { timestamp: targetTimestamp } } }
}

export function reaction(from: FakeSender, groupId: string, r: { emoji: string; target: FakeSender; targetSentTimestamp: number; remove?: boolean }): Envelope {
  const ts = nextTimestamp()
  const reactionJson = {
    emoji: r.emoji,
    targetAuthor: r.target.number ?? r.target.aci,
    targetAuthorNumber: r.target.number,
    targetAuthorUuid: r.target.aci,
    targetSentTimestamp: r.targetSentTimestamp,
    isRemove: r.remove ?? false,
  }
  return { ...head(from, ts), dataMessage: { ...dataMessage(groupId, null, {}, ts), reaction: reactionJson } }
}

/** A group change: message null, type UPDATE, higher revision; what changed is not included (§4.10). */
export function groupUpdate(from: FakeSender, groupId: string, revision: number, groupName: string | null = 'Family'): Envelope {
  const ts = nextTimestamp()
  const dm = dataMessage(null, null, {}, ts)
  dm.groupInfo = groupInfo(groupId, { groupName, revision }, 'UPDATE')
  return { ...head(from, ts), dataMessage: dm }
}

/** A member set the group's disappearing-message timer (§4.10): a group update marked isExpirationUpdate, the new
 * timer in expiresInSeconds (0: off). */
export function timerUpdate(from: FakeSender, groupId: string, revision: number, seconds: number): Envelope {
  const ts = nextTimestamp()
  const dm = dataMessage(null, null, { expiresInSeconds: seconds }, ts)
  dm.isExpirationUpdate = true
  dm.groupInfo = groupInfo(groupId, { revision }, 'UPDATE')
  return { ...head(from, ts), dataMessage: dm }
}

/** Text typed on the relay account's own phone, in a group (§4.9): destinations null, fields unwrapped. */
export function syncSent(self: FakeSender, groupId: string, text: string, o: MessageOpts = {}): Envelope {
  const ts = o.timestamp ?? nextTimestamp()
  const sentMessage = { destination: null, destinationNumber: null, destinationUuid: null, ...dataMessage(groupId, text, o, ts) }
  return { ...head({ ...self, device: 2 }, ts), syncMessage: { sentMessage } }
}

export function syncEdit(self: FakeSender, groupId: string, targetSentTimestamp: number, text: string): Envelope {
  const ts = nextTimestamp()
  return {
    ...head({ ...self, device: 2 }, ts),
    syncMessage: {
      sentMessage: {
        destination: null,
        destinationNumber: null,
        destinationUuid: null,
        editMessage: { targetSentTimestamp, dataMessage: dataMessage(groupId, text, {}, ts) },
      },
    },
  }
}

/** A typing notice (§4.8): `groupId` only in groups. Clients repeat STARTED while typing and end with STOPPED. */
export function typing(from: FakeSender, groupId?: string, action: 'STARTED' | 'STOPPED' = 'STARTED'): Envelope {
  const ts = nextTimestamp()
  return { ...head(from, ts), typingMessage: { action, timestamp: ts, ...(groupId ? { groupId } : {}) } }
}

/** A receipt (§4.8) from one member, for messages the account sent, by their sent timestamps; never a group id.
 * Exactly one of the three flags is true (signal-cli's JsonReceiptMessage). */
export function receipt(from: FakeSender, timestamps: number[], kind: 'delivery' | 'read' | 'viewed' = 'delivery'): Envelope {
  const ts = nextTimestamp()
  return { ...head(from, ts), receiptMessage: { when: ts, isDelivery: kind === 'delivery', isRead: kind === 'read', isViewed: kind === 'viewed', timestamps } }
}

export const emptyEnvelope = (from: FakeSender): Envelope => head(from, nextTimestamp())
export const emptySync = (from: FakeSender): Envelope => ({ ...head({ ...from, device: 2 }, nextTimestamp()), syncMessage: {} })

/** Untrusted identity (§6): source fields from the exception, no content. Pass it with `exception` to push(). */
export function untrustedEnvelope(from: FakeSender): Envelope {
  return head(from, nextTimestamp())
}
