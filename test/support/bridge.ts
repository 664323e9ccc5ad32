// Runs the real bridge (in this process) against the fake homeserver and two in-memory networks, the way
// scenario tests for the core drive it: people talk in Matrix through the homeserver, and in the groups
// through the networks.
import { pino } from 'pino'
import { startBridge, type Bridge, type BridgeDeps } from '../../src/bridge.ts'
import type { Config } from '../../src/config.ts'
import type { Db } from '../../src/db/types.ts'
import type { RemoteNetwork } from '../../src/core/network.ts'
import { buildRegistration } from '../../src/registration.ts'
import { FakeHomeserver, type FakeEvent, type FakeHomeserverOptions } from '../fakes/homeserver.ts'
import { MemoryNetwork, type MemoryGroup } from '../fakes/memory-network.ts'
import { freePort } from './ports.ts'
import { tempDir, testConfig } from './config.ts'
import { freshDb, type DbKind } from './db.ts'

export const ALICE = '@alice:example.org'
export const ADMIN = '@admin:example.org'
export const STRANGER = '@mallory:elsewhere.example'

export interface Scenario {
  hs: FakeHomeserver
  bridge: Bridge
  signal: MemoryNetwork
  whatsapp: MemoryNetwork
  db: Db
  config: Config
  /** Restarts the bridge on the same database and networks' state (a new process would see the same);
   * `whileStopped` runs between the stop and the start. */
  restart(whileStopped?: () => Promise<void>): Promise<void>
  stop(): Promise<void>
  /** Sends `!relay …` as `user` in `room` and waits for the bot's next notice there. */
  command(user: string, room: string, text: string): Promise<string>
  botNotices(room: string): string[]
}

export interface ScenarioOptions {
  configure?: (raw: Record<string, any>) => void
  /** Builds the bridge's networks at every (re)start from its config, as a new process would; the in-memory pair by default. */
  networks?: (config: Config) => RemoteNetwork[] | Promise<RemoteNetwork[]>
  /** Options of the fake homeserver beyond the quick retries every scenario uses. */
  homeserver?: FakeHomeserverOptions
  /** The outbox's retry schedule (default: four quick attempts). */
  backoff?: { initialMs: number; maxMs: number; maxAttempts: number }
  /** How often retention runs (default: hourly, as in production). */
  retentionMs?: number
  /** The console's clock and refresh interval (when the configuration enables it). */
  console?: BridgeDeps['console']
  /** The clock disappearing messages are due by; with it, the bridge looks for due ones every 50 ms. */
  now?: () => number
  /** Wraps the database the bridge is given (a test counting its statements); the scenario's own `db` stays bare. */
  wrapDb?: (db: Db) => Db
  /** How long a lone 'sent' mark waits for those of other sends in flight (default: the outbox's own bound). */
  loneMarkLingerMs?: number
  /** How long a lone 'sent' mark waits for a message's record to carry it (default: the outbox's own bound). */
  markCarryMs?: number
}

export async function scenario(kind: DbKind, opts: ScenarioOptions = {}): Promise<Scenario> {
  // Migrated already (from the run's template, which is cheaper than migrating an empty PGlite); the bridge's
  // own migration at start then finds nothing to do, as on every restart.
  const db = await freshDb(kind)
  const dataDir = await tempDir()
  const hs = await FakeHomeserver.start({ retryBackoff: { initialMs: 5, maxMs: 50 }, ...opts.homeserver })
  // The bridge's port is known before it starts, as in production: a first start sends the admin's greeting, and the
  // homeserver pushes its echo to the bridge (with echoBeforeAnswer it answers the send only once that was taken).
  const port = await freePort()
  const config = testConfig({ homeserver: hs.url, dataDir, extra: raw => { raw.appservice.port = port; raw.appservice.address = `http://127.0.0.1:${port}`; opts.configure?.(raw) } })
  // The fake homeserver loads the registration the bridge would generate.
  Object.assign(hs.registration, buildRegistration(config))
  hs.setAppserviceUrl(config.appservice.address)
  const signal = new MemoryNetwork('signal')
  const whatsapp = new MemoryNetwork('whatsapp')
  const log = pino({ level: process.env.TEST_LOG ?? 'silent' })
  const timings = { backoff: opts.backoff ?? { initialMs: 20, maxMs: 200, maxAttempts: 4 }, inboxRetryMs: 50, homeserverRetryMs: 50, maintenanceMs: 3_600_000, ...(opts.retentionMs ? { retentionMs: opts.retentionMs } : {}), ...(opts.now ? { expiryPollMs: 50 } : {}), ...(opts.loneMarkLingerMs !== undefined ? { loneMarkLingerMs: opts.loneMarkLingerMs } : {}), ...(opts.markCarryMs !== undefined ? { markCarryMs: opts.markCarryMs } : {}) }
  const boot = async () => {
    const bridge = await startBridge(config, { log, db: opts.wrapDb ? opts.wrapDb(db) : db, networks: (await opts.networks?.(config)) ?? [signal, whatsapp], timings, ...(opts.console ? { console: opts.console } : {}), ...(opts.now ? { now: opts.now } : {}) })
    return bridge
  }
  const s: Scenario = {
    hs, signal, whatsapp, db, config,
    bridge: await boot(),
    async restart(whileStopped) {
      await s.bridge.stop()
      await whileStopped?.()
      s.bridge = await boot()
    },
    async stop() {
      await s.bridge.stop()
      await hs.stop()
      await db.close()
    },
    async command(user, room, text) {
      const before = s.botNotices(room).length
      await hs.sendMessage(user, room, text)
      await hs.waitFor(() => s.botNotices(room).length > before, { what: `a reply to "${text}"` })
      return s.botNotices(room)[before]!
    },
    botNotices(room) {
      return hs.timeline(room)
        .filter((e: FakeEvent) => e.sender === hs.botUserId && e.type === 'm.room.message' && (e.content as { msgtype?: string }).msgtype === 'm.notice' && !(e.content as Record<string, unknown>)['m.new_content'])
        .map((e: FakeEvent) => String((e.content as { body?: string }).body))
    },
  }
  return s
}

