// The WhatsApp converter under generated messages: content built with Baileys' proto, changed as a plain
// object, then round-tripped through proto encode/decode (what decryption yields).
// Each run is one valid case and one malformed case, so exactly half the cases are valid:
// - valid: the base message with unknown fields added (what a newer WhatsApp may send) in a well-formed group
//   envelope with its own id, push name and time. The oracle: it converts to exactly the event the unchanged
//   base gives under that envelope, carrying the id, chat and name that were sent. Counted, and asserted.
// - malformed: fields dropped, renamed or of the wrong type, and odd envelopes. It must not throw, and what
//   comes out keeps its ranges inside the text and shows no phone number; a shape the proto refuses could
//   never arrive and is counted as refused.
// CASES_PER_BASE × bases ≈ 2,400 cases per run, split between the databases; fast-check prints the seed on failure.
import { proto, type WAMessage } from '@whiskeysockets/baileys'
import fc from 'fast-check'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Db } from '../../src/db/types.ts'
import { toInbound, type InboundDeps } from '../../src/whatsapp/convert.ts'
import { People } from '../../src/whatsapp/people.ts'
import { GROUP, onTheWire } from '../fakes/whatsapp-socket.ts'
import { MemoryMedia } from '../whatsapp/harness.ts'
import { DB_KINDS, freshDb } from '../support/db.ts'
import { additionArb, looksLikePhone, mutate, mutationArb, PHONE_NAMES, rangeProblems } from './mutate.ts'

const CASES_PER_BASE = 200
/** Runs per base on each database: each run is two cases (one valid, one malformed). */
const RUNS = Math.ceil(CASES_PER_BASE / 2 / DB_KINDS.length)
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

const counts = { cases: 0, valid: 0, validChecked: 0, malformed: 0, refusedByProto: 0, malformedEvents: 0 }
afterAll(() => console.info(`WhatsApp converter fuzz: ${JSON.stringify(counts)}`))

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
// Mostly a normal envelope, so that most malformed cases test the content.
const envelopeArb = fc.oneof({ weight: 3, arbitrary: fc.constant(NORMAL) }, { weight: 1, arbitrary: oddEnvelope })

/** A well-formed group envelope: its own message id (as Baileys makes them), a push name, a time. */
const validEnvelopeArb = fc.record({
  id: fc.stringMatching(/^3EB0[0-9A-F]{16}$/),
  pushName: fc.constantFrom('Alice', 'Zoë Ünal', 'O’Brien', '李雷', 'Ana María', '😀 Al'),
  messageTimestamp: fc.integer({ min: 1_600_000_000, max: 1_900_000_000 }),
})

function checkEvent(e: Awaited<ReturnType<typeof toInbound>>, pushName: string | undefined): void {
  if (!e) return
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

describe.each(DB_KINDS)('the WhatsApp converter under generated proto messages (%s)', kind => {
  let db: Db
  let deps: InboundDeps

  beforeAll(async () => {
    db = await freshDb(kind)
    const people = new People(db)
    await people.resolve(BOB_LID, '15550100077@s.whatsapp.net', 'Bob')
    deps = {
      loginId: 'login-1', self: { personId: 'relay', displayName: 'Relay' }, people, media: new MemoryMedia(), log: pino({ level: 'silent' }),
      download: async () => Buffer.from('media bytes'), isOwnSend: async () => false,
    }
  })
  afterAll(async () => db?.close())

  it.each(bases)('%s: valid ones convert as the unchanged message does; malformed ones never throw, keep ranges inside the text, show no number', async (_name, base) => {
    const plain = proto.Message.toObject(proto.Message.fromObject(base), { bytes: Array })
    const mine = { cases: 0, validChecked: 0 }
    await fc.assert(fc.asyncProperty(fc.array(additionArb, { maxLength: 3 }), validEnvelopeArb, fc.array(mutationArb, { minLength: 1, maxLength: 3 }), envelopeArb,
      async (additions, valid, ms, env) => {
        // The valid case.
        mine.cases++
        counts.cases++
        counts.valid++
        const msg: WAMessage = {
          key: { remoteJid: GROUP, fromMe: false, id: valid.id, participant: ALICE.lid },
          pushName: valid.pushName, messageTimestamp: valid.messageTimestamp, message: onTheWire(mutate(plain, additions) as proto.IMessage),
        }
        const e = await toInbound(msg, deps)
        // People's names evolve as envelopes show them, so the reference is converted now.
        const want = await toInbound({ ...msg, message: onTheWire(base) }, deps)
        expect(want, 'the unchanged base converts').toBeDefined()
        expect(e).toEqual(want)
        expect(e).toMatchObject({ chat: { network: 'whatsapp', id: GROUP }, remoteId: valid.id, sender: { network: 'whatsapp', displayName: valid.pushName } })
        checkEvent(e, valid.pushName)
        mine.validChecked++
        counts.validChecked++

        // The malformed case.
        mine.cases++
        counts.cases++
        counts.malformed++
        const content = wire(mutate(plain, ms))
        if (!content) {
          counts.refusedByProto++
          return
        }
        const odd: WAMessage = {
          key: { remoteJid: env.remoteJid, fromMe: false, id: env.id, participant: env.participant },
          ...(env.pushName !== undefined ? { pushName: env.pushName } : {}),
          ...(env.messageTimestamp !== undefined ? { messageTimestamp: env.messageTimestamp } : {}),
          message: content,
        }
        const got = await toInbound(odd, deps)
        if (got) counts.malformedEvents++
        checkEvent(got, env.pushName)
      }), { numRuns: RUNS })
    // Counting, not hoping: at least half of the cases were valid events, converted and compared.
    expect(mine.cases).toBe(2 * RUNS)
    expect(mine.validChecked).toBeGreaterThanOrEqual(mine.cases / 2)
  })

  it('a push name that is a phone number, however dressed, is never shown', async () => {
    for (const [i, pushName] of PHONE_NAMES.entries()) {
      const e = await toInbound({ key: { ...key, participant: `20100000000090${i}@lid`, id: `P${i}` }, pushName, message: onTheWire({ conversation: 'hi' }) }, deps)
      expect(e?.sender.displayName).toMatch(/^WhatsApp user [0-9a-f]{4}$/)
    }
  })
})
