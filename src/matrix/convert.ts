// Matrix events ↔ the neutral model.
import { safeFilename } from '../core/filename.ts'
import type { MediaStore } from '../core/media.ts'
import { plainText, type Attachment, type AttachmentKind, type InboundEvent, type MessageContent, type NetworkId, type Person } from '../core/model.ts'
import { decryptAttachment, encryptedFileOf } from './attachments.ts'
import { richTextToMatrix, type MentionResolver } from './html-render.ts'
import { stripPlainReplyFallback } from './html-text.ts'
import type { MatrixEvent } from './inbox.ts'

type Json = Record<string, unknown>
const obj = (v: unknown): Json | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : undefined)
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined)

const MEDIA_KINDS: Record<string, AttachmentKind> = {
  'm.image': 'image', 'm.video': 'video', 'm.audio': 'audio', 'm.file': 'file',
}

export interface ConvertContext {
  sender: Person
  media: MediaStore
  /** Fetches an mxc:// URI's bytes from the homeserver. */
  download: (mxc: string) => Promise<{ data: Buffer; mimetype: string }>
  isGhost: (mxid: string) => { network: NetworkId; id: string } | undefined
}

/** Why an event was not turned into anything; logged at debug, never shown. */
export class Unsupported {
  readonly reason: string
  constructor(reason: string) {
    this.reason = reason
  }
}

// The HTML parser (sanitize-html, htmlparser2, postcss: several MB resident) is loaded with the first formatted
// message, not with the bridge: an idle bridge, or one whose rooms send plain text, never needs it.
let htmlParse: typeof import('./html-parse.ts') | undefined

/** Body text of m.text/m.notice/m.emote, formatted when the sender sent HTML. */
async function textOf(content: Json, ctx: ConvertContext, isReply: boolean) {
  const html = content.format === 'org.matrix.custom.html' ? str(content.formatted_body) : undefined
  if (html !== undefined) {
    htmlParse ??= await import('./html-parse.ts')
    return htmlParse.htmlToRichText(html, { isGhost: ctx.isGhost })
  }
  const body = str(content.body) ?? ''
  return plainText(isReply ? stripPlainReplyFallback(body) : body)
}

async function attachmentOf(content: Json, kind: AttachmentKind, ctx: ConvertContext): Promise<Attachment | Unsupported> {
  // In an encrypted room the file is encrypted too: `file` holds its URL and key instead of `url`.
  const file = encryptedFileOf(content.file)
  const url = file?.url ?? str(content.url)
  if (!url?.startsWith('mxc://')) return new Unsupported('media without an mxc:// url or a readable encrypted file')
  const info = obj(content.info) ?? {}
  const downloaded = await ctx.download(url)
  const data = file ? decryptAttachment(downloaded.data, file) : downloaded.data
  // An encrypted file is uploaded as opaque bytes: only the event's info says what it is.
  const mimetype = file ? undefined : downloaded.mimetype
  const mediaId = await ctx.media.put(data)
  const filename = safeFilename(str(content.filename) ?? str(content.body) ?? 'file')
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined)
  const isVoice = kind === 'audio' && (content['org.matrix.msc3245.voice'] !== undefined || content['m.voice'] !== undefined)
  return {
    kind: isVoice ? 'voice' : kind,
    mimetype: str(info.mimetype) ?? mimetype ?? 'application/octet-stream',
    filename,
    size: data.length,
    ...(num(info.w) !== undefined ? { width: num(info.w)! } : {}),
    ...(num(info.h) !== undefined ? { height: num(info.h)! } : {}),
    ...(num(info.duration) !== undefined ? { durationMs: num(info.duration)! } : {}),
    mediaId,
  }
}

