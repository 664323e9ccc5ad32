// A real user's client syncing with the fake homeserver, held to what Synapse does (synapse/rest/client/sync.py,
// handlers/sync.py, filter.py, capabilities.py, push rules, room_keys): the rooms of an initial and of an
// incremental sync, a long-poll that answers as soon as something arrives, filters, and the start-up calls a
// client such as matrix-js-sdk makes before its first sync.
import { afterEach, describe, expect, it } from 'vitest'
import { FakeHomeserver } from './homeserver.ts'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!()
})

const ALICE = '@alice:example.org'
const CAROL = '@carol:example.org'
type Json = Record<string, any>

async function setup() {
  const hs = await FakeHomeserver.start()
  cleanups.push(() => hs.stop())
  hs.createUser(ALICE, { displayname: 'Alice' })
  hs.createUser(CAROL, { displayname: 'Carol' })
  return hs
}

async function call(hs: FakeHomeserver, token: string, method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<{ status: number; json: Json }> {
  const res = await fetch(`${hs.url}${path}`, {
    method, headers: { Authorization: `Bearer ${token}`, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}), ...(signal ? { signal } : {}),
  })
  return { status: res.status, json: await res.json() as Json }
}

const bodies = (room: Json) => (room.timeline.events as Json[]).filter(e => e.type === 'm.room.message').map(e => e.content.body)

