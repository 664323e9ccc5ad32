// Operations on RichText that keep every range on the characters it covered.
import { plainText, type RichText } from './model.ts'

type Ranged = { start: number; length: number }

function shift<T extends Ranged>(ranges: T[], by: number): T[] {
  return ranges.map(r => ({ ...r, start: r.start + by }))
}

/** Joins rich texts end to end. */
export function concat(...parts: RichText[]): RichText {
  const out = plainText('')
  for (const p of parts) {
    const at = out.text.length
    out.text += p.text
    out.styles.push(...shift(p.styles, at))
    out.links.push(...shift(p.links, at))
    out.mentions.push(...shift(p.mentions, at))
  }
  return out
}

function clip<T extends Ranged>(ranges: T[], from: number, to: number): T[] {
  const out: T[] = []
  for (const r of ranges) {
    const s = Math.max(r.start, from)
    const e = Math.min(r.start + r.length, to)
    if (e > s) out.push({ ...r, start: s - from, length: e - s })
  }
  return out
}

/** The part [from, to) in UTF-16 units; ranges are clipped to it. */
export function slice(rt: RichText, from: number, to = rt.text.length): RichText {
  return {
    text: rt.text.slice(from, to),
    styles: clip(rt.styles, from, to),
    links: clip(rt.links, from, to),
    // A mention cut in half is no mention: keep only whole ones.
    mentions: rt.mentions.filter(m => m.start >= from && m.start + m.length <= to).map(m => ({ ...m, start: m.start - from })),
  }
}

/** Replaces [start, start+length) with `replacement`, moving and trimming the ranges around it. */
export function splice(rt: RichText, start: number, length: number, replacement: RichText): RichText {
  return concat(slice(rt, 0, start), replacement, slice(rt, start + length))
}

const encoder = new TextEncoder()
export const utf8Length = (s: string): number => encoder.encode(s).length

/**
 * Splits text into parts of at most `maxBytes` UTF-8 bytes, preferring paragraph, line, then word
 * boundaries, never cutting a surrogate pair or a mention.
 */
export function splitByUtf8Bytes(rt: RichText, maxBytes: number): RichText[] {
  if (utf8Length(rt.text) <= maxBytes) return [rt]
  const parts: RichText[] = []
  let rest = rt
  while (utf8Length(rest.text) > maxBytes) {
    // Largest UTF-16 prefix that fits.
    let bytes = 0
    let end = 0
    for (const ch of rest.text) {
      const b = utf8Length(ch)
      if (bytes + b > maxBytes) break
      bytes += b
      end += ch.length
    }
    let cut = end
    const window = rest.text.slice(0, end)
    for (const sep of ['\n\n', '\n', ' ']) {
      const at = window.lastIndexOf(sep)
      if (at > end / 2) {
        cut = at + sep.length
        break
      }
    }
    const inMention = rest.mentions.find(m => m.start < cut && m.start + m.length > cut)
    if (inMention && inMention.start > 0) cut = inMention.start
    if (cut <= 0) cut = Math.max(end, 1)
    parts.push(trimEnd(slice(rest, 0, cut)))
    rest = slice(rest, cut)
  }
  if (rest.text.length > 0) parts.push(rest)
  return parts
}

function trimEnd(rt: RichText): RichText {
  const trimmed = rt.text.replace(/\s+$/u, '')
  return trimmed.length === rt.text.length ? rt : slice(rt, 0, trimmed.length)
}
