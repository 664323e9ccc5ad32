// The bridge under end-to-end test: the real entry (runBridge) in its own process, with the fake
// WhatsApp socket injected. The fake cannot cross a process boundary, so the test drives it over IPC:
// {id, method, args} in, {id, result | error} out. Every WhatsApp send is also appended to a file
// before it returns, so a test can count deliveries across a SIGKILL.
import { appendFileSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import type { GroupMetadata } from '@whiskeysockets/baileys'
import { runBridge } from '../../src/bridge.ts'
import { buildNetworks } from '../../src/bridge.ts'
import { loadConfig } from '../../src/config.ts'
import { FakeWhatsApp, type SentRecord } from '../fakes/whatsapp-socket.ts'

const [configPath, sentLog] = process.argv.slice(2)
if (!configPath || !sentLog || !process.send) {
  console.error('usage: entry.ts <config.yaml> <whatsapp-sent.log> (with an IPC channel)')
  process.exit(2)
}
const send = process.send.bind(process)

const wa = new FakeWhatsApp()
await wa.start()

// WhatsApp's servers outlive the bridge: the fake's groups and invites are kept in a file beside the sent
// log, so a restarted bridge (even after SIGKILL) finds the same world.
const worldFile = `${sentLog}.world.json`
if (existsSync(worldFile)) {
  const world = JSON.parse(readFileSync(worldFile, 'utf8')) as { groups: [string, GroupMetadata][]; invites: [string, string][] }
  for (const [id, g] of world.groups) wa.groups.set(id, g)
  for (const [code, id] of world.invites) wa.invites.set(code, id)
}
let saved = ''
const saveWorld = () => {
  const now = JSON.stringify({ groups: [...wa.groups], invites: [...wa.invites] })
  if (now !== saved) {
    writeFileSync(`${worldFile}.tmp`, now)
    renameSync(`${worldFile}.tmp`, worldFile)
    saved = now
  }
}
setInterval(saveWorld, 20).unref()
const push = wa.sent.push.bind(wa.sent)
wa.sent.push = (...records: SentRecord[]) => {
  for (const r of records) {
    appendFileSync(sentLog, `${JSON.stringify({ jid: r.jid, id: r.id, content: r.content, quotedId: r.options.quotedId ?? null })}\n`)
  }
  return push(...records)
}

// IPC uses structured clone ('advanced' serialization), so bytes cross as bytes; protobuf objects are
// turned into plain data first (no prototypes, no functions).
function plain(v: unknown): unknown {
  if (v === undefined || v === null) return null
  if (v instanceof Uint8Array || typeof v !== 'object') return typeof v === 'bigint' || typeof v === 'function' ? String(v) : v
  if (typeof (v as { toNumber?: unknown }).toNumber === 'function') return (v as { toNumber(): number }).toNumber() // Long
  if (Array.isArray(v)) return v.map(plain)
  const out: Record<string, unknown> = {}
  for (const [k, x] of Object.entries(v)) if (typeof x !== 'function') out[k] = plain(x)
  return out
}

process.on('message', (msg: { id: number; method: string; args: unknown[] }) => {
  void (async () => {
    try {
      const target = wa as unknown as Record<string, (...a: unknown[]) => unknown>
      if (typeof target[msg.method] !== 'function') throw new Error(`FakeWhatsApp has no method ${msg.method}`)
      const result = await target[msg.method]!.apply(wa, msg.args)
      saveWorld()
      send({ id: msg.id, result: plain(result) })
    } catch (err) {
      send({ id: msg.id, error: (err as Error).message })
    }
  })()
})

const config = await loadConfig(configPath)
const fast = JSON.parse(process.env.RELAY_BRIDGE_E2E_TIMINGS ?? '{}') as { backoffMs?: number }
const networks = await buildNetworks(config, {
  signal: { timings: { backoffInitialMs: 100, backoffMaxMs: 1000, watchdogMs: 5000, pollAccountsMs: 1000, receiveRetryMs: 100 } },
  whatsapp: { socketFactory: wa.factory, reconnect: { initialMs: 50, maxMs: 500 }, phoneCheckMs: 0 },
})
const code = await runBridge(config, {
  networks,
  timings: { backoff: { initialMs: fast.backoffMs ?? 100, maxMs: 1000, maxAttempts: 1000 }, inboxRetryMs: 100, homeserverRetryMs: 200 },
}, bridge => send({ ready: true, port: bridge.port }))
await wa.stop()
process.exit(code)
