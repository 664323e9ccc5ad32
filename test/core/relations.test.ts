// Replies, edits, redactions and reactions land on the right copy on every network, in every direction,
// and reactions follow the configured policy (bridge.relay.reactions).
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { Delivery, InboundEvent } from '../../src/core/model.ts'
import type { FakeEvent } from '../fakes/homeserver.ts'
import type { MemoryGroup, Sent } from '../fakes/memory-network.ts'
import { ALICE, bridgedRoom, linkedLogin, scenario, type Scenario } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { bodyOf, content, settled, until } from '../support/relay.ts'

function as<K extends Delivery['kind']>(sent: Sent | undefined, kind: K): Extract<Delivery, { kind: K }> {
  if (!sent || sent.delivery.kind !== kind) throw new Error(`expected a ${kind}, got ${JSON.stringify(sent?.text)}`)
  return sent.delivery as Extract<Delivery, { kind: K }>
}

const BOB = { network: 'signal' as const, id: 'aci-bob', displayName: 'Bob' }
const DAVE = { network: 'whatsapp' as const, id: 'wa-dave', displayName: 'Dave' }
const base = (who: typeof BOB | typeof DAVE, group: string, remoteId: string) =>
  ({ chat: { network: who.network, id: group }, sender: who, remoteId, timestamp: Date.now() })
const text = (t: string) => ({ kind: 'text' as const, body: { text: t, styles: [], links: [], mentions: [] }, attachments: [] })
/** A reaction as the adapters report it; WhatsApp says "removed" with an empty text and no emoji (baileys.md §2). */
const react = (who: typeof BOB | typeof DAVE, group: string, remoteId: string, target: string, emoji: string): InboundEvent =>
  ({ ...base(who, group, remoteId), kind: 'reaction', target, emoji, removed: emoji === '' })
const unreactSignal = (group: string, remoteId: string, target: string, emoji: string): InboundEvent =>
  ({ ...base(BOB, group, remoteId), kind: 'reaction', target, emoji, removed: true })
const DAVE_GHOST = '@whatsapp_wa-dave:example.org'
const isReaction = (key: string) => (e: FakeEvent) => e.type === 'm.reaction' && (e.content['m.relates_to'] as { key?: string } | undefined)?.key === key
const redactionOf = (event: string) => (e: FakeEvent) => e.type === 'm.room.redaction' && (e.content.redacts ?? e.redacts) === event
/** The reactions standing in the room (not redacted), as "sender key". */
function standing(s: Scenario, room: string): string[] {
  const redacted = new Set(s.hs.timeline(room).filter(e => e.type === 'm.room.redaction').map(e => String(e.content.redacts ?? e.redacts)))
  return s.hs.timeline(room).filter(e => e.type === 'm.reaction' && !redacted.has(e.event_id))
    .map(e => `${e.sender} ${(e.content['m.relates_to'] as { key: string }).key}`)
}

/** A Matrix message and its copies on both groups. */
async function fromAlice(s: Scenario, room: string, sg: MemoryGroup, wg: MemoryGroup, body: string): Promise<{ event: string; sig: Sent; wa: Sent }> {
  const nSig = s.signal.sentTo(sg.id).length
  const nWa = s.whatsapp.sentTo(wg.id).length
  const event = await s.hs.sendMessage(ALICE, room, body)
  const sig = (await s.signal.waitForSentTo(sg.id, nSig + 1))[nSig]!
  const wa = (await s.whatsapp.waitForSentTo(wg.id, nWa + 1))[nWa]!
  // A copy is recorded just after its send returns: people answer only once it is.
  await settled(s)
  return { event, sig, wa }
}

/** A Signal message, its ghost event in Matrix and the relay's copy on WhatsApp. */
async function fromBob(s: Scenario, room: string, sg: MemoryGroup, wg: MemoryGroup, body: string): Promise<{ remoteId: string; event: string; wa: Sent }> {
  const nWa = s.whatsapp.sentTo(wg.id).length
  const remoteId = await s.signal.say(sg.id, { id: BOB.id, name: BOB.displayName }, body)
  const ev = await s.hs.waitForEvent(room, e => bodyOf(e) === body && e.sender === '@signal_aci-bob:example.org')
  const wa = (await s.whatsapp.waitForSentTo(wg.id, nWa + 1))[nWa]!
  await settled(s)
  return { remoteId, event: ev.event_id, wa }
}

