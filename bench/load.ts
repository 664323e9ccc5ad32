// Open-loop load: messages are generated at a fixed rate whatever happens to the earlier ones, and every
// message is tracked until it has arrived at each network it must reach.
import { Agent, request } from 'node:http'
import { ALICE, HS_TOKEN, nowMs, tag } from './config.ts'

export type Net = 'matrix' | 'signal' | 'whatsapp'
const BIT: Record<Net, number> = { matrix: 1, signal: 2, whatsapp: 4 }

export class Tracker {
  private readonly pending = new Map<number, { t0: number; left: number }>()
  /** [arrival time, latency] of every message that reached all its networks. */
  readonly done: Array<[number, number]> = []
  expect(seq: number, t0: number, nets: Net[]): void {
    this.pending.set(seq, { t0, left: nets.reduce((m, n) => m | BIT[n], 0) })
  }
  arrive(seq: number | undefined, net: Net, t = nowMs()): void {
    if (seq === undefined) return
    const p = this.pending.get(seq)
    if (!p || !(p.left & BIT[net])) return
    p.left &= ~BIT[net]
    if (p.left === 0) {
      this.pending.delete(seq)
      this.done.push([t, t - p.t0])
    }
  }
  get inFlight(): number {
    return this.pending.size
  }
  reset(): void {
    this.pending.clear()
    this.done.length = 0
  }
}

let seq = 0
export const nextSeq = (): number => ++seq

export interface OpenLoop {
  rate: number
  durationMs: number
  /** Called with how many messages are due now; returns nothing (the caller sends them). */
  emit: (count: number) => void
}

/** Calls emit() every millisecond or so with the messages due by then, for durationMs. */
export async function openLoop({ rate, durationMs, emit }: OpenLoop): Promise<{ startedAt: number; endedAt: number; generated: number }> {
  const startedAt = nowMs()
  let generated = 0
  await new Promise<void>(resolve => {
    const tick = (): void => {
      const elapsed = nowMs() - startedAt
      const due = Math.floor((Math.min(elapsed, durationMs) * rate) / 1000) - generated
      if (due > 0) {
        generated += due
        emit(due)
      }
      if (elapsed >= durationMs) resolve()
      else setTimeout(tick, 1)
    }
    tick()
  })
  return { startedAt, endedAt: nowMs(), generated }
}

export interface TxnStats {
  sent: number
  acked: number
  failed: number
  ackedEvents: number
  /** [ack time, events] of each acknowledged transaction. */
  acks: Array<[number, number]>
}

/** Pushes transactions to an appservice the way a homeserver does: PUT /transactions/{txnId}, `batch` events each. */
export interface PreparedMessage {
  seq: number
  roomId: string
  type: string
  content: Record<string, unknown>
}

export class TransactionPusher {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 64 })
  private readonly port: number
  private readonly batch: number
  private readonly tracker: Tracker | undefined
  private buffer: Array<{ seq: number; event: Record<string, unknown> }> = []
  private txn = 0
  readonly stats: TxnStats = { sent: 0, acked: 0, failed: 0, ackedEvents: 0, acks: [] }
  private readonly prefix = `b${process.pid}x${Date.now()}x`

  constructor(port: number, batch: number, tracker?: Tracker) {
    this.port = port
    this.batch = batch
    this.tracker = tracker
  }

  add(roomId: string, nets: Net[]): void {
    const s = nextSeq()
    this.addPrepared({ seq: s, roomId, type: 'm.room.message', content: { msgtype: 'm.text', body: `Hello from the benchmark ${tag(s)}` } }, nets)
  }

  /** A message made beforehand (an encrypted one: encrypting is the sender's cost, not the bridge's). */
  addPrepared(m: PreparedMessage, nets: Net[]): void {
    this.buffer.push({
      seq: m.seq,
      event: {
        event_id: `$${this.prefix}${m.seq}`, room_id: m.roomId, type: m.type, sender: ALICE,
        origin_server_ts: Date.now(), content: m.content, unsigned: { age: 1 },
      },
    })
    if (this.buffer.length >= this.batch) this.flush(nets)
  }

  private flush(nets: Net[]): void {
    const items = this.buffer
    this.buffer = []
    const t0 = nowMs()
    if (this.tracker) for (const i of items) this.tracker.expect(i.seq, t0, nets)
    const body = JSON.stringify({ events: items.map(i => i.event) })
    const txnId = `${this.prefix}${++this.txn}`
    this.stats.sent++
    const req = request({
      agent: this.agent, host: '127.0.0.1', port: this.port, method: 'PUT', path: `/_matrix/app/v1/transactions/${txnId}`,
      headers: { Authorization: `Bearer ${HS_TOKEN}`, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
    }, res => {
      res.resume()
      res.on('end', () => {
        if (res.statusCode === 200) {
          this.stats.acked++
          this.stats.ackedEvents += items.length
          this.stats.acks.push([nowMs(), items.length])
        } else this.stats.failed++
      })
    })
    req.on('error', () => void this.stats.failed++)
    req.end(body)
  }

  close(): void {
    this.agent.destroy()
  }
}

export function percentiles(values: number[]): { p50: number; p95: number; p99: number; max: number } {
  const s = [...values].sort((a, b) => a - b)
  const at = (q: number): number => (s.length ? s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]! : NaN)
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99), max: s.at(-1) ?? NaN }
}
