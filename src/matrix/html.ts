// Matrix HTML ⇄ neutral rich text. Parsing and rendering live apart; they share one set of layout
// rules (blocks end lines, whitespace collapses as a browser's would), so each undoes the other.
export { htmlToRichText, MAX_HTML_LENGTH } from './html-parse.ts'
export { stripPlainReplyFallback } from './html-text.ts'
export { richTextToMatrix, type MentionResolver } from './html-render.ts'
