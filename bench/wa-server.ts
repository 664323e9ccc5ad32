// WhatsApp's server for the benchmark, in the harness (parent) process: the bridge's WhatsApp socket (rc14's real
// WebSocketClient inside the fake socket) connects here over loopback, and the generator's messages travel to it
// as frames, as they come from WhatsApp in production. So when the adapter pauses its socket for the backlog, TCP
// holds the rest here (in the harness's memory), not in the bridge's.
import type { AddressInfo } from 'node:net'
import { WebSocketServer, type WebSocket } from 'ws'
import { WA_ROBIN, whatsappGroupId } from './config.ts'

export interface WaBenchMessage { chat: number; id: string; text: string }

export class WaServer {
  readonly #server = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  #peer: WebSocket | undefined
  /** Frames sent before the socket connected: sent when it does. */
  #pending: string[] = []
  /** Frames sent and not yet taken by TCP (kernel buffers aside): what waits here while the bridge holds back. */
  maxBuffered = 0

  async start(): Promise<string> {
    await new Promise<void>(ok => this.#server.once('listening', ok))
    this.#server.on('connection', peer => {
      // The latest connection is the login's socket (a reconnect replaces the previous one).
      this.#peer = peer
      // WhatsApp answers every ping (the fake socket's keepalive).
      peer.on('message', data => {
        if (String(data) === 'ping') peer.send('pong')
      })
      peer.on('close', () => {
        if (this.#peer === peer) this.#peer = undefined
      })
      for (const f of this.#pending.splice(0)) peer.send(f)
    })
    return `ws://127.0.0.1:${(this.#server.address() as AddressInfo).port}`
  }

  /** The messages as a member (Robin) sends them to the groups, one frame each. */
  deliver(msgs: WaBenchMessage[]): void {
    for (const m of msgs) {
      const frame = `spec:${JSON.stringify({ chat: whatsappGroupId(m.chat), id: m.id, from: WA_ROBIN, pushName: 'Robin', message: { conversation: m.text } })}`
      if (this.#peer) this.#peer.send(frame)
      else this.#pending.push(frame)
    }
    if (this.#peer) this.maxBuffered = Math.max(this.maxBuffered, this.#peer.bufferedAmount)
  }

  /** A bridge process ended: its connection goes, and frames not yet read by it with it. */
  reset(): void {
    this.#peer?.terminate()
    this.#peer = undefined
    this.#pending = []
    this.maxBuffered = 0
  }

  async stop(): Promise<void> {
    this.reset()
    for (const c of this.#server.clients) c.terminate()
    await new Promise<void>(ok => this.#server.close(() => ok()))
  }
}
