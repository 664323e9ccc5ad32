// Which media files each login brought into the shared store, so that `logout` deletes a login's media cache with
// it. The store is content-addressed (one file per content), so a file is only the login's to delete when no other
// login brought the same bytes and no queued delivery still needs them.
import type { Db } from '../db/types.ts'
import type { MediaStore } from './media.ts'
import type { InboundEvent } from './model.ts'
import { queuedMedia } from './retention.ts'

/** The media ids an inbound event put into the store: its attachments, or a group picture. */
export function mediaOf(event: InboundEvent): string[] {
  switch (event.kind) {
    case 'message':
    case 'edit':
      return event.content.attachments.map(a => a.mediaId)
    case 'chat_update':
      return event.avatar ? [event.avatar.mediaId] : []
    default:
      return []
  }
}

export class LoginMedia {
  private readonly db: Db
  private readonly media: MediaStore
  constructor(db: Db, media: MediaStore) {
    this.db = db
    this.media = media
  }

  /** Notes the files an event that arrived through a login brought (a login removed meanwhile notes nothing). */
  async record(event: InboundEvent): Promise<void> {
    const ids = mediaOf(event)
    if (!event.loginId || ids.length === 0) return
    await this.db.query(
      `INSERT INTO login_media (login_id, media_id) SELECT l.id, m FROM logins l, unnest($2::text[]) AS m
       WHERE l.id = $1 ON CONFLICT DO NOTHING`,
      [event.loginId, ids],
    )
  }

  /** Deletes the files only this login brought and nothing queued needs; returns how many went. Its rows go with
   * the login (ON DELETE CASCADE). */
  async forget(loginId: string): Promise<number> {
    const { rows } = await this.db.query<{ media_id: string }>(
      `SELECT media_id FROM login_media mine WHERE login_id = $1
         AND NOT EXISTS (SELECT 1 FROM login_media other WHERE other.media_id = mine.media_id AND other.login_id <> $1)`,
      [loginId],
    )
    if (rows.length === 0) return 0
    const keep = await queuedMedia(this.db)
    let removed = 0
    for (const { media_id: id } of rows) {
      if (keep.has(id)) continue
      await this.media.remove(id)
      removed++
    }
    return removed
  }
}
