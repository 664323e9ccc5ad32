// The failures users of today's two-bridge setup report, each as a test that counts: how many messages
// were sent, delivered, lost and duplicated.
import { afterEach, describe, expect, it } from 'vitest'
import { openPglite } from '../../src/db/pglite.ts'
import { openPostgres } from '../../src/db/postgres.ts'
import type { Db } from '../../src/db/types.ts'
import { groupText } from '../fakes/signal-envelopes.ts'
import { ADMIN_URI, createPostgresDatabase, DB_KINDS, type DbKind } from '../support/db.ts'
import { TcpProxy } from './tcp-proxy.ts'
import { E2E } from './harness.ts'
import { ADMIN, BOB, DAVE, SIGNAL_RELAY, setUpPortal, type Portal } from './setup.ts'
import { join } from 'node:path'
import { PATIENCE_MS } from '../support/patience.ts'

interface Count {
  sent: number
  delivered: number
  lost: number
  duplicated: number
  outOfOrder: number
}

/** Compares what arrived (in arrival order) with what was sent. */
function count(sent: string[], arrived: string[]): Count {
  const wanted = new Set(sent)
  const seen = new Map<string, number>()
  for (const a of arrived) if (wanted.has(a)) seen.set(a, (seen.get(a) ?? 0) + 1)
  const firsts = arrived.filter((a, i) => wanted.has(a) && arrived.indexOf(a) === i)
  let outOfOrder = 0
  for (let i = 1; i < firsts.length; i++) if (sent.indexOf(firsts[i]!) < sent.indexOf(firsts[i - 1]!)) outOfOrder++
  const delivered = seen.size
  return { sent: sent.length, delivered, lost: sent.length - delivered, duplicated: [...seen.values()].reduce((n, c) => n + c - 1, 0), outOfOrder }
}

async function openDb(e: E2E): Promise<Db> {
  return e.databaseUri ? openPostgres(e.databaseUri) : openPglite(join(e.dir, 'data'))
}

