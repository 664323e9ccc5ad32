// Puts the bridge together: database, homeserver client and endpoint, the core, and the networks.
import type { Server } from 'node:http'
import type { Logger } from 'pino'
import type { Config } from './config.ts'
import { Commands } from './core/commands/index.ts'
import { Deliverer } from './core/deliver.ts'
import { Ephemeral } from './core/ephemeral.ts'
import { SqlLoginStore } from './core/logins.ts'
import { FileMediaStore, type MediaStore } from './core/media.ts'
import { MessageMap } from './core/messages.ts'
import { NETWORK_LABEL, type InboundEvent, type NetworkId, type RemoteNetworkId } from './core/model.ts'
import type { ConnectionState, NetworkContext, Participant, RemoteNetwork } from './core/network.ts'
import { Outbox } from './core/outbox.ts'
import { RoomUpgrades } from './matrix/upgrade.ts'
import { PortalStore, type Portal } from './core/portals.ts'
import { SenderNames } from './core/render.ts'
import { Router } from './core/router.ts'
import { migrate } from './db/migrate.ts'
import { openDatabase } from './db/open.ts'
import type { Db } from './db/types.ts'
import type { SignalNetworkOptions } from './signal/network.ts'
import type { WhatsAppNetworkOptions } from './whatsapp/network.ts'
import { timed } from './db/timed.ts'
import { checkHomeserver } from './homeserver-check.ts'
import { createLogger } from './log.ts'
import { stopWithin } from './stop.ts'
import { AppserviceServer } from './matrix/appservice.ts'
import { MatrixClientApi, type HomeserverApi } from './matrix/client.ts'
import { Decryption } from './matrix/decryption.ts'
import { openEncryption } from './matrix/encryption.ts'
import { GhostEphemeral, matrixEphemeralDrop } from './matrix/ephemeral.ts'
import { isEcho, MatrixEvents } from './matrix/events.ts'
import { Ghosts } from './matrix/ghosts.ts'
import { Inbox } from './matrix/inbox.ts'
import { MatrixParticipant } from './matrix/participant.ts'
import { BotRooms } from './matrix/rooms.ts'
import { Metrics, startMetricsServer } from './metrics.ts'

export interface BridgeDeps {
  log?: Logger
  db?: Db
  api?: HomeserverApi
  /** The Signal and WhatsApp adapters; by default built from the config. */
  networks?: RemoteNetwork[]
  /** Shorter delays for tests. */
  timings?: { backoff?: { initialMs: number; maxMs: number; maxAttempts: number }; inboxRetryMs?: number; homeserverRetryMs?: number; maintenanceMs?: number }
}

export interface Bridge {
  readonly port: number
  readonly metricsPort: number | undefined
  readonly db: Db
  readonly outbox: Outbox
  readonly router: Router
  readonly portals: PortalStore
  readonly logins: SqlLoginStore
  /** Stops within STOP_WORK_MS + STOP_DATABASE_MS; resolves with what did not finish (empty when all did). */
  stop(): Promise<string[]>
}

/** How long the stop waits for work in flight (Matrix events being handled, deliveries being sent, network
 * connections closing), and then for the database to close. Together well inside the 10 s that docker stop
 * and systemd allow between SIGTERM and SIGKILL (docs/operators.md). */
export const STOP_WORK_MS = 4_000
export const STOP_DATABASE_MS = 2_000

/** The Signal and WhatsApp adapters as the config describes them; `overrides` lets a test entry inject
 * the fake WhatsApp socket and shorter delays while everything else stays as in production. */
export async function buildNetworks(
  config: Config,
  overrides: { signal?: Partial<SignalNetworkOptions>; whatsapp?: Partial<WhatsAppNetworkOptions> } = {},
): Promise<RemoteNetwork[]> {
  const { SignalNetwork } = await import('./signal/network.ts')
  const { WhatsAppNetwork } = await import('./whatsapp/network.ts')
  const [min, max] = config.whatsapp.send_pace_ms
  return [
    new SignalNetwork({
      daemonUrl: config.signal.daemon_url,
      ...(config.signal.attachments_dir ? { attachmentsDir: config.signal.attachments_dir } : {}),
      ...overrides.signal,
    }),
    new WhatsAppNetwork({ paceMs: [min, max], ...overrides.whatsapp }),
  ]
}

