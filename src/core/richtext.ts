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
 * boundaries, never cutting a grapheme (so never a surrogate pair) or a mention.
 */
export function splitByUtf8Bytes(rt: RichText, maxBytes: number): RichText[] {
  return splitRichText(rt, part => utf8Length(part.text) <= maxBytes, maxBytes)
}

/**
 * Splits text into parts that each `fit`, with the same preferences as splitByUtf8Bytes. `maxUnits` bounds the
 * search: no prefix longer than that (in UTF-16 units) fits. A single grapheme that fits nowhere becomes a
 * part of its own (the caller's limit is then for it to enforce).
 */
export function splitRichText(rt: RichText, fits: (part: RichText) => boolean, maxUnits: number): RichText[] {
  const parts: RichText[] = []
  let rest = rt
  while (rest.text.length > 0 && !fits(rest)) {
    const [head, tail] = takePart(rest, fits, maxUnits)
    parts.push(head)
    rest = tail
  }
  if (rest.text.length > 0 || parts.length === 0) parts.push(rest)
  return parts
}

/** The longest start of `rt` that fits, cut at the best boundary, and what is left after it. */
export function takePart(rt: RichText, fits: (part: RichText) => boolean, maxUnits: number): [RichText, RichText] {
  const text = rt.text
  // Binary search for the longest fitting prefix: a prefix's size only grows with its length.
  let lo = 0
  let hi = Math.min(text.length, Math.max(1, maxUnits)) + 1
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1
    if (fits(slice(rt, 0, mid))) lo = mid
    else hi = mid
  }
  const end = graphemeStart(text, lo)
  let cut = end
  const window = text.slice(0, end)
  for (const sep of ['\n\n', '\n', ' ']) {
    const at = window.lastIndexOf(sep)
    if (at > end / 2) {
      cut = at + sep.length
      break
    }
  }
  const inMention = rt.mentions.find(m => m.start < cut && m.start + m.length > cut)
  if (inMention && inMention.start > 0) cut = inMention.start
  if (cut <= 0) cut = end > 0 ? end : graphemeEnd(text, 1)
  return [trimEnd(slice(rt, 0, cut)), slice(rt, cut)]
}

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' })
/** Graphemes longer than this (stacked combining marks) are cut like code points. */
const GRAPHEME_WINDOW = 64

/** The grapheme boundary at or before `at` (UTF-16 index). */
function graphemeStart(text: string, at: number): number {
  if (at <= 0 || at >= text.length) return Math.max(0, at)
  const from = Math.max(0, at - GRAPHEME_WINDOW)
  let best = -1
  for (const g of graphemes.segment(text.slice(from, at + GRAPHEME_WINDOW))) {
    const start = from + g.index
    if (start > at) break
    if (start > from || from === 0) best = start
  }
  if (best >= 0) return best
  return /[\uDC00-\uDFFF]/.test(text[at] ?? '') ? at - 1 : at
}

/** The end of the grapheme that contains index `at - 1`. */
function graphemeEnd(text: string, at: number): number {
  const first = graphemes.segment(text.slice(0, Math.min(text.length, at + GRAPHEME_WINDOW)))[Symbol.iterator]().next()
  return first.done ? Math.min(text.length, at) : first.value.segment.length
}

function trimEnd(rt: RichText): RichText {
  const trimmed = rt.text.replace(/\s+$/u, '')
  return trimmed.length === rt.text.length ? rt : slice(rt, 0, trimmed.length)
}
