// The Signal converter under mutated fixtures: the six published ones and test/fixtures/signal/*.
// Each property run is one valid case and one malformed case, so exactly half the cases are valid:
// - valid: the fixture with unknown fields added anywhere (what a newer signal-cli may send). The oracle:
//   the very same events come out as from the fixture itself (none for a fixture that is rightly ignored,
//   such as a 1:1 text or a typing notice). Counted, and asserted.
// - malformed: fields dropped, renamed or of the wrong type. It must not throw, and what comes out keeps its
//   ranges inside the text and shows no phone number.
// FIXTURES × CASES_PER_FIXTURE cases (≈ 4,800), plus targeted text-style and mention offsets. The seed is
// printed by fast-check on failure.
import { readdirSync } from 'node:fs'
import path from 'node:path'
import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import type { InboundEvent } from '../../src/core/model.ts'
import { completeEvent, convertInner, type ConvertResult } from '../../src/signal/convert.ts'
import { MemoryMedia, ownFixture, repoRoot, publishedFixture } from '../signal/support.ts'
import { additionArb, looksLikePhone, mutate, mutationArb, PHONE_NAMES, rangeProblems } from './mutate.ts'

const RELAY = { loginId: 'login-1', aci: '5f0c2a9e-3b7d-4e61-9a2c-7d1e8b4f6a30', displayName: 'Relay phone' }
const CASES_PER_FIXTURE = 200

/** Stdio/socket wrappers carry the same inner object an SSE stream does. */
function inner(raw: unknown): unknown {
  const r = raw as { params?: { result?: unknown; envelope?: unknown } }
  if (r.params?.result) return r.params.result
  if (r.params?.envelope) return r.params
  return raw
}

const shared = ['01-jsonrpc-receive-dm-text-manpage.json', '02-jsonrpc-receive-subscription-sync-sent-manpage.json', '04-receive-group-mention.json',
  '06-jsonrpc-receive-typing-started.json', '10-receive-group-textstyles.json']
const fixtures: Array<[string, unknown]> = [
  ...shared.map(n => [n, inner(publishedFixture(n))] as [string, unknown]),
  // 14 is a listGroups answer, not an envelope: fed in as-is, it must be skipped.
  ['14-jsonrpc-listGroups-response-manpage.json', publishedFixture('14-jsonrpc-listGroups-response-manpage.json')],
  ...readdirSync(path.join(repoRoot, 'test/fixtures/signal')).filter(n => n.endsWith('.json')).map(n => [n, ownFixture(n)] as [string, unknown]),
]

/** Every phone number the input holds (digits only), so none may reach a display name. */
function numbersIn(v: unknown): string[] {
  const out = new Set(PHONE_NAMES.map(p => p.replace(/\D/g, '')))
  JSON.stringify(v ?? null, (_k, x: unknown) => {
    if (typeof x === 'string' && /^\+\d{7,}$/.test(x)) out.add(x.slice(1))
    return x
  })
  return [...out].filter(d => d.length >= 7)
}

function check(result: ConvertResult, input: unknown): void {
  const numbers = numbersIn(input)
  for (const { event } of result.events) {
    const names = [event.sender.displayName]
    if (event.kind === 'message' || event.kind === 'edit') {
      expect(rangeProblems(event.content.body)).toEqual([])
      names.push(...event.content.body.mentions.map(m => m.person.displayName ?? ''))
      // A mention shows a name, never the legacy `name` field (a number).
      for (const m of event.content.body.mentions) expect(looksLikePhone(event.content.body.text.slice(m.start, m.start + m.length))).toBe(false)
    }
    for (const n of names) {
      const digits = n.replace(/\D/g, '')
      for (const number of numbers) expect(digits.includes(number), `display name "${n}" shows a number`).toBe(false)
    }
  }
}

const media = new MemoryMedia()
const deps = {
  media,
  getAttachment: async (id: string) => Buffer.from(`bytes of ${id}`),
  getSticker: async () => Buffer.from('webp'),
  groupDetails: async () => ({ name: 'Family', topic: '' }),
}

async function completeAll(r: ConvertResult): Promise<InboundEvent[]> {
  return Promise.all(r.events.map(c => completeEvent(c, deps)))
}

const counts = { cases: 0, valid: 0, validEvents: 0, validIgnored: 0, malformed: 0, malformedEvents: 0 }
afterAll(() => console.info(`Signal converter fuzz: ${JSON.stringify(counts)}`))