describe.each(DB_KINDS)('replies, edits and redactions on %s', kind => {
  let s: Scenario
  beforeAll(async () => {
    s = await scenario(kind)
  })
  afterAll(async () => s?.stop())

  it('a Matrix reply to a Signal message quotes the original on Signal and the relay\'s copy on WhatsApp, without the reply fallback', async () => {
    const { room, sg, wg } = await bridgedRoom(s)
    const bob = await fromBob(s, room, sg, wg, 'anyone there?')
    await s.hs.sendMessage(ALICE, room, {
      msgtype: 'm.text', body: '> <@signal_aci-bob:example.org> anyone there?\n\nyes, me',
      format: 'org.matrix.custom.html',
      formatted_body: `<mx-reply><blockquote><a href="https://matrix.to/#/${room}/${bob.event}">In reply to</a> <a href="https://matrix.to/#/@signal_aci-bob:example.org">Bob</a><br>anyone there?</blockquote></mx-reply>yes, me`,
      'm.relates_to': { 'm.in_reply_to': { event_id: bob.event } },
    })
    const [sig] = await s.signal.waitForSentTo(sg.id, 1)
    const [, wa] = await s.whatsapp.waitForSentTo(wg.id, 2)
    expect(as(sig, 'message').replyTo?.remoteId).toBe(bob.remoteId)
    expect(sig!.text).toBe(`Alice (Matrix): yes, me (reply to ${bob.remoteId})`)
    expect(as(wa, 'message').replyTo?.remoteId).toBe(bob.wa.remoteId)
    expect(wa!.text).toBe(`Alice (Matrix): yes, me (reply to ${bob.wa.remoteId})`)
  })

  it('a plain-text Matrix reply loses its "> " fallback lines before it is relayed', async () => {
    const { room, sg, wg } = await bridgedRoom(s)
    const bob = await fromBob(s, room, sg, wg, 'question')
    await s.hs.sendMessage(ALICE, room, { msgtype: 'm.text', body: '> <@signal_aci-bob:example.org> question\n\nanswer', 'm.relates_to': { 'm.in_reply_to': { event_id: bob.event } } })
    const [sig] = await s.signal.waitForSentTo(sg.id, 1)
    expect(as(sig, 'message').content.body.text).toBe('Alice (Matrix): answer')
  })

  it('a WhatsApp reply to a Signal message quotes the relay\'s copy on WhatsApp... and in Matrix replies to the ghost\'s event', async () => {
    const { room, sg, wg } = await bridgedRoom(s)
    const bob = await fromBob(s, room, sg, wg, 'who is coming?')
    await s.whatsapp.say(wg.id, { id: DAVE.id, name: DAVE.displayName }, 'me!', { replyTo: bob.wa.remoteId })
    const ev = await s.hs.waitForEvent(room, e => bodyOf(e) === 'me!')
    expect(content(ev)['m.relates_to']).toEqual({ 'm.in_reply_to': { event_id: bob.event } })
    const [sig] = await s.signal.waitForSentTo(sg.id, 1)
    expect(as(sig, 'message').replyTo?.remoteId).toBe(bob.remoteId)
    expect(sig!.text).toBe(`Dave (WhatsApp): me! (reply to ${bob.remoteId})`)
  })

  it('a Signal reply to a Matrix message replies to Alice\'s event in Matrix and to the relay\'s copy on WhatsApp', async () => {
    const { room, sg, wg } = await bridgedRoom(s)
    const alice = await fromAlice(s, room, sg, wg, 'dinner at 8')
    await s.signal.say(sg.id, { id: BOB.id, name: BOB.displayName }, 'great', { replyTo: alice.sig.remoteId })
    const ev = await s.hs.waitForEvent(room, e => bodyOf(e) === 'great')
    expect(content(ev)['m.relates_to']).toEqual({ 'm.in_reply_to': { event_id: alice.event } })
    const [, wa] = await s.whatsapp.waitForSentTo(wg.id, 2)
    expect(as(wa, 'message').replyTo?.remoteId).toBe(alice.wa.remoteId)
  })

  it('a Matrix edit, and an edit of that edit, reach each group as edits of the relay\'s copy, rendered with the label', async () => {
    const { room, sg, wg } = await bridgedRoom(s)
    const alice = await fromAlice(s, room, sg, wg, 'teh plan')
    const edit = (body: string) => s.hs.sendMessage(ALICE, room, {
      msgtype: 'm.text', body: `* ${body}`, 'm.new_content': { msgtype: 'm.text', body },
      'm.relates_to': { rel_type: 'm.replace', event_id: alice.event },
    })
    await edit('the plan')
    const [, e1] = await s.signal.waitForSentTo(sg.id, 2)
    const [, w1] = await s.whatsapp.waitForSentTo(wg.id, 2)
    expect(e1!.text).toBe(`edit ${alice.sig.remoteId}: Alice (Matrix): the plan`)
    expect(as(e1, 'edit')).toMatchObject({ editCount: 0, original: { remoteId: alice.sig.remoteId } })
    expect(w1!.text).toBe(`edit ${alice.wa.remoteId}: Alice (Matrix): the plan`)
    await edit('the final plan')
    const [, , e2] = await s.signal.waitForSentTo(sg.id, 3)
    const [, , w2] = await s.whatsapp.waitForSentTo(wg.id, 3)
    // Signal wants the latest revision; the original stays known for edit windows.
    expect(as(e2, 'edit')).toMatchObject({ editCount: 1, of: { remoteId: e1!.remoteId }, original: { remoteId: alice.sig.remoteId } })
    expect(as(e2, 'edit').content.body.text).toBe('Alice (Matrix): the final plan')
    expect(as(w2, 'edit').original.remoteId).toBe(alice.wa.remoteId)
  })

  it('a Signal edit, and an edit targeting that edit, become Matrix edits of the ghost\'s original event and WhatsApp edits of the relay copy', async () => {
    const { room, sg, wg } = await bridgedRoom(s)
    const bob = await fromBob(s, room, sg, wg, 'helo')
    await s.signal.inbound({ ...base(BOB, sg.id, 'sig-edit-1'), kind: 'edit', target: bob.remoteId, content: text('hello') })
    await s.hs.waitForEvent(room, e => (content(e)['m.new_content'] as { body?: string } | undefined)?.body === 'hello')
    // Signal names the latest revision as the target of the next edit.
    await s.signal.inbound({ ...base(BOB, sg.id, 'sig-edit-2'), kind: 'edit', target: 'sig-edit-1', content: text('hello all') })
    const second = await s.hs.waitForEvent(room, e => (content(e)['m.new_content'] as { body?: string } | undefined)?.body === 'hello all')
    expect(content(second)['m.relates_to']).toEqual({ rel_type: 'm.replace', event_id: bob.event })
    expect(second.sender).toBe('@signal_aci-bob:example.org')
    const [, w1, w2] = await s.whatsapp.waitForSentTo(wg.id, 3)
    expect(w1!.text).toBe(`edit ${bob.wa.remoteId}: Bob (Signal): hello`)
    expect(as(w2, 'edit')).toMatchObject({ of: { remoteId: w1!.remoteId }, original: { remoteId: bob.wa.remoteId }, editCount: 1 })
  })

  it('someone else cannot edit a Signal message: the edit is not relayed', async () => {
    const { room, sg, wg } = await bridgedRoom(s)
    const bob = await fromBob(s, room, sg, wg, 'mine')
    await s.signal.inbound({ ...base({ ...BOB, id: 'aci-carol', displayName: 'Carol' }, sg.id, 'sig-evil-edit'), kind: 'edit', target: bob.remoteId, content: text('hijacked') })
    await s.signal.say(sg.id, { id: BOB.id, name: 'Bob' }, 'after')
    await s.hs.waitForEvent(room, e => bodyOf(e) === 'after')
    await settled(s)
    expect(s.hs.timeline(room).some(e => JSON.stringify(e.content).includes('hijacked'))).toBe(false)
    expect(s.whatsapp.sentTo(wg.id).map(x => x.text)).toEqual(['Bob (Signal): mine', 'Bob (Signal): after'])
  })

  it('a redaction in a v11 room (content.redacts) deletes the relay\'s copies on both groups', async () => {
    const { room, sg, wg } = await bridgedRoom(s)
    const alice = await fromAlice(s, room, sg, wg, 'oops, wrong room')
    await s.hs.redact(ALICE, room, alice.event)
    const [, del] = await s.signal.waitForSentTo(sg.id, 2)
    const [, wdel] = await s.whatsapp.waitForSentTo(wg.id, 2)
    expect(del!.text).toBe(`delete ${alice.sig.remoteId}`)
    expect(wdel!.text).toBe(`delete ${alice.wa.remoteId}`)
  })

  it('a redaction in a v10 room (top-level redacts) deletes the relay\'s copies too', async () => {
    const room = await s.hs.createRoom(ALICE, { invite: [s.hs.botUserId], roomVersion: '10', name: 'Old room' })
    await s.hs.waitFor(() => s.hs.membership(room, s.hs.botUserId) === 'join', { what: 'the bot to join' })
    const sg = s.signal.addGroup('Old (Signal)')
    const wg = s.whatsapp.addGroup('Old (WhatsApp)')
    const sigLogin = (await s.bridge.logins.list('signal'))[0]?.id ?? await linkedLogin(s, s.signal)
    const waLogin = (await s.bridge.logins.list('whatsapp'))[0]?.id ?? await linkedLogin(s, s.whatsapp)
    await s.command(ALICE, room, `!relay link signal ${sg.id} ${sigLogin}`)
    await s.command(ALICE, room, `!relay link whatsapp ${wg.id} ${waLogin}`)
    const alice = await fromAlice(s, room, sg, wg, 'old-style')
    const redaction = await s.hs.redact(ALICE, room, alice.event)
    const ev = s.hs.timeline(room).find(e => e.event_id === redaction)!
    expect(ev.redacts).toBe(alice.event)
    expect(ev.content.redacts).toBeUndefined()
    const [, del] = await s.signal.waitForSentTo(sg.id, 2)
    expect(del!.text).toBe(`delete ${alice.sig.remoteId}`)
    const [, wdel] = await s.whatsapp.waitForSentTo(wg.id, 2)
    expect(wdel!.text).toBe(`delete ${alice.wa.remoteId}`)
  })

  it('a Signal deletion redacts the ghost\'s event in Matrix and deletes the relay\'s copy on WhatsApp', async () => {
    const { room, sg, wg } = await bridgedRoom(s)
    const bob = await fromBob(s, room, sg, wg, 'delete me')
    await s.signal.inbound({ ...base(BOB, sg.id, 'sig-del-1'), kind: 'delete', target: bob.remoteId })
    const red = await s.hs.waitForEvent(room, e => e.type === 'm.room.redaction')
    expect(red.content.redacts).toBe(bob.event)
    expect(red.sender).toBe('@signal_aci-bob:example.org')
    const [, wdel] = await s.whatsapp.waitForSentTo(wg.id, 2)
    expect(wdel!.text).toBe(`delete ${bob.wa.remoteId}`)
  })

  it('a WhatsApp member cannot delete someone else\'s message', async () => {
    const { room, sg, wg } = await bridgedRoom(s)
    const bob = await fromBob(s, room, sg, wg, 'keep me')
    await s.whatsapp.inbound({ ...base(DAVE, wg.id, 'wa-del-evil'), kind: 'delete', target: bob.wa.remoteId })
    await s.whatsapp.say(wg.id, { id: DAVE.id, name: 'Dave' }, 'marker')
    await s.hs.waitForEvent(room, e => bodyOf(e) === 'marker')
    await settled(s)
    expect(s.hs.timeline(room).some(e => e.type === 'm.room.redaction')).toBe(false)
    expect(s.signal.sentTo(sg.id).map(x => x.text)).toEqual(['Dave (WhatsApp): marker'])
  })
})

