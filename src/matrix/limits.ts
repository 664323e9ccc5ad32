// What a Matrix homeserver accepts, and how the bridge stays inside it. Synapse refuses for good (so a retry
// never helps):
// - an event whose canonical JSON, as signed and stored, exceeds 65,536 bytes (413 M_TOO_LARGE). The server
//   adds to what the bridge sends: auth_events and prev_events (up to about 15 event ids), depth, hashes,
//   signatures, origin, unsigned, and ids of up to 255 bytes each (sender, room). That is at most about 2 KiB;
//   the bridge keeps a part's content under 56,000 bytes and an edit's extra fallback under 4,000, so an event
//   stays under 60,000 bytes and more than 5 KiB are left for the server;
// - a display name over 256 characters (code points; 400 M_UNKNOWN on the profile, M_BAD_JSON in a member
//   event).
// Room names have no enforced limit on Synapse (MSC3669 dropped the spec's 255 bytes), but servers built on
// ruma still refuse longer ones, so they are cut to 255 bytes.
import type { RichText } from '../core/model.ts'
import { slice, takePart, utf8Length } from '../core/richtext.ts'

type Json = Record<string, unknown>

export const MAX_PART_BYTES = 56_000
export const MAX_EDIT_FALLBACK_BYTES = 4_000
/** A long text becomes at most this many events; the last is cut with a note. */
export const MAX_PARTS = 8
export const MAX_DISPLAYNAME_CHARS = 256
export const MAX_ROOM_NAME_BYTES = 255

/** The size of content as the server counts it (UTF-8 JSON; key order does not change the length). */
export const contentBytes = (content: Json): number => utf8Length(JSON.stringify(content))

const codePoints = (s: string): number => {
  let n = 0
  for (const _ of s) n++
  return n
}

/** The start of a string that is at most `max` code points, cut with "…" when it was longer. */
function cutChars(s: string, max: number): string {
  if (codePoints(s) <= max) return s
  return `${[...s].slice(0, Math.max(0, max - 1)).join('')}…`
}

/** A ghost's display name "Name (Network)", the name cut so that the whole stays within Synapse's 256 characters. */
export function displayNameWithin(name: string, suffix: string): string {
  return `${cutChars(name, MAX_DISPLAYNAME_CHARS - codePoints(suffix))}${suffix}`
}

/** A room name of at most 255 UTF-8 bytes, cut with "…" when it was longer. */
export function roomNameWithin(name: string): string {
  if (utf8Length(name) <= MAX_ROOM_NAME_BYTES) return name
  let out = ''
  for (const ch of name) {
    if (utf8Length(out + ch) > MAX_ROOM_NAME_BYTES - utf8Length('…')) break
    out += ch
  }
  return `${out}…`
}

/**
 * A text split into the contents of at most MAX_PARTS events, each within MAX_PART_BYTES once rendered. Splitting
 * works on the rich text (styles, links and mentions clipped to each part), so each part's HTML is whole. Text
 * beyond the last part is dropped with a note "… (N characters cut)" (N in code points).
 */
export function splitForMatrix(rt: RichText, render: (part: RichText) => Json): Json[] {
  const fits = (part: RichText): boolean => contentBytes(render(part)) <= MAX_PART_BYTES
  const parts: Json[] = []
  let rest = rt
  while (parts.length < MAX_PARTS - 1 && !fits(rest)) {
    const [head, tail] = takePart(rest, fits, MAX_PART_BYTES)
    parts.push(render(head))
    rest = tail
  }
  if (fits(rest)) return [...parts, render(rest)]
  // The last part: as much as fits beside the note. The note's number is at most the text's length.
  const noteFor = (cut: number): RichText => ({ text: `\n… (${cut} characters cut)`, styles: [], links: [], mentions: [] })
  const widest = noteFor(codePoints(rest.text))
  const [head] = takePart(rest, part => fits(withNote(part, widest)), MAX_PART_BYTES)
  const cut = codePoints(rest.text.slice(head.text.length))
  parts.push(render(withNote(head, noteFor(cut))))
  return parts
}

function withNote(rt: RichText, note: RichText): RichText {
  // The note stays outside every range of the text it follows.
  const base = slice(rt, 0)
  return { ...base, text: base.text + note.text }
}

/**
 * An edit of one part: `m.new_content` carries the part whole; the fallback for clients without edits is the
 * same text with "* ", shortened to MAX_EDIT_FALLBACK_BYTES when the whole event would not fit otherwise.
 */
export function editContent(part: Json, originalEventId: string): Json {
  const body = String(part['body'] ?? '')
  const full: Json = {
    ...part,
    body: `* ${body}`,
    ...(typeof part['formatted_body'] === 'string' ? { formatted_body: `* ${part['formatted_body']}` } : {}),
    'm.new_content': part,
    'm.relates_to': { rel_type: 'm.replace', event_id: originalEventId },
  }
  if (contentBytes(full) <= MAX_PART_BYTES + MAX_EDIT_FALLBACK_BYTES) return full
  let short = ''
  for (const ch of body) {
    if (utf8Length(JSON.stringify(short + ch)) > MAX_EDIT_FALLBACK_BYTES - 16) break
    short += ch
  }
  const { format: _f, formatted_body: _b, ...plain } = full
  return { ...plain, body: `* ${short}…` }
}
