// The text side of HTML parsing: collapses whitespace and block breaks the way a browser lays
// them out, and keeps each element's range on exactly the characters it ended up covering.
import type { InlineStyle, MentionRange } from '../core/model.ts'

/** What an element contributes besides its text. */
export type Range =
  | { kind: 'none' }
  | { kind: 'style'; style: InlineStyle }
  | { kind: 'link'; url: string }
  | { kind: 'mention'; person: Omit<MentionRange['person'], 'displayName'> }

export type Placed = Exclude<Range, { kind: 'none' }> & { start: number; length: number }

interface Frame {
  range: Range
  /** Set on the element's first character; a break emitted before it stays outside the range. */
  start: number | undefined
}

export class TextBuilder {
  // Chunks joined once at the end: reading back from one growing string would flatten it each time.
  private parts: string[] = []
  private len = 0
  private last = ''
  private trailingNewlines = 0
  private pendingBreak = 0
  /** The last character is a collapsible space that a following line break would swallow. */
  private trailingSpace = false
  private stack: Frame[] = []
  /** Frames at this index and above have no character yet (they are always the top of the stack). */
  private firstUnstarted = 0
  /** In the order closed: the ranges that end at the current length are always a suffix. */
  private closed: { range: Exclude<Range, { kind: 'none' }>; start: number; end: number }[] = []

  open(range: Range): void {
    this.stack.push({ range, start: undefined })
  }

  close(): void {
    const frame = this.stack.pop()
    if (this.firstUnstarted > this.stack.length) this.firstUnstarted = this.stack.length
    if (!frame || frame.start === undefined || frame.range.kind === 'none' || this.len <= frame.start) return
    this.closed.push({ range: frame.range, start: frame.start, end: this.len })
  }

  /** A block element starts or ends here: at least `newlines` line breaks before any further text. */
  blockBoundary(newlines: number): void {
    this.dropTrailingSpace()
    this.pendingBreak = Math.max(this.pendingBreak, newlines)
  }

  /** Text outside <pre>: runs of ASCII whitespace become one space, none at the start of a line. */
  collapsible(text: string): void {
    for (const m of text.matchAll(/[ \t\n\f\r]+|[^ \t\n\f\r]+/gu)) {
      if (/^[ \t\n\f\r]/u.test(m[0])) this.space()
      else this.content(m[0])
    }
  }

  /** Text kept as written (inside <pre>, list markers, alt text). */
  word(text: string): void {
    if (text) this.content(text)
  }

  lineBreak(): void {
    this.dropTrailingSpace()
    this.content('\n')
  }

  /** Drops the final newline of a <pre>, which a browser does not show as an empty line. */
  dropTrailingNewlineOfTop(): void {
    const top = this.stack.at(-1)
    if (this.last === '\n' && top?.start !== undefined && this.len > top.start) this.removeLast()
  }

  finish(): { text: string; ranges: Placed[] } {
    this.dropTrailingSpace()
    while (this.stack.length > 0) this.close()
    const ranges: Placed[] = this.closed
      .filter(c => c.end > c.start)
      .map(c => ({ ...c.range, start: c.start, length: c.end - c.start }))
      .sort((a, b) => a.start - b.start || b.length - a.length)
    return { text: this.parts.join(''), ranges: mergeStyles(ranges) }
  }

  private space(): void {
    if (this.pendingBreak > 0 || this.len === 0 || this.last === '\n' || this.last === ' ') return
    this.content(' ')
    this.trailingSpace = true
  }

  private content(s: string): void {
    this.flushBreak()
    for (let i = this.firstUnstarted; i < this.stack.length; i++) {
      const frame = this.stack[i]
      if (frame) frame.start = this.len
    }
    this.firstUnstarted = this.stack.length
    this.append(s)
  }

  private flushBreak(): void {
    const need = this.len > 0 ? this.pendingBreak - this.trailingNewlines : 0
    this.pendingBreak = 0
    if (need > 0) this.append('\n'.repeat(need))
  }

  private append(s: string): void {
    this.parts.push(s)
    this.len += s.length
    this.last = s.at(-1) ?? this.last
    const tail = s.length - s.replace(/\n+$/u, '').length
    this.trailingNewlines = tail === s.length ? this.trailingNewlines + tail : tail
    this.trailingSpace = false
  }

  private dropTrailingSpace(): void {
    if (this.trailingSpace) this.removeLast()
  }

  /** Takes back the last character, shrinking the ranges that ended on it. */
  private removeLast(): void {
    const oldLen = this.len
    const part = (this.parts.pop() ?? '').slice(0, -1)
    if (part) this.parts.push(part)
    this.len--
    if (this.last === '\n') this.trailingNewlines--
    this.last = this.parts.at(-1)?.at(-1) ?? ''
    this.trailingSpace = false
    for (let i = this.closed.length - 1; i >= 0; i--) {
      const c = this.closed[i]
      if (!c || c.end !== oldLen) break
      c.end = this.len
    }
    for (let i = this.firstUnstarted - 1; i >= 0; i--) {
      const frame = this.stack[i]
      if (!frame || frame.start !== this.len) break
      frame.start = undefined
      this.firstUnstarted = i
    }
  }
}

/** Joins touching or overlapping ranges of one style (e.g. `<b>a</b><b>b</b>`) into one. Input sorted by start. */
function mergeStyles(ranges: Placed[]): Placed[] {
  const out: Placed[] = []
  const lastOfStyle = new Map<InlineStyle, Placed>()
  for (const r of ranges) {
    if (r.kind === 'style') {
      const prev = lastOfStyle.get(r.style)
      if (prev && r.start <= prev.start + prev.length) {
        prev.length = Math.max(prev.length, r.start + r.length - prev.start)
        continue
      }
      lastOfStyle.set(r.style, r)
    }
    out.push(r)
  }
  return out
}

// The legacy plain-text reply fallback: "> <@alice:example.org> original" lines, then one blank line.
/** Removes a rich-reply fallback quote from the start of a plain body (spec before v1.13). */
export function stripPlainReplyFallback(body: string): string {
  if (!body.startsWith('> <')) return body
  const lines = body.split('\n')
  let i = 0
  while (i < lines.length && (lines[i] ?? '').startsWith('>')) i++
  if (i < lines.length && lines[i] === '') i++
  return lines.slice(i).join('\n')
}
