// WhatsApp → neutral: one messages.upsert entry becomes at most one inbound event (reference §2).
import { extractMessageContent, isJidGroup, proto, type WAMessage } from '@whiskeysockets/baileys'
import type { Logger } from 'pino'
import type { MediaStore } from '../core/media.ts'
import type {
  Attachment,
  AttachmentKind,
  InboundEvent,
  Location,
  MessageContent,
  Person,
  RichText,
} from '../core/model.ts'
import { plainText } from '../core/model.ts'
import { viewOnceContent } from '../core/render.ts'
import { concat, splice } from '../core/richtext.ts'
import { safeFilename } from '../core/filename.ts'
import { parseMarkup } from './markup.ts'
import { neutralLabel, type People } from './people.ts'

export interface InboundDeps {
  loginId: string
  /** The relay account's own person (its phone-typed messages speak as it). */
  self: { personId: string; displayName: string }
  people: People
  media: MediaStore
  log: Logger
  /** Downloads a media message's plaintext (with the 404/410 re-upload retry). */
  download(msg: WAMessage): Promise<Buffer>
  /** Whether this id is one the bridge itself sent (an echo). */
  isOwnSend(id: string): Promise<boolean>
  /** The group's disappearing-message timer (s) as last known, for a message that does not say its own. */
  groupTimer?(chatId: string): number | undefined
}

const ProtocolType = proto.Message.ProtocolMessage.Type

type MediaNode = {
  mimetype?: string | null
  caption?: string | null
  contextInfo?: proto.IContextInfo | null
}
const MEDIA: Array<{ field: 'imageMessage' | 'videoMessage' | 'audioMessage' | 'documentMessage' | 'stickerMessage'; kind: AttachmentKind }> = [
  { field: 'imageMessage', kind: 'image' },
  { field: 'videoMessage', kind: 'video' },
  { field: 'audioMessage', kind: 'audio' },
  { field: 'documentMessage', kind: 'file' },
  { field: 'stickerMessage', kind: 'sticker' },
]

export function timestampOf(msg: WAMessage): number {
  const t = Number(msg.messageTimestamp ?? 0)
  return t > 0 ? t * 1000 : Date.now()
}

/** Null for what is never relayed: non-group chats, undecryptable stubs, group stubs, echoes, system traffic. */
export async function toInbound(msg: WAMessage, deps: InboundDeps): Promise<InboundEvent | undefined> {
  const chatId = msg.key.remoteJid
  const id = msg.key.id
  // CIPHERTEXT stubs carry no message: the real content may come later under the same id, so it must
  // not be forwarded (and so not marked seen by the core).
  if (!chatId || !id || !isJidGroup(chatId) || !msg.message) return undefined
  const c = extractMessageContent(msg.message)
  if (!c) return undefined
  if (msg.key.fromMe && (await deps.isOwnSend(id))) return undefined
  const sender = await senderOf(msg, deps)
  if (!sender) return undefined
  const base = { chat: { network: 'whatsapp' as const, id: chatId }, sender, remoteId: id, timestamp: timestampOf(msg), loginId: deps.loginId }

  if (c.protocolMessage) {
    const p = c.protocolMessage
    // The group's disappearing-message timer changed: rc14 turns the `ephemeral`/`not_ephemeral` group notification
    // into this message (0: off); a phone in the group says the same as a message of its own.
    if (p.type === ProtocolType.EPHEMERAL_SETTING) return { ...base, kind: 'chat_update', timer: Number(p.ephemeralExpiration ?? 0) }
    const target = p.key?.id
    if (!target) return undefined
    if (p.type === ProtocolType.REVOKE) return { ...base, kind: 'delete', target }
    if (p.type === ProtocolType.MESSAGE_EDIT && p.editedMessage) {
      const edited = extractMessageContent(p.editedMessage)
      const body = edited ? await textOf(edited, deps) : undefined
      if (!body) return undefined
      return { ...base, kind: 'edit', target, content: { kind: 'text', body, attachments: [] } }
    }
    return undefined // peer traffic, ephemeral settings, history sync: not chat content
  }
  if (c.reactionMessage) {
    const target = c.reactionMessage.key?.id
    if (!target) return undefined
    const emoji = c.reactionMessage.text ?? ''
    return { ...base, kind: 'reaction', target, emoji, removed: emoji === '' }
  }
  // A message in a group with disappearing messages says its own timer (contextInfo.expiration); a plain
  // `conversation` has no contextInfo, so the group's setting stands in.
  const expires = contextOf(c)?.expiration || deps.groupTimer?.(chatId) || 0
  const expiring = expires > 0 ? { expiresInSeconds: expires } : {}
  if (isViewOnce(msg.message)) {
    // Never downloaded: the line takes its place (core/render.ts says why).
    return { ...base, kind: 'message', content: viewOnceContent(MEDIA.find(m => c[m.field])?.kind ?? 'image', 'whatsapp'), ...expiring }
  }
  const content = await contentOf(msg, c, deps)
  if (!content) return undefined
  const replyTo = contextOf(c)?.stanzaId ?? undefined
  return { ...base, kind: 'message', content, ...(replyTo ? { replyTo } : {}), ...expiring }
}

