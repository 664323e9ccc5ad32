// The bot's encryption device (src/matrix/crypto/machine.ts) against real Olm peers (test/support/olm-peer.ts)
// through the fake homeserver: the bot's to-device messages, device lists and key counts come only from the
// appservice transactions, as in the bridge. Real crypto on both sides; nothing here is mocked.
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { MatrixClientApi, type JsonObject } from '../../src/matrix/client.ts'
import { CryptoMachine, ensureDevice } from '../../src/matrix/crypto/machine.ts'
import { countsOf, forDevice, nothingNew } from '../../src/matrix/crypto/transaction.ts'
import { transactionCrypto } from '../../src/matrix/transaction-crypto.ts'
import { FakeHomeserver, type FakeEvent, type FakeHomeserverOptions } from '../fakes/homeserver.ts'
import { verifySigned } from '../fakes/homeserver/e2ee.ts'
import { RecordingAppservice } from '../fakes/homeserver/recording-appservice.ts'
import { OlmPeer } from '../support/olm-peer.ts'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!()
})

const ALICE = '@alice:example.org'
const BOB = '@bob:example.org'
const BOT = '@relaybot:example.org'
const BOT_DEVICE = 'RELAYBRIDGE'
const log = pino({ level: 'silent' })

/** A homeserver with MSC3202/MSC4190, an appservice endpoint that records transactions, and the bot's device,
 * fed from those transactions in order. */
async function setup(opts: FakeHomeserverOptions = {}) {
  const as = await RecordingAppservice.start()
  const hs = await FakeHomeserver.start({ ...opts, registration: { 'org.matrix.msc3202': true, 'io.element.msc4190': true, ...opts.registration } })
  cleanups.push(() => as.stop(), () => hs.stop())
  hs.setAppserviceUrl(as.url)
  hs.createUser(ALICE, { displayname: 'Alice' })
  hs.createUser(BOB, { displayname: 'Bob' })
  const api = new MatrixClientApi({ homeserverUrl: hs.url, asToken: hs.registration.as_token, domain: hs.domain, botLocalpart: 'relaybot', log })
  const created = await ensureDevice(api.deviceHttp(BOT), BOT, BOT_DEVICE, 'relay bridge')
  const bot = await CryptoMachine.open({ userId: BOT, deviceId: BOT_DEVICE, http: api.deviceHttp(BOT, BOT_DEVICE), log })
  cleanups.push(() => bot.close())
  let fed = 0
  /** Everything the homeserver queued so far reaches the bot's machine, transaction by transaction. */
  const botSync = async (): Promise<void> => {
    await hs.waitForPushIdle()
    while (fed < as.accepted.length) {
      const part = forDevice(transactionCrypto(as.accepted[fed++]!.body as Record<string, unknown>).crypto, BOT, BOT_DEVICE)
      if (part) await bot.receiveSyncChanges(part)
    }
  }
  // The device's creation is a device-list change: its transaction carries the count of a device that has no
  // keys yet. Taken before the first upload, as a bridge does with what it stored before starting the machine,
  // it does not make the machine upload a second batch.
  await botSync()
  await bot.processOutgoing()
  const peers: OlmPeer[] = []
  const login = async (userId: string) => {
    const peer = await OlmPeer.login(hs, userId)
    peers.push(peer)
    cleanups.push(() => peer.close())
    return peer
  }
  /** The bot encrypts and sends as the room's settings say; returns the event as stored. */
  const botSends = async (room: string, body: string): Promise<FakeEvent> => {
    await botSync()
    const content = await bot.encrypt(room, 'm.room.message', { msgtype: 'm.notice', body }, {
      members: hs.joinedMembers(room), encryption: hs.stateContent(room, 'm.room.encryption') ?? {},
    })
    const id = await api.sendEvent(BOT, room, 'm.room.encrypted', content, `bot-${body}`)
    return event(hs, room, id)
  }
  return { as, hs, api, bot, botSync, login, botSends, created }
}

function event(hs: FakeHomeserver, room: string, id: string): FakeEvent {
  const ev = hs.timeline(room).find((e) => e.event_id === id)
  if (!ev) throw new Error(`no event ${id} in ${room}`)
  return ev
}

const sessionOf = (ev: FakeEvent): string => String(ev.content['session_id'])

