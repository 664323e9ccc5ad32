// Texts longer than one Matrix event holds, through the whole bridge (the real Signal and WhatsApp adapters
// against their fakes, the real bridge against a fake homeserver that enforces Synapse's 65,536-byte PDU
// limit and 256-character display names). A long text is split into at most 8 events in order, then cut with
// a note; all parts are one message: replies and reactions to any part, edits and deletions reach all of them.
import { afterEach, describe, expect, it } from 'vitest'
import type { FakeEvent } from '../fakes/homeserver.ts'
import { edit, groupText, remoteDelete, type FakeSender } from '../fakes/signal-envelopes.ts'
import { htmlToRichText } from '../../src/matrix/html.ts'
import { ALICE } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { SIG_BOB, SIG_RELAY, WA_DAVE, bridgedRoom, realScenario, until, type RealScenario } from '../support/networks.ts'
import { content, settled } from '../support/relay.ts'

const ghost = (p: FakeSender) => `@signal_${p.aci}:example.org`
/** CJK (3 bytes a character), a ZWJ family (25 bytes, 11 UTF-16 units, one grapheme) and a flag: no spaces to cut at. */
const UNIT = '漢字かな交じり文👨‍👩‍👧‍👦🇫🇷。'
const graphemeEnds = (text: string): Set<number> => {
  const ends = new Set<number>()
  for (const g of new Intl.Segmenter('en', { granularity: 'grapheme' }).segment(text)) ends.add(g.index + g.segment.length)
  return ends
}
const isMessage = (e: FakeEvent) => e.type === 'm.room.message' && !content(e)['m.relates_to']
const redactionOf = (e: FakeEvent) => (e.redacts ?? content(e).redacts) as string | undefined

