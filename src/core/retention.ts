// Retention: what the bridge keeps only for a while (retention.* in the config), enforced by the periodic
// maintenance. Without it the message map, the media store and the processed events grow for ever.
import type { Logger } from 'pino'
import type { Db, Queryable } from '../db/types.ts'

export interface RetentionOptions {
  db: Db
  /** Removes stored media files last written before the cutoff, except those still needed. */
  media: { removeOlderThan(cutoffMs: number, keep: ReadonlySet<string>): Promise<number> }
  messageMapMs: number
  mediaMs: number
  log: Logger
  now?: () => number
}

/** Messages deleted per statement: a long backlog goes in short transactions, never one that locks for minutes. */
const BATCH = 2_000
/** At most this many batches per run; the rest waits for the next run. */
const MAX_BATCHES = 50

const MEDIA_ID = /[0-9a-f]{64}/g

export class Retention {
  private readonly opts: RetentionOptions
  private readonly now: () => number
  constructor(opts: RetentionOptions) {
    this.opts = opts
    this.now = opts.now ?? Date.now
  }

  /** One pass. Returns how many messages and media files went. */
  async enforce(): Promise<{ messages: number; media: number }> {
    const messages = await this.pruneMessages()
    const media = await this.pruneMedia()
    if (messages > 0 || media > 0) this.opts.log.info({ messages, media }, 'Removed messages and media past their retention')
    return { messages, media }
  }

  /** The message map: a message older than the retention, with nothing of it still queued or due to disappear, goes with its copies
   * (the foreign keys cascade); replies, edits and reactions to it are then no longer carried over. */
  private async pruneMessages(): Promise<number> {
    const cutoff = new Date(this.now() - this.opts.messageMapMs)
    let total = 0
    for (let i = 0; i < MAX_BATCHES; i++) {
      const { rows } = await this.opts.db.query<{ n: number }>(
        `WITH gone AS (
           DELETE FROM messages WHERE id IN (
             SELECT m.id FROM messages m
             WHERE m.created_at < $1
               AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.message_id = m.id AND o.state IN ('pending', 'sending', 'held'))
               -- A disappearing message's Matrix copy has yet to go: the record of it must outlive the wait.
               AND NOT EXISTS (SELECT 1 FROM expiring_messages e WHERE e.message_id = m.id)
             ORDER BY m.id LIMIT ${BATCH})
           RETURNING 1)
         SELECT count(*)::int AS n FROM gone`,
        [cutoff],
      )
      const n = rows[0]?.n ?? 0
      total += n
      if (n < BATCH) break
    }
    return total
  }

  /** Media files: kept while a queued delivery names them, and for the retention after their last write. */
  private async pruneMedia(): Promise<number> {
    return this.opts.media.removeOlderThan(this.now() - this.opts.mediaMs, await queuedMedia(this.opts.db))
  }
}

/** The media files a delivery still waiting in the outbox names: they must stay. */
export async function queuedMedia(db: Queryable): Promise<Set<string>> {
  const { rows } = await db.query<{ payload: string }>(
    `SELECT payload::text AS payload FROM outbox WHERE state IN ('pending', 'sending', 'held')`,
  )
  return new Set(rows.flatMap(r => r.payload.match(MEDIA_ID) ?? []))
}