/** Whether relaying this message downloads media from WhatsApp first (a view-once one is never downloaded). */
export function needsDownload(msg: WAMessage): boolean {
  if (!msg.message || isViewOnce(msg.message)) return false
  const c = extractMessageContent(msg.message)
  return !!c && MEDIA.some(m => c[m.field])
}

/** A view-once photo, video or voice message: wrapped (viewOnceMessage, V2, V2Extension; inside an ephemeralMessage in a
 * group with a timer), or flagged on the media itself. */
export function isViewOnce(m: proto.IMessage): boolean {
  const inner = m.ephemeralMessage?.message ?? m
  if (inner.viewOnceMessage || inner.viewOnceMessageV2 || inner.viewOnceMessageV2Extension) return true
  const c = extractMessageContent(m)
  return !!(c?.imageMessage?.viewOnce || c?.videoMessage?.viewOnce || c?.audioMessage?.viewOnce)
}

async function senderOf(msg: WAMessage, deps: InboundDeps): Promise<Person | undefined> {
  if (msg.key.fromMe) {
    // Not an echo (checked before): typed on the relay account's own phone.
    return { network: 'whatsapp', id: deps.self.personId, displayName: deps.self.displayName, viaRelayAccount: true }
  }
  const pushName = usableName(msg.pushName)
  const who = await deps.people.resolve(msg.key.participant ?? msg.participant, msg.key.participantAlt, pushName)
  if (!who) return undefined
  return { network: 'whatsapp', id: who.id, displayName: pushName ?? usableName(who.name) ?? neutralLabel(who.id) }
}

/** A push name worth showing: not blank and not a phone number, even wrapped in invisible bidi marks
 * (design.md, Privacy: a number never crosses to another network). */
export function usableName(name: string | null | undefined): string | undefined {
  const visible = name?.replace(/\p{Cf}/gu, '').trim()
  if (!visible || /^\+?[\d\s().-]{5,}$/.test(visible)) return undefined
  return name!.trim()
}

function contextOf(c: proto.IMessage): proto.IContextInfo | undefined {
  if (c.extendedTextMessage?.contextInfo) return c.extendedTextMessage.contextInfo
  for (const { field } of MEDIA) {
    const node = c[field] as MediaNode | null | undefined
    if (node?.contextInfo) return node.contextInfo
  }
  return c.locationMessage?.contextInfo ?? c.contactMessage?.contextInfo ?? undefined
}

/** Text with markup parsed and "@<user>" mentions of mentionedJid turned into named mention ranges. */
async function richOf(text: string, ctx: proto.IContextInfo | undefined, deps: InboundDeps): Promise<RichText> {
  let rt = parseMarkup(text)
  for (const jid of new Set(ctx?.mentionedJid ?? [])) {
    const user = jid.split('@', 1)[0]?.split(':', 1)[0]
    if (!user) continue
    // "@<user>" and not the start of a longer number; mentionedJid names a person once however often the
    // text does, and the visible text never keeps the digits (they may be a phone number).
    // (Found by searching, not by a RegExp built from the jid: a hostile jid can be too long for one.)
    const needle = `@${user}`
    const found: number[] = []
    for (let at = rt.text.indexOf(needle); at !== -1; at = rt.text.indexOf(needle, at + needle.length)) {
      if (!/[0-9]/.test(rt.text.charAt(at + needle.length))) found.push(at)
    }
    if (found.length === 0) continue
    const who = await deps.people.resolve(jid)
    if (!who) continue
    const label = `@${usableName(who.name) ?? neutralLabel(who.id)}`
    const mention = { ...plainText(label), mentions: [{ start: 0, length: label.length, person: { network: 'whatsapp' as const, id: who.id, displayName: label.slice(1) } }] }
    // Right to left, so that the offsets still to come stay valid.
    for (const at of found.reverse()) rt = splice(rt, at, needle.length, mention)
  }
  return rt
}

