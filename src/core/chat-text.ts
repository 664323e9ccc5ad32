// A group's name and topic as they cross to another network: whatever a person on one network typed (control
// characters, 10,000 characters, HTML) becomes plain text the other network takes. HTML is never interpreted
// anywhere a name goes (Matrix room names and topics are plain text, as are Signal's and WhatsApp's), so it stays as
// typed; what each network cannot take is stripped or cut here and in each adapter's `chatValue`.
import type { ChatField } from './model.ts'

/** C0 and C1 controls, DEL, and the bidi overrides that can make a name read backwards; a topic keeps its line breaks. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROLS = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u202A-\u202E\u2066-\u2069]/gu
const LINE_BREAKS = /[\t\n]/g

/** The text without control characters; a name also on one line (its line breaks and tabs become spaces). */
export function cleanChatText(field: Exclude<ChatField, 'avatar' | 'timer'>, text: string): string {
  const clean = text.replace(CONTROLS, '')
  return field === 'name' ? clean.replace(LINE_BREAKS, ' ').replace(/ {2,}/g, ' ').trim() : clean.trim()
}

/** The start of a string that is at most `max` code points (never half a surrogate pair), cut with "…". */
export function withinChars(s: string, max: number): string {
  const chars = [...s]
  if (chars.length <= max) return s
  return `${chars.slice(0, Math.max(0, max - 1)).join('')}…`
}

/** A disappearing-message timer as people say it ("off", "1 week", "8 hours"). */
export function timerLabel(seconds: number): string {
  if (seconds <= 0) return 'off'
  const units: Array<[number, string]> = [[604_800, 'week'], [86_400, 'day'], [3_600, 'hour'], [60, 'minute'], [1, 'second']]
  const [size, name] = units.find(([u]) => seconds % u === 0 && seconds >= u)!
  const n = seconds / size
  return `${n} ${name}${n === 1 ? '' : 's'}`
}
