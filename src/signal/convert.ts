// Signal → neutral: one SSE `data` object (signal-cli.md §4) into inbound events. The pure part decides
// everything; `completeEvent` then fetches attachment bytes, stickers and group names from the daemon.
import { createHash } from 'node:crypto'
import type {
  Attachment,
  AttachmentKind,
  EphemeralEvent,
  InboundEvent,
  InlineStyle,
  MessageContent,
  Person,
  RichText,
  StyleRange,
} from '../core/model.ts'
import { plainText } from '../core/model.ts'
import { viewOnceContent } from '../core/render.ts'
import { concat, splice, utf8Length } from '../core/richtext.ts'
import { safeFilename } from '../core/filename.ts'
import type { MediaStore } from '../core/media.ts'
import { InnerJson, ReceiptMessageJson, TypingMessageJson, type AttachmentJson, type DataMessageJson } from './types.ts'

/** The relay login that received the event: its own phone's messages speak as this person. */
export interface SelfInfo {
  loginId: string
  aci: string
  displayName: string
}

export type PendingMedia =
  | { kind: 'attachment'; json: AttachmentJson; attachmentKind: AttachmentKind }
  | { kind: 'sticker'; packId: string; stickerId: number }

/** An event whose attachments (and maybe name or long text) still have to be fetched. */
export interface Converted {
  event: InboundEvent
  media: PendingMedia[]
  /** A 0.13.x long-text attachment whose text replaces the truncated body (§4.7). */
  longText?: AttachmentJson
  /** A group update: the new name must be read with listGroups (§4.10). */
  groupUpdate?: string
}

export interface ConvertResult {
  events: Converted[]
  /** Why nothing was produced, for debug logs (never holds text or numbers). */
  skipped?: string
  /** Set for `exception` envelopes (§6): logged by the caller, never relayed. */
  exception?: { type: string }
}

const LONG_TEXT = 'text/x-signal-plain'
const STYLE: Record<string, InlineStyle | undefined> = {
  BOLD: 'bold',
  ITALIC: 'italic',
  STRIKETHROUGH: 'strikethrough',
  MONOSPACE: 'monospace',
  SPOILER: 'spoiler',
}

/** A neutral label for someone with no usable profile name: never their number (design.md, Privacy). */
export function neutralLabel(aci: string): string {
  return `Signal user ${createHash('sha256').update(aci.toLowerCase()).digest('hex').slice(0, 4)}`
}

/** A profile name worth showing: not empty, not bare punctuation (a published capture has "."), not a number. */
export function meaningfulName(name: string | null | undefined): string | undefined {
  // Invisible format characters (bidi embeddings a phone app wraps numbers in) must not hide a number.
  const visible = name?.replace(/\p{Cf}/gu, '').trim()
  if (!visible) return undefined
  if (/^[\p{P}\p{S}\s]*$/u.test(visible) && !/\p{Extended_Pictographic}/u.test(visible)) return undefined
  if (/^\+?[\d\s().-]{5,}$/.test(visible)) return undefined
  return name!.trim()
}

export const aciOf = (s: string | null | undefined): string | undefined =>
  s && /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s) ? s.toLowerCase() : undefined

/**
 * Converts one SSE data object. `names` resolves an ACI to a known profile name (for mentions, whose
 * `name` field is a legacy id, not a display name, §4.5).
 */
export function convertInner(raw: unknown, self: SelfInfo, names: (aci: string) => string | undefined = () => undefined): ConvertResult {
  const parsed = InnerJson.safeParse(raw)
  if (!parsed.success) return { events: [], skipped: 'malformed envelope' }
  const { envelope, exception } = parsed.data
  if (exception) return { events: [], skipped: 'exception', exception: { type: exception.type ?? 'unknown' } }

  const sent = envelope.syncMessage?.sentMessage
  if (sent) {
    // Typed on the relay account's own phone (§4.9): a message from that account, not an echo.
    const sender: Person = { network: 'signal', id: self.aci, displayName: self.displayName, viaRelayAccount: true }
    if (sent.editMessage) return edit(sender, sent.editMessage.targetSentTimestamp, sent.editMessage.dataMessage, self, names)
    if (sent.timestamp === undefined || sent.timestamp === null) return { events: [], skipped: 'sync without timestamp' }
    return data(sender, { ...sent, timestamp: sent.timestamp }, envelope.timestamp ?? sent.timestamp, self, names)
  }

  const aci = aciOf(envelope.sourceUuid)
  if (!envelope.dataMessage && !envelope.editMessage) return { events: [], skipped: 'no content' }
  if (!aci) return { events: [], skipped: 'unknown sender' }
  const sender: Person = { network: 'signal', id: aci, displayName: meaningfulName(envelope.sourceName) ?? neutralLabel(aci) }
  if (envelope.editMessage) return edit(sender, envelope.editMessage.targetSentTimestamp, envelope.editMessage.dataMessage, self, names)
  const dm = envelope.dataMessage!
  return data(sender, dm, envelope.timestamp ?? dm.timestamp, self, names)
}

