// WhatsApp's plain-text markup (reference §5) to and from RichText.
// *bold* _italic_ ~strike~ `inline code` ```code block``` and "> " quote lines. Markers must hug the text
// and sit at word boundaries; nothing is formatted inside code; emphasis never crosses a line; there is
// no escape. Spoilers do not exist on WhatsApp: they degrade visibly to "[spoiler: text]".
import { concat, slice, splice } from '../core/richtext.ts'
import { plainText, type InlineStyle, type RichText } from '../core/model.ts'

const EMPHASIS: Record<string, InlineStyle> = { '*': 'bold', _: 'italic', '~': 'strikethrough' }
const MARKER: Partial<Record<InlineStyle, string>> = { bold: '*', italic: '_', strikethrough: '~' }
const isSpace = (c: string | undefined) => c === undefined || /\s/u.test(c)
const isWordChar = (c: string | undefined) => c !== undefined && /[\p{L}\p{N}]/u.test(c)

const styled = (text: string, style: InlineStyle): RichText => ({
  ...plainText(text),
  styles: text.length ? [{ start: 0, length: text.length, style }] : [],
})
const wrap = (rt: RichText, style: InlineStyle): RichText =>
  rt.text.length ? { ...rt, styles: [...rt.styles, { start: 0, length: rt.text.length, style }] } : rt

// ---- parse ------------------------------------------------------------------------------------------

export function parseMarkup(input: string): RichText {
  const parts: RichText[] = []
  let rest = input
  for (;;) {
    const open = rest.indexOf('```')
    const close = open < 0 ? -1 : rest.indexOf('```', open + 3)
    if (open < 0 || close < 0 || close === open + 3) break
    parts.push(parseLines(rest.slice(0, open)), styled(rest.slice(open + 3, close), 'code_block'))
    rest = rest.slice(close + 3)
  }
  parts.push(parseLines(rest))
  return concat(...parts)
}

function parseLines(text: string): RichText {
  const lines = text.split('\n')
  return concat(
    ...lines.map((line, i) => {
      const nl = plainText(i < lines.length - 1 ? '\n' : '')
      if (line.startsWith('> ') && line.length > 2) return concat(wrap(parseInlineCode(line.slice(2)), 'blockquote'), nl)
      return concat(parseInlineCode(line), nl)
    }),
  )
}

function parseInlineCode(line: string): RichText {
  const parts: RichText[] = []
  let i = 0
  let from = 0
  while (i < line.length) {
    const end = line[i] === '`' ? line.indexOf('`', i + 1) : -1
    if (end > i + 1) {
      parts.push(parseEmphasis(line.slice(from, i)), styled(line.slice(i + 1, end), 'monospace'))
      i = end + 1
      from = i
    } else i++
  }
  parts.push(parseEmphasis(line.slice(from)))
  return concat(...parts)
}

const canOpen = (s: string, i: number) => !isSpace(s[i + 1]) && !isWordChar(s[i - 1])
const canClose = (s: string, j: number) => !isSpace(s[j - 1]) && !isWordChar(s[j + 1])

/** Emphasis with nesting: an opener pairs with the nearest closer of the same marker on the line. */
function parseEmphasis(s: string): RichText {
  const parts: RichText[] = []
  let from = 0
  let i = 0
  while (i < s.length) {
    const c = s[i]!
    const style = EMPHASIS[c]
    if (style && canOpen(s, i)) {
      let j = s.indexOf(c, i + 2)
      while (j > 0 && !canClose(s, j)) j = s.indexOf(c, j + 1)
      if (j > 0) {
        parts.push(plainText(s.slice(from, i)), wrap(parseEmphasis(s.slice(i + 1, j)), style))
        i = j + 1
        from = i
        continue
      }
    }
    i++
  }
  parts.push(plainText(s.slice(from)))
  return concat(...parts)
}

// ---- render -----------------------------------------------------------------------------------------

