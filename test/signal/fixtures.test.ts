// Every Signal fixture replayed through the inbound conversion, each with the outcome it must have.
import { describe, expect, it } from 'vitest'
import { attachmentIds } from '../../src/signal/attachments.ts'
import { completeEvent, convertInner, neutralLabel, type ConvertResult } from '../../src/signal/convert.ts'
import { toGroupInfo } from '../../src/signal/network.ts'
import type { GroupJson } from '../../src/signal/types.ts'
import { MemoryMedia, ownFixture, publishedFixture } from './support.ts'

const RELAY = { loginId: 'login-1', aci: '5f0c2a9e-3b7d-4e61-9a2c-7d1e8b4f6a30', displayName: 'Relay phone' }
const ALEX = 'a3e91c47-0d52-4b8e-b6f1-2c9d7e0a5b14'
const KIM = 'e7b2d019-6c4a-4f3e-8d25-91a0c6f3b7e8'
const GROUP = 'RmljdGlvbmFsUmVsYXlHcm91cElkRm9yU2lnbmFsQUE='
const names = (aci: string) => (aci === KIM ? 'Kim' : undefined)

/** Stdio/socket wrappers (01, 02, 06) carry the same inner object an SSE stream does (§4.0). */
function inner(raw: unknown): unknown {
  const r = raw as { params?: { result?: unknown; envelope?: unknown } }
  if (r.params?.result) return r.params.result
  if (r.params?.envelope) return r.params
  return raw
}
const own = (name: string): ConvertResult => convertInner(ownFixture(name), RELAY, names)
const only = (r: ConvertResult) => {
  expect(r.events).toHaveLength(1)
  return r.events[0]!
}

describe('published fixtures (test/fixtures/published/signal)', () => {
  it('01: a 1:1 text from the man page is ignored, because only groups are bridged', () => {
    const r = convertInner(inner(publishedFixture('01-jsonrpc-receive-dm-text-manpage.json')), RELAY)
    expect(r.events).toEqual([])
    expect(r.skipped).toBe('not a group')
  })

  it('02: a sync transcript sent to oneself (note to self) is not relayed', () => {
    const r = convertInner(inner(publishedFixture('02-jsonrpc-receive-subscription-sync-sent-manpage.json')), RELAY)
    expect(r.events).toEqual([])
  })

  it('04: a group mention becomes "@Name" with a mention range, and the "." sender gets a neutral label', () => {
    const r = convertInner(inner(publishedFixture('04-receive-group-mention.json')), RELAY)
    const { event } = only(r)
    const label = neutralLabel(KIM)
    expect(event).toMatchObject({
      kind: 'message',
      chat: { network: 'signal', id: 'Qm9yZWFsaXNGaWN0aW9uYWxHcm91cElkMDAwMDAwMDE=' },
      sender: { network: 'signal', id: ALEX, displayName: neutralLabel(ALEX) },
      remoteId: `${ALEX}:1716632242481`,
      timestamp: 1716632242481,
    })
    if (event.kind !== 'message') throw new Error('not a message')
    expect(event.content.body.text).toBe(`@${label} I'd like to tell you something.`)
    expect(event.content.body.mentions).toEqual([{ start: 0, length: label.length + 1, person: { network: 'signal', id: KIM, displayName: label } }])
    // The legacy `name` field is a phone number: it must appear nowhere.
    expect(JSON.stringify(event)).not.toContain('+1555')
  })

  it('06: a typing notification is ignored', () => {
    expect(convertInner(inner(publishedFixture('06-jsonrpc-receive-typing-started.json')), RELAY).events).toEqual([])
  })

  it('10: an italic range on a group text becomes an italic style over the same characters', () => {
    const { event } = only(convertInner(inner(publishedFixture('10-receive-group-textstyles.json')), RELAY))
    expect(event).toMatchObject({ kind: 'message', sender: { displayName: 'Jordan Sample' } })
    if (event.kind !== 'message') throw new Error('not a message')
    expect(event.content.body).toEqual({ text: 'MESSAGE', styles: [{ start: 0, length: 5, style: 'italic' }], links: [], mentions: [] })
  })

  it('14: the stale listGroups shape (members as strings) still gives a name, a description, a member count and the link', () => {
    const raw = publishedFixture('14-jsonrpc-listGroups-response-manpage.json') as { result: GroupJson[] }
    expect(raw.result.map(toGroupInfo)).toEqual([
      {
        id: 'Zmlj+GlvbmFsR3JvdXAvSWRGb3JUZXN0czAwMDAwMDM=',
        name: 'My Group',
        topic: 'It\'s special because it is mine.',
        memberCount: 2,
        inviteLink: 'https://signal.group/#CjQKIEZpY3Rpb25hbEdyb3VwTWFzdGVyS2V5Rm9yVGVzdHMwMBIQRmljdGlvbmFsUGFzc3dvcmQ',
      },
    ])
  })
})