/**
 * A typing or receipt envelope (§4.8) as an ephemeral event: undefined when the envelope is neither, `{}` when
 * it is one that Matrix does not show (one-to-one typing, a delivery receipt, the relay account's own devices).
 * A receipt names the relay's messages by their sent timestamps; their author is the relay account.
 */
export function ephemeralOf(raw: unknown, self: SelfInfo): { event?: EphemeralEvent } | undefined {
  // Every event passes here first: messages leave before the (second) schema parse.
  const envelope = (raw as { envelope?: Record<string, unknown> } | null)?.envelope
  if (envelope?.['typingMessage'] == null && envelope?.['receiptMessage'] == null) return undefined
  const parsed = InnerJson.safeParse(raw)
  if (!parsed.success || parsed.data.exception) return undefined
  const env = parsed.data.envelope
  if (env.typingMessage == null && env.receiptMessage == null) return undefined
  const aci = aciOf(env.sourceUuid)
  if (!aci || aci === self.aci.toLowerCase()) return {}
  const sender: Person = { network: 'signal', id: aci, displayName: meaningfulName(env.sourceName) ?? neutralLabel(aci) }
  const typing = TypingMessageJson.safeParse(env.typingMessage)
  if (typing.success) {
    const groupId = typing.data.groupId
    if (!groupId) return {}
    return { event: { kind: 'typing', network: 'signal', chatId: groupId, sender, typing: typing.data.action === 'STARTED', loginId: self.loginId } }
  }
  const receipt = ReceiptMessageJson.safeParse(env.receiptMessage)
  // A viewed receipt (a voice note played, a video watched) comes after the read one and says as much.
  if (!receipt.success || !(receipt.data.isRead || receipt.data.isViewed) || receipt.data.timestamps.length === 0) return {}
  return { event: { kind: 'read', network: 'signal', sender, targets: receipt.data.timestamps.map(t => `${self.aci}:${t}`), loginId: self.loginId } }
}

function edit(sender: Person, target: number, dm: DataMessageJson, self: SelfInfo, names: (aci: string) => string | undefined): ConvertResult {
  const groupId = dm.groupInfo?.groupId
  if (!groupId) return { events: [], skipped: 'not a group' }
  const { content, media, longText } = contentOf(dm, names)
  const event: InboundEvent = {
    kind: 'edit',
    chat: { network: 'signal', id: groupId },
    sender,
    // The new revision's own id: later edits target it (§4.3).
    remoteId: `${sender.id}:${dm.timestamp}`,
    timestamp: dm.timestamp,
    loginId: self.loginId,
    target: `${sender.id}:${target}`,
    content,
  }
  return { events: [{ event, media, ...(longText ? { longText } : {}) }] }
}

