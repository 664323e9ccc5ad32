// Matrix HTML (org.matrix.custom.html) → neutral RichText.
// Untrusted HTML is first reduced by sanitize-html to the tags and attributes the Matrix spec
// suggests, then walked with htmlparser2's streaming parser. Streaming (not a DOM walk) keeps the
// walk iterative, so deep nesting cannot exhaust the stack.
import { Parser } from 'htmlparser2'
import sanitizeHtml from 'sanitize-html'
import type { InlineStyle, LinkRange, MentionRange, NetworkId, RichText } from '../core/model.ts'
import { TextBuilder, type Range } from './html-text.ts'

/** A Matrix event is at most 64 KiB, so no homeserver delivers a longer formatted_body; longer
 * input is cut here (and marked with "…") rather than parsed in full. */
export const MAX_HTML_LENGTH = 65_536
/** Elements nested deeper than this are dropped by the sanitizer; their text is kept. */
export const MAX_NESTING_DEPTH = 64

export interface HtmlToRichTextOptions {
  /** Recognises the bridge's own ghosts, so a pill for a ghost mentions the remote person. */
  isGhost?: (mxid: string) => { network: NetworkId; id: string } | undefined
}

// The spec's suggested list (client-server API, m.room.message msgtypes), plus the deprecated
// `font` and `strike` that older clients still send.
// `allowedEmptyAttributes` exists in sanitize-html 2.x but not yet in its published types.
const SANITIZE_OPTIONS: sanitizeHtml.IOptions & { allowedEmptyAttributes: string[] } = {
  allowedTags: [
    'font', 'del', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'blockquote', 'p', 'a', 'ul', 'ol', 'sup',
    'sub', 'li', 'b', 'i', 'u', 'strong', 'em', 's', 'strike', 'code', 'hr', 'br', 'div', 'table',
    'thead', 'tbody', 'tr', 'th', 'td', 'caption', 'pre', 'span', 'img', 'details', 'summary',
  ],
  allowedAttributes: {
    font: ['data-mx-bg-color', 'data-mx-color', 'color'],
    span: ['data-mx-bg-color', 'data-mx-color', 'data-mx-spoiler'],
    a: ['name', 'target', 'href'],
    img: ['width', 'height', 'alt', 'title', 'src'],
    ol: ['start'],
    code: ['class'],
  },
  // A spoiler is flagged by the bare attribute; sanitize-html drops empty values unless listed.
  allowedEmptyAttributes: ['alt', 'data-mx-spoiler'],
  allowedSchemes: ['http', 'https', 'mailto'],
  allowedSchemesByTag: { img: ['mxc'] },
  allowProtocolRelative: false,
  disallowedTagsMode: 'discard',
  // Their content is code, markup or the reply fallback, never message text: drop it with them.
  nonTextTags: [
    'script', 'style', 'textarea', 'option', 'xmp', 'noscript', 'iframe', 'noembed', 'noframes',
    'template', 'title', 'head', 'object', 'svg', 'math', 'select', 'mx-reply',
  ],
  nestingLimit: MAX_NESTING_DEPTH,
}

const INLINE_STYLE: Record<string, InlineStyle> = {
  b: 'bold', strong: 'bold', i: 'italic', em: 'italic',
  del: 'strikethrough', s: 'strikethrough', strike: 'strikethrough', code: 'monospace',
  h1: 'bold', h2: 'bold', h3: 'bold', h4: 'bold', h5: 'bold', h6: 'bold',
  pre: 'code_block', blockquote: 'blockquote',
}

// How many newlines separate a block from its surroundings. Paragraphs and headings get a blank
// line, as the markdown that produced them had; the rest start a new line.
const BLOCK_BREAK: Record<string, number> = {
  p: 2, h1: 2, h2: 2, h3: 2, h4: 2, h5: 2, h6: 2, hr: 2,
  div: 1, blockquote: 1, pre: 1, ul: 1, ol: 1, li: 1, table: 1, tr: 1, caption: 1,
  details: 1, summary: 1,
}

const MATRIX_TO_USER = 'https://matrix.to/#/'

/** The MXID a matrix.to user pill points at, or undefined for any other link. */
export function pillTarget(href: string): string | undefined {
  if (!href.startsWith(MATRIX_TO_USER)) return undefined
  let id = href.slice(MATRIX_TO_USER.length).split('?')[0] ?? ''
  try {
    id = decodeURIComponent(id)
  } catch {
    return undefined
  }
  return /^@[^:/\s]+:[^/\s]+$/u.test(id) ? id : undefined
}

