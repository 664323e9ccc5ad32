// Typing and read receipts from the WhatsApp group, through the whole bridge: the real WhatsAppNetwork
// against the fake socket (which emits presence.update and message-receipt.update as rc14 does), the real
// bridge against the fake homeserver.
import { afterEach, describe, expect, it } from 'vitest'
import { ALICE } from '../support/bridge.ts'
import { WA_DAVE, WA_ERIN, bridgedRoom, realScenario, until, type RealScenario } from '../support/networks.ts'
import { content, settled } from '../support/relay.ts'

describe('WhatsApp typing and read receipts through the bridge', () => {
  let s: RealScenario
  afterEach(async () => s?.stop())

  async function setup(configure?: (raw: Record<string, any>) => void) {
    s = await realScenario('pglite', configure ? { configure } : {})
    const r = await bridgedRoom(s, { signal: false, whatsapp: true })
    const room = r.room
    const group = r.whatsappGroup!
    // Dave has spoken, so his ghost is in the room.
    s.wa.deliver({ chat: group, from: WA_DAVE, pushName: 'Dave', message: { conversation: 'hi all' } })
    const daves = await s.hs.waitForEvent(room, e => content(e).body === 'hi all')
    return { room, group, dave: daves.sender }
  }
  const calls = (what: 'typing' | 'receipt') => s.hs.calls.filter(c => c.path.includes(`/${what}/`))
  /** Alice says something in Matrix; answers her event and the id of the relay's WhatsApp copy. */
  async function aliceSays(room: string, group: string, text: string): Promise<{ event: string; id: string }> {
    const before = s.wa.sent.length
    const event = await s.hs.sendMessage(ALICE, room, text)
    const copy = await until(() => s.wa.sent.slice(before).find(m => m.jid === group), 'the relay’s WhatsApp copy')
    await settled(s)
    return { event, id: copy.id }
  }

  it('Dave composing, recording and pausing in the group shows as his ghost typing in Matrix and stopping', async () => {
    const { room, group, dave } = await setup()
    // WhatsApp sends chat states of a group to a device that asked for them: the bridge subscribes.
    await until(() => s.wa.typing({ chat: group, from: WA_DAVE, state: 'composing' }), 'the bridge to subscribe to the group’s presence')
    await s.hs.waitFor(() => s.hs.typingIn(room).includes(dave), { what: 'Dave’s ghost to be typing' })
    s.wa.typing({ chat: group, from: WA_DAVE, state: 'paused' })
    await s.hs.waitFor(() => !s.hs.typingIn(room).includes(dave), { what: 'Dave’s ghost to stop typing' })
    s.wa.typing({ chat: group, from: WA_DAVE, state: 'recording' })
    await s.hs.waitFor(() => s.hs.typingIn(room).includes(dave), { what: 'Dave’s ghost to be typing while recording' })
    expect(calls('typing').filter(c => c.user === dave).map(c => (c.body as { typing: boolean }).typing)).toEqual([true, false, true])
    expect(JSON.stringify(calls('typing'))).not.toContain('15550100042')
  })

  it('Erin reading the relay’s copy marks Alice’s event read by Erin’s ghost; delivery and the relay phone’s own reads do nothing', async () => {
    const { room, group } = await setup()
    s.wa.deliver({ chat: group, from: WA_ERIN, pushName: 'Erin', message: { conversation: 'me too' } })
    const erin = (await s.hs.waitForEvent(room, e => content(e).body === 'me too')).sender
    const first = await aliceSays(room, group, 'dinner at 8?')
    const second = await aliceSays(room, group, 'or 9?')
    s.wa.receipts({ chat: group, by: WA_ERIN, ids: [first.id, second.id], kind: 'delivery' })
    s.wa.phoneActivity('receipt')
    s.wa.receipts({ chat: group, by: WA_ERIN, ids: ['NEVER-SENT'] })
    s.wa.receipts({ chat: group, by: WA_ERIN, ids: [first.id, second.id] })
    await s.hs.waitFor(() => s.hs.receiptsIn(room)[erin]?.eventId === second.event, { what: 'Erin’s read receipt on Alice’s second message' })
    expect(calls('receipt')).toHaveLength(1)
    expect(Object.keys(s.hs.receiptsIn(room))).toEqual([erin])
  })

  it('with receipts_to_matrix off, Dave’s reading stays out of Matrix while his typing still shows', async () => {
    const { room, group, dave } = await setup(raw => {
      raw.bridge.receipts_to_matrix = false
    })
    const msg = await aliceSays(room, group, 'ok?')
    s.wa.receipts({ chat: group, by: WA_DAVE, ids: [msg.id] })
    await until(() => s.wa.typing({ chat: group, from: WA_DAVE, state: 'composing' }), 'the bridge to subscribe to the group’s presence')
    await s.hs.waitFor(() => s.hs.typingIn(room).includes(dave), { what: 'Dave’s ghost to be typing' })
    expect(calls('receipt')).toEqual([])
  })
})
