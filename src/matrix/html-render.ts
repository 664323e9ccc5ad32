// Neutral RichText → Matrix message content (plain body + org.matrix.custom.html).
// Ranges may overlap; HTML must nest. Every range becomes one element per stretch where it can
// nest, split where another range's boundary crosses it. The layout rules mirror html-parse.ts,
// so that parsing the HTML produced here gives back the same text and ranges.
import type { InlineStyle, MentionRange, RichText } from '../core/model.ts'

export interface MatrixTextContent {
  body: string
  format?: 'org.matrix.custom.html'
  formatted_body?: string
  'm.mentions': { user_ids: string[] }
}

export type MentionResolver = (person: MentionRange['person']) => { mxid: string; displayName: string } | undefined

interface Span {
  start: number
  end: number
  open: string
  close: string
  /** Blocks (quote, code block) always sit outside inline elements, so they are never split by them. */
  block: boolean
  pre: boolean
  order: number
}

const TAGS: Record<InlineStyle, [open: string, close: string]> = {
  bold: ['<strong>', '</strong>'],
  italic: ['<em>', '</em>'],
  strikethrough: ['<del>', '</del>'],
  monospace: ['<code>', '</code>'],
  spoiler: ['<span data-mx-spoiler>', '</span>'],
  code_block: ['<pre><code>', '</code></pre>'],
  blockquote: ['<blockquote>', '</blockquote>'],
}

