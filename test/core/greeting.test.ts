// After the first start the bot greets the configured admin in a direct chat with the next step, once: the
// greeting is remembered in the database, so a restart says nothing (issue 16, "A bot that guides").
import { afterEach, describe, expect, it } from 'vitest'
import { ADMIN, ALICE, linkedLogin, scenario, type Scenario } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'

describe.each(DB_KINDS)('the greeting on %s', kind => {
  let s: Scenario
  afterEach(async () => s?.stop())

  const directChatOf = async (mxid: string): Promise<string | undefined> =>
    (await s.db.query<{ room_id: string }>('SELECT room_id FROM direct_chats WHERE mxid = $1', [mxid])).rows[0]?.room_id

  it('the admin named in bridge.permissions is greeted once, in a direct chat, with the next step', async () => {
    s = await scenario(kind)
    const dm = await directChatOf(ADMIN)
    expect(dm).toBeDefined()
    expect(s.hs.membership(dm!, ADMIN)).toBe('invite')
    const greetings = () => s.botNotices(dm!).filter(n => n.startsWith('Hello!'))
    expect(greetings()).toEqual([
      'Hello! I am the relay bridge of example.org, and you are one of its admins. Next: link the relay accounts, here in our direct chat: type `login signal` and scan the code with the relay phone, then do the same with `login whatsapp`. `help` lists every command; `status` shows how the bridge is doing.',
    ])
    // Only admins named by user id: Alice, a user of example.org, is not greeted.
    expect(await directChatOf(ALICE)).toBeUndefined()

    await s.restart()
    await s.hs.join(ADMIN, dm!)
    // A later marker: a second greeting would have been posted before the restarted bridge was ready.
    await s.command(ADMIN, dm!, 'help')
    expect(greetings()).toHaveLength(1)
  })

  it('an admin greeted once the relay accounts are linked is pointed at linking a room instead', async () => {
    s = await scenario(kind, { configure: raw => { raw.bridge.permissions['@second:example.org'] = 'admin' } })
    await linkedLogin(s, s.signal)
    await linkedLogin(s, s.whatsapp)
    // As if this admin had just been added to bridge.permissions.
    await s.restart(async () => void await s.db.query('DELETE FROM greetings WHERE mxid = $1', ['@second:example.org']))
    const dm = await directChatOf('@second:example.org')
    expect(s.botNotices(dm!).at(-1)).toBe('Hello! I am the relay bridge of example.org, and you are one of its admins. Next: invite me to a Matrix room and type `!relay link signal <group id or invite link>` there. `help` lists every command; `status` shows how the bridge is doing.')
  })
})
