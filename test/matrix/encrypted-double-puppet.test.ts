// Double puppeting in an encrypted portal: what Alice types on her own Signal phone is posted into the encrypted
// room as Alice herself, encrypted by the bot's device (the double-puppet API goes through the encrypting
// wrapper), readable on her own device with the double-puppet mark inside, and its echo is not relayed back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildDoublePuppetRegistration } from '../../src/registration.ts'
import { ALICE, linkedLogin, scenario, type Scenario } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { reader } from '../support/encrypted-room.ts'
import { OlmPeer } from '../support/olm-peer.ts'

const DOUBLE_PUPPET = { as_token: 'dp-as-token-for-tests-0123456789abcdef', hs_token: 'dp-hs-token-for-tests-0123456789abcdef' }

describe.each(DB_KINDS)('double puppeting in an encrypted portal on %s', kind => {
  let s: Scenario
  let alice: OlmPeer
  let read: ReturnType<typeof reader>

  beforeAll(async () => {
    s = await scenario(kind, {
      configure: raw => {
        raw.encryption = { allow: true, default: false, key_wait_seconds: 300, store_key: 'a'.repeat(64) }
        raw.appservice.double_puppet = DOUBLE_PUPPET
      },
    })
    s.hs.addRegistration(buildDoublePuppetRegistration(s.config))
    s.hs.createUser(ALICE, { displayname: 'Alice' })
    alice = await OlmPeer.login(s.hs, ALICE)
    read = reader(s.hs, alice)
  })
  afterAll(async () => {
    await alice?.close()
    await s?.stop()
  })

  it('Alice typing on her own Signal phone appears as @alice, encrypted by the bridge, with the double-puppet mark, and never echoes', async () => {
    const sigRelay = await linkedLogin(s, s.signal)
    const waRelay = await linkedLogin(s, s.whatsapp)
    const room = await s.hs.createRoom(ALICE, { invite: [s.hs.botUserId], name: 'Family', encrypted: true })
    await s.hs.waitFor(() => s.hs.membership(room, s.hs.botUserId) === 'join', { what: 'the bot to join' })
    const sg = s.signal.addGroup('Family (Signal)')
    const wg = s.whatsapp.addGroup('Family (WhatsApp)')
    await alice.send(room, `!relay link signal ${sg.id} ${sigRelay}`)
    await read.notice(room, /^Linked this room to the Signal group/)
    await alice.send(room, `!relay link whatsapp ${wg.id} ${waRelay}`)
    await read.notice(room, /^Linked this room to the WhatsApp group/)
    const own = await linkedLogin(s, s.signal, ALICE, 'alice-phone', 'personal')
    sg.members.push('alice-phone')
    const aliceOnSignal = { id: 'person-alice-phone', name: 'Alice S.' }
    const id = await s.signal.say(sg.id, aliceOnSignal, 'from my phone', { loginId: own })
    await s.signal.say(sg.id, aliceOnSignal, 'from my phone', { loginId: sigRelay, remoteId: id })

    const ev = await read.find(room, e => e.content.body === 'from my phone', 'her message, decrypted on her device')
    expect(ev.sender).toBe(ALICE)
    expect(s.hs.timeline(room).find(e => e.event_id === ev.event_id)!.type).toBe('m.room.encrypted')
    expect(ev.content['fi.mau.double_puppet_source']).toBe('relay-bridge-doublepuppet')
    expect(s.hs.isRegistered('@signal_person-alice-phone:example.org')).toBe(false)
    expect((await s.whatsapp.waitForSentTo(wg.id, 1))[0]!.text).toBe('Alice (Matrix): from my phone')
    // A later message is the marker: by the time it has gone everywhere, an echo of hers would have too.
    await alice.send(room, 'marker')
    // What she writes in Matrix goes to Signal through her own account, as herself.
    expect((await s.signal.waitForSentTo(sg.id, 1)).map(x => x.text)).toEqual(['marker'])
    expect((await s.whatsapp.waitForSentTo(wg.id, 2)).map(x => x.text)).toEqual(['Alice (Matrix): from my phone', 'Alice (Matrix): marker'])
    expect(read.view(room).filter(e => (e.content as { body?: string }).body === 'from my phone')).toHaveLength(1)
  })
})
