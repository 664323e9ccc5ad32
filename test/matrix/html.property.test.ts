import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { InlineStyle, RichText } from '../../src/core/model.ts'
import { htmlToRichText, richTextToMatrix } from '../../src/matrix/html.ts'

// ---- Round trip with an oracle ------------------------------------------------------------------
// Generated texts are "canonical": single spaces between visible characters, so that no space is
// one a browser collapses (those come back as U+00A0, tested above). Quote and code-block ranges
// cover whole lines, because a block always ends a line in HTML; inline styles and links go
// anywhere, overlapping freely, even through the middle of a surrogate pair.

const INLINE: InlineStyle[] = ['bold', 'italic', 'strikethrough', 'monospace', 'spoiler']
const URLS = ['https://example.org/', 'https://example.org/?a=1&b="2"<3>', 'mailto:someone@example.org', 'http://e.org/é#x']

const textArb = fc
  .array(fc.oneof(
    fc.array(fc.constantFrom('a', 'Z', '1', '<', '&', '>', '"', "'", '😀', '𝄞', '👍🏽', 'é', 'e\u0301', '*', '`', ';'), { minLength: 1, maxLength: 4 }).map(cs => cs.join('')),
    fc.constantFrom(' ', '\n', '\n\n'),
  ), { maxLength: 14 })
  .map(tokens => tokens.join('').replace(/ {2,}/gu, ' ').replace(/ ?\n ?/gu, '\n').replace(/^ | $/gu, ''))

const richArb = textArb.chain(text => {
  const n = text.length
  const lineStarts = [0, ...[...text.matchAll(/\n/gu)].map(m => m.index + 1)]
  const lineEnds = [...[...text.matchAll(/\n/gu)].map(m => m.index), n]
  const pos = fc.nat({ max: n })
  const inline = fc.record({ a: pos, b: pos, style: fc.constantFrom(...INLINE) })
    .map(({ a, b, style }) => ({ start: Math.min(a, b), length: Math.abs(a - b), style }))
  const block = fc.record({
    from: fc.nat({ max: lineStarts.length - 1 }), lines: fc.nat({ max: 3 }), withNewline: fc.boolean(),
    style: fc.constantFrom<InlineStyle>('blockquote', 'code_block'),
  }).map(({ from, lines, withNewline, style }) => {
    const start = lineStarts[from] ?? 0
    const last = Math.min(from + lines, lineEnds.length - 1)
    const end = Math.min(n, (lineEnds[last] ?? n) + (withNewline ? 1 : 0))
    return { start, length: Math.max(0, end - start), style }
  })
  const link = fc.record({ a: pos, b: pos, url: fc.constantFrom(...URLS) })
    .map(({ a, b, url }) => ({ start: Math.min(a, b), length: Math.abs(a - b), url }))
  return fc.record({
    text: fc.constant(text),
    styles: fc.array(fc.oneof({ weight: 3, arbitrary: inline }, { weight: 1, arbitrary: block }), { maxLength: 6 }),
    links: fc.array(link, { maxLength: 3 }),
    mentions: fc.constant<RichText['mentions']>([]),
  })
})

const chars = (ranges: { start: number; length: number }[]): Set<number> => {
  const out = new Set<number>()
  for (const r of ranges) for (let i = r.start; i < r.start + r.length; i++) out.add(i)
  return out
}

