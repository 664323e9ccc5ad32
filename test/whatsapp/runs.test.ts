// WhatsApp messages reach the core in runs, one transaction for what arrived together, and the socket is read no
// faster than the bridge records (issue 19, point 3).
import { randomBytes } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { WebSocketServer, type WebSocket } from 'ws'
import { afterEach, describe, expect, it } from 'vitest'
import type { InboundEvent } from '../../src/core/model.ts'
import { MAX_BACKLOG } from '../../src/whatsapp/reading.ts'
import { transportOf } from '../../src/whatsapp/socket.ts'
import { GROUP, type DeliverSpec } from '../fakes/whatsapp-socket.ts'
import { DB_KINDS } from '../support/db.ts'
import { linked, until } from './harness.ts'

const ALICE = { lid: '201000000000042@lid', pn: '15550100042@s.whatsapp.net' }
const said = (text: string): DeliverSpec => ({ from: ALICE, pushName: 'Alice', message: { conversation: text } })
const texts = (n: number, prefix = 'm') => Array.from({ length: n }, (_, i) => `${prefix}${i}`)
const textOf = (e: InboundEvent) => (e.kind === 'message' ? e.content.body.text : e.kind)

type Env = Awaited<ReturnType<typeof linked>>

/** The core as the adapter sees it: between holdBack() and release(), recording waits (a slow database); `refuse` makes
 * the next receiveMany calls fail as a whole (a serialization failure), leaving nothing recorded. */
function slowCore(env: Env) {
  const core = {
    runs: [] as InboundEvent[][], alone: [] as InboundEvent[], refused: 0, refuse: 0, recording: 0,
    hold: undefined as Promise<void> | undefined,
    release: () => {},
    holdBack(): void {
      core.hold = new Promise<void>(resolve => (core.release = () => {
        core.hold = undefined
        resolve()
      }))
    },
  }
  held = core
  const wait = async () => {
    if (!core.hold) return
    core.recording++
    await core.hold
    core.recording--
  }
  env.ctx.receive = async e => {
    await wait()
    core.alone.push(e)
    env.received.push(e)
  }
  env.ctx.receiveMany = async es => {
    await wait()
    if (core.refuse > 0) {
      core.refuse--
      core.refused++
      throw new Error('could not serialize access due to concurrent update')
    }
    core.runs.push(es)
    env.received.push(...es)
  }
  return core
}

const rowsOf = async (env: Env) =>
  Number((await env.db.query<{ n: string }>('SELECT count(*) AS n FROM wa_messages WHERE login_id = $1', [env.login.id])).rows[0]!.n)

let held: ReturnType<typeof slowCore> | undefined
/** WhatsApp servers a test started itself (closed after it). */
const servers: WebSocketServer[] = []

