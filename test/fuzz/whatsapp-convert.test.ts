// The WhatsApp converter under mutated messages: content built with Baileys' proto, mutated as a plain
// object, then round-tripped through proto encode/decode (what decryption yields). A mutation the proto
// refuses could never arrive and is counted as refused. RUNS_PER_BASE × bases ≈ 3,000 cases per run; the
// seed is printed by fast-check on failure.
import { proto, type WAMessage } from '@whiskeysockets/baileys'
import fc from 'fast-check'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Db } from '../../src/db/types.ts'
import { toInbound, type InboundDeps } from '../../src/whatsapp/convert.ts'
import { People } from '../../src/whatsapp/people.ts'
import { GROUP, onTheWire } from '../fakes/whatsapp-socket.ts'
import { MemoryMedia } from '../whatsapp/harness.ts'
import { freshDb } from '../support/db.ts'
import { looksLikePhone, mutate, mutationArb, onlyAdditions, PHONE_NAMES, rangeProblems } from './mutate.ts'

const RUNS_PER_BASE = 250
const ALICE = { lid: '201000000000042@lid', pn: '15550100042@s.whatsapp.net' }
const BOB_LID = '201000000000077@lid'
const T = proto.Message.ProtocolMessage.Type
const key = { remoteJid: GROUP, fromMe: false, id: 'T1', participant: ALICE.lid }

const bases: Array<[string, proto.IMessage]> = [
  ['conversation', { conversation: 'hello *bold* _it_ ~s~ `m` ```code``` 😀 שלום' }],
  ['mention + reply', { extendedTextMessage: { text: 'hi @201000000000077 and @15550100042!', contextInfo: { mentionedJid: [BOB_LID, ALICE.pn], stanzaId: 'T0', participant: ALICE.lid, quotedMessage: { conversation: 'q' } } } }],
  ['image with caption', { imageMessage: { url: 'https://mmg.example/x', mimetype: 'image/jpeg', caption: 'a *photo*', fileLength: 10, width: 10, height: 10, mediaKey: new Uint8Array(32) } }],
  ['document', { documentMessage: { url: 'https://mmg.example/d', mimetype: 'application/pdf', fileName: '../../etc/passwd\u202egpj.exe', fileLength: 3, mediaKey: new Uint8Array(32) } }],
  ['voice note', { audioMessage: { url: 'https://mmg.example/a', mimetype: 'audio/ogg; codecs=opus', ptt: true, seconds: 3, mediaKey: new Uint8Array(32) } }],
  ['contact', { contactMessage: { displayName: 'Kim/..\u0000', vcard: 'BEGIN:VCARD\nFN:Kim\nTEL:+15550100002\nEND:VCARD' } }],
  ['location', { locationMessage: { degreesLatitude: 52.5, degreesLongitude: 13.4, name: 'Berlin' } }],
  ['poll', { pollCreationMessageV3: { name: 'Lunch?', options: [{ optionName: 'yes' }, { optionName: 'no' }], selectableOptionsCount: 1 } }],
  ['reaction', { reactionMessage: { key, text: '👍', senderTimestampMs: 1 } }],
  ['edit', { protocolMessage: { type: T.MESSAGE_EDIT, key, editedMessage: { conversation: 'hello *there*' } } }],
  ['revoke', { protocolMessage: { type: T.REVOKE, key } }],
  ['ephemeral wrapper', { ephemeralMessage: { message: { extendedTextMessage: { text: 'vanishing _text_' } } } }],
]

let db: Db
let deps: InboundDeps
const counts = { cases: 0, refusedByProto: 0, events: 0 }

beforeAll(async () => {
  db = await freshDb('pglite')
  const people = new People(db)
  await people.resolve(BOB_LID, '15550100077@s.whatsapp.net', 'Bob')
  deps = {
    loginId: 'login-1', self: { personId: 'relay', displayName: 'Relay' }, people, media: new MemoryMedia(), log: pino({ level: 'silent' }),
    download: async () => Buffer.from('media bytes'), isOwnSend: async () => false,
  }
})
afterAll(async () => {
  console.info(`WhatsApp converter fuzz: ${JSON.stringify(counts)}`)
  await db?.close()
})

/** What Baileys could hand over, or undefined when the proto refuses the mutated shape. */
function wire(m: unknown): proto.Message | undefined {
  try {
    return onTheWire(m as proto.IMessage)
  } catch {
    return undefined
  }
}

