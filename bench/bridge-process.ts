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
// Stage timestamps (latency runs, asked for by the benchmark): hooks on pg's client and Node's HTTP messages.
const stages = process.env.BENCH_STAGES === '1' ? installStageHooks() : undefined
// How long the bridge's event loop was ever kept from running (reset by each 'stats'): tells a stall inside the
// bridge from one around it. Sampled every 20 ms: each sample wakes the process, and at 5 ms the meter alone cost
// the bridge ~1 % of a core, counted as its CPU per message in the latency runs (stalls worth reporting are longer).
const loopDelay = monitorEventLoopDelay({ resolution: 20 })
loopDelay.enable()
// Made at 'start', when the parent names its WhatsApp server.
let wa: FakeWhatsApp | undefined
let arrivals: Array<[number, number]> = []
// The fake keeps every send for assertions; here only the arrival time is kept (and reported), every 50 ms: each
// report is an IPC message the bridge process pays for, and the time is taken on arrival, not when reported. The
// stage stamps go in the same report: one timer and one message, not two (each woke the process on its own).
const onlyArrivals = (...records: SentRecord[]): number => {
  const t = nowMs()
  for (const r of records) {
    const seq = untag((r.content as { text?: unknown }).text)
    if (seq !== undefined) arrivals.push([seq, t])
  }
  return 0
}
setInterval(() => {
  const stamps = stages?.take() ?? []
  if (arrivals.length === 0 && stamps.length === 0) return
  send({ type: 'report', arrivals, stamps })
  arrivals = []
}, 50)

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
        const maxLoopDelayMs = loopDelay.max / 1e6
        loopDelay.reset()
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
