// One person, not three: what a person types on their own phone in a portal's group appears in Matrix as their own
// Matrix user (double puppeting through a second registration), goes to the other network through their own
// account there or else the relay under their Matrix name, and never comes back to them as an echo.
import { afterEach, describe, expect, it } from 'vitest'
import { buildDoublePuppetRegistration } from '../../src/registration.ts'
import type { FakeEvent } from '../fakes/homeserver.ts'
import { ALICE, bridgedRoom, linkedLogin, scenario, type Scenario } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'

const CAROL = '@carol:example.org'
const DOUBLE_PUPPET = { as_token: 'dp-as-token-for-tests-0123456789abcdef', hs_token: 'dp-hs-token-for-tests-0123456789abcdef' }
const body = (e: FakeEvent) => (e.content as { body?: string }).body

describe.each(DB_KINDS)('double puppeting on %s', kind => {
  let s: Scenario
  afterEach(async () => s?.stop())

  /** The homeserver loads both registrations, as Synapse does from app_service_config_files. */
  const withDoublePuppeting = async (): Promise<Scenario> => {
    const sc = await scenario(kind, { configure: raw => { raw.appservice.double_puppet = DOUBLE_PUPPET } })
    sc.hs.addRegistration(buildDoublePuppetRegistration(sc.config))
    return sc
  }

  it('Carol typing on her own Signal phone appears in Matrix as @carol, reaches WhatsApp through the relay under her Matrix name, and never echoes', async () => {
    s = await withDoublePuppeting()
    const { room, sg, wg } = await bridgedRoom(s, ALICE, [CAROL])
    const relay = s.bridge.portals.byRoom(room)!.signalLogin!
    const own = await linkedLogin(s, s.signal, CAROL, 'carol-phone', 'personal')
    sg.members.push('carol-phone')
    const carolOnSignal = { id: 'person-carol-phone', name: 'Carol S.' }
    // Both the relay and her own account are in the group: each receives her message, under one id.
    const id = await s.signal.say(sg.id, carolOnSignal, 'from my phone', { loginId: own })
    await s.signal.say(sg.id, carolOnSignal, 'from my phone', { loginId: relay, remoteId: id })
    const ev = await s.hs.waitForEvent(room, e => body(e) === 'from my phone')
    expect(ev.sender).toBe(CAROL)
    expect((ev.content as Record<string, unknown>)['fi.mau.double_puppet_source']).toBe('relay-bridge-doublepuppet')
    expect(s.hs.isRegistered('@signal_person-carol-phone:example.org')).toBe(false) // no ghost of her
    expect((await s.whatsapp.waitForSentTo(wg.id, 1))[0]!.text).toBe('Carol (Matrix): from my phone')
    // A later message is the marker: by the time it has gone everywhere, an echo would have too.
    await s.hs.sendMessage(ALICE, room, 'marker')
    expect((await s.signal.waitForSentTo(sg.id, 1)).map(x => x.text)).toEqual(['Alice (Matrix): marker'])
    expect((await s.whatsapp.waitForSentTo(wg.id, 2)).map(x => x.text)).toEqual(['Carol (Matrix): from my phone', 'Alice (Matrix): marker'])
    expect(s.hs.timeline(room).filter(e => body(e) === 'from my phone')).toHaveLength(1)
  })

  it('with her own WhatsApp account too, what she types on Signal reaches WhatsApp through it as herself, and her edit follows', async () => {
    s = await withDoublePuppeting()
    const { room, sg, wg } = await bridgedRoom(s, ALICE, [CAROL])
    const ownSignal = await linkedLogin(s, s.signal, CAROL, 'carol-phone', 'personal')
    const ownWhatsApp = await linkedLogin(s, s.whatsapp, CAROL, 'carol-wa', 'personal')
    sg.members.push('carol-phone')
    wg.members.push('carol-wa')
    const carolOnSignal = { id: 'person-carol-phone', name: 'Carol S.' }
    const id = await s.signal.say(sg.id, carolOnSignal, 'see you at 8', { loginId: ownSignal })
    const [toWa] = await s.whatsapp.waitForSentTo(wg.id, 1)
    expect(toWa!.text).toBe('see you at 8')
    expect(toWa!.delivery.target.loginId).toBe(ownWhatsApp)
    const ev = await s.hs.waitForEvent(room, e => body(e) === 'see you at 8')
    expect(ev.sender).toBe(CAROL)
    // She corrects it on her phone: the Matrix copy is edited as her, the WhatsApp copy through her own account.
    await s.signal.inbound({
      kind: 'edit', chat: { network: 'signal', id: sg.id }, sender: { network: 'signal', id: carolOnSignal.id, displayName: carolOnSignal.name },
      remoteId: `${id}-edit`, timestamp: Date.now(), target: id, content: { kind: 'text', body: { text: 'see you at 9', styles: [], links: [], mentions: [] }, attachments: [] },
      loginId: ownSignal,
    })
    const edit = await s.hs.waitForEvent(room, e => (e.content as { 'm.new_content'?: { body?: string } })['m.new_content']?.body === 'see you at 9')
    expect(edit.sender).toBe(CAROL)
    const [, waEdit] = await s.whatsapp.waitForSentTo(wg.id, 2)
    expect(waEdit!.text).toBe(`edit ${toWa!.remoteId}: see you at 9`)
    expect(waEdit!.delivery.target.loginId).toBe(ownWhatsApp)
    // What she writes in Matrix goes to both groups as herself, and nothing of it comes back.
    await s.hs.sendMessage(CAROL, room, 'from Element')
    expect((await s.signal.waitForSentTo(sg.id, 1))[0]).toMatchObject({ text: 'from Element', delivery: { target: { loginId: ownSignal } } })
    expect((await s.whatsapp.waitForSentTo(wg.id, 3))[2]).toMatchObject({ text: 'from Element', delivery: { target: { loginId: ownWhatsApp } } })
  })

  it('without double puppeting, what she types on her phone reaches Matrix through the bot under her name, not as a ghost', async () => {
    s = await scenario(kind)
    const { room, sg } = await bridgedRoom(s, ALICE, [CAROL])
    const own = await linkedLogin(s, s.signal, CAROL, 'carol-phone', 'personal')
    sg.members.push('carol-phone')
    await s.signal.say(sg.id, { id: 'person-carol-phone', name: 'Carol S.' }, 'hello', { loginId: own })
    const ev = await s.hs.waitForEvent(room, e => body(e) === 'Carol (Signal): hello')
    expect(ev.sender).toBe(s.hs.botUserId)
    expect(s.hs.isRegistered('@signal_person-carol-phone:example.org')).toBe(false)
  })

  it('a person on another homeserver cannot be double-puppeted: the bot speaks for them in Matrix', async () => {
    const far = '@carol:elsewhere.example'
    s = await scenario(kind, {
      configure: raw => {
        raw.appservice.double_puppet = DOUBLE_PUPPET
        raw.bridge.permissions['elsewhere.example'] = 'user'
      },
    })
    s.hs.addRegistration(buildDoublePuppetRegistration(s.config))
    const { room, sg } = await bridgedRoom(s, ALICE, [far])
    const own = await linkedLogin(s, s.signal, far, 'far-phone', 'personal')
    sg.members.push('far-phone')
    await s.signal.say(sg.id, { id: 'person-far-phone', name: 'C.' }, 'hi from afar', { loginId: own })
    const ev = await s.hs.waitForEvent(room, e => body(e) === 'Carol (Signal): hi from afar')
    expect(ev.sender).toBe(s.hs.botUserId)
  })
})
