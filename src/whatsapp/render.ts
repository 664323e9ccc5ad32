// Neutral → WhatsApp content: rich text becomes markup with "@<user>" mentions, attachments become
// Baileys media content. Sending, windows and errors live in send.ts.
import type { AnyMessageContent, GroupMetadata } from '@whiskeysockets/baileys'
import { jidNormalizedUser } from '@whiskeysockets/baileys'
import type { Attachment, RichText } from '../core/model.ts'
import { plainText } from '../core/model.ts'
import { splice } from '../core/richtext.ts'
import { renderMarkup } from './markup.ts'
import type { People } from './people.ts'

export interface RenderedText {
  text: string
  /** Participant JIDs exactly as the group's metadata lists them. */
  mentions: string[]
}

/** The participant entry of the group that is this person, by LID or number. */
async function participantJid(people: People, group: GroupMetadata | undefined, personId: string): Promise<string | undefined> {
  const who = await people.byId(personId)
  if (!who || !group) return undefined
  const forms = new Set([who.lid, who.pn].filter((x): x is string => !!x))
  for (const p of group.participants) {
    const ids = [p.id, p.lid, p.phoneNumber].filter((x): x is string => !!x).map(j => jidNormalizedUser(j))
    if (ids.some(j => forms.has(j))) return p.id
  }
  return undefined
}

/** Mentions of WhatsApp people become "@<user>" plus a mentions entry; all others stay plain names. */
export async function renderText(body: RichText, people: People, group: GroupMetadata | undefined): Promise<RenderedText> {
  let rt = body
  const mentions: string[] = []
  // Right to left, so earlier ranges keep their offsets.
  for (const m of [...body.mentions].sort((a, b) => b.start - a.start)) {
    if (m.person.network !== 'whatsapp') continue
    const jid = await participantJid(people, group, m.person.id)
    if (!jid) continue
    const user = jid.split('@', 1)[0]!.split(':', 1)[0]!
    rt = splice(rt, m.start, m.length, plainText(`@${user}`))
    mentions.unshift(jid)
  }
  return { text: renderMarkup({ ...rt, mentions: [] }), mentions }
}

const CAPTIONED = new Set(['image', 'video', 'file'])
export const takesCaption = (a: Attachment): boolean => CAPTIONED.has(a.kind)

/** Baileys content for one attachment; a caption only where WhatsApp shows one. */
export function mediaContent(a: Attachment, data: Buffer, caption?: RenderedText): AnyMessageContent {
  const cap = caption && caption.text ? { caption: caption.text, mentions: caption.mentions } : {}
  switch (a.kind) {
    case 'image':
      return { image: data, mimetype: a.mimetype, ...cap }
    case 'video':
      return { video: data, mimetype: a.mimetype, ...cap }
    case 'voice':
      // A voice note must be ogg/opus to play as one; anything else goes as plain audio.
      return a.mimetype.startsWith('audio/ogg')
        ? { audio: data, ptt: true, mimetype: 'audio/ogg; codecs=opus' }
        : { audio: data, mimetype: a.mimetype }
    case 'audio':
      return { audio: data, mimetype: a.mimetype }
    case 'sticker':
      return a.mimetype === 'image/webp' ? { sticker: data } : { image: data, mimetype: a.mimetype }
    case 'file':
      return { document: data, mimetype: a.mimetype || 'application/octet-stream', fileName: a.filename, ...cap }
  }
}