describe.each(DB_KINDS)('reactions on %s', kind => {
  describe('policy "message" (the default)', () => {
    let s: Scenario
    beforeAll(async () => {
      s = await scenario(kind)
    })
    afterAll(async () => s?.stop())

    it('a Matrix reaction to a Signal message is a short "reacted" line replying to the target on both groups; removing it deletes the line', async () => {
      const { room, sg, wg } = await bridgedRoom(s)
      const bob = await fromBob(s, room, sg, wg, 'I passed!')
      const reaction = await s.hs.sendEvent(ALICE, room, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: bob.event, key: '🎉' } })
      const [note] = await s.signal.waitForSentTo(sg.id, 1)
      const [, wnote] = await s.whatsapp.waitForSentTo(wg.id, 2)
      expect(note!.text).toBe(`Alice (Matrix) reacted 🎉 (reply to ${bob.remoteId})`)
      expect(as(note, 'message').content.body.styles).toEqual([{ start: 0, length: 'Alice (Matrix)'.length, style: 'bold' }])
      expect(wnote!.text).toBe(`Alice (Matrix) reacted 🎉 (reply to ${bob.wa.remoteId})`)
      await s.hs.redact(ALICE, room, reaction)
      const [, del] = await s.signal.waitForSentTo(sg.id, 2)
      const [, , wdel] = await s.whatsapp.waitForSentTo(wg.id, 3)
      expect(del!.text).toBe(`delete ${note!.remoteId}`)
      expect(wdel!.text).toBe(`delete ${wnote!.remoteId}`)
    })

    it('a Signal reaction to a Matrix message is an m.reaction from the ghost in Matrix and a line on WhatsApp; removing it redacts and deletes', async () => {
      const { room, sg, wg } = await bridgedRoom(s)
      const alice = await fromAlice(s, room, sg, wg, 'new haircut')
      await s.signal.inbound({ ...base(BOB, sg.id, 'sig-react-1'), kind: 'reaction', target: alice.sig.remoteId, emoji: '👍', removed: false })
      const r = await s.hs.waitForEvent(room, e => e.type === 'm.reaction')
      expect(r.sender).toBe('@signal_aci-bob:example.org')
      expect(r.content['m.relates_to']).toEqual({ rel_type: 'm.annotation', event_id: alice.event, key: '👍' })
      const [, wnote] = await s.whatsapp.waitForSentTo(wg.id, 2)
      expect(wnote!.text).toBe(`Bob (Signal) reacted 👍 (reply to ${alice.wa.remoteId})`)
      await s.signal.inbound({ ...base(BOB, sg.id, 'sig-react-1-off'), kind: 'reaction', target: alice.sig.remoteId, emoji: '👍', removed: true })
      const red = await s.hs.waitForEvent(room, e => e.type === 'm.room.redaction')
      expect(red.content.redacts).toBe(r.event_id)
      const [, , wdel] = await s.whatsapp.waitForSentTo(wg.id, 3)
      expect(wdel!.text).toBe(`delete ${wnote!.remoteId}`)
    })

    it('a new Signal reaction replaces the person\'s previous one on that message, in Matrix too', async () => {
      const { room, sg, wg } = await bridgedRoom(s)
      const alice = await fromAlice(s, room, sg, wg, 'vote')
      await s.signal.inbound({ ...base(BOB, sg.id, 'sig-r-a'), kind: 'reaction', target: alice.sig.remoteId, emoji: '👍', removed: false })
      const first = await s.hs.waitForEvent(room, e => e.type === 'm.reaction')
      await s.signal.inbound({ ...base(BOB, sg.id, 'sig-r-b'), kind: 'reaction', target: alice.sig.remoteId, emoji: '❤️', removed: false })
      await s.hs.waitForEvent(room, e => e.type === 'm.reaction' && (e.content['m.relates_to'] as { key?: string } | undefined)?.key === '❤️')
      const red = await s.hs.waitForEvent(room, e => e.type === 'm.room.redaction')
      expect(red.content.redacts).toBe(first.event_id)
    })

    it('a WhatsApp reaction to a Signal message reaches Matrix on the ghost\'s event and Signal as a line replying to the original', async () => {
      const { room, sg, wg } = await bridgedRoom(s)
      const bob = await fromBob(s, room, sg, wg, 'photo later')
      await s.whatsapp.inbound({ ...base(DAVE, wg.id, 'wa-r-1'), kind: 'reaction', target: bob.wa.remoteId, emoji: '😂', removed: false })
      const r = await s.hs.waitForEvent(room, e => e.type === 'm.reaction')
      expect(r.content['m.relates_to']).toMatchObject({ event_id: bob.event, key: '😂' })
      const [note] = await s.signal.waitForSentTo(sg.id, 1)
      expect(note!.text).toBe(`Dave (WhatsApp) reacted 😂 (reply to ${bob.remoteId})`)
    })

    it('a WhatsApp reaction removed (empty text) redacts the ghost\'s reaction in Matrix and deletes the "reacted" line on Signal', async () => {
      const { room, sg, wg } = await bridgedRoom(s)
      const bob = await fromBob(s, room, sg, wg, 'guess what')
      await s.whatsapp.inbound(react(DAVE, wg.id, 'wa-rm-on', bob.wa.remoteId, '🎉'))
      const r = await s.hs.waitForEvent(room, isReaction('🎉'))
      const [note] = await s.signal.waitForSentTo(sg.id, 1)
      await s.whatsapp.inbound(react(DAVE, wg.id, 'wa-rm-off', bob.wa.remoteId, ''))
      const red = await s.hs.waitForEvent(room, redactionOf(r.event_id))
      expect(red.sender).toBe(DAVE_GHOST)
      const [, del] = await s.signal.waitForSentTo(sg.id, 2)
      expect(del!.text).toBe(`delete ${note!.remoteId}`)
    })

    it('a WhatsApp reaction changed to another emoji replaces the old one everywhere, never adding a second', async () => {
      const { room, sg, wg } = await bridgedRoom(s)
      const bob = await fromBob(s, room, sg, wg, 'pick one')
      await s.whatsapp.inbound(react(DAVE, wg.id, 'wa-ch-1', bob.wa.remoteId, '👍'))
      const first = await s.hs.waitForEvent(room, isReaction('👍'))
      await s.whatsapp.inbound(react(DAVE, wg.id, 'wa-ch-2', bob.wa.remoteId, '❤️'))
      await s.hs.waitForEvent(room, isReaction('❤️'))
      await s.hs.waitForEvent(room, redactionOf(first.event_id))
      await s.signal.waitForSentTo(sg.id, 3)
      await settled(s)
      expect(standing(s, room)).toEqual([`${DAVE_GHOST} ❤️`])
      const [note1, del, note2] = s.signal.sentTo(sg.id)
      expect([note1!.text, del!.text, note2!.text]).toEqual([
        `Dave (WhatsApp) reacted 👍 (reply to ${bob.remoteId})`, `delete ${note1!.remoteId}`, `Dave (WhatsApp) reacted ❤️ (reply to ${bob.remoteId})`,
      ])
      // …and removing it then removes the one that stands.
      await s.whatsapp.inbound(react(DAVE, wg.id, 'wa-ch-off', bob.wa.remoteId, ''))
      const [, , , del2] = await s.signal.waitForSentTo(sg.id, 4)
      expect(del2!.text).toBe(`delete ${note2!.remoteId}`)
      await s.hs.waitFor(() => standing(s, room).length === 0, { what: 'the ❤️ reaction to be redacted' })
    })

    it('a Signal reaction removed (isRemove) redacts the ghost\'s reaction in Matrix and deletes the line on WhatsApp, whatever emoji it names', async () => {
      const { room, sg, wg } = await bridgedRoom(s)
      const alice = await fromAlice(s, room, sg, wg, 'who is in?')
      await s.signal.inbound(react(BOB, sg.id, 'sig-rm-on', alice.sig.remoteId, '✋'))
      const r = await s.hs.waitForEvent(room, isReaction('✋'))
      const [, wnote] = await s.whatsapp.waitForSentTo(wg.id, 2)
      // One reaction per person per message on Signal: the removal ends Bob's reaction, however it is spelled.
      await s.signal.inbound(unreactSignal(sg.id, 'sig-rm-off', alice.sig.remoteId, '✋🏽'))
      await s.hs.waitForEvent(room, redactionOf(r.event_id))
      const [, , wdel] = await s.whatsapp.waitForSentTo(wg.id, 3)
      expect(wdel!.text).toBe(`delete ${wnote!.remoteId}`)
    })
  })

  describe('policy "emoji"', () => {
    let s: Scenario
    beforeAll(async () => {
      s = await scenario(kind, { configure: raw => { raw.bridge.relay.reactions = 'emoji' } })
    })
    afterAll(async () => s?.stop())

    it('a Matrix reaction is relayed as the relay account\'s own reaction on the copies, and removed with it', async () => {
      const { room, sg, wg } = await bridgedRoom(s)
      const bob = await fromBob(s, room, sg, wg, 'look')
      const reaction = await s.hs.sendEvent(ALICE, room, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: bob.event, key: '👀' } })
      const [r] = await s.signal.waitForSentTo(sg.id, 1)
      const [, wr] = await s.whatsapp.waitForSentTo(wg.id, 2)
      expect(r!.text).toBe(`react 👀 on ${bob.remoteId}`)
      expect(wr!.text).toBe(`react 👀 on ${bob.wa.remoteId}`)
      await s.hs.redact(ALICE, room, reaction)
      const [, off] = await s.signal.waitForSentTo(sg.id, 2)
      expect(off!.text).toBe(`unreact 👀 on ${bob.remoteId}`)
      expect(as(off, 'reaction').of.remoteId).toBe(as(r, 'reaction').of.remoteId)
    })

    it('the relay\'s one reaction on a group shows the latest remaining reactor\'s emoji, and goes when none remains', async () => {
      const { room, sg, wg } = await bridgedRoom(s)
      const bob = await fromBob(s, room, sg, wg, 'results are in')
      const mine = await s.hs.sendEvent(ALICE, room, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: bob.event, key: '👀' } })
      await s.signal.waitForSentTo(sg.id, 1)
      await s.whatsapp.waitForSentTo(wg.id, 2)
      await s.whatsapp.inbound(react(DAVE, wg.id, 'wa-em-on', bob.wa.remoteId, '😂'))
      await s.signal.waitForSentTo(sg.id, 2)
      // Dave takes his back: Alice's is the one left, and the relay shows it again.
      await s.whatsapp.inbound(react(DAVE, wg.id, 'wa-em-off', bob.wa.remoteId, ''))
      await s.signal.waitForSentTo(sg.id, 3)
      await s.hs.redact(ALICE, room, mine)
      await s.signal.waitForSentTo(sg.id, 4)
      await s.whatsapp.waitForSentTo(wg.id, 3)
      await settled(s)
      expect(s.signal.sentTo(sg.id).map(x => x.text)).toEqual([
        `react 👀 on ${bob.remoteId}`, `react 😂 on ${bob.remoteId}`, `react 👀 on ${bob.remoteId}`, `unreact 👀 on ${bob.remoteId}`,
      ])
      // Dave's reaction is his own on WhatsApp: the relay's there only ever showed Alice's.
      expect(s.whatsapp.sentTo(wg.id).slice(1).map(x => x.text)).toEqual([`react 👀 on ${bob.wa.remoteId}`, `unreact 👀 on ${bob.wa.remoteId}`])
    })

    it('a Matrix user\'s two reactions on one message: redacting the latest brings the earlier back on the relay', async () => {
      const { room, sg, wg } = await bridgedRoom(s)
      const bob = await fromBob(s, room, sg, wg, 'party?')
      const first = await s.hs.sendEvent(ALICE, room, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: bob.event, key: '🎉' } })
      await s.signal.waitForSentTo(sg.id, 1)
      const second = await s.hs.sendEvent(ALICE, room, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: bob.event, key: '🥳' } })
      await s.signal.waitForSentTo(sg.id, 2)
      await s.hs.redact(ALICE, room, second)
      await s.signal.waitForSentTo(sg.id, 3)
      await s.hs.redact(ALICE, room, first)
      await s.signal.waitForSentTo(sg.id, 4)
      await settled(s)
      expect(s.signal.sentTo(sg.id).map(x => x.text)).toEqual([
        `react 🎉 on ${bob.remoteId}`, `react 🥳 on ${bob.remoteId}`, `react 🎉 on ${bob.remoteId}`, `unreact 🎉 on ${bob.remoteId}`,
      ])
    })
  })

  describe('policy "drop"', () => {
    let s: Scenario
    beforeAll(async () => {
      s = await scenario(kind, { configure: raw => { raw.bridge.relay.reactions = 'drop' } })
    })
    afterAll(async () => s?.stop())

    it('reactions never reach Signal or WhatsApp, but a group member\'s reaction still shows in Matrix', async () => {
      const { room, sg, wg } = await bridgedRoom(s)
      const alice = await fromAlice(s, room, sg, wg, 'react to this')
      await s.hs.sendEvent(ALICE, room, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: alice.event, key: '✅' } })
      await s.signal.inbound({ ...base(BOB, sg.id, 'sig-drop-r'), kind: 'reaction', target: alice.sig.remoteId, emoji: '👍', removed: false } satisfies InboundEvent)
      await s.hs.waitForEvent(room, e => e.type === 'm.reaction' && e.sender === '@signal_aci-bob:example.org')
      await settled(s)
      expect(s.signal.sentTo(sg.id)).toHaveLength(1)
      expect(s.whatsapp.sentTo(wg.id)).toHaveLength(1)
    })

    it('a WhatsApp reaction removed still redacts the ghost\'s reaction in Matrix, and nothing reaches Signal', async () => {
      const { room, sg, wg } = await bridgedRoom(s)
      const alice = await fromAlice(s, room, sg, wg, 'tea?')
      await s.whatsapp.inbound(react(DAVE, wg.id, 'wa-drop-on', alice.wa.remoteId, '🍵'))
      const r = await s.hs.waitForEvent(room, isReaction('🍵'))
      await s.whatsapp.inbound(react(DAVE, wg.id, 'wa-drop-off', alice.wa.remoteId, ''))
      await s.hs.waitForEvent(room, redactionOf(r.event_id))
      await settled(s)
      expect(s.signal.sentTo(sg.id)).toHaveLength(1)
    })
  })
})

