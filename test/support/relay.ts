// Helpers for the core's scenario tests: media uploads as a Matrix client would make them, reading what
// arrived in a room, and waiting until the bridge has nothing left to do (so counts are final).
import { FileMediaStore } from '../../src/core/media.ts'
import type { FakeEvent } from '../fakes/homeserver.ts'
import type { Scenario } from './bridge.ts'
import { PATIENCE_MS } from './patience.ts'

/** Uploads bytes through the fake homeserver's media repository; returns the mxc:// URI. */
export async function upload(s: Scenario, data: Buffer, mimetype: string, filename: string): Promise<string> {
  const res = await fetch(`${s.hs.url}/_matrix/media/v3/upload?filename=${encodeURIComponent(filename)}`, {
    method: 'POST', body: data, headers: { 'Content-Type': mimetype, Authorization: `Bearer ${s.hs.registration.as_token}` },
  })
  const json = await res.json() as { content_uri: string }
  return json.content_uri
}

/** The bridge's media store, where attachments wait between networks. */
export const mediaStore = (s: Scenario): FileMediaStore => new FileMediaStore(s.config.data_dir)

export const content = (ev: FakeEvent): Record<string, any> => ev.content as Record<string, any>
export const bodyOf = (ev: FakeEvent): string | undefined => content(ev).body as string | undefined

/** Room events sent by someone other than the people in `humans` and the bot's own bookkeeping. */
export function ghostEvents(s: Scenario, room: string): FakeEvent[] {
  return s.hs.timeline(room).filter(e => /^@(signal|whatsapp)_/.test(e.sender) && e.state_key === undefined)
}

export function botEvents(s: Scenario, room: string, type = 'm.room.message'): FakeEvent[] {
  return s.hs.timeline(room).filter(e => e.sender === s.hs.botUserId && e.type === type)
}

/** Waits until the homeserver has pushed everything, the inbox is worked through and no delivery is waiting. */
export async function settled(s: Scenario, timeoutMs = PATIENCE_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let quietRounds = 0
  while (quietRounds < 2) {
    if (Date.now() > deadline) throw new Error('the bridge did not settle')
    await s.hs.waitForPushIdle()
    const { rows: [inbox] } = await s.db.query<{ n: number }>('SELECT count(*)::int AS n FROM inbox WHERE processed_at IS NULL')
    // Rows behind a held one wait for their relay, by design: they do not count as work in progress.
    const { rows: [outbox] } = await s.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM outbox o WHERE state IN ('pending', 'sending') AND NOT EXISTS
         (SELECT 1 FROM outbox h WHERE h.state = 'held' AND h.network = o.network AND h.chat_id = o.chat_id AND h.id < o.id)`)
    quietRounds = inbox!.n === 0 && outbox!.n === 0 && s.hs.pushIdle ? quietRounds + 1 : 0
    await new Promise<void>(resolve => setTimeout(resolve, 10))
  }
}

/** Re-checks an asynchronous condition (a database query) until it holds. */
export async function until<T>(check: () => Promise<T | undefined | null | false>, what: string, timeoutMs = PATIENCE_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise<void>(resolve => setTimeout(resolve, 10))
  }
}