describe('the Signal converter under mutated fixtures', () => {
  it.each(fixtures)('%s: with unknown fields it converts as the fixture does; malformed, it never throws, keeps ranges inside the text and shows no number', async (_name, fixture) => {
    const originalEvents = await completeAll(convertInner(fixture, RELAY))
    const mine = { cases: 0, valid: 0, validEvents: 0 }
    await fc.assert(fc.asyncProperty(fc.array(additionArb, { minLength: 1, maxLength: 4 }), fc.array(mutationArb, { minLength: 1, maxLength: 4 }), async (additions, ms) => {
      // The valid case: unknown fields are ignored, and the very same events come out.
      mine.cases++
      counts.cases++
      counts.valid++
      const extended = mutate(fixture, additions)
      const valid = convertInner(extended, RELAY)
      check(valid, extended)
      expect(await completeAll(valid)).toEqual(originalEvents)
      mine.valid++
      if (originalEvents.length > 0) {
        mine.validEvents++
        counts.validEvents++
      } else counts.validIgnored++

      // The malformed case.
      mine.cases++
      counts.cases++
      counts.malformed++
      const input = mutate(fixture, ms)
      const r = convertInner(input, RELAY)
      check(r, input)
      // Fetching is where the adapter's own catch sits; here it must not throw either.
      const events = await completeAll(r)
      if (events.length > 0) counts.malformedEvents++
      for (const e of events) {
        if (e.kind === 'message' || e.kind === 'edit') {
          // eslint-disable-next-line no-control-regex
          for (const a of e.content.attachments) expect(a.filename).toMatch(/^[^/\\\u0000-\u001f\u202e]+$/u)
        }
      }
    }), { numRuns: CASES_PER_FIXTURE / 2 })
    // Counting, not hoping: at least half of the cases were valid and compared with the fixture's own events.
    expect(mine.cases).toBe(CASES_PER_FIXTURE)
    expect(mine.valid).toBeGreaterThanOrEqual(mine.cases / 2)
    // A fixture that must be relayed: those valid cases were real events, converted and compared.
    if (originalEvents.length > 0) expect(mine.validEvents).toBeGreaterThanOrEqual(mine.cases / 2)
  })

  it('most fixtures are events that must be relayed, so most valid cases compared real events', () => {
    const withEvents = fixtures.filter(([, f]) => convertInner(f, RELAY).events.length > 0).map(([n]) => n)
    expect(withEvents.length, `fixtures that convert to an event: ${withEvents.join(', ')}`).toBeGreaterThanOrEqual(fixtures.length / 2)
  })

  it('text styles and mentions at any offsets land inside the text, or are dropped', () => {
    const base = ownFixture('mention-emoji-overlapping-styles.json') as { envelope: { dataMessage: Record<string, unknown> } }
    const int = fc.oneof(fc.integer({ min: -5, max: 60 }), fc.integer(), fc.constantFrom(2 ** 31 - 1, -(2 ** 31), Number.MAX_SAFE_INTEGER))
    const style = fc.record({ style: fc.constantFrom('BOLD', 'ITALIC', 'SPOILER', 'STRIKETHROUGH', 'MONOSPACE', 'NONE', 'bold'), start: int, length: int })
    const mention = fc.record({ uuid: fc.constantFrom('e7b2d019-6c4a-4f3e-8d25-91a0c6f3b7e8', 'a3e91c47-0d52-4b8e-b6f1-2c9d7e0a5b14', 'not-a-uuid', '+15550100002'), start: int, length: int, name: fc.constantFrom('+15550100002', 'Kim'), number: fc.constant('+15550100002') })
    fc.assert(fc.property(fc.string({ unit: 'grapheme', maxLength: 30 }), fc.array(style, { maxLength: 6 }), fc.array(mention, { maxLength: 4 }), (message, textStyles, mentions) => {
      const input = structuredClone(base)
      Object.assign(input.envelope.dataMessage, { message, textStyles, mentions })
      const r = convertInner(input, RELAY)
      check(r, input)
    }), { numRuns: 2000 })
  })

  it('a sender whose profile name is a phone number, however dressed, gets a neutral label', () => {
    const base = ownFixture('mention-emoji-overlapping-styles.json') as { envelope: Record<string, unknown> }
    for (const sourceName of PHONE_NAMES) {
      const input = structuredClone(base)
      input.envelope.sourceName = sourceName
      const [c] = convertInner(input, RELAY).events
      expect(c?.event.sender.displayName).toMatch(/^Signal user [0-9a-f]{4}$/)
    }
  })
})
