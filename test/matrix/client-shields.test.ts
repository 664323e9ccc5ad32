// What a real client shows beside the bridge's encrypted messages (issue 14): Alice runs matrix-js-sdk with its
// Rust crypto, as Element does, in an encrypted portal linked to a Signal group and a WhatsApp group. The bot's
// own notices come from its device, cross-signed by the bot: no shield. Today every ghost's message is
// encrypted by that same device, which the ghost does not own: a red "mismatched sender" shield, and a client
// that excludes insecure devices (Carol's) does not decrypt them at all. GHOSTS says which the bridge does; once
// each ghost speaks from its own cross-signed device, it becomes 'own-devices' (ghostMessageAsSeen then expects
// no shield, and Carol reading them).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { InboundEvent } from '../../src/core/model.ts'
import { ALICE, linkedLogin, scenario, type Scenario } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { ghostMessageAsSeen, JsClient, withoutEvent, type Ghosts } from '../support/js-sdk-client.ts'

/** How the bridge sends a ghost's messages: today from the bot's device; issue 14 moves them to the ghost's own. */
const GHOSTS: Ghosts = 'bot-device'

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
    s = await scenario(kind, { configure: raw => { raw.encryption = { allow: true, default: false, key_wait_seconds: 300, store_key: STORE_KEY } } })
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

  it(`a Signal ghost's and a WhatsApp ghost's messages, as the bridge sends them now (${GHOSTS})`, async () => {
    const fromBob = await fromGroup(BOB, sg, 'hello from Signal')
    const fromDave = await fromGroup(DAVE, wg, 'hello from WhatsApp')
    for (const id of [fromBob, fromDave]) {
      expect(withoutEvent(await alice.see(room, id)), `Alice on ${id}`).toEqual(ghostMessageAsSeen(GHOSTS, 'all'))
      expect(withoutEvent(await carol.see(room, id)), `Carol on ${id}`).toEqual(ghostMessageAsSeen(GHOSTS, 'only-signed'))
    }
  })
})
