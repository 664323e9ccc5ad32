// Matrix people's typing and read receipts reach the bridge in transactions (`ephemeral`) and stop there:
// relayed, the relay account would look like it was typing and reading in the groups.
import { afterEach, describe, expect, it } from 'vitest'
import { groupText } from '../fakes/signal-envelopes.ts'
import { ALICE } from '../support/bridge.ts'
import { SIG_BOB, SIG_RELAY, WA_DAVE, bridgedRoom, realScenario, until, type RealScenario } from '../support/networks.ts'
import { content } from '../support/relay.ts'

describe('Matrix typing and read receipts', () => {
  let s: RealScenario
  afterEach(async () => s?.stop())

  it('are accepted and counted, and never become a typing, read or presence call to Signal or WhatsApp', async () => {
    s = await realScenario('pglite', { configure: raw => { raw.metrics.enabled = true } })
    const { room, signalGroup, whatsappGroup } = await bridgedRoom(s, { signal: true, whatsapp: true })
    s.daemon.push(SIG_RELAY.number, groupText(SIG_BOB, signalGroup!, 'from Bob'))
    const bobs = await s.hs.waitForEvent(room, e => content(e).body === 'from Bob')
    s.wa.deliver({ chat: whatsappGroup!, from: WA_DAVE, pushName: 'Dave', message: { conversation: 'from Dave' } })
    const daves = await s.hs.waitForEvent(room, e => content(e).body === 'from Dave')

    s.hs.setTyping(ALICE, room, true)
    s.hs.markRead(ALICE, room, bobs.event_id)
    s.hs.markRead(ALICE, room, daves.event_id)
    s.hs.setTyping(ALICE, room, false)
    // The marker, sent after: once it is in both groups, anything the ephemeral events caused would be too.
    await s.hs.sendMessage(ALICE, room, 'marker')
    await s.daemon.waitForCall('send', c => c.params['message'] === 'Alice (Matrix): marker')
    await until(() => s.wa.sent.some(m => m.jid === whatsappGroup && String(m.content['text']).endsWith('marker')), 'the marker on WhatsApp')

    expect(s.daemon.calls.filter(c => c.method === 'sendTyping' || c.method === 'sendReceipt').map(c => c.method)).toEqual([])
    expect(s.wa.presenceSent).toEqual([])
    expect(s.wa.reads).toEqual([])
    const metrics = await (await fetch(`http://127.0.0.1:${s.bridge.metricsPort}/metrics`)).text()
    const counted = (type: string) => Number(new RegExp(`relay_bridge_matrix_ephemeral_total\\{type="${type}",outcome="not_relayed"\\} (\\d+)`).exec(metrics)?.[1] ?? 0)
    // A transaction the homeserver retried is counted again: at least what was sent.
    expect(counted('m.typing')).toBeGreaterThanOrEqual(2) // started, stopped
    expect(counted('m.receipt')).toBeGreaterThanOrEqual(2)
  })
})
