// Prometheus metrics and the health endpoint, on their own listener so they can stay private.
import { createServer, type Server } from 'node:http'
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'

export class Metrics {
  readonly registry = new Registry()
  readonly transactions = new Counter({
    name: 'relay_bridge_transactions_received_total',
    help: 'Appservice transactions received from the homeserver, by outcome: stored, recorded (relayable at once: recorded before the answer, not stored in the inbox), duplicate (a known txn id with nothing new), ephemeral_only (a known txn id with only ephemeral events), echoes (only the bridge’s own events, nothing stored), too_large, bad_json, db_error',
    labelNames: ['result'] as const,
    registers: [this.registry],
  })
  readonly events = new Counter({
    name: 'relay_bridge_events_received_total',
    help: 'Matrix events received in transactions, by type',
    labelNames: ['type'] as const,
    registers: [this.registry],
  })
  readonly dbQuery = new Histogram({
    name: 'relay_bridge_db_query_seconds',
    help: 'Database query latency',
    labelNames: ['ok'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers: [this.registry],
  })
  readonly deliveries = new Counter({
    name: 'relay_bridge_deliveries_total',
    help: 'Deliveries attempted, by target network and outcome',
    labelNames: ['network', 'result'] as const,
    registers: [this.registry],
  })
  readonly queueDepth = new Gauge({
    name: 'relay_bridge_outbox_open',
    help: 'Deliveries waiting in the outbox, by target network and state',
    labelNames: ['network', 'state'] as const,
    registers: [this.registry],
  })
  readonly decryptions = new Counter({
    name: 'relay_bridge_decryptions_total',
    help: 'Encrypted Matrix events, by outcome: decrypted, waiting (its key had not come), decrypted_late (its key came within the wait), failed_no_keys (the wait ended without the key: "the bridge hasn\'t received the decryption keys"), failed (cannot be decrypted)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  })
  /** Read when scraped: what the ghosts' own encryption devices cost so far (GhostDevices.stats()). */
  ghostDeviceStats: (() => Record<string, number>) | undefined
  readonly ghostDevices = new Gauge({
    name: 'relay_bridge_ghost_devices',
    help: 'Ghosts\' own encryption devices, by what: created (devices this process created, each cross-signed by its ghost\'s new identity), loads and unloads (of their machines into and out of memory), loaded (in memory now), olm_sessions (one-time keys claimed for them: new Olm sessions to other devices)',
    labelNames: ['what'] as const,
    registers: [this.registry],
    collect: () => {
      const stats = this.ghostDeviceStats?.()
      if (!stats) return
      const names: Record<string, string> = { created: 'created', loads: 'loads', unloads: 'unloads', loaded: 'loaded', olmSessions: 'olm_sessions' }
      for (const [key, what] of Object.entries(names)) this.ghostDevices.set({ what }, stats[key] ?? 0)
    },
  })
  readonly loginState = new Gauge({
    name: 'relay_bridge_login_connected',
    help: '1 when a relay login is connected, by network and login id',
    labelNames: ['network', 'login'] as const,
    registers: [this.registry],
  })

  constructor(defaults = true) {
    // The event-loop delay histogram samples with a timer that wakes the process at this interval for as long as it
    // runs: prom-client's 10 ms meant 100 wake-ups a second, 0.6–0.7 % of a core on an idle bridge and ~60 µs per
    // message at 100 msg/s (docs/performance.md). 50 ms still sees every stall worth a page; the exact
    // nodejs_eventloop_lag_seconds is measured at each scrape regardless.
    if (defaults) collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 50 })
  }

  observeQuery = (ms: number, ok: boolean): void => {
    this.dbQuery.observe({ ok: String(ok) }, ms / 1000)
  }
}

// Event types the bridge knows; anything else is counted as "other" so labels stay bounded.
const KNOWN_TYPES = new Set([
  'm.room.message', 'm.room.member', 'm.room.redaction', 'm.reaction', 'm.sticker', 'm.room.encrypted',
  'm.room.name', 'm.room.topic', 'm.room.avatar', 'm.room.power_levels', 'm.room.create', 'm.room.encryption',
  'm.room.join_rules', 'm.room.history_visibility', 'm.bridge', 'uk.half-shot.bridge',
  'com.beeper.message_send_status',
])
export const eventTypeLabel = (type: unknown): string =>
  typeof type === 'string' && KNOWN_TYPES.has(type) ? type : 'other'

export interface HealthSource {
  health(): Promise<{ ok: boolean; details: Record<string, unknown> }>
}

export function startMetricsServer(metrics: Metrics, health: HealthSource, hostname: string, port: number): Promise<Server> {
  const server = createServer((req, res) => {
    void (async () => {
      if (req.method === 'GET' && req.url === '/metrics') {
        res.writeHead(200, { 'Content-Type': metrics.registry.contentType })
        res.end(await metrics.registry.metrics())
      } else if (req.method === 'GET' && req.url === '/health') {
        const h = await health.health().catch((err: Error) => ({ ok: false, details: { error: err.message } }))
        res.writeHead(h.ok ? 200 : 503, { 'Content-Type': 'application/json' })
        res.end(JSON.stringify({ status: h.ok ? 'ok' : 'unhealthy', ...h.details }))
      } else {
        res.writeHead(404, { 'Content-Type': 'application/json' })
        res.end(JSON.stringify({ errcode: 'M_UNRECOGNIZED', error: 'Unrecognized request' }))
      }
    })().catch(() => {
      if (!res.headersSent) res.writeHead(500)
      res.end()
    })
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, hostname, () => resolve(server))
  })
}
