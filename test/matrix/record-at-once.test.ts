// A transaction of plain messages that arrives while nothing waits in the inbox is recorded for relaying before the
// homeserver has its answer, instead of stored for the drain to record a moment later: a round trip and a commit
// less per message. Anything else (a command, a membership, a reply) and anything arriving behind a backlog goes
// through the inbox as before; a retry records nothing twice.
import { afterEach, describe, expect, it } from 'vitest'
import { ALICE, bridgedRoom, scenario, type Scenario } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { settled, until } from '../support/relay.ts'

describe.each(DB_KINDS)('messages recorded before the answer on %s', kind => {
  let s: Scenario
  afterEach(async () => s?.stop())

  /** PUTs a transaction to the bridge as the homeserver would, and answers its status. */
  async function put(txnId: string, events: unknown[]): Promise<number> {
    const res = await fetch(`http://127.0.0.1:${s.config.appservice.port}/_matrix/app/v1/transactions/${txnId}`, {
      method: 'PUT', headers: { Authorization: `Bearer ${s.config.appservice.hs_token}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ events }),
    })
    await res.body?.cancel()
    return res.status
  }
  const message = (room: string, id: string, body: string) => ({
    type: 'm.room.message', event_id: `$${id}:example.org`, room_id: room, sender: ALICE, origin_server_ts: Date.now(), content: { msgtype: 'm.text', body },
  })
  const inboxRows = async (ids: string[]) =>
    (await s.db.query<{ n: number }>('SELECT count(*)::int AS n FROM inbox WHERE event_id = ANY($1::text[])', [ids.map(id => `$${id}:example.org`)])).rows[0]!.n
  const recorded = async (id: string) =>
    (await s.db.query('SELECT 1 FROM message_copies WHERE remote_id = $1 AND is_origin', [`$${id}:example.org`])).rows.length === 1
  const texts = (sent: Array<{ text: string }>) => sent.map(x => x.text)

  /** A bridged room whose set-up has been worked through: nothing is pending in the inbox. */
  async function quietRoom() {
    s = await scenario(kind)
    const r = await bridgedRoom(s)
    await s.hs.sendMessage(ALICE, r.room, 'set-up done')
    await s.signal.waitForSentTo(r.sg.id, 1)
    await s.whatsapp.waitForSentTo(r.wg.id, 1)
    await settled(s)
    return r
  }

  it('a message in a quiet portal is recorded by the time the homeserver has its answer, and the inbox never holds it', async () => {
    const { room, sg, wg } = await quietRoom()
    expect(await put('at-once-1', [message(room, 'one', 'hello'), message(room, 'two', 'again')])).toBe(200)
    expect([await recorded('one'), await recorded('two')]).toEqual([true, true])
    expect(await inboxRows(['one', 'two'])).toBe(0)
    await s.signal.waitForSentTo(sg.id, 3)
    await s.whatsapp.waitForSentTo(wg.id, 3)
    expect(texts(s.signal.sentTo(sg.id)).slice(1)).toEqual(['Alice (Matrix): hello', 'Alice (Matrix): again'])
    expect(texts(s.whatsapp.sentTo(wg.id)).slice(1)).toEqual(['Alice (Matrix): hello', 'Alice (Matrix): again'])
  })

  it('the homeserver retrying the transaction, or sending its event again in another, relays nothing twice', async () => {
    const { room, sg, wg } = await quietRoom()
    const once = message(room, 'once', 'only once')
    expect(await put('retry-1', [once])).toBe(200)
    expect(await put('retry-1', [once])).toBe(200)
    expect(await put('retry-2', [once])).toBe(200)
    // The marker: a later message, relayed after whatever the retries would have queued.
    expect(await put('retry-3', [message(room, 'later', 'a later one')])).toBe(200)
    await until(async () => s.signal.sentTo(sg.id).some(x => x.text.endsWith('a later one')), 'the marker on Signal')
    await until(async () => s.whatsapp.sentTo(wg.id).some(x => x.text.endsWith('a later one')), 'the marker on WhatsApp')
    expect(texts(s.signal.sentTo(sg.id)).slice(1)).toEqual(['Alice (Matrix): only once', 'Alice (Matrix): a later one'])
    expect(texts(s.whatsapp.sentTo(wg.id)).slice(1)).toEqual(['Alice (Matrix): only once', 'Alice (Matrix): a later one'])
  })

  it('a command among the messages sends the whole transaction through the inbox, where all of it is handled in order', async () => {
    const { room, sg } = await quietRoom()
    const notices = s.botNotices(room).length
    expect(await put('mixed-1', [message(room, 'before', 'before'), message(room, 'cmd', '!relay help'), message(room, 'after', 'after')])).toBe(200)
    expect(await inboxRows(['before', 'cmd', 'after'])).toBe(3)
    await until(async () => s.botNotices(room).length > notices, 'the answer to the command')
    await s.signal.waitForSentTo(sg.id, 3)
    expect(texts(s.signal.sentTo(sg.id)).slice(1)).toEqual(['Alice (Matrix): before', 'Alice (Matrix): after'])
  })
})