async function textOf(c: proto.IMessage, deps: InboundDeps): Promise<RichText | undefined> {
  const text = c.conversation ?? c.extendedTextMessage?.text
  if (text == null) {
    for (const { field } of MEDIA) {
      const caption = (c[field] as MediaNode | null | undefined)?.caption
      if (caption) return richOf(caption, contextOf(c), deps)
    }
    return undefined
  }
  return richOf(text, contextOf(c), deps)
}

async function contentOf(msg: WAMessage, c: proto.IMessage, deps: InboundDeps): Promise<MessageContent | undefined> {
  const body = (await textOf(c, deps)) ?? plainText('')
  const media = MEDIA.find(m => c[m.field])
  if (media) {
    const attachment = await attachmentOf(msg, c, media, deps)
    if (attachment) return { kind: 'text', body, attachments: [attachment] }
    const note = plainText(`[${media.kind === 'file' ? 'a file' : `a ${media.kind}`} that could not be downloaded]`)
    return { kind: 'text', body: body.text ? concat(body, plainText('\n'), note) : note, attachments: [] }
  }
  if (c.locationMessage || c.liveLocationMessage) {
    const l = c.locationMessage ?? c.liveLocationMessage!
    const location: Location = { latitude: l.degreesLatitude ?? 0, longitude: l.degreesLongitude ?? 0 }
    const name = c.locationMessage?.name ?? c.locationMessage?.address ?? undefined
    if (name) location.name = name
    return { kind: 'text', body: plainText(name ?? ''), attachments: [], location }
  }
  const contacts = c.contactMessage ? [c.contactMessage] : (c.contactsArrayMessage?.contacts ?? [])
  if (contacts.length > 0) {
    const attachments: Attachment[] = []
    for (const card of contacts) {
      if (!card.vcard) continue
      const data = Buffer.from(card.vcard, 'utf8')
      const name = card.displayName || 'contact'
      attachments.push({ kind: 'file', mimetype: 'text/vcard', filename: safeFilename(`${name}.vcf`), size: data.length, mediaId: await deps.media.put(data) })
    }
    const names = contacts.map(k => k.displayName || 'a contact').join(', ')
    return { kind: 'text', body: plainText(`Shared contact: ${names}`), attachments }
  }
  const poll = c.pollCreationMessage ?? c.pollCreationMessageV2 ?? c.pollCreationMessageV3
  if (poll) {
    const lines = [`Poll: ${poll.name ?? ''}`, ...(poll.options ?? []).map(o => `- ${o.optionName ?? ''}`)]
    return { kind: 'text', body: plainText(lines.join('\n')), attachments: [] }
  }
  if (body.text) return { kind: 'text', body, attachments: [] }
  deps.log.debug({ id: msg.key.id }, 'WhatsApp message of a kind the bridge does not relay')
  return undefined
}

const EXT: Record<string, string> = { 'image/jpeg': 'jpg', 'image/png': 'png', 'image/webp': 'webp', 'video/mp4': 'mp4', 'audio/ogg': 'ogg', 'audio/mpeg': 'mp3', 'audio/mp4': 'm4a', 'application/pdf': 'pdf' }

async function attachmentOf(
  msg: WAMessage,
  c: proto.IMessage,
  media: (typeof MEDIA)[number],
  deps: InboundDeps,
): Promise<Attachment | undefined> {
  const node = c[media.field] as MediaNode & { fileName?: string | null; width?: number | null; height?: number | null; seconds?: number | null; ptt?: boolean | null }
  let data: Buffer
  try {
    data = await deps.download(msg)
  } catch (err) {
    deps.log.warn({ id: msg.key.id, err: (err as Error).message }, 'Could not download WhatsApp media')
    return undefined
  }
  const kind: AttachmentKind = media.kind === 'audio' && node.ptt ? 'voice' : media.kind
  const mimetype = node.mimetype ?? (kind === 'sticker' ? 'image/webp' : 'application/octet-stream')
  const ext = EXT[mimetype.split(';', 1)[0]!.trim()] ?? 'bin'
  const a: Attachment = { kind, mimetype, filename: safeFilename(node.fileName || `${kind}.${ext}`), size: data.length, mediaId: await deps.media.put(data) }
  if (node.width) a.width = node.width
  if (node.height) a.height = node.height
  if (node.seconds) a.durationMs = node.seconds * 1000
  return a
}
