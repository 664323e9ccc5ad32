// The homeserver → appservice endpoint under generated input, through the running bridge (fake homeserver,
// two in-memory networks, two bridged rooms). Oracle: every valid m.room.message text is relayed to both
// groups of its room exactly once, in order, text intact; every other generated event and request is
// refused or skipped, and nothing else ever reaches a group.
//
// The numbers: RUNS transactions, each with 1–12 events (on average about half valid messages, half
// junk), and JUNK_REQUESTS whole requests that are no transaction at all (400) or over the body limit
// (413). That is about RUNS × 6.5 + JUNK_REQUESTS ≈ 3,000 generated cases per run, ~1,000 of them
// messages that must be relayed (×2 networks). They are split between the databases (DB_KINDS): each kind
// gets its own bridge, its share of the runs and its own seed (SEED + the kind's index), so the halves
// differ. Relaying is the slow part (a few ms per message and target), so the valid share is counted in
// messages rather than in whole requests. The seed is printed by fast-check on a property failure and named
// in the final oracle's message; rerun with FUZZ_SEED=<seed>.
import { request } from 'node:http'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ALICE, bridgedRoom, scenario, type Scenario } from '../support/bridge.ts'
import { HS_TOKEN } from '../support/config.ts'
import type { MemoryGroup } from '../fakes/memory-network.ts'
import { DB_KINDS } from '../support/db.ts'
import { PATIENCE_MS } from '../support/patience.ts'

const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31)
const RUNS = 400
const JUNK_REQUESTS = 400
/** This run's share of each, per database kind. */
const share = (n: number) => Math.ceil(n / DB_KINDS.length)
const GHOST = '@signal_0b4e6a52-9a55-4c2e-9f5d-1c1a6f7e2b3c:example.org'

type Room = { room: string; sg: MemoryGroup; wg: MemoryGroup }

/** Text a person might type: emoji, RTL, markup characters, control characters, lone surrogates. */
const pieces = fc.oneof(
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 6 }),
  fc.constantFrom('<b>', '&amp;', '<', '>', '&', '"', "'", '😀', '👍🏽', '𝄞', 'שלום', 'مرحبا', '\u202e', '\u200f', '\t', '\r\n',
    '\u0000', '\u0007', '\u001b[31m', '\u007f', '\u0085', '\ud800', '\udfff', '*bold*', '_it_', '`code`', '\n', ' '),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 4 }),
)
const textArb = fc.array(pieces, { minLength: 1, maxLength: 8 }).map(p => p.join(''))
  // Commands are answered, not relayed (fuzzed in commands.test.ts); blank text is nothing to relay.
  .filter(t => !/^\s*!relay/iu.test(t) && t.trim().length > 0)

/** What a group sees of a relayed text: PostgreSQL keeps no NUL or lone surrogate (stored as U+FFFD). */
const stored = (t: string) => t.replace(/\0|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/gu, '\uFFFD')

let s: Scenario
let rooms: Room[]
let otherRoom: string
let eventCounter = 0
let txnCounter = 0
/** Per room, the texts that must arrive, in order. */
const expected = new Map<string, string[]>()
const counts = { requests: 0, valid: 0, junkEvents: 0, junkRequests: 0, duplicates: 0 }

const newEventId = () => `$fz${SEED}-${++eventCounter}:example.org`

/** PUTs a transaction on a connection of its own. A reused keep-alive connection can be closed by the
 * bridge's idle timeout just as the next request goes out (an ECONNRESET on a loaded machine), which says
 * nothing about the endpoint; a homeserver retries such a request, this test would only fail. */
