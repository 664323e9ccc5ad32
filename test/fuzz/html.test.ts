// Matrix HTML → Signal → Matrix, through the conversion functions each side uses: what the room finally
// shows from the ghost keeps the text and, character for character, the formatting Signal can carry.
// Hostile HTML never leaves script, handlers or dangerous links in the ghost's formatted_body, and never
// throws. 3,000 + 2,000 cases per run; fast-check prints the seed of a failure.
import fc from 'fast-check'
import { Parser } from 'htmlparser2'
import { describe, expect, it } from 'vitest'
import type { InlineStyle, RichText } from '../../src/core/model.ts'
import { htmlToRichText, richTextToMatrix } from '../../src/matrix/html.ts'
import { richBody } from '../../src/signal/convert.ts'
import { toSignalText } from '../../src/signal/render.ts'

const TAGS: Array<[string, string, InlineStyle]> = [
  ['<b>', '</b>', 'bold'], ['<strong>', '</strong>', 'bold'], ['<i>', '</i>', 'italic'], ['<em>', '</em>', 'italic'],
  ['<del>', '</del>', 'strikethrough'], ['<s>', '</s>', 'strikethrough'], ['<code>', '</code>', 'monospace'],
  ['<span data-mx-spoiler>', '</span>', 'spoiler'], ['<span data-mx-spoiler="why">', '</span>', 'spoiler'],
]
const escape = (t: string) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
// Visible characters only, single spaces between words: no space a browser would collapse.
const word = fc.array(fc.constantFrom('a', 'Z', '1', '<', '&', '>', '"', "'", '😀', '𝄞', '👍🏽', 'é', 'e\u0301', '*', '_', '~', '`', 'ש', 'م', '\u202e'), { minLength: 1, maxLength: 4 }).map(cs => cs.join(''))

type Node = string | { tag: number; children: Node[] }
const { node } = fc.letrec<{ node: Node }>(tie => ({
  node: fc.oneof({ depthSize: 'small', withCrossShrink: true },
    word,
    fc.record({ tag: fc.nat({ max: TAGS.length - 1 }), children: fc.array(tie('node'), { minLength: 1, maxLength: 3 }) })),
}))
const render = (n: Node): string => typeof n === 'string' ? escape(n) : `${TAGS[n.tag]![0]}${n.children.map(render).join(' ')}${TAGS[n.tag]![1]}`
const html = fc.array(node, { minLength: 1, maxLength: 5 }).map(ns => ns.map(render).join(' '))

function coverage(rt: RichText): Record<string, number[]> {
  const out: Record<string, Set<number>> = {}
  for (const s of rt.styles) for (let i = s.start; i < s.start + s.length; i++) (out[s.style] ??= new Set()).add(i)
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, [...v].sort((a, b) => a - b)]))
}

/** Matrix → Signal (the relay's text and styles) → Matrix (the ghost's event), as each adapter does it. */
function roundTrip(rt: RichText): { content: ReturnType<typeof richTextToMatrix>; shown: RichText } {
  const signal = toSignalText(rt)
  const textStyles = signal.textStyle.map(s => {
    const [start, length, style] = s.split(':')
    return { start: Number(start), length: Number(length), style: style! }
  })
  const back = richBody(signal.message, { textStyles, mentions: [] }, () => undefined)
  const content = richTextToMatrix(back)
  return { content, shown: content.formatted_body !== undefined ? htmlToRichText(content.formatted_body) : { text: content.body, styles: [], links: [], mentions: [] } }
}