function safeUrl(href: string): string | undefined {
  try {
    const url = new URL(href)
    return url.protocol === 'http:' || url.protocol === 'https:' || url.protocol === 'mailto:' ? href : undefined
  } catch {
    return undefined // relative or malformed: nothing a remote network could open
  }
}

function rangeFor(name: string, attrs: Record<string, string>, inPre: boolean, opts: HtmlToRichTextOptions): Range {
  if (name === 'a' && attrs.href) {
    const mxid = pillTarget(attrs.href)
    if (mxid) {
      const ghost = opts.isGhost?.(mxid)
      return { kind: 'mention', person: ghost ? { network: ghost.network, id: ghost.id } : { network: 'matrix', id: mxid } }
    }
    const url = safeUrl(attrs.href)
    return url ? { kind: 'link', url } : { kind: 'none' }
  }
  if (name === 'span' && 'data-mx-spoiler' in attrs) return { kind: 'style', style: 'spoiler' }
  // Inside a code block every character is already monospace.
  if (name === 'code' && inPre) return { kind: 'none' }
  const style = INLINE_STYLE[name]
  return style ? { kind: 'style', style } : { kind: 'none' }
}

interface ListState {
  ordered: boolean
  next: number
}

export function htmlToRichText(html: string, opts: HtmlToRichTextOptions = {}): RichText {
  let input = html
  let truncated = false
  if (input.length > MAX_HTML_LENGTH) {
    let cut = MAX_HTML_LENGTH
    if (/[\uD800-\uDBFF]/u.test(input[cut - 1] ?? '')) cut-- // never split a surrogate pair
    input = input.slice(0, cut)
    truncated = true
  }
  const clean = sanitizeHtml(input, SANITIZE_OPTIONS)

  const out = new TextBuilder()
  const lists: ListState[] = []
  let preDepth = 0

  const parser = new Parser(
    {
      onopentag(name, attrs) {
        const brk = BLOCK_BREAK[name]
        if (brk) out.blockBoundary(brk)
        out.open(rangeFor(name, attrs, preDepth > 0, opts))
        if (name === 'pre') preDepth++
        if (name === 'ul' || name === 'ol') {
          const start = Number.parseInt(attrs.start ?? '1', 10)
          lists.push({ ordered: name === 'ol', next: Number.isFinite(start) ? start : 1 })
        } else if (name === 'li') {
          const list = lists.at(-1)
          const indent = '  '.repeat(Math.max(0, lists.length - 1))
          out.word(indent + (list?.ordered ? `${list.next++}. ` : '• '))
        } else if (name === 'br') {
          out.lineBreak()
        } else if (name === 'img' && attrs.alt) {
          out.word(attrs.alt)
        }
      },
      ontext(text) {
        if (preDepth > 0) out.word(text.replace(/\r\n?/gu, '\n'))
        else out.collapsible(text)
      },
      onclosetag(name) {
        if (name === 'pre') {
          preDepth--
          // The newline that ends the last line of a code block is not a line of its own.
          out.dropTrailingNewlineOfTop()
        }
        if (name === 'ul' || name === 'ol') lists.pop()
        if (name === 'td' || name === 'th') out.collapsible(' ')
        out.close()
        const brk = BLOCK_BREAK[name]
        if (brk) out.blockBoundary(brk)
      },
    },
    { decodeEntities: true },
  )
  parser.write(clean)
  parser.end()
  if (truncated) out.word('…')

  const built = out.finish()
  const styles = built.ranges.flatMap(r => (r.kind === 'style' ? [{ start: r.start, length: r.length, style: r.style }] : []))
  const links: LinkRange[] = built.ranges.flatMap(r => (r.kind === 'link' ? [{ start: r.start, length: r.length, url: r.url }] : []))
  const mentions: MentionRange[] = built.ranges.flatMap(r => {
    if (r.kind !== 'mention') return []
    const displayName = built.text.slice(r.start, r.start + r.length).replace(/^@/u, '').trim()
    return [{ start: r.start, length: r.length, person: { ...r.person, ...(displayName ? { displayName } : {}) } }]
  })
  return { text: built.text, styles, links, mentions }
}