function data(sender: Person, dm: DataMessageJson, at: number, self: SelfInfo, names: (aci: string) => string | undefined): ConvertResult {
  const groupId = dm.groupInfo?.groupId
  // 1:1 chats are not bridged: the relay account only speaks in groups.
  if (!groupId) return { events: [], skipped: 'not a group' }
  const base = {
    chat: { network: 'signal' as const, id: groupId },
    sender,
    remoteId: `${sender.id}:${dm.timestamp}`,
    timestamp: at,
    loginId: self.loginId,
  }
  if (dm.reaction) {
    const author = aciOf(dm.reaction.targetAuthorUuid) ?? aciOf(dm.reaction.targetAuthor)
    if (!author) return { events: [], skipped: 'reaction without target author' }
    const event: InboundEvent = {
      ...base,
      kind: 'reaction',
      target: `${author}:${dm.reaction.targetSentTimestamp}`,
      emoji: dm.reaction.emoji,
      removed: dm.reaction.isRemove === true,
    }
    return { events: [{ event, media: [] }] }
  }
  if (dm.remoteDelete) {
    // Only authors can delete: the target's author is the envelope's source (§4.2).
    return { events: [{ event: { ...base, kind: 'delete', target: `${sender.id}:${dm.remoteDelete.timestamp}` }, media: [] }] }
  }
  if (dm.viewOnce && (dm.attachments ?? []).length > 0) {
    // Nothing of it is fetched: its caption goes with it. The daemon's own file is removed like any other's.
    const event: InboundEvent = {
      ...base, kind: 'message', content: viewOnceContent(kindOf(dm.attachments![0]!), 'signal'),
      ...(dm.expiresInSeconds ? { expiresInSeconds: dm.expiresInSeconds } : {}),
    }
    return { events: [{ event, media: [] }] }
  }
  const { content, media, longText } = contentOf(dm, names)
  const hasBody = content.body.text.length > 0 || media.length > 0 || longText !== undefined
  if (!hasBody) {
    // The group's disappearing-message timer changed (§4.10): the message says to what.
    if (dm.isExpirationUpdate) return { events: [{ event: { ...base, kind: 'chat_update', timer: dm.expiresInSeconds ?? 0 }, media: [] }] }
    if (dm.groupInfo?.type === 'UPDATE') {
      return { events: [{ event: { ...base, kind: 'chat_update' }, media: [], groupUpdate: groupId }] }
    }
    return { events: [], skipped: 'nothing to relay' }
  }
  const quoteAuthor = aciOf(dm.quote?.authorUuid) ?? aciOf(dm.quote?.author)
  const event: InboundEvent = {
    ...base,
    kind: 'message',
    content,
    ...(dm.quote && quoteAuthor ? { replyTo: `${quoteAuthor}:${dm.quote.id}` } : {}),
    ...(dm.expiresInSeconds ? { expiresInSeconds: dm.expiresInSeconds } : {}),
  }
  return { events: [{ event, media, ...(longText ? { longText } : {}) }] }
}

function contentOf(dm: DataMessageJson, names: (aci: string) => string | undefined) {
  const text = dm.message ?? ''
  let body = richBody(text, dm, names)
  const media: PendingMedia[] = []
  let longText: AttachmentJson | undefined
  for (const a of dm.attachments ?? []) {
    if (a.contentType === LONG_TEXT) {
      // 0.14.x already put the full text into `message`; 0.13.x sent a truncated body plus this file.
      if (typeof a.size === 'number' && utf8Length(text) >= a.size) continue
      if (a.size === null || a.size === undefined) {
        if (utf8Length(text) > 2000) continue
      }
      longText = a
      continue
    }
    media.push({ kind: 'attachment', json: a, attachmentKind: kindOf(a) })
  }
  if (dm.sticker) media.push({ kind: 'sticker', packId: dm.sticker.packId, stickerId: dm.sticker.stickerId })
  const captions = (dm.attachments ?? []).map(a => a.caption?.trim()).filter((c): c is string => !!c)
  if (body.text.length === 0 && captions.length > 0) body = plainText(captions.join('\n'))
  const content: MessageContent = { kind: 'text', body, attachments: [] }
  return { content, media, longText }
}

export function kindOf(a: AttachmentJson): AttachmentKind {
  const type = (a.contentType ?? '').toLowerCase()
  if (type.startsWith('image/')) return 'image'
  if (type.startsWith('video/')) return 'video'
  if (type.startsWith('audio/')) {
    // Voice notes carry no filename (the voice-note flag is not exposed in JSON, §4.4).
    return a.filename ? 'audio' : 'voice'
  }
  return 'file'
}

