// Linking the Signal relay account the way people do it: `!relay login signal`, the QR code in the
// direct chat, the phone scanning it; expiry and failure said in Matrix; an unlinked account holding
// messages until it is linked again.
import { afterEach, describe, expect, it, vi } from 'vitest'
import { groupText } from '../fakes/signal-envelopes.ts'
import { ALICE, roomWithBot } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { SIG_BOB, SIG_RELAY, botEvents, bridgedRoom, directChat, loginSignal, realScenario, signalGroup, waitForNotice, type RealScenario } from '../support/networks.ts'
import { content } from '../support/relay.ts'
import { PATIENCE_MS } from '../support/patience.ts'

const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47])

describe.each(DB_KINDS)('Signal login through the bridge on %s', kind => {
  let s: RealScenario
  afterEach(async () => s?.stop())

  it('`!relay login signal` in a shared room continues in the direct chat: a QR image, the sgnl:// link, then Linked!', async () => {
    s = await realScenario(kind)
    const room = await roomWithBot(s)
    const answer = await s.command(ALICE, room, '!relay login signal')
    expect(answer).toMatch(/direct message/)
    // Nothing that could link the account is shown in the shared room.
    expect(s.hs.timeline(room).some(e => content(e).msgtype === 'm.image' || /sgnl:\/\//.test(String(content(e).body)))).toBe(false)
    const dm = await s.hs.waitFor(() => s.hs.rooms().find(r => r !== room && botEvents(s, r, 'm.image').length > 0), { what: 'the QR code in a direct chat' })
    const [qr] = botEvents(s, dm, 'm.image')
    expect(content(qr!).body).toMatch(/Linked devices/)
    expect(s.hs.media(content(qr!).url)?.data.subarray(0, 4).equals(PNG_MAGIC)).toBe(true)
    const uri = (await s.daemon.waitForCall('finishLink')).params.deviceLinkUri as string
    expect(await waitForNotice(s, dm, /The same code as a link/)).toContain(uri)
    await s.daemon.scanLink(SIG_RELAY)
    const linked = await waitForNotice(s, dm, /^Linked!/)
    expect(linked).toMatch(/The Signal account is now login sig-[0-9a-f]+/)
    await s.daemon.until(() => s.daemon.hasStream(SIG_RELAY.number))
    // The stream open is not yet the state recorded: wait for that, as a person would see it after a moment.
    await vi.waitFor(async () => expect((await s.bridge.logins.list('signal'))[0]?.state).toBe('connected'), { timeout: PATIENCE_MS, interval: 20 })
    await s.hs.join(ALICE, dm)
    // Alice is no admin: without a kind, the account she links is her own.
    expect(await s.command(ALICE, dm, 'logins')).toMatch(new RegExp(`Signal \\${SIG_RELAY.number} — personal account — connected`))
  })

  it('linking Signal posts one notice after the scan, and it names one next step', async () => {
    s = await realScenario(kind)
    const dm = await directChat(s)
    await s.hs.sendMessage(ALICE, dm, 'login signal relay')
    await waitForNotice(s, dm, /The same code as a link/)
    const before = s.botNotices(dm).length
    await s.daemon.scanLink(SIG_RELAY)
    await waitForNotice(s, dm, /^Linked!/)
    // A later marker: the answer to `help` comes after anything the login still had to say.
    await s.command(ALICE, dm, 'help')
    const after = s.botNotices(dm).slice(before)
    expect(after).toHaveLength(2)
    expect(after[0]).toMatch(/^Linked! The Signal account is now login sig-[0-9a-f]+, a relay account\. Next: add it to your Signal group, invite me to the Matrix room for it, and type `!relay link signal <group id or invite link>` there \(`!relay groups signal` lists its groups\)\.$/)
  })

  it('a link code nobody scans expires, and the direct chat says how to get a fresh one', async () => {
    s = await realScenario(kind, { daemon: { linkTimeoutMs: 200 } })
    const dm = await directChat(s)
    await s.hs.sendMessage(ALICE, dm, 'login signal relay')
    expect(await waitForNotice(s, dm, /expired/)).toMatch(/`!relay login signal` again/)
    expect(await s.bridge.logins.list('signal')).toEqual([])
  })

  it('a link the daemon refuses (the account is still there from an earlier link) tells the operator what to do', async () => {
    s = await realScenario(kind)
    s.daemon.addAccount(SIG_RELAY)
    const dm = await directChat(s)
    await s.hs.sendMessage(ALICE, dm, 'login signal relay')
    await s.daemon.waitForCall('finishLink')
    await s.daemon.scanLink(SIG_RELAY)
    expect(await waitForNotice(s, dm, /still holds/)).toMatch(/restart signal-cli/)
  })

  it('a daemon that cannot start a link is said in a sentence, not a stack trace', async () => {
    s = await realScenario(kind)
    s.daemon.fail('startLink', -3, 'Failed to connect to Signal servers')
    const dm = await directChat(s)
    await s.hs.sendMessage(ALICE, dm, 'login signal relay')
    expect(await waitForNotice(s, dm, /could not start a link/)).toMatch(/Check that signal-cli is running/)
  })

  it('an account unlinked on the phone holds Matrix messages, says so in the room, and sends them in order after `login signal`', async () => {
    s = await realScenario(kind)
    const { room, dm, signalGroup: group, signalLogin } = await bridgedRoom(s)
    s.daemon.unlink(SIG_RELAY.number)
    await waitForNotice(s, room, /no longer linked/)
    expect(await waitForNotice(s, dm, /no longer linked/)).toMatch(/re-link it with `!relay login signal`/)
    for (const text of ['one', 'two', 'three']) await s.hs.sendMessage(ALICE, room, text)
    // The first waits as held; the two behind it wait in their queue, in order.
    await vi.waitFor(async () => {
      const status = await s.command(ALICE, room, '!relay status')
      expect(status).toMatch(/1 held for Signal/)
      expect(status).toMatch(/2 pending for Signal/)
    }, { timeout: PATIENCE_MS, interval: 50 })
    expect(s.daemon.callsOf('send')).toEqual([])
    // The same phone links again: the login keeps its id, the room keeps its relay.
    expect(await loginSignal(s, dm)).toBe(signalLogin)
    await s.daemon.until(() => s.daemon.callsOf('send').length === 3)
    expect(s.daemon.callsOf('send').map(c => [c.params.groupId, c.params.message])).toEqual(['one', 'two', 'three'].map(t => [group, `Alice (Matrix): ${t}`]))
    // And Signal → Matrix flows again on the new stream.
    s.daemon.push(SIG_RELAY.number, groupText(SIG_BOB, group!, 'welcome back'))
    await s.hs.waitForEvent(room, e => content(e).body === 'welcome back')
  })

  it('`!relay groups signal`, `link signal <invite link>` and `create signal` answer in the room with what people need', async () => {
    s = await realScenario(kind)
    const dm = await directChat(s)
    await loginSignal(s, dm)
    const known = signalGroup(s, 'Cousins')
    const room = await roomWithBot(s)
    expect(await s.command(ALICE, room, '!relay groups signal')).toContain(`Cousins — 3 members — \`${known}\``)
    const open = s.daemon.addGroup({ name: 'Open door', members: [{ number: SIG_BOB.number, aci: SIG_BOB.aci }] })
    expect(await s.command(ALICE, room, `!relay link signal ${open.inviteLink}`)).toMatch(/Linked this room to the Signal group “Open door” \(2 members\)/)
    expect(s.daemon.callsOf('joinGroup')[0]!.params).toMatchObject({ account: SIG_RELAY.number, uri: open.inviteLink })
    const other = await roomWithBot(s)
    const created = await s.command(ALICE, other, '!relay create signal Reunion')
    expect(created).toMatch(/^Created the Signal group “Reunion” and linked it here\. Share this link so people can join: https:\/\/signal\.group\/#/)
    expect(await s.command(ALICE, other, '!relay unlink signal')).toMatch(/^Unlinked the Signal group/)
  })
})
