// A TCP proxy in front of PostgreSQL, so a test can take the database away (connections cut, new ones
// refused) and bring it back, as a network outage or a database restart would, or make it hang (nothing
// forwarded, nothing closed), as a stuck server or a silently dropped network path would.
import { createServer, connect, type Server, type Socket } from 'node:net'
import { freePort } from '../support/ports.ts'

export class TcpProxy {
  readonly port: number
  private server: Server | undefined
  private readonly sockets = new Set<Socket>()
  private readonly pairs = new Map<Socket, Socket>()
  private readonly target: { host: string; port: number }
  private frozen = false
  /** Bytes the clients sent after freeze(), swallowed: the server never saw them. */
  swallowedBytes = 0

  private constructor(port: number, target: { host: string; port: number }) {
    this.port = port
    this.target = target
  }

  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    const proxy = new TcpProxy(await freePort(), target)
    await proxy.listen()
    return proxy
  }

  private listen(): Promise<void> {
    const server = createServer(client => {
      this.track(client)
      if (this.frozen) return this.swallow(client)
      const upstream = connect(this.target.port, this.target.host)
      this.track(upstream)
      this.pairs.set(client, upstream)
      client.pipe(upstream).pipe(client)
    })
    this.server = server
    return new Promise(r => server.listen(this.port, '127.0.0.1', () => r()))
  }

  private track(s: Socket): void {
    this.sockets.add(s)
    s.on('close', () => {
      this.sockets.delete(s)
      this.pairs.delete(s)
    })
    s.on('error', () => {})
  }

  private swallow(client: Socket): void {
    client.on('data', (d: Buffer) => (this.swallowedBytes += d.length))
  }

  /** Stops forwarding in both directions without closing anything: open connections stay open and silent,
   * new ones are accepted and never reach the server. For good; stop() ends it. */
  freeze(): void {
    this.frozen = true
    for (const [client, upstream] of this.pairs) {
      client.unpipe(upstream)
      upstream.unpipe(client)
      upstream.pause()
      this.swallow(client)
    }
  }

  /** Cuts every connection and refuses new ones for `ms`, then accepts again. */
  async cut(ms: number): Promise<void> {
    const server = this.server
    this.server = undefined
    const closed = new Promise<void>(r => (server ? server.close(() => r()) : r()))
    for (const s of this.sockets) s.destroy()
    await closed
    await new Promise(r => setTimeout(r, ms))
    await this.listen()
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise<void>(r => (this.server ? this.server.close(() => r()) : r()))
  }
}
