// Ports for servers a test stops and starts again on the same address.
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'

/**
 * A port nothing listens on, chosen below the kernel's ephemeral range (ip_local_port_range, 32768–60999 by
 * default): a port found free inside that range can become the local end of any outgoing connection before
 * the bridge binds it, and a bridge restarted in a test must bind its port again.
 */
export async function freePort(): Promise<number> {
  const range = await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').catch(() => '32768 60999')
  const ephemeralFrom = Number(range.trim().split(/\s+/)[0]) || 32768
  const from = Math.min(10_000, ephemeralFrom - 1_000)
  for (;;) {
    const port = from + Math.floor(Math.random() * (ephemeralFrom - from))
    const free = await new Promise<boolean>(resolve => {
      const s = createServer()
      s.once('error', () => resolve(false))
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)))
    })
    if (free) return port
  }
}
