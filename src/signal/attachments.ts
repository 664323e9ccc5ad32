// signal-cli keeps every file it receives in <config>/attachments/ and never deletes one, nor offers a call to
// (signal-cli.md §4.4). Where the bridge shares that directory with the daemon (signal.attachments_dir), it
// removes the files an event named once the event is recorded: the bytes are in the bridge's media store then.
import { unlink } from 'node:fs/promises'
import { basename, join } from 'node:path'
import type { Logger } from 'pino'

/** Deeper than any envelope signal-cli writes; a bound on the walk, not a limit anyone meets. */
const MAX_DEPTH = 12

/** The attachment files an event names: every `{ id, contentType }` object in it (message attachments, quote
 * thumbnails, link preview images, in data and sync messages alike). Only plain file names. */
export function attachmentIds(inner: unknown): string[] {
  const ids = new Set<string>()
  const walk = (v: unknown, depth: number): void => {
    if (typeof v !== 'object' || v === null || depth > MAX_DEPTH) return
    if (Array.isArray(v)) {
      for (const x of v) walk(x, depth + 1)
      return
    }
    const o = v as Record<string, unknown>
    if (typeof o.id === 'string' && typeof o.contentType === 'string' && o.id !== '' && basename(o.id) === o.id && !o.id.startsWith('.')) ids.add(o.id)
    for (const x of Object.values(o)) walk(x, depth + 1)
  }
  walk(inner, 0)
  return [...ids]
}

export class AttachmentFiles {
  readonly #dir: string
  readonly #log: Logger
  readonly #warned = new Set<string>()

  constructor(dir: string, log: Logger) {
    this.#dir = dir
    this.#log = log
  }

  /** Removes the files `inner` named. Call only once the event is recorded: a crash before keeps them. */
  async removeNamedIn(inner: unknown): Promise<void> {
    for (const id of attachmentIds(inner)) {
      try {
        await unlink(join(this.#dir, id))
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'unknown'
        // Gone already (fetch failed, or removed by hand) is fine; anything else is said once per kind.
        if (code === 'ENOENT' || this.#warned.has(code)) continue
        this.#warned.add(code)
        this.#log.warn({ dir: this.#dir, code }, 'Could not remove a relayed Signal attachment from signal.attachments_dir; check that the bridge may write there (docs/operators.md §6)')
      }
    }
  }
}
