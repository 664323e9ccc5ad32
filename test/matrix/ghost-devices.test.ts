// Each ghost speaks in an encrypted room from a device of its own, cross-signed by its own identity (issue 14):
// Alice's device (a real Olm peer) reads each ghost's message as sent by a device its sender owns, whose owner
// signed it, and the bot's notices from the bot's device. The ghosts' machines are loaded only while they speak
// and unloaded beyond the configured number, and a ghost keeps its device across unloads, restarts and a
// homeserver without MSC4190.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { InboundEvent } from '../../src/core/model.ts'
import type { FakeEvent } from '../fakes/homeserver.ts'
import type { MemoryGroup } from '../fakes/memory-network.ts'
import { ALICE, linkedLogin, scenario, type Scenario } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { encryptedPortal, reader } from '../support/encrypted-room.ts'
import { OlmPeer } from '../support/olm-peer.ts'

const BOB = { network: 'signal' as const, id: 'aci-bob', displayName: 'Bob' }
const CAROL = { network: 'signal' as const, id: 'aci-carol', displayName: 'Carol' }
const DAVE = { network: 'whatsapp' as const, id: 'wa-dave', displayName: 'Dave' }
const GHOST = { bob: '@signal_aci-bob:example.org', carol: '@signal_aci-carol:example.org', dave: '@whatsapp_wa-dave:example.org' }

const encryption = (raw: Record<string, any>) => {
  raw.encryption = { allow: true, key_wait_seconds: 300, store_key: 'a'.repeat(64), ghost_devices_in_memory: 1 }
  raw.metrics = { enabled: true, hostname: '127.0.0.1', port: 0 }
}