describe('faults', () => {
  let e: E2E | undefined
  afterEach(async () => {
    await e?.stop()
    e = undefined
  })

  const signalTexts = (e: E2E, p: Portal) => e.daemon.callsOf('send').filter(c => c.params.groupId === p.signalGroup).map(c => String(c.params.message))
  const waTexts = async (e: E2E) => (await e.waSent()).map(s => String(s.content.text ?? ''))

  it('the signal-cli daemon gone for 30 s during a burst of 100 messages: afterwards all delivered, in order, none twice', async () => {
    e = await E2E.create('pglite')
    const p = await setUpPortal(e)
    const away = e.daemon.goAway(30_000)
    const sent: string[] = []
    for (let i = 0; i < 100; i++) {
      const text = `burst ${i}`
      sent.push(`Admin (Matrix): ${text}`)
      await e.hs.sendMessage(ADMIN, p.room, { msgtype: 'm.text', body: text })
    }
    await away
    const result = await e.until(() => {
      const c = count(sent, signalTexts(e!, p))
      return c.delivered === 100 && c
    }, 'all 100 messages on Signal', 90_000)
    console.log('daemon outage, Signal:', result)
    expect(result).toEqual({ sent: 100, delivered: 100, lost: 0, duplicated: 0, outOfOrder: 0 })
    // WhatsApp never noticed.
    expect(count(sent.map(t => t.replace(/^Admin \(Matrix\): /, '*Admin (Matrix)*: ')), await waTexts(e))).toMatchObject({ delivered: 100, duplicated: 0, outOfOrder: 0 })
  }, PATIENCE_MS * 3)

  it('WhatsApp logs the relay out: notices in Matrix only, messages held, relink, held messages delivered in order', async () => {
    e = await E2E.create('pglite')
    const p = await setUpPortal(e)
    await e.wa('unlinkedLive')
    await e.waitForNotice(p.room, /WhatsApp.*logged.*out[\s\S]*login whatsapp/i)
    await e.waitForNotice(p.dm, /WhatsApp.*logged.*out[\s\S]*login whatsapp/i)
    const held = ['while away 1', 'while away 2', 'while away 3']
    for (const t of held) await e.hs.sendMessage(ADMIN, p.room, { msgtype: 'm.text', body: t })
    await e.until(() => signalTexts(e!, p).includes('Admin (Matrix): while away 3'), 'Signal to get the messages meanwhile')
    const before = (await e.waSent()).length
    expect(await e.command(ADMIN, p.room, '!relay status')).toMatch(/WhatsApp: .*logged out[\s\S]*held/)
    expect(e.notices(p.room).join('\n')).not.toMatch(/was not delivered/) // held, not failed
    // The operator relinks the same number.
    const images = e.botEvents(p.dm).filter(ev => (ev.content as any).msgtype === 'm.image').length
    await e.hs.sendMessage(ADMIN, p.dm, 'login whatsapp')
    await e.hs.waitFor(() => e!.botEvents(p.dm).filter(ev => (ev.content as any).msgtype === 'm.image').length > images, { what: 'a new QR code' })
    await e.wa('scanQr')
    const sentAfter = await e.waitForWaSent(s => s.length >= before + 3, 'the held messages')
    expect(sentAfter.slice(before).map(s => s.content.text)).toEqual(held.map(t => `*Admin (Matrix)*: ${t}`))
    const c = count(held.map(t => `*Admin (Matrix)*: ${t}`), await waTexts(e))
    console.log('WhatsApp logout, held and flushed:', c)
    expect(c).toEqual({ sent: 3, delivered: 3, lost: 0, duplicated: 0, outOfOrder: 0 })
  }, PATIENCE_MS * 3)

  it.each(DB_KINDS)('the bridge killed with SIGKILL in the middle of 500 messages (%s): after a restart every message reaches every target; duplicates only for what was in flight', async (kind: DbKind) => {
    e = await E2E.create(kind)
    const p = await setUpPortal(e)
    const sent: string[] = []
    for (let i = 0; i < 500; i++) {
      sent.push(`m${i}`)
      void e.hs.sendMessage(ADMIN, p.room, { msgtype: 'm.text', body: `m${i}` })
    }
    const sigSent = sent.map(t => `Admin (Matrix): ${t}`)
    const waSent = sent.map(t => `*Admin (Matrix)*: ${t}`)
    await e.until(() => count(sigSent, signalTexts(e!, p)).delivered >= 150, 'a third of the burst on Signal', 60_000)
    await e.kill('SIGKILL')
    const db = await openDb(e)
    const { rows } = await db.query<{ network: string; n: number }>(`SELECT network, count(*)::int AS n FROM outbox WHERE state = 'sent' GROUP BY network`)
    await db.close()
    const marked = Object.fromEntries(rows.map(r => [r.network, r.n]))
    const atKill = { signal: count(sigSent, signalTexts(e, p)).delivered, whatsapp: count(waSent, await waTexts(e)).delivered }
    // In flight: sent by the time of the kill, but not yet marked sent (a row stays 'pending' while it is sent).
    const inFlight = { signal: atKill.signal - (marked.signal ?? 0), whatsapp: atKill.whatsapp - (marked.whatsapp ?? 0) }
    await e.start()
    const signal = await e.until(() => {
      const c = count(sigSent, signalTexts(e!, p))
      return c.delivered === 500 && c
    }, 'all 500 on Signal after the restart', 120_000)
    const whatsapp = await e.until(async () => {
      const c = count(waSent, await waTexts(e!))
      return c.delivered === 500 && c
    }, 'all 500 on WhatsApp after the restart', 120_000)
    console.log(`SIGKILL mid-burst on ${kind}:`, { atKill, inFlight, signal, whatsapp })
    expect(signal.lost).toBe(0)
    expect(whatsapp.lost).toBe(0)
    expect(signal.duplicated).toBeLessThanOrEqual(inFlight.signal)
    expect(whatsapp.duplicated).toBeLessThanOrEqual(inFlight.whatsapp)
    expect(signal.outOfOrder).toBe(0)
    expect(whatsapp.outOfOrder).toBe(0)
  }, 300_000)

  it('the homeserver retries a transaction: processed once, also after a restart', async () => {
    e = await E2E.create('pglite')
    const p = await setUpPortal(e)
    const port = Number(new URL(e.hs.registration.url!).port)
    const txn = { events: [{ type: 'm.room.message', event_id: '$retried:example.org', room_id: p.room, sender: ADMIN, origin_server_ts: Date.now(), content: { msgtype: 'm.text', body: 'only once' } }] }
    const put = () => fetch(`http://127.0.0.1:${port}/_matrix/app/v1/transactions/retry-1`, {
      method: 'PUT', headers: { Authorization: `Bearer ${e!.hs.registration.hs_token}`, 'Content-Type': 'application/json' }, body: JSON.stringify(txn),
    })
    expect((await Promise.all([put(), put()])).map(r => r.status)).toEqual([200, 200])
    expect((await put()).status).toBe(200)
    await e.until(() => signalTexts(e!, p).includes('Admin (Matrix): only once'), 'the message on Signal')
    await e.kill('SIGTERM')
    await e.start()
    expect((await put()).status).toBe(200)
    e.daemon.push(SIGNAL_RELAY.number!, groupText(BOB, p.signalGroup, 'a later message'))
    await e.waitForWaSent(s => s.some(x => x.content.text === '*Bob (Signal)*: a later message'), 'a later message')
    expect(count(['Admin (Matrix): only once'], signalTexts(e, p))).toMatchObject({ delivered: 1, duplicated: 0 })
    expect(count(['*Admin (Matrix)*: only once'], await waTexts(e))).toMatchObject({ delivered: 1, duplicated: 0 })
  }, PATIENCE_MS * 3)

  it('the homeserver restarts and numbers its transactions from 1 again (Synapse on SQLite): every new event is relayed, once', async () => {
    e = await E2E.create('pglite')
    const p = await setUpPortal(e)
    const before = Array.from({ length: 5 }, (_, i) => `before the restart ${i}`)
    for (const t of before) await e.hs.sendMessage(ADMIN, p.room, t)
    await e.until(() => before.every(t => signalTexts(e!, p).includes(`Admin (Matrix): ${t}`)), 'the messages before the restart on Signal')
    // Whatever the homeserver still had queued (the ghosts' joins, a receipt) goes out under the old numbering first.
    await e.hs.waitForPushIdle()
    const usedBefore = new Set(e.hs.delivered.map(t => t.txnId))
    const firstAfter = e.hs.delivered.length
    // The bridge keeps running; the homeserver comes back counting from 1, with new events in ids it has seen.
    e.hs.resetTxnIds()
    const after = Array.from({ length: 20 }, (_, i) => `after the restart ${i}`)
    for (const t of after) await e.hs.sendMessage(ADMIN, p.room, t)
    await e.until(() => after.every(t => signalTexts(e!, p).includes(`Admin (Matrix): ${t}`)), 'the messages after the restart on Signal')
    await e.waitForWaSent(s => after.every(t => s.some(x => x.content.text === `*Admin (Matrix)*: ${t}`)), 'the messages after the restart on WhatsApp')
    const afterIds = e.hs.delivered.slice(firstAfter).map(t => t.txnId)
    expect(afterIds[0]).toBe('1')
    expect(afterIds.every(id => usedBefore.has(id)), 'every transaction after the restart reused an acknowledged txn id').toBe(true)
    expect(count([...before, ...after].map(t => `Admin (Matrix): ${t}`), signalTexts(e, p))).toMatchObject({ delivered: 25, duplicated: 0, outOfOrder: 0 })
    expect(count([...before, ...after].map(t => `*Admin (Matrix)*: ${t}`), await waTexts(e))).toMatchObject({ delivered: 25, duplicated: 0, outOfOrder: 0 })
  }, PATIENCE_MS * 3)

  it.runIf(ADMIN_URI)('PostgreSQL unavailable for 10 s: transactions are refused so the homeserver retries, and nothing is lost', async () => {
    const real = new URL(await createPostgresDatabase())
    const proxy = await TcpProxy.start({ host: real.hostname, port: Number(real.port) })
    const viaProxy = new URL(real)
    viaProxy.port = String(proxy.port)
    try {
      e = await E2E.create('postgres', { databaseUri: viaProxy.toString() })
      const p = await setUpPortal(e)
      const refusedBefore = e.hs.transactions.filter(t => t.status !== undefined && t.status >= 500).length
      const outage = proxy.cut(10_000)
      const fromMatrix: string[] = []
      const fromSignal: string[] = []
      const fromWhatsApp: string[] = []
      for (let i = 0; i < 20; i++) {
        fromMatrix.push(`during outage ${i}`)
        await e.hs.sendMessage(ADMIN, p.room, { msgtype: 'm.text', body: `during outage ${i}` })
        if (i % 2 === 0) {
          fromSignal.push(`signal during outage ${i}`)
          e.daemon.push(SIGNAL_RELAY.number!, groupText(BOB, p.signalGroup, `signal during outage ${i}`))
        }
        if (i % 5 === 0) {
          fromWhatsApp.push(`whatsapp during outage ${i}`)
          await e.wa('deliver', { chat: p.whatsappGroup, from: DAVE, pushName: 'Dave', message: { conversation: `whatsapp during outage ${i}` } })
        }
      }
      await outage
      const toSignal = await e.until(() => {
        const c = count([...fromMatrix.map(t => `Admin (Matrix): ${t}`), ...fromWhatsApp.map(t => `Dave (WhatsApp): ${t}`)], signalTexts(e!, p))
        return c.delivered === fromMatrix.length + fromWhatsApp.length && c
      }, 'Matrix and WhatsApp messages on Signal after the outage', 90_000)
      const toWhatsApp = await e.until(async () => {
        const c = count([...fromMatrix.map(t => `*Admin (Matrix)*: ${t}`), ...fromSignal.map(t => `*Bob (Signal)*: ${t}`)], await waTexts(e!))
        return c.delivered === fromMatrix.length + fromSignal.length && c
      }, 'everything on WhatsApp after the outage', 90_000)
      const refused = e.hs.transactions.filter(t => t.status !== undefined && t.status >= 500).length - refusedBefore
      console.log('database outage:', { refusedTransactions: refused, toSignal, toWhatsApp })
      expect(refused).toBeGreaterThan(0) // the homeserver was told to retry, not told "fine"
      expect(toSignal).toMatchObject({ lost: 0, duplicated: 0 })
      expect(toWhatsApp).toMatchObject({ lost: 0, duplicated: 0 })
    } finally {
      await proxy.stop()
    }
  }, PATIENCE_MS * 3)

  it('a delivery that fails for good on Signal is reported in Matrix only: the WhatsApp group sees no error, no command, no bot reply', async () => {
    e = await E2E.create('pglite')
    const p = await setUpPortal(e)
    const waBefore = (await e.waSent()).length
    e.daemon.fail('send', -1, `Group not found: ${p.signalGroup}`)
    const eventId = await e.hs.sendMessage(ADMIN, p.room, { msgtype: 'm.text', body: 'this one fails on Signal' })
    const notice = await e.waitForNotice(p.room, /was not delivered to Signal/)
    expect(notice).toMatch(/link signal/) // says what to do next
    await e.hs.waitFor(() => e!.hs.timeline(p.room).find(ev => ev.type === 'com.beeper.message_send_status' && (ev.content as any)['m.relates_to']?.event_id === eventId),
      { what: 'a message-status event about the failed message' })
    await e.waitForWaSent(s => s.some(x => x.content.text === '*Admin (Matrix)*: this one fails on Signal'), 'the message on WhatsApp')
    await e.hs.sendMessage(ADMIN, p.room, { msgtype: 'm.text', body: 'and the next one goes through' })
    await e.until(() => signalTexts(e!, p).includes('Admin (Matrix): and the next one goes through'), 'the next message on Signal')
    const toWhatsApp = (await e.waSent()).slice(waBefore).map(s => String(s.content.text ?? ''))
    expect(toWhatsApp).toEqual(['*Admin (Matrix)*: this one fails on Signal', '*Admin (Matrix)*: and the next one goes through'])
    for (const t of [...toWhatsApp, ...signalTexts(e, p)]) expect(t).not.toMatch(/not delivered|⚠️|Group not found|!relay/)
  }, PATIENCE_MS * 3)
})
