// The bridge under test, in its own process (so that its resident set is its own): the real startBridge with
// the real Signal adapter (talking HTTP + SSE to the fake daemon in the parent) and the real WhatsApp adapter
// over the fake socket (in this process, as Baileys would be), whose WebSocket (rc14's WebSocketClient) reads the
// messages from the parent's WhatsApp server (bench/wa-server.ts). Talks to the parent over IPC.
import { mkdtemp } from 'node:fs/promises'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { startBridge } from '../src/bridge.ts'
import { compactHeap } from '../src/memory.ts'
import { SignalNetwork } from '../src/signal/network.ts'
import { WhatsAppNetwork } from '../src/whatsapp/network.ts'
import type { WaSocketFactory } from '../src/whatsapp/socket.ts'
import { FakeWhatsApp, type FakeWaSocket, type SentRecord } from '../test/fakes/whatsapp-socket.ts'
import { benchConfig, nowMs, SIGNAL_LOGIN, untag, WA_ROBIN, whatsappGroupId, WHATSAPP_LOGIN } from './config.ts'
import { installStageHooks } from './stages.ts'

interface Start { type: 'start'; databaseUri: string; homeserver: string; daemonUrl: string; waServer: string; portals: number; encrypted?: boolean }
type FromParent = Start | { type: 'stats' } | { type: 'stop' }

const send = (m: unknown): void => void process.send!(m)
const latencyRun = process.env.BENCH_STAGES === '1'

// What the process reports as it goes: the WhatsApp sends' arrival times (the fake keeps every send for assertions;
// here only the time, taken on arrival) and, in latency runs, the stage stamps, in one IPC message at most every
// REPORT_MS (the times are taken when things happen, so a later report changes no figure). A report leaves from a
// wake-up the bridge has anyway (the send or stamp that finds the oldest entry REPORT_MS old); a timer sends what
// is left once traffic stops. Sent from a 50-ms timer of its own, it woke the process 20 times a second, counted in
// its CPU per message at 100 msg/s, and each report's write wakes the parent (session 14).
const REPORT_MS = 200
let arrivals: Array<[number, number]> = []
let oldest: number | undefined
let tail: NodeJS.Timeout | undefined
const report = (): void => {
  clearTimeout(tail)
  tail = oldest = undefined
  const stamps = stages?.take() ?? []
  if (arrivals.length === 0 && stamps.length === 0) return
  send({ type: 'report', arrivals, stamps })
  arrivals = []
}
const noted = (): void => {
  const t = nowMs()
  if (oldest === undefined) {
    oldest = t
    tail = setTimeout(report, 2 * REPORT_MS)
  } else if (t - oldest >= REPORT_MS) report()
}
// Stage timestamps (latency runs): hooks on pg's client and Node's HTTP messages.
const stages = latencyRun ? installStageHooks(noted) : undefined
// How long the bridge's event loop was ever kept from running (reset by each 'stats'): tells a stall inside the
// bridge from one around it. Sampled every 20 ms, each sample a wake-up of the process; at 5 ms the meter alone cost
// the bridge ~1 % of a core. Not in latency runs, whose CPU per message at 100 msg/s it would count (50 wake-ups a
// second beside the messages' 300): there the stage stamps show a blocked loop as the time before a message's
// arrival (generated → arrival).
const loopDelay = latencyRun ? undefined : monitorEventLoopDelay({ resolution: 20 })
loopDelay?.enable()
// Made at 'start', when the parent names its WhatsApp server.
let wa: FakeWhatsApp | undefined
const onlyArrivals = (...records: SentRecord[]): number => {
  const t = nowMs()
  for (const r of records) {
    const seq = untag((r.content as { text?: unknown }).text)
    if (seq !== undefined) arrivals.push([seq, t])
  }
  noted()
  return 0
}

/** Latency runs: a message arrives when its frame is read from the WebSocket (before Baileys' upsert). */
const stampedFactory = (world: FakeWhatsApp): WaSocketFactory => (auth, opts) => {
  const sock = world.factory(auth, opts) as FakeWaSocket
  // Before the fake's own listener, which hands the message to Baileys' upsert at once.
  // The generator's tag is found in the frame's text as it is: parsing the frame's JSON here as well cost the bridge's
  // process (and its CPU per message) a second parse of every message.
  sock.ws.prependListener('message', (data: Buffer) => {
    const frame = String(data)
    if (frame.startsWith('spec:')) stages?.stamp(frame, 'arrival')
  })
  return sock
}

let signal: SignalNetwork | undefined
let whatsapp: WhatsAppNetwork | undefined
let bridge: Awaited<ReturnType<typeof startBridge>> | undefined

process.on('message', (msg: FromParent) => {
  void (async () => {
    switch (msg.type) {
      case 'start': {
        wa = new FakeWhatsApp({ server: msg.waServer })
        wa.sent.push = onlyArrivals
        for (let i = 0; i < msg.portals; i++) wa.addGroup({ id: whatsappGroupId(i), subject: `Bench ${i}`, members: [WA_ROBIN] })
        await wa.start()
        const config = benchConfig({ ...msg, dataDir: await mkdtemp(join(tmpdir(), 'rb-bench-')) })
        const log = pino({ level: config.logging.level })
        const networks = [
          (signal = new SignalNetwork({ daemonUrl: msg.daemonUrl, timings: { pollAccountsMs: 3_600_000 } })),
          (whatsapp = new WhatsAppNetwork({ socketFactory: stages ? stampedFactory(wa) : wa.factory, paceMs: [0, 0], phoneCheckMs: 0 })),
        ]
        bridge = await startBridge(config, { log, networks, timings: { maintenanceMs: 3_600_000 } })
        compactHeap() // as runBridge does once the start is over
        for (let i = 0; i < 500; i++) {
          const l = await bridge.logins.get(WHATSAPP_LOGIN)
          if (l?.state === 'connected') break
          await new Promise(r => setTimeout(r, 10))
        }
        send({ type: 'ready', port: bridge.port })
        return
      }
      case 'stats': {
        const usage = process.resourceUsage()
        const { rss, heapUsed, heapTotal, external } = process.memoryUsage()
        const maxLoopDelayMs = loopDelay ? loopDelay.max / 1e6 : undefined
        loopDelay?.reset()
        send({ type: 'stats', rss, heapUsed, heapTotal, external, maxRss: usage.maxRSS * 1024, cpuUs: usage.userCPUTime + usage.systemCPUTime, maxLoopDelayMs, signalBacklog: signal?.backlog(SIGNAL_LOGIN), whatsappReading: whatsapp?.reading(WHATSAPP_LOGIN) })
        return
      }
      case 'stop':
        await bridge?.stop()
        await wa?.stop()
        process.exit(0)
    }
  })().catch((err: unknown) => {
    console.error('bench bridge process:', err)
    process.exit(1)
  })
})
send({ type: 'up' })
