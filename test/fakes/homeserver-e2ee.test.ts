// The fake homeserver's end-to-end encryption endpoints and transaction extensions, held to what Synapse does
// (synapse/rest/client/keys.py, devices.py, login.py, api/auth/base.py, appservice/api.py). The crypto itself
// is exercised with real Olm machines in test/matrix/crypto.test.ts; here the shapes and refusals.
import { afterEach, describe, expect, it } from 'vitest'
import { FakeHomeserver, type FakeHomeserverOptions } from './homeserver.ts'
import { RecordingAppservice } from './homeserver/recording-appservice.ts'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!()
})

const ALICE = '@alice:example.org'
const BOT = '@relaybot:example.org'

async function setup(opts: FakeHomeserverOptions = {}) {
  const as = await RecordingAppservice.start()
  const hs = await FakeHomeserver.start({ ...opts, registration: { 'org.matrix.msc3202': true, 'io.element.msc4190': true, ...opts.registration } })
  cleanups.push(() => as.stop(), () => hs.stop())
  hs.setAppserviceUrl(as.url)
  hs.createUser(ALICE, { displayname: 'Alice' })
  return { as, hs }
}

/** A client-server call with a token, as any client makes it; answers status and JSON. */
async function call(hs: FakeHomeserver, token: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${hs.url}${path}`, {
    method, headers: { Authorization: `Bearer ${token}`, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  })
  return { status: res.status, json: await res.json() as Record<string, unknown> }
}

const asBot = (device?: string) => `?user_id=${encodeURIComponent(BOT)}${device ? `&org.matrix.msc3202.device_id=${device}` : ''}`
const deviceKeys = (userId: string, deviceId: string) => ({
  user_id: userId, device_id: deviceId, algorithms: ['m.olm.v1.curve25519-aes-sha2', 'm.megolm.v1.aes-sha2'],
  keys: { [`curve25519:${deviceId}`]: 'c'.repeat(43), [`ed25519:${deviceId}`]: 'e'.repeat(43) }, signatures: {},
})

describe('fake homeserver: devices for the appservice (MSC4190, MSC3202 masquerading)', () => {
  it('creates the bot device with PUT /devices/{id} (201, then 200) and refuses the appservice login', async () => {
    const { hs } = await setup()
    const token = hs.registration.as_token
    expect((await call(hs, token, 'PUT', `/_matrix/client/v3/devices/BOTDEV${asBot()}`, { display_name: 'relay bridge' })).status).toBe(201)
    expect((await call(hs, token, 'PUT', `/_matrix/client/v3/devices/BOTDEV${asBot()}`, {})).status).toBe(200)
    const login = await call(hs, token, 'POST', '/_matrix/client/v3/login', { type: 'm.login.application_service', identifier: { type: 'm.id.user', user: BOT }, device_id: 'OTHER' })
    expect(login).toMatchObject({ status: 400, json: { errcode: 'IO.ELEMENT.MSC4190.M_APPSERVICE_LOGIN_UNSUPPORTED' } })
  })

  it('without MSC4190 an unknown device is 404 and the appservice login with device_id creates it', async () => {
    const { hs } = await setup({ registration: { 'io.element.msc4190': false } })
    const token = hs.registration.as_token
    expect(await call(hs, token, 'PUT', `/_matrix/client/v3/devices/BOTDEV${asBot()}`, {})).toMatchObject({ status: 404, json: { errcode: 'M_NOT_FOUND' } })
    const login = await call(hs, token, 'POST', '/_matrix/client/v3/login', { type: 'm.login.application_service', identifier: { type: 'm.id.user', user: BOT }, device_id: 'BOTDEV' })
    expect(login).toMatchObject({ status: 200, json: { user_id: BOT, device_id: 'BOTDEV' } })
    expect((await call(hs, token, 'PUT', `/_matrix/client/v3/devices/BOTDEV${asBot()}`, {})).status).toBe(200)
  })

  it('refuses keys/upload without a device, and masquerading as a device the user does not have', async () => {
    const { hs } = await setup()
    const token = hs.registration.as_token
    expect(await call(hs, token, 'POST', `/_matrix/client/v3/keys/upload${asBot()}`, { device_keys: deviceKeys(BOT, 'X') }))
      .toMatchObject({ status: 400, json: { errcode: 'M_UNKNOWN', error: 'To upload keys, you must pass device_id when authenticating' } })
    expect(await call(hs, token, 'POST', `/_matrix/client/v3/keys/upload${asBot('NOPE')}`, {}))
      .toMatchObject({ status: 400, json: { errcode: 'M_EXCLUSIVE' } })
    await call(hs, token, 'PUT', `/_matrix/client/v3/devices/BOTDEV${asBot()}`, {})
    expect(await call(hs, token, 'POST', `/_matrix/client/v3/keys/upload${asBot('BOTDEV')}`, { device_keys: deviceKeys(BOT, 'OTHER') }))
      .toMatchObject({ status: 400, json: { errcode: 'M_BAD_JSON' } })
    const ok = await call(hs, token, 'POST', `/_matrix/client/v3/keys/upload${asBot('BOTDEV')}`, {
      device_keys: deviceKeys(BOT, 'BOTDEV'), one_time_keys: { 'signed_curve25519:AAAAAQ': { key: 'k1', signatures: {} } },
    })
    expect(ok).toEqual({ status: 200, json: { one_time_key_counts: { signed_curve25519: 1 } } })
    expect(await call(hs, token, 'POST', `/_matrix/client/v3/keys/upload${asBot('BOTDEV')}`, { one_time_keys: { 'signed_curve25519:AAAAAQ': { key: 'other', signatures: {} } } }))
      .toMatchObject({ status: 400 })
  })
})

describe('fake homeserver: keys and to-device between a user and the appservice', () => {
  it('claims a one-time key once, then the fallback key, and reports the counts in the next transaction under both spellings', async () => {
    const { hs, as } = await setup()
    const token = hs.registration.as_token
    await call(hs, token, 'PUT', `/_matrix/client/v3/devices/BOTDEV${asBot()}`, {})
    await call(hs, token, 'POST', `/_matrix/client/v3/keys/upload${asBot('BOTDEV')}`, {
      device_keys: deviceKeys(BOT, 'BOTDEV'),
      one_time_keys: { 'signed_curve25519:AAAAAQ': { key: 'k1', signatures: {} } },
      fallback_keys: { 'signed_curve25519:AAAAAg': { key: 'f1', fallback: true, signatures: {} } },
    })
    const alice = hs.login(ALICE)
    const claim = () => call(hs, alice.accessToken, 'POST', '/_matrix/client/v3/keys/claim', { one_time_keys: { [BOT]: { BOTDEV: 'signed_curve25519' } } })
    expect((await claim()).json['one_time_keys']).toEqual({ [BOT]: { BOTDEV: { 'signed_curve25519:AAAAAQ': { key: 'k1', signatures: {} } } } })
    expect((await claim()).json['one_time_keys']).toEqual({ [BOT]: { BOTDEV: { 'signed_curve25519:AAAAAg': { key: 'f1', fallback: true, signatures: {} } } } })
    const query = await call(hs, alice.accessToken, 'POST', '/_matrix/client/v3/keys/query', { device_keys: { [BOT]: [] } })
    expect(query.json).toMatchObject({ failures: {}, device_keys: { [BOT]: { BOTDEV: { device_id: 'BOTDEV' } } }, master_keys: {}, self_signing_keys: {} })

    await call(hs, alice.accessToken, 'PUT', '/_matrix/client/v3/sendToDevice/m.room.encrypted/t1', { messages: { [BOT]: { BOTDEV: { algorithm: 'x', ciphertext: {} } } } })
    const txn = await as.waitFor(() => as.accepted.find((t) => t.body['de.sorunome.msc2409.to_device']))
    expect(txn.body['de.sorunome.msc2409.to_device']).toEqual([
      { type: 'm.room.encrypted', sender: ALICE, content: { algorithm: 'x', ciphertext: {} }, to_user_id: BOT, to_device_id: 'BOTDEV' },
    ])
    const counts = { [BOT]: { BOTDEV: { signed_curve25519: 0 } } }
    expect(txn.body['org.matrix.msc3202.device_one_time_keys_count']).toEqual(counts)
    expect(txn.body['org.matrix.msc3202.device_one_time_key_counts']).toEqual(counts)
    // The fallback key was used by the second claim.
    expect(txn.body['org.matrix.msc3202.device_unused_fallback_key_types']).toEqual({ [BOT]: { BOTDEV: [] } })
  })

  it('sends the counts only as device_one_time_key_counts for an older Synapse', async () => {
    const { hs, as } = await setup({ otkCountKey: 'key_counts' })
    const token = hs.registration.as_token
    await call(hs, token, 'PUT', `/_matrix/client/v3/devices/BOTDEV${asBot()}`, {})
    const alice = hs.login(ALICE)
    await call(hs, alice.accessToken, 'PUT', '/_matrix/client/v3/sendToDevice/m.dummy/t1', { messages: { [BOT]: { '*': {} } } })
    const txn = await as.waitFor(() => as.accepted.find((t) => t.body['de.sorunome.msc2409.to_device']))
    expect(txn.body['org.matrix.msc3202.device_one_time_key_counts']).toEqual({ [BOT]: { BOTDEV: { signed_curve25519: 0 } } })
    expect(txn.body['org.matrix.msc3202.device_one_time_keys_count']).toBeUndefined()
  })

  it('tells the appservice of a device list change of a user sharing a room with the bot, and a client of one sharing a room with it', async () => {
    const { hs, as } = await setup()
    const room = await hs.createRoom(ALICE, { invite: [BOT], encrypted: true })
    await hs.join(BOT, room)
    const second = hs.login(ALICE)
    await call(hs, second.accessToken, 'POST', '/_matrix/client/v3/keys/upload', { device_keys: deviceKeys(ALICE, second.deviceId) })
    const txn = await as.waitFor(() => as.accepted.find((t) => t.body['org.matrix.msc3202.device_lists']))
    expect(txn.body['org.matrix.msc3202.device_lists']).toEqual({ changed: [ALICE], left: [] })
    // Alice's first client learns of it through /sync.
    const first = hs.login(ALICE)
    const sync = await call(hs, first.accessToken, 'GET', '/_matrix/client/v3/sync')
    expect((sync.json['device_lists'] as { changed: string[] }).changed).toContain(ALICE)
  })

  it('holds a to-device message for the appservice back until released', async () => {
    const { hs, as } = await setup()
    const token = hs.registration.as_token
    await call(hs, token, 'PUT', `/_matrix/client/v3/devices/BOTDEV${asBot()}`, {})
    const alice = hs.login(ALICE)
    const hold = hs.holdToDevice((m) => m.type === 'm.room.encrypted')
    await call(hs, alice.accessToken, 'PUT', '/_matrix/client/v3/sendToDevice/m.room.encrypted/t1', { messages: { [BOT]: { BOTDEV: { n: 1 } } } })
    await call(hs, alice.accessToken, 'PUT', '/_matrix/client/v3/sendToDevice/m.dummy/t2', { messages: { [BOT]: { BOTDEV: { n: 2 } } } })
    // The later, unheld message arrives: the held one is not in any transaction so far.
    await as.waitFor(() => as.accepted.find((t) => JSON.stringify(t.body).includes('m.dummy')))
    expect(JSON.stringify(as.accepted)).not.toContain('m.room.encrypted')
    expect(hold.held).toHaveLength(1)
    hold.release()
    await as.waitFor(() => as.accepted.find((t) => JSON.stringify(t.body).includes('m.room.encrypted')))
  })
})