/** Unclaimed signed_curve25519 keys of the bot's device, as the homeserver holds them. */
function botOneTimeKeys(hs: FakeHomeserver): number {
  const device = hs.e2ee.device(BOT, BOT_DEVICE)
  if (!device) throw new Error('the bot has no device')
  return hs.e2ee.otkCounts(device)['signed_curve25519'] ?? 0
}

/** A room Alice made encrypted and the bot joined; `extra` are invited and joined too. */
async function encryptedRoom(hs: FakeHomeserver, api: MatrixClientApi, extra: string[] = [], encryption: JsonObject = {}): Promise<string> {
  const room = await hs.createRoom(ALICE, { invite: [BOT, ...extra], encrypted: true })
  if (Object.keys(encryption).length) await hs.sendEvent(ALICE, room, 'm.room.encryption', { algorithm: 'm.megolm.v1.aes-sha2', ...encryption }, { stateKey: '' })
  await api.join(BOT, room)
  for (const u of extra) await hs.join(u, room)
  return room
}

describe('the bot device and a real Olm peer', () => {
  it('exchange encrypted messages both ways through the homeserver', async () => {
    const { hs, api, bot, botSync, login, botSends } = await setup()
    const alice = await login(ALICE)
    const room = await encryptedRoom(hs, api)
    const uploaded = botOneTimeKeys(hs)
    expect(uploaded).toBeGreaterThan(0)

    const fromAlice = event(hs, room, await alice.send(room, 'hello bot'))
    // Alice's device took one of the bot's one-time keys to start an Olm session.
    expect(hs.calls.some((c) => c.path.endsWith('/keys/claim') && c.user === ALICE)).toBe(true)
    expect(botOneTimeKeys(hs)).toBe(uploaded - 1)
    expect(fromAlice.type).toBe('m.room.encrypted')
    expect(JSON.stringify(fromAlice.content)).not.toContain('hello bot')
    await botSync()
    const got = await bot.decrypt(fromAlice as unknown as JsonObject & { room_id: string })
    expect(got).toMatchObject({ kind: 'decrypted', event: { type: 'm.room.message', content: { body: 'hello bot' } }, senderDevice: alice.deviceId })
    // The transaction's one-time-key count told the bot, which topped its keys up again (a count computed before
    // an upload landed can make it upload one more, as with Synapse).
    expect(botOneTimeKeys(hs)).toBeGreaterThanOrEqual(uploaded)

    const fromBot = await botSends(room, 'hello alice')
    expect(JSON.stringify(fromBot.content)).not.toContain('hello alice')
    expect(await alice.readText(fromBot)).toBe('hello alice')
  })

  it('decrypts on retry once a room key arrives in a later transaction than the event it unlocks', async () => {
    const { hs, as, api, bot, botSync, login } = await setup()
    const alice = await login(ALICE)
    const room = await encryptedRoom(hs, api)
    const hold = hs.holdToDevice((m) => m.to_user_id === BOT && m.sender === ALICE && m.type === 'm.room.encrypted')

    const secret = event(hs, room, await alice.send(room, 'the key comes later'))
    await botSync()
    const carrying = as.accepted.findIndex((t) => (t.body['events'] as FakeEvent[]).some((e) => e.event_id === secret.event_id))
    expect(carrying).toBeGreaterThanOrEqual(0)
    expect(hold.held.length).toBeGreaterThan(0)
    const first = await bot.decrypt(secret as unknown as JsonObject & { room_id: string })
    expect(first).toMatchObject({ kind: 'missing-key', sessionId: sessionOf(secret) })

    const arrived: { roomId: string; sessionId: string }[] = []
    bot.onRoomKeys((keys) => arrived.push(...keys))
    hold.release()
    await botSync()
    const keyTxn = as.accepted.findIndex((t) => ((t.body['de.sorunome.msc2409.to_device'] as unknown[] | undefined) ?? []).length > 0 && JSON.stringify(t.body).includes(ALICE))
    expect(keyTxn).toBeGreaterThan(carrying)
    expect(arrived).toContainEqual({ roomId: room, sessionId: sessionOf(secret) })
    expect(await bot.decrypt(secret as unknown as JsonObject & { room_id: string })).toMatchObject({ kind: 'decrypted', event: { content: { body: 'the key comes later' } } })
  })

  it("gives a user's new device the room key for later messages, and a device that logged out none", async () => {
    const { hs, api, botSends, login } = await setup()
    const phone = await login(ALICE)
    const room = await encryptedRoom(hs, api)
    const before = await botSends(room, 'before the laptop')
    expect(await phone.readText(before)).toBe('before the laptop')

    const laptop = await phone.addDevice()
    const withLaptop = await botSends(room, 'with the laptop')
    expect(await phone.readText(withLaptop)).toBe('with the laptop')
    expect(await laptop.readText(withLaptop)).toBe('with the laptop')
    const toLaptop = () => hs.e2ee.sentToDevice.filter((m) => m.to_user_id === ALICE && m.to_device_id === laptop.deviceId && m.sender === BOT).length
    expect(toLaptop()).toBeGreaterThan(0)

    const laptopKeys = toLaptop()
    await laptop.logout()
    const after = await botSends(room, 'after the laptop left')
    expect(await phone.readText(after)).toBe('after the laptop left')
    // A removed device forces a new room key, and the laptop was sent nothing since it left.
    expect(sessionOf(after)).not.toBe(sessionOf(withLaptop))
    expect(toLaptop()).toBe(laptopKeys)
  })

  it('shares no key of later messages with a member who left the room', async () => {
    const { hs, api, botSends, login } = await setup()
    const alice = await login(ALICE)
    const bob = await login(BOB)
    const room = await encryptedRoom(hs, api, [BOB])
    const both = await botSends(room, 'for both of you')
    expect(await bob.readText(both)).toBe('for both of you')

    await bob.leave(room)
    const aliceOnly = await botSends(room, 'bob has gone')
    expect(await alice.readText(aliceOnly)).toBe('bob has gone')
    expect(sessionOf(aliceOnly)).not.toBe(sessionOf(both))
    expect(await bob.read(aliceOnly)).toMatchObject({ kind: 'missing-key' })
  })

  it("starts a new room key after the room's rotation_period_msgs", async () => {
    const { hs, api, botSends, login } = await setup()
    const alice = await login(ALICE)
    const room = await encryptedRoom(hs, api, [], { rotation_period_msgs: 2 })
    const sent = [await botSends(room, 'one'), await botSends(room, 'two'), await botSends(room, 'three')]
    expect(sessionOf(sent[0]!)).toBe(sessionOf(sent[1]!))
    expect(sessionOf(sent[2]!)).not.toBe(sessionOf(sent[1]!))
    expect(await Promise.all(sent.map((ev) => alice.readText(ev)))).toEqual(['one', 'two', 'three'])
  })

  it("cross-signs the bot's device with the bot's own identity", async () => {
    const { hs, bot, login } = await setup()
    expect(await bot.bootstrapCrossSigning()).toBe('created')
    expect(await bot.bootstrapCrossSigning()).toBe('present')

    const alice = await login(ALICE)
    const query = await fetch(`${hs.url}/_matrix/client/v3/keys/query`, {
      method: 'POST', headers: { Authorization: `Bearer ${hs.login(ALICE).accessToken}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ device_keys: { [BOT]: [] } }),
    }).then((r) => r.json()) as { device_keys: Record<string, Record<string, JsonObject>>; self_signing_keys: Record<string, JsonObject>; master_keys: Record<string, JsonObject> }
    const ssk = query.self_signing_keys[BOT]!
    const [sskId, sskKey] = Object.entries(ssk['keys'] as Record<string, string>)[0]!
    const [mskId, mskKey] = Object.entries(query.master_keys[BOT]!['keys'] as Record<string, string>)[0]!
    // The device is signed by the self-signing key, which the master key signed: checked with ed25519 here.
    expect(verifySigned(query.device_keys[BOT]![BOT_DEVICE]!, BOT, sskId, sskKey)).toBe(true)
    expect(verifySigned(ssk, BOT, mskId, mskKey)).toBe(true)
    // And another user's Rust crypto agrees.
    await alice.crypto.trackUsers([BOT])
    expect(await alice.crypto.isCrossSignedByOwner(BOT, BOT_DEVICE)).toBe(true)
  })
})

describe('the bot device on an older homeserver', () => {
  it('without MSC4190 gets its device from the appservice login and still exchanges messages', async () => {
    const { hs, api, bot, botSync, login, botSends, created } = await setup({ registration: { 'io.element.msc4190': false }, otkCountKey: 'key_counts' })
    expect(created).toBe('login')
    const alice = await login(ALICE)
    const room = await encryptedRoom(hs, api)
    const uploaded = botOneTimeKeys(hs)
    const fromAlice = event(hs, room, await alice.send(room, 'old server'))
    await botSync()
    // The claimed key was replaced: counts read from the older spelling alone.
    expect(botOneTimeKeys(hs)).toBeGreaterThanOrEqual(uploaded)
    expect(await bot.decrypt(fromAlice as unknown as JsonObject & { room_id: string })).toMatchObject({ kind: 'decrypted', event: { content: { body: 'old server' } } })
    expect(await alice.readText(await botSends(room, 'still works'))).toBe('still works')
  })
})

describe("a transaction's crypto part for one device", () => {
  it('keeps only the to-device events for this device, and reads the counts under either spelling', () => {
    const toDevice = [
      { type: 'm.room.encrypted', sender: ALICE, content: { n: 1 }, to_user_id: BOT, to_device_id: BOT_DEVICE },
      { type: 'm.room.encrypted', sender: ALICE, content: { n: 2 }, to_user_id: BOT, to_device_id: 'OTHERDEVICE' },
      { type: 'm.room.encrypted', sender: ALICE, content: { n: 3 }, to_user_id: '@signal_x:example.org', to_device_id: BOT_DEVICE },
    ]
    const counts = { [BOT]: { [BOT_DEVICE]: { signed_curve25519: 7 }, OTHERDEVICE: { signed_curve25519: 1 } } }
    const newer = forDevice(transactionCrypto({
      events: [], 'de.sorunome.msc2409.to_device': toDevice, 'org.matrix.msc3202.device_one_time_keys_count': counts,
      'org.matrix.msc3202.device_lists': { changed: [ALICE], left: [] },
      'org.matrix.msc3202.device_unused_fallback_key_types': { [BOT]: { [BOT_DEVICE]: ['signed_curve25519'] } },
    }).crypto, BOT, BOT_DEVICE)
    expect(newer).toEqual({
      toDevice: [{ type: 'm.room.encrypted', sender: ALICE, content: { n: 1 } }],
      changed: [ALICE], left: [], otkCounts: { signed_curve25519: 7 }, unusedFallbackKeyTypes: ['signed_curve25519'],
    })
    const older = forDevice(transactionCrypto({ events: [], 'org.matrix.msc3202.device_one_time_key_counts': counts }).crypto, BOT, BOT_DEVICE)
    expect(older?.otkCounts).toEqual({ signed_curve25519: 7 })
    expect(older?.unusedFallbackKeyTypes).toBeUndefined()
    expect(forDevice(transactionCrypto({ events: [{ event_id: '$a' }] }).crypto, BOT, BOT_DEVICE)).toBeUndefined()
  })

  it('is no news when it only repeats the key counts the machine was last handed; new counts, a key or a device change are', () => {
    const part = (o: { count?: number; toDevice?: boolean; changed?: string[] }) => forDevice(transactionCrypto({
      events: [{ event_id: '$echo', sender: BOT }],
      'org.matrix.msc3202.device_one_time_keys_count': { [BOT]: { [BOT_DEVICE]: { signed_curve25519: o.count ?? 50 } } },
      ...(o.toDevice ? { 'de.sorunome.msc2409.to_device': [{ type: 'm.room.encrypted', sender: ALICE, content: {}, to_user_id: BOT, to_device_id: BOT_DEVICE }] } : {}),
      ...(o.changed ? { 'org.matrix.msc3202.device_lists': { changed: o.changed, left: [] } } : {}),
    }).crypto, BOT, BOT_DEVICE)!
    const seen = countsOf(part({}))
    expect(nothingNew(part({}), undefined)).toBe(false) // the first counts after a start
    expect(nothingNew(part({}), seen)).toBe(true)
    expect(nothingNew(part({ count: 49 }), seen)).toBe(false)
    expect(nothingNew(part({ toDevice: true }), seen)).toBe(false)
    expect(nothingNew(part({ changed: [ALICE] }), seen)).toBe(false)
  })
})
