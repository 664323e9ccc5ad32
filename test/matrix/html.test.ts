import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import type { RichText } from '../../src/core/model.ts'
import { htmlToRichText, MAX_HTML_LENGTH, richTextToMatrix, stripPlainReplyFallback } from '../../src/matrix/html.ts'

/** Longer than any sane parse takes on a busy machine, shorter than a quadratic one of these inputs. */
const PATHOLOGICAL_MS = 20_000

// The Matrix spec's example events, copied into the repository (see test/fixtures/published/matrix/README.md).
const FIXTURES = fileURLToPath(new URL('../fixtures/published/matrix/', import.meta.url))
const fixture = (name: string) => JSON.parse(readFileSync(`${FIXTURES}${name}`, 'utf8')) as { content: Record<string, string> }

const parse = (html: string) => htmlToRichText(html, {})
const styled = (html: string) => {
  const rt = parse(html)
  return rt.styles.map(s => [s.style, rt.text.slice(s.start, s.start + s.length)])
}

describe('Matrix HTML becomes neutral rich text', () => {
  it("the spec's m.room.message example keeps its text and its bold", () => {
    const { content } = fixture('m.room.message.text.json')
    expect(content.format).toBe('org.matrix.custom.html')
    expect(htmlToRichText(content.formatted_body ?? '', {})).toEqual({
      text: content.body,
      styles: [{ start: 0, length: 31, style: 'bold' }],
      links: [],
      mentions: [],
    })
  })

  it.each([
    ['<b>x</b> <strong>y</strong>', [['bold', 'x'], ['bold', 'y']]],
    ['<i>x</i> <em>y</em>', [['italic', 'x'], ['italic', 'y']]],
    ['<del>x</del> <s>y</s> <strike>z</strike>', [['strikethrough', 'x'], ['strikethrough', 'y'], ['strikethrough', 'z']]],
    ['run <code>ls -l</code>', [['monospace', 'ls -l']]],
    ['<span data-mx-spoiler>the end</span>', [['spoiler', 'the end']]],
    ['<span data-mx-spoiler="why">the end</span>', [['spoiler', 'the end']]],
    ['<blockquote>quoted</blockquote>reply', [['blockquote', 'quoted']]],
    ['<h2>Title</h2>body', [['bold', 'Title']]],
    ['<b>bo<i>th</i></b><i> it</i>', [['bold', 'both'], ['italic', 'th it']]],
    ['<u>under</u><sup>2</sup><font color="red">red</font>', []],
  ])('%s → %j', (html, expected) => {
    expect(styled(html)).toEqual(expected)
  })

  it('a code block keeps its spacing and lines, and its inner <code> adds no monospace', () => {
    const rt = parse('<pre><code class="language-py">def f():\n    return  1\n</code></pre>after')
    expect(rt.text).toBe('def f():\n    return  1\nafter')
    expect(rt.styles).toEqual([{ start: 0, length: 22, style: 'code_block' }])
  })

  it('links keep their address; javascript:, data: and relative links keep only their text', () => {
    const rt = parse('<a href="https://example.org/?a=1&amp;b=2">site</a> <a href="javascript:alert(1)">js</a> ' +
      '<a href="data:text/html,x">data</a> <a href="/relative">rel</a> <a href="mailto:a@example.org">mail</a>')
    expect(rt.text).toBe('site js data rel mail')
    expect(rt.links).toEqual([
      { start: 0, length: 4, url: 'https://example.org/?a=1&b=2' },
      { start: 17, length: 4, url: 'mailto:a@example.org' },
    ])
  })

  it('a user pill becomes a mention of the Matrix user; a pill for a ghost mentions the remote person', () => {
    const html = 'hi <a href="https://matrix.to/#/@alice:example.org">Alice</a> and ' +
      '<a href="https://matrix.to/#/%40signal_4f2a%3Aexample.org">Bob (Signal)</a>'
    const isGhost = (mxid: string) => (mxid === '@signal_4f2a:example.org' ? { network: 'signal' as const, id: '4f2a' } : undefined)
    expect(htmlToRichText(html, { isGhost })).toEqual({
      text: 'hi Alice and Bob (Signal)',
      styles: [],
      links: [],
      mentions: [
        { start: 3, length: 5, person: { network: 'matrix', id: '@alice:example.org', displayName: 'Alice' } },
        { start: 13, length: 12, person: { network: 'signal', id: '4f2a', displayName: 'Bob (Signal)' } },
      ],
    })
  })

  it('a room pill is an ordinary link, not a mention', () => {
    expect(parse('<a href="https://matrix.to/#/#room:example.org">#room</a>').links).toHaveLength(1)
  })

  it('the <mx-reply> fallback disappears with everything inside it', () => {
    const html = '<mx-reply><blockquote><a href="https://matrix.to/#/!r:example.org/$e">In reply to</a> ' +
      '<a href="https://matrix.to/#/@alice:example.org">@alice</a><br>original</blockquote></mx-reply>my <b>answer</b>'
    expect(parse(html)).toEqual({ text: 'my answer', styles: [{ start: 3, length: 6, style: 'bold' }], links: [], mentions: [] })
  })

  it.each([
    ['line<br>break<br/><br>twice', 'line\nbreak\n\ntwice'],
    ['<p>one</p>\n<p>two</p>', 'one\n\ntwo'],
    ['<div>one</div><div>two</div>three', 'one\ntwo\nthree'],
    ['<h1>Title</h1>\n<p>text</p>', 'Title\n\ntext'],
    ['<p>a<br></p><p>b</p>', 'a\n\nb'],
    ['<ul>\n<li>milk</li>\n<li>eggs</li>\n</ul>\n<p>done</p>', '• milk\n• eggs\n\ndone'],
    ['<ol start="3"><li>three</li><li>four<ul><li>sub</li></ul></li></ol>', '3. three\n4. four\n  • sub'],
    ['<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>', 'a b\nc'],
    ['party <img src="mxc://example.org/abc" alt=":partyparrot:"> time', 'party :partyparrot: time'],
    ['&lt;b&gt; &amp;amp; &eacute;&#x1F600;&nbsp;!', '<b> &amp; é😀\u00a0!'],
    ['  many   spaces\n\tand\ttabs  ', 'many spaces and tabs'],
    ['<p>  lead</p>  <p>  trail  </p>', 'lead\n\ntrail'],
  ])('%j reads as %j', (html, text) => {
    expect(parse(html).text).toBe(text)
  })

  it('UTF-16 offsets count emoji and astral characters as two units', () => {
    const rt = parse('👍🏽 <b>𝄞 clef</b> <a href="https://e.org">é😀</a>')
    expect(rt.text).toBe('👍🏽 𝄞 clef é😀')
    expect(rt.styles).toEqual([{ start: 5, length: 7, style: 'bold' }])
    expect(rt.text.slice(5, 12)).toBe('𝄞 clef')
    expect(rt.links).toEqual([{ start: 13, length: 3, url: 'https://e.org' }])
  })
})

