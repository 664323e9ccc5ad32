// File names come from every network and cross to the others, and to people's disks: no path separators,
// no control or bidi-override characters (U+202E makes "gpj.exe" read as "exe.jpg"), no leading dots,
// no broken surrogate pairs (PostgreSQL refuses them), and short enough for any filesystem.

import { utf8Length } from './richtext.ts'

// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f/\\\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g
/** Most filesystems allow 255 bytes in a name; leave room for a suffix a client adds. */
export const MAX_FILENAME_BYTES = 200

/** At most `max` UTF-8 bytes of `s`, cut between code points. */
function truncate(s: string, max: number): string {
  let out = ''
  for (const ch of s) {
    if (utf8Length(out) + utf8Length(ch) > max) break
    out += ch
  }
  return out
}

export function safeFilename(name: string): string {
  const cleaned = name.replace(UNSAFE, '_').trim().replace(/^\.+/, '_')
  if (utf8Length(cleaned) <= MAX_FILENAME_BYTES) return cleaned.length > 0 ? cleaned : 'file'
  // Too long: keep a short extension, so the file still opens with the right program.
  const ext = /\.[^.\s]{1,16}$/u.exec(cleaned)?.[0] ?? ''
  return `${truncate(cleaned, MAX_FILENAME_BYTES - utf8Length(ext)).trimEnd()}${ext}`
}
