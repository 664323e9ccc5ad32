// People's own logins: a login is a relay account or its owner's personal account, chosen when it is linked and
// shown everywhere; only relay accounts relay rooms and make portals; and a person whose own account is in a
// portal's group posts there as themselves, falling back to the relay (with one notice) when it cannot.
import { afterEach, describe, expect, it } from 'vitest'
import { ADMIN, ALICE, bridgedRoom, linkedLogin, roomWithBot, scenario, type Scenario } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'

const CAROL = '@carol:example.org'

describe.each(DB_KINDS)('own logins on %s', kind => {
  let s: Scenario
  afterEach(async () => s?.stop())

  const dmOf = async (user: string): Promise<string> => {
    const { rows } = await s.db.query<{ room_id: string }>('SELECT room_id FROM direct_chats WHERE mxid = $1', [user])
    return rows[0]!.room_id
  }
  const warnings = (room: string) => s.botNotices(room).filter(n => n.startsWith('⚠️'))

  it('a person links their own account as personal by default, an admin a relay account; the kind is shown in logins', async () => {
    s = await scenario(kind)
    const own = await linkedLogin(s, s.signal, CAROL, 'carol-phone', 'personal')
    // Without a kind: personal for a user, relay for an admin.
    const dm = await s.hs.createRoom(CAROL, { invite: [s.hs.botUserId], isDirect: true })
    await s.hs.waitFor(() => s.hs.membership(dm, s.hs.botUserId) === 'join', { what: 'the bot to join' })
    expect(await s.command(CAROL, dm, 'login whatsapp')).toMatch(/^Linking your own WhatsApp account as your personal account/)
    await s.whatsapp.waitFor(() => s.whatsapp.loginsWaiting > 0, 'the login to wait for a scan')
    s.whatsapp.scan('carol-wa')
    await s.hs.waitFor(() => s.botNotices(dm).find(n => /^Linked! The WhatsApp account is now login wa-[0-9a-f]+, a personal account\./.test(n)), { what: 'the personal login' })
    s.hs.createUser(ADMIN, { displayname: 'Admin' })
    const adminDm = await s.hs.createRoom(ADMIN, { invite: [s.hs.botUserId], isDirect: true })
    await s.hs.waitFor(() => s.hs.membership(adminDm, s.hs.botUserId) === 'join', { what: 'the bot to join' })
    expect(await s.command(ADMIN, adminDm, 'login signal')).toMatch(/^Linking a Signal account as a relay account/)
    await s.signal.waitFor(() => s.signal.loginsWaiting > 0, 'the login to wait for a scan')
    s.signal.scan('spare-number')
    await s.hs.waitFor(() => s.botNotices(adminDm).find(n => /^Linked! The Signal account is now login sig-[0-9a-f]+, a relay account\./.test(n)), { what: 'the relay login' })

    const carolsList = await s.command(CAROL, await dmOf(CAROL), 'logins')
    expect(carolsList).toContain(`• ${own} — Signal carol-phone — personal account — connected`)
    expect(carolsList).toMatch(/• wa-[0-9a-f]+ — WhatsApp carol-wa — personal account — connected/)
    expect(carolsList).not.toContain('spare-number') // nobody else's
    const adminsList = await s.command(ADMIN, adminDm, 'logins')
    expect(adminsList).toContain(`• ${own} — Signal carol-phone — personal account — connected — owner ${CAROL}`)
    expect(adminsList).toMatch(/• sig-[0-9a-f]+ — Signal spare-number — relay account — connected\n/)
  })

  it('only a relay account can relay a room, join or create its groups, or list them', async () => {
    s = await scenario(kind)
    const own = await linkedLogin(s, s.signal, ALICE, 'alice-phone', 'personal')
    const room = await roomWithBot(s)
    const g = s.signal.addGroup('Family', ['alice-phone'])
    const refusal = `${own} is a personal account: it speaks only for its owner, so it cannot relay a room or list its groups. Link a spare number with \`!relay login signal relay\` for that.`
    expect(await s.command(ALICE, room, `!relay set signal ${own}`)).toBe(refusal)
    expect(await s.command(ALICE, room, `!relay link signal ${g.id} ${own}`)).toBe(refusal)
    expect(await s.command(ALICE, room, `!relay groups signal ${own}`)).toBe(refusal)
    // Not named: her personal account is not picked either.
    expect(await s.command(ALICE, room, `!relay link signal ${g.id}`)).toBe('You have no Signal relay account yet. Link a spare number with `!relay login signal relay`.')
    expect(await s.command(ALICE, room, '!relay create signal')).toBe('You have no Signal relay account yet. Link a spare number with `!relay login signal relay`.')
    const relay = await linkedLogin(s, s.signal, ALICE, 'spare')
    expect(await s.command(ALICE, room, `!relay link signal ${g.id}`)).toMatch(new RegExp(`relayed by ${relay}\\.`))
  })

  it('a personal account never makes a portal for a group that speaks; a relay account does', async () => {
    s = await scenario(kind)
    const own = await linkedLogin(s, s.signal, CAROL, 'carol-phone', 'personal')
    const relay = await linkedLogin(s, s.signal, ALICE, 'spare')
    const privateGroup = s.signal.addGroup('Carol and her friends', ['carol-phone'])
    const shared = s.signal.addGroup('Book club', ['spare'])
    await s.signal.say(privateGroup.id, { id: 'aci-friend', name: 'Friend' }, 'a private word', { loginId: own })
    await s.signal.say(shared.id, { id: 'aci-bob', name: 'Bob' }, 'anyone reading?', { loginId: relay })
    await s.hs.waitFor(() => s.hs.rooms().find(r => s.hs.stateContent(r, 'm.room.name')?.name === 'Book club'), { what: 'the relay\'s portal' })
    expect(s.bridge.portals.find('signal', privateGroup.id)).toBeUndefined()
    expect(s.hs.rooms().some(r => s.hs.stateContent(r, 'm.room.name')?.name === 'Carol and her friends')).toBe(false)
    // Nothing of that group was stored.
    const { rows } = await s.db.query<{ n: number }>('SELECT count(*)::int AS n FROM messages')
    expect(rows[0]!.n).toBe(1)
  })

  it('logout deletes a login for good; a room it relayed keeps its links and waits for a new relay', async () => {
    s = await scenario(kind)
    const { room, sg } = await bridgedRoom(s)
    const relay = s.bridge.portals.byRoom(room)!.signalLogin!
    expect(await s.command(ALICE, room, `!relay logout ${relay}`)).toBe(`Logged out ${relay} and deleted everything the bridge kept of it. Rooms it relayed keep their links; their Signal messages wait until a relay account is set there again (\`!relay set signal\`).`)
    expect(await s.bridge.logins.get(relay)).toBeUndefined()
    expect(s.bridge.portals.byRoom(room)).toMatchObject({ signalGroup: sg.id, signalLogin: null })
    expect(await s.command(ALICE, room, '!relay status')).toContain(`• Signal: “${sg.name}”; no relay set`)
    // A restart reads the same from the database.
    await s.restart()
    expect(s.bridge.portals.byRoom(room)).toMatchObject({ signalGroup: sg.id, signalLogin: null })
    const { rows } = await s.db.query('SELECT 1 FROM logins WHERE id = $1', [relay])
    expect(rows).toEqual([])
  })

  it('a person whose own account is in the group posts as themselves: text, reply, edit, reaction and deletion; others keep the relay', async () => {
    s = await scenario(kind)
    const { room, sg, wg } = await bridgedRoom(s, ALICE, [CAROL])
    const own = await linkedLogin(s, s.signal, CAROL, 'carol-phone', 'personal')
    sg.members.push('carol-phone')
    const first = await s.hs.sendMessage(CAROL, room, 'hello, it is me')
    const [mine] = await s.signal.waitForSentTo(sg.id, 1)
    expect(mine!.text).toBe('hello, it is me')
    expect(mine!.delivery.target.loginId).toBe(own)
    expect(mine!.delivery.kind === 'message' && mine!.delivery.relayed).toBe(false)
    // WhatsApp, where she has no account, still hears her through the relay.
    expect((await s.whatsapp.waitForSentTo(wg.id, 1))[0]!.text).toBe('Carol (Matrix): hello, it is me')
    // Everyone else keeps the relay.
    await s.hs.sendMessage(ALICE, room, { msgtype: 'm.text', body: 'welcome', 'm.relates_to': { 'm.in_reply_to': { event_id: first } } })
    const [, alices] = await s.signal.waitForSentTo(sg.id, 2)
    expect(alices!.text).toBe(`Alice (Matrix): welcome (reply to ${mine!.remoteId})`)
    expect(alices!.delivery.target.loginId).not.toBe(own)
    // Her reply, edit, reaction and deletion go through her own account too.
    const reply = await s.hs.sendMessage(CAROL, room, { msgtype: 'm.text', body: 'thanks', 'm.relates_to': { 'm.in_reply_to': { event_id: first } } })
    await s.hs.sendMessage(CAROL, room, { msgtype: 'm.text', body: '* thanks!', 'm.new_content': { msgtype: 'm.text', body: 'thanks!' }, 'm.relates_to': { rel_type: 'm.replace', event_id: reply } })
    const aliceOnMatrix = await s.hs.waitForEvent(room, e => e.sender === ALICE && (e.content as { body?: string }).body === 'welcome')
    await s.hs.sendEvent(CAROL, room, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: aliceOnMatrix.event_id, key: '👍' } })
    await s.hs.redact(CAROL, room, first)
    const sent = await s.signal.waitForSentTo(sg.id, 6)
    const [replied, edited, reacted, deleted] = sent.slice(2)
    expect(replied!.text).toBe(`thanks (reply to ${mine!.remoteId})`)
    expect(edited!.text).toBe(`edit ${replied!.remoteId}: thanks!`)
    expect(reacted!.text).toBe(`react 👍 on ${alices!.remoteId}`)
    expect(deleted!.text).toBe(`delete ${mine!.remoteId}`)
    for (const x of [replied, edited, reacted, deleted]) expect(x!.delivery.target.loginId).toBe(own)
    expect(warnings(room)).toEqual([])
  })

  it('when her own account is not in the group, her messages go through the relay under her name, and the room is told once', async () => {
    s = await scenario(kind)
    const { room, sg } = await bridgedRoom(s, ALICE, [CAROL])
    const own = await linkedLogin(s, s.signal, CAROL, 'carol-phone', 'personal')
    await s.hs.sendMessage(CAROL, room, 'one')
    await s.hs.sendMessage(CAROL, room, 'two')
    const sent = await s.signal.waitForSentTo(sg.id, 2)
    expect(sent.map(x => x.text)).toEqual(['Carol (Matrix): one', 'Carol (Matrix): two'])
    expect(sent.every(x => x.delivery.target.loginId !== own)).toBe(true)
    await s.hs.waitFor(() => warnings(room).length > 0, { what: 'the notice' })
    expect(warnings(room)).toEqual([`⚠️ Carol: your messages reach Signal through the room's relay, under your name, because your own Signal account (${own}) cannot post in the Signal group (it is not a member there, was removed, or is banned).`])
    // Her account was tried once; the second message did not knock on that door again.
    expect(s.signal.refused.filter(r => r.delivery.target.loginId === own)).toHaveLength(1)
  })

  it('when her own account is logged out, her messages go through the relay with one notice, and nothing waits for it', async () => {
    s = await scenario(kind)
    const { room, sg } = await bridgedRoom(s, ALICE, [CAROL])
    const own = await linkedLogin(s, s.signal, CAROL, 'carol-phone', 'personal')
    sg.members.push('carol-phone')
    await s.hs.sendMessage(CAROL, room, 'as me')
    expect((await s.signal.waitForSentTo(sg.id, 1))[0]!.delivery.target.loginId).toBe(own)
    await s.signal.setState(own, 'logged_out', 'unlinked on the phone')
    await s.hs.sendMessage(CAROL, room, 'still here')
    await s.hs.sendMessage(ALICE, room, 'and me')
    const sent = await s.signal.waitForSentTo(sg.id, 3)
    expect(sent.slice(1).map(x => x.text)).toEqual(['Carol (Matrix): still here', 'Alice (Matrix): and me'])
    await s.hs.waitFor(() => warnings(room).length > 0, { what: 'the notice' })
    expect(warnings(room)).toEqual([expect.stringContaining(`your own Signal account (${own}) is logged out of the bridge`)])
  })
})