describe('hostile HTML is defused in bounded time', () => {
  it('script, style and iframe vanish with their content; on* handlers and unknown tags leave only text', () => {
    const rt = parse('<script>alert("x")</script><style>b{}</style><iframe src="https://evil">frame</iframe>' +
      '<b onclick="steal()" style="x">bold</b><img src=x onerror="steal()"><marquee>move</marquee><svg><text>s</text></svg>')
    expect(rt).toEqual({ text: 'boldmove', styles: [{ start: 0, length: 4, style: 'bold' }], links: [], mentions: [] })
  })

  it('unclosed tags end with the message', () => {
    expect(styled('<b>bold <i>both')).toEqual([['bold', 'bold both'], ['italic', 'both']])
    expect(parse('<a href="https://e.org">open').links).toEqual([{ start: 0, length: 4, url: 'https://e.org' }])
    expect(parse('<mx-reply>never closed').text).toBe('')
  })

  it('10 000 nested elements keep their text; nesting beyond the cap adds no more styles', () => {
    const started = performance.now()
    const rt = parse('<b><i>'.repeat(5_000) + 'deep') // left open: a browser closes them at the end
    expect(rt.text).toBe('deep')
    expect(rt.styles.map(s => s.style).sort()).toEqual(['bold', 'italic'])
    // Closed, the same nesting is longer than any event, so it is cut before its closing tags.
    expect(parse('<b><i>'.repeat(5_000) + 'deep' + '</i></b>'.repeat(5_000)).text).toBe('deep…')
    // Not a speed target (that is the benchmark's): a bound far above a loaded machine's time, which a
    // parse that is quadratic in the nesting would still exceed.
    expect(performance.now() - started).toBeLessThan(PATHOLOGICAL_MS)
  })

  it('a 1 MB body is cut at the largest size a homeserver sends and marked as cut', () => {
    const started = performance.now()
    const rt = parse('<b>x</b> '.repeat(120_000))
    expect(performance.now() - started).toBeLessThan(PATHOLOGICAL_MS)
    expect(rt.text.endsWith('…')).toBe(true)
    expect(rt.text.length).toBeLessThan(MAX_HTML_LENGTH)
    expect(rt.text.startsWith('x x x')).toBe(true)
  })

  it('a body just under the cap is parsed whole', () => {
    const html = '<i>' + 'y'.repeat(MAX_HTML_LENGTH - 7) + '</i>'
    expect(parse(html).text).toBe('y'.repeat(MAX_HTML_LENGTH - 7))
  })
})

