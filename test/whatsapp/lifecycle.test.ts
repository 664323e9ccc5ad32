// Linking, restarts and disconnects of the relay account (reference §3, §7, §11, §12).
import { proto } from '@whiskeysockets/baileys'
import pg from 'pg'
import { afterEach, describe, expect, it } from 'vitest'
import { WhatsAppNetwork } from '../../src/whatsapp/network.ts'
import type { Db } from '../../src/db/types.ts'
import { dbKeyStore } from '../../src/whatsapp/auth.ts'
import { DAY, HOUR } from '../../src/whatsapp/phone.ts'
import { GROUP } from '../fakes/whatsapp-socket.ts'
import { ADMIN_URI, DB_KINDS } from '../support/db.ts'
import { FAST, linked, makeContext, recordingUi, started, until } from './harness.ts'

const ALICE = { lid: '201000000000042@lid', pn: '15550100042@s.whatsapp.net' }
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c()
})
const sendable = (loginId: string) => ({ kind: 'message' as const, target: { network: 'whatsapp' as const, chatId: GROUP, loginId, roomId: '!r:x' }, sender: { network: 'signal' as const, id: 'a', displayName: 'A' }, deliveryId: `d${Math.random()}`, content: { kind: 'text' as const, body: { text: 'hi', styles: [], links: [], mentions: [] }, attachments: [] }, relayed: true })

describe('linking', () => {
  it('a QR login shows each rotated code, survives the 515 restart and saves a login without a number in its person id', async () => {
    const { wa, net, close } = await started()
    cleanups.push(close)
    const { ui, shown } = recordingUi()
    const pending = net.login({ ownerMxid: '@o:x', kind: 'relay' }, ui)
    await until(() => shown.some(s => s.kind === 'qr'))
    wa.rotateQr()
    await until(() => shown.filter(s => s.kind === 'qr').length === 2)
    expect(new Set(shown.filter(s => s.kind === 'qr').map(s => s.data)).size).toBe(2)
    wa.scanQr()
    const login = await pending
    expect(login).toMatchObject({ network: 'whatsapp', address: '15550100000@s.whatsapp.net', personId: '201000000000001' })
    await until(() => net.state(login.id) === 'connected')
    expect(wa.sockets.length).toBe(3) // QR socket, post-515 socket, the session's socket
  })

  it('a pairing-code login shows the code instead of QR codes', async () => {
    const { wa, net, close } = await started()
    cleanups.push(close)
    const { ui, shown } = recordingUi()
    const pending = net.login({ ownerMxid: '@o:x', kind: 'relay', phoneNumber: '+1 555 010 0000' }, ui)
    await until(() => shown.some(s => s.kind === 'code'))
    expect(shown.find(s => s.kind === 'code')?.data).toBe('K7QW2M9X')
    expect(shown.some(s => s.kind === 'qr')).toBe(false)
    wa.acceptPairingCode()
    await until(() => net.state((await_(pending)) ?? '') === 'connected')
  })

  it('a code nobody scans ends in a sentence that says how to retry', async () => {
    const { wa, net, close } = await started()
    cleanups.push(close)
    const { ui, shown } = recordingUi()
    const pending = net.login({ ownerMxid: '@o:x', kind: 'relay' }, ui).catch(e => e)
    await until(() => shown.length > 0)
    for (let i = 0; i < 6; i++) wa.rotateQr()
    expect((await pending).message).toMatch(/!relay login whatsapp/)
  })
})

let resolved: string | undefined
function await_(p: Promise<{ id: string }>): string | undefined {
  void p.then(l => (resolved = l.id))
  return resolved
}

describe.each(DB_KINDS)('auth state on %s', kind => {
  it('a restarted bridge reconnects with the stored creds and keys, no new QR', async () => {
    const env = await linked(kind)
    const { db, wa, logins } = env
    await env.net.stop()
    const h2 = makeContext(db, logins)
    const net2 = new WhatsAppNetwork({ ...FAST, socketFactory: wa.factory })
    await net2.start(h2.ctx)
    cleanups.push(async () => (await net2.stop(), await wa.stop(), await db.close()))
    await until(() => net2.state(env.login.id) === 'connected')
    expect(wa.current!.auth.creds.registered).toBe(true)
    const keys = await dbKeyStore(db, env.login.id).get('app-state-sync-key', ['AAAA'])
    expect(keys.AAAA?.constructor.name).toBe('AppStateSyncKeyData')
    expect(h2.received.length).toBe(0)
  })
})

