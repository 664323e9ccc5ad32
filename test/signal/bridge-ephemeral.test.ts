// Typing and read receipts from the Signal group, through the whole bridge: a person's typing and reading
// show in Matrix on their ghost, on the Matrix event of the message they read, and nowhere else.
import { afterEach, describe, expect, it } from 'vitest'
import { groupText, receipt, typing, type FakeSender } from '../fakes/signal-envelopes.ts'
import { ALICE } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { SIG_BOB, SIG_RELAY, bridgedRoom, realScenario, type RealScenario } from '../support/networks.ts'
import { content, settled, until } from '../support/relay.ts'

const ghost = (p: FakeSender) => `@signal_${p.aci}:example.org`
/** Someone no longer in the group (the group's members are in the room as ghosts since it was linked). */
const SIG_GONE: FakeSender = { number: null, aci: '9d8c7b6a-5e4f-4a3b-8c2d-1e0f9a8b7c6d', name: 'Gone' }

describe.each(DB_KINDS)('Signal typing and read receipts through the bridge on %s', kind => {
  let s: RealScenario
  afterEach(async () => s?.stop())

  async function setup(configure?: (raw: Record<string, any>) => void) {
    s = await realScenario(kind, configure ? { configure } : {})
    const r = await bridgedRoom(s)
    const room = r.room
    const group = r.signalGroup!
    // Bob has spoken (his ghost has been in the room since the group was linked, and now has his name).
    s.daemon.push(SIG_RELAY.number, groupText(SIG_BOB, group, 'hi all'))
    await s.hs.waitForEvent(room, e => content(e).body === 'hi all')
    return { room, group }
  }
  const push = (env: Record<string, unknown>) => s.daemon.push(SIG_RELAY.number, env)
  const calls = (what: 'typing' | 'receipt') => s.hs.calls.filter(c => c.path.includes(`/${what}/`))
  /** Alice says something in Matrix; answers her event and the sent timestamp of the relay's Signal copy. */
  async function aliceSays(room: string, text: string): Promise<{ event: string; ts: number }> {
    const before = s.daemon.calls.length
    const event = await s.hs.sendMessage(ALICE, room, text)
    const call = await s.daemon.waitForCall('send', c => c.params['message'] === `Alice (Matrix): ${text}`, before)
    await settled(s) // the relay's copy is recorded once the daemon has answered
    return { event, ts: (call.result as { timestamp: number }).timestamp }
  }

  it('Bob typing in the Signal group shows as his ghost typing in Matrix, with a timeout, until he stops', async () => {
    const { room, group } = await setup()
    push(typing(SIG_BOB, group, 'STARTED'))
    await s.hs.waitFor(() => s.hs.typingIn(room).includes(ghost(SIG_BOB)), { what: 'Bob’s ghost to be typing' })
    const start = calls('typing').find(c => c.user === ghost(SIG_BOB))!
    expect(start.body).toMatchObject({ typing: true, timeout: expect.any(Number) })
    push(typing(SIG_BOB, group, 'STOPPED'))
    await s.hs.waitFor(() => !s.hs.typingIn(room).includes(ghost(SIG_BOB)), { what: 'Bob’s ghost to stop typing' })
    // Typing in a one-to-one chat with the relay (no group id) is nobody's business in the room.
    push(typing(SIG_BOB, undefined, 'STARTED'))
    push(groupText(SIG_BOB, group, 'marker'))
    await s.hs.waitForEvent(room, e => content(e).body === 'marker')
    expect(calls('typing').filter(c => (c.body as { typing: boolean }).typing)).toHaveLength(1)
  })

  it('Bob reading the relay’s copies marks the latest of Alice’s events read by his ghost; delivery receipts, unknown messages and the relay’s own device do nothing', async () => {
    const { room } = await setup()
    const first = await aliceSays(room, 'dinner at 8?')
    const second = await aliceSays(room, 'or 9?')
    push(receipt(SIG_BOB, [first.ts, second.ts], 'delivery'))
    push(receipt(SIG_BOB, [second.ts + 1], 'read')) // a message the relay never sent
    push(receipt({ number: SIG_RELAY.number, aci: SIG_RELAY.aci, name: SIG_RELAY.name, device: 2 }, [first.ts], 'read'))
    push(receipt(SIG_BOB, [first.ts, second.ts], 'read'))
    await s.hs.waitFor(() => s.hs.receiptsIn(room)[ghost(SIG_BOB)]?.eventId === second.event, { what: 'Bob’s read receipt on Alice’s second message' })
    expect(calls('receipt')).toHaveLength(1)
    expect(calls('receipt')[0]).toMatchObject({ method: 'POST', user: ghost(SIG_BOB), status: 200 })
    expect(Object.keys(s.hs.receiptsIn(room))).toEqual([ghost(SIG_BOB)])
  })

  it('Bob reading the relay’s copy before the daemon’s answer has reached the bridge still marks Alice’s event read', async () => {
    const { room, group } = await setup()
    let answer!: () => void
    s.daemon.answersHeld = new Promise<void>(resolve => (answer = resolve))
    const before = s.daemon.calls.length
    const event = await s.hs.sendMessage(ALICE, room, 'read me')
    const call = await s.daemon.waitForCall('send', c => c.params['message'] === 'Alice (Matrix): read me', before)
    // The copy is on Bob's phone; the bridge still waits for the answer that tells it the copy's timestamp.
    push(receipt(SIG_BOB, [(call.result as { timestamp: number }).timestamp], 'read'))
    // Bob's next message came after the receipt on the same stream: once it is in Matrix, the receipt was taken in.
    push(groupText(SIG_BOB, group, 'read it'))
    await s.hs.waitForEvent(room, e => content(e).body === 'read it')
    s.daemon.answersHeld = undefined
    answer()
    await s.hs.waitFor(() => s.hs.receiptsIn(room)[ghost(SIG_BOB)]?.eventId === event, { what: 'Bob’s read receipt on Alice’s event' })
  })

  it('a receipt from someone whose ghost never joined the room is dropped, not refused by the homeserver', async () => {
    const { room } = await setup()
    const msg = await aliceSays(room, 'anyone?')
    push(receipt(SIG_GONE, [msg.ts], 'read'))
    push(receipt(SIG_BOB, [msg.ts], 'read'))
    await s.hs.waitFor(() => s.hs.receiptsIn(room)[ghost(SIG_BOB)], { what: 'Bob’s read receipt' })
    // The first receipt went first on the same stream and is handled first: by now it was looked at and left alone.
    expect(calls('receipt').filter(c => c.status !== 200)).toEqual([])
    expect(s.hs.receiptsIn(room)[ghost(SIG_GONE)]).toBeUndefined()
  })

  it('with typing_to_matrix off, Bob’s typing stays out of Matrix while his receipts still arrive', async () => {
    const { room, group } = await setup(raw => {
      raw.bridge.typing_to_matrix = false
    })
    const msg = await aliceSays(room, 'ok?')
    push(typing(SIG_BOB, group, 'STARTED'))
    push(receipt(SIG_BOB, [msg.ts], 'read'))
    await s.hs.waitFor(() => s.hs.receiptsIn(room)[ghost(SIG_BOB)]?.eventId === msg.event, { what: 'Bob’s read receipt' })
    expect(calls('typing')).toEqual([])
  })

  it('in a portal that became encrypted, Bob’s typing and read receipts still show on his ghost: Matrix never encrypts them', async () => {
    const { room, group } = await setup(raw => {
      raw.encryption = { allow: true, store_key: 'c'.repeat(64) }
    })
    const msg = await aliceSays(room, 'secret plans?')
    await s.hs.sendEvent(ALICE, room, 'm.room.encryption', { algorithm: 'm.megolm.v1.aes-sha2' }, { stateKey: '' })
    await until(async () => (await s.db.query<{ encrypted: boolean }>('SELECT encrypted FROM portals WHERE room_id = $1', [room])).rows[0]?.encrypted, 'the portal to know it is encrypted')
    push(typing(SIG_BOB, group, 'STARTED'))
    await s.hs.waitFor(() => s.hs.typingIn(room).includes(ghost(SIG_BOB)), { what: 'Bob’s ghost to be typing' })
    push(receipt(SIG_BOB, [msg.ts], 'read'))
    await s.hs.waitFor(() => s.hs.receiptsIn(room)[ghost(SIG_BOB)]?.eventId === msg.event, { what: 'Bob’s read receipt' })
  })
})