describe('the plain-text reply fallback', () => {
  it('loses its quoted lines and the blank line after them', () => {
    expect(stripPlainReplyFallback('> <@alice:example.org> original\n> second line\n\nmy answer\n> not a quote'))
      .toBe('my answer\n> not a quote')
  })
  it('leaves a body that merely starts with a quote alone', () => {
    expect(stripPlainReplyFallback('> a quote I typed\nreply')).toBe('> a quote I typed\nreply')
    expect(stripPlainReplyFallback('That sounds like a great idea!')).toBe('That sounds like a great idea!')
  })
})

const rt = (text: string, over: Partial<RichText> = {}): RichText => ({ text, styles: [], links: [], mentions: [], ...over })

describe('neutral rich text becomes Matrix content', () => {
  it('plain text sends only a body, with nothing to escape', () => {
    expect(richTextToMatrix(rt('a <b> & c'))).toEqual({ body: 'a <b> & c', 'm.mentions': { user_ids: [] } })
  })

  it('overlapping styles nest by splitting, and markup characters are escaped', () => {
    const out = richTextToMatrix(rt('<a> & "b"', {
      styles: [{ start: 0, length: 5, style: 'bold' }, { start: 2, length: 7, style: 'italic' }],
    }))
    expect(out.body).toBe('<a> & "b"')
    expect(out.formatted_body).toBe('<strong>&lt;a<em>&gt; &amp;</em></strong><em> "b"</em>')
  })

  it('a resolvable mention is a pill listed in m.mentions; an unresolvable one stays plain text', () => {
    const out = richTextToMatrix(
      rt('hi @Alice and @Carol', {
        mentions: [
          { start: 3, length: 6, person: { network: 'signal', id: 'a1' } },
          { start: 14, length: 6, person: { network: 'whatsapp', id: 'c3' } },
        ],
      }),
      p => (p.id === 'a1' ? { mxid: '@signal_a1:example.org', displayName: 'Alice (Signal)' } : undefined),
    )
    expect(out.formatted_body).toBe('hi <a href="https://matrix.to/#/%40signal_a1%3Aexample.org">@Alice</a> and @Carol')
    expect(out['m.mentions']).toEqual({ user_ids: ['@signal_a1:example.org'] })
    expect(richTextToMatrix(rt('hi @Carol', { mentions: [{ start: 3, length: 6, person: { network: 'whatsapp', id: 'c3' } }] })))
      .toEqual({ body: 'hi @Carol', 'm.mentions': { user_ids: [] } })
  })

  it('a code block keeps its newlines inside <pre>; elsewhere newlines are <br>', () => {
    const out = richTextToMatrix(rt('see:\nx < 1\n  y\nok', { styles: [{ start: 5, length: 9, style: 'code_block' }] }))
    expect(out.formatted_body).toBe('see:<br><pre><code>x &lt; 1\n  y</code></pre>ok')
    expect(parse(out.formatted_body ?? '').text).toBe('see:\nx < 1\n  y\nok')
  })

  it('spaces a browser would swallow are sent as no-break spaces (lossy: they come back as U+00A0)', () => {
    const out = richTextToMatrix(rt('a  b\n c', { styles: [{ start: 0, length: 1, style: 'bold' }] }))
    expect(out.formatted_body).toBe('<strong>a</strong> &nbsp;b<br>&nbsp;c')
    expect(parse(out.formatted_body ?? '').text).toBe('a \u00a0b\n\u00a0c')
  })
})

describe('a mention crosses Matrix and comes back as the same person', () => {
  it('a Signal person mentioned from WhatsApp is a pill for their ghost, read back as that Signal person', () => {
    const sent = richTextToMatrix(
      rt('👋 @Bob (Signal)!', { mentions: [{ start: 3, length: 13, person: { network: 'signal', id: 'b2' } }] }),
      p => ({ mxid: `@${p.network}_${p.id}:example.org`, displayName: 'Bob (Signal)' }),
    )
    const isGhost = (mxid: string) => {
      const m = /^@(signal|whatsapp)_([^:]+):example\.org$/u.exec(mxid)
      return m ? { network: m[1] as 'signal' | 'whatsapp', id: m[2] ?? '' } : undefined
    }
    expect(htmlToRichText(sent.formatted_body ?? '', { isGhost })).toEqual({
      text: '👋 @Bob (Signal)!',
      styles: [],
      links: [],
      mentions: [{ start: 3, length: 13, person: { network: 'signal', id: 'b2', displayName: 'Bob (Signal)' } }],
    })
  })
})