/** The content of an m.room.message (or m.new_content), or why it is not relayed. */
async function messageContent(content: Json, ctx: ConvertContext, isReply: boolean): Promise<MessageContent | Unsupported> {
  const msgtype = content.msgtype === undefined ? 'm.text' : str(content.msgtype) // the spec's reply example has none
  if (msgtype === undefined) return new Unsupported('msgtype is not a string')
  switch (msgtype) {
    case 'm.text':
    case 'm.notice':
    case 'm.emote': {
      // Without a string body there is no message, and an empty one would reach the groups as a bare name.
      if (typeof content.body !== 'string') return new Unsupported('text without a string body')
      const body = await textOf(content, ctx, isReply)
      if (body.text.length === 0) return new Unsupported('empty text')
      return {
        kind: msgtype === 'm.notice' ? 'notice' : msgtype === 'm.emote' ? 'emote' : 'text',
        body,
        attachments: [],
      }
    }
    case 'm.location': {
      const geo = /^geo:(-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?)/.exec(str(content.geo_uri) ?? '')
      if (!geo) return new Unsupported('location without a geo: URI')
      const latitude = Number(geo[1])
      const longitude = Number(geo[2])
      const name = str(content.body)
      return {
        kind: 'text',
        body: plainText(`📍 ${name ? `${name}: ` : ''}https://www.openstreetmap.org/?mlat=${latitude}&mlon=${longitude}`),
        attachments: [],
        location: { latitude, longitude, ...(name ? { name } : {}) },
      }
    }
    default: {
      const kind = MEDIA_KINDS[msgtype]
      if (!kind) return new Unsupported(`msgtype ${msgtype}`)
      const att = await attachmentOf(content, kind, ctx)
      if (att instanceof Unsupported) return att
      // A caption (MSC2530): body differs from the file name.
      const caption = str(content.filename) && str(content.body) !== str(content.filename) ? await textOf(content, ctx, false) : plainText('')
      return { kind: 'text', body: caption, attachments: [att] }
    }
  }
}

/** Turns a Matrix room event into a neutral event, or says why it is not relayed. */
export async function fromMatrix(ev: MatrixEvent, ctx: ConvertContext): Promise<InboundEvent | Unsupported> {
  const base = {
    chat: { network: 'matrix' as const, id: ev.room_id },
    sender: ctx.sender,
    remoteId: ev.event_id,
    timestamp: typeof ev.origin_server_ts === 'number' ? ev.origin_server_ts : Date.now(),
  }
  const content = ev.content
  const relates = obj(content['m.relates_to'])
  switch (ev.type) {
    case 'm.room.message': {
      if (relates?.rel_type === 'm.replace' && str(relates.event_id)) {
        const next = obj(content['m.new_content'])
        if (!next) return new Unsupported('edit without m.new_content')
        const c = await messageContent(next, ctx, false)
        if (c instanceof Unsupported) return c
        return { ...base, kind: 'edit', target: str(relates.event_id)!, content: c }
      }
      const replyTo = str(obj(relates?.['m.in_reply_to'])?.event_id)
      const c = await messageContent(content, ctx, replyTo !== undefined)
      if (c instanceof Unsupported) return c
      return { ...base, kind: 'message', content: c, ...(replyTo ? { replyTo } : {}) }
    }
    case 'm.sticker': {
      const att = await attachmentOf(content, 'sticker', ctx)
      if (att instanceof Unsupported) return att
      return { ...base, kind: 'message', content: { kind: 'text', body: plainText(''), attachments: [att] } }
    }
    case 'm.reaction': {
      const target = str(relates?.event_id)
      const key = str(relates?.key)
      if (relates?.rel_type !== 'm.annotation' || !target || !key) return new Unsupported('reaction without annotation')
      return { ...base, kind: 'reaction', target, emoji: key, removed: false }
    }
    case 'm.room.redaction': {
      // Room v11 puts the target in content; older rooms at the top level.
      const target = str(content.redacts) ?? str(ev.redacts)
      if (!target) return new Unsupported('redaction without a target')
      return { ...base, kind: 'delete', target }
    }
    default:
      return new Unsupported(`event type ${ev.type}`)
  }
}

/** Neutral text → m.room.message content. */
export function toMatrixText(content: MessageContent, mentionFor: MentionResolver): Json {
  const rendered = richTextToMatrix(content.body, mentionFor)
  const msgtype = content.kind === 'emote' ? 'm.emote' : content.kind === 'notice' ? 'm.notice' : 'm.text'
  return { msgtype, ...rendered }
}

export const MATRIX_MSGTYPE: Record<AttachmentKind, string> = {
  image: 'm.image', video: 'm.video', audio: 'm.audio', voice: 'm.audio', file: 'm.file', sticker: 'm.image',
}