describe.each(DB_KINDS)('ghosts with devices of their own, on %s', kind => {
  let s: Scenario
  let alice: OlmPeer
  let read: ReturnType<typeof reader>
  let room: string
  let sg: MemoryGroup
  let wg: MemoryGroup
  let n = 0

  beforeAll(async () => {
    s = await scenario(kind, { configure: encryption })
    s.hs.createUser(ALICE, { displayname: 'Alice' })
    alice = await OlmPeer.login(s.hs, ALICE)
    read = reader(s.hs, alice)
    const sigLogin = await linkedLogin(s, s.signal)
    const waLogin = await linkedLogin(s, s.whatsapp)
    ;({ room, sg, wg } = await encryptedPortal(s, alice, read, { signal: sigLogin, whatsapp: waLogin }))
  })
  afterAll(async () => {
    await alice?.close()
    await s?.stop()
  })

  /** `who` says `text` in their group; the event Alice reads and the device that encrypted it, as her device sees
   * it: the sender's device (none when the sender does not own the device) and its curve25519 key. */
  async function says(who: { network: 'signal' | 'whatsapp'; id: string; displayName: string }, text: string): Promise<{ event: FakeEvent; device: string; senderKey: string }> {
    const group = who.network === 'signal' ? sg : wg
    await s[who.network].inbound({ chat: { network: who.network, id: group.id }, sender: who, remoteId: `m-${++n}`, timestamp: Date.now(), kind: 'message', content: { kind: 'text', body: { text, styles: [], links: [], mentions: [] }, attachments: [] } } as InboundEvent)
    const event = await read.find(room, e => e.content.body === text, `"${text}" in the room`)
    const opened = await alice.read(s.hs.timeline(room).find(e => e.event_id === event.event_id)!)
    if (opened.kind !== 'decrypted') throw new Error(`Alice cannot read "${text}": ${opened.message}`)
    return { event, device: opened.senderDevice!, senderKey: opened.senderCurve25519Key }
  }

  const devicesOf = (mxid: string) => [...(s.hs.e2ee.devices.get(mxid)?.keys() ?? [])]
  const curveKeysOf = (mxid: string) => [...(s.hs.e2ee.devices.get(mxid)?.values() ?? [])].map(d => (d.keys?.['keys'] as Record<string, string>)[`curve25519:${d.deviceId}`])

  async function signedByOwner(mxid: string, device: string): Promise<boolean> {
    await alice.crypto.trackUsers([mxid])
    return alice.crypto.isCrossSignedByOwner(mxid, device)
  }

  async function metric(what: string): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${s.bridge.metricsPort}/metrics`)).text()
    const line = text.split('\n').find(l => l.startsWith(`relay_bridge_ghost_devices{what="${what}"}`))
    return line ? Number(line.split(' ').at(-1)) : 0
  }

  it("a Signal ghost's and a WhatsApp ghost's messages come from devices they own, each signed by its ghost's own identity; the bot speaks from its own", async () => {
    const bob = await says(BOB, 'hello from Signal')
    expect(bob.event.sender).toBe(GHOST.bob)
    expect(devicesOf(GHOST.bob)).toEqual([bob.device])
    expect(await signedByOwner(GHOST.bob, bob.device)).toBe(true)

    const dave = await says(DAVE, 'hello from WhatsApp')
    expect(dave.event.sender).toBe(GHOST.dave)
    expect(devicesOf(GHOST.dave)).toEqual([dave.device])
    expect(await signedByOwner(GHOST.dave, dave.device)).toBe(true)

    // The bot's answer to a command comes from the bot's device, which the bot's identity signed.
    await alice.send(room, '!relay help')
    const help = await read.notice(room, /relay/)
    const opened = await alice.read(s.hs.timeline(room).find(e => e.event_id === help.event_id)!)
    expect(opened.kind === 'decrypted' && devicesOf(s.hs.botUserId).includes(opened.senderDevice!)).toBe(true)
    expect(opened.kind === 'decrypted' && opened.senderDevice).not.toBe(bob.device)
    expect(await metric('created')).toBe(2)
  })

  it('with room for one ghost machine in memory, ghosts speaking in turn are unloaded and loaded again, each with the same device', async () => {
    const loadsBefore = await metric('loads')
    const first = await says(BOB, 'Bob, once more')
    const other = await says(DAVE, 'Dave, once more')
    const again = await says(BOB, 'Bob, a third time')
    expect(first.device).toBe(again.device)
    expect(other.device).toBe(devicesOf(GHOST.dave)[0])
    expect(devicesOf(GHOST.bob)).toEqual([first.device])
    expect(await metric('loads')).toBeGreaterThanOrEqual(loadsBefore + 2)
    expect(await metric('unloads')).toBeGreaterThanOrEqual(2)
    expect(await metric('loaded')).toBeLessThanOrEqual(1)
    expect(await metric('created')).toBe(2) // nothing made twice
  })

  it('after a restart a ghost speaks from the same device, and what it said before still opens', async () => {
    const before = await says(BOB, 'before the restart')
    await s.restart()
    const after = await says(BOB, 'after the restart')
    expect(after.device).toBe(before.device)
    expect(devicesOf(GHOST.bob)).toEqual([before.device])
    expect(await metric('created')).toBe(0) // this process made no device
    expect(await alice.readText(s.hs.timeline(room).find(e => e.event_id === before.event.event_id)!)).toBe('before the restart')
  })

  it('on a homeserver without MSC4190 a new ghost gets its device by the appservice login and uses it by masquerading', async () => {
    await s.restart(async () => {
      delete s.hs.registration['io.element.msc4190']
    })
    const carol = await says(CAROL, 'hello from an older homeserver')
    expect(carol.event.sender).toBe(GHOST.carol)
    expect(devicesOf(GHOST.carol)).toEqual([carol.device])
    expect(await signedByOwner(GHOST.carol, carol.device)).toBe(true)
    expect(s.hs.calls.some(c => c.method === 'POST' && c.path.endsWith('/login') && c.status === 200 && (c.body as Record<string, unknown>)?.['device_id'] === carol.device)).toBe(true)
    expect(s.hs.calls.some(c => c.path.endsWith('/keys/upload') && c.query['org.matrix.msc3202.device_id'] === carol.device && c.status === 200)).toBe(true)
  })

  it("when the homeserver refuses a ghost's device, the bot's device encrypts its message, which arrives; the next one comes from the ghost's own", async () => {
    const dan = { network: 'signal' as const, id: 'aci-dan', displayName: 'Dan' }
    s.hs.injectFault({ path: '/devices/', user: '@signal_aci-dan:example.org', status: 403, errcode: 'M_FORBIDDEN', times: 1 })
    const refused = await says(dan, 'my device was refused')
    // Encrypted by the bot's device: Alice's machine names no device of Dan's (the mismatch clients warn of).
    expect(curveKeysOf(s.hs.botUserId)).toContain(refused.senderKey)
    expect(refused.device).toBeUndefined()
    const next = await says(dan, 'and now my own')
    expect(devicesOf('@signal_aci-dan:example.org')).toEqual([next.device])
  })
})
