// The ghosts' encryption machines in memory (src/matrix/crypto/ghost-devices.ts): an idle one is unloaded and
// comes back as the same device; and what it did not hear while unloaded (someone's new device) is made up for
// when it speaks again, so the new device can read the ghost's next message. Real Olm on both sides, over the
// fake homeserver's HTTP API.
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import type { Db } from '../../src/db/types.ts'
import { MatrixClientApi, type JsonObject } from '../../src/matrix/client.ts'
import { GhostDevices } from '../../src/matrix/crypto/ghost-devices.ts'
import { keptDeviceId } from '../../src/matrix/encryption.ts'
import { FakeHomeserver } from '../fakes/homeserver.ts'
import { DB_KINDS, freshDb } from '../support/db.ts'
import { OlmPeer } from '../support/olm-peer.ts'
import { until } from '../support/networks.ts'

const log = pino({ level: 'silent' })
const ALICE = '@alice:example.org'
const GHOST = '@signal_aci-bob:example.org'

describe.each(DB_KINDS)("ghosts' machines in memory, on %s", kind => {
  let db: Db
  let hs: FakeHomeserver
  let ghosts: GhostDevices
  const peers: OlmPeer[] = []
  afterEach(async () => {
    await ghosts?.close()
    for (const p of peers.splice(0)) await p.close()
    await hs?.stop()
    await db?.close()
  })

  async function setUp(idleMs: number): Promise<{ room: string; alice: OlmPeer }> {
    db = await freshDb(kind)
    hs = await FakeHomeserver.start({ registration: { 'org.matrix.msc3202': true, 'io.element.msc4190': true } })
    const api = new MatrixClientApi({ homeserverUrl: hs.url, asToken: hs.registration.as_token, domain: hs.domain, botLocalpart: 'relaybot', log })
    await api.registerUser('signal_aci-bob')
    ghosts = new GhostDevices({
      db, storeKey: 'a'.repeat(64), log, maxLoaded: 10, idleMs,
      deviceHttp: (user, device) => api.deviceHttp(user, device), keptDeviceId: user => keptDeviceId(db, user),
      isOwnUser: user => user.startsWith('@signal_') || user.startsWith('@relaybot:'),
    })
    hs.createUser(ALICE, { displayname: 'Alice' })
    const alice = await OlmPeer.login(hs, ALICE)
    peers.push(alice)
    const room = await hs.createRoom(ALICE, { name: 'Family', encrypted: true })
    return { room, alice }
  }

  /** What the ghost's device encrypts for Alice's devices, as the event the room would carry. */
  async function ghostSays(room: string, body: string): Promise<JsonObject & { room_id: string }> {
    const content = await ghosts.encrypt(GHOST, room, 'm.room.message', { msgtype: 'm.text', body }, {
      members: [ALICE], encryption: { algorithm: 'm.megolm.v1.aes-sha2' }, historyVisibility: 'shared',
    })
    return { type: 'm.room.encrypted', content, room_id: room, sender: GHOST, event_id: `$${body.replace(/\W/g, '')}`, origin_server_ts: Date.now() }
  }

  async function reads(peer: OlmPeer, event: JsonObject & { room_id: string }): Promise<string> {
    await peer.sync()
    const r = await peer.crypto.decrypt(event)
    return r.kind === 'decrypted' ? String(r.event.content['body']) : `(${r.kind}: ${r.message})`
  }

  it('an idle ghost\'s machine is unloaded, and loaded again with the same device when it speaks', async () => {
    const { room, alice } = await setUp(50)
    const device = await ghosts.deviceOf(GHOST)
    const first = await ghostSays(room, 'before the unload')
    await until(() => ghosts.stats().loaded === 0 && ghosts.stats().unloads >= 1, 'the idle machine to be unloaded')
    const second = await ghostSays(room, 'after the unload')
    expect(await ghosts.deviceOf(GHOST)).toBe(device)
    expect(ghosts.stats()).toMatchObject({ created: 1 })
    expect(ghosts.stats().loads).toBeGreaterThanOrEqual(2)
    expect(await reads(alice, first)).toBe('before the unload')
    expect(await reads(alice, second)).toBe('after the unload')
    // One device, one identity on the homeserver; the same outbound session goes on (no second room key needed).
    expect([...hs.e2ee.devices.get(GHOST)!.keys()]).toEqual([device])
    expect((second.content as JsonObject)['session_id']).toBe((first.content as JsonObject)['session_id'])
  })

  it("a device someone added while the ghost's machine was unloaded gets the key of the ghost's next message", async () => {
    const { room, alice } = await setUp(50)
    await ghostSays(room, 'to the phone only')
    await until(() => ghosts.stats().loaded === 0, 'the idle machine to be unloaded')
    // Alice signs in on a laptop; the ghost's machine is not in memory to hear of it.
    const laptop = await alice.addDevice()
    peers.push(laptop)
    const next = await ghostSays(room, 'to the laptop too')
    expect(await reads(laptop, next)).toBe('to the laptop too')
    expect(await reads(alice, next)).toBe('to the laptop too')
  })
})
