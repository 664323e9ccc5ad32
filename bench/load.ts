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
  /** Told of each message that reached all its networks (the stage evidence of latency runs). */
  onComplete?: (seq: number, t0: number, t: number) => void
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
      this.onComplete?.(seq, p.t0, t)
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

export interface PreparedMessage {
  seq: number
  roomId: string
  type: string
  content: Record<string, unknown>
}

/** What a Matrix run pushes with: add a message, read the acknowledgements, close. */
export interface Pusher {
  readonly stats: TxnStats
  add(roomId: string, nets: Net[]): void
  addPrepared(m: PreparedMessage, nets: Net[]): void
  close(): void
}

interface Queued { seq: number; event: Record<string, unknown> }

/** The HTTP side both pushers share: PUT /transactions/{txnId} as a homeserver does, counted in `stats`. */
class TransactionClient {
  readonly agent = new Agent({ keepAlive: true, maxSockets: 64 })
  readonly stats: TxnStats = { sent: 0, acked: 0, failed: 0, ackedEvents: 0, acks: [] }
  readonly prefix = `b${process.pid}x${Date.now()}x`
  private readonly port: number
  private txn = 0
  constructor(port: number) {
    this.port = port
  }

  event(m: PreparedMessage): Queued {
    return {
      seq: m.seq,
      event: {
        event_id: `$${this.prefix}${m.seq}`, room_id: m.roomId, type: m.type, sender: ALICE,
        origin_server_ts: Date.now(), content: m.content, unsigned: { age: 1 },
      },
    }
  }

  put(items: Queued[], answered: () => void = () => {}): void {
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
        answered()
      })
    })
    req.on('error', () => {
      this.stats.failed++
      answered()
    })
    req.end(body)
  }
}

const message = (roomId: string): PreparedMessage => {
  const s = nextSeq()
  return { seq: s, roomId, type: 'm.room.message', content: { msgtype: 'm.text', body: `Hello from the benchmark ${tag(s)}` } }
}

/** Pushes transactions of exactly `batch` events as soon as they are full, with up to 64 in flight (harsher than a
 * homeserver). A message's latency counts from when its transaction is sent. */
export class TransactionPusher implements Pusher {
  private readonly client: TransactionClient
  private readonly batch: number
  private readonly tracker: Tracker | undefined
  private buffer: Queued[] = []

  constructor(port: number, batch: number, tracker?: Tracker) {
    this.client = new TransactionClient(port)
    this.batch = batch
    this.tracker = tracker
  }

  get stats(): TxnStats {
    return this.client.stats
  }

  add(roomId: string, nets: Net[]): void {
    this.addPrepared(message(roomId), nets)
  }

  /** A message made beforehand (an encrypted one: encrypting is the sender's cost, not the bridge's). */
  addPrepared(m: PreparedMessage, nets: Net[]): void {
    this.buffer.push(this.client.event(m))
    if (this.buffer.length >= this.batch) this.flush(nets)
  }

  private flush(nets: Net[]): void {
    const items = this.buffer
    this.buffer = []
    const t0 = nowMs()
    if (this.tracker) for (const i of items) this.tracker.expect(i.seq, t0, nets)
    this.client.put(items)
  }

  close(): void {
    this.client.agent.destroy()
  }
}

/**
 * Pushes as Synapse pushes an appservice: one transaction in flight; when it is answered, the next carries the
 * backlog that formed meanwhile, at most `max` events (Synapse's limit is 100; issue 19 asks for 50). A message's
 * latency counts from when it was generated: its wait in the "homeserver" is part of it.
 */
export class SynapsePusher implements Pusher {
  private readonly client: TransactionClient
  private readonly max: number
  private readonly tracker: Tracker | undefined
  private backlog: Queued[] = []
  private inFlight = false
  private closed = false

  constructor(port: number, max: number, tracker?: Tracker) {
    this.client = new TransactionClient(port)
    this.max = max
    this.tracker = tracker
  }

  get stats(): TxnStats {
    return this.client.stats
  }

  /** Events generated but not yet sent (the homeserver's queue for this appservice). */
  get waiting(): number {
    return this.backlog.length
  }

  add(roomId: string, nets: Net[]): void {
    this.addPrepared(message(roomId), nets)
  }

  addPrepared(m: PreparedMessage, nets: Net[]): void {
    this.tracker?.expect(m.seq, nowMs(), nets)
    this.backlog.push(this.client.event(m))
    this.send()
  }

  private send(): void {
    if (this.inFlight || this.closed || this.backlog.length === 0) return
    this.inFlight = true
    this.client.put(this.backlog.splice(0, this.max), () => {
      this.inFlight = false
      this.send()
    })
  }

  close(): void {
    this.closed = true
    this.client.agent.destroy()
  }
}

export function percentiles(values: number[]): { p50: number; p95: number; p99: number; max: number } {
  const s = [...values].sort((a, b) => a - b)
  const at = (q: number): number => (s.length ? s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]! : NaN)
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99), max: s.at(-1) ?? NaN }
}
