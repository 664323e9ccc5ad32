// An encrypted portal behaves as a plain one: Alice's device (a real Olm peer, test/support/olm-peer.ts) talks
// to the bridge through the fake homeserver, whose transactions carry the bot's room keys; every kind of
// content goes to Signal and WhatsApp and back, everything the bridge says in the room is encrypted, and a
// message whose key is late or never comes neither holds the room back nor vanishes. Nothing is mocked:
// what Alice reads was encrypted for her device, what the bridge relays was decrypted by its own.
import { deserialize } from 'node:v8'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sealer } from '../../src/matrix/crypto/seal.ts'
import type { InboundEvent } from '../../src/core/model.ts'
import type { Sent } from '../fakes/memory-network.ts'
import { ALICE, linkedLogin, scenario, type Scenario } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { decryptFile, encryptedPortal as linkedEncryptedPortal, encryptFile, reader } from '../support/encrypted-room.ts'
import { OlmPeer } from '../support/olm-peer.ts'
import { until } from '../support/relay.ts'

const BOB_PERSON = { network: 'signal' as const, id: 'aci-bob', displayName: 'Bob' }
const DAVE_PERSON = { network: 'whatsapp' as const, id: 'wa-dave', displayName: 'Dave' }
const BOB_GHOST = '@signal_aci-bob:example.org'
const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489', 'hex')

const STORE_KEY = 'a'.repeat(64)
const encryptionConfig = (o: { waitSeconds: number; byDefault?: boolean }) => (raw: Record<string, any>) => {
  raw.encryption = { allow: true, default: o.byDefault ?? false, key_wait_seconds: o.waitSeconds, store_key: STORE_KEY }
  raw.metrics = { enabled: true, hostname: '127.0.0.1', port: 0 }
}

