// The benchmark's stage stamps (issue 19, point 4) read the bridge's own record statements: since a record also
// carries the last message's 'sent' mark (session 12), that mark is the earlier message's acknowledgement, not a
// second record of it.
import { describe, expect, it } from 'vitest'
import { tag } from '../../bench/config.ts'
import { STAGES, stageRecorder, type Stage, type Stamp } from '../../bench/stages.ts'
import { MessageMap, type AlsoRecorded, type NewWithOrigin } from '../../src/core/messages.ts'
import type { MarkParams } from '../../src/core/outbox.ts'
import type { Queryable } from '../../src/db/types.ts'

/** The statement MessageMap.createManyAndQueue makes for one Matrix message (its text and parameters, as the
 * bridge sends them) and the rows PostgreSQL would answer: the message `messageId`, its two outbox rows. */
async function recordStatement(seq: number, messageId: number, outboxIds: [number, number], marks?: MarkParams) {
  let text = ''
  let params: unknown[] = []
  const rows = [
    { ord: 1, id: messageId, outbox_id: null, network: null, chat_id: null },
    { ord: null, id: messageId, outbox_id: outboxIds[0], network: 'signal', chat_id: 'group-1' },
    { ord: null, id: messageId, outbox_id: outboxIds[1], network: 'whatsapp', chat_id: '1203@g.us' },
  ]
  const q: Queryable = {
    query: async <R,>(sql: string, p?: unknown[]) => {
      text = sql
      params = p ?? []
      return { rows: rows as R[], rowCount: rows.length }
    },
    exec: async () => {},
  }
  const item: NewWithOrigin = {
    m: { portalId: 1, sender: { network: 'matrix', id: '@alice:example.org', displayName: 'Alice' } },
    c: { network: 'matrix', chatId: '!room:example.org', remoteId: `$event${seq}`, authorId: '@alice:example.org', sentAt: seq },
  }
  const payload = JSON.stringify({ text: `Hello ${tag(seq)}` })
  const also: AlsoRecorded = {
    deliveries: [
      { item: 0, portalId: 1, network: 'signal', chatId: 'group-1', payload },
      { item: 0, portalId: 1, network: 'whatsapp', chatId: '1203@g.us', payload },
    ],
    marks,
  }
  await MessageMap.createManyAndQueue(q, [item], also)
  return { text, params, rows }
}

const at = (stamps: Stamp[], seq: number, stage: Stage): number[] =>
  stamps.filter(([s, i]) => s === seq && i === STAGES.indexOf(stage)).map(([, , t]) => t)

describe('stage stamps', () => {
  it('a record carrying the last message’s mark stamps that message acknowledged, and records only its own', async () => {
    const recorder = stageRecorder()
    const connection = {}
    const first = await recordStatement(1, 101, [201, 202])
    recorder.observe(connection, first.text, first.params, first.rows, 0)
    const afterFirst = recorder.take()

    // The first message's copies, as its sends answered them: the WhatsApp copy keeps the text it sent.
    const marks: MarkParams = {
      ids: [201, 202],
      copies: JSON.stringify([
        { network: 'signal', chat_id: 'group-1', remote_id: '1700000000001', message_id: 101, role: 'original', author_id: 'relay', sent_at: 1, extra: null },
        { network: 'whatsapp', chat_id: '1203@g.us', remote_id: '3EB0AA', message_id: 101, role: 'original', author_id: 'relay', sent_at: 1,
          extra: { message: { conversation: `Alice: Hello ${tag(1)}` } } },
      ]),
    }
    const second = await recordStatement(2, 102, [203, 204], marks)
    expect(second.text).toContain(`done AS (UPDATE outbox SET state = 'sent'`)
    recorder.observe(connection, second.text, second.params, second.rows, 0)
    const afterSecond = recorder.take()

    // (One stamp per outbox row: the parent keeps the later of a message's two.)
    expect(at(afterFirst, 1, 'recorded')).toHaveLength(2)
    expect(at(afterFirst, 1, 'read')).toHaveLength(2)
    expect(at(afterSecond, 1, 'recorded')).toEqual([])
    expect(at(afterSecond, 1, 'arrival')).toEqual([])
    expect(at(afterSecond, 1, 'acknowledged')).toHaveLength(2)
    expect(at(afterSecond, 2, 'recorded')).toHaveLength(2)
    expect(at(afterSecond, 2, 'read')).toHaveLength(2)
    expect(at(afterSecond, 2, 'acknowledged')).toEqual([])
  })
})
