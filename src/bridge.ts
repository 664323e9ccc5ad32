// Puts the bridge together: database, homeserver client and endpoint, the core, and the networks.
import type { Server } from 'node:http'
import type { Logger } from 'pino'
import { permissionsProblem, type Config } from './config.ts'
import { Commands } from './core/commands/index.ts'
import { Deliverer, deliveryIdOf } from './core/deliver.ts'
import { Ephemeral } from './core/ephemeral.ts'
import { OwnEphemeral } from './core/own-ephemeral.ts'
import { cleanChatText } from './core/chat-text.ts'
import { GroupState } from './core/group-state.ts'
import { Members } from './core/members.ts'
import type { LinkingEnv } from './core/linking.ts'
import { SqlLoginStore } from './core/logins.ts'
import { LoginMedia } from './core/login-media.ts'
import { FileMediaStore, type MediaStore } from './core/media.ts'
import { MessageMap } from './core/messages.ts'
import { NETWORK_LABEL, type InboundEvent, type NetworkId, type RemoteNetworkId } from './core/model.ts'
import { clockTime, type ConnectionState, type NetworkContext, type Participant, type RemoteNetwork, type ServiceStatus } from './core/network.ts'
import { Outbox } from './core/outbox.ts'
import { OwnLogins } from './core/own-logins.ts'
import { RoomUpgrades } from './matrix/upgrade.ts'
import { groupNameOf, PortalStore, type Portal } from './core/portals.ts'
import { SenderNames } from './core/render.ts'
import { Expiry } from './core/expiry.ts'
import { Retention } from './core/retention.ts'
import { Router } from './core/router.ts'
import { migrate } from './db/migrate.ts'
import { doublePuppetId } from './registration.ts'
import { openDatabase } from './db/open.ts'
import type { Db } from './db/types.ts'
import type { SignalNetworkOptions } from './signal/network.ts'
import type { WhatsAppNetworkOptions } from './whatsapp/network.ts'
import { timed } from './db/timed.ts'
import { checkHomeserver, DomainMismatchError, explain, type CheckResult } from './homeserver-check.ts'
import { APPSERVICE_LISTENER, listenProblem, METRICS_LISTENER, type Listener } from './listen.ts'
import { AppservicePingError } from './matrix/client-errors.ts'
import { greetAdmins } from './core/commands/greeting.ts'
import { createLogger } from './log.ts'
import { stopWithin, type StopStep } from './stop.ts'
import { AppserviceServer } from './matrix/appservice.ts'
import { MatrixClientApi, type HomeserverApi } from './matrix/client.ts'
import { Decryption } from './matrix/decryption.ts'
import { GhostEphemeral, matrixEphemeral } from './matrix/ephemeral.ts'
import { isEcho, MatrixEvents } from './matrix/events.ts'
import { Ghosts } from './matrix/ghosts.ts'
import { Inbox } from './matrix/inbox.ts'
import { MatrixParticipant } from './matrix/participant.ts'
import { RoomState } from './matrix/room-state.ts'
import { BotRooms } from './matrix/rooms.ts'
import { Metrics, startMetricsServer } from './metrics.ts'
import { compactHeap } from './memory.ts'
import type { ConsoleServer } from './console/server.ts'

export interface BridgeDeps {
  log?: Logger
  db?: Db
  api?: HomeserverApi
  /** The homeserver API with the double-puppeting token; by default built from the config when it has one. */
  puppetApi?: HomeserverApi
  /** The Signal and WhatsApp adapters; by default built from the config. */
  networks?: RemoteNetwork[]
  /** Shorter delays for tests. */
  timings?: { backoff?: { initialMs: number; maxMs: number; maxAttempts: number }; inboxRetryMs?: number; homeserverRetryMs?: number; maintenanceMs?: number; retentionMs?: number; expiryPollMs?: number; loneMarkLingerMs?: number; markCarryMs?: number }
  /** The clock disappearing messages are due by (a test moves it a week on). */
  now?: () => number
  /** The console's clock (sign-in links and sessions expire by it) and how often open pages refresh. */
  console?: { now?: () => number; refreshMs?: number }
  /** Called when the running bridge finds it cannot go on (already logged): runBridge stops and exits non-zero. */
  onFatal?: (err: Error) => void
}

