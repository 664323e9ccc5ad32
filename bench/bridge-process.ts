// The bridge under test, in its own process (so that its resident set is its own): the real startBridge with
// the real Signal adapter (talking HTTP + SSE to the fake daemon in the parent) and the real WhatsApp adapter
// over the fake socket (in this process, as Baileys would be). Talks to the parent over IPC.
import { mkdtemp } from 'node:fs/promises'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { startBridge } from '../src/bridge.ts'
import { compactHeap } from '../src/memory.ts'
import { SignalNetwork } from '../src/signal/network.ts'
import { WhatsAppNetwork } from '../src/whatsapp/network.ts'
import { FakeWhatsApp, type SentRecord } from '../test/fakes/whatsapp-socket.ts'
import { benchConfig, nowMs, untag, WA_ROBIN, whatsappGroupId, WHATSAPP_LOGIN } from './config.ts'
import { installStageHooks } from './stages.ts'

interface Start { type: 'start'; databaseUri: string; homeserver: string; daemonUrl: string; portals: number; encrypted?: boolean }
interface WaDeliver { type: 'wa'; msgs: Array<{ chat: number; id: string; text: string }> }
type FromParent = Start | WaDeliver | { type: 'stats' } | { type: 'stop' }

const send = (m: unknown): void => void process.send!(m)
// Stage timestamps (latency runs, asked for by the benchmark): hooks on pg's client and Node's HTTP messages.
const stages = process.env.BENCH_STAGES === '1' ? installStageHooks(stamps => send({ type: 'stages', stamps })) : undefined
// How long the bridge's event loop was ever kept from running (reset by each 'stats'): tells a stall inside the
// bridge from one around it.
const loopDelay = monitorEventLoopDelay({ resolution: 5 })
loopDelay.enable()
const wa = new FakeWhatsApp()
let arrivals: Array<[number, number]> = []
// The fake keeps every send for assertions; here only the arrival time is kept (and reported).
wa.sent.push = (...records: SentRecord[]): number => {
  const t = nowMs()
  for (const r of records) {
    const seq = untag((r.content as { text?: unknown }).text)
    if (seq !== undefined) arrivals.push([seq, t])
  }
  return 0
}
setInterval(() => {
  if (arrivals.length === 0) return
  send({ type: 'wa-sent', arrivals })
  arrivals = []
}, 10)

let bridge: Awaited<ReturnType<typeof startBridge>> | undefined

process.on('message', (msg: FromParent) => {
  void (async () => {
    switch (msg.type) {
      case 'start': {
        for (let i = 0; i < msg.portals; i++) wa.addGroup({ id: whatsappGroupId(i), subject: `Bench ${i}`, members: [WA_ROBIN] })
        await wa.start()
        const config = benchConfig({ ...msg, dataDir: await mkdtemp(join(tmpdir(), 'rb-bench-')) })
        const log = pino({ level: config.logging.level })
        const networks = [
          new SignalNetwork({ daemonUrl: msg.daemonUrl, timings: { pollAccountsMs: 3_600_000 } }),
          new WhatsAppNetwork({ socketFactory: wa.factory, paceMs: [0, 0], phoneCheckMs: 0 }),
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
      case 'wa':
        for (const m of msg.msgs) {
          stages?.stamp(m.text, 'arrival')
          wa.deliver({ chat: whatsappGroupId(m.chat), id: m.id, from: WA_ROBIN, pushName: 'Robin', message: { conversation: m.text } })
        }
        return
      case 'stats': {
        const usage = process.resourceUsage()
        const { rss, heapUsed, heapTotal, external } = process.memoryUsage()
        const maxLoopDelayMs = loopDelay.max / 1e6
        loopDelay.reset()
        send({ type: 'stats', rss, heapUsed, heapTotal, external, maxRss: usage.maxRSS * 1024, cpuUs: usage.userCPUTime + usage.systemCPUTime, maxLoopDelayMs })
        return
      }
      case 'stop':
        await bridge?.stop()
        await wa.stop()
        process.exit(0)
    }
  })().catch((err: unknown) => {
    console.error('bench bridge process:', err)
    process.exit(1)
  })
})
send({ type: 'up' })