describe.each(DB_KINDS)('answers to a copy the bridge has not recorded yet, on %s', kind => {
  let s: Scenario
  /** The ghost event whose send is being answered slowly, and the hand that lets the answer go. */
  let held: { ev: FakeEvent; release: () => void } | undefined
  let heldSeen: (() => void) | undefined
  beforeAll(async () => {
    // Synapse shows a ghost's event to the room (and to the bridge) before the bridge has the answer to its send,
    // and a run of sends is recorded only at its end: a person can answer a copy the bridge cannot look up yet.
    s = await scenario(kind, { homeserver: { echoBeforeAnswer: true } })
    s.hs.holdSendAnswer = ev => {
      if (bodyOf(ev) !== 'answer me quickly') return Promise.resolve()
      return new Promise(release => {
        held = { ev, release: () => release() }
        heldSeen?.()
      })
    }
  })
  afterAll(async () => {
    held?.release()
    await s?.stop()
  })

  it('a Matrix redaction of a ghost\'s message made before its copy was recorded still deletes the relay\'s copy on WhatsApp', async () => {
    const { room, sg, wg } = await bridgedRoom(s)
    const seen = new Promise<void>(resolve => { heldSeen = resolve })
    await s.signal.say(sg.id, { id: BOB.id, name: BOB.displayName }, 'answer me quickly')
    const [wa] = await s.whatsapp.waitForSentTo(wg.id, 1)
    await seen
    const waits = vi.spyOn(s.bridge.outbox, 'recorded')
    const redaction = await s.hs.redact(ALICE, room, held!.ev.event_id)
    // The answer to the ghost's send is let go only once the bridge has worked on the redaction, or waits for
    // that answer before it does: either way the redaction reaches the bridge before the copy is recorded.
    const processed = async () => (await s.db.query('SELECT 1 FROM inbox WHERE event_id = $1 AND processed_at IS NOT NULL', [redaction])).rows.length > 0
    await until(async () => waits.mock.calls.some(([network, chat]) => network === 'matrix' && chat === room) || await processed(),
      'the bridge to work on the redaction')
    held!.release()
    const [, wdel] = await s.whatsapp.waitForSentTo(wg.id, 2)
    expect(wdel!.text).toBe(`delete ${wa!.remoteId}`)
  })
})