/** What the round trip must preserve, computed from the spec of the layout rules, not from the code. */
function expected(rt: RichText) {
  const blocks = rt.styles.filter(s => (s.style === 'blockquote' || s.style === 'code_block') && s.length > 0)
  // Lossy by design: a newline right after a block is that block's line end, and carries no formatting.
  const blind = new Set(blocks.map(b => b.start + b.length)
    .filter(p => rt.text[p] === '\n' && p > 0 && rt.text[p - 1] !== '\n'))
  const codeBlock = chars(rt.styles.filter(s => s.style === 'code_block'))
  const perStyle = (style: InlineStyle, from: RichText, dropInCode: boolean) =>
    [...chars(from.styles.filter(s => s.style === style))]
      .filter(i => !blind.has(i) && !(dropInCode && codeBlock.has(i))).sort((a, b) => a - b)
  // One anchor per character: the first link (in order) that covers it.
  const linkAt = (from: RichText, firstWins: boolean) => {
    const at = new Map<number, string>()
    for (const l of from.links) for (let i = l.start; i < l.start + l.length; i++) {
      if (!blind.has(i) && (!firstWins || !at.has(i))) at.set(i, l.url)
    }
    return [...at].sort((a, b) => a[0] - b[0])
  }
  // Lossy by design: that same newline at the very end of the text has nothing after it to separate
  // (unless it sits inside a code block, whose text keeps every newline).
  const last = rt.text.length - 1
  const text = blind.has(last) && !codeBlock.has(last) ? rt.text.slice(0, -1) : rt.text
  return { text, perStyle, linkAt }
}

describe('rich text survives Matrix HTML and back', () => {
  it('the same text, and per style the same characters (seeded property)', () => {
    fc.assert(
      fc.property(richArb, rich => {
        const sent = richTextToMatrix(rich)
        expect(sent.body).toBe(rich.text)
        if (sent.formatted_body === undefined) {
          expect(rich.styles.every(s => s.length === 0) && rich.links.every(l => l.length === 0)).toBe(true)
          return
        }
        const back = htmlToRichText(sent.formatted_body, {})
        const { text, perStyle, linkAt } = expected(rich)
        expect(back.text).toBe(text)
        for (const style of [...INLINE, 'blockquote', 'code_block'] as InlineStyle[]) {
          // Lossy by design: monospace inside a code block is implied by the block and not kept.
          expect([style, perStyle(style, back, style === 'monospace')]).toEqual([style, perStyle(style, rich, style === 'monospace')])
        }
        expect(linkAt(back, false)).toEqual(linkAt(rich, true))
      }),
      { numRuns: Number(process.env.HTML_RUNS ?? 3_000) },
    )
  })
})

describe('malformed HTML is refused piecemeal while the rest reads on', () => {
  // Random tag soup. Whatever sits inside script/style/mx-reply (the word HIDDEN) must never show,
  // every range must lie inside the text, and nothing may throw.
  const tokens = fc.constantFrom(
    '<b>', '</b>', '<i>', '</em>', '<pre>', '</pre>', '<blockquote>', '</blockquote>', '<li>', '<ol>', '</ul>', '<br>', '<p>',
    '<a href="https://e.org">', '<a href="javascript:x()">', '</a>', '<span data-mx-spoiler>', '</span>', '<code>',
    // `">` first: in tag soup a `<script>` can itself be swallowed into a bogus tag, leaving its text visible.
    '"><script>HIDDEN</script>', '"><style>HIDDEN</style>', '"><mx-reply>HIDDEN</mx-reply>', '<b onclick="HIDDEN()">', '<',
    '>', '&', '&amp;', '&#0;', '&#x1F600;', '<!--', '-->', '"', ' ', '\n', 'text', '😀', '<img alt="alt">', '</b', '<x y=">',
  )
  it('never throws, never shows hidden content, keeps ranges inside the text', () => {
    fc.assert(
      fc.property(fc.array(tokens, { maxLength: 40 }), parts => {
        const out = htmlToRichText(parts.join(''), {})
        expect(out.text).not.toContain('HIDDEN')
        for (const r of [...out.styles, ...out.links, ...out.mentions]) {
          expect(r.length).toBeGreaterThan(0)
          expect(r.start + r.length).toBeLessThanOrEqual(out.text.length)
        }
      }),
      { numRuns: Number(process.env.HTML_RUNS ?? 2_000) },
    )
  })
})