async function metric(s: Scenario, name: string, labels: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${s.bridge.metricsPort}/metrics`)).text()
  const line = text.split('\n').find(l => l.startsWith(`${name}{${labels}}`))
  return line ? Number(line.split(' ').at(-1)) : 0
}

describe.each(DB_KINDS)('an encrypted portal on %s', kind => {
  let s: Scenario
  let alice: OlmPeer
  let read: ReturnType<typeof reader>
  let sigLogin: string
  let waLogin: string

  beforeAll(async () => {
    s = await scenario(kind, { configure: encryptionConfig({ waitSeconds: 300 }) })
    s.hs.createUser(ALICE, { displayname: 'Alice' })
    alice = await OlmPeer.login(s.hs, ALICE)
    read = reader(s.hs, alice)
    sigLogin = await linkedLogin(s, s.signal)
    waLogin = await linkedLogin(s, s.whatsapp)
  })
  afterAll(async () => {
    await alice?.close()
    await s?.stop()
  })

  const encryptedPortal = () => linkedEncryptedPortal(s, alice, read, { signal: sigLogin, whatsapp: waLogin })
  const lastTo = async (net: 'signal' | 'whatsapp', group: string, n: number): Promise<Sent> => (await s[net].waitForSentTo(group, n)).at(-1)!
  const base = (who: typeof BOB_PERSON | typeof DAVE_PERSON, group: string, remoteId: string) => ({ chat: { network: who.network, id: group }, sender: who, remoteId, timestamp: Date.now() })
  const text = (t: string) => ({ kind: 'text' as const, body: { text: t, styles: [], links: [], mentions: [] }, attachments: [] })

  it('commands are read and answered encrypted; nothing the bot says there is in the clear', async () => {
    const { room } = await encryptedPortal()
    await alice.send(room, '!relay status')
    const status = await read.notice(room, /^This room is bridged/)
    expect(status.content.body).toMatch(/• Encryption: on, healthy: device RELAYBRIDGE[0-9A-F]+, cross-signed by the bot/)
    const fromBot = s.hs.timeline(room).filter(e => e.sender === s.hs.botUserId && e.state_key === undefined)
    expect(fromBot.length).toBeGreaterThan(0)
    expect(fromBot.filter(e => e.type !== 'm.room.encrypted')).toEqual([])
  })

  it('formatted text, a reply, an edit, a reaction and a redaction typed in the encrypted room reach Signal and WhatsApp', async () => {
    const { room, sg, wg } = await encryptedPortal()
    const first = await alice.send(room, { msgtype: 'm.text', body: 'so *very* done', format: 'org.matrix.custom.html', formatted_body: 'so <em>very</em> done' })
    for (const [net, group] of [['signal', sg.id], ['whatsapp', wg.id]] as const) {
      const sent = await lastTo(net, group, 1)
      expect(sent.text).toBe('Alice (Matrix): so very done')
      expect(sent.delivery.kind === 'message' && sent.delivery.content.body.styles).toEqual(expect.arrayContaining([{ start: 'Alice (Matrix): '.length + 3, length: 4, style: 'italic' }]))
    }
    const sigFirst = s.signal.sentTo(sg.id)[0]!.remoteId
    await alice.send(room, { msgtype: 'm.text', body: '> <@alice:example.org> so *very* done\n\nindeed', 'm.relates_to': { 'm.in_reply_to': { event_id: first } } })
    expect((await lastTo('signal', sg.id, 2)).text).toBe(`Alice (Matrix): indeed (reply to ${sigFirst})`)
    await alice.send(room, { msgtype: 'm.text', body: '* so done', 'm.new_content': { msgtype: 'm.text', body: 'so done' }, 'm.relates_to': { rel_type: 'm.replace', event_id: first } })
    expect((await lastTo('signal', sg.id, 3)).text).toBe(`edit ${sigFirst}: Alice (Matrix): so done`)
    expect((await lastTo('whatsapp', wg.id, 3)).text).toMatch(/^edit whatsapp-out-\d+: Alice \(Matrix\): so done$/)
    await alice.send(room, { 'm.relates_to': { rel_type: 'm.annotation', event_id: first, key: '👍' } }, 'm.reaction')
    expect((await lastTo('signal', sg.id, 4)).text).toMatch(/👍/)
    expect((await lastTo('whatsapp', wg.id, 4)).text).toMatch(/👍/)
    // Redactions are never encrypted (the spec), and relayed as deletions.
    await s.hs.redact(ALICE, room, first)
    expect((await lastTo('signal', sg.id, 5)).text).toBe(`delete ${sigFirst}`)
    expect((await lastTo('whatsapp', wg.id, 5)).text).toMatch(/^delete whatsapp-out-\d+$/)
  })

  it("the groups' text, replies, edits, reactions and deletions arrive encrypted from the ghosts, readable on Alice's device", async () => {
    const { room, sg, wg } = await encryptedPortal()
    await s.signal.inbound({ ...base(BOB_PERSON, sg.id, 'sig-1'), kind: 'message', content: text('hello from Signal') })
    const hello = await read.find(room, e => e.content.body === 'hello from Signal', 'the Signal message')
    expect(hello.sender).toBe(BOB_GHOST)
    expect(s.hs.timeline(room).find(e => e.event_id === hello.event_id)!.type).toBe('m.room.encrypted')
    await s.whatsapp.inbound({ ...base(DAVE_PERSON, wg.id, 'wa-1'), kind: 'message', content: text('and from WhatsApp'), replyTo: 'wa-none' } as InboundEvent)
    await read.find(room, e => e.content.body === 'and from WhatsApp' && e.sender === '@whatsapp_wa-dave:example.org', 'the WhatsApp message')
    await s.signal.inbound({ ...base(BOB_PERSON, sg.id, 'sig-2'), kind: 'message', content: text('a reply'), replyTo: 'sig-1' } as InboundEvent)
    const reply = await read.find(room, e => e.content.body === 'a reply', 'the reply')
    expect(reply.content['m.relates_to']).toEqual({ 'm.in_reply_to': { event_id: hello.event_id } })
    await s.signal.inbound({ ...base(BOB_PERSON, sg.id, 'sig-3'), kind: 'edit', target: 'sig-1', content: text('hello, edited') })
    const edit = await read.find(room, e => e.content['m.new_content']?.body === 'hello, edited', 'the edit')
    expect(edit.content['m.relates_to']).toEqual({ rel_type: 'm.replace', event_id: hello.event_id })
    await s.signal.inbound({ ...base(BOB_PERSON, sg.id, 'sig-react'), kind: 'reaction', target: 'sig-1', emoji: '❤️', removed: false } as InboundEvent)
    const reaction = await read.find(room, e => e.type === 'm.reaction', 'the reaction')
    expect(reaction.content['m.relates_to']).toEqual({ rel_type: 'm.annotation', event_id: hello.event_id, key: '❤️' })
    expect(s.hs.timeline(room).find(e => e.event_id === reaction.event_id)!.type).toBe('m.room.encrypted')
    await s.signal.inbound({ ...base(BOB_PERSON, sg.id, 'sig-4'), kind: 'delete', target: 'sig-2' })
    await s.hs.waitForEvent(room, e => e.type === 'm.room.redaction' && (e.content.redacts ?? e.redacts) === reply.event_id, { what: 'the plain redaction of the reply' })
  })

  it('attachments: an encrypted image from Alice reaches both groups as its bytes; a group photo arrives as an encrypted file', async () => {
    const { room, sg, wg } = await encryptedPortal()
    const { ciphertext, file } = await encryptFile(PNG)
    const mxc = s.hs.uploadAs(ALICE, ciphertext, 'application/octet-stream')
    await alice.send(room, { msgtype: 'm.image', body: 'dot.png', file: file(mxc), info: { mimetype: 'image/png', size: PNG.length, w: 1, h: 1 } })
    for (const [net, group] of [['signal', sg.id], ['whatsapp', wg.id]] as const) {
      const sent = await lastTo(net, group, 1)
      if (sent.delivery.kind !== 'message') throw new Error(`expected a message on ${net}`)
      const [att] = sent.delivery.content.attachments
      expect(att).toMatchObject({ kind: 'image', mimetype: 'image/png', filename: 'dot.png', size: PNG.length })
    }
    // A tampered file is refused, never relayed: the room hears why.
    const bad = await encryptFile(PNG)
    const badMxc = s.hs.uploadAs(ALICE, Buffer.concat([bad.ciphertext, Buffer.from([0])]), 'application/octet-stream')
    await alice.send(room, { msgtype: 'm.file', body: 'x.bin', file: bad.file(badMxc) })
    await read.notice(room, /does not match its hash/)

    await s.signal.inbound({ ...base(BOB_PERSON, sg.id, 'sig-photo'), kind: 'message', content: { kind: 'text', body: text('').body, attachments: [await photo(s)] } })
    const ev = await read.find(room, e => e.content.msgtype === 'm.image' && e.sender === BOB_GHOST, 'the photo')
    expect(ev.content.url).toBeUndefined()
    const uploaded = s.hs.media(ev.content.file.url)!
    expect(uploaded.mimetype).toBe('application/octet-stream')
    expect(uploaded.data.includes(PNG)).toBe(false)
    expect(await decryptFile(uploaded.data, ev.content.file)).toEqual(PNG)
  })

  it('a room key that comes in a later transaction than its message: the room goes on, and the message is relayed when the key comes', async () => {
    const { room, sg } = await encryptedPortal()
    // Bob has not written here before: his first message starts a session whose key the bridge does not have.
    const bob = await OlmPeer.login(s.hs, (s.hs.createUser('@bob:example.org', { displayname: 'Bob M' }), '@bob:example.org'))
    const hold = s.hs.holdToDevice(m => m.sender === bob.userId && m.to_user_id === s.hs.botUserId)
    try {
      await s.hs.invite(ALICE, room, bob.userId)
      await s.hs.join(bob.userId, room)
      const late = await bob.send(room, 'the key comes later')
      await until(async () => (await s.db.query(`SELECT 1 FROM undecrypted_events WHERE event_id = $1 AND state = 'waiting'`, [late])).rowCount, 'the message to wait for its key')
      await alice.send(room, 'meanwhile from Alice')
      expect((await lastTo('signal', sg.id, 1)).text).toBe('Alice (Matrix): meanwhile from Alice')
      expect(hold.held.length).toBeGreaterThan(0)
      hold.release()
      expect((await lastTo('signal', sg.id, 2)).text).toBe('Bob M (Matrix): the key comes later')
      // Counted once the late event is marked done, which may come after its copy reached Signal.
      await until(async () => (await metric(s, 'relay_bridge_decryptions_total', 'result="decrypted_late"')) === 1, 'the late decryption to be counted once')
    } finally {
      hold.release()
      await bob.close()
    }
  })

  it('a member invited after the room key was shared and a member\'s new device get the key of the next message; a member who left and a logged-out device do not', async () => {
    const { room, sg } = await encryptedPortal()
    const raw = (id: string) => s.hs.timeline(room).find(e => e.event_id === id)!
    const sessionOf = (id: string) => String(raw(id).content.session_id)
    let n = 0
    const fromSignal = async (body: string) => {
      await s.signal.inbound({ ...base(BOB_PERSON, sg.id, `sig-members-${++n}`), kind: 'message', content: text(body) })
      return (await read.find(room, e => e.content.body === body, body)).event_id
    }
    // Alice's message reaches Signal after the bridge has handled everything the room did before it.
    const marker = async (body: string) => {
      await alice.send(room, body)
      await until(async () => s.signal.sentTo(sg.id).some(m => m.text === `Alice (Matrix): ${body}`), `${body} on Signal`)
    }
    const first = await fromSignal('before Carol')

    const carolId = s.hs.createUser('@carol:example.org', { displayname: 'Carol' })
    const carol = await OlmPeer.login(s.hs, carolId)
    try {
      await s.hs.invite(ALICE, room, carolId)
      await s.hs.join(carolId, room)
      await marker('Carol joined')
      const second = await fromSignal('welcome, Carol')
      expect(await carol.readText(raw(second))).toBe('welcome, Carol')
      // A join does not rotate the room key: Carol got it as it stood, so what came before stays closed to her.
      expect(sessionOf(second)).toBe(sessionOf(first))
      expect((await carol.read(raw(first))).kind).not.toBe('decrypted')

      const laptop = await alice.addDevice()
      await marker('Alice has a laptop now')
      const third = await fromSignal('hello, laptop')
      expect(await laptop.readText(raw(third))).toBe('hello, laptop')

      await carol.leave(room)
      await marker('Carol left')
      const fourth = await fromSignal('Carol has gone')
      expect(sessionOf(fourth)).not.toBe(sessionOf(third))
      expect(await carol.read(raw(fourth))).toMatchObject({ kind: 'missing-key' })
      expect(await laptop.readText(raw(fourth))).toBe('Carol has gone')

      const toLaptop = () => s.hs.e2ee.sentToDevice.filter(m => m.to_device_id === laptop.deviceId && m.sender === s.hs.botUserId).length
      const laptopKeys = toLaptop()
      await laptop.logout()
      await marker('the laptop is gone')
      const fifth = await fromSignal('only the phone now')
      expect(sessionOf(fifth)).not.toBe(sessionOf(fourth))
      expect(toLaptop()).toBe(laptopKeys)
    } finally {
      await carol.close()
    }
  })

  it("the crypto store is sealed once: each row opens with the configured key alone into the machine's own, readable record", async () => {
    await encryptedPortal() // the bot has met Alice's device and shared a room key with it
    const bot = s.hs.botUserId
    const seal = sealer(STORE_KEY)
    const { rows } = await s.db.query<{ key_hash: Uint8Array; value: Uint8Array }>(`SELECT key_hash, value FROM crypto_store WHERE store_name = $1 AND idb_store <> ''`, [bot])
    expect(rows.length).toBeGreaterThan(10)
    // A row's sealed payload (src/matrix/crypto/store.ts): the IndexedDB key, length-prefixed, then the v8-serialized value.
    const records = rows.map(r => {
      const plain = seal.open(r.value, Buffer.concat([Buffer.from(`${bot}\0`), r.key_hash]))
      return deserialize(plain.subarray(4 + plain.readUInt32BE(0))) as unknown
    })
    // The machine stores most values as base64 of their JSON: those are read too.
    const json = JSON.stringify(records, (_k, x: unknown) => (x instanceof Uint8Array ? Buffer.from(x).toString('latin1') : x))
    const text = [json, ...[...json.matchAll(/[A-Za-z0-9+/]{16,}={0,2}/g)].map(m => Buffer.from(m[0], 'base64').toString('utf8'))].join('\n')
    // What the machine knows of Alice is there in the clear once unsealed: not a second ciphertext under the machine's own key.
    for (const needle of [ALICE, alice.deviceId, alice.crypto.identityKeys.curve25519]) expect(text, needle).toContain(needle)
  })

  it('a room that becomes encrypted after it was linked keeps relaying both ways, without a notice', async () => {
    const room = await s.hs.createRoom(ALICE, { invite: [s.hs.botUserId], name: 'Later' })
    await s.hs.waitFor(() => s.hs.membership(room, s.hs.botUserId) === 'join', { what: 'the bot to join' })
    const sg = s.signal.addGroup('Later (Signal)')
    await s.hs.sendMessage(ALICE, room, `!relay link signal ${sg.id} ${sigLogin}`)
    await s.hs.waitFor(() => s.botNotices(room).some(n => n.startsWith('Linked this room')), { what: 'the link' })
    await s.hs.sendEvent(ALICE, room, 'm.room.encryption', { algorithm: 'm.megolm.v1.aes-sha2' }, { stateKey: '' })
    await alice.send(room, 'now encrypted')
    expect((await lastTo('signal', sg.id, 1)).text).toBe('Alice (Matrix): now encrypted')
    await s.signal.inbound({ ...base(BOB_PERSON, sg.id, 'sig-later'), kind: 'message', content: text('still here') })
    const ev = await read.find(room, e => e.content.body === 'still here', 'the Signal message')
    expect(s.hs.timeline(room).find(e => e.event_id === ev.event_id)!.type).toBe('m.room.encrypted')
    expect((await read.timeline(room)).filter(e => e.sender === s.hs.botUserId && /encrypted/.test(String(e.content.body)))).toEqual([])
  })
})

describe.each(DB_KINDS)('with a short wait for keys, and encryption by default, on %s', kind => {
  let s: Scenario
  let alice: OlmPeer
  let read: ReturnType<typeof reader>

  beforeAll(async () => {
    s = await scenario(kind, { configure: encryptionConfig({ waitSeconds: 2, byDefault: true }) })
    s.hs.createUser(ALICE, { displayname: 'Alice' })
    alice = await OlmPeer.login(s.hs, ALICE)
    read = reader(s.hs, alice)
  })
  afterAll(async () => {
    await alice?.close()
    await s?.stop()
  })

  it('a key that never comes: later messages go on, and past the wait the message is marked failed, said and counted', async () => {
    const sigLogin = await linkedLogin(s, s.signal)
    const room = await s.hs.createRoom(ALICE, { invite: [s.hs.botUserId], encrypted: true })
    await s.hs.waitFor(() => s.hs.membership(room, s.hs.botUserId) === 'join', { what: 'the bot to join' })
    const sg = s.signal.addGroup('Lost keys')
    await alice.send(room, `!relay link signal ${sg.id} ${sigLogin}`)
    await read.notice(room, /^Linked this room/)
    // Bob's client never shares his key with the bridge; he has not written here before, so nothing else unlocks it.
    const bob = await OlmPeer.login(s.hs, (s.hs.createUser('@bob:example.org', { displayname: 'Bob M' }), '@bob:example.org'))
    try {
      await s.hs.invite(ALICE, room, bob.userId)
      await s.hs.join(bob.userId, room)
      s.hs.holdToDevice(m => m.sender === bob.userId && m.to_user_id === s.hs.botUserId) // never released
      const lost = await bob.send(room, 'nobody will read this')
      await alice.send(room, 'but this goes on')
      expect((await s.signal.waitForSentTo(sg.id, 1)).map(x => x.text)).toEqual(['Alice (Matrix): but this goes on'])
      const notice = await read.notice(room, /the bridge hasn't received the decryption keys/)
      expect(notice.content.body).toBe(`⚠️ A message from ${bob.userId} was not relayed: the bridge hasn't received the decryption keys. Your client may share keys only with verified devices; sending the message again may help.`)
      const status = await read.find(room, e => e.type === 'com.beeper.message_send_status', 'the message send status')
      expect(status.content).toMatchObject({
        network: 'signal', status: 'FAIL_RETRIABLE', reason: 'com.beeper.undecryptable_event',
        message: "The bridge hasn't received the decryption keys.", 'm.relates_to': { rel_type: 'm.reference', event_id: lost },
      })
      expect(await metric(s, 'relay_bridge_decryptions_total', 'result="failed_no_keys"')).toBe(1)
      expect(s.signal.sentTo(sg.id).map(x => x.text)).toEqual(['Alice (Matrix): but this goes on'])
      await alice.send(room, '!relay status')
      expect((await read.notice(room, /^This room is bridged/)).content.body).toMatch(/Encryption: on, NOT healthy: .*1 message could not be decrypted in the last day/)
    } finally {
      await bob.close()
    }
  })

  it('with encryption.default, the portal the bridge creates for a group that spoke is encrypted, and its messages too', async () => {
    const loginId = (await s.bridge.logins.list('signal'))[0]?.id ?? await linkedLogin(s, s.signal)
    const group = s.signal.addGroup('New group')
    await s.signal.say(group.id, { id: 'aci-bob', name: 'Bob' }, 'first words', { loginId })
    const room = await s.hs.waitFor(() => s.hs.rooms().find(r => s.hs.stateContent(r, 'm.room.name')?.name === 'New group'), { what: 'the new portal room' })
    expect(s.hs.stateContent(room, 'm.room.encryption')).toMatchObject({ algorithm: 'm.megolm.v1.aes-sha2' })
    await s.hs.join(ALICE, room)
    await s.signal.say(group.id, { id: 'aci-bob', name: 'Bob' }, 'after Alice joined', { loginId })
    const ev = await read.find(room, e => e.content.body === 'after Alice joined', 'the message after Alice joined')
    expect(s.hs.timeline(room).find(e => e.event_id === ev.event_id)!.type).toBe('m.room.encrypted')
  })
})

/** A photo in the bridge's media store, as an adapter would put it there. */
async function photo(s: Scenario) {
  const { FileMediaStore } = await import('../../src/core/media.ts')
  const mediaId = await new FileMediaStore(s.config.data_dir).put(PNG)
  return { kind: 'image' as const, mimetype: 'image/png', filename: 'photo.png', size: PNG.length, mediaId }
}
