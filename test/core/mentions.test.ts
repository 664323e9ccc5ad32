// Mentions in every direction, two and three to a message: each lands on the person it named, where it was
// typed, whatever the network's way of saying it (Signal: U+FFFC placeholders with ranges; WhatsApp:
// "@<user>" text with mentionedJid; Matrix: pills and m.mentions). One mention alone cannot show an offset
// that drifts as earlier mentions grow or shrink.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { groupText, type FakeSender } from '../fakes/signal-envelopes.ts'
import { ALICE } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { SIG_BOB, SIG_CAROL, SIG_RELAY, WA_DAVE, WA_ERIN, bridgedRoom, realScenario, until, type RealScenario } from '../support/networks.ts'
import { content } from '../support/relay.ts'

const sigGhost = (p: FakeSender) => `@signal_${p.aci}:example.org`

describe.each(DB_KINDS)('mentions on %s', kind => {
  let s: RealScenario
  let room: string
  let sg: string
  let wg: string
  let waGhost: { dave: string; erin: string }
  beforeAll(async () => {
    s = await realScenario(kind)
    const r = await bridgedRoom(s, { whatsapp: true })
    room = r.room
    sg = r.signalGroup!
    wg = r.whatsappGroup!
    // Everyone speaks once, so that each has a name and a ghost.
    s.daemon.push(SIG_RELAY.number, groupText(SIG_BOB, sg, 'hi from Bob'))
    s.daemon.push(SIG_RELAY.number, groupText(SIG_CAROL, sg, 'hi from Carol'))
    s.wa.deliver({ chat: wg, from: WA_DAVE, pushName: 'Dave', message: { conversation: 'hi from Dave' } })
    s.wa.deliver({ chat: wg, from: WA_ERIN, pushName: 'Erin', message: { conversation: 'hi from Erin' } })
    const ghosts = await s.hs.waitFor(() => {
      const by = (body: string) => s.hs.timeline(room).find(e => content(e).body === body)?.sender
      const [b, c, d, e] = ['hi from Bob', 'hi from Carol', 'hi from Dave', 'hi from Erin'].map(by)
      return b && c && d && e ? { dave: d, erin: e } : undefined
    }, { what: 'the four greetings in Matrix' })
    waGhost = ghosts
  })
  afterAll(async () => s?.stop())

  /** Signal's send parameters for the copy whose text ends with `tail`. */
  const signalCopy = async (tail: string) => (await s.daemon.waitForCall('send', c => String((c.params as { message?: string }).message).endsWith(tail))).params as { message: string; mention?: string[] }
  /** WhatsApp's content for the copy whose text ends with `tail`. */
  const whatsappCopy = async (tail: string) => (await until(() => s.wa.sent.find(m => m.jid === wg && String((m.content as { text?: string }).text).endsWith(tail)), `the copy ending "${tail}" on WhatsApp`)).content as { text: string; mentions: string[] }
  const matrixCopy = (tail: string) => s.hs.waitForEvent(room, e => String(content(e).body).endsWith(tail) && e.sender !== ALICE, { what: `the copy ending "${tail}" in Matrix` })
  const pill = (mxid: string, text: string) => `<a href="https://matrix.to/#/${encodeURIComponent(mxid)}">${text}</a>`

  it('two and three Signal mentions become pills of the right ghosts in Matrix and the right names on WhatsApp', async () => {
    s.daemon.push(SIG_RELAY.number, groupText(SIG_BOB, sg, 'hi \uFFFC and \uFFFC! s2', { mentions: [{ aci: SIG_CAROL.aci, start: 3 }, { aci: SIG_BOB.aci, start: 9 }] }))
    s.daemon.push(SIG_RELAY.number, groupText(SIG_CAROL, sg, '\uFFFC, \uFFFC and \uFFFC: s3', { mentions: [{ aci: SIG_BOB.aci, start: 0 }, { aci: SIG_CAROL.aci, start: 3 }, { aci: SIG_BOB.aci, start: 9 }] }))
    const bob = sigGhost(SIG_BOB)
    const carol = sigGhost(SIG_CAROL)

    const two = await matrixCopy('s2')
    expect(content(two)).toMatchObject({ body: 'hi @Carol and @Bob! s2', formatted_body: `hi ${pill(carol, '@Carol')} and ${pill(bob, '@Bob')}! s2` })
    expect(content(two)['m.mentions'].user_ids).toEqual([carol, bob])
    const three = await matrixCopy('s3')
    expect(content(three)).toMatchObject({ body: '@Bob, @Carol and @Bob: s3', formatted_body: `${pill(bob, '@Bob')}, ${pill(carol, '@Carol')} and ${pill(bob, '@Bob')}: s3` })
    expect(new Set(content(three)['m.mentions'].user_ids)).toEqual(new Set([bob, carol]))

    // Signal people are no WhatsApp members: their names stay text there.
    expect(await whatsappCopy('s2')).toEqual({ text: '*Bob (Signal)*: hi @Carol and @Bob! s2', mentions: [], linkPreview: null })
    expect(await whatsappCopy('s3')).toEqual({ text: '*Carol (Signal)*: @Bob, @Carol and @Bob: s3', mentions: [], linkPreview: null })
  })

  it('two and three WhatsApp mentions become pills of the right ghosts in Matrix and the right names on Signal, no digits left', async () => {
    s.wa.deliver({ chat: wg, from: WA_DAVE, pushName: 'Dave', message: { extendedTextMessage: { text: 'yo @201000000000043 and @201000000000042! w2', contextInfo: { mentionedJid: [WA_ERIN.lid, WA_DAVE.lid] } } } })
    // A person named twice: WhatsApp lists their JID once.
    s.wa.deliver({ chat: wg, from: WA_ERIN, pushName: 'Erin', message: { extendedTextMessage: { text: '@201000000000042, @201000000000043 and @201000000000042: w3', contextInfo: { mentionedJid: [WA_DAVE.lid, WA_ERIN.lid] } } } })

    const two = await matrixCopy('w2')
    expect(content(two)).toMatchObject({ body: 'yo @Erin and @Dave! w2', formatted_body: `yo ${pill(waGhost.erin, '@Erin')} and ${pill(waGhost.dave, '@Dave')}! w2` })
    expect(content(two)['m.mentions'].user_ids).toEqual([waGhost.erin, waGhost.dave])
    const three = await matrixCopy('w3')
    expect(content(three)).toMatchObject({ body: '@Dave, @Erin and @Dave: w3', formatted_body: `${pill(waGhost.dave, '@Dave')}, ${pill(waGhost.erin, '@Erin')} and ${pill(waGhost.dave, '@Dave')}: w3` })

    const sigTwo = await signalCopy('w2')
    expect(sigTwo.message).toBe('Dave (WhatsApp): yo @Erin and @Dave! w2')
    expect(sigTwo.mention ?? []).toEqual([])
    const sigThree = await signalCopy('w3')
    expect(sigThree.message).toBe('Erin (WhatsApp): @Dave, @Erin and @Dave: w3')
    expect(sigThree.mention ?? []).toEqual([])
  })

  it('Matrix pills of two and three people become Signal mention ranges on placeholders and WhatsApp @<user> mentions, each in place', async () => {
    const bob = sigGhost(SIG_BOB)
    const carol = sigGhost(SIG_CAROL)
    const withPills = (parts: Array<string | [string, string]>) => ({
      msgtype: 'm.text', format: 'org.matrix.custom.html',
      body: parts.map(p => (typeof p === 'string' ? p : p[1])).join(''),
      formatted_body: parts.map(p => (typeof p === 'string' ? p : `<a href="https://matrix.to/#/${p[0]}">${p[1]}</a>`)).join(''),
      'm.mentions': { user_ids: parts.filter((p): p is [string, string] => typeof p !== 'string').map(p => p[0]) },
    })
    // Earlier tests' copies are all in: the next two sends to each group are these two messages, in order.
    const sigFrom = s.daemon.callsOf('send').length
    const waFrom = s.wa.sent.length
    await s.hs.sendMessage(ALICE, room, withPills([[bob, 'Bob (Signal)'], ', ', [waGhost.dave, 'Dave (WhatsApp)'], ' and ', [carol, 'Carol (Signal)'], ': look']))
    await s.hs.sendMessage(ALICE, room, withPills([[waGhost.erin, 'Erin (WhatsApp)'], ' and ', [waGhost.dave, 'Dave (WhatsApp)'], ': pair']))
    await s.daemon.until(() => s.daemon.callsOf('send').length >= sigFrom + 2)
    const [sigLook, sigPair] = s.daemon.callsOf('send').slice(sigFrom).map(c => c.params as { message: string; mention?: string[] })
    const [waLook, waPair] = (await until(() => s.wa.sent.length >= waFrom + 2 && s.wa.sent.slice(waFrom), 'both copies on WhatsApp')).map(m => m.content)

    // "Alice (Matrix): " is 16 characters: Bob's placeholder at 16, Carol's after ", Dave (WhatsApp) and ".
    expect(sigLook).toMatchObject({ message: 'Alice (Matrix): \uFFFC, Dave (WhatsApp) and \uFFFC: look', mention: [`16:1:${SIG_BOB.aci}`, `39:1:${SIG_CAROL.aci}`] })
    expect(waLook).toEqual({ text: '*Alice (Matrix)*: Bob (Signal), @201000000000042 and Carol (Signal): look', mentions: [WA_DAVE.lid], linkPreview: null })
    expect(sigPair!.message).toBe('Alice (Matrix): Erin (WhatsApp) and Dave (WhatsApp): pair')
    expect(sigPair!.mention ?? []).toEqual([])
    expect(waPair).toEqual({ text: '*Alice (Matrix)*: @201000000000043 and @201000000000042: pair', mentions: [WA_ERIN.lid, WA_DAVE.lid], linkPreview: null })
  })
})