// The lock lives on one PostgreSQL connection. PGlite has none to lose: the database runs inside the bridge's own
// process, and its lock file keeps any second process off the data directory and so off every login.
describe.skipIf(!DB_KINDS.includes('postgres'))('the login lock on PostgreSQL', () => {
  // pg_locks shows a two-key advisory lock with the first key as classid and objsubid 2.
  const lockHolder = async (db: Db) => (await db.query<{ pid: number }>(
    `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND objsubid = 2 AND granted
       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, [0x7761])).rows[0]?.pid

  it('its connection dropped, the bridge takes the lock again, says so in the log, and keeps relaying', async () => {
    const env = await linked('postgres')
    cleanups.push(env.close)
    env.wa.addGroup({ id: GROUP, subject: 'G', members: [ALICE] })
    const first = await lockHolder(env.db)
    expect(first).toBeTypeOf('number')
    await env.db.query('SELECT pg_terminate_backend($1, 10000)', [first])
    const second = await until(async () => { const pid = await lockHolder(env.db); return pid !== undefined && pid !== first ? pid : undefined }, 'the lock held by a new connection')
    expect(second).not.toBe(first)
    await until(() => env.logs.find(l => /took .*lock.* again/i.test(l.msg)), 'the log line saying the lock was taken again')
    expect(env.logs.some(l => l.level === 40 && /lost .*lock/i.test(l.msg))).toBe(true)
    expect(env.net.state(env.login.id)).toBe('connected')
    env.wa.deliver({ id: 'AFTER', from: ALICE, message: { conversation: 'still relayed' } })
    expect(await until(() => env.received.find(e => e.remoteId === 'AFTER'), 'the message sent after the re-take')).toMatchObject({ kind: 'message' })
  })

  it('its connection dropped and another process took the lock meanwhile, the bridge stops the session and says why', async () => {
    const env = await linked('postgres')
    cleanups.push(env.close)
    const first = await lockHolder(env.db)
    // Another bridge process, on its own connection, takes the lock the moment the dropped one lets it go.
    const uri = new URL(ADMIN_URI)
    uri.pathname = `/${(await env.db.query<{ d: string }>('SELECT current_database() AS d')).rows[0]!.d}`
    const other = new pg.Client({ connectionString: uri.toString() })
    await other.connect()
    cleanups.unshift(() => other.end())
    const otherPid = (await other.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid
    // It queues for the lock first, so it is granted the lock as the dropped connection lets go, before the bridge can ask.
    const taken = other.query('SELECT pg_advisory_lock($1, hashtext($2))', [0x7761, env.login.id])
    await until(async () => (await env.db.query(`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND pid = $1`, [otherPid])).rowCount > 0, 'the other process queued for the lock')
    await env.db.query('SELECT pg_terminate_backend($1)', [first])
    await taken
    await until(() => env.net.state(env.login.id) === 'disconnected', 'the session to stop')
    expect(env.notices.at(-1)?.text).toMatch(/another relay-bridge process/i)
    expect(env.logs.some(l => l.level >= 50 && /another relay-bridge process/i.test(l.msg))).toBe(true)
    expect(env.wa.current?.state).toBe('closed')
  })
})

describe('disconnects', () => {
  it('405 at connect (WhatsApp retired the client version) is one sentence in the log and the notice, saying to upgrade', async () => {
    const env = await linked()
    cleanups.push(env.close)
    env.wa.refuseAtConnect = 405
    // The connection drops as it does now and then; the reconnect meets the refusal.
    env.wa.disconnect(428, { message: 'Connection Closed' })
    const notice = await until(() => env.notices.find(n => /405/.test(n.text)))
    expect(notice.text).toBe('WhatsApp refused to connect the bridge (code 405): it no longer accepts the WhatsApp Web version this relay-bridge speaks. Upgrade relay-bridge (docs/operators.md, "Upgrading") and restart it; the relay account stays linked.')
    expect(env.logs.filter(l => l.level >= 50).map(l => l.msg)).toContain(notice.text)
    expect(env.net.state(env.login.id)).toBe('disconnected')
  })

  it('a login while WhatsApp refuses the client version (405) says to upgrade, not that a code expired', async () => {
    const { wa, net, close } = await started()
    cleanups.push(close)
    wa.refuseAtConnect = 405
    const { ui, shown } = recordingUi()
    const err = await net.login({ ownerMxid: '@o:x', kind: 'relay' }, ui).then(() => undefined, (e: unknown) => e as Error)
    expect(err?.message).toBe('WhatsApp refused to link the bridge (code 405): it no longer accepts the WhatsApp Web version this relay-bridge speaks. Upgrade relay-bridge (docs/operators.md, "Upgrading"), restart it, then type `!relay login whatsapp` again.')
    expect(shown).toEqual([])
  })

  it('401 (unlinked on the phone) wipes the auth, marks the login logged out, notifies, and holds sends', async () => {
    const env = await linked()
    cleanups.push(env.close)
    env.wa.unlinkedLive()
    await until(() => env.net.state(env.login.id) === 'logged_out')
    expect(env.states.at(-1)).toMatchObject({ state: 'logged_out' })
    expect(env.notices.at(-1)?.text).toMatch(/14 days.*!relay login whatsapp/s)
    expect((await env.db.query('SELECT 1 FROM wa_auth WHERE login_id = $1', [env.login.id])).rows).toHaveLength(0)
    expect(await env.net.send(sendable(env.login.id)).catch(e => e)).toMatchObject({ disposition: 'hold' })
  })

  it('440 (replaced) stops without a reconnect loop', async () => {
    const env = await linked()
    cleanups.push(env.close)
    const sockets = env.wa.sockets.length
    env.wa.replaced()
    // The notice is the close handler's last step: a reconnect would have been scheduled before it (after the
    // state turned 'connecting'), so a state still 'disconnected' and no new socket once it is sent mean none was.
    await until(() => env.notices.find(n => /only one relay-bridge/.test(n.text)))
    expect(env.wa.sockets.length).toBe(sockets)
    expect(env.net.state(env.login.id)).toBe('disconnected')
  })

  it('after a dropped connection (428) the bridge reconnects and relays the append backlog', async () => {
    const env = await linked()
    cleanups.push(env.close)
    env.wa.addGroup({ id: GROUP, subject: 'G', members: [ALICE] })
    const before = env.wa.current
    env.wa.disconnect(428)
    await until(() => env.wa.current !== before && env.net.state(env.login.id) === 'connected')
    env.wa.deliver({ id: 'B1', from: ALICE, type: 'append', message: { conversation: 'while you were away' } })
    expect(await until(() => env.received.find(e => e.remoteId === 'B1'))).toMatchObject({ kind: 'message' })
  })

  it('probes the phone as mautrix-whatsapp does after 10 days of silence, at most once a day, and not once it is seen again', async () => {
    let now = Date.now()
    const env = await linked('pglite', { now: () => now })
    cleanups.push(env.close)
    const probes = () => env.wa.peerSent.filter(p => p.message.protocolMessage?.type === proto.Message.ProtocolMessage.Type.APP_STATE_SYNC_KEY_REQUEST)
    now += 9 * DAY
    await env.net.checkPhones()
    expect(probes()).toHaveLength(0)
    now += DAY + 60_000
    await env.net.checkPhones()
    expect(probes()).toHaveLength(1)
    // To the phone itself (the account's own user, no device), naming the last app-state key the phone shared.
    expect(probes()[0]).toMatchObject({ jid: `${env.wa.account.pn}@s.whatsapp.net`, attrs: { category: 'peer', push_priority: 'high' } })
    expect(Buffer.from(probes()[0]!.message.protocolMessage!.appStateSyncKeyRequest!.keyIds![0]!.keyId!).toString('base64')).toBe('AAAA')
    now += 23 * HOUR
    await env.net.checkPhones()
    expect(probes()).toHaveLength(1)
    now += 2 * HOUR
    await env.net.checkPhones()
    expect(probes()).toHaveLength(2)
    // A phone that is online answers with its keys: that is a sighting, and the probing stops.
    env.wa.phoneActivity('key-share')
    await until(async () => (await env.net.phoneLastSeen(env.login.id)) === now)
    now += 3 * DAY
    await env.net.checkPhones()
    expect(probes()).toHaveLength(2)
    expect(env.notices).toHaveLength(0)
  })

  it('warns once a day after 12 days without a phone sighting; a sighting resets it', async () => {
    let now = Date.now()
    const env = await linked('pglite', { now: () => now })
    cleanups.push(env.close)
    now += 11 * 86400_000
    await env.net.checkPhones()
    expect(env.notices).toHaveLength(0)
    now += 2 * 86400_000
    await env.net.checkPhones()
    await env.net.checkPhones()
    expect(env.notices.filter(n => /not been seen for 13 days/.test(n.text))).toHaveLength(1)
    env.wa.phoneActivity('typed')
    await until(async () => (await env.net.phoneLastSeen(env.login.id)) === now)
    now += 86400_000
    await env.net.checkPhones()
    expect(env.notices).toHaveLength(1)
  })
})
