// What a real client shows beside the bridge's encrypted messages (issue 14): Alice runs matrix-js-sdk with its
// Rust crypto, as Element does, in an encrypted portal linked to a Signal group and a WhatsApp group. The bot's
// own notices come from its device, cross-signed by the bot: no shield. The bridge first runs as an earlier
// release did (ghost_devices off): every ghost's message is encrypted by the bot's device, which the ghost does
// not own, so Alice sees a red "mismatched sender" shield and Carol, whose client excludes insecure devices,
// cannot decrypt them at all. Then, in the same room, each ghost speaks from its own cross-signed device: no
// shield, and Carol reads them; the earlier messages keep their shield.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { InboundEvent } from '../../src/core/model.ts'
import { ALICE, linkedLogin, scenario, type Scenario } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { ghostMessageAsSeen, JsClient, withoutEvent, type Ghosts } from '../support/js-sdk-client.ts'

const STORE_KEY = 'c'.repeat(64)
const CAROL = '@carol:example.org'
const BOB = { network: 'signal' as const, id: 'aci-bob', displayName: 'Bob' }
const DAVE = { network: 'whatsapp' as const, id: 'wa-dave', displayName: 'Dave' }

describe.each(DB_KINDS)('what a Rust-crypto client shows in an encrypted portal, on %s', kind => {
  let s: Scenario
  let alice: JsClient
  let carol: JsClient
  let room: string
  let sg: string
  let wg: string

  beforeAll(async () => {
    // The earlier release: ghosts send from the bot's device.
    s = await scenario(kind, { configure: raw => { raw.encryption = { allow: true, default: false, key_wait_seconds: 300, store_key: STORE_KEY, ghost_devices: false } } })
    s.hs.createUser(ALICE, { displayname: 'Alice' })
    s.hs.createUser(CAROL, { displayname: 'Carol' })
    alice = await JsClient.login(s.hs, ALICE)
    carol = await JsClient.login(s.hs, CAROL, { isolation: 'only-signed' })
    const sigLogin = await linkedLogin(s, s.signal)
    const waLogin = await linkedLogin(s, s.whatsapp)
    room = await s.hs.createRoom(ALICE, { invite: [s.hs.botUserId, CAROL], name: 'Family', encrypted: true })
    await carol.join(room)
    await s.hs.waitFor(() => s.hs.membership(room, s.hs.botUserId) === 'join', { what: 'the bot to join' })
    sg = s.signal.addGroup('Family (Signal)').id
    wg = s.whatsapp.addGroup('Family (WhatsApp)').id
    for (const [net, group, login] of [['signal', sg, sigLogin], ['whatsapp', wg, waLogin]] as const) {
      await alice.send(room, `!relay link ${net} ${group} ${login}`)
      await alice.waitForEvent(room, ev => ev.getSender() === s.hs.botUserId && String(ev.getContent().body).startsWith(`Linked this room to the ${net === 'signal' ? 'Signal' : 'WhatsApp'} group`), `the ${net} link`)
    }
  })
  afterAll(async () => {
    alice?.stop()
    carol?.stop()
    await s?.stop()
  })

  const text = (t: string) => ({ kind: 'text' as const, body: { text: t, styles: [], links: [], mentions: [] }, attachments: [] })
  async function fromGroup(who: typeof BOB | typeof DAVE, group: string, body: string): Promise<string> {
    const net = who.network === 'signal' ? s.signal : s.whatsapp
    await net.inbound({ chat: { network: who.network, id: group }, sender: who, remoteId: `${who.id}-${body}`, timestamp: Date.now(), kind: 'message', content: text(body) } as InboundEvent)
    const ev = await alice.waitForEvent(room, e => e.getContent().body === body, body)
    expect(ev.getWireType()).toBe('m.room.encrypted')
    return ev.getId()!
  }

  it("the bot's notice shows no shield to either client", async () => {
    await alice.send(room, '!relay status')
    const status = await alice.waitForEvent(room, ev => ev.getSender() === s.hs.botUserId && /^This room is bridged/.test(String(ev.getContent().body)), 'the status notice')
    expect(status.getWireType()).toBe('m.room.encrypted')
    expect(withoutEvent(await alice.see(room, status.getId()!))).toEqual({ kind: 'decrypted', shield: { colour: 'NONE', reason: null } })
    expect(withoutEvent(await carol.see(room, status.getId()!))).toEqual({ kind: 'decrypted', shield: { colour: 'NONE', reason: null } })
  })

  async function seenBoth(ids: string[], ghosts: Ghosts): Promise<void> {
    for (const id of ids) {
      expect(withoutEvent(await alice.see(room, id)), `Alice on ${id}`).toEqual(ghostMessageAsSeen(ghosts, 'all'))
      expect(withoutEvent(await carol.see(room, id)), `Carol on ${id}`).toEqual(ghostMessageAsSeen(ghosts, 'only-signed'))
    }
  }

  let earlier: string[]

  it("from the bot's device (an earlier release), a Signal ghost's and a WhatsApp ghost's messages show a red shield, and the strict client cannot read them", async () => {
    earlier = [await fromGroup(BOB, sg, 'hello from Signal'), await fromGroup(DAVE, wg, 'hello from WhatsApp')]
    await seenBoth(earlier, 'bot-device')
  })

  it('from their own cross-signed devices, in the same room, the next ones show no shield and the strict client reads them; the earlier ones keep theirs', async () => {
    await s.restart(async () => {
      s.config.encryption.ghost_devices = true
    })
    await seenBoth([await fromGroup(BOB, sg, 'again from Signal'), await fromGroup(DAVE, wg, 'again from WhatsApp')], 'own-devices')
    await seenBoth(earlier, 'bot-device')
  })
})
