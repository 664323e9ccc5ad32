// What the WhatsApp adapter keeps of a message (its key and content: for Baileys' getMessage when a recipient
// retries, for quotes, for telling its own echo) rides in the copy the core records anyway, not in a write of its
// own (issue 19, point 5). The scenarios here are what that must not break: the echo of a send that comes before
// the copy is recorded, or after it; a reply quoting what arrived; the week after which what arrived is forgotten;
// and what an older version kept in wa_messages.
import { afterEach, describe, expect, it } from 'vitest'
import { MARK_SENT_SQL } from '../../src/core/outbox.ts'
import type { Db } from '../../src/db/types.ts'
import type { FakeEvent } from '../fakes/homeserver.ts'
import { ALICE } from '../support/bridge.ts'
import { beforeEachQuery, DB_KINDS } from '../support/db.ts'
import { WA_DAVE, bridgedRoom, personalLogins, realScenario, until, type RealScenario } from '../support/networks.ts'
import { content, settled } from '../support/relay.ts'

const DAY = 86_400_000
const CAROL = '@carol:example.org'
const CAROL_WHATSAPP = { pn: '15550100077', lid: '201000000000077', name: 'Carol' }

/** Holds back the 'sent' marks that record a WhatsApp copy while `hold` is set; `waiting` counts those held now. */
function markGate() {
  const gate = { hold: false, waiting: 0, release: () => {} }
  let opened: Promise<void> = Promise.resolve()
  gate.release = () => {}
  const close = () => {
    opened = new Promise<void>(resolve => (gate.release = () => {
      gate.hold = false
      resolve()
    }))
    gate.hold = true
  }
  const wrap = (db: Db): Db => beforeEachQuery(db, async (sql, params) => {
    if (gate.hold && sql === MARK_SENT_SQL && String(params?.[1]).includes('"network":"whatsapp"')) {
      gate.waiting++
      await opened
      gate.waiting--
    }
  })
  return { gate, close, wrap }
}

/** The marker, or an echo relayed ahead of it (whose mark, held with the send's, would hold the marker back). */
const markerOrEcho = (e: FakeEvent): boolean => content(e).body === 'marker' || (e.sender !== ALICE && String(content(e).body ?? '').includes('just one'))
const bodies = (s: RealScenario, room: string, text: string) => s.hs.timeline(room).filter(e => String(content(e).body ?? '').includes(text))