const HOSTILE = [
  '<script>alert(1)</script>', '<style>body{display:none}</style>', '<img src=x onerror=alert(1)>', '<a href="javascript:alert(1)">j</a>',
  '<a href="JaVaScRiPt:alert(1)">J</a>', '<a href=" javascript:alert(1)">sp</a>', '<a href="data:text/html,<script>alert(1)</script>">d</a>',
  '<a href="vbscript:x">v</a>', '<b onclick="alert(1)">c</b>', '<font color="red" onmouseover="x">f</font>', '<iframe src="https://evil.example"></iframe>',
  '<object data="x"></object>', '<svg onload=alert(1)>', '<math><mi xlink:href="javascript:x">m</mi></math>', '<b>unclosed', '<i><b>mis</i>nested</b>',
  '</b></i>', '<!-- <script>x</script> -->', '<![CDATA[<script>]]>', '<scr<script>ipt>alert(1)</script>', '<a href="https://ok.example" onclick="x">ok</a>',
  '<img src="mxc://example.org/abc" onerror="x">', '<table><tr><td onmouseover=x>t</td></tr></table>', '<form action="javascript:x"><input></form>',
  '<meta http-equiv="refresh" content="0;url=javascript:x">', '<base href="javascript:x">', '<link rel=stylesheet href=x>', '&lt;script&gt;', '<<b>>', '<b <i>>',
  '<span style="background:url(javascript:x)">s</span>', '<mx-reply><script>x</script></mx-reply>', '\u0000<script>', '<a href="&#106;avascript:x">e</a>',
]
const FORBIDDEN_TAGS = new Set(['script', 'style', 'img', 'iframe', 'object', 'embed', 'svg', 'math', 'form', 'input', 'meta', 'base', 'link'])

/** What is wrong with a formatted_body, read with a real HTML parser. */
function dangers(formatted: string): string[] {
  const found: string[] = []
  const p = new Parser({
    onopentag(name, attrs) {
      if (FORBIDDEN_TAGS.has(name)) found.push(`<${name}>`)
      for (const [k, v] of Object.entries(attrs)) {
        if (/^on/i.test(k)) found.push(`${k}=`)
        if (k === 'style') found.push('style=')
        // eslint-disable-next-line no-control-regex
        if (/^\s*(javascript|data|vbscript):/i.test(v.replace(/[\s\u0000-\u001f]/g, ''))) found.push(`${k}=${v}`)
      }
    },
  }, { decodeEntities: true })
  p.write(formatted)
  p.end()
  return found
}

describe('Matrix HTML through Signal and back', () => {
  it('keeps the text and which characters carry which style', () => {
    fc.assert(fc.property(html, h => {
      const sent = htmlToRichText(h)
      const { shown } = roundTrip(sent)
      expect(shown.text).toBe(sent.text)
      expect(coverage(shown)).toEqual(coverage(sent))
    }), { numRuns: 3000 })
  })

  it('never passes on script, styles, handlers, images or dangerous links, and never throws', () => {
    const hostile = fc.array(fc.oneof(fc.constantFrom(...HOSTILE), html, fc.string({ maxLength: 10 })), { minLength: 1, maxLength: 6 })
      .chain(parts => fc.nat({ max: 3 }).map(depth => '<b><i>'.repeat(depth) + parts.join('') + (depth % 2 ? '</i></b>'.repeat(depth) : '')))
    fc.assert(fc.property(hostile, h => {
      const { content } = roundTrip(htmlToRichText(h))
      const direct = richTextToMatrix(htmlToRichText(h))
      for (const c of [content, direct]) if (c.formatted_body !== undefined) expect(dangers(c.formatted_body), c.formatted_body).toEqual([])
    }), { numRuns: 2000 })
  })

  it('survives nesting 10,000 levels deep, and tags that never close', () => {
    const cases: Array<[string, string]> = [
      ['<b>'.repeat(10_000) + 'deep' + '</b>'.repeat(10_000), 'deep'], ['<i>'.repeat(10_000) + 'open', 'open'],
      ['<blockquote>'.repeat(5_000) + 'quoted', 'quoted'], ['<a href="https://x.example">'.repeat(2000) + 'linked', 'linked'],
    ]
    for (const [h, word] of cases) {
      const rt = htmlToRichText(h)
      expect(rt.text).toContain(word)
      const { content } = roundTrip(rt)
      if (content.formatted_body !== undefined) expect(dangers(content.formatted_body)).toEqual([])
    }
  })
})
