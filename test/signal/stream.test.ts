// The SSE stream: keepalives, the watchdog, reconnection with backoff, the ≤0.14.3 header delay (§3.3).
import { afterEach, describe, expect, it } from 'vitest'
import { MAX_BACKLOG, SignalEventStream, type StreamState } from '../../src/signal/events.ts'
import { FakeSignalDaemon } from '../fakes/signal-daemon.ts'
import { groupText } from '../fakes/signal-envelopes.ts'

const RELAY = '+15550100001'
const ALEX = { number: '+15550100002', aci: 'a3e91c47-0d52-4b8e-b6f1-2c9d7e0a5b14', name: 'Alex' }
const GROUP = 'RmljdGlvbmFsUmVsYXlHcm91cElkRm9yU2lnbmFsQUE='

let daemon: FakeSignalDaemon
let stream: SignalEventStream | undefined
afterEach(async () => {
  await stream?.stop()
  await daemon.stop()
})

function open(timings: { watchdogMs: number; backoffInitialMs?: number; backoffMaxMs?: number }) {
  const events: unknown[] = []
  const states: StreamState[] = []
  let gone = 0
  stream = new SignalEventStream(
    { daemonUrl: daemon.url, account: RELAY, timings: { backoffInitialMs: 20, backoffMaxMs: 200, ...timings } },
    { onEvent: e => { events.push(e) }, onState: s => states.push(s), onGone: () => gone++ },
  )
  stream.start()
  return { events, states, gone: () => gone, stream }
}

