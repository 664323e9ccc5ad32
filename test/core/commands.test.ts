// Every `!relay` command, including the refusals: wrong arguments, unknown commands, people without the
// bridge permission or the room power level. Commands and the bot's replies never leave Matrix.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ADMIN, ALICE, STRANGER, bridgedRoom, linkedLogin, roomWithBot, scenario, type Scenario } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { botEvents, content, settled } from '../support/relay.ts'

const FRANK = '@frank:example.org'

describe.each(DB_KINDS)('commands on %s', kind => {
  let s: Scenario
  let sigLogin: string
  let waLogin: string
  beforeAll(async () => {
    s = await scenario(kind)
    sigLogin = await linkedLogin(s, s.signal)
    waLogin = await linkedLogin(s, s.whatsapp)
  })
  afterAll(async () => s?.stop())

  /** The direct chat the bot keeps with a person. */
  const directChat = async (user: string): Promise<string> => {
    const { rows } = await s.db.query<{ room_id: string }>('SELECT room_id FROM direct_chats WHERE mxid = $1', [user])
    return rows[0]!.room_id
  }

  it('help lists every command with one line each; in the direct chat no prefix is needed', async () => {
    const room = await roomWithBot(s)
    const help = await s.command(ALICE, room, '!relay help')
    for (const word of ['help', 'status', 'login', 'logins', 'logout', 'groups', 'link', 'create', 'unlink', 'set', 'unset', 'console', 'sync']) {
      expect(help).toMatch(new RegExp(`• !relay ${word}\\b`))
    }
    expect(help.split('\n').filter(l => l.startsWith('• '))).toHaveLength(13)
    expect(await s.command(ALICE, room, '!relay')).toBe(help)
    const dm = await directChat(ALICE)
    const dmHelp = await s.command(ALICE, dm, 'help')
    expect(dmHelp).toContain('(no prefix needed here)')
    expect(dmHelp).toContain('• link signal|whatsapp')
    expect(help.split('\n').at(-1)).toBe('Start with `!relay status`: it says what to do next.')
    expect(dmHelp.split('\n').at(-1)).toBe('Start with `status`: it says what to do next.')
  })

  it('`console` on a bridge whose console is off says how the operator turns it on, and sends no link', async () => {
    const room = await roomWithBot(s)
    expect(await s.command(ALICE, room, '!relay console')).toBe('The operator console is not enabled on this bridge. Its operator can turn it on with `console.enabled` in the configuration.')
  })

  it('an unknown command says so and points at help', async () => {
    const room = await roomWithBot(s)
    expect(await s.command(ALICE, room, '!relay frobnicate now')).toBe('I don\'t know the command “frobnicate”. Type `!relay help` to see what I can do.')
    // Text that merely starts like the prefix is a message, not a command.
    const before = s.botNotices(room).length
    await s.hs.sendMessage(ALICE, room, '!relayed this for you')
    await settled(s)
    expect(s.botNotices(room)).toHaveLength(before)
  })

  it('status says when a room is not bridged, and for a bridged room shows each group, its relay, the relay\'s state and the queue', async () => {
    const plain = await roomWithBot(s)
    expect(await s.command(ALICE, plain, '!relay status')).toBe('This room is not bridged. Next: `!relay link signal <group id or invite link>` bridges a Signal group here (`!relay groups signal` lists them, `!relay create signal` makes one).')
    const { room, sg, wg } = await bridgedRoom(s)
    const status = await s.command(ALICE, room, '!relay status')
    // Groups by the names people know them by, never their ids.
    expect(status).toContain(`• Signal: “Family (Signal)”; relayed by ${sigLogin}, connected`)
    expect(status).toContain(`• WhatsApp: “Family (WhatsApp)”; relayed by ${waLogin}, connected`)
    expect(status).not.toContain(sg.id)
    expect(status).not.toContain(wg.id)
    expect(status).toContain('• Deliveries: none waiting')
    expect(status.split('\n').at(-1)).toBe('Nothing to do: messages flow between this room and its groups.')
  })

  it('a renamed group shows under its new name in status', async () => {
    const { room, sg } = await bridgedRoom(s)
    await s.signal.inbound({ kind: 'chat_update', chat: { network: 'signal', id: sg.id }, sender: { network: 'signal', id: 'sig-bob', displayName: 'Bob' }, remoteId: 'rename-1', timestamp: Date.now(), name: 'Cousins' })
    // The bot has no power to rename the room here: it says so, which shows the rename was handled.
    await s.hs.waitFor(() => s.botNotices(room).find(n => n.includes('could not change') && n.includes('Cousins')), { what: 'the rename to be handled' })
    expect(await s.command(ALICE, room, '!relay status')).toContain('• Signal: “Cousins”;')
  })

  it('in a room every command the bot names carries the prefix; in the direct chat none does', async () => {
    const room = await roomWithBot(s)
    const free = s.signal.addGroup('Prefix club', ['a'])
    const list = await s.command(ALICE, room, '!relay groups signal')
    expect(list).toContain(`\`${free.id}\``)
    expect(list.split('\n').at(-1)).toBe('Link one here with `!relay link signal <id>`.')
    const dmList = await s.command(ALICE, await directChat(ALICE), 'groups signal')
    expect(dmList.split('\n').at(-1)).toBe('In the Matrix room to bridge, type `!relay link signal <id>`.')
    // Every command named in a room answer is typed with the prefix.
    const answers = [list, await s.command(ALICE, room, '!relay status'), await s.command(ALICE, room, '!relay logins'),
      await s.command(ALICE, room, '!relay link signal'), await s.command(ALICE, room, '!relay unset signal')]
    for (const answer of answers) {
      // List items quote group ids; every other quoted text is a command.
      const prose = answer.split('\n').filter(l => !l.startsWith('• ')).join('\n')
      const commands = [...prose.matchAll(/`([^`]+)`/g)].map(m => m[1]!)
      expect(commands.length, answer).toBeGreaterThan(0)
      expect(commands.filter(c => !c.startsWith('!relay ')), answer).toEqual([])
    }
    expect(await s.command(ALICE, await directChat(ALICE), 'logins')).toMatch(/\n`status` shows how the bridge is doing\.$/)
  })

  it('each answer about a room ends with the next step it needs', async () => {
    const room = await roomWithBot(s)
    const sg = s.signal.addGroup('Steps (Signal)', ['a'])
    const wg = s.whatsapp.addGroup('Steps (WhatsApp)', ['b'])
    expect(await s.command(ALICE, room, `!relay link signal ${sg.id}`)).toBe(`Linked this room to the Signal group “Steps (Signal)” (1 members), relayed by ${sigLogin}. Next: \`!relay link whatsapp <group id or invite link>\` bridges a WhatsApp group here (\`!relay groups whatsapp\` lists them, \`!relay create whatsapp\` makes one).`)
    expect(await s.command(ALICE, room, `!relay link whatsapp ${wg.id}`)).toBe(`Linked this room to the WhatsApp group “Steps (WhatsApp)” (1 members), relayed by ${waLogin}. Messages now flow between this room and its groups; \`!relay status\` shows how the bridge is doing.`)
    await s.command(ALICE, room, '!relay unset whatsapp')
    expect((await s.command(ALICE, room, '!relay status')).split('\n').at(-1)).toBe('Next: `!relay set whatsapp` chooses the account that relays WhatsApp here.')
  })

  it('status is open to relay-level users; changing links is not', async () => {
    const { room } = await bridgedRoom(s, ALICE, [STRANGER])
    expect(await s.command(STRANGER, room, '!relay status')).toContain('This room is bridged')
    const refusal = 'You are not allowed to manage this bridge. Ask the operator to give you the "user" permission in bridge.permissions.'
    for (const cmd of ['link signal x', 'unlink signal', 'create whatsapp', 'set signal', 'unset signal', 'groups signal', 'login signal', 'logins', `logout ${sigLogin}`]) {
      expect(await s.command(STRANGER, room, `!relay ${cmd}`), cmd).toBe(refusal)
    }
  })

  it('room-changing commands need the room\'s state power level', async () => {
    const room = await roomWithBot(s, ALICE, [FRANK])
    const g = s.signal.addGroup('Frank\'s group')
    const refusal = 'You need power level 50 in this room to change its bridge (you have 0). Ask a room admin.'
    for (const cmd of [`link signal ${g.id}`, 'create signal', 'unlink signal', 'set signal', 'unset signal']) {
      expect(await s.command(FRANK, room, `!relay ${cmd}`), cmd).toBe(refusal)
    }
    await s.hs.setPowerLevel(room, FRANK, 50)
    const frankLogin = await linkedLogin(s, s.signal, FRANK, 'frank-phone')
    expect(await s.command(FRANK, room, `!relay link signal ${g.id}`)).toMatch(new RegExp(`^Linked this room to the Signal group “Frank's group” \\(0 members\\), relayed by ${frankLogin}\\. Next: `))
  })

  it('login in a shared room opens the direct chat, shows the QR code there as an image, and links the account', async () => {
    const erin = '@erin:example.org'
    const room = await roomWithBot(s, erin)
    const reply = await s.command(erin, room, '!relay login signal')
    expect(reply).toBe('I sent you a direct message to continue: a login code is a credential and does not belong in a shared room.')
    await s.hs.waitFor(() => s.signal.loginsWaiting > 0, { what: 'the login to wait' })
    const dm = await directChat(erin)
    expect(dm).not.toBe(room)
    expect(s.hs.membership(dm, erin)).toBe('invite')
    const qr = botEvents(s, dm).find(e => content(e).msgtype === 'm.image')!
    expect(qr).toBeDefined()
    expect(s.hs.media(String(content(qr).url))?.mimetype).toBe('image/png')
    expect(s.hs.media(String(content(qr).url))!.data.subarray(1, 4).toString()).toBe('PNG')
    // Nothing of the code is in the shared room.
    expect(s.hs.timeline(room).some(e => content(e).msgtype === 'm.image')).toBe(false)
    s.signal.scan('erin-phone')
    await s.hs.waitFor(() => s.botNotices(dm).find(n => n.startsWith('Linked!')), { what: 'the login to finish' })
    await s.hs.join(erin, dm)
    const logins = await s.command(erin, dm, 'logins')
    // Not an admin: her own account, personal unless she says otherwise.
    expect(logins).toMatch(/• sig-[0-9a-f]+ — Signal erin-phone — personal account — connected/)
  })

  it('login refuses an unknown network and a number where none fits', async () => {
    const dm = await directChat(ALICE)
    expect(await s.command(ALICE, dm, 'login telegram')).toBe('“telegram” is not a network I know. Say signal or whatsapp, e.g. `login whatsapp`.')
    expect(await s.command(ALICE, dm, 'login')).toBe('Say which network, e.g. `login whatsapp`.')
    expect(await s.command(ALICE, dm, 'login signal +15550100042')).toBe('Signal links only by QR code: run `login signal` with no number.')
    expect(await s.command(ALICE, dm, 'login whatsapp call-me')).toBe('A pairing code needs the phone number in international form, e.g. `login whatsapp +15550100042`.')
  })

  it('logins shows addresses only in the direct chat; admins see everyone\'s logins with their owners', async () => {
    const room = await roomWithBot(s, ALICE, [ADMIN])
    const inRoom = await s.command(ALICE, room, '!relay logins')
    expect(inRoom).toContain(`• ${sigLogin} — Signal — relay account — connected`)
    expect(inRoom).not.toContain('signal-relay')
    expect(await s.command(ALICE, await directChat(ALICE), 'logins')).toContain(`• ${sigLogin} — Signal signal-relay — relay account — connected`)
    expect(await s.command(ADMIN, room, '!relay logins')).toContain(`• ${waLogin} — WhatsApp — relay account — connected — owner ${ALICE}`)
    const nobody = await roomWithBot(s, '@gina:example.org')
    expect(await s.command('@gina:example.org', nobody, '!relay logins')).toBe('No accounts are linked yet. Link your own with `!relay login signal` or `!relay login whatsapp`.')
  })

  it('logout needs a login id, refuses unknown ones and other people\'s, and logs out one\'s own for good', async () => {
    const spare = await linkedLogin(s, s.whatsapp, ALICE, 'whatsapp-spare')
    const room = await roomWithBot(s, ALICE, [FRANK])
    expect(await s.command(ALICE, room, '!relay logout')).toBe('Say which login: `!relay logout <login>`. `!relay logins` lists them.')
    expect(await s.command(ALICE, room, '!relay logout wa-000000')).toBe('There is no login “wa-000000”. `!relay logins` lists them.')
    expect(await s.command(FRANK, room, `!relay logout ${spare}`)).toBe(`The login ${spare} belongs to someone else; only they or an admin can use it.`)
    expect(await s.command(ALICE, room, `!relay logout ${spare}`)).toMatch(new RegExp(`^Logged out ${spare} and deleted everything the bridge kept of it\\.`))
    expect(await s.bridge.logins.get(spare)).toBeUndefined()
    expect(await s.command(ALICE, room, `!relay logout ${spare}`)).toBe(`There is no login “${spare}”. \`!relay logins\` lists them.`)
    expect((await s.bridge.logins.get(waLogin))?.state).toBe('connected')
  })

  it('groups lists the relay account\'s groups with their ids and marks linked ones; a missing network is asked for', async () => {
    const { room, sg } = await bridgedRoom(s)
    const free = s.signal.addGroup('Unlinked club', ['a', 'b', 'c'])
    const list = await s.command(ALICE, room, '!relay groups signal')
    expect(list).toContain(`• Unlinked club — 3 members — \`${free.id}\``)
    expect(list).toContain(`\`${sg.id}\` (already linked)`)
    expect(await s.command(ALICE, room, '!relay groups')).toBe('Say which network, e.g. `!relay groups signal`.')
  })

  it('link by invite link bridges the room; a group linked elsewhere is refused; wrong arguments are explained', async () => {
    const room = await roomWithBot(s)
    const wg = s.whatsapp.addGroup('By link', ['wa-x'])
    expect(await s.command(ALICE, room, `!relay link whatsapp ${wg.inviteLink}`)).toMatch(new RegExp(`^Linked this room to the WhatsApp group “By link” \\(1 members\\), relayed by ${waLogin}\\. `))
    expect(s.bridge.portals.byRoom(room)?.whatsappGroup).toBe(wg.id)
    const other = await roomWithBot(s)
    expect(await s.command(ALICE, other, `!relay link whatsapp ${wg.id}`)).toBe(`That WhatsApp group is already linked to another room (${room}). Run \`!relay unlink whatsapp\` there first.`)
    expect(await s.command(ALICE, other, '!relay link whatsapp')).toBe('Say which group: `!relay link whatsapp <group id or invite link>`. `!relay groups whatsapp` lists the ones I am in.')
    expect(await s.command(ALICE, other, '!relay link whatsapp no-such-group')).toBe('I am not in a group “no-such-group”.')
    expect(await s.command(ALICE, other, '!relay link icq 123')).toMatch(/^“icq” is not a network I know/)
    expect(await s.command(ALICE, other, `!relay link signal x ${'sig-000000'}`)).toBe('There is no Signal login “sig-000000”. `!relay logins` lists them.')
    expect(await s.command(ALICE, await directChat(ALICE), `link whatsapp ${wg.id}`)).toBe('Run this in the room you want to bridge, not in our direct chat.')
    const second = s.whatsapp.addGroup('Second')
    expect(await s.command(ALICE, room, `!relay link whatsapp ${second.id}`)).toBe('This room is already linked to a WhatsApp group. Run `!relay unlink whatsapp` first if you want to switch.')
  })

  it('unlink stops relaying to the group, and linking it again needs nothing else', async () => {
    const { room, sg, wg } = await bridgedRoom(s)
    expect(await s.command(ALICE, room, '!relay unlink signal')).toBe(`Unlinked the Signal group. Link it again any time with \`!relay link signal ${sg.id}\`.`)
    expect(await s.command(ALICE, room, '!relay unlink signal')).toBe('This room is not linked to a Signal group. `!relay status` shows what it is linked to.')
    await s.hs.sendMessage(ALICE, room, 'while unlinked')
    await s.whatsapp.waitForSentTo(wg.id, 1)
    await settled(s)
    expect(s.signal.sentTo(sg.id)).toEqual([])
    // A message from the unlinked group goes nowhere (and makes no new room, because its relay is known).
    const roomsBefore = s.hs.rooms().length
    await s.signal.say(sg.id, { id: 'aci-bob', name: 'Bob' }, 'anyone?')
    await settled(s)
    expect(s.hs.rooms()).toHaveLength(roomsBefore)
    expect(await s.command(ALICE, room, `!relay link signal ${sg.id}`)).toMatch(/^Linked this room to the Signal group/)
    await s.hs.sendMessage(ALICE, room, 'linked again')
    const [sent] = await s.signal.waitForSentTo(sg.id, 1)
    expect(sent!.text).toBe('Alice (Matrix): linked again')
  })

  it('create makes a new group, links it and shares its invite link; it refuses when the room already has one', async () => {
    const room = await roomWithBot(s)
    const reply = await s.command(ALICE, room, '!relay create whatsapp Book club')
    const group = [...s.whatsapp.groups.values()].find(g => g.name === 'Book club')!
    expect(reply).toMatch(new RegExp(`^Created the WhatsApp group “Book club” and linked it here\\. Share this link so people can join: ${group.inviteLink} Next: `))
    expect(s.bridge.portals.byRoom(room)?.whatsappGroup).toBe(group.id)
    expect(await s.command(ALICE, room, '!relay create whatsapp')).toBe('This room is already linked to a WhatsApp group. Run `!relay unlink whatsapp` first.')
    await s.hs.sendMessage(ALICE, room, 'welcome')
    expect((await s.whatsapp.waitForSentTo(group.id, 1))[0]!.text).toBe('Alice (Matrix): welcome')
  })

  it('unset holds the room\'s messages for that network; set releases them, in order', async () => {
    const { room, sg } = await bridgedRoom(s)
    expect(await s.command(ALICE, room, '!relay unset signal')).toBe('No account relays this room on Signal now; messages for Signal wait until you `!relay set signal` again.')
    expect(await s.command(ALICE, room, '!relay unset signal')).toBe('No Signal relay is set in this room. `!relay set signal` sets one.')
    await s.hs.sendMessage(ALICE, room, 'one')
    await s.hs.sendMessage(ALICE, room, 'two')
    await settled(s)
    expect(s.signal.sentTo(sg.id)).toEqual([])
    const { rows } = await s.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM outbox WHERE chat_id = $1 AND state = 'held'`, [sg.id])
    expect(rows[0]!.n).toBeGreaterThan(0)
    expect(await s.command(ALICE, room, '!relay set signal sig-000000')).toBe('There is no Signal login “sig-000000”. `!relay logins` lists them.')
    expect(await s.command(ALICE, room, '!relay set signal')).toBe(`${sigLogin} now relays this room on Signal. Messages now flow between this room and its groups; \`!relay status\` shows how the bridge is doing.`)
    const sent = await s.signal.waitForSentTo(sg.id, 2)
    expect(sent.map(x => x.text)).toEqual(['Alice (Matrix): one', 'Alice (Matrix): two'])
  })

  it('commands and the bot\'s replies are never relayed to Signal or WhatsApp', async () => {
    const { room, sg, wg } = await bridgedRoom(s, ALICE, [STRANGER])
    await s.command(ALICE, room, '!relay status')
    await s.command(ALICE, room, '!relay help')
    await s.command(ALICE, room, '!relay nonsense')
    await s.command(STRANGER, room, '!relay unlink signal')
    await s.command(ALICE, room, '!relay groups whatsapp')
    await s.hs.sendMessage(ALICE, room, 'only this')
    await s.signal.waitForSentTo(sg.id, 1)
    await s.whatsapp.waitForSentTo(wg.id, 1)
    await settled(s)
    expect(s.signal.sentTo(sg.id).map(x => x.text)).toEqual(['Alice (Matrix): only this'])
    expect(s.whatsapp.sentTo(wg.id).map(x => x.text)).toEqual(['Alice (Matrix): only this'])
    expect(s.hs.timeline(room).filter(e => e.sender.startsWith('@signal_') || e.sender.startsWith('@whatsapp_'))).toEqual([])
  })
})

describe.each(DB_KINDS)('people without any bridge permission on %s', kind => {
  let s: Scenario
  beforeAll(async () => {
    s = await scenario(kind, { configure: raw => { raw.bridge.permissions = { 'example.org': 'user', '@admin:example.org': 'admin' } } })
  })
  afterAll(async () => s?.stop())

  it('are told they may not use the bridge, and the bot declines their invitations', async () => {
    const room = await roomWithBot(s, ALICE, [STRANGER])
    expect(await s.command(STRANGER, room, '!relay help')).toBe('You are not allowed to use this bridge. Ask its operator for access.')
    expect(await s.command(STRANGER, room, '!relay status')).toBe('You are not allowed to use this bridge. Ask its operator for access.')
    if (!s.hs.profile(STRANGER)) s.hs.createUser(STRANGER)
    const theirs = await s.hs.createRoom(STRANGER, { invite: [s.hs.botUserId] })
    await s.hs.waitFor(() => s.hs.membership(theirs, s.hs.botUserId) === 'leave', { what: 'the bot to decline' })
  })
})