/** Merged, per-style character ranges, trimmed so they start and end on non-space characters. */
function rangesOf(rt: RichText, style: InlineStyle, trim: boolean): Array<[number, number]> {
  const on = new Uint8Array(rt.text.length)
  for (const r of rt.styles) if (r.style === style) on.fill(1, r.start, Math.min(r.start + r.length, rt.text.length))
  const out: Array<[number, number]> = []
  for (let i = 0; i < on.length; ) {
    if (!on[i]) {
      i++
      continue
    }
    let j = i
    while (j < on.length && on[j]) j++
    let [s, e] = [i, j]
    if (trim) {
      while (s < e && isSpace(rt.text[s])) s++
      while (e > s && isSpace(rt.text[e - 1])) e--
    }
    if (e > s) out.push([s, e])
    i = j
  }
  return out
}

/** Links become "text (url)" (or the bare url); spoilers become "[spoiler: text]". */
function degrade(rt: RichText): RichText {
  let out = rt
  const edits: Array<{ at: number; text: string }> = []
  for (const l of rt.links) {
    const shown = rt.text.slice(l.start, l.start + l.length)
    if (shown !== l.url) edits.push({ at: l.start + l.length, text: ` (${l.url})` })
  }
  for (const [s, e] of rangesOf(rt, 'spoiler', false)) edits.push({ at: e, text: ']' }, { at: s, text: '[spoiler: ' })
  edits.sort((a, b) => b.at - a.at)
  for (const ed of edits) out = splice(out, ed.at, 0, plainText(ed.text))
  return { ...out, links: [], styles: out.styles.filter(s => s.style !== 'spoiler') }
}

export function renderMarkup(input: RichText): string {
  const rt = degrade(input)
  let out = ''
  let at = 0
  for (const [s, e] of rangesOf(rt, 'code_block', false)) {
    out += renderLines(slice(rt, at, s)) + '```' + rt.text.slice(s, e) + '```'
    at = e
  }
  return out + renderLines(slice(rt, at))
}

function renderLines(rt: RichText): string {
  const quoted = rangesOf(rt, 'blockquote', true)
  const out: string[] = []
  let at = 0
  for (const line of rt.text.split('\n')) {
    const part = slice(rt, at, at + line.length)
    const inQuote = line.trim().length > 0 && quoted.some(([s, e]) => s < at + line.length && e > at)
    out.push((inQuote ? '> ' : '') + renderInlineCode(part))
    at += line.length + 1
  }
  return out.join('\n')
}

function renderInlineCode(rt: RichText): string {
  let out = ''
  let at = 0
  for (const [s, e] of rangesOf(rt, 'monospace', true)) {
    out += renderEmphasis(slice(rt, at, s)) + '`' + rt.text.slice(s, e) + '`'
    at = e
  }
  return out + renderEmphasis(slice(rt, at))
}

/** Properly nested markers; a style interrupted by another's end is closed and reopened. */
function renderEmphasis(rt: RichText): string {
  const ranges: Array<{ style: InlineStyle; s: number; e: number }> = []
  for (const style of ['bold', 'italic', 'strikethrough'] as const)
    for (const [s, e] of rangesOf(rt, style, true)) ranges.push({ style, s, e })
  if (ranges.length === 0) return rt.text
  const cuts = [...new Set([0, rt.text.length, ...ranges.flatMap(r => [r.s, r.e])])].sort((a, b) => a - b)
  const stack: InlineStyle[] = []
  let out = ''
  for (let k = 0; k + 1 < cuts.length; k++) {
    const [from, to] = [cuts[k]!, cuts[k + 1]!]
    const active = ranges.filter(r => r.s <= from && r.e >= to)
    const want = new Set(active.map(r => r.style))
    const firstGone = stack.findIndex(st => !want.has(st))
    if (firstGone >= 0) for (const st of stack.splice(firstGone).reverse()) out += MARKER[st]
    const text = rt.text.slice(from, to)
    const lead = /^\s*/u.exec(text)![0]
    if (lead.length === text.length) {
      out += text // whitespace only: open nothing, so markers keep hugging text
      continue
    }
    out += lead
    // Open the longest-running styles first so they need the fewest reopenings.
    for (const r of active.sort((a, b) => b.e - a.e))
      if (!stack.includes(r.style)) {
        stack.push(r.style)
        out += MARKER[r.style]
      }
    out += text.slice(lead.length)
  }
  for (const st of stack.reverse()) out += MARKER[st]
  return out
}