const oddEnvelope = fc.record({
  pushName: fc.option(fc.oneof(fc.constantFrom(...PHONE_NAMES, 'Alice', '', ' ', '\u202e', '.'), fc.string({ maxLength: 12 })), { nil: undefined }),
  participant: fc.constantFrom<string | undefined>(ALICE.lid, ALICE.pn, undefined, '', 'garbage', '@lid', 'x@g.us'),
  remoteJid: fc.constantFrom<string | undefined>(GROUP, GROUP, GROUP, '15550100042@s.whatsapp.net', 'status@broadcast', '', undefined),
  id: fc.constantFrom<string | undefined>('M1', '', undefined, 'x'.repeat(500)),
  messageTimestamp: fc.constantFrom<number | undefined>(1_790_000_000, 0, -1, undefined, 2 ** 40),
})
const NORMAL = { pushName: 'Alice' as string | undefined, participant: ALICE.lid as string | undefined, remoteJid: GROUP as string | undefined, id: 'M1' as string | undefined, messageTimestamp: 1_790_000_000 as number | undefined }
// Mostly a normal envelope, so that most cases test the content.
const envelopeArb = fc.oneof({ weight: 3, arbitrary: fc.constant(NORMAL) }, { weight: 1, arbitrary: oddEnvelope })

function checkEvent(e: Awaited<ReturnType<typeof toInbound>>, pushName: string | undefined): void {
  if (!e) return
  counts.events++
  const names = [e.sender.displayName]
  if (e.kind === 'message' || e.kind === 'edit') {
    expect(rangeProblems(e.content.body)).toEqual([])
    names.push(...e.content.body.mentions.map(m => m.person.displayName ?? ''))
    for (const m of e.content.body.mentions) expect(e.content.body.text.slice(m.start, m.start + m.length)).not.toMatch(/\d{7,}/)
    // eslint-disable-next-line no-control-regex
    for (const a of e.content.attachments) expect(a.filename).toMatch(/^[^/\\\u0000-\u001f\u202e]+$/u)
  }
  for (const n of names) expect(looksLikePhone(n), `display name "${n}" (push name ${JSON.stringify(pushName)}) shows a number`).toBe(false)
}

describe('the WhatsApp converter under mutated proto messages', () => {
  it.each(bases)('%s: never throws, keeps ranges inside the text, shows no number, ignores what the proto drops', async (_name, base) => {
    const original = await toInbound({ key: { ...key, id: 'M1' }, pushName: 'Alice', messageTimestamp: 1_790_000_000, message: onTheWire(base) }, deps)
    expect(original).toBeDefined()
    await fc.assert(fc.asyncProperty(fc.array(mutationArb, { minLength: 1, maxLength: 3 }), envelopeArb, async (ms, env) => {
      counts.cases++
      const content = wire(mutate(proto.Message.toObject(proto.Message.fromObject(base), { bytes: Array }), ms))
      if (!content) {
        counts.refusedByProto++
        return
      }
      const msg: WAMessage = {
        key: { remoteJid: env.remoteJid, fromMe: false, id: env.id, participant: env.participant },
        ...(env.pushName !== undefined ? { pushName: env.pushName } : {}),
        ...(env.messageTimestamp !== undefined ? { messageTimestamp: env.messageTimestamp } : {}),
        message: content,
      }
      const e = await toInbound(msg, deps)
      checkEvent(e, env.pushName)
      // Unknown fields never reach the wire: with a normal envelope the same event comes out.
      if (onlyAdditions(ms) && env.remoteJid === GROUP && env.id === 'M1' && env.participant === ALICE.lid && env.pushName === 'Alice' && env.messageTimestamp === 1_790_000_000) {
        // People's names evolve as envelopes show them, so the reference is converted now.
        expect(e).toEqual(await toInbound({ ...msg, message: onTheWire(base) }, deps))
      }
    }), { numRuns: RUNS_PER_BASE })
  })

  it('a push name that is a phone number, however dressed, is never shown', async () => {
    for (const [i, pushName] of PHONE_NAMES.entries()) {
      const e = await toInbound({ key: { ...key, participant: `20100000000090${i}@lid`, id: `P${i}` }, pushName, message: onTheWire({ conversation: 'hi' }) }, deps)
      expect(e?.sender.displayName).toMatch(/^WhatsApp user [0-9a-f]{4}$/)
    }
  })
})