describe.each(DB_KINDS)('WhatsApp messages in runs (%s)', kind => {
  let env: Env
  afterEach(async () => {
    // A test that failed while the core was held must not leave the session waiting for it at stop.
    held?.release()
    held = undefined
    await env?.close()
    for (const s of servers.splice(0)) {
      for (const c of s.clients) c.terminate()
      await new Promise<void>(ok => s.close(() => ok()))
    }
  })

  it('one messages.upsert of 50 texts is one receiveMany call, in order, each carrying its key and content for its copy (no write of its own)', async () => {
    env = await linked(kind)
    const core = slowCore(env)
    env.wa.deliverBatch(texts(50).map(said), 'notify')
    await until(() => env.received.length === 50 || undefined, '50 messages')
    expect(core.runs.map(r => r.length)).toEqual([50])
    expect(core.alone).toEqual([])
    expect(env.received.map(textOf)).toEqual(texts(50))
    // Kept for quoting in the copy the core records, not in a row of the adapter's.
    for (const e of env.received) {
      expect(e.kind === 'message' && e.extra).toMatchObject({ key: { remoteJid: GROUP, id: e.remoteId, fromMe: false }, login: env.login.id })
      expect(JSON.parse(String(e.kind === 'message' && e.extra?.message))).toMatchObject({ conversation: textOf(e) })
    }
    expect(await rowsOf(env)).toBe(0)
  })

  it(`an upsert of 1,200 (an offline backlog flushed at once) is recorded in runs of at most ${MAX_BACKLOG}, in order`, async () => {
    env = await linked(kind)
    const core = slowCore(env)
    env.wa.deliverBatch(texts(1200).map(said), 'append')
    await until(() => env.received.length === 1200 || undefined, '1,200 messages')
    expect(core.runs.map(r => r.length)).toEqual([MAX_BACKLOG, MAX_BACKLOG, 1200 - 2 * MAX_BACKLOG])
    expect(env.received.map(textOf)).toEqual(texts(1200))
  })

  it('messages arriving while a run is recorded are recorded together next, in order', async () => {
    env = await linked(kind)
    const core = slowCore(env)
    core.holdBack()
    const all = texts(100)
    env.wa.deliver(said(all[0]!))
    await until(() => core.recording === 1 || undefined, 'the first message being recorded')
    for (const t of all.slice(1)) env.wa.deliver(said(t))
    await until(() => env.net.reading(env.login.id)?.backlog === 100 || undefined, 'all 100 handed over')
    core.release()
    await until(() => env.received.length === 100 || undefined, '100 messages')
    expect(env.received.map(textOf)).toEqual(all)
    // The first alone (it was alone when it came), the 99 behind it in one run.
    expect(core.alone.map(textOf)).toEqual(['m0'])
    expect(core.runs.map(r => r.length)).toEqual([99])
  })

  it('a photo to download goes alone, in its place between the runs before and after it', async () => {
    env = await linked(kind)
    const core = slowCore(env)
    const bytes = randomBytes(4000)
    const media = await env.wa.uploadMedia(bytes, 'image')
    env.wa.deliverBatch([
      said('a1'), said('a2'),
      { from: ALICE, pushName: 'Alice', message: { imageMessage: { ...media, mimetype: 'image/jpeg', caption: 'photo' } } },
      said('b1'), said('b2'),
    ], 'notify')
    await until(() => env.received.length === 5 || undefined, '5 messages')
    expect(env.received.map(textOf)).toEqual(['a1', 'a2', 'photo', 'b1', 'b2'])
    expect(core.runs.map(r => r.map(textOf))).toEqual([['a1', 'a2'], ['b1', 'b2']])
    expect(core.alone.map(textOf)).toEqual(['photo'])
    const photo = core.alone[0]!
    expect(photo.kind === 'message' && env.media.blobs.get(photo.content.attachments[0]!.mediaId)?.equals(bytes)).toBe(true)
  })

  it('should the core refuse a run, each of its messages is recorded on its own, none lost or reordered', async () => {
    env = await linked(kind)
    const core = slowCore(env)
    core.refuse = 1
    env.wa.deliverBatch(texts(10).map(said), 'notify')
    await until(() => env.received.length === 10 || undefined, '10 messages')
    expect(core.refused).toBe(1)
    expect(core.runs).toEqual([])
    expect(core.alone.map(textOf)).toEqual(texts(10))
    expect(core.alone.every(e => e.kind === 'message' && typeof e.extra?.message === 'string')).toBe(true)
  })

  it(`the socket is not read while ${MAX_BACKLOG} messages wait, is read again at half, is never taken for dead meanwhile, and 3000 messages arrive in order`, async () => {
    // A short keepalive, as rc14 keeps it: a socket that read nothing for 300 + 100 ms is ended as lost.
    env = await linked(kind, { keepAliveMs: 300 }, { wire: true, keepAliveGraceMs: 100 })
    const core = slowCore(env)
    const sock = env.wa.current!
    core.holdBack()
    const all = texts(3000, 'w')
    await env.wa.deliverOverWire(all.map(said))
    const reading = () => env.net.reading(env.login.id)!
    await until(() => (reading().holding && transportOf(sock)?.isPaused) || undefined, 'the socket to be held back')
    // Held for several keepalive rounds: the socket is read a little every half of it, so rc14 never ends it.
    const pings = sock.pings
    await until(() => sock.pings >= pings + 3 || sock.state === 'closed' || undefined, 'three keepalive rounds while held')
    expect(sock.state).toBe('open')
    expect(env.wa.sockets.at(-1)).toBe(sock)
    // What was read: the backlog at the hold, plus at most one read (64 KiB of 512-byte frames) then and per breath.
    const perRead = 65_536 / 512
    expect(sock.framesRead).toBeLessThanOrEqual(MAX_BACKLOG + perRead * (reading().breaths + 1))
    expect(sock.framesRead).toBeLessThan(all.length)
    core.release()
    await until(() => env.received.length === all.length || undefined, 'all 3000 messages')
    expect(env.received.map(textOf)).toEqual(all)
    expect(reading()).toMatchObject({ backlog: 0, holding: false })
    expect(transportOf(sock)?.isPaused).toBe(false)
    expect(env.wa.sockets.at(-1)).toBe(sock)
  })

  it('messages from a WhatsApp server in another place (the benchmark\'s harness), whole in their frames, are held back there the same way and all arrive in order', async () => {
    // The server end the benchmark runs in its parent process: each frame carries a whole message.
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0 })
    servers.push(server)
    await new Promise<void>(ok => server.once('listening', ok))
    let peer: WebSocket | undefined
    server.on('connection', p => (peer = p))
    env = await linked(kind, {}, { server: `ws://127.0.0.1:${(server.address() as AddressInfo).port}` })
    const core = slowCore(env)
    const sock = env.wa.current!
    await until(() => (peer && sock.ws.isOpen) || undefined, 'the socket to connect to the server')
    core.holdBack()
    const all = texts(3000, 's')
    for (const text of all) peer!.send(`spec:${JSON.stringify({ ...said(text), chat: GROUP })}`)
    const reading = () => env.net.reading(env.login.id)!
    await until(() => (reading().holding && transportOf(sock)?.isPaused) || undefined, 'the socket to be held back')
    // What the bridge took in: the backlog at the hold plus what one read held; the rest waits on the server's side.
    const read = sock.framesRead
    expect(read).toBeGreaterThanOrEqual(MAX_BACKLOG)
    expect(read).toBeLessThan(all.length)
    core.release()
    await until(() => env.received.length === all.length || undefined, 'all 3000 messages')
    expect(env.received.map(textOf)).toEqual(all)
    expect(reading()).toMatchObject({ backlog: 0, holding: false })
  })
})