describe.each(DB_KINDS)('WhatsApp messages kept with their copies, on %s', kind => {
  let s: RealScenario
  let shift = 0
  /** A test that failed with marks held lets them go before the bridge stops. */
  let unhold = () => {}
  afterEach(async () => {
    shift = 0
    unhold()
    unhold = () => {}
    await s?.stop()
  })

  it('the echo of a send that comes after sendMessage resolved, while its copy is not yet recorded, is not relayed back', async () => {
    const marks = markGate()
    unhold = () => marks.gate.release()
    s = await realScenario(kind, { wrapDb: marks.wrap })
    const { room, whatsappGroup } = await bridgedRoom(s, { whatsapp: true })
    await settled(s)
    s.wa.holdEchoes = true
    marks.close()
    await s.hs.sendMessage(ALICE, room, 'just one')
    await until(() => s.wa.sent.find(m => String(m.content.text).endsWith('just one')), 'the WhatsApp copy')
    // sendMessage has resolved and the mark that records the copy is waiting: nothing in the database knows the send.
    await until(() => marks.gate.waiting > 0, 'the mark recording the WhatsApp copy')
    expect((await s.db.query(`SELECT 1 FROM message_copies WHERE network = 'whatsapp'`)).rows).toEqual([])
    expect(s.wa.releaseEchoes()).toBe(1)
    // Dave's message comes after the echo on the same socket, and is handled after it: once it is in the room, the
    // echo would be there too, ahead of it.
    s.wa.deliver({ chat: whatsappGroup!, from: WA_DAVE, pushName: 'Dave', message: { conversation: 'marker' } })
    await s.hs.waitForEvent(room, markerOrEcho)
    expect(bodies(s, room, 'just one')).toHaveLength(1) // Alice's own
    marks.gate.release()
    await settled(s)
    expect(bodies(s, room, 'just one')).toHaveLength(1)
    // Signal had Alice's message and Dave's marker, no echo.
    expect(s.daemon.callsOf('send')).toHaveLength(2)
    // The copy keeps the send; memory holds nothing once it is recorded.
    expect(s.whatsappNet.heldSends).toBe(0)
  })

  it('another of the bridge’s logins hears a send in the group before its copy is recorded: not relayed either', async () => {
    const marks = markGate()
    unhold = () => marks.gate.release()
    s = await realScenario(kind, { wrapDb: marks.wrap })
    const { room, whatsappGroup } = await bridgedRoom(s, { whatsapp: true })
    const carol = await personalLogins(s, CAROL, { whatsapp: CAROL_WHATSAPP, whatsappGroup: whatsappGroup! })
    await settled(s)
    s.wa.holdEchoes = true
    marks.close()
    await s.hs.sendMessage(ALICE, room, 'just one')
    await until(() => s.wa.sent.find(m => String(m.content.text).endsWith('just one')), 'the WhatsApp copy')
    await until(() => marks.gate.waiting > 0, 'the mark recording the WhatsApp copy')
    // The relay's own echo, and Carol's account's copy of the group message.
    expect(s.wa.releaseEchoes()).toBe(2)
    // A marker on Carol's socket alone: her session handles it after the copy it heard.
    s.wa.socketOf(carol.wa!)!.deliver({ chat: whatsappGroup!, from: WA_DAVE, pushName: 'Dave', message: { conversation: 'marker' } })
    await s.hs.waitForEvent(room, markerOrEcho)
    expect(bodies(s, room, 'just one')).toHaveLength(1)
    marks.gate.release()
    await settled(s)
    expect(bodies(s, room, 'just one')).toHaveLength(1)
    expect(s.daemon.callsOf('send')).toHaveLength(2)
  })

  it('once recorded, the copy answers: a late echo is dropped, getMessage finds the content, and wa_messages gets no row', async () => {
    s = await realScenario(kind)
    const { room, whatsappGroup } = await bridgedRoom(s, { whatsapp: true })
    await settled(s)
    s.wa.holdEchoes = true
    await s.hs.sendMessage(ALICE, room, 'just one')
    const sent = await until(() => s.wa.sent.find(m => String(m.content.text).endsWith('just one')), 'the WhatsApp copy')
    await settled(s)
    expect(s.whatsappNet.heldSends).toBe(0)
    const { rows } = await s.db.query<{ extra: Record<string, unknown> }>(`SELECT extra FROM message_copies WHERE network = 'whatsapp' AND remote_id = $1`, [sent.id])
    expect(rows[0]?.extra).toMatchObject({ key: { remoteJid: whatsappGroup, id: sent.id, fromMe: true }, login: expect.any(String) })
    expect((await s.db.query('SELECT 1 FROM wa_messages')).rows).toEqual([])
    // The echo comes only now (after a reconnect, say): the copy tells it apart.
    expect(s.wa.releaseEchoes()).toBe(1)
    s.wa.deliver({ chat: whatsappGroup!, from: WA_DAVE, pushName: 'Dave', message: { conversation: 'marker' } })
    await s.hs.waitForEvent(room, e => content(e).body === 'marker')
    await settled(s)
    expect(bodies(s, room, 'just one')).toHaveLength(1)
    expect(s.daemon.callsOf('send')).toHaveLength(2)
    const getMessage = s.wa.current!.opts.getMessage
    expect((await getMessage({ remoteJid: whatsappGroup!, id: sent.id, fromMe: true }))?.extendedTextMessage?.text).toMatch(/just one$/)
  })

  it('a reply quotes what arrived, kept with its copy for a week; after that the quote keeps the key alone', async () => {
    s = await realScenario(kind, { whatsapp: { now: () => Date.now() + shift } })
    const { room, whatsappGroup } = await bridgedRoom(s, { whatsapp: true })
    s.wa.deliver({ chat: whatsappGroup!, id: 'DAVE1', from: WA_DAVE, pushName: 'Dave', message: { conversation: 'question?' } })
    const question = await s.hs.waitForEvent(room, e => content(e).body === 'question?')
    await settled(s)
    expect((await s.db.query('SELECT 1 FROM wa_messages')).rows).toEqual([])
    const reply = async (text: string) => {
      await s.hs.sendMessage(ALICE, room, { msgtype: 'm.text', body: text, 'm.relates_to': { 'm.in_reply_to': { event_id: question.event_id } } })
      const sent = await until(() => s.wa.sent.find(m => String(m.content.text).endsWith(text)), `the WhatsApp copy of "${text}"`)
      return sent.message.message?.extendedTextMessage?.contextInfo
    }
    expect(await reply('answer')).toMatchObject({ stanzaId: 'DAVE1', participant: WA_DAVE.lid, quotedMessage: { conversation: 'question?' } })

    // Six days on, the hourly prune keeps it; eight days on, the content goes and the key stays.
    shift = 6 * DAY
    await s.whatsappNet.prune()
    expect(await reply('still')).toMatchObject({ quotedMessage: { conversation: 'question?' } })
    shift = 8 * DAY
    await s.whatsappNet.prune()
    const { rows } = await s.db.query<{ extra: Record<string, unknown> }>(`SELECT extra FROM message_copies WHERE remote_id = 'DAVE1'`)
    expect(rows[0]?.extra.message).toBeUndefined()
    expect(rows[0]?.extra.key).toMatchObject({ id: 'DAVE1' })
    const later = await reply('later')
    expect(later).toMatchObject({ stanzaId: 'DAVE1', participant: WA_DAVE.lid })
    expect(later?.quotedMessage?.conversation).toBe('')
    await settled(s)
    // What the bridge sent stays with the message map.
    expect((await s.db.query(`SELECT 1 FROM message_copies WHERE network = 'whatsapp' AND NOT is_origin AND extra ? 'message'`)).rows).toHaveLength(3)
  })

  it('what a version before this one kept in wa_messages still answers quotes and getMessage', async () => {
    s = await realScenario(kind)
    const { room, whatsappGroup, whatsappLogin } = await bridgedRoom(s, { whatsapp: true })
    s.wa.deliver({ chat: whatsappGroup!, id: 'OLD1', from: WA_DAVE, pushName: 'Dave', message: { conversation: 'from before' } })
    const old = await s.hs.waitForEvent(room, e => content(e).body === 'from before')
    await s.hs.sendMessage(ALICE, room, 'sent before')
    const sent = await until(() => s.wa.sent.find(m => String(m.content.text).endsWith('sent before')), 'the WhatsApp copy')
    await settled(s)
    // As the older version left them: copies without content (a send's with its key), the content in wa_messages.
    await s.db.query(`UPDATE message_copies SET extra = CASE WHEN is_origin THEN NULL ELSE jsonb_build_object('key', extra->'key') END WHERE network = 'whatsapp'`)
    const row = (id: string, fromBridge: boolean, key: object, message: object) => s.db.query(
      `INSERT INTO wa_messages (login_id, msg_id, chat_jid, from_bridge, key, message, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [whatsappLogin, id, whatsappGroup, fromBridge, JSON.stringify(key), JSON.stringify(message), Date.now()])
    await row('OLD1', false, { remoteJid: whatsappGroup, id: 'OLD1', fromMe: false, participant: WA_DAVE.lid }, { conversation: 'from before' })
    await row(sent.id, true, { remoteJid: whatsappGroup, id: sent.id, fromMe: true }, { conversation: 'kept before' })

    expect((await s.wa.current!.opts.getMessage({ remoteJid: whatsappGroup!, id: sent.id, fromMe: true }))?.conversation).toBe('kept before')
    await s.hs.sendMessage(ALICE, room, { msgtype: 'm.text', body: 'answer', 'm.relates_to': { 'm.in_reply_to': { event_id: old.event_id } } })
    const answer = await until(() => s.wa.sent.find(m => String(m.content.text).endsWith('answer')), 'the reply')
    expect(answer.message.message?.extendedTextMessage?.contextInfo).toMatchObject({ stanzaId: 'OLD1', quotedMessage: { conversation: 'from before' } })
  })
})
