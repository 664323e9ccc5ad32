// The baseline: an appservice built only on the chosen Matrix framework (@vector-im/matrix-bot-sdk's
// Appservice) that acknowledges transactions and does nothing else. Same process shape as the bridge's.
import { createServer } from 'node:http'
import { Appservice, LogLevel, LogService, MemoryStorageProvider } from '@vector-im/matrix-bot-sdk'
import { AS_TOKEN, DOMAIN, HS_TOKEN } from './config.ts'

LogService.setLevel(LogLevel.ERROR)
const port = Number(process.argv[2])
// begin() registers the bot user: a stub homeserver says yes to every client-server call.
const stub = createServer((_req, res) => void res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}'))
await new Promise<void>(resolve => stub.listen(0, '127.0.0.1', resolve))
const hsUrl = `http://127.0.0.1:${(stub.address() as { port: number }).port}`
let acked = 0
const appservice = new Appservice({
  port,
  bindAddress: '127.0.0.1',
  homeserverName: DOMAIN,
  homeserverUrl: hsUrl,
  storage: new MemoryStorageProvider(),
  registration: {
    id: 'baseline', as_token: AS_TOKEN, hs_token: HS_TOKEN, sender_localpart: 'relaybot', url: `http://127.0.0.1:${port}`,
    namespaces: { users: [{ exclusive: true, regex: `@signal_.*:${DOMAIN}` }, { exclusive: true, regex: `@whatsapp_.*:${DOMAIN}` }], rooms: [], aliases: [] },
  },
})
appservice.on('room.event', () => void acked++)
process.on('message', (msg: { type: string }) => {
  if (msg.type === 'stats') {
    const usage = process.resourceUsage()
    process.send!({ type: 'stats', rss: process.memoryUsage.rss(), maxRss: usage.maxRSS * 1024, cpuUs: usage.userCPUTime + usage.systemCPUTime, events: acked })
  } else if (msg.type === 'stop') {
    appservice.stop()
    process.exit(0)
  }
})
await appservice.begin()
process.send!({ type: 'ready', port })
