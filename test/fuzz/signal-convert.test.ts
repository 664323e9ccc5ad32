// The Signal converter under mutated fixtures: the six published ones and test/fixtures/signal/*.
// Each run: FIXTURES × RUNS_PER_FIXTURE mutated envelopes (≈ 4,800), plus targeted text-style and mention
// offsets. The seed is printed by fast-check on failure.
import { readdirSync } from 'node:fs'
import path from 'node:path'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { InboundEvent } from '../../src/core/model.ts'
import { completeEvent, convertInner, type ConvertResult } from '../../src/signal/convert.ts'
import { MemoryMedia, ownFixture, repoRoot, publishedFixture } from '../signal/support.ts'
import { looksLikePhone, mutate, mutationArb, onlyAdditions, PHONE_NAMES, rangeProblems } from './mutate.ts'

const RELAY = { loginId: 'login-1', aci: '5f0c2a9e-3b7d-4e61-9a2c-7d1e8b4f6a30', displayName: 'Relay phone' }
const RUNS_PER_FIXTURE = 200

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
  groupName: async () => 'Family',
}

async function completeAll(r: ConvertResult): Promise<InboundEvent[]> {
  return Promise.all(r.events.map(c => completeEvent(c, deps)))
}

describe('the Signal converter under mutated fixtures', () => {
  it.each(fixtures)('%s: never throws, keeps ranges inside the text, shows no number, and ignores unknown fields', async (_name, fixture) => {
    const original = convertInner(fixture, RELAY)
    const originalEvents = await completeAll(original)
    await fc.assert(fc.asyncProperty(fc.array(mutationArb, { minLength: 1, maxLength: 4 }), async ms => {
      const input = mutate(fixture, ms)
      const r = convertInner(input, RELAY)
      check(r, input)
      // Fetching is where the adapter's own catch sits; here it must not throw either.
      const events = await completeAll(r)
      for (const e of events) {
        if (e.kind === 'message' || e.kind === 'edit') {
          // eslint-disable-next-line no-control-regex
          for (const a of e.content.attachments) expect(a.filename).toMatch(/^[^/\\\u0000-\u001f\u202e]+$/u)
        }
      }
      // Unknown fields are stripped: the very same event comes out.
      if (onlyAdditions(ms)) expect(events).toEqual(originalEvents)
    }), { numRuns: RUNS_PER_FIXTURE })
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
