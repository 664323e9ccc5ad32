// What rc14 emits besides one message per upsert, through the whole bridge: a reaction arrives twice (its upsert
// and messages.reaction), an edit or revoke twice (its upsert and messages.update), the offline backlog several
// messages to an upsert, the relay phone's own messages keyed by LID in LID-addressed groups, and creds.update
// just before 'open' on every connect (Socket/socket.js CB:success; Utils/process-message.js).
import { proto } from '@whiskeysockets/baileys'
import { afterEach, describe, expect, it } from 'vitest'
import type { FakeEvent } from '../fakes/homeserver.ts'
import { ALICE } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { WA_DAVE, WA_ERIN, bridgedRoom, realScenario, until, type RealScenario } from '../support/networks.ts'
import { content, settled } from '../support/relay.ts'

const { ProtocolMessage } = proto.Message

describe.each(DB_KINDS)('rc14’s event shapes through the bridge on %s', kind => {
  let s: RealScenario
  afterEach(async () => s?.stop())

  async function setup() {
    s = await realScenario(kind)
    const r = await bridgedRoom(s, { signal: false, whatsapp: true })
    return { room: r.room, group: r.whatsappGroup! }
  }
  const said = (room: string, match: (e: FakeEvent) => boolean) => s.hs.waitForEvent(room, match)
  const ofType = (room: string, type: string) => s.hs.timeline(room).filter(e => e.type === type)
  const texts = (room: string) => s.hs.timeline(room).filter(e => e.type === 'm.room.message' && e.sender.startsWith('@whatsapp_') && !content(e)['m.new_content']).map(e => content(e).body)
  /** Dave says something and it reaches Matrix: whatever came before it has been handled. */
  async function marker(room: string, group: string, text: string): Promise<void> {
    s.wa.deliver({ chat: group, from: WA_DAVE, pushName: 'Dave', message: { conversation: text } })
    await said(room, e => content(e).body === text)
  }

  it('a reaction rc14 emits twice (messages.upsert and messages.reaction) is relayed once', async () => {
    const { room, group } = await setup()
    const msg = s.wa.deliver({ chat: group, from: WA_DAVE, pushName: 'Dave', message: { conversation: 'cake?' } })
    const ev = await said(room, e => content(e).body === 'cake?')
    s.wa.deliver({ chat: group, from: WA_ERIN, pushName: 'Erin', message: { reactionMessage: { key: msg.key, text: '🎂', senderTimestampMs: Date.now() } } })
    await said(room, e => e.type === 'm.reaction')
    await marker(room, group, 'after the reaction')
    await settled(s)
    expect(ofType(room, 'm.reaction').map(e => content(e)['m.relates_to'])).toEqual([{ rel_type: 'm.annotation', event_id: ev.event_id, key: '🎂' }])
  })

  it('an edit and a revoke that also arrive as messages.update are relayed once each; a status update is ignored', async () => {
    const { room, group } = await setup()
    const msg = s.wa.deliver({ chat: group, from: WA_DAVE, pushName: 'Dave', message: { conversation: 'helo' } })
    const ev = await said(room, e => content(e).body === 'helo')
    s.wa.deliver({ chat: group, from: WA_DAVE, pushName: 'Dave', message: { protocolMessage: { type: ProtocolMessage.Type.MESSAGE_EDIT, key: msg.key, editedMessage: { conversation: 'hello' }, timestampMs: Date.now() } } })
    await said(room, e => content(e)['m.relates_to']?.rel_type === 'm.replace')
    // The relay's own copy of a Matrix message is read by the group: messages.update carrying only a status.
    await s.hs.sendMessage(ALICE, room, 'read me')
    const copy = await until(() => s.wa.sent.find(m => String(m.content.text).endsWith('read me')), 'the relay’s copy')
    s.wa.statusUpdate(copy.message.key, proto.WebMessageInfo.Status.READ)
    s.wa.deliver({ chat: group, from: WA_DAVE, pushName: 'Dave', message: { protocolMessage: { type: ProtocolMessage.Type.REVOKE, key: msg.key } } })
    await said(room, e => e.type === 'm.room.redaction')
    await marker(room, group, 'after the update')
    await settled(s)
    expect(ofType(room, 'm.room.message').filter(e => content(e)['m.relates_to']?.rel_type === 'm.replace').map(e => [content(e)['m.relates_to'].event_id, content(e)['m.new_content'].body])).toEqual([[ev.event_id, 'hello']])
    expect(ofType(room, 'm.room.redaction').map(e => e.redacts ?? content(e).redacts)).toEqual([ev.event_id])
    expect(s.botNotices(room).filter(n => n.startsWith('⚠️'))).toEqual([])
  })

  it('an offline backlog in one append upsert and a live batch in one notify upsert arrive whole and in order', async () => {
    const { room, group } = await setup()
    const backlog = ['while', 'the', 'bridge', 'was', 'away']
    s.wa.deliverBatch(backlog.map((text, i) => ({ chat: group, from: i % 2 ? WA_ERIN : WA_DAVE, pushName: i % 2 ? 'Erin' : 'Dave', message: { conversation: text } })), 'append')
    s.wa.deliverBatch(['and', 'now', 'live'].map(text => ({ chat: group, from: WA_DAVE, pushName: 'Dave', message: { conversation: text } })), 'notify')
    await s.hs.waitFor(() => texts(room).length >= 8 || undefined, { what: 'eight messages from WhatsApp' })
    await settled(s)
    expect(texts(room)).toEqual([...backlog, 'and', 'now', 'live'])
  })

  it('a message typed on the relay phone in a LID-addressed group speaks as the relay account, is no echo, and its redaction revokes it', async () => {
    const { room, group } = await setup()
    expect(s.wa.groups.get(group)!.addressingMode).toBe('lid')
    const typed = s.wa.deliver({ chat: group, from: 'phone', pushName: 'Relay', message: { conversation: 'typed on the phone' } })
    expect(typed.key).toMatchObject({ fromMe: true, participant: `${s.wa.account.lid}@lid`, participantAlt: `${s.wa.account.pn}@s.whatsapp.net`, addressingMode: 'lid' })
    const ev = await said(room, e => content(e).body === 'typed on the phone')
    expect(ev.sender.startsWith('@whatsapp_')).toBe(true)
    await s.hs.redact(ALICE, room, ev.event_id)
    const revoke = await until(() => s.wa.sent.find(m => (m.content.delete as { id?: string } | undefined)?.id === typed.key.id), 'the revoke of the phone’s message')
    expect(revoke.content.delete).toMatchObject({ fromMe: true })
    expect(s.wa.revoked.has(typed.key.id!)).toBe(true)
    await settled(s)
    expect(s.botNotices(room).filter(n => /⚠️|as a group admin/.test(n))).toEqual([])
  })

  it('the creds.update that comes just before open on a reconnect is saved, and the session relays after it', async () => {
    const { room, group } = await setup()
    const before = s.wa.sockets.length
    await s.restart()
    await until(() => s.wa.sockets.length > before && s.wa.current?.state === 'open', 'a new socket after the restart')
    const { rows } = await s.db.query<{ value: string }>("SELECT value FROM wa_auth WHERE kind = 'creds'")
    expect(rows.map(r => JSON.parse(r.value).me?.lid)).toEqual([`${s.wa.account.lid}:${s.wa.account.device}@lid`])
    await marker(room, group, 'after the reconnect')
    s.wa.deliver({ chat: group, from: 'phone', pushName: 'Relay', message: { conversation: 'phone after the reconnect' } })
    await said(room, e => content(e).body === 'phone after the reconnect')
  })
})