export interface Bridge {
  readonly port: number
  readonly metricsPort: number | undefined
  /** The console's listener, when console.enabled. */
  readonly consolePort: number | undefined
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
      ...(config.signal.shared_dir ? { sharedDir: { here: config.signal.shared_dir, inDaemon: config.signal.shared_dir_in_daemon || config.signal.shared_dir } } : {}),
      ...overrides.signal,
    }),
    new WhatsAppNetwork({ paceMs: [min, max], sentRetentionMs: config.retention.message_map_days * 86_400_000, ...overrides.whatsapp }),
  ]
}

/** The homeserver line of the bridge-wide status, from the last start-up check. */
function homeserverStatus(config: Config, hs: { result: CheckResult | 'checking'; at: number }): ServiceStatus {
  const where = `${config.homeserver.address} (${config.homeserver.domain})`
  const text = {
    checking: `${where}: the first check is still running.`,
    ok: `${where} answers and reaches the bridge (checked at ${clockTime(hs.at)}).`,
    unreachable: `${where} did not answer the check at ${clockTime(hs.at)}; the bridge retries. Its log says why.`,
    token_rejected: `${where} rejected the bridge's as_token at ${clockTime(hs.at)}: give it the registration from \`generate-registration\` and restart it.`,
    hs_cannot_reach_bridge: `${where} answers, but could not deliver to the bridge at ${config.appservice.address} (checked at ${clockTime(hs.at)}): check appservice.address.`,
  }[hs.result]
  return { label: 'Homeserver', ok: hs.result === 'ok' || hs.result === 'checking', text }
}

/** A login QR code as a PNG. The encoder is loaded on first use: only logins need it, not a running bridge. */
async function qrPng(data: string): Promise<Buffer> {
  const { default: QRCode } = await import('qrcode')
  return QRCode.toBuffer(data, { type: 'png', margin: 2, scale: 8 })
}

/** The operator console and provisioning API on their own listener (console.enabled). */
async function startConsole(config: Config, d: LinkingEnv & {
  db: Db; api: HomeserverApi; logins: SqlLoginStore; loginMedia: LoginMedia; portals: PortalStore; networks: Map<RemoteNetworkId, RemoteNetwork>
  outbox: Outbox; rooms: BotRooms; botMxid: string; log: Logger; now?: () => number; refreshMs?: number
}): Promise<ConsoleServer> {
  const { ConsoleServer } = await import('./console/server.ts')
  const { checkHealth } = await import('./console/health.ts')
  const { default: QRCode } = await import('qrcode')
  const m = config.metrics
  const server = new ConsoleServer({
    ...d, config: config.console, permissions: config.bridge.permissions, domain: config.homeserver.domain, homeserverUrl: config.homeserver.address,
    commandPrefix: config.bridge.command_prefix,
    qrImage: async data => `data:image/svg+xml;base64,${Buffer.from(await QRCode.toString(data, { type: 'svg', margin: 2 })).toString('base64')}`,
    health: () => checkHealth({
      homeserver: () => d.api.whoami(), database: () => d.db.query('SELECT 1'), networks: d.networks,
      metricsUrl: m.enabled ? `http://${m.hostname.includes(':') ? `[${m.hostname}]` : m.hostname}:${m.port}/metrics` : null,
    }),
  })
  const port = await server.listen()
  d.log.info({ port, url: server.publicUrl }, 'The operator console listens')
  return server
}

/** A listen that fails says which setting to change. */
async function listening<T>(listener: Listener, hostname: string, port: number, listen: () => Promise<T>): Promise<T> {
  try {
    return await listen()
  } catch (err) {
    const sentence = listenProblem(err, listener, hostname, port)
    throw sentence ? new Error(sentence, { cause: err }) : err
  }
}

/** Starts the bridge. When a part fails to start, what had started is stopped again (the database closed, the
 * listeners closed) before the error is thrown: a bridge that cannot run must not half run. */
