// WhatsApp markup (reference §5): parsing what phones type, and rendering RichText so it parses back.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { InlineStyle, RichText } from '../../src/core/model.ts'
import { parseMarkup, renderMarkup } from '../../src/whatsapp/markup.ts'

/** Which styles cover each non-space character: the oracle (markers hug text, so spaces may differ). */
function styleMap(rt: RichText): string[] {
  return [...rt.text].map((c, i) =>
    /\s/.test(c) ? '' : rt.styles.filter(s => s.start <= i && i < s.start + s.length).map(s => s.style).sort().join(','),
  )
}

describe('parsing WhatsApp markup', () => {
  it.each([
    ['*bold*', 'bold', [{ start: 0, length: 4, style: 'bold' }]],
    ['a *_both_* b', 'a both b', [{ start: 2, length: 4, style: 'italic' }, { start: 2, length: 4, style: 'bold' }]],
    ['2 * 3 * 4', '2 * 3 * 4', []],
    ['snake_case_name', 'snake_case_name', []],
    ['* not bold *', '* not bold *', []],
    ['`*literal*`', '*literal*', [{ start: 0, length: 9, style: 'monospace' }]],
    ['> quoted', 'quoted', [{ start: 0, length: 6, style: 'blockquote' }]],
    ['```\n*x*\n```', '\n*x*\n', [{ start: 0, length: 5, style: 'code_block' }]],
    ['*no\nbold*', '*no\nbold*', []],
  ] as Array<[string, string, Array<{ start: number; length: number; style: InlineStyle }>]>)('%j', (input, text, styles) => {
    const rt = parseMarkup(input)
    expect(rt.text).toBe(text)
    expect(rt.styles).toEqual(expect.arrayContaining(styles))
    expect(rt.styles).toHaveLength(styles.length)
  })
})

const word = fc.stringMatching(/^[a-zA-Z0-9éß]{1,6}$/)
const styled = fc
  .array(fc.tuple(word, fc.subarray(['bold', 'italic', 'strikethrough'] as const), fc.constantFrom(' ', ' ', '\n')), { minLength: 1, maxLength: 12 })
  .map(words => {
    let text = ''
    const styles: RichText['styles'] = []
    for (const [w, ss, sep] of words) {
      for (const style of ss) styles.push({ start: text.length, length: w.length, style })
      text += w + sep
    }
    return { text, styles, links: [], mentions: [] } as RichText
  })

describe('rendering RichText as markup', () => {
  it('parse(render(x)) keeps the text and which styles cover each character', () => {
    fc.assert(
      fc.property(styled, rt => {
        const back = parseMarkup(renderMarkup(rt))
        expect(back.text).toBe(rt.text)
        expect(styleMap(back)).toEqual(styleMap(rt))
      }),
      { numRuns: 500 },
    )
  })

  it('overlapping ranges are nested properly', () => {
    const rt: RichText = { text: 'one two three', styles: [{ start: 0, length: 7, style: 'bold' }, { start: 4, length: 9, style: 'italic' }], links: [], mentions: [] }
    expect(renderMarkup(rt)).toBe('*one _two_* _three_')
  })
})
