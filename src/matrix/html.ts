// Matrix HTML ⇄ neutral rich text. Parsing and rendering live apart; they share one set of layout
// rules (blocks end lines, whitespace collapses as a browser's would), so each undoes the other.
export {
  htmlToRichText,
  stripPlainReplyFallback,
  pillTarget,
  MAX_HTML_LENGTH,
  MAX_NESTING_DEPTH,
  type HtmlToRichTextOptions,
} from './html-parse.ts'
export { richTextToMatrix, type MatrixTextContent, type MentionResolver } from './html-render.ts'
