// Linking the WhatsApp relay account the way people do it (`!relay login whatsapp` in the direct chat),
// a restart that needs no new login, and a logout that holds messages and flushes them in order after
// relinking, all seen from Matrix through the fake homeserver and the fake WhatsApp socket.
import { afterEach, describe, expect, it } from 'vitest'
import { ALICE } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { WA_DAVE, botEvents, bridgedRoom, directChat, loginWhatsApp, realScenario, until, waitForNotice, type RealScenario } from '../support/networks.ts'
import { content, settled } from '../support/relay.ts'

describe.each(DB_KINDS)('WhatsApp login through the bridge on %s', kind => {
  let s: RealScenario
  afterEach(async () => s?.stop())

  it('`!relay login whatsapp` shows a QR code in the direct chat and edits it in place as WhatsApp rotates it', async () => {
    s = await realScenario(kind)
    const dm = await directChat(s)
    await s.hs.sendMessage(ALICE, dm, '!relay login whatsapp')
    const qr = await s.hs.waitFor(() => botEvents(s, dm, 'm.image')[0], { what: 'the QR code' })
    expect(content(qr).body).toMatch(/Linked devices/)
    const firstPng = s.hs.media(content(qr).url)!.data
    s.wa.rotateQr()
    const edit = await s.hs.waitForEvent(dm, e => content(e)['m.relates_to']?.rel_type === 'm.replace')
    expect(edit.sender).toBe(s.hs.botUserId)
    expect(content(edit)['m.relates_to'].event_id).toBe(qr.event_id)
    expect(content(edit)['m.new_content']).toMatchObject({ msgtype: 'm.image' })
    expect(s.hs.media(content(edit)['m.new_content'].url)!.data.equals(firstPng)).toBe(false)
    expect(botEvents(s, dm, 'm.image')).toHaveLength(1) // replaced, not posted again
    s.wa.scanQr()
    await waitForNotice(s, dm, /The phone linked the bridge; connecting/)
    expect(await waitForNotice(s, dm, /^Linked!/)).toMatch(/The WhatsApp account is now login wa-[0-9a-f]+/)
  })

  it('`login whatsapp +<number>` gives a pairing code instead of a QR code', async () => {
    s = await realScenario(kind)
    const dm = await directChat(s)
    await s.hs.sendMessage(ALICE, dm, 'login whatsapp +1 555 010 0000')
    expect(await waitForNotice(s, dm, /K7QW2M9X/)).toMatch(/Link with phone number instead/)
    s.wa.acceptPairingCode()
    await waitForNotice(s, dm, /^Linked!/)
    expect(botEvents(s, dm, 'm.image')).toEqual([])
  })

  it('a QR code nobody scans expires with a sentence saying how to retry; the next login works', async () => {
    s = await realScenario(kind)
    const dm = await directChat(s)
    await s.hs.sendMessage(ALICE, dm, 'login whatsapp relay')
    await s.hs.waitFor(() => botEvents(s, dm, 'm.image')[0])
    for (let i = 0; i < 6; i++) s.wa.rotateQr() // WhatsApp gives up after six codes
    expect(await waitForNotice(s, dm, /expired/)).toMatch(/`!relay login whatsapp` to try again/)
    expect(await s.bridge.logins.list('whatsapp')).toEqual([])
    await loginWhatsApp(s, dm)
  })

  it('a restarted bridge reconnects with the stored keys: no new QR code, and messages flow both ways', async () => {
    s = await realScenario(kind)
    const { room, dm, whatsappGroup, whatsappLogin } = await bridgedRoom(s, { signal: false, whatsapp: true })
    const images = botEvents(s, dm, 'm.image').length
    const sockets = s.wa.sockets.length
    await s.restart()
    await until(() => s.whatsappNet.state(whatsappLogin!) === 'connected', 'the reconnect')
    expect(s.wa.sockets.length).toBe(sockets + 1)
    expect(s.wa.current!.auth.creds.registered).toBe(true)
    await s.hs.sendMessage(ALICE, room, 'after the restart')
    await until(() => s.wa.sent.find(m => m.jid === whatsappGroup && m.content.text === '*Alice (Matrix)*: after the restart'))
    s.wa.deliver({ chat: whatsappGroup!, from: WA_DAVE, pushName: 'Dave', message: { conversation: 'welcome back' } })
    await s.hs.waitForEvent(room, e => content(e).body === 'welcome back')
    expect(botEvents(s, dm, 'm.image')).toHaveLength(images)
  })

  it('a WhatsApp logout holds Matrix messages, says so in the room and the direct chat, and flushes them in order after relinking', async () => {
    s = await realScenario(kind)
    const { room, dm, whatsappGroup, whatsappLogin } = await bridgedRoom(s, { signal: false, whatsapp: true })
    s.wa.unlinkedLive()
    expect(await waitForNotice(s, room, /logged the relay account out/)).toMatch(/messages are kept.*login whatsapp/s)
    await waitForNotice(s, dm, /logged the relay account out/)
    const before = s.wa.sent.length
    for (const text of ['one', 'two', 'three']) await s.hs.sendMessage(ALICE, room, text)
    await s.hs.waitFor(() => s.hs.timeline(room).filter(e => e.sender === ALICE && e.type === 'm.room.message').length >= 3 || undefined)
    await settled(s)
    expect(s.wa.sent.length).toBe(before)
    expect(await s.command(ALICE, room, '!relay status')).toMatch(/logged out[\s\S]*held for WhatsApp/)
    // Relink the same account: the login keeps its id, and the held messages go out in their order.
    expect(await loginWhatsApp(s, dm)).toBe(whatsappLogin)
    await until(() => s.wa.sent.length >= before + 3, 'the held messages')
    expect(s.wa.sent.slice(before).map(m => [m.jid, m.content.text])).toEqual(['one', 'two', 'three'].map(t => [whatsappGroup, `*Alice (Matrix)*: ${t}`]))
    await settled(s)
    expect(s.wa.sent.length).toBe(before + 3)
    expect(s.botNotices(room).filter(n => n.startsWith('⚠️'))).toEqual([])
  })
})
