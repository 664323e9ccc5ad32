// Each kind of content, in both directions between Matrix and the groups: formatted text, notices, emotes,
// media through the homeserver's media repository, locations, stickers and mentions.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Attachment, InboundMessage, MessageDelivery, RichText } from '../../src/core/model.ts'
import { ALICE, bridgedRoom, scenario, type Scenario } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { bodyOf, content, mediaStore, settled, upload } from '../support/relay.ts'
import type { Sent } from '../fakes/memory-network.ts'

const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489', 'hex')

function message(sent: Sent): MessageDelivery {
  if (sent.delivery.kind !== 'message') throw new Error(`expected a message, got ${sent.delivery.kind}`)
  return sent.delivery
}

describe.each(DB_KINDS)('content on %s', kind => {
  let s: Scenario
  beforeAll(async () => {
    s = await scenario(kind)
  })
  afterAll(async () => s?.stop())

  /** A message typed in a group, with anything the test adds. */
  const fromGroup = (net: 'signal' | 'whatsapp', group: string, extra: Partial<InboundMessage> & { text?: string; rich?: RichText; attachments?: Attachment[] }) => {
    const who = net === 'signal' ? { id: 'aci-bob', name: 'Bob' } : { id: 'wa-dave', name: 'Dave' }
    const { text = '', rich, attachments = [], ...rest } = extra
    return s[net].inbound({
      kind: 'message', chat: { network: net, id: group }, sender: { network: net, id: who.id, displayName: who.name },
      remoteId: `${net}-${Math.random().toString(36).slice(2)}`, timestamp: Date.now(),
      content: { kind: 'text', body: rich ?? { text, styles: [], links: [], mentions: [] }, attachments }, ...rest,
    } as InboundMessage)
  }

  it('Matrix HTML formatting reaches Signal as style ranges and WhatsApp as the same ranges, after the bold sender label', async () => {
    const { room, sg, wg } = await bridgedRoom(s)
    await s.hs.sendMessage(ALICE, room, { msgtype: 'm.text', body: 'so *very* ~done~', format: 'org.matrix.custom.html', formatted_body: 'so <em>very</em> <del>done</del>' })
    const [sig] = await s.signal.waitForSentTo(sg.id, 1)
    const [wa] = await s.whatsapp.waitForSentTo(wg.id, 1)
    const prefix = 'Alice (Matrix): '
    for (const sent of [sig!, wa!]) {
      const d = message(sent)
      expect(d.content.body.text).toBe(`${prefix}so very done`)
      expect(d.content.body.styles).toEqual(expect.arrayContaining([
        { start: 0, length: prefix.length - 2, style: 'bold' },
        { start: prefix.length + 3, length: 4, style: 'italic' },
        { start: prefix.length + 8, length: 4, style: 'strikethrough' },
      ]))
    }
  })

  it('a formatted Signal message arrives in Matrix as HTML with a plain body, from the ghost, without a prefix', async () => {
    const { room, sg } = await bridgedRoom(s)
    await fromGroup('signal', sg.id, { rich: { text: 'big news here', styles: [{ start: 0, length: 3, style: 'bold' }, { start: 4, length: 4, style: 'italic' }], links: [], mentions: [] } })
    const ev = await s.hs.waitForEvent(room, e => bodyOf(e) === 'big news here')
    expect(ev.sender).toBe('@signal_aci-bob:example.org')
    expect(content(ev)).toMatchObject({ msgtype: 'm.text', format: 'org.matrix.custom.html', formatted_body: '<strong>big</strong> <em>news</em> here' })
  })

  it('a notice typed in Matrix is never relayed to Signal or WhatsApp; the text after it is', async () => {
    const { room, sg, wg } = await bridgedRoom(s)
    await s.hs.sendMessage(ALICE, room, { msgtype: 'm.notice', body: 'automated reminder' })
    await s.hs.sendMessage(ALICE, room, 'a person speaking')
    await s.signal.waitForSentTo(sg.id, 1)
    await s.whatsapp.waitForSentTo(wg.id, 1)
    await settled(s)
    expect(s.signal.sentTo(sg.id).map(x => x.text)).toEqual(['Alice (Matrix): a person speaking'])
    expect(s.whatsapp.sentTo(wg.id).map(x => x.text)).toEqual(['Alice (Matrix): a person speaking'])
  })

  it('a Matrix emote reads "* Alice (Matrix) waves" on both networks; a Signal emote is an m.emote from the ghost', async () => {
    const { room, sg, wg } = await bridgedRoom(s)
    await s.hs.sendMessage(ALICE, room, { msgtype: 'm.emote', body: 'waves' })
    const [sig] = await s.signal.waitForSentTo(sg.id, 1)
    const [wa] = await s.whatsapp.waitForSentTo(wg.id, 1)
    expect(sig!.text).toBe('* Alice (Matrix) waves')
    expect(wa!.text).toBe('* Alice (Matrix) waves')
    await s.signal.inbound({
      kind: 'message', chat: { network: 'signal', id: sg.id }, sender: { network: 'signal', id: 'aci-bob', displayName: 'Bob' },
      remoteId: 'sig-emote-1', timestamp: Date.now(), content: { kind: 'emote', body: { text: 'waves back', styles: [], links: [], mentions: [] }, attachments: [] },
    })
    const ev = await s.hs.waitForEvent(room, e => bodyOf(e) === 'waves back')
    expect(content(ev).msgtype).toBe('m.emote')
    const [, toWa] = await s.whatsapp.waitForSentTo(wg.id, 2)
    expect(toWa!.text).toBe('* Bob (Signal) waves back')
  })

  it('an image from Matrix reaches both groups as an attachment with the uploaded bytes, its name and its caption', async () => {
    const { room, sg, wg } = await bridgedRoom(s)
    const mxc = await upload(s, PNG, 'image/png', 'cat.png')
    await s.hs.sendMessage(ALICE, room, { msgtype: 'm.image', body: 'look at her', filename: 'cat.png', url: mxc, info: { mimetype: 'image/png', size: PNG.length, w: 1, h: 1 } })
    const [sig] = await s.signal.waitForSentTo(sg.id, 1)
    const [wa] = await s.whatsapp.waitForSentTo(wg.id, 1)
    for (const sent of [sig!, wa!]) {
      const d = message(sent)
      expect(d.content.body.text).toBe('Alice (Matrix): look at her')
      expect(d.content.attachments).toHaveLength(1)
      expect(d.content.attachments[0]).toMatchObject({ kind: 'image', mimetype: 'image/png', filename: 'cat.png', size: PNG.length, width: 1, height: 1 })
      expect(await mediaStore(s).get(d.content.attachments[0]!.mediaId)).toEqual(PNG)
    }
  })

  it.each([
    ['m.file', 'file', 'report.pdf', 'application/pdf'],
    ['m.audio', 'audio', 'song.mp3', 'audio/mpeg'],
    ['m.video', 'video', 'clip.mp4', 'video/mp4'],
  ])('a %s from Matrix reaches Signal as a %s attachment labelled with the sender', async (msgtype, kind, name, mimetype) => {
    const { room, sg, wg } = await bridgedRoom(s)
    const bytes = Buffer.from(`bytes of ${name}`)
    const mxc = await upload(s, bytes, mimetype, name)
    await s.hs.sendMessage(ALICE, room, { msgtype, body: name, url: mxc, info: { mimetype, size: bytes.length } })
    const [sig] = await s.signal.waitForSentTo(sg.id, 1)
    await s.whatsapp.waitForSentTo(wg.id, 1)
    const d = message(sig!)
    expect(sig!.text).toBe(`Alice (Matrix): [${kind}: ${name}]`)
    expect(d.content.attachments[0]).toMatchObject({ kind, mimetype, filename: name, size: bytes.length })
    expect(await mediaStore(s).get(d.content.attachments[0]!.mediaId)).toEqual(bytes)
  })

  it('a voice message from Matrix (MSC3245) is a voice attachment', async () => {
    const { room, sg } = await bridgedRoom(s)
    const bytes = Buffer.from('ogg opus voice')
    const mxc = await upload(s, bytes, 'audio/ogg', 'voice.ogg')
    await s.hs.sendMessage(ALICE, room, { msgtype: 'm.audio', body: 'voice.ogg', url: mxc, info: { mimetype: 'audio/ogg', size: bytes.length, duration: 2500 }, 'org.matrix.msc3245.voice': {} })
    const [sig] = await s.signal.waitForSentTo(sg.id, 1)
    expect(message(sig!).content.attachments[0]).toMatchObject({ kind: 'voice', durationMs: 2500 })
  })

  it('a hostile file name from Matrix (path separators, control characters, leading dots) arrives made safe', async () => {
    const { room, sg } = await bridgedRoom(s)
    const bytes = Buffer.from('#!/bin/sh\necho pwned\n')
    const hostile = '../../etc/\u0007cron.d\\evil\nname.sh'
    const mxc = await upload(s, bytes, 'text/plain', 'x')
    await s.hs.sendMessage(ALICE, room, { msgtype: 'm.file', body: hostile, url: mxc, info: { mimetype: 'text/plain', size: bytes.length } })
    const [sig] = await s.signal.waitForSentTo(sg.id, 1)
    const att = message(sig!).content.attachments[0]!
    expect(att.filename).not.toMatch(/[/\\]/)
    // eslint-disable-next-line no-control-regex
    expect(att.filename).not.toMatch(/[\u0000-\u001f\u007f]/)
    expect(att.filename.startsWith('.')).toBe(false)
    expect(att.filename).toContain('evil')
    expect(await mediaStore(s).get(att.mediaId)).toEqual(bytes)
  })

  it('a sticker from Matrix reaches the groups as a sticker attachment', async () => {
    const { room, sg, wg } = await bridgedRoom(s)
    const mxc = await upload(s, PNG, 'image/png', 'sticker.png')
    await s.hs.sendEvent(ALICE, room, 'm.sticker', { body: 'thumbs up', url: mxc, info: { mimetype: 'image/png', size: PNG.length } })
    const [sig] = await s.signal.waitForSentTo(sg.id, 1)
    const [wa] = await s.whatsapp.waitForSentTo(wg.id, 1)
    for (const sent of [sig!, wa!]) {
      expect(message(sent).content.attachments[0]).toMatchObject({ kind: 'sticker', mimetype: 'image/png' })
      expect(await mediaStore(s).get(message(sent).content.attachments[0]!.mediaId)).toEqual(PNG)
    }
  })

  it('a location from Matrix reaches the groups with its coordinates and a map link', async () => {
    const { room, sg, wg } = await bridgedRoom(s)
    await s.hs.sendMessage(ALICE, room, { msgtype: 'm.location', body: 'The pub', geo_uri: 'geo:51.5008,-0.1247' })
    const [sig] = await s.signal.waitForSentTo(sg.id, 1)
    const [wa] = await s.whatsapp.waitForSentTo(wg.id, 1)
    for (const sent of [sig!, wa!]) {
      expect(message(sent).content.location).toEqual({ latitude: 51.5008, longitude: -0.1247, name: 'The pub' })
      expect(sent.text).toContain('openstreetmap.org/?mlat=51.5008&mlon=-0.1247')
    }
  })

  it('a location from WhatsApp arrives in Matrix as m.location with a geo: URI', async () => {
    const { room, wg } = await bridgedRoom(s)
    await s.whatsapp.inbound({
      kind: 'message', chat: { network: 'whatsapp', id: wg.id }, sender: { network: 'whatsapp', id: 'wa-dave', displayName: 'Dave' },
      remoteId: 'wa-loc-1', timestamp: Date.now(),
      content: { kind: 'text', body: { text: '', styles: [], links: [], mentions: [] }, attachments: [], location: { latitude: 48.8584, longitude: 2.2945, name: 'Tower' } },
    })
    const ev = await s.hs.waitForEvent(room, e => content(e).msgtype === 'm.location')
    expect(content(ev)).toMatchObject({ body: 'Tower', geo_uri: 'geo:48.8584,2.2945' })
    expect(ev.sender).toBe('@whatsapp_wa-dave:example.org')
  })

  it.each([
    ['image', 'm.room.message', 'm.image', 'image/jpeg', 'photo.jpg'],
    ['video', 'm.room.message', 'm.video', 'video/mp4', 'clip.mp4'],
    ['audio', 'm.room.message', 'm.audio', 'audio/mpeg', 'song.mp3'],
    ['file', 'm.room.message', 'm.file', 'application/pdf', 'doc.pdf'],
    ['sticker', 'm.sticker', undefined, 'image/webp', 'sticker.webp'],
  ] as const)('a %s from Signal arrives in Matrix as %s %s uploaded through the media repository, and on WhatsApp as an attachment', async (kind, type, msgtype, mimetype, filename) => {
    const { room, sg, wg } = await bridgedRoom(s)
    const bytes = Buffer.from(`signal ${kind} bytes`)
    const mediaId = await mediaStore(s).put(bytes)
    await fromGroup('signal', sg.id, { attachments: [{ kind, mimetype, filename, size: bytes.length, mediaId }] })
    const ev = await s.hs.waitForEvent(room, e => e.type === type && e.sender === '@signal_aci-bob:example.org')
    if (msgtype) expect(content(ev).msgtype).toBe(msgtype)
    expect(content(ev).info).toMatchObject({ mimetype, size: bytes.length })
    const stored = s.hs.media(String(content(ev).url))
    expect(stored?.data).toEqual(bytes)
    expect(stored?.mimetype).toBe(mimetype)
    const [wa] = await s.whatsapp.waitForSentTo(wg.id, 1)
    expect(message(wa!).content.attachments[0]).toMatchObject({ kind, filename, mediaId })
    expect(wa!.text).toBe(`Bob (Signal): [${kind}: ${filename}]`)
  })

  it('a voice note from WhatsApp arrives in Matrix as m.audio marked as voice', async () => {
    const { room, wg } = await bridgedRoom(s)
    const bytes = Buffer.from('opus')
    const mediaId = await mediaStore(s).put(bytes)
    await fromGroup('whatsapp', wg.id, { attachments: [{ kind: 'voice', mimetype: 'audio/ogg', filename: 'voice.ogg', size: 4, durationMs: 1200, mediaId }] })
    const ev = await s.hs.waitForEvent(room, e => content(e).msgtype === 'm.audio')
    expect(content(ev)['org.matrix.msc3245.voice']).toEqual({})
    expect(content(ev).info).toMatchObject({ duration: 1200 })
  })

  it('a Matrix pill of a Signal ghost becomes a Signal mention range over the name, behind the relay prefix', async () => {
    const { room, sg } = await bridgedRoom(s)
    await s.signal.say(sg.id, { id: 'aci-bob', name: 'Bob' }, 'anyone there?')
    await s.hs.waitForEvent(room, e => bodyOf(e) === 'anyone there?')
    await s.hs.sendMessage(ALICE, room, {
      msgtype: 'm.text', body: 'Bob (Signal): yes!', format: 'org.matrix.custom.html',
      formatted_body: '<a href="https://matrix.to/#/@signal_aci-bob:example.org">Bob (Signal)</a>: yes!',
      'm.mentions': { user_ids: ['@signal_aci-bob:example.org'] },
    })
    const [sig] = await s.signal.waitForSentTo(sg.id, 1)
    const d = message(sig!)
    const prefix = 'Alice (Matrix): '
    expect(d.content.body.mentions).toHaveLength(1)
    const m = d.content.body.mentions[0]!
    expect(m.person).toMatchObject({ network: 'signal', id: 'aci-bob' })
    expect(m.start).toBe(prefix.length)
    expect(d.content.body.text.slice(m.start, m.start + m.length)).toContain('Bob')
  })

  it('a WhatsApp mention of another WhatsApp member arrives in Matrix as a pill of their ghost, listed in m.mentions', async () => {
    const { room, wg } = await bridgedRoom(s)
    await fromGroup('whatsapp', wg.id, { rich: { text: '@Erin see this', styles: [], links: [], mentions: [{ start: 0, length: 5, person: { network: 'whatsapp', id: 'wa-erin', displayName: 'Erin' } }] } })
    const ev = await s.hs.waitForEvent(room, e => typeof bodyOf(e) === 'string' && bodyOf(e)!.includes('see this'))
    expect(String(content(ev).formatted_body)).toContain('<a href="https://matrix.to/#/%40whatsapp_wa-erin%3Aexample.org">')
    expect(content(ev)['m.mentions']).toEqual({ user_ids: ['@whatsapp_wa-erin:example.org'] })
  })

  it('a WhatsApp mention of a Matrix user arrives as a pill of that Matrix user', async () => {
    const { room, wg } = await bridgedRoom(s)
    await fromGroup('whatsapp', wg.id, { rich: { text: '@Alice hello', styles: [], links: [], mentions: [{ start: 0, length: 6, person: { network: 'matrix', id: ALICE } }] } })
    const ev = await s.hs.waitForEvent(room, e => typeof bodyOf(e) === 'string' && bodyOf(e)!.includes('hello'))
    expect(content(ev)['m.mentions']).toEqual({ user_ids: [ALICE] })
  })
})