/** Body text with styles and mentions, mention placeholders replaced by `@Name`. */
export function richBody(text: string, dm: Pick<DataMessageJson, 'textStyles' | 'mentions'>, names: (aci: string) => string | undefined): RichText {
  let rt: RichText = plainText(text)
  for (const s of dm.textStyles ?? []) {
    const style = STYLE[s.style]
    const start = Math.max(0, s.start)
    const end = Math.min(text.length, s.start + s.length)
    if (style && end > start) rt.styles.push({ start, length: end - start, style })
  }
  // Right to left, so earlier offsets stay valid while later placeholders grow into names.
  const mentions = [...(dm.mentions ?? [])].sort((a, b) => b.start - a.start)
  for (const m of mentions) {
    const aci = aciOf(m.uuid)
    if (!aci || m.start < 0 || m.length < 1 || m.start + m.length > rt.text.length) continue
    const label = `@${names(aci) ?? neutralLabel(aci)}`
    const replacement: RichText = {
      ...plainText(label),
      mentions: [{ start: 0, length: label.length, person: { network: 'signal', id: aci, displayName: label.slice(1) } }],
      // A style that covered the placeholder covers the name that replaces it.
      styles: coveringStyles(rt.styles, m.start, m.length).map(style => ({ start: 0, length: label.length, style })),
    }
    rt = splice(rt, m.start, m.length, replacement)
  }
  return { ...rt, styles: mergeStyles(rt.styles) }
}

export function coveringStyles(styles: StyleRange[], start: number, length: number): InlineStyle[] {
  return [...new Set(styles.filter(s => s.start <= start && s.start + s.length >= start + length).map(s => s.style))]
}

/** Joins touching or overlapping ranges of the same style (splice leaves them in pieces). */
export function mergeStyles(styles: StyleRange[]): StyleRange[] {
  const out: StyleRange[] = []
  const byStyle = new Map<InlineStyle, StyleRange[]>()
  for (const s of styles) byStyle.set(s.style, [...(byStyle.get(s.style) ?? []), s])
  for (const [style, ranges] of byStyle) {
    ranges.sort((a, b) => a.start - b.start)
    let cur: StyleRange | undefined
    for (const r of ranges) {
      if (cur && r.start <= cur.start + cur.length) {
        cur.length = Math.max(cur.start + cur.length, r.start + r.length) - cur.start
      } else {
        if (cur) out.push(cur)
        cur = { start: r.start, length: r.length, style }
      }
    }
    if (cur) out.push(cur)
  }
  return out.sort((a, b) => a.start - b.start || a.style.localeCompare(b.style))
}

export interface MediaDeps {
  media: MediaStore
  getAttachment(id: string): Promise<Buffer>
  getSticker(packId: string, stickerId: number): Promise<Buffer>
  /** The group's name and description now (a group update does not say what changed, §4.10). */
  groupDetails(groupId: string): Promise<{ name: string; topic: string; timer?: number } | undefined>
}

/** Fetches what the pure conversion left pending. Fetch errors propagate, so the caller retries. */
export async function completeEvent(c: Converted, deps: MediaDeps): Promise<InboundEvent> {
  const event = c.event
  if (c.groupUpdate && event.kind === 'chat_update') {
    const details = await deps.groupDetails(c.groupUpdate)
    return details === undefined ? event : { ...event, ...details }
  }
  if (event.kind !== 'message' && event.kind !== 'edit') return event
  let body = event.content.body
  if (c.longText?.id) {
    const full = (await deps.getAttachment(c.longText.id)).toString('utf8')
    // The truncated body is a prefix of the full text, so its ranges stay where they were.
    if (full.startsWith(body.text)) body = concat(body, plainText(full.slice(body.text.length)))
  }
  const attachments: Attachment[] = []
  for (const m of c.media) {
    if (m.kind === 'sticker') {
      const bytes = await deps.getSticker(m.packId, m.stickerId)
      const mediaId = await deps.media.put(bytes)
      attachments.push({ kind: 'sticker', mimetype: 'image/webp', filename: `sticker-${m.stickerId}.webp`, size: bytes.length, mediaId })
      continue
    }
    if (!m.json.id) continue
    const bytes = await deps.getAttachment(m.json.id)
    const mediaId = await deps.media.put(bytes)
    attachments.push({
      kind: m.attachmentKind,
      mimetype: m.json.contentType ?? 'application/octet-stream',
      filename: safeFilename(m.json.filename ?? m.json.id),
      size: bytes.length,
      ...(typeof m.json.width === 'number' ? { width: m.json.width } : {}),
      ...(typeof m.json.height === 'number' ? { height: m.json.height } : {}),
      mediaId,
    })
  }
  return { ...event, content: { ...event.content, body, attachments } }
}
