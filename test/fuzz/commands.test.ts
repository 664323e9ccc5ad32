// `!relay` commands with generated arguments, through the running bridge: the bot always answers with a
// notice that is a sentence (never a stack trace), and a refused command changes nothing. RUNS commands
// per run (each a round trip through the fake homeserver), split between the databases (DB_KINDS);
// fast-check prints the seed on failure.
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ALICE, bridgedRoom, scenario, STRANGER, type Scenario } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { PATIENCE_MS } from '../support/patience.ts'

const RUNS = 300
const BOB = '@bob:example.org' // may use the bridge, but has no power in the room

async function state(s: Scenario): Promise<string> {
  const portals = await s.db.query('SELECT * FROM portals ORDER BY 1')
  const logins = await s.db.query('SELECT id, state FROM logins ORDER BY 1')
  return JSON.stringify([portals.rows, logins.rows, s.signal.groups.size, s.whatsapp.groups.size, s.signal.loginsWaiting, s.whatsapp.loginsWaiting])
}

/** A sentence a person can read: no stack, no internals. */
function expectSentence(notice: string, args: string[]): void {
  expect(notice.trim().length).toBeGreaterThan(3)
  // What the person typed may be quoted back; the rest must read as prose.
  for (const a of [...args].sort((x, y) => y.length - x.length)) notice = notice.replaceAll(a, 'ARG')
  expect(notice).toMatch(/^[\p{Lu}“"`•⚠✅❌*]/u)
  expect(notice).toMatch(/ /)
  expect(notice).not.toMatch(/\n\s+at |\b(TypeError|ReferenceError|RangeError|SyntaxError)\b|\[object |\bundefined\b|\bNaN\b|node_modules|\.ts:\d/)
}

const junk = fc.oneof(
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }),
  fc.constantFrom('sig nal', 'SIGNAL2', 'telegram', 'matrix', '--help', '-1', '999999999999', '""', '`x`', '<b>x</b>', '@room', 'signal-group-999', 'whatsapp-1',
    '\u202e', '😀', 'x'.repeat(2000), 'null', 'undefined', '__proto__', 'constructor', '../..'),
).filter(a => a.trim().length > 0 && !/^(signal|whatsapp)$/i.test(a.trim()))

const word = fc.constantFrom('help', 'status', 'logins', 'logout', 'groups', 'link', 'create', 'unlink', 'set', 'unset', 'HELP', 'Link', 'unknown', 'rm', '')
const network = fc.constantFrom('signal', 'whatsapp', 'Signal', 'WHATSAPP')

describe.each(DB_KINDS)('commands with wrong arguments or from people without permission (%s)', kind => {
  let s: Scenario
  let room: string
  beforeAll(async () => {
    s = await scenario(kind)
    ;({ room } = await bridgedRoom(s, ALICE, [BOB]))
    s.hs.createUser(STRANGER, { displayname: 'Mallory' })
    await s.hs.invite(ALICE, room, STRANGER)
    await s.hs.join(STRANGER, room)
  }, PATIENCE_MS * 3)
  afterAll(async () => s?.stop())

  it('are answered with a sentence, and refused ones change nothing', { timeout: PATIENCE_MS * 5 }, async () => {
    const cases = fc.oneof(
      // Someone allowed, with arguments that are wrong (never a network name where a network belongs).
      fc.record({ who: fc.constant(ALICE), word: fc.constantFrom('logout', 'groups', 'link', 'create', 'unlink', 'set', 'unset', 'rm', 'frobnicate'), args: fc.array(junk, { minLength: 0, maxLength: 3 }) }),
      // Someone allowed: link and set with a real network but a group or login that does not exist.
      fc.record({ who: fc.constant(ALICE), word: fc.constantFrom('link', 'set'), args: fc.tuple(network, junk).map(a => [...a]) }),
      // Someone without power in the room, or without permission on the bridge, even with good arguments.
      fc.record({ who: fc.constantFrom(BOB, STRANGER), word, args: fc.oneof(fc.array(junk, { maxLength: 2 }), network.map(n => [n]), fc.tuple(network, junk).map(a => [...a])) }),
      // Harmless ones with any arguments still answer.
      fc.record({ who: fc.constantFrom(ALICE, BOB, STRANGER), word: fc.constantFrom('help', 'status', 'logins'), args: fc.array(junk, { maxLength: 2 }) }),
    )
    await fc.assert(fc.asyncProperty(cases, async ({ who, word, args }) => {
      const before = await state(s)
      const notice = await s.command(who, room, ['!relay', word, ...args].join(' ').trim())
      expectSentence(notice, args)
      // Only `help`, `status` and `logins` may answer without refusing, and they change nothing either.
      expect(await state(s)).toBe(before)
    }), { numRuns: Math.ceil(RUNS / DB_KINDS.length) })
    // Nothing of this reached the groups.
    expect(s.signal.sent).toEqual([])
    expect(s.whatsapp.sent).toEqual([])
  })
})
