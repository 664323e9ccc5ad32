// Retention (retention.* in the config): the message map and the media store keep only what is recent or still
// needed, enforced periodically by the running bridge (issue 16, defect 14).
import { createHash, randomBytes } from 'node:crypto'
import { stat, utimes } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { ALICE, bridgedRoom, scenario, type Scenario } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { settled, until, upload } from '../support/relay.ts'

const DAY = 86_400_000

describe.each(DB_KINDS)('retention on %s', kind => {
  let s: Scenario
  afterEach(async () => s?.stop())

  const messageOf = async (eventId: string): Promise<number | undefined> =>
    (await s.db.query<{ message_id: number }>(`SELECT message_id FROM message_copies WHERE network = 'matrix' AND remote_id = $1`, [eventId])).rows[0]?.message_id
  const fileOf = (bytes: Buffer) => join(s.config.data_dir, 'media', createHash('sha256').update(bytes).digest('hex'))
  const exists = (path: string) => stat(path).then(() => true, () => false)

  async function sendFile(room: string, name: string): Promise<{ event: string; bytes: Buffer }> {
    const bytes = randomBytes(64)
    const url = await upload(s, bytes, 'application/octet-stream', name)
    const event = await s.hs.sendMessage(ALICE, room, { msgtype: 'm.file', body: name, filename: name, url, info: { mimetype: 'application/octet-stream', size: bytes.length } })
    return { event, bytes }
  }

  it('a message older than message_map_days goes with its copies and its file; one still queued keeps both, and newer ones stay', async () => {
    s = await scenario(kind, { configure: raw => { raw.retention = { message_map_days: 1, media_days: 1 } }, retentionMs: 50 })
    const { room, sg, wg } = await bridgedRoom(s)
    const relayed = await sendFile(room, 'old.bin')
    await s.signal.waitForSentTo(sg.id, 1)
    await s.whatsapp.waitForSentTo(wg.id, 1)
    // WhatsApp's relay unset: the next file waits for it, queued.
    await s.command(ALICE, room, '!relay unset whatsapp')
    const queued = await sendFile(room, 'waiting.bin')
    const fresh = await s.hs.sendMessage(ALICE, room, 'fresh news')
    await s.signal.waitForSentTo(sg.id, 3)
    await settled(s)
    const [relayedId, queuedId, freshId] = [await messageOf(relayed.event), await messageOf(queued.event), await messageOf(fresh)]
    expect([relayedId, queuedId, freshId].every(id => id !== undefined)).toBe(true)

    // Two days pass for the two files.
    const twoDaysAgo = new Date(Date.now() - 2 * DAY)
    await s.db.query('UPDATE messages SET created_at = $2 WHERE id = ANY($1)', [[relayedId, queuedId], twoDaysAgo])
    for (const f of [relayed, queued]) await utimes(fileOf(f.bytes), twoDaysAgo, twoDaysAgo)

    await until(async () => (await messageOf(relayed.event)) === undefined && !(await exists(fileOf(relayed.bytes))), 'the old relayed message and its file to go')
    const { rows } = await s.db.query<{ n: number }>('SELECT count(*)::int AS n FROM message_copies WHERE message_id = $1', [relayedId])
    expect(rows[0]!.n).toBe(0)
    // Still queued for WhatsApp: kept, file and all, however old.
    expect(await messageOf(queued.event)).toBe(queuedId)
    expect(await exists(fileOf(queued.bytes))).toBe(true)
    expect(await messageOf(fresh)).toBe(freshId)
    // And it still goes out when WhatsApp has a relay again.
    await s.command(ALICE, room, '!relay set whatsapp')
    const sent = await s.whatsapp.waitForSentTo(wg.id, 3)
    expect(sent.at(-1)!.text).toBe('Alice (Matrix): fresh news')
  })
})