const escapeText = (s: string): string => s.replace(/&/gu, '&amp;').replace(/</gu, '&lt;').replace(/>/gu, '&gt;')
const escapeAttr = (s: string): string => escapeText(s).replace(/"/gu, '&quot;')

type Interval = [start: number, end: number]

/** The parts of [start, end) not covered by `taken` (which is kept disjoint by the caller). */
function subtract(start: number, end: number, taken: Interval[]): Interval[] {
  let pieces: Interval[] = [[start, end]]
  for (const [ts, te] of taken) {
    pieces = pieces.flatMap(([s, e]): Interval[] =>
      te <= s || ts >= e ? [[s, e]] : ([[s, Math.min(e, ts)], [Math.max(s, te), e]] as Interval[]).filter(([a, b]) => b > a),
    )
  }
  return pieces
}

export function richTextToMatrix(rt: RichText, mentionFor?: MentionResolver): MatrixTextContent {
  const text = rt.text
  const n = text.length
  const clamp = (r: { start: number; length: number }): Interval => {
    const s = Math.max(0, Math.min(n, Math.trunc(r.start)))
    return [s, Math.max(s, Math.min(n, Math.trunc(r.start + r.length)))]
  }
  const spans: Span[] = []
  const add = (s: number, e: number, open: string, close: string, block = false, pre = false): void => {
    if (e > s) spans.push({ start: s, end: e, open, close, block, pre, order: spans.length })
  }

  // Monospace inside a code block is implied by it and is not rendered a second time.
  const codeBlocks = rt.styles.filter(r => r.style === 'code_block').map(clamp)
  for (const r of rt.styles) {
    const [s, e] = clamp(r)
    const [open, close] = TAGS[r.style]
    const block = r.style === 'code_block' || r.style === 'blockquote'
    const pieces = r.style === 'monospace' ? subtract(s, e, codeBlocks) : [[s, e] as Interval]
    for (const [ps, pe] of pieces) add(ps, pe, open, close, block, r.style === 'code_block')
  }

  // Anchors cannot nest: a character belongs to at most one. Mentions win, then links in order.
  const userIds: string[] = []
  const anchored: Interval[] = []
  for (const m of rt.mentions) {
    const target = mentionFor?.(m.person)
    const [s, e] = clamp(m)
    // A mention is a pill only whole: unresolvable or overlapping an earlier one, it stays plain text.
    if (!target || e === s || anchored.some(([as, ae]) => as < e && ae > s)) continue
    if (!userIds.includes(target.mxid)) userIds.push(target.mxid)
    add(s, e, `<a href="https://matrix.to/#/${escapeAttr(encodeURIComponent(target.mxid))}">`, '</a>')
    anchored.push([s, e])
  }
  for (const l of rt.links) {
    const [s, e] = clamp(l)
    for (const [ps, pe] of subtract(s, e, anchored)) {
      add(ps, pe, `<a href="${escapeAttr(l.url)}">`, '</a>')
      anchored.push([ps, pe])
    }
  }

  const content: MatrixTextContent = { body: text, 'm.mentions': { user_ids: userIds } }
  if (spans.length === 0) return content
  return { ...content, format: 'org.matrix.custom.html', formatted_body: renderHtml(text, spans) }
}

function renderHtml(text: string, spans: Span[]): string {
  const n = text.length
  const blockEnds = new Set<number>()
  const blockEdges = new Set<number>()
  const startsAt = new Map<number, Span[]>()
  const points = new Set<number>([0, n])
  for (const sp of spans) {
    points.add(sp.start).add(sp.end)
    if (sp.block) {
      blockEnds.add(sp.end)
      blockEdges.add(sp.start).add(sp.end)
    }
    startsAt.set(sp.start, [...(startsAt.get(sp.start) ?? []), sp])
  }
  const sorted = [...points].sort((a, b) => a - b)
  // Outer first: blocks below inlines, then the longest, then the order given.
  const nesting = (a: Span, b: Span): number => Number(b.block) - Number(a.block) || b.end - a.end || a.order - b.order

  const out: string[] = []
  const stack: Span[] = []
  for (let k = 0; k < sorted.length; k++) {
    const p = sorted[k] ?? 0
    const starting = startsAt.get(p) ?? []
    // Close down to the lowest element ending here; a block opening here also closes every inline
    // element, so that the block can go underneath them.
    let cut = stack.findIndex(sp => sp.end === p)
    if (cut < 0) cut = stack.length
    if (starting.some(sp => sp.block)) {
      const firstInline = stack.findIndex(sp => !sp.block)
      if (firstInline >= 0) cut = Math.min(cut, firstInline)
    }
    const reopen: Span[] = []
    while (stack.length > cut) {
      const sp = stack.pop()
      if (!sp) break
      // A code block's last newline is swallowed by the parser (as in a browser): double it.
      if (sp.pre && p > 0 && text[p - 1] === '\n') out.push('\n')
      out.push(sp.close)
      if (sp.end > p) reopen.push(sp)
    }
    for (const sp of [...reopen, ...starting].sort(nesting)) {
      out.push(sp.open)
      stack.push(sp)
    }
    const q = sorted[k + 1]
    if (q === undefined) break
    const inPre = stack.some(sp => sp.pre)
    for (let i = p; i < q; i++) {
      const ch = text[i] ?? ''
      if (ch === '\n') {
        // A block already ends its last line: the newline right after it is that line end.
        if (i === p && blockEnds.has(p) && p > 0 && text[p - 1] !== '\n') continue
        out.push(inPre ? '\n' : '<br>')
      } else if (ch === ' ' && !inPre && collapses(text, i, blockEdges)) {
        out.push('&nbsp;') // keeps a space a browser would otherwise swallow visible
      } else {
        out.push(ch === '&' ? '&amp;' : ch === '<' ? '&lt;' : ch === '>' ? '&gt;' : ch)
      }
    }
  }
  return out.join('')
}

/** Whether a browser would collapse or drop this space: at a line edge or after other whitespace. */
function collapses(text: string, i: number, blockEdges: Set<number>): boolean {
  const before = text[i - 1]
  const after = text[i + 1]
  return (
    before === undefined || before === ' ' || before === '\n' || before === '\t' ||
    after === undefined || after === '\n' || blockEdges.has(i) || blockEdges.has(i + 1)
  )
}
