// Neutral → Signal text, and the round trip back through the inbound conversion.
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { plainText, type RichText } from '../../src/core/model.ts'
import { inlineLinks, renderParts, toSignalText } from '../../src/signal/render.ts'
import { richBody } from '../../src/signal/convert.ts'
import { utf8Length } from '../../src/core/richtext.ts'

const KIM = 'e7b2d019-6c4a-4f3e-8d25-91a0c6f3b7e8'

describe('rendering rich text for Signal', () => {
  it('a relayed message keeps the bold sender prefix, emoji-shifted styles and a Signal mention as U+FFFC', () => {
    const rt: RichText = {
      text: 'Alice (WhatsApp): 😀 hi @Kim and @Bob',
      styles: [
        { start: 0, length: 16, style: 'bold' },
        { start: 18, length: 9, style: 'italic' }, // "😀 hi @Ki" overlaps the mention
        { start: 21, length: 10, style: 'strikethrough' },
      ],
      links: [],
      mentions: [
        { start: 24, length: 4, person: { network: 'signal', id: KIM } },
        { start: 33, length: 4, person: { network: 'whatsapp', id: 'bob' } },
      ],
    }
    const out = toSignalText(rt)
    expect(out.message).toBe('Alice (WhatsApp): 😀 hi \uFFFC and @Bob')
    expect(out.mention).toEqual([`24:1:${KIM}`])
    // Italic covered only part of "@Kim", so it stops before the placeholder; strikethrough covered all of it.
    expect(out.textStyle).toEqual(['0:16:BOLD', '18:6:ITALIC', '21:7:STRIKETHROUGH'])
  })

  it('links become "text (url)" unless the text is the url; code blocks degrade to monospace and quotes to plain', () => {
    const rt: RichText = {
      text: 'see docs and https://x.org\ncode\nquoted',
      styles: [
        { start: 27, length: 4, style: 'code_block' },
        { start: 32, length: 6, style: 'blockquote' },
      ],
      links: [
        { start: 4, length: 4, url: 'https://docs.example' },
        { start: 13, length: 13, url: 'https://x.org' },
      ],
      mentions: [],
    }
    const linked = inlineLinks(rt)
    expect(linked.text).toBe('see docs (https://docs.example) and https://x.org\ncode\nquoted')
    const out = toSignalText(linked)
    expect(out.textStyle).toEqual([`${linked.text.indexOf('code')}:4:MONOSPACE`])
  })

  it('text over 2,000 UTF-8 bytes is split into parts that each fit', () => {
    const long = 'ünïcödé wörds '.repeat(300)
    const parts = renderParts(plainText(long))
    expect(parts.length).toBeGreaterThan(1)
    for (const p of parts) expect(utf8Length(p.message)).toBeLessThanOrEqual(2000)
    expect(parts.map(p => p.message).join(' ').replace(/\s+/g, ' ').trim()).toBe(long.replace(/\s+/g, ' ').trim())
  })
})

describe('round trip: neutral → Signal → neutral', () => {
  const styleArb = fc.constantFrom('bold', 'italic', 'strikethrough', 'monospace', 'spoiler') as fc.Arbitrary<'bold'>
  const textArb = fc.array(fc.constantFrom('a', 'b', ' ', '😀', 'é', '\n', '中'), { minLength: 1, maxLength: 40 }).map(a => a.join(''))

  it('text survives and every style covers the same characters (seed printed on failure)', () => {
    fc.assert(
      fc.property(textArb, fc.array(fc.tuple(fc.nat(), fc.nat(), styleArb), { maxLength: 5 }), (text, raw) => {
        const styles = raw
          .map(([a, b, style]) => {
            const start = a % text.length
            return { start, length: 1 + (b % (text.length - start)), style }
          })
        const out = toSignalText({ text, styles, links: [], mentions: [] })
        const back = richBody(
          out.message,
          {
            textStyles: out.textStyle.map(s => {
              const [start, length, style] = s.split(':')
              return { start: Number(start), length: Number(length), style: style! }
            }),
          },
          () => undefined,
        )
        expect(back.text).toBe(text)
        const chars = (ss: Array<{ start: number; length: number; style: string }>) => new Set(ss.flatMap(s => Array.from({ length: s.length }, (_, i) => `${s.style}@${s.start + i}`)))
        expect(chars(back.styles)).toEqual(chars(styles))
      }),
      { numRuns: 300, verbose: true },
    )
  })

  it('a Signal mention comes back as the same person over "@Name"', () => {
    const rt: RichText = { text: '😀 @Kim!', styles: [], links: [], mentions: [{ start: 3, length: 4, person: { network: 'signal', id: KIM } }] }
    const out = toSignalText(rt)
    const back = richBody(
      out.message,
      { mentions: out.mention.map(m => ({ start: Number(m.split(':')[0]), length: 1, uuid: m.split(':')[2]! })) },
      () => 'Kim',
    )
    expect(back.text).toBe('😀 @Kim!')
    expect(back.mentions).toEqual([{ start: 3, length: 4, person: { network: 'signal', id: KIM, displayName: 'Kim' } }])
  })
})