export async function startBridge(config: Config, deps: BridgeDeps = {}): Promise<Bridge> {
  const started: StopStep[] = []
  try {
    return await assemble(config, deps, started)
  } catch (err) {
    await stopWithin(STOP_WORK_MS + STOP_DATABASE_MS, started.reverse())
    throw err
  }
}

async function assemble(config: Config, deps: BridgeDeps, started: StopStep[]): Promise<Bridge> {
  const log = deps.log ?? createLogger(config.logging.level)
  // Node's default metrics only when something can read them: their event-loop delay histogram samples with a
  // timer that wakes the process 20 times a second for as long as it runs (docs/performance.md).
  const metrics = new Metrics(config.metrics.enabled)
  const own = deps.db ? undefined : await openDatabase(config.database.uri, config.data_dir, sentence => log.info(sentence))
  if (own) started.push({ what: 'closing the database', run: () => own.close() })
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
    // Loaded only here: the Olm machine's WebAssembly glue and the crypto store cost several MB of every
    // process's resident set, and most bridges have no encrypted portal.
    ? await (await import('./matrix/encryption.ts')).openEncryption({
      api: plainApi, db, botMxid, domain, storeKey: config.encryption.store_key, log,
      ...(config.encryption.ghost_devices
        ? { ghostDevices: { maxLoaded: config.encryption.ghost_devices_in_memory, idleMs: config.encryption.ghost_idle_seconds * 1000 } }
        : {}),
    })
    : undefined
  // Every room event the bridge sends goes through this one: encrypted where the room is.
  const api = encryption?.api ?? plainApi
  const ghostDevices = encryption?.ghosts
  if (ghostDevices) metrics.ghostDeviceStats = () => ({ ...ghostDevices.stats() })
  const files = new FileMediaStore(config.data_dir)
  const media: MediaStore = files
  const portals = new PortalStore(db)
  await portals.load()
  const logins = new SqlLoginStore(db)
  const loginMedia = new LoginMedia(db, media)
  const inbox = new Inbox(db)
  const rooms = new BotRooms({
    api, db, botMxid, log: log.child({ part: 'rooms' }),
    ...(encryption ? { encryption: { rooms: encryption.rooms, byDefault: config.encryption.default, health: () => encryption.health() } } : {}),
  })
  const ghosts = new Ghosts({ db, api, media, domain, botMxid, log })
  const networks = new Map<RemoteNetworkId, RemoteNetwork>()
  for (const n of deps.networks ?? await buildNetworks(config)) networks.set(n.network, n)
  // Double puppeting: the second registration's token acts as the homeserver's own users.
  const puppetSource = config.appservice.double_puppet.as_token ? doublePuppetId(config) : undefined
  const plainPuppetApi = deps.puppetApi ?? (puppetSource ? new MatrixClientApi({
    homeserverUrl: config.homeserver.address, asToken: config.appservice.double_puppet.as_token, domain,
    botLocalpart: config.appservice.bot.username, log: log.child({ part: 'matrix-puppet' }),
  }) : undefined)
  // What the bridge posts as a person into an encrypted room is encrypted too, by the bot's device.
  const puppetApi = plainPuppetApi && encryption ? encryption.encrypting(plainPuppetApi) : plainPuppetApi
  const roomState = new RoomState({ api, media, botMxid, log: log.child({ part: 'room-state' }) })
  const matrixParticipant = new MatrixParticipant({ api, ghosts, media, domain, botMxid, log, roomState, ...(puppetApi && puppetSource ? { puppet: { api: puppetApi, source: puppetSource } } : {}) })
  const participants = new Map<NetworkId, Participant>([['matrix', matrixParticipant]])
  for (const [id, n] of networks) participants.set(id, n)

  const ownLogins = new OwnLogins({ logins, matrixName: (roomId, mxid) => rooms.memberName(roomId, mxid) })
  const groupState = new GroupState({ db, portals, rooms, log: log.child({ part: 'group-state' }), kick: (n, chatId) => outbox.kick(n, chatId) })
  const members = new Members({
    db, portals, logins, log: log.child({ part: 'members' }), adminLevel: config.bridge.admin_power_level, kick: (n, chatId) => outbox.kick(n, chatId),
  })
  const deliverer = new Deliverer({
    db, portals, participants, names: new SenderNames(db), rooms, own: ownLogins, puppets: mxid => matrixParticipant.canPuppet(mxid), groupState, members,
    template: config.bridge.relay.message_format, reactions: config.bridge.relay.reactions,
  })
  const outbox = new Outbox({
    db, log: log.child({ part: 'outbox' }), dispatch: deliverer.dispatch, onFailed: deliverer.onFailed,
    onSent: row => {
      metrics.deliveries.inc({ network: row.network, result: 'sent' })
      participants.get(row.network)?.recorded?.(deliveryIdOf(row))
    },
    holdRetentionMs: config.bridge.hold_retention_hours * 3_600_000,
    ...(deps.timings?.backoff ? { backoff: deps.timings.backoff } : {}),
    ...(deps.timings?.loneMarkLingerMs !== undefined ? { loneMarkLingerMs: deps.timings.loneMarkLingerMs } : {}),
    ...(deps.timings?.markCarryMs !== undefined ? { markCarryMs: deps.timings.markCarryMs } : {}),
  })

  /** A remote group with no portal spoke: make a room for it and invite the relay's owner. */
  const createPortal = async (event: InboundEvent): Promise<Portal | undefined> => {
    if (!config.bridge.auto_create_portals || event.chat.network === 'matrix' || !event.loginId) return undefined
    const network = event.chat.network
    const login = await logins.get(event.loginId)
    const adapter = networks.get(network)
    // Only a relay account makes portals: a personal account's other groups are none of the bridge's business.
    if (!login || login.kind !== 'relay' || !adapter) return undefined
    const group = (await adapter.listGroups(login).catch(() => [])).find(g => g.id === event.chat.id)
    const name = group?.name || `${NETWORK_LABEL[network]} group`
    const roomId = await rooms.createPortalRoom({ name, invite: [login.ownerMxid] })
    const portal = await portals.link(await portals.create(roomId, { name, creator: login.ownerMxid }), network, event.chat.id, login.id, group?.name)
    await groupState.seed(portal, network, { name })
    await groupState.seed(portal, 'matrix', { name })
    await rooms.setBridgeInfo(roomId, network, { network, id: event.chat.id, name }, login.ownerMxid)
    await members.bringIn(portal, adapter, login, event.chat.id)
    log.info({ network, room: roomId }, 'Created a portal room for a group that spoke')
    return portal
  }
  const expiry = new Expiry({
    db, portals, log: log.child({ part: 'expiry' }), kick: (n, chatId) => outbox.kick(n, chatId),
    ...(deps.now ? { now: deps.now } : {}), ...(deps.timings?.expiryPollMs ? { pollMs: deps.timings.expiryPollMs } : {}),
  })
  const router = new Router({
    db, portals, outbox, log, createPortal, identify: (sender, roomId) => ownLogins.identify(sender, roomId), onExpiring: dueAt => expiry.wake(dueAt),
    ...(deps.now ? { now: deps.now } : {}),
    onChatUpdate: async (portal, event) => {
      // The group's own name, for status texts (cleaned as group state cleans it: a NUL cannot be stored); what the
      // room and the other group show is group state's to keep.
      const network = event.chat.network
      const name = event.name === undefined ? undefined : cleanChatText('name', event.name)
      if (name && network !== 'matrix' && groupNameOf(portal, network) !== name) portal = await portals.setGroupName(portal, network, name)
      await groupState.receive(portal, event)
    },
    onMembers: (portal, event) => members.receive(portal, event),
  })
  // The homeserver as the last start-up check saw it, for the bridge-wide status.
  let homeserver: { result: CheckResult | 'checking'; at: number } = { result: 'checking', at: Date.now() }
  /** Asked for status, the homeserver is pinged afresh both ways: the start-up check may be long past. */
  const pingHomeserver = async (): Promise<void> => {
    try {
      await api.pingAppservice(config.appservice.id, `relay-bridge-status-${Date.now()}`)
      homeserver = { result: 'ok', at: Date.now() }
    } catch (err) {
      homeserver = { result: err instanceof AppservicePingError ? 'hs_cannot_reach_bridge' : explain(err, config).result, at: Date.now() }
    }
  }
  const services = async (): Promise<ServiceStatus[]> => [
    (await pingHomeserver(), homeserverStatus(config, homeserver)),
    ...await Promise.all([...networks.values()].flatMap(n => (n.service ? [n.service()] : []))),
  ]
  const web = config.console.enabled ? await startConsole(config, { db, api, logins, loginMedia, members, portals, networks, outbox, rooms, botMxid, log: log.child({ part: 'console' }), ...deps.console }) : undefined
  const commands = new Commands({
    prefix: config.bridge.command_prefix, permissions: config.bridge.permissions, portals, logins, loginMedia, networks, rooms, outbox, groupState, members,
    log: log.child({ part: 'commands' }), qrPng, services, ...(web ? { console: web } : {}),
  })
  const upgrades = new RoomUpgrades({
    api, portals, rooms, botMxid, log: log.child({ part: 'room-upgrades' }),
    onMoved: portal => outbox.kick('matrix', portal.roomId),
  })
  // Declared before the events that it wakes; set right after them.
  let kickEvents = (): void => {}
  const decryption = encryption && new Decryption({
    db, inbox, crypto: encryption.machine, rooms, portals, waitMs: config.encryption.key_wait_seconds * 1000,
    ...(encryption.ghosts ? { ghosts: encryption.ghosts } : {}), isOwnUser: encryption.isOwnUser,
    counter: metrics.decryptions, log: log.child({ part: 'decryption' }), onDue: () => kickEvents(),
  })
  const events = new MatrixEvents({
    db, inbox, api, router, commands, rooms, upgrades, ghosts, portals, media, domain, botMxid,
    permissions: config.bridge.permissions, log: log.child({ part: 'matrix-events' }), ...(puppetSource ? { puppetSource } : {}),
    onPowerChanged: roomId => groupState.permissionsChanged('matrix', roomId),
    ...(deps.timings?.inboxRetryMs ? { retryDelayMs: deps.timings.inboxRetryMs } : {}),
    ...(encryption && decryption ? { encryption: { decryption, rooms: encryption.rooms } } : {}),
  })
  kickEvents = () => events.kick()
  const ephemeral = new Ephemeral({
    db, portals, sink: new GhostEphemeral({ api, ghosts, domain, log: log.child({ part: 'matrix-ephemeral' }) }),
    typing: config.bridge.typing_to_matrix, receipts: config.bridge.receipts_to_matrix, log: log.child({ part: 'ephemeral' }),
    recorded: (network, chatId) => outbox.recorded(network, chatId),
  })
  // Matrix people's typing and receipts: to a group only through their own login there.
  const ownEphemeral = new OwnEphemeral({ db, portals, own: ownLogins, networks, log: log.child({ part: 'own-ephemeral' }) })
  const appservice = new AppserviceServer({
    hsToken: config.appservice.hs_token, maxBodyBytes: config.appservice.max_body_bytes, inbox, log, metrics,
    onStored: count => events.stored(count),
    recordAtOnce: kept => events.recordDirect(kept),
    onEphemeral: matrixEphemeral(metrics.registry, event => ownEphemeral.receive(event)),
    ignore: e => isEcho(e, botMxid, domain, puppetSource),
    onUserQuery: mxid => ghosts.exists(mxid),
    storeCrypto: encryption !== undefined,
  })
  started.push({ what: 'closing the endpoint the homeserver pushes to', run: () => appservice.close() })
  const { hostname: asHost, port: asPort } = config.appservice
  const port = await listening(APPSERVICE_LISTENER, asHost, asPort, () => appservice.listen(asPort, asHost))
  log.info({ port }, 'Listening for the homeserver')
  const permissions = permissionsProblem(config)
  if (permissions) log.warn(permissions)

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
      await loginMedia.record(event)
    },
    receiveMany: async events => {
      await router.receiveMany(events)
      for (const event of events) await loginMedia.record(event)
    },
    // A person's own account typing or reading is that person, not a ghost of them: not shown.
    ephemeral: event => void logins.personalByPerson(event.network, event.sender.id)
      .then(own => { if (!own) ephemeral.receive(event) }, () => ephemeral.receive(event)),
    wantsEphemeral: ephemeral.wants,
    reportState: async (loginId: string, state: ConnectionState, message?: string) => {
      const previous = await logins.setState(loginId, state, message ?? null)
      metrics.loginState.set({ network, login: loginId }, state === 'connected' ? 1 : 0)
      web?.poke()
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
    permissionsChanged: (n, chatId) => {
      groupState.permissionsChanged(n, chatId).catch(err => log.warn({ err: (err as Error).message }, 'Could not retry the group changes that waited for a permission'))
    },
    findCopy: async (n, chatId, remoteId) => {
      const found = await MessageMap.find(db, n, chatId, remoteId)
      return found ? { extra: found.copy.extra ?? {} } : undefined
    },
    forgetKeptContent: async (n, which) => {
      await MessageMap.forgetKeptContent(db, n, which)
    },
  })

  let metricsServer: Server | undefined
  if (config.metrics.enabled) {
    const { hostname, port: metricsPort } = config.metrics
    metricsServer = await listening(METRICS_LISTENER, hostname, metricsPort, () => startMetricsServer(metrics, {
      health: async () => {
        await db.query('SELECT 1')
        const all = await logins.list()
        return { ok: true, details: { logins: all.map(l => ({ id: l.id, network: l.network, kind: l.kind, state: l.state })), inbox: await inbox.pendingCount() } }
      },
    }, hostname, metricsPort))
    const server = metricsServer
    started.push({ what: 'closing the metrics listener', run: () => new Promise<void>(resolve => server.close(() => resolve())) })
  }

  // The homeserver may be down or misconfigured: keep running (transactions still arrive) and retry.
  let stopped = false
  let hsTimer: NodeJS.Timeout | undefined
  const retryMs = deps.timings?.homeserverRetryMs ?? 15_000
  let greeted = false
  started.push({ what: 'retrying the homeserver', run: async () => { stopped = true; clearTimeout(hsTimer) } })
  const check = async (attempt: number): Promise<void> => {
    const result = await checkHomeserver(api, config, log)
    homeserver = { result, at: Date.now() }
    let ok = result === 'ok' || result === 'hs_cannot_reach_bridge'
    if (ok && encryption) {
      ok = await encryption.setUp().then(() => true, (err: unknown) => {
        log.error({ err: (err as Error).message }, `Encryption could not be set up: ${(err as Error).message}. Encrypted rooms wait; see docs/operators.md, "Encrypted rooms".`)
        return false
      })
    }
    if (ok && !greeted && !stopped) {
      // The bot exists on the homeserver now (and its device, where encryption is on): it can open a direct chat.
      greeted = true
      // Awaited: a first start is ready once the admin has been greeted (later starts only look it up).
      await greetAdmins({
        db, rooms, logins, permissions: config.bridge.permissions, networks: [...networks.keys()], domain,
        prefix: config.bridge.command_prefix, log: log.child({ part: 'greeting' }),
      })
    }
    if (!ok && !stopped) {
      const delay = Math.min(retryMs * 2 ** attempt, 300_000)
      log.warn(`Retrying the homeserver in ${Math.round(delay / 1000)} s.`)
      hsTimer = setTimeout(() => void check(attempt + 1).catch(err => {
        // A homeserver that came up only now and names itself otherwise: nothing a retry mends.
        if (!(err instanceof DomainMismatchError)) throw err
        log.fatal(err.message)
        deps.onFatal?.(err)
      }), delay)
    }
  }
  // At start, a homeserver of another name stops the start (the caller prints the sentence once).
  await check(0)

  for (const [id, n] of networks) {
    started.push({ what: `disconnecting from ${NETWORK_LABEL[id]}`, run: () => n.stop() })
    await n.start(context(id)).catch(err => log.error({ network: id, err: (err as Error).message }, `The ${id} connection did not start; relaying to it waits`))
  }
  await outbox.start()
  expiry.start()
  events.kick()
  const maintenance = setInterval(() => {
    void Promise.all([inbox.prune(config.retention.processed_events_hours * 3_600_000), outbox.expireHeld(), outbox.prune()])
      .catch(err => log.warn({ err: (err as Error).message }, 'Maintenance failed'))
  }, deps.timings?.maintenanceMs ?? 60_000)
  const retention = new Retention({
    db, media: files, log: log.child({ part: 'retention' }),
    messageMapMs: config.retention.message_map_days * 86_400_000, mediaMs: config.retention.media_days * 86_400_000,
  })
  const enforceRetention = () => void retention.enforce()
    .catch(err => log.warn({ err: (err as Error).message }, 'Could not remove what is past its retention; trying again at the next run'))
  // Hourly: a pass reads the media directory and deletes in batches, which is more than the minute's upkeep.
  const retentionTimer = setInterval(enforceRetention, deps.timings?.retentionMs ?? 3_600_000)
  enforceRetention()

  return {
    port,
    metricsPort: metricsServer ? (metricsServer.address() as { port: number }).port : undefined,
    consolePort: web?.port,
    db, outbox, router, portals, logins,
    async stop() {
      stopped = true
      clearTimeout(hsTimer)
      clearInterval(maintenance)
      clearInterval(retentionTimer)
      const unfinished = await stopWithin(STOP_WORK_MS, [
        { what: 'closing the endpoint the homeserver pushes to', run: () => appservice.close() },
        ...(web ? [{ what: 'closing the console', run: () => web.close() }] : []),
        { what: 'handling the Matrix events already received', run: () => events.stop() },
        { what: 'showing typing and read receipts', run: () => ephemeral.stop() },
        { what: 'redacting disappearing messages', run: () => expiry.stop() },
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

/** `npx relay-bridge start`: run until SIGINT/SIGTERM, then stop within the deadline. Resolves with the exit code
 * the process should end with (1 when something did not finish); the caller exits with it, because a
 * connection to a dependency that hangs would keep the process alive. A second signal ends it at once. */
export async function runBridge(config: Config, deps: BridgeDeps = {}, onReady?: (bridge: Bridge) => void): Promise<number> {
  const log = deps.log ?? createLogger(config.logging.level)
  let fatal: (err: Error) => void = () => {}
  const failed = new Promise<Error>(resolve => (fatal = resolve))
  const bridge = await startBridge(config, { ...deps, log, onFatal: fatal })
  // The one line that says the start is over (and how long it took: docs/performance.md, "First start").
  log.info({ seconds: Number(process.uptime().toFixed(2)) }, `Ready, ${process.uptime().toFixed(1)} s after the process started`)
  // What the start left behind is garbage from now on (idle RSS at 1,000 portals ~126 → ~114 MB).
  compactHeap()
  onReady?.(bridge)
  let first: (received: NodeJS.Signals) => void = () => {}
  const signalled = new Promise<NodeJS.Signals>(resolve => {
    first = (received: NodeJS.Signals) => {
      // From now on either signal has its default effect: a second one ends the process at once.
      process.off('SIGINT', first)
      process.off('SIGTERM', first)
      resolve(received)
    }
    process.on('SIGINT', first)
    process.on('SIGTERM', first)
  })
  const reason = await Promise.race([signalled, failed])
  if (reason instanceof Error) {
    process.off('SIGINT', first)
    process.off('SIGTERM', first)
  }
  log.info(reason instanceof Error ? {} : { signal: reason }, 'Stopping')
  const unfinished = await bridge.stop()
  if (reason instanceof Error) return 1
  if (unfinished.length === 0) {
    log.info('Stopped')
    return 0
  }
  log.error({ unfinished }, `Stopped without finishing: ${unfinished.join('; ')}. Exiting anyway; deliveries that were in flight are sent again at the next start.`)
  return 1
}
