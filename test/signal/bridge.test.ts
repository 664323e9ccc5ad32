// Signal and Matrix through the whole bridge: the real SignalNetwork against the fake signal-cli daemon,
// the real bridge against the fake homeserver. Each kind of content both ways, and replies, edits,
// deletions and reactions landing on the right copies.
import { existsSync } from 'node:fs'
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { FakeEvent } from '../fakes/homeserver.ts'
import { edit, groupText, groupUpdate, reaction, remoteDelete, type FakeSender } from '../fakes/signal-envelopes.ts'
import { ALICE } from '../support/bridge.ts'
import { tempDir } from '../support/config.ts'
import { DB_KINDS } from '../support/db.ts'
import { SIG_BOB, SIG_CAROL, SIG_RELAY, bridgedRoom, realScenario, until, type RealScenario } from '../support/networks.ts'
import { content, settled, upload } from '../support/relay.ts'

const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489', 'hex')
const OGG = Buffer.from('4f67675300020000000000000000', 'hex')
const ghost = (p: FakeSender) => `@signal_${p.aci}:example.org`

describe.each(DB_KINDS)('Signal through the bridge on %s', kind => {
  let s: RealScenario
  const cleanups: Array<() => Promise<void>> = []
  afterEach(async () => {
    await s?.stop()
    for (const c of cleanups.splice(0)) await c()
  })

  /** A room bridged to a Signal group by `login signal` and `link signal <id>`. */
  async function setup() {
    s = await realScenario(kind)
    const r = await bridgedRoom(s)
    return { room: r.room, group: r.signalGroup! }
  }
  const said = (room: string, match: (e: FakeEvent) => boolean, opts: { what?: string } = {}) => s.hs.waitForEvent(room, match, opts)
  /** Pushes an envelope to the relay account's stream and waits for what it makes in the room. */
  const fromSignal = (env: Record<string, unknown>) => s.daemon.push(SIG_RELAY.number, env)
  /** The relay's send calls, and the Signal id ("aci:timestamp") of the copy a call made. */
  const sends = (from = 0) => s.daemon.callsOf('send').slice(from)
  const copyTimestamp = (call: { result?: unknown }) => (call.result as { timestamp: number }).timestamp

  it('a Signal group message appears in Matrix as the sender’s ghost, its styles as HTML and its mention as a pill', async () => {
    const { room, group } = await setup()
    fromSignal(groupText(SIG_CAROL, group, 'I am here'))
    await said(room, e => content(e).body === 'I am here')
    fromSignal(groupText(SIG_BOB, group, 'hi \uFFFC, bold move', { mentions: [{ aci: SIG_CAROL.aci, start: 3 }], styles: [{ style: 'BOLD', start: 6, length: 4 }] }))
    const ev = await said(room, e => e.sender === ghost(SIG_BOB) && e.type === 'm.room.message')
    expect(s.hs.profile(ghost(SIG_BOB))?.displayname).toBe('Bob (Signal)')
    expect(content(ev).body).toBe('hi @Carol, bold move')
    expect(content(ev).formatted_body).toContain('<strong>bold</strong>')
    expect(content(ev).formatted_body).toContain(`<a href="https://matrix.to/#/${encodeURIComponent(ghost(SIG_CAROL))}">@Carol</a>`)
    expect(content(ev)['m.mentions']).toMatchObject({ user_ids: [ghost(SIG_CAROL)] })
    // No number anywhere in Matrix: Carol has none on the wire, Bob's is never shown.
    expect(JSON.stringify(s.hs.timeline(room))).not.toContain(SIG_BOB.number!)
  })

  it('a Signal user’s quote of a Matrix message arrives in Matrix as a reply to the original event', async () => {
    const { room, group } = await setup()
    const original = await s.hs.sendMessage(ALICE, room, 'dinner at 8?')
    const [copy] = await s.daemon.until(() => sends().length === 1).then(() => sends())
    expect(copy!.params).toMatchObject({ groupId: group, message: 'Alice (Matrix): dinner at 8?' })
    await settled(s) // the copy is recorded once the daemon has answered
    const relay = { number: SIG_RELAY.number, aci: SIG_RELAY.aci, name: SIG_RELAY.name }
    fromSignal(groupText(SIG_BOB, group, 'yes!', { quote: { author: relay, id: copyTimestamp(copy!), text: 'Alice (Matrix): dinner at 8?' } }))
    const reply = await said(room, e => content(e).body?.endsWith('yes!'))
    expect(content(reply)['m.relates_to']).toEqual({ 'm.in_reply_to': { event_id: original } })
  })

  it('a Signal edit chain replaces the ghost’s message, a remote delete redacts it, a reaction annotates it', async () => {
    const { room, group } = await setup()
    const first = groupText(SIG_BOB, group, 'helo')
    fromSignal(first)
    const ev = await said(room, e => content(e).body === 'helo')
    const e1 = edit(SIG_BOB, group, first.timestamp as number, 'hello')
    fromSignal(e1)
    // The second edit aims at the first edit's timestamp (the latest revision), as Signal clients do.
    fromSignal(edit(SIG_BOB, group, e1.timestamp as number, 'hello all'))
    const edits = await s.hs.waitFor(() => {
      const found = s.hs.timeline(room).filter(e => content(e)['m.relates_to']?.rel_type === 'm.replace')
      return found.length === 2 ? found : undefined
    })
    expect(edits.map(e => [content(e)['m.relates_to'].event_id, content(e)['m.new_content'].body])).toEqual([[ev.event_id, 'hello'], [ev.event_id, 'hello all']])
    fromSignal(reaction(SIG_CAROL, group, { emoji: '👍', target: SIG_BOB, targetSentTimestamp: first.timestamp as number }))
    const r = await said(room, e => e.type === 'm.reaction')
    expect(r.sender).toBe(ghost(SIG_CAROL))
    expect(content(r)['m.relates_to']).toEqual({ rel_type: 'm.annotation', event_id: ev.event_id, key: '👍' })
    fromSignal(reaction(SIG_CAROL, group, { emoji: '👍', target: SIG_BOB, targetSentTimestamp: first.timestamp as number, remove: true }))
    await said(room, e => e.type === 'm.room.redaction' && (e.redacts ?? content(e).redacts) === r.event_id)
    fromSignal(remoteDelete(SIG_BOB, group, first.timestamp as number))
    await said(room, e => e.type === 'm.room.redaction' && (e.redacts ?? content(e).redacts) === ev.event_id)
  })

  it('a Signal photo with a caption, a voice note and a sticker arrive in Matrix as media with their bytes', async () => {
    const { room, group } = await setup()
    s.daemon.attachments.set('photo1', PNG)
    s.daemon.attachments.set('voice1', OGG)
    s.daemon.stickers.set('pack1:3', PNG)
    fromSignal(groupText(SIG_BOB, group, 'our cat', { attachments: [{ contentType: 'image/png', id: 'photo1', filename: 'cat.png', size: PNG.length, width: 1, height: 1 }] }))
    fromSignal(groupText(SIG_BOB, group, '', { attachments: [{ contentType: 'audio/ogg', id: 'voice1', size: OGG.length }] }))
    fromSignal(groupText(SIG_BOB, group, '', { sticker: { packId: 'pack1', stickerId: 3 } }))
    const image = await said(room, e => content(e).msgtype === 'm.image')
    expect(s.hs.media(content(image).url)?.data.equals(PNG)).toBe(true)
    await said(room, e => content(e).body === 'our cat' || content(e).body?.includes('our cat'))
    const voice = await said(room, e => content(e).msgtype === 'm.audio')
    expect(s.hs.media(content(voice).url)?.data.equals(OGG)).toBe(true)
    const sticker = await said(room, e => e.type === 'm.sticker' || (e.type === 'm.room.message' && e.event_id !== image.event_id && content(e).msgtype === 'm.image'))
    expect(s.hs.media(content(sticker).url)?.data.equals(PNG)).toBe(true)
  })

  it('a Matrix message reaches the Signal group through the relay, sender in bold and formatting as text styles', async () => {
    const { room, group } = await setup()
    await s.hs.sendMessage(ALICE, room, { msgtype: 'm.text', body: 'see you soon', format: 'org.matrix.custom.html', formatted_body: 'see you <em>soon</em>' })
    const call = await s.daemon.waitForCall('send')
    const prefix = 'Alice (Matrix): '
    expect(call.params).toMatchObject({ account: SIG_RELAY.number, groupId: group, message: `${prefix}see you soon` })
    expect(call.params.textStyle).toEqual(expect.arrayContaining([`0:${prefix.length - 2}:BOLD`, `${prefix.length + 8}:4:ITALIC`]))
  })

  it('a Matrix reply to a Signal message quotes the Signal original; the edit, reaction and redaction go to the relay’s copy', async () => {
    const { room, group } = await setup()
    const bobs = groupText(SIG_BOB, group, 'who is coming?')
    fromSignal(bobs)
    const bobEvent = await said(room, e => content(e).body === 'who is coming?')
    await settled(s) // the ghost's event is recorded once the homeserver has answered: only then can a reply find it
    const mine = await s.hs.sendMessage(ALICE, room, { msgtype: 'm.text', body: `> <${ghost(SIG_BOB)}> who is coming?\n\nme`, 'm.relates_to': { 'm.in_reply_to': { event_id: bobEvent.event_id } } })
    const reply = await s.daemon.waitForCall('send')
    expect(reply.params).toMatchObject({ quoteTimestamp: bobs.timestamp, quoteAuthor: SIG_BOB.aci, message: 'Alice (Matrix): me' })
    const copy = copyTimestamp(reply)
    await s.hs.sendMessage(ALICE, room, { msgtype: 'm.text', body: '* me too', 'm.new_content': { msgtype: 'm.text', body: 'me too' }, 'm.relates_to': { rel_type: 'm.replace', event_id: mine } })
    const edited = await s.daemon.waitForCall('send', c => c.params.editTimestamp !== undefined)
    expect(edited.params).toMatchObject({ editTimestamp: copy, message: 'Alice (Matrix): me too' })
    await s.hs.sendEvent(ALICE, room, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: bobEvent.event_id, key: '❤️' } })
    // The relay cannot react as Alice, so the policy (`reactions: message`) says it in a short message quoting Bob.
    const reacted = await s.daemon.waitForCall('send', c => String(c.params.message).includes('❤️'))
    expect(reacted.params).toMatchObject({ quoteTimestamp: bobs.timestamp, quoteAuthor: SIG_BOB.aci })
    await s.hs.redact(ALICE, room, mine)
    const deleted = await s.daemon.waitForCall('remoteDelete')
    // The latest revision is what Signal shows; deleting the original's timestamp removes the whole chain.
    expect(deleted.params).toMatchObject({ groupId: group, targetTimestamp: copy })
  })

  it('with the daemon’s attachments directory shared, each file is removed once its message is recorded, never before', async () => {
    const shared = await tempDir('rb-signal-attachments-') // the volume both the daemon and the bridge mount
    cleanups.push(() => rm(shared, { recursive: true, force: true }))
    s = await realScenario(kind, { daemon: { attachmentsDir: shared }, configure: raw => void (raw.signal.attachments_dir = shared) })
    const { room, signalGroup: group } = await bridgedRoom(s)
    await writeFile(join(shared, 'photo1.png'), PNG)
    await writeFile(join(shared, 'unrelated.jpg'), PNG) // named by no message the bridge saw: never touched
    // The database refuses the message for a while: the file outlives every attempt that could not record it.
    await s.db.query('ALTER TABLE messages RENAME TO messages_away')
    fromSignal(groupText(SIG_BOB, group!, 'our cat', { attachments: [{ contentType: 'image/png', id: 'photo1.png', filename: 'cat.png', size: PNG.length }] }))
    await s.daemon.until(() => s.daemon.calls.filter(c => c.method === 'getAttachment').length >= 2)
    expect(existsSync(join(shared, 'photo1.png'))).toBe(true)
    await s.db.query('ALTER TABLE messages_away RENAME TO messages')
    const image = await said(room, e => content(e).msgtype === 'm.image', { what: 'the photo in Matrix' })
    expect(s.hs.media(content(image).url)?.data.equals(PNG)).toBe(true)
    await until(() => !existsSync(join(shared, 'photo1.png')), 'the relayed photo’s file to be removed')
    expect(existsSync(join(shared, 'unrelated.jpg'))).toBe(true)
  })

  it('a Matrix image goes to Signal as a data URI attachment with its name', async () => {
    const { room } = await setup()
    const mxc = await upload(s, PNG, 'image/png', 'cat.png')
    await s.hs.sendMessage(ALICE, room, { msgtype: 'm.image', body: 'cat.png', filename: 'cat.png', url: mxc, info: { mimetype: 'image/png', size: PNG.length } })
    const call = await s.daemon.waitForCall('send')
    expect(call.params.attachments).toEqual([`data:image/png;filename=cat.png;base64,${PNG.toString('base64')}`])
  })

  it('a Signal group rename renames the room where the bot may; where it may not, the group’s messages still flow', async () => {
    const { room, group } = await setup()
    // The room's creator gave the bot no power: the rename cannot land, and must not stall the account's stream.
    s.daemon.groups.get(group)!.name = 'Family 2026'
    fromSignal(groupUpdate(SIG_BOB, group, 4))
    fromSignal(groupText(SIG_BOB, group, 'after the rename'))
    await said(room, e => content(e).body === 'after the rename')
    await s.hs.setPowerLevel(room, s.hs.botUserId, 50, ALICE)
    s.daemon.groups.get(group)!.name = 'Family 2027'
    fromSignal(groupUpdate(SIG_BOB, group, 5))
    await s.hs.waitFor(() => s.hs.stateContent(room, 'm.room.name')?.name === 'Family 2027')
  })

  it('a Signal reaction removed (isRemove) redacts the ghost’s reaction in Matrix and revokes the relay’s “reacted” line on WhatsApp', async () => {
    s = await realScenario(kind)
    const { room, signalGroup: group, whatsappGroup: wa } = await bridgedRoom(s, { whatsapp: true })
    const bobs = groupText(SIG_BOB, group!, 'the train is late')
    fromSignal(bobs)
    const ev = await said(room, e => content(e).body === 'the train is late')
    const copy = await until(() => s.wa.sent.find(m => m.jid === wa && String(m.content.text).endsWith('the train is late')))
    await settled(s)
    fromSignal(reaction(SIG_CAROL, group!, { emoji: '😮', target: SIG_BOB, targetSentTimestamp: bobs.timestamp as number }))
    const r = await said(room, e => e.type === 'm.reaction')
    expect(content(r)['m.relates_to']).toEqual({ rel_type: 'm.annotation', event_id: ev.event_id, key: '😮' })
    const note = await until(() => s.wa.sent.find(m => m.jid === wa && String(m.content.text).includes('reacted')))
    expect(note.content.text).toBe('*Carol (Signal)* reacted 😮')
    expect(note.options.quotedId).toBe(copy.id)
    await settled(s)
    fromSignal(reaction(SIG_CAROL, group!, { emoji: '😮', target: SIG_BOB, targetSentTimestamp: bobs.timestamp as number, remove: true }))
    await said(room, e => e.type === 'm.room.redaction' && (e.redacts ?? content(e).redacts) === r.event_id)
    const revoke = await until(() => s.wa.sent.find(m => m.jid === wa && m.content.delete))
    expect(revoke.content.delete).toMatchObject({ id: note.id, fromMe: true })
  })

  it('with reactions as emoji, a Matrix reaction and its redaction reach Signal as the relay’s sendReaction and its removal naming the same emoji', async () => {
    s = await realScenario(kind, { configure: raw => { raw.bridge.relay.reactions = 'emoji' } })
    const { room, signalGroup: group } = await bridgedRoom(s)
    const bobs = groupText(SIG_BOB, group!, 'new bike!')
    fromSignal(bobs)
    const ev = await said(room, e => content(e).body === 'new bike!')
    const mine = await s.hs.sendEvent(ALICE, room, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: ev.event_id, key: '🙌' } })
    const on = await s.daemon.waitForCall('sendReaction')
    const target = { groupId: group, targetAuthor: SIG_BOB.aci, targetTimestamp: bobs.timestamp }
    expect(on.params).toMatchObject({ ...target, emoji: '🙌', remove: false })
    await s.hs.redact(ALICE, room, mine)
    const off = await s.daemon.waitForCall('sendReaction', c => c.params.remove === true)
    expect(off.params).toMatchObject({ ...target, emoji: '🙌' })
  })

  it('a group rename the bot lacks the power for is explained in the room, and lands once the bot is given power', async () => {
    const { room, group } = await setup()
    const nameBefore = s.hs.stateContent(room, 'm.room.name')?.name
    s.daemon.groups.get(group)!.name = 'Family 2026'
    fromSignal(groupUpdate(SIG_BOB, group, 4))
    // The fake homeserver refuses the bot's m.room.name as Synapse does (power level 0 < 50 for m.room.name).
    const notice = await said(room, e => e.sender === s.hs.botUserId && String(content(e).body).includes('Family 2026'), { what: 'a notice about the rename' })
    expect(content(notice).body).toMatch(/m\.room\.name/)
    expect(content(notice).body).toMatch(/power level 50\b.*\b0\b/s)
    expect(s.hs.stateContent(room, 'm.room.name')?.name).toBe(nameBefore)
    await s.hs.setPowerLevel(room, s.hs.botUserId, 50, ALICE)
    await s.hs.waitFor(() => s.hs.stateContent(room, 'm.room.name')?.name === 'Family 2026', { what: 'the room renamed once the bot has power' })
  })

  it('a group rename waiting for power gives way to a name someone chose in Matrix meanwhile', async () => {
    const { room, group } = await setup()
    s.daemon.groups.get(group)!.name = 'Family 2026'
    fromSignal(groupUpdate(SIG_BOB, group, 4))
    await said(room, e => e.sender === s.hs.botUserId && String(content(e).body).includes('Family 2026'), { what: 'a notice about the rename' })
    await s.hs.sendEvent(ALICE, room, 'm.room.name', { name: 'Our room' }, { stateKey: '' })
    await s.hs.setPowerLevel(room, s.hs.botUserId, 50, ALICE)
    // A message after the power change: once it is relayed, the bridge has worked through the change before it.
    await s.hs.sendMessage(ALICE, room, 'after the power change')
    await s.daemon.waitForCall('send', c => c.params.message === 'Alice (Matrix): after the power change')
    expect(s.hs.stateContent(room, 'm.room.name')?.name).toBe('Our room')
  })
})