describe.each(DB_KINDS)('texts longer than one Matrix event, on %s', kind => {
  let s: RealScenario
  afterEach(async () => s?.stop())

  const partsIn = (room: string, sender: string) => s.hs.timeline(room).filter(e => e.sender === sender && isMessage(e))

  it('a long Signal text in CJK and emoji, bold throughout, arrives in Matrix as a few events in order, whole, each valid HTML', async () => {
    s = await realScenario(kind)
    const { room, signalGroup } = await bridgedRoom(s)
    const text = UNIT.repeat(2500) // 60,000 UTF-16 units, 150,000 UTF-8 bytes
    s.daemon.push(SIG_RELAY.number, groupText(SIG_BOB, signalGroup!, text, { styles: [{ style: 'BOLD', start: 0, length: text.length }] }))
    s.daemon.push(SIG_RELAY.number, groupText(SIG_BOB, signalGroup!, 'after the long one'))
    await s.hs.waitForEvent(room, e => content(e).body === 'after the long one', { what: 'the message sent after the long one' })
    const parts = partsIn(room, ghost(SIG_BOB)).slice(0, -1)
    expect(parts.length).toBeGreaterThan(1)
    expect(parts.length).toBeLessThanOrEqual(8)
    const bodies = parts.map(e => String(content(e).body))
    expect(bodies.join('')).toBe(text)
    // No grapheme is cut in two: every part ends where a grapheme of the original ends.
    const ends = graphemeEnds(text)
    let at = 0
    for (const b of bodies) expect(ends.has(at += b.length)).toBe(true)
    // The formatting is split on the text, not the HTML: each part is bold HTML of its own text.
    for (const e of parts) {
      expect(content(e).formatted_body).toMatch(/^<strong>[^<]*<\/strong>$/)
      expect(htmlToRichText(content(e).formatted_body).text).toBe(content(e).body)
    }
  })

  it('a WhatsApp text of 65,536 characters of emoji arrives in Matrix in parts, nothing lost', async () => {
    s = await realScenario(kind)
    const { room, whatsappGroup } = await bridgedRoom(s, { signal: false, whatsapp: true })
    const text = '🙂'.repeat(32_768) // 65,536 UTF-16 units, 131,072 bytes
    s.wa.deliver({ chat: whatsappGroup!, from: WA_DAVE, pushName: 'Dave', message: { conversation: text } })
    s.wa.deliver({ chat: whatsappGroup!, from: WA_DAVE, pushName: 'Dave', message: { conversation: 'and a short one' } })
    const last = await s.hs.waitForEvent(room, e => content(e).body === 'and a short one', { what: 'the short message after the long one' })
    const parts = partsIn(room, last.sender).slice(0, -1)
    expect(parts.length).toBeGreaterThan(1)
    expect(parts.map(e => content(e).body).join('')).toBe(text)
  })

  it('a text too long for 8 events is cut in the 8th with a note saying how many characters were cut', async () => {
    s = await realScenario(kind)
    const { room, signalGroup } = await bridgedRoom(s)
    const text = Array.from({ length: 12_000 }, (_, i) => `line ${String(i).padStart(5, '0')} 漢字かな交じり文 👨‍👩‍👧‍👦`).join('\n')
    s.daemon.push(SIG_RELAY.number, groupText(SIG_BOB, signalGroup!, text))
    s.daemon.push(SIG_RELAY.number, groupText(SIG_BOB, signalGroup!, 'marker'))
    await s.hs.waitForEvent(room, e => content(e).body === 'marker', { what: 'the marker after the long text' })
    const parts = partsIn(room, ghost(SIG_BOB)).slice(0, -1).map(e => String(content(e).body))
    expect(parts).toHaveLength(8)
    const note = /… \((\d+) characters cut\)$/.exec(parts[7]!)
    expect(note).not.toBeNull()
    const kept = parts.map((p, i) => (i === 7 ? p.slice(0, p.length - note![0].length) : p))
    // What was kept is the start of the text (line breaks at the cuts aside), and the note counts the rest.
    const keptText = kept.join('\n').replace(/\n+/g, '\n').trimEnd()
    expect(text.startsWith(keptText)).toBe(true)
    expect(Number(note![1])).toBe([...text.slice(keptText.length)].length)
  })

  it('a Matrix reply to the second part and a reaction to the last one resolve to the Signal original', async () => {
    s = await realScenario(kind)
    const { room, signalGroup } = await bridgedRoom(s)
    const long = groupText(SIG_BOB, signalGroup!, UNIT.repeat(2500))
    s.daemon.push(SIG_RELAY.number, long)
    const parts = await s.hs.waitFor(() => { const p = partsIn(room, ghost(SIG_BOB)); return p.length >= 3 && p }, { what: 'three parts' })
    await settled(s)
    await s.hs.sendMessage(ALICE, room, { msgtype: 'm.text', body: 'nice essay', 'm.relates_to': { 'm.in_reply_to': { event_id: parts[1]!.event_id } } })
    const reply = await s.daemon.waitForCall('send', c => String(c.params.message).endsWith('nice essay'))
    expect(reply.params).toMatchObject({ quoteTimestamp: long.timestamp, quoteAuthor: SIG_BOB.aci })
    await s.hs.sendEvent(ALICE, room, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: parts.at(-1)!.event_id, key: '👍' } })
    // `reactions: message`: the relay says it in a short message quoting Bob's.
    const note = await s.daemon.waitForCall('send', c => String(c.params.message).includes('👍'))
    expect(note.params).toMatchObject({ quoteTimestamp: long.timestamp, quoteAuthor: SIG_BOB.aci })
  })

  it('a Signal edit replaces every part (a part no longer needed is redacted); a remote delete redacts every part', async () => {
    s = await realScenario(kind)
    const { room, signalGroup } = await bridgedRoom(s)
    const long = groupText(SIG_BOB, signalGroup!, UNIT.repeat(2500))
    s.daemon.push(SIG_RELAY.number, long)
    const parts = await s.hs.waitFor(() => { const p = partsIn(room, ghost(SIG_BOB)); return p.length === 3 && p }, { what: 'three parts' })
    // Shorter, but still two parts: the first two are replaced, the third goes.
    const shorter = UNIT.repeat(1500)
    s.daemon.push(SIG_RELAY.number, edit(SIG_BOB, signalGroup!, long.timestamp as number, shorter))
    const edits = await s.hs.waitFor(() => {
      const found = s.hs.timeline(room).filter(e => content(e)['m.relates_to']?.rel_type === 'm.replace')
      const redacted = s.hs.timeline(room).some(e => e.type === 'm.room.redaction' && redactionOf(e) === parts[2]!.event_id)
      return found.length === 2 && redacted && found
    }, { what: 'two part edits and a redaction of the third part' })
    expect(edits.map(e => content(e)['m.relates_to'].event_id)).toEqual([parts[0]!.event_id, parts[1]!.event_id])
    expect(edits.map(e => content(e)['m.new_content'].body).join('')).toBe(shorter)
    s.daemon.push(SIG_RELAY.number, remoteDelete(SIG_BOB, signalGroup!, long.timestamp as number))
    await s.hs.waitFor(() => {
      const gone = new Set(s.hs.timeline(room).filter(e => e.type === 'm.room.redaction').map(redactionOf))
      return parts.every(p => gone.has(p.event_id))
    }, { what: 'every part redacted' })
    // The third part was redacted once, by the edit; the delete did not redact it again.
    expect(s.hs.timeline(room).filter(e => e.type === 'm.room.redaction' && redactionOf(e) === parts[2]!.event_id)).toHaveLength(1)
  })

  it('a Signal name of 300 characters becomes a ghost display name cut to Synapse’s 256', async () => {
    s = await realScenario(kind)
    const { room, signalGroup } = await bridgedRoom(s)
    const longName: FakeSender = { ...SIG_BOB, name: '名'.repeat(300) }
    s.daemon.push(SIG_RELAY.number, groupText(longName, signalGroup!, 'hello from a long name'))
    await s.hs.waitForEvent(room, e => content(e).body === 'hello from a long name', { what: 'the message from the long name' })
    const name = s.hs.profile(ghost(SIG_BOB))?.displayname ?? ''
    expect([...name].length).toBeLessThanOrEqual(256)
    expect(name).toMatch(/^名+… \(Signal\)$/)
  })

  it('a WhatsApp message too long for the homeserver in one event reaches Matrix even when it quotes a Matrix message', async () => {
    s = await realScenario(kind)
    const { room, whatsappGroup } = await bridgedRoom(s, { signal: false, whatsapp: true })
    const original = await s.hs.sendMessage(ALICE, room, 'tell me everything')
    const copy = await until(() => s.wa.sent.find(m => m.jid === whatsappGroup))
    await settled(s)
    const text = '長い話'.repeat(20_000)
    s.wa.deliver({
      chat: whatsappGroup!, from: WA_DAVE, pushName: 'Dave',
      message: { extendedTextMessage: { text, contextInfo: { stanzaId: copy.id, participant: `${s.wa.account.lid}@lid`, quotedMessage: { conversation: '*Alice (Matrix)*: tell me everything' } } } },
    })
    const first = await s.hs.waitForEvent(room, e => isMessage(e) === false && e.type === 'm.room.message' && String(content(e).body).startsWith('長い話'), { what: 'the first part, a reply' })
    expect(content(first)['m.relates_to']).toEqual({ 'm.in_reply_to': { event_id: original } })
    await s.hs.waitFor(() => String(content(first).body) + partsIn(room, first.sender).map(e => content(e).body).join('') === text, { what: 'all parts' })
  })
})