/** A room with the bot in it, created by `owner` (power 100). */
export async function roomWithBot(s: Scenario, owner = ALICE, members: string[] = []): Promise<string> {
  for (const u of [owner, ...members]) if (!s.hs.profile(u)) s.hs.createUser(u, { displayname: u.slice(1, u.indexOf(':')).replace(/^./, c => c.toUpperCase()) })
  const room = await s.hs.createRoom(owner, { invite: [s.hs.botUserId, ...members], name: 'Family' })
  for (const m of members) await s.hs.join(m, room)
  await s.hs.waitFor(() => s.hs.membership(room, s.hs.botUserId) === 'join', { what: 'the bot to join' })
  return room
}

/** A relay login on the network (or, with kind 'personal', the owner's own), linked through `login` in the owner's
 * direct chat. */
export async function linkedLogin(s: Scenario, network: MemoryNetwork, owner = ALICE, address = `${network.network}-relay`, kind: 'relay' | 'personal' = 'relay'): Promise<string> {
  if (!s.hs.profile(owner)) s.hs.createUser(owner, { displayname: owner.slice(1, owner.indexOf(':')).replace(/^./, c => c.toUpperCase()) })
  const dm = await s.hs.createRoom(owner, { invite: [s.hs.botUserId], isDirect: true })
  await s.hs.waitFor(() => s.hs.membership(dm, s.hs.botUserId) === 'join', { what: 'the bot to join the direct chat' })
  await s.hs.sendMessage(owner, dm, `login ${network.network} ${kind}`)
  // Re-checked by the network's own waiter: nothing on the homeserver need change once the login waits.
  await network.waitFor(() => network.loginsWaiting > 0, 'the login to wait for a scan')
  network.scan(address)
  await s.hs.waitFor(() => s.botNotices(dm).some(n => n.startsWith('Linked!')), { what: 'the login to finish' })
  const id = /login ([a-z]+-[0-9a-f]+)/.exec(s.botNotices(dm).find(n => n.startsWith('Linked!'))!)![1]!
  return id
}

/** A room bridged to a fresh Signal group and a fresh WhatsApp group, each with its relay set. */
export async function bridgedRoom(s: Scenario, owner = ALICE, members: string[] = []): Promise<{ room: string; sg: MemoryGroup; wg: MemoryGroup }> {
  const room = await roomWithBot(s, owner, members)
  const sg = s.signal.addGroup('Family (Signal)', ['sig-bob', 'sig-carol'])
  const wg = s.whatsapp.addGroup('Family (WhatsApp)', ['wa-dave'])
  const sigLogin = (await s.bridge.logins.list('signal'))[0]?.id ?? await linkedLogin(s, s.signal, owner)
  const waLogin = (await s.bridge.logins.list('whatsapp'))[0]?.id ?? await linkedLogin(s, s.whatsapp, owner)
  await s.command(owner, room, `!relay link signal ${sg.id} ${sigLogin}`)
  await s.command(owner, room, `!relay link whatsapp ${wg.id} ${waLogin}`)
  return { room, sg, wg }
}