describe('fixtures written from signal-cli.md (test/fixtures/signal)', () => {
  it('§4.3: an edit chain maps each revision to its own id and targets the previous revision', () => {
    expect(only(own('edit-chain-0-original.json')).event).toMatchObject({ kind: 'message', remoteId: `${ALEX}:1790000000123` })
    expect(only(own('edit-chain-1-first-edit.json')).event).toMatchObject({
      kind: 'edit',
      remoteId: `${ALEX}:1790000050000`,
      target: `${ALEX}:1790000000123`,
      content: { body: { text: 'hi all!' } },
    })
    const second = only(own('edit-chain-2-second-edit.json')).event
    expect(second).toMatchObject({ kind: 'edit', remoteId: `${ALEX}:1790000060000`, target: `${ALEX}:1790000050000` })
    if (second.kind !== 'edit') throw new Error('not an edit')
    expect(second.content.body.styles).toEqual([{ start: 0, length: 2, style: 'bold' }])
  })

  it('§4.2: a remote delete targets the envelope source’s own message', () => {
    expect(only(own('remote-delete.json')).event).toMatchObject({ kind: 'delete', target: `${ALEX}:1790000000123`, sender: { id: ALEX } })
  })

  it('§4.2: a reaction is added and removed on the target taken from targetAuthorUuid (targetAuthor is "")', () => {
    expect(only(own('reaction-add.json')).event).toMatchObject({ kind: 'reaction', emoji: '👍', removed: false, target: `${KIM}:1789999999000` })
    expect(only(own('reaction-remove.json')).event).toMatchObject({ kind: 'reaction', emoji: '👍', removed: true, target: `${KIM}:1789999999000` })
  })

  it('§4.2: a quote becomes a reply to `authorUuid:quote.id`', () => {
    expect(only(own('quote-reply.json')).event).toMatchObject({ kind: 'message', replyTo: `${KIM}:1789999999000`, content: { body: { text: 'agreed 👍' } } })
  })

  it('§4.4: a photo and a voice note are fetched into the media store with their kinds and caption', async () => {
    const c = only(own('attachments-photo-and-voice.json'))
    const media = new MemoryMedia()
    const files: Record<string, Buffer> = { '8Qtv5bL6lWBxRKvFvSbb.jpg': Buffer.from('jpeg-bytes!'), 'Vn0te5bL6lWBxRKvFvSb.aac': Buffer.from('aacdata') }
    const event = await completeEvent(c, {
      media,
      getAttachment: async id => files[id]!,
      getSticker: async () => Buffer.alloc(0),
      groupDetails: async () => undefined,
    })
    if (event.kind !== 'message') throw new Error('not a message')
    expect(event.content.body.text).toBe('look at this')
    expect(event.content.attachments).toEqual([
      { kind: 'image', mimetype: 'image/jpeg', filename: 'photo.jpg', size: 11, width: 2048, height: 1152, mediaId: expect.any(String) },
      { kind: 'voice', mimetype: 'audio/aac', filename: 'Vn0te5bL6lWBxRKvFvSb.aac', size: 7, mediaId: expect.any(String) },
    ])
    expect(await media.get(event.content.attachments[0]!.mediaId)).toEqual(files['8Qtv5bL6lWBxRKvFvSbb.jpg'])
  })

  it('§4.4: the files an event names in the daemon’s attachments directory are its attachments’ ids, never a path', () => {
    expect(attachmentIds(ownFixture('attachments-photo-and-voice.json')).sort()).toEqual(['8Qtv5bL6lWBxRKvFvSbb.jpg', 'Vn0te5bL6lWBxRKvFvSb.aac'])
    const hostile = { envelope: { dataMessage: { attachments: [{ id: '../../config/account.db', contentType: 'image/png' }, { id: '.hidden', contentType: 'image/png' }] } } }
    expect(attachmentIds(hostile)).toEqual([])
    expect(attachmentIds(ownFixture('empty-envelope.json'))).toEqual([])
  })

  it('§4.7: a 0.14.x long text whose message already holds the full text does not relay the text file', () => {
    const c = only(own('long-text-014.json'))
    expect(c.media).toEqual([])
    expect(c.longText).toBeUndefined()
    if (c.event.kind !== 'message') throw new Error('not a message')
    expect(c.event.content.body.text.length).toBeGreaterThan(2000)
  })

  it('§4.8: a sticker is fetched with getSticker and arrives as a sticker attachment', async () => {
    const c = only(own('sticker.json'))
    const asked: unknown[] = []
    const event = await completeEvent(c, {
      media: new MemoryMedia(),
      getAttachment: async () => Buffer.alloc(0),
      getSticker: async (packId, stickerId) => (asked.push([packId, stickerId]), Buffer.from('RIFFwebp')),
      groupDetails: async () => undefined,
    })
    expect(asked).toEqual([['0123456789abcdef0123456789abcdef', 7]])
    if (event.kind !== 'message') throw new Error('not a message')
    expect(event.content.attachments).toMatchObject([{ kind: 'sticker', mimetype: 'image/webp', size: 8 }])
  })

  it('§4.10: a group update reads the new name with listGroups and becomes a chat update', async () => {
    const c = only(own('group-update.json'))
    const event = await completeEvent(c, {
      media: new MemoryMedia(),
      getAttachment: async () => Buffer.alloc(0),
      getSticker: async () => Buffer.alloc(0),
      groupDetails: async id => (id === GROUP ? { name: 'Family ❤ (renamed)', topic: '' } : undefined),
    })
    expect(event).toMatchObject({ kind: 'chat_update', chat: { id: GROUP }, name: 'Family ❤ (renamed)' })
  })

  it('§4.9: text typed on the relay phone in a group comes from the login’s person, marked viaRelayAccount', () => {
    expect(only(own('sync-sent-group.json')).event).toMatchObject({
      kind: 'message',
      sender: { network: 'signal', id: RELAY.aci, displayName: 'Relay phone', viaRelayAccount: true },
      remoteId: `${RELAY.aci}:1790000140000`,
      loginId: 'login-1',
      content: { body: { text: 'typed on the relay phone' } },
    })
  })

  it('§4.9: an edit typed on the relay phone is an edit of the relay’s message', () => {
    expect(only(own('sync-sent-edit.json')).event).toMatchObject({
      kind: 'edit',
      sender: { id: RELAY.aci, viaRelayAccount: true },
      target: `${RELAY.aci}:1790000140000`,
      remoteId: `${RELAY.aci}:1790000150000`,
    })
  })

  it('§6: an untrusted-identity exception is reported, not relayed', () => {
    const r = own('exception-untrusted.json')
    expect(r.events).toEqual([])
    expect(r.exception).toEqual({ type: 'UntrustedIdentityException' })
  })

  it('§4.1: an envelope with no content and an empty syncMessage are ignored', () => {
    expect(own('empty-envelope.json').events).toEqual([])
    expect(own('empty-sync.json').events).toEqual([])
  })

  it('§4.5/§4.6: after an emoji, a mention grows into "@Kim" and the overlapping styles follow it (unknown fields ignored)', () => {
    const { event } = only(own('mention-emoji-overlapping-styles.json'))
    if (event.kind !== 'message') throw new Error('not a message')
    const { text, styles, mentions } = event.content.body
    expect(text).toBe('😀 hey @Kim, read this')
    const covered = (s: { start: number; length: number }) => text.slice(s.start, s.start + s.length)
    expect(styles.map(s => [s.style, covered(s)])).toEqual([
      ['bold', 'hey @Kim, re'],
      ['italic', '@Kim, read '],
      ['spoiler', 'this'],
    ])
    expect(mentions.map(m => [covered(m), m.person.id])).toEqual([['@Kim', KIM]])
  })

  it('§4.1: a sealed-sender failure with no source is ignored', () => {
    expect(own('unknown-sender.json')).toMatchObject({ events: [], skipped: 'unknown sender' })
  })
})