function put(body: string | Buffer, txnId = `fz-${SEED}-${++txnCounter}`): Promise<{ status: number; errcode?: string }> {
  counts.requests++
  return new Promise((resolve, reject) => {
    let answered = false
    const req = request(`http://127.0.0.1:${s.bridge.port}/_matrix/app/v1/transactions/${encodeURIComponent(txnId)}`, {
      method: 'PUT', agent: false,
      headers: { Authorization: `Bearer ${HS_TOKEN}`, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
    }, res => {
      answered = true
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('error', reject)
      res.on('end', () => {
        let json: { errcode?: string } = {}
        try {
          json = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { errcode?: string }
        } catch {
          // No JSON body: only the status is compared.
        }
        resolve({ status: res.statusCode!, ...(json.errcode ? { errcode: json.errcode } : {}) })
      })
    })
    // The bridge may answer 413 before a 32 MiB body is all sent; the answer is what counts.
    req.on('error', err => {
      if (!answered) reject(err)
    })
    req.end(body)
  })
}

type Ev = Record<string, unknown>
const message = (room: string, body: unknown, extra: Ev = {}, content: Ev = {}): Ev => ({
  event_id: newEventId(), room_id: room, type: 'm.room.message', sender: ALICE, origin_server_ts: Date.now(),
  content: { msgtype: 'm.text', body, ...content }, ...extra,
})

// JSON.stringify cannot write 10k levels (it overflows near 4k), so deep values are spliced in as text.
const DEEP = '__deep_10k__'
const deepJson = '['.repeat(10_000) + ']'.repeat(10_000)
const serialize = (v: unknown): string => JSON.stringify(v).replaceAll(`"${DEEP}"`, deepJson)
const wrongValue = fc.oneof(
  fc.constantFrom<unknown>(null, 0, -1, 1.5, true, false, [], {}, [1, 2], { a: 1 }, '', 'x'.repeat(300)),
  fc.integer(), fc.double(),
)

/** An event that must not be relayed, built by mutating a valid message. */
function junkEvent(room: string): fc.Arbitrary<unknown> {
  const base = () => message(room, 'must never arrive')
  const field = fc.constantFrom('event_id', 'room_id', 'type', 'sender', 'content')
  return fc.oneof(
    // Not an object at all.
    fc.constantFrom<unknown>(null, 42, 'event', true, [], [message(room, 'in an array')]),
    // A required field missing, or of the wrong type.
    field.map(f => { const e = base(); delete e[f]; return e }),
    fc.tuple(field, wrongValue).map(([f, v]) => ({ ...base(), [f]: v })),
    // Content of the wrong shape for a text message.
    wrongValue.filter(v => typeof v !== 'string').map(v => message(room, v)),
    wrongValue.filter(v => typeof v !== 'string' && v !== undefined).map(v => message(room, 'bad msgtype', {}, { msgtype: v })),
    fc.constantFrom('m.image', 'm.file', 'm.video', 'm.location', 'm.bad', 'm.notice').map(t => message(room, 'wrong msgtype', {}, { msgtype: t })),
    // Unknown event types, state events, the wrong room, echoes of our own ghosts.
    fc.constantFrom('m.room.messagex', 'org.example.custom', 'm.room.topic', 'm.call.invite', 'M.ROOM.MESSAGE', '').map(type => ({ ...base(), type })),
    fc.constant(0).map(() => message(room, 'a state event', { state_key: '' })),
    fc.constant(0).map(() => message(otherRoom, 'an unbridged room')),
    fc.constant(0).map(() => message(room, 'from a ghost', { sender: GHOST })),
    // Deep nesting (10k levels), ids with NUL or lone surrogates, huge ids.
    fc.constant(0).map(() => message(room, 'deep', {}, { deep: DEEP })),
    fc.constant(0).map(() => ({ ...base(), event_id: `$nul\u0000${eventCounter}` })),
    fc.constant(0).map(() => ({ ...base(), event_id: `$sur\ud800${eventCounter}` })),
    fc.constant(0).map(() => ({ ...base(), event_id: `$${'x'.repeat(70_000)}` })),
    // Reactions, redactions and edits of events that do not exist.
    fc.constant(0).map(() => ({ ...base(), type: 'm.reaction', content: { 'm.relates_to': { rel_type: 'm.annotation', event_id: '$nope', key: '👍' } } })),
    fc.constant(0).map(() => ({ ...base(), type: 'm.room.redaction', content: { redacts: '$nope' } })),
  )
}

// The helpers above act on the current kind's bridge: the kinds run one after the other.
describe.each(DB_KINDS)('the transaction endpoint under generated input (%s)', kind => {
  const seed = SEED + DB_KINDS.indexOf(kind)
  beforeAll(async () => {
    s = await scenario(kind)
    rooms = [await bridgedRoom(s), await bridgedRoom(s)]
    otherRoom = await s.hs.createRoom(ALICE, { invite: [s.hs.botUserId] })
    await s.hs.waitFor(() => s.hs.membership(otherRoom, s.hs.botUserId) === 'join')
    expected.clear()
    for (const r of rooms) expected.set(r.room, [])
    for (const k of Object.keys(counts) as Array<keyof typeof counts>) counts[k] = 0
  }, PATIENCE_MS * 3)
  afterAll(async () => s?.stop())

  it('answers every transaction, stores valid and junk events alike, and relays only the valid messages', { timeout: PATIENCE_MS * 5 }, async () => {
    const entry = fc.oneof(
      { weight: 1, arbitrary: fc.record({ valid: fc.constant(true as const), text: textArb, room: fc.nat({ max: 1 }), noMsgtype: fc.boolean() }) },
      { weight: 1, arbitrary: fc.record({ valid: fc.constant(false as const), room: fc.nat({ max: 1 }), make: fc.constant(null) }) },
    )
    const txn = fc.record({
      entries: fc.array(entry, { minLength: 1, maxLength: 12 }),
      junkSeeds: fc.array(fc.nat(), { minLength: 12, maxLength: 12 }),
      repeatTxn: fc.boolean(),
      repeatEvent: fc.boolean(),
      ephemeral: fc.boolean(),
    })
    await fc.assert(fc.asyncProperty(txn, async ({ entries, junkSeeds, repeatTxn, repeatEvent, ephemeral }) => {
      const events: unknown[] = []
      entries.forEach((e, i) => {
        const r = rooms[e.room]!
        if (e.valid) {
          const ev = message(r.room, e.text)
          if (e.noMsgtype) delete (ev.content as Ev).msgtype // the spec's reply example has none
          events.push(ev)
          expected.get(r.room)!.push(`Alice (Matrix): ${stored(e.text)}`)
          counts.valid++
          // The same event again, in the same transaction: a no-op.
          if (repeatEvent && i === 0) { events.push(ev); counts.duplicates++ }
        } else {
          const [junk] = fc.sample(junkEvent(r.room), { seed: junkSeeds[i]!, numRuns: 1 })
          events.push(junk)
          counts.junkEvents++
        }
      })
      const body = serialize({ events, ...(ephemeral ? { ephemeral: [{ type: 'm.typing', content: 7 }, null] } : {}), unknown_key: { a: [1] } })
      const txnId = `fz-${SEED}-${++txnCounter}`
      expect(await put(body, txnId)).toEqual({ status: 200 })
      // The homeserver retries with the same txnId: acknowledged, processed once.
      if (repeatTxn) {
        expect(await put(body, txnId)).toEqual({ status: 200 })
        counts.duplicates++
      }
    }), { seed, numRuns: share(RUNS) })

    // Whole requests that are no storable transaction.
    const notJson = fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 64 }).map(b => Buffer.concat([Buffer.from('{"events":[{'), Buffer.from(b), Buffer.from([0xff, 0xfe, 0xc3])])),
      fc.string({ maxLength: 30 }).map(t => `{"events": [${t}`),
      fc.constantFrom('{', '{"events":}', 'nul\u0000l', '\ufeff{"events":[]', "{'events': []}", '{"events":[],}', 'NaN', '[' .repeat(100_000)),
    ).map(body => ({ body, want: [400, 'M_NOT_JSON'] as const }))
    const notTransaction = fc.oneof(
      fc.constantFrom<unknown>(null, 1, 'events', true, [], [{ events: [] }], {}, { events: null }, { events: {} }, { events: 'x' }, { events: 5 }, { Events: [] }),
      wrongValue.map(v => ({ events: v })).filter(b => !Array.isArray(b.events)),
      fc.constant(0).map(() => ({ events: { 0: message(rooms[0]!.room, 'an object, not an array') } })),
      fc.constant(DEEP),
      fc.constant({ events: 'deep', deep: DEEP }),
    ).map(v => ({ body: serialize(v), want: [400, 'M_BAD_JSON'] as const }))
    // Both sides of the body limit: padding in a key no one reads.
    const limit = s.config.appservice.max_body_bytes
    const sized = fc.integer({ min: -2048, max: 2048 }).map(delta => {
      const skeleton = JSON.stringify({ events: [], pad: '' })
      const body = JSON.stringify({ events: [], pad: 'p'.repeat(Math.max(0, limit + delta - skeleton.length)) })
      return { body, want: body.length > limit ? [413, 'M_TOO_LARGE'] as const : [200, undefined] as const }
    })
    let bigOnes = 0
    await fc.assert(fc.asyncProperty(fc.oneof({ weight: 10, arbitrary: notJson }, { weight: 10, arbitrary: notTransaction }, { weight: 1, arbitrary: sized }), async ({ body, want }) => {
      if (want[0] !== 400 && ++bigOnes > share(12)) return // a dozen 32 MiB bodies per run is enough
      counts.junkRequests++
      const got = await put(body)
      expect(got).toEqual({ status: want[0], ...(want[1] ? { errcode: want[1] } : {}) })
    }), { seed, numRuns: share(JUNK_REQUESTS) })
    // An invalid txn id in the path is a client error, never a 500.
    expect(await fetch(`http://127.0.0.1:${s.bridge.port}/_matrix/app/v1/transactions/%E0%A4%A`, { method: 'PUT', headers: { Authorization: `Bearer ${HS_TOKEN}` }, body: '{"events":[]}' }).then(r => r.status)).toBe(400)
    expect(await fetch(`http://127.0.0.1:${s.bridge.port}/_matrix/app/v1/transactions/a%00b`, { method: 'PUT', headers: { Authorization: `Bearer ${HS_TOKEN}` }, body: '{"events":[]}' }).then(r => r.status)).toBe(400)

    // The bridge still works: one last message per room goes through. Each group's queue is ordered, so once
    // it has arrived, anything sent twice before it would have arrived too.
    const last = `still alive ${SEED}`
    expect(await put(JSON.stringify({ events: rooms.map(r => message(r.room, last)) }))).toEqual({ status: 200 })
    for (const r of rooms) expected.get(r.room)!.push(`Alice (Matrix): ${last}`)

    // The oracle: each group got exactly its room's valid texts, in order, once; nothing else arrived.
    const why = `${kind}, seed ${seed} (rerun with FUZZ_SEED=${SEED})`
    for (const r of rooms) {
      const want = expected.get(r.room)!
      for (const [net, group] of [[s.signal, r.sg], [s.whatsapp, r.wg]] as const) {
        await net.waitFor(() => net.sentTo(group.id).at(-1)?.text === want.at(-1), `the last message in ${group.id}`)
        expect(net.sentTo(group.id).map(x => x.text), `${net.network} / ${r.room}, ${why}`).toEqual(want)
      }
    }
    expect(s.signal.sent.length + s.whatsapp.sent.length, why).toBe(2 * (expected.get(rooms[0]!.room)!.length + expected.get(rooms[1]!.room)!.length))
    console.info(`transaction fuzz, ${why}: ${JSON.stringify(counts)}`)
  })
})