/** A login QR code as a PNG. The encoder is loaded on first use: only logins need it, not a running bridge. */
async function qrPng(data: string): Promise<Buffer> {
  const { default: QRCode } = await import('qrcode')
  return QRCode.toBuffer(data, { type: 'png', margin: 2, scale: 8 })
}

export async function startBridge(config: Config, deps: BridgeDeps = {}): Promise<Bridge> {
  const log = deps.log ?? createLogger(config.logging.level)
  const metrics = new Metrics()
  const own = deps.db ? undefined : await openDatabase(config.database.uri, config.data_dir)
  const db = timed(deps.db ?? own!, metrics.observeQuery)
  const applied = await migrate(db)
  if (applied.length) log.info({ applied }, 'Applied database migrations')
  const domain = config.homeserver.domain
  const botMxid = `@${config.appservice.bot.username}:${domain}`
  const plainApi = deps.api ?? new MatrixClientApi({
    homeserverUrl: config.homeserver.address, asToken: config.appservice.as_token, domain,
    botLocalpart: config.appservice.bot.username, log: log.child({ part: 'matrix' }),
  })
  const encryption = config.encryption.allow
    ? await openEncryption({ api: plainApi, db, botMxid, domain, storeKey: config.encryption.store_key, log })
    : undefined
  // Every room event the bridge sends goes through this one: encrypted where the room is.
  const api = encryption?.api ?? plainApi
  const media: MediaStore = new FileMediaStore(config.data_dir)
  const portals = new PortalStore(db)
  await portals.load()
  const logins = new SqlLoginStore(db)
  const inbox = new Inbox(db)
  const rooms = new BotRooms({
    api, db, botMxid, log: log.child({ part: 'rooms' }),
    ...(encryption ? { encryption: { rooms: encryption.rooms, byDefault: config.encryption.default, health: () => encryption.health() } } : {}),
  })
  const ghosts = new Ghosts({ db, api, media, domain, botMxid, log })
  const networks = new Map<RemoteNetworkId, RemoteNetwork>()
  for (const n of deps.networks ?? await buildNetworks(config)) networks.set(n.network, n)
  const participants = new Map<NetworkId, Participant>([['matrix', new MatrixParticipant({ api, ghosts, media, domain, log })]])
  for (const [id, n] of networks) participants.set(id, n)

  const deliverer = new Deliverer({
    db, portals, participants, names: new SenderNames(db), rooms,
    template: config.bridge.relay.message_format, reactions: config.bridge.relay.reactions,
  })
  const outbox = new Outbox({
    db, log: log.child({ part: 'outbox' }), dispatch: deliverer.dispatch, onFailed: deliverer.onFailed,
    onSent: row => metrics.deliveries.inc({ network: row.network, result: 'sent' }),
    holdRetentionMs: config.bridge.hold_retention_hours * 3_600_000,
    ...(deps.timings?.backoff ? { backoff: deps.timings.backoff } : {}),
  })

  /** A remote group with no portal spoke: make a room for it and invite the relay's owner. */
  const createPortal = async (event: InboundEvent): Promise<Portal | undefined> => {
    if (!config.bridge.auto_create_portals || event.chat.network === 'matrix' || !event.loginId) return undefined
    const network = event.chat.network
    const login = await logins.get(event.loginId)
    const adapter = networks.get(network)
    if (!login || !adapter) return undefined
    const group = (await adapter.listGroups(login).catch(() => [])).find(g => g.id === event.chat.id)
    const name = group?.name || `${NETWORK_LABEL[network]} group`
    const roomId = await rooms.createPortalRoom({ name, invite: [login.ownerMxid] })
    const portal = await portals.link(await portals.create(roomId, { name, creator: login.ownerMxid }), network, event.chat.id, login.id)
    await rooms.setBridgeInfo(roomId, network, { network, id: event.chat.id, name }, login.ownerMxid)
    log.info({ network, room: roomId }, 'Created a portal room for a group that spoke')
    return portal
  }
  const router = new Router({
    db, portals, outbox, log, createPortal,
    onChatUpdate: async (portal, event) => {
      if (!event.name || event.name === portal.name) return
      await portals.setName(portal, event.name)
      await rooms.setRoomName(portal.roomId, event.name)
    },
  })
  const commands = new Commands({
    prefix: config.bridge.command_prefix, permissions: config.bridge.permissions, portals, logins, networks, rooms, outbox,
    log: log.child({ part: 'commands' }), qrPng,
  })
  const upgrades = new RoomUpgrades({
    api, portals, rooms, botMxid, log: log.child({ part: 'room-upgrades' }),
    onMoved: portal => outbox.kick('matrix', portal.roomId),
  })
  // Declared before the events that it wakes; set right after them.
  let kickEvents = (): void => {}
  const decryption = encryption && new Decryption({
    db, inbox, crypto: encryption.machine, rooms, portals, waitMs: config.encryption.key_wait_seconds * 1000,
    counter: metrics.decryptions, log: log.child({ part: 'decryption' }), onDue: () => kickEvents(),
  })
  const events = new MatrixEvents({
    db, inbox, api, router, commands, rooms, upgrades, ghosts, portals, media, domain, botMxid,
    permissions: config.bridge.permissions, log: log.child({ part: 'matrix-events' }),
    ...(deps.timings?.inboxRetryMs ? { retryDelayMs: deps.timings.inboxRetryMs } : {}),
    ...(encryption && decryption ? { encryption: { decryption, rooms: encryption.rooms } } : {}),
  })
  kickEvents = () => events.kick()
  const ephemeral = new Ephemeral({
    db, portals, sink: new GhostEphemeral({ api, ghosts, domain, log: log.child({ part: 'matrix-ephemeral' }) }),
    typing: config.bridge.typing_to_matrix, receipts: config.bridge.receipts_to_matrix, log: log.child({ part: 'ephemeral' }),
  })
  const appservice = new AppserviceServer({
    hsToken: config.appservice.hs_token, maxBodyBytes: config.appservice.max_body_bytes, inbox, log, metrics,
    onStored: count => events.stored(count),
    onEphemeral: matrixEphemeralDrop(metrics.registry),
    ignore: e => isEcho(e, botMxid, domain),
    onUserQuery: mxid => ghosts.exists(mxid),
    storeCrypto: encryption !== undefined,
  })
  const port = await appservice.listen(config.appservice.port, config.appservice.hostname)
  log.info({ port }, 'Listening for the homeserver')

  /** Tells a login's owner, and the rooms it relays, something in Matrix only. */
  const notify = async (loginId: string, text: string): Promise<void> => {
    const login = await logins.get(loginId)
    if (!login) return
    const targets = new Set<string>()
    for (const p of portals.all()) if (p.signalLogin === loginId || p.whatsappLogin === loginId) targets.add(p.roomId)
    targets.add(await rooms.directRoom(login.ownerMxid).catch(() => ''))
    targets.delete('')
    for (const room of targets) await rooms.notice(room, text).catch(err => log.warn({ err: (err as Error).message }, 'Could not send a notice'))
  }
  const context = (network: RemoteNetworkId): NetworkContext => ({
    log: log.child({ part: network }), db, media, metrics: metrics.registry, logins,
    receive: async event => {
      await router.receive(event)
    },
    ephemeral: event => ephemeral.receive(event),
    wantsEphemeral: ephemeral.wants,
    reportState: async (loginId: string, state: ConnectionState, message?: string) => {
      const previous = await logins.setState(loginId, state, message ?? null)
      metrics.loginState.set({ network, login: loginId }, state === 'connected' ? 1 : 0)
      if (state === 'connected' && previous !== 'connected') {
        const released = await outbox.release(network)
        if (released > 0) log.info({ network, released }, 'Sending messages held while the relay was away')
      }
    },
    notify,
    notifyChat: async (n, chatId, text) => {
      const portal = portals.find(n, chatId)
      if (portal) await rooms.notice(portal.roomId, text).catch(err => log.warn({ err: (err as Error).message }, 'Could not send a notice'))
    },
    isBridgedChat: (n, chatId) => portals.find(n, chatId) !== undefined,
    findCopy: async (n, chatId, remoteId) => {
      const found = await MessageMap.find(db, n, chatId, remoteId)
      return found ? { extra: found.copy.extra ?? {} } : undefined
    },
  })

  let metricsServer: Server | undefined
  if (config.metrics.enabled) {
    metricsServer = await startMetricsServer(metrics, {
      health: async () => {
        await db.query('SELECT 1')
        const all = await logins.list()
        return { ok: true, details: { logins: all.map(l => ({ id: l.id, network: l.network, state: l.state })), inbox: await inbox.pendingCount() } }
      },
    }, config.metrics.hostname, config.metrics.port)
  }

  // The homeserver may be down or misconfigured: keep running (transactions still arrive) and retry.
  let stopped = false
  let hsTimer: NodeJS.Timeout | undefined
  const retryMs = deps.timings?.homeserverRetryMs ?? 15_000
  const check = async (attempt: number): Promise<void> => {
    const result = await checkHomeserver(api, config, log)
    let ok = result === 'ok' || result === 'hs_cannot_reach_bridge'
    if (ok && encryption) {
      ok = await encryption.setUp().then(() => true, (err: unknown) => {
        log.error({ err: (err as Error).message }, `Encryption could not be set up: ${(err as Error).message}. Encrypted rooms wait; see docs/operators.md, "Encrypted rooms".`)
        return false
      })
    }
    if (!ok && !stopped) {
      const delay = Math.min(retryMs * 2 ** attempt, 300_000)
      log.warn(`Retrying the homeserver in ${Math.round(delay / 1000)} s.`)
      hsTimer = setTimeout(() => void check(attempt + 1), delay)
    }
  }
  await check(0)

  for (const [id, n] of networks) {
    await n.start(context(id)).catch(err => log.error({ network: id, err: (err as Error).message }, `The ${id} connection did not start; relaying to it waits`))
  }
  await outbox.start()
  events.kick()
  const maintenance = setInterval(() => {
    void Promise.all([inbox.prune(), outbox.expireHeld(), outbox.prune()])
      .catch(err => log.warn({ err: (err as Error).message }, 'Maintenance failed'))
  }, deps.timings?.maintenanceMs ?? 60_000)

  return {
    port,
    metricsPort: metricsServer ? (metricsServer.address() as { port: number }).port : undefined,
    db, outbox, router, portals, logins,
    async stop() {
      stopped = true
      clearTimeout(hsTimer)
      clearInterval(maintenance)
      const unfinished = await stopWithin(STOP_WORK_MS, [
        { what: 'closing the endpoint the homeserver pushes to', run: () => appservice.close() },
        { what: 'handling the Matrix events already received', run: () => events.stop() },
        { what: 'showing typing and read receipts', run: () => ephemeral.stop() },
        {
          what: () => `sending the messages in flight to ${outbox.busyNetworks().map(n => NETWORK_LABEL[n as NetworkId] ?? n).join(', ') || 'no one'}`,
          run: () => outbox.stop(),
        },
        ...[...networks].map(([id, n]) => ({ what: `disconnecting from ${NETWORK_LABEL[id]}`, run: () => n.stop() })),
        // After the outbox: deliveries in flight still encrypt.
        ...(encryption ? [{ what: 'closing the encryption device', run: async () => { decryption?.stop(); await encryption.close() } }] : []),
        { what: 'closing the metrics listener', run: () => new Promise<void>(resolve => (metricsServer ? metricsServer.close(() => resolve()) : resolve())) },
      ])
      // Even when something above hangs, the database gets its own time to close: PGlite writes what it
      // holds in memory on close.
      unfinished.push(...await stopWithin(STOP_DATABASE_MS, [{ what: 'closing the database', run: async () => own?.close() }]))
      return unfinished
    },
  }
}

/** `relay-bridge start`: run until SIGINT/SIGTERM, then stop within the deadline. Resolves with the exit code
 * the process should end with (1 when something did not finish); the caller exits with it, because a
 * connection to a dependency that hangs would keep the process alive. A second signal ends it at once. */
export async function runBridge(config: Config, deps: BridgeDeps = {}, onReady?: (bridge: Bridge) => void): Promise<number> {
  const log = deps.log ?? createLogger(config.logging.level)
  const bridge = await startBridge(config, { ...deps, log })
  onReady?.(bridge)
  const signal = await new Promise<NodeJS.Signals>(resolve => {
    const first = (received: NodeJS.Signals) => {
      // From now on either signal has its default effect: a second one ends the process at once.
      process.off('SIGINT', first)
      process.off('SIGTERM', first)
      resolve(received)
    }
    process.on('SIGINT', first)
    process.on('SIGTERM', first)
  })
  log.info({ signal }, 'Stopping')
  const unfinished = await bridge.stop()
  if (unfinished.length === 0) {
    log.info('Stopped')
    return 0
  }
  log.error({ unfinished }, `Stopped without finishing: ${unfinished.join('; ')}. Exiting anyway; deliveries that were in flight are sent again at the next start.`)
  return 1
}
