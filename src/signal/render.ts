// Neutral → Signal: RichText into `message` + `textStyle` + `mention` strings (signal-cli.md §4.5, §4.6, §5).
// Pure functions; sending lives in send.ts.
import type { Attachment, InlineStyle, Location, MentionRange, RichText } from '../core/model.ts'
import { plainText } from '../core/model.ts'
import { concat, splice, splitByUtf8Bytes } from '../core/richtext.ts'
import type { MediaStore } from '../core/media.ts'
import { coveringStyles, mergeStyles } from './convert.ts'

/** Signal's text limit; longer text is split into several messages (§8). */
export const MAX_TEXT_BYTES = 2000
export const PLACEHOLDER = '\uFFFC'

const SIGNAL_STYLE: Record<InlineStyle, string | undefined> = {
  bold: 'BOLD',
  italic: 'ITALIC',
  strikethrough: 'STRIKETHROUGH',
  monospace: 'MONOSPACE',
  spoiler: 'SPOILER',
  // Signal has no blocks: code degrades to monospace, a quote to plain text.
  code_block: 'MONOSPACE',
  blockquote: undefined,
}

export interface SignalText {
  message: string
  textStyle: string[]
  mention: string[]
}

/** Links have no place in Signal text: `text (url)`, unless the text already is the url. */
export function inlineLinks(rt: RichText): RichText {
  let out: RichText = { ...rt, links: [] }
  const links = [...rt.links].sort((a, b) => b.start + b.length - (a.start + a.length))
  for (const l of links) {
    const shown = rt.text.slice(l.start, l.start + l.length)
    if (shown === l.url || shown === l.url.replace(/^mailto:/, '')) continue
    out = splice(out, l.start + l.length, 0, plainText(` (${l.url})`))
  }
  return out
}

/** One Signal-sized part: Signal mentions become U+FFFC placeholders; others stay as their visible text. */
export function toSignalText(rt: RichText): SignalText {
  let out: RichText = rt
  const signalMentions = rt.mentions.filter(m => m.person.network === 'signal').sort((a, b) => b.start - a.start)
  for (const m of signalMentions) {
    const replacement: RichText = {
      ...plainText(PLACEHOLDER),
      mentions: [{ ...m, start: 0, length: 1 }],
      styles: coveringStyles(out.styles, m.start, m.length).map(style => ({ start: 0, length: 1, style })),
    }
    out = splice(out, m.start, m.length, replacement)
  }
  const textStyle: string[] = []
  for (const s of mergeStyles(out.styles.map(s => ({ ...s, style: normalise(s.style) })).filter(s => s.style !== 'blockquote'))) {
    const name = SIGNAL_STYLE[s.style]
    if (name && s.length > 0) textStyle.push(`${s.start}:${s.length}:${name}`)
  }
  const mention = out.mentions
    .filter((m): m is MentionRange => m.person.network === 'signal' && out.text[m.start] === PLACEHOLDER)
    .sort((a, b) => a.start - b.start)
    .map(m => `${m.start}:1:${m.person.id}`)
  return { message: out.text, textStyle, mention }
}

const normalise = (s: InlineStyle): InlineStyle => (s === 'code_block' ? 'monospace' : s)

function prepare(body: RichText, location?: Location): RichText {
  const rt = inlineLinks(body)
  if (!location) return rt
  const where = `${location.name ? `${location.name}: ` : ''}https://www.openstreetmap.org/?mlat=${location.latitude}&mlon=${location.longitude}`
  return concat(rt, plainText(`${rt.text ? '\n' : ''}📍 ${where}`))
}

/** Renders a body into one or more sendable parts (each at most 2,000 UTF-8 bytes). */
export function renderParts(body: RichText, location?: Location): SignalText[] {
  const rt = prepare(body, location)
  if (rt.text.length === 0) return []
  return splitByUtf8Bytes(rt, MAX_TEXT_BYTES).map(toSignalText)
}

/** Renders a body as one text, whatever its length (edits replace one message; signal-cli moves text past
 * 2,000 bytes into a long-text attachment itself, §4.7). */
export function renderWhole(body: RichText, location?: Location): SignalText | undefined {
  const rt = prepare(body, location)
  return rt.text.length === 0 ? undefined : toSignalText(rt)
}

/** `data:<mime>;filename=<urlenc>;base64,<b64>`, the form the daemon accepts without a shared volume (§5). */
export async function attachmentUri(a: Attachment, media: MediaStore): Promise<string> {
  const bytes = await media.get(a.mediaId)
  return `data:${a.mimetype};filename=${encodeURIComponent(a.filename)};base64,${bytes.toString('base64')}`
}

/** Splits a Signal remote id `aci:timestamp` (the ACI holds no colon). */
export function parseRemoteId(remoteId: string): { aci: string; timestamp: number } | undefined {
  const at = remoteId.lastIndexOf(':')
  if (at <= 0) return undefined
  const timestamp = Number(remoteId.slice(at + 1))
  if (!Number.isSafeInteger(timestamp)) return undefined
  return { aci: remoteId.slice(0, at), timestamp }
}