describe('Signal event stream', () => {
  it('delivers events as parsed {envelope, account} objects, in order', async () => {
    daemon = await FakeSignalDaemon.start({ keepaliveMs: 1000, unknownFields: true })
    daemon.addAccount({ number: RELAY })
    const s = open({ watchdogMs: 5000 })
    await daemon.until(() => daemon.hasStream(RELAY))
    for (const text of ['one', 'two', 'three']) daemon.push(RELAY, groupText(ALEX, GROUP, text))
    await daemon.until(() => s.events.length === 3)
    expect(s.events.map(e => (e as { envelope: { dataMessage: { message: string } } }).envelope.dataMessage.message)).toEqual(['one', 'two', 'three'])
    expect(s.events[0]).toMatchObject({ account: RELAY })
  })

  it('keepalives alone keep the watchdog quiet', async () => {
    daemon = await FakeSignalDaemon.start({ keepaliveMs: 50 })
    daemon.addAccount({ number: RELAY })
    const s = open({ watchdogMs: 1000 })
    await daemon.until(() => daemon.hasStream(RELAY))
    // Three watchdog periods of nothing but `:` lines (counted as written, not slept for): the first
    // connection must survive them.
    const from = daemon.keepalivesSent
    await daemon.until(() => daemon.keepalivesSent >= from + 60)
    expect(s.stream.connects).toBe(1)
  })

  it('a burst the bridge cannot take in yet waits in the daemon: reading pauses at the backlog limit, the watchdog stays quiet, and everything comes in order once taken in', async () => {
    daemon = await FakeSignalDaemon.start({ keepaliveMs: 50 })
    daemon.addAccount({ number: RELAY })
    const arrived: string[] = []
    const takingIn: Array<() => void> = []
    stream = new SignalEventStream({ daemonUrl: daemon.url, account: RELAY, timings: { watchdogMs: 500, backoffInitialMs: 20, backoffMaxMs: 200 } }, {
      // Nothing is taken in until the test says so: a bridge whose database is slower than the burst.
      onEvent: e => {
        arrived.push((e as { envelope: { dataMessage: { message: string } } }).envelope.dataMessage.message)
        return new Promise<void>(resolve => takingIn.push(resolve))
      },
      onState: () => {},
      onGone: () => {},
    })
    stream.start()
    await daemon.until(() => daemon.hasStream(RELAY))
    const total = 10 * MAX_BACKLOG
    for (let i = 0; i < total; i++) daemon.push(RELAY, groupText(ALEX, GROUP, `m${i}`))

    await daemon.until(() => stream!.pauses === 1)
    const atPause = arrived.length
    // At most the limit and the rest of the chunk being read (a 64 KiB chunk holds about a hundred of these).
    expect(atPause).toBeGreaterThanOrEqual(MAX_BACKLOG)
    expect(atPause).toBeLessThan(MAX_BACKLOG + 200)
    // Twenty keepalive periods later (counted as written, not slept for), more than the watchdog's limit: nothing
    // more was read, and the pause was not taken for a dead stream.
    const from = daemon.keepalivesSent
    await daemon.until(() => daemon.keepalivesSent >= from + 20)
    expect(arrived.length).toBe(atPause)
    expect(stream.connects).toBe(1)

    // Taken in as they come, all of them arrive, in order, on the one connection.
    while (arrived.length < total || takingIn.length > 0) {
      takingIn.splice(0).forEach(resolve => resolve())
      const seen = arrived.length
      if (seen < total) await daemon.until(() => arrived.length > seen)
    }
    expect(arrived).toEqual(Array.from({ length: total }, (_, i) => `m${i}`))
    expect(stream.connects).toBe(1)
    expect(stream.pauses).toBeGreaterThanOrEqual(1)
  })

  it('silence (no keepalives at all) makes the watchdog reconnect', async () => {
    daemon = await FakeSignalDaemon.start({ keepaliveMs: 60_000 })
    daemon.addAccount({ number: RELAY })
    const s = open({ watchdogMs: 100 })
    await daemon.until(() => s.stream.connects >= 3)
    expect(s.states).toContain('disconnected')
  })

  it('a stream that was alive and then falls silent (a hung daemon) is dropped by the watchdog, not before', async () => {
    daemon = await FakeSignalDaemon.start({ keepaliveMs: 50 })
    daemon.addAccount({ number: RELAY })
    const s = open({ watchdogMs: 1000 })
    await daemon.until(() => daemon.hasStream(RELAY))
    daemon.push(RELAY, groupText(ALEX, GROUP, 'before'))
    await daemon.until(() => s.events.length === 1)
    // Several watchdog periods of life (counted as written): the watchdog, which only notes each chunk's time and
    // looks when its one timer fires, found life every time and kept the connection.
    const from = daemon.keepalivesSent
    await daemon.until(() => daemon.keepalivesSent >= from + 60)
    expect(s.stream.connects).toBe(1)
    daemon.hang()
    await daemon.until(() => s.stream.connects >= 2)
    expect(s.states).toContain('disconnected')
  })

  it('a dropped stream reconnects with growing delays, and events resume on the new connection', async () => {
    daemon = await FakeSignalDaemon.start({ keepaliveMs: 1000 })
    daemon.addAccount({ number: RELAY })
    const s = open({ watchdogMs: 5000, backoffInitialMs: 50 })
    await daemon.until(() => daemon.hasStream(RELAY))
    await daemon.goAway(300)
    const t0 = Date.now()
    await daemon.until(() => daemon.hasStream(RELAY))
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250)
    // While away it tried several times with backoff (50, 100, 200 ms…), not in a hot loop.
    expect(s.stream.connects).toBeGreaterThanOrEqual(3)
    expect(s.stream.connects).toBeLessThan(10)
    daemon.push(RELAY, groupText(ALEX, GROUP, 'after'))
    await daemon.until(() => s.events.length === 1)
  })

  it('headers delayed until the first keepalive (≤0.14.3) do not kill the stream', async () => {
    daemon = await FakeSignalDaemon.start({ keepaliveMs: 400, delayHeaders: true })
    daemon.addAccount({ number: RELAY })
    const s = open({ watchdogMs: 1000 })
    await daemon.until(() => s.states.includes('connected'))
    expect(s.stream.connects).toBe(1)
    daemon.push(RELAY, groupText(ALEX, GROUP, 'hello'))
    await daemon.until(() => s.events.length === 1)
    expect(s.stream.connects).toBe(1)
  })

  it('a 400 on connect means the account is gone: the stream stops and says so', async () => {
    daemon = await FakeSignalDaemon.start()
    const s = open({ watchdogMs: 1000 })
    await daemon.until(() => s.gone() === 1)
    expect(s.stream.connects).toBe(1)
  })

  it('on-connection mode queues what arrives while disconnected; on-start mode loses it (§3.4)', async () => {
    daemon = await FakeSignalDaemon.start({ receiveMode: 'on-connection' })
    daemon.addAccount({ number: RELAY })
    daemon.push(RELAY, groupText(ALEX, GROUP, 'queued'))
    const s = open({ watchdogMs: 5000 })
    await daemon.until(() => s.events.length === 1)
    await stream!.stop()
    await daemon.stop()

    daemon = await FakeSignalDaemon.start({ receiveMode: 'on-start' })
    daemon.addAccount({ number: RELAY })
    daemon.push(RELAY, groupText(ALEX, GROUP, 'lost'))
    const s2 = open({ watchdogMs: 5000 })
    await daemon.until(() => daemon.hasStream(RELAY))
    daemon.push(RELAY, groupText(ALEX, GROUP, 'live'))
    await daemon.until(() => s2.events.length === 1)
    expect((s2.events[0] as { envelope: { dataMessage: { message: string } } }).envelope.dataMessage.message).toBe('live')
  })
})