describe('fake homeserver: a client\'s /sync', () => {
  it('an initial sync: joined rooms from their state, the newest events as the filter limits them, and invites as stripped state', async () => {
    const hs = await setup()
    const room = await hs.createRoom(ALICE, { name: 'Family', invite: [CAROL] })
    for (let i = 1; i <= 5; i++) await hs.sendMessage(ALICE, room, `m${i}`)
    const alice = hs.login(ALICE)
    const filter = encodeURIComponent(JSON.stringify({ room: { timeline: { limit: 3 } } }))
    const { json } = await call(hs, alice.accessToken, 'GET', `/_matrix/client/v3/sync?filter=${filter}`)
    const joined = json.rooms.join[room]
    expect(bodies(joined)).toEqual(['m3', 'm4', 'm5'])
    expect(joined.timeline.limited).toBe(true)
    expect(joined.timeline.events[0].room_id).toBeUndefined()
    // The state the timeline starts from: the room's name and both memberships.
    const state = joined.state.events as Json[]
    expect(state.find(e => e.type === 'm.room.name')?.content).toEqual({ name: 'Family' })
    expect(state.filter(e => e.type === 'm.room.member').map(e => [e.state_key, e.content.membership])).toEqual([[ALICE, 'join'], [CAROL, 'invite']])

    const carol = hs.login(CAROL)
    const invited = (await call(hs, carol.accessToken, 'GET', '/_matrix/client/v3/sync')).json.rooms
    expect(invited.join).toEqual({})
    const stripped = invited.invite[room].invite_state.events as Json[]
    expect(stripped.map(e => e.type).sort()).toEqual(['m.room.create', 'm.room.join_rules', 'm.room.member', 'm.room.name'])
    expect(stripped.find(e => e.type === 'm.room.member')).toEqual({ type: 'm.room.member', state_key: CAROL, sender: ALICE, content: { membership: 'invite', displayname: 'Carol' } })
  })

  it('an incremental sync long-polls: it answers as soon as a message arrives, with only what came since', async () => {
    const hs = await setup()
    const room = await hs.createRoom(ALICE, {})
    await hs.sendMessage(ALICE, room, 'before')
    const alice = hs.login(ALICE)
    const since = (await call(hs, alice.accessToken, 'GET', '/_matrix/client/v3/sync')).json.next_batch as string
    // Ten minutes: longer than the test may take, so only an early answer lets it pass.
    const polling = call(hs, alice.accessToken, 'GET', `/_matrix/client/v3/sync?since=${since}&timeout=600000`)
    await hs.waitFor(() => hs.syncsWaiting === 1, { what: 'the sync to wait' })
    await hs.sendMessage(ALICE, room, 'after')
    const { json } = await polling
    expect(bodies(json.rooms.join[room])).toEqual(['after'])
    expect(json.rooms.join[room].timeline.limited).toBe(false)
    expect(json.rooms.join[room].state.events).toEqual([])
    expect(hs.syncsWaiting).toBe(0)
  })

  it('with nothing new, it answers empty once the timeout has passed; a client that hangs up stops the wait', async () => {
    const hs = await setup()
    const alice = hs.login(ALICE)
    const since = (await call(hs, alice.accessToken, 'GET', '/_matrix/client/v3/sync')).json.next_batch as string
    const started = Date.now()
    const { json } = await call(hs, alice.accessToken, 'GET', `/_matrix/client/v3/sync?since=${since}&timeout=50`)
    expect(Date.now() - started).toBeGreaterThanOrEqual(50)
    expect(json).toMatchObject({ next_batch: since, rooms: { join: {}, invite: {}, leave: {} }, to_device: { events: [] } })

    const hangUp = new AbortController()
    const polling = call(hs, alice.accessToken, 'GET', `/_matrix/client/v3/sync?since=${since}&timeout=600000`, undefined, hangUp.signal).catch(() => 'hung up')
    await hs.waitFor(() => hs.syncsWaiting === 1, { what: 'the sync to wait' })
    hangUp.abort()
    expect(await polling).toBe('hung up')
    await hs.waitFor(() => hs.syncsWaiting === 0, { what: 'the wait to end' })
    expect((await call(hs, alice.accessToken, 'GET', '/_matrix/client/v3/sync?since=nonsense')).json.errcode).toBe('M_INVALID_PARAM')
  })

  it('a room joined since the last sync comes with its state and history', async () => {
    const hs = await setup()
    const room = await hs.createRoom(ALICE, { name: 'Family', invite: [CAROL] })
    await hs.sendMessage(ALICE, room, 'hello')
    const carol = hs.login(CAROL)
    const since = (await call(hs, carol.accessToken, 'GET', '/_matrix/client/v3/sync')).json.next_batch as string
    await hs.join(CAROL, room)
    const joined = (await call(hs, carol.accessToken, 'GET', `/_matrix/client/v3/sync?since=${since}`)).json.rooms.join[room]
    expect(bodies(joined)).toEqual(['hello'])
    expect(joined.timeline.events.at(-1)).toMatchObject({ type: 'm.room.member', state_key: CAROL, content: { membership: 'join' } })
    // The whole room fits the timeline here: its state is there, from the creation on.
    expect(joined.timeline.events[0]).toMatchObject({ type: 'm.room.create', state_key: '' })
    expect(joined.state.events).toEqual([])
  })

  it('filters and account data are one\'s own; push rules, capabilities and the absent key backup answer as Synapse does', async () => {
    const hs = await setup()
    const alice = hs.login(ALICE)
    const carol = hs.login(CAROL)
    const created = await call(hs, alice.accessToken, 'POST', `/_matrix/client/v3/user/${encodeURIComponent(ALICE)}/filter`, { room: { timeline: { limit: 1 } } })
    expect(created).toEqual({ status: 200, json: { filter_id: '0' } })
    expect((await call(hs, alice.accessToken, 'GET', `/_matrix/client/v3/user/${encodeURIComponent(ALICE)}/filter/0`)).json).toEqual({ room: { timeline: { limit: 1 } } })
    expect((await call(hs, carol.accessToken, 'GET', `/_matrix/client/v3/user/${encodeURIComponent(ALICE)}/filter/0`)).status).toBe(403)
    expect((await call(hs, carol.accessToken, 'POST', `/_matrix/client/v3/user/${encodeURIComponent(ALICE)}/filter`, {})).status).toBe(403)
    expect((await call(hs, alice.accessToken, 'GET', '/_matrix/client/v3/sync?filter=7')).json.errcode).toBe('M_NOT_FOUND')

    const rules = (await call(hs, alice.accessToken, 'GET', '/_matrix/client/v3/pushrules/')).json
    expect(rules.global.override[0]).toMatchObject({ rule_id: '.m.rule.master', enabled: false, default: true })
    const caps = (await call(hs, alice.accessToken, 'GET', '/_matrix/client/v3/capabilities')).json
    expect(caps.capabilities['m.room_versions']).toEqual({ default: '11', available: { '10': 'stable', '11': 'stable' } })
    expect(await call(hs, alice.accessToken, 'GET', '/_matrix/client/v3/room_keys/version')).toEqual({ status: 404, json: { errcode: 'M_NOT_FOUND', error: 'No backup found' } })

    const data = `/_matrix/client/v3/user/${encodeURIComponent(ALICE)}/account_data/m.cross_signing.master`
    expect(await call(hs, alice.accessToken, 'GET', data)).toEqual({ status: 404, json: { errcode: 'M_NOT_FOUND', error: 'Account data not found' } })
    expect((await call(hs, alice.accessToken, 'PUT', data, { encrypted: {} })).status).toBe(200)
    expect((await call(hs, alice.accessToken, 'GET', data)).json).toEqual({ encrypted: {} })
    expect((await call(hs, carol.accessToken, 'GET', data)).status).toBe(403)
  })
})
