// `npm run bench`: relay-bridge's throughput, latency, memory and scaling against a real PostgreSQL server,
// the fake signal-cli daemon (HTTP + SSE), the fake WhatsApp socket and the fake homeserver, all answering
// at once; and the bare Matrix framework (bot-sdk's Appservice) under the same load, in the same run.
// Without RELAY_BRIDGE_BENCH_DATABASE_URI it starts its own server through scripts/with-postgres.sh.
import { resolve as resolvePath } from 'node:path'
import { fork, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { cpus, totalmem } from 'node:os'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { initAuthCreds } from '@whiskeysockets/baileys'
import pg from 'pg'
import { migrate } from '../src/db/migrate.ts'
import { openPostgres } from '../src/db/postgres.ts'
import type { Db } from '../src/db/types.ts'
import { buildRegistration } from '../src/registration.ts'
import { encodeJson } from '../src/whatsapp/auth.ts'
import { FakeHomeserver, type FakeEvent } from '../test/fakes/homeserver.ts'
import { FakeSignalDaemon, type RecordedCall } from '../test/fakes/signal-daemon.ts'
import { groupText } from '../test/fakes/signal-envelopes.ts'
import { OlmPeer } from '../test/support/olm-peer.ts'
import { freePort } from '../test/support/ports.ts'
import {
  ALICE, benchConfig, BRIDGE_NODE_FLAGS, benchRoomId, nowMs, SIGNAL_ALEX, SIGNAL_LOGIN, SIGNAL_RELAY, signalGroupId, tag, untag,
  WHATSAPP_LOGIN, whatsappGroupId,
} from './config.ts'
import { probeDisk, settleDisk, type DiskSettle } from './disk.ts'
import { probeWake } from './wake.ts'
import { floorPortals, postgresFloorStep, rampToPlateau, type Plateau } from './floors.ts'
import { loadHistory } from './history.ts'
import { nextSeq, openLoop, percentiles, SynapsePusher, Tracker, TransactionPusher, type Net, type PreparedMessage, type Pusher } from './load.ts'
import { StageLog, type Stamp, type StageSummary } from './stages.ts'
import { Watch, type WindowEvidence } from './watch.ts'
import { WaServer } from './wa-server.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const { values: opt } = parseArgs({
  options: {
    duration: { type: 'string', default: '30' },
    'latency-duration': { type: 'string', default: '30' },
    quick: { type: 'boolean', default: false },
    'rate-batch50': { type: 'string', default: '3000' },
    'rate-batch1': { type: 'string', default: '2500' },
    'rate-remote': { type: 'string', default: '1500' },
    'latency-rate': { type: 'string', default: '100' },
    scales: { type: 'string', default: '10,1000,10000' },
    /** Speaking ghosts in the ghosts-e2ee runs (issue 14). */
    ghosts: { type: 'string', default: '10,100,1000' },
    out: { type: 'string', default: 'bench/results.json' },
    /** Only these runs (comma-separated: idle, matrix50, matrix-synapse, matrix1, signal, whatsapp, latency-matrix, latency-signal,
     * latency-whatsapp, idle-e2ee, matrix50-e2ee, latency-matrix-e2ee, ghosts-e2ee, floor-framework, floor-postgres, disk, wake). */
    only: { type: 'string' },
    /** Latency runs: sample PostgreSQL's wait events every 10 ms too (costs the server CPU the runs count). */
    'watch-postgres': { type: 'boolean', default: false },
  },
})
const SUSTAINED_S = opt.quick ? 8 : Number(opt.duration)
const LATENCY_S = opt.quick ? 8 : Number(opt['latency-duration'])
/** Seconds of a latency run's own traffic before it is measured (see run). */
const LATENCY_WARM_S = opt.quick ? 5 : 10

const uri = process.env.RELAY_BRIDGE_BENCH_DATABASE_URI ?? process.env.PG_URI
if (!uri) {
  // Statements over 20 ms go to the server's log (PG_LOG), which each run's summary reads; pg_stat_statements
  // (contrib, in Debian's package) says what each kind of statement costs per message in the latency runs.
  const env = { ...process.env, PG_EXTRA_OPTS: `${process.env.PG_EXTRA_OPTS ?? ''} -c log_min_duration_statement=20 -c log_autovacuum_min_duration=0 -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_planning=on` }
  const r = spawnSync(`${ROOT}scripts/with-postgres.sh`, [process.execPath, fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit', cwd: ROOT, env })
  process.exit(r.status ?? 1)
}
const ADMIN_URI = uri

// The bridge and the baseline run compiled, as deployed (see bench/tsconfig.json).
const BUILD = `${ROOT}bench/.build/`
const built = spawnSync(process.execPath, [`${ROOT}node_modules/typescript/bin/tsc`, '-p', `${ROOT}bench/tsconfig.json`], { stdio: 'inherit', cwd: ROOT })
if (built.status !== 0) throw new Error('bench: the bridge could not be compiled')
// The compiled migration runner looks for the SQL files beside its own tree.
rmSync(`${BUILD}migrations`, { recursive: true, force: true })
symlinkSync(`${ROOT}migrations`, `${BUILD}migrations`)

const log = (...a: unknown[]): void => console.error('[bench]', ...a)
const sleep = (ms: number): Promise<void> => new Promise(r => setTimeout(r, ms))
const round = (n: number, d = 1): number => (Number.isFinite(n) ? Math.round(n * 10 ** d) / 10 ** d : n)

/** The process ids of the benchmark's own PostgreSQL server: its postmaster (the parent of any of its backends)
 * and every child of it, read from /proc (Linux). Other servers on the machine (a developer's, another test
 * run's) must not count: summing every `postgres` process made the CPU column include them. */
async function serverPostmaster(): Promise<number | undefined> {
  const c = new pg.Client({ connectionString: ADMIN_URI })
  await c.connect()
  try {
    const { rows } = await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')
    return procStat(rows[0]!.pid)?.ppid
  } finally {
    await c.end()
  }
}
/** On another machine (RELAY_BRIDGE_BENCH_DATABASE_URI) the server's processes cannot be read: the column is 0. */
const POSTMASTER = await serverPostmaster()

function procStat(pid: number | string): { ppid: number; cpuUs: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const tick = 1e6 / 100 // USER_HZ is 100 on Linux
    return { ppid: Number(fields[1]), cpuUs: (Number(fields[11]) + Number(fields[12])) * tick } // ppid, utime, stime
  } catch {
    return undefined // no such process (it ended meanwhile, or lives on another machine)
  }
}

/** CPU time (µs) the benchmark's PostgreSQL server spends from now on: the postmaster and its children (backends,
 * WAL writer, checkpointer…), per process, so that a backend ending meanwhile (a pool closed after the last step)
 * takes away only what it spent since, never what it had spent before. Call the answer to read it. */
function postgresCpuMeter(): () => number {
  const at = (): Map<string, number> => {
    const cpu = new Map<string, number>()
    if (POSTMASTER === undefined) return cpu
    for (const pid of readdirSync('/proc').filter(d => /^\d+$/.test(d))) {
      const s = procStat(pid)
      if (s && (Number(pid) === POSTMASTER || s.ppid === POSTMASTER)) cpu.set(pid, s.cpuUs)
    }
    return cpu
  }
  const before = at()
  return () => [...at()].reduce((sum, [pid, us]) => sum + us - (before.get(pid) ?? 0), 0)
}

// ---- processes -----------------------------------------------------------------------------------------

interface Stats { rss: number; maxRss: number; cpuUs: number; maxLoopDelayMs?: number; signalBacklog?: number; whatsappReading?: { backlog: number; holding: boolean; pauses: number; breaths: number }; heapUsed?: number; heapTotal?: number; external?: number; events?: number }

class Child {
  readonly proc: ChildProcess
  private readonly waiters = new Map<string, Array<(m: any) => void>>()
  onMessage: (m: any) => void = () => {}
  constructor(script: string, args: string[] = [], nodeFlags: string[] = [], env: Record<string, string> = {}) {
    this.proc = fork(`${BUILD}bench/${script.replace(/\.ts$/, '.js')}`, args, {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, ...env },
      execArgv: ['--disable-warning=DEP0060', ...(process.env.BENCH_NODE_FLAGS?.split(' ').filter(Boolean) ?? nodeFlags), ...(process.env.BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [])],
    })
    this.proc.on('message', (m: any) => {
      const list = this.waiters.get(m.type)
      if (list?.length) list.shift()!(m)
      else this.onMessage(m)
    })
  }
  next<T>(type: string, timeoutMs = 60_000): Promise<T> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`bench: no "${type}" from ${this.proc.pid} in ${timeoutMs} ms`)), timeoutMs)
      const list = this.waiters.get(type) ?? []
      list.push(m => {
        clearTimeout(t)
        resolve(m as T)
      })
      this.waiters.set(type, list)
    })
  }
  send(m: unknown): void {
    this.proc.send(m as object)
  }
  async stats(): Promise<Stats> {
    const p = this.next<Stats>('stats')
    this.send({ type: 'stats' })
    return p
  }
  async stop(): Promise<void> {
    const exited = new Promise(r => this.proc.once('exit', r))
    if (this.proc.exitCode !== null) return
    this.send({ type: 'stop' })
    // A profile is written at exit: give a profiled process time to finish writing it.
    const t = setTimeout(() => this.proc.kill('SIGKILL'), process.env.BENCH_PROFILE ? 30_000 : 3000)
    await exited
    clearTimeout(t)
  }
}

// ---- one world per portal count ------------------------------------------------------------------------

interface World {
  portals: number
  dbUri: string
  db: Db
  hs: FakeHomeserver
  daemon: FakeSignalDaemon
  /** WhatsApp's server, whose frames the bridge's WhatsApp socket reads (bench/wa-server.ts). */
  wa: WaServer
  waUrl: string
  rooms: string[]
  /** Portals that also exist as rooms on the fake homeserver (for traffic towards Matrix). */
  live: number
  tracker: Tracker
  bridge?: Child
  peakRss: number
  /** The stage timestamps of the run under way, when it asked for them. */
  stages?: StageLog
  /** Set up on the first encrypted run: Alice's real Olm device and the live rooms, made encrypted. */
  e2ee?: { alice: OlmPeer; rooms: string[] }
  /** Per encrypted room, the messages on their way to it in order: a ghost's encrypted event there is the next
   * one (its body cannot be read without decrypting, and a chat's order is kept). */
  encryptedArrivals: Map<string, number[]>
}

async function makeWorld(portals: number): Promise<World> {
  const name = `rbbench_${portals}_${randomBytes(4).toString('hex')}`
  const admin = new pg.Client({ connectionString: ADMIN_URI })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${name}`)
  await admin.end()
  const u = new URL(ADMIN_URI)
  u.pathname = `/${name}`
  const dbUri = u.toString()
  const db = openPostgres(dbUri)
  await migrate(db)

  const tracker = new Tracker()
  const hs = await FakeHomeserver.start({ retryBackoff: { initialMs: 5, maxMs: 100 } })
  Object.assign(hs.registration, buildRegistration(benchConfig({ databaseUri: dbUri, homeserver: hs.url, daemonUrl: 'http://127.0.0.1:1', dataDir: '/tmp' })))
  // Arrivals on Matrix: a ghost's message lands in the room.
  const state = (hs as unknown as { state: { onEvent: (ev: FakeEvent) => void } }).state
  const onEvent = state.onEvent
  const encryptedArrivals = new Map<string, number[]>()
  state.onEvent = ev => {
    if (ev.type === 'm.room.message' && /^@(signal|whatsapp)_/.test(ev.sender)) tracker.arrive(untag((ev.content as { body?: unknown }).body), 'matrix')
    if (ev.type === 'm.room.encrypted' && /^@(signal|whatsapp)_/.test(ev.sender)) tracker.arrive(encryptedArrivals.get(ev.room_id)?.shift(), 'matrix')
    onEvent(ev)
  }
  const daemon = await FakeSignalDaemon.start({ keepaliveMs: 15_000 })
  const wa = new WaServer()
  const waUrl = await wa.start()
  daemon.addAccount(SIGNAL_RELAY)
  // Arrivals on Signal: the daemon answers a send (the fake keeps no call log here).
  daemon.calls.push = (...calls: RecordedCall[]): number => {
    for (const c of calls) if (c.method === 'send') tracker.arrive(untag(c.params.message), 'signal')
    return 0
  }
  for (let i = 0; i < portals; i++) daemon.addGroup({ id: signalGroupId(i), name: `Bench ${i}`, members: [SIGNAL_RELAY, SIGNAL_ALEX], link: false })

  const live = Math.min(portals, 10)
  hs.createUser(ALICE, { displayname: 'Alice' })
  const rooms: string[] = []
  for (let i = 0; i < portals; i++) {
    if (i < live) {
      const room = await hs.createRoom(ALICE, { invite: [hs.botUserId], name: `Bench ${i}` })
      await hs.join(hs.botUserId, room)
      rooms.push(room)
    } else rooms.push(benchRoomId(i))
  }
  await seed(db, rooms)
  return { portals, dbUri, db, hs, daemon, wa, waUrl, rooms, live, tracker, peakRss: 0, encryptedArrivals }
}

/** Logins, WhatsApp creds, portals and room members written straight into the database. */
async function seed(db: Db, rooms: string[]): Promise<void> {
  await db.query(
    `INSERT INTO logins (id, network, address, person_id, display_name, owner_mxid, state) VALUES
     ($1, 'signal', $2, $3, 'Relay', $7, 'connected'), ($4, 'whatsapp', $5, $6, 'Relay', $7, 'connected')`,
    [SIGNAL_LOGIN, SIGNAL_RELAY.number, SIGNAL_RELAY.aci, WHATSAPP_LOGIN, '15550100000@s.whatsapp.net', '201000000000001', ALICE])
  const creds = initAuthCreds()
  creds.me = { id: '15550100000:7@s.whatsapp.net', lid: '201000000000001:7@lid', name: 'Relay' }
  creds.registered = true
  await db.query(`INSERT INTO wa_auth (login_id, kind, key_id, value) VALUES ($1, 'creds', '', $2)`, [WHATSAPP_LOGIN, encodeJson(creds)])
  const idx = rooms.map((_, i) => i)
  await db.query(
    `INSERT INTO portals (room_id, name, signal_group, signal_login, whatsapp_group, whatsapp_login, creator)
     SELECT r, 'Bench ' || i, s, $4, w, $5, $6 FROM unnest($1::text[], $2::text[], $3::text[], $7::int[]) AS t(r, s, w, i)`,
    [rooms, idx.map(signalGroupId), idx.map(whatsappGroupId), SIGNAL_LOGIN, WHATSAPP_LOGIN, ALICE, idx])
  await db.query(
    `INSERT INTO room_members (room_id, mxid, displayname, membership) SELECT r, $2, 'Alice', 'join' FROM unnest($1::text[]) AS r
     ON CONFLICT DO NOTHING`, [rooms, ALICE])
  await db.query('ANALYZE')
}

/** A fresh bridge process on the world's database, with the queues emptied by the previous run. */
async function startBridgeProcess(w: World, encrypted = false, stages = false): Promise<Child> {
  // No RESTART IDENTITY: outbox ids name the homeserver txn ids of ghost sends, which must stay new.
  await w.db.query('TRUNCATE inbox, appservice_txns, outbox, message_copies, messages, wa_messages CASCADE')
  await loadHistory(w.db)
  const child = new Child('bridge-process.ts', [], BRIDGE_NODE_FLAGS, stages ? { BENCH_STAGES: '1' } : {})
  await child.next('up')
  w.stages = stages ? new StageLog() : undefined
  w.tracker.onComplete = w.stages ? (seq, t0, t) => w.stages!.done(seq, t0, t) : undefined
  child.onMessage = (m: { type: string; arrivals?: Array<[number, number]>; stamps?: Stamp[] }) => {
    if (m.type !== 'report') return
    for (const [s, t] of m.arrivals!) w.tracker.arrive(s, 'whatsapp', t)
    if (m.stamps!.length) w.stages?.add(m.stamps!)
  }
  const ready = child.next<{ port: number }>('ready', 120_000)
  child.send({ type: 'start', databaseUri: w.dbUri, homeserver: w.hs.url, daemonUrl: w.daemon.url, waServer: w.waUrl, portals: w.portals, encrypted })
  const { port } = await ready
  w.hs.setAppserviceUrl(`http://127.0.0.1:${port}`)
  await w.daemon.until(() => w.daemon.hasStream(SIGNAL_RELAY.number), 30_000)
  ;(child as Child & { port: number }).port = port
  w.bridge = child
  return child
}

async function stopBridgeProcess(w: World): Promise<Stats | undefined> {
  if (!w.bridge) return undefined
  const s = await w.bridge.stats()
  w.peakRss = Math.max(w.peakRss, s.maxRss)
  await w.bridge.stop()
  w.bridge = undefined
  w.wa.reset()
  w.tracker.reset()
  return s
}

async function closeWorld(w: World): Promise<void> {
  await stopBridgeProcess(w)
  await w.e2ee?.alice.close()
  await w.hs.stop()
  await w.daemon.stop()
  await w.wa.stop()
  await w.db.close()
  const admin = new pg.Client({ connectionString: ADMIN_URI })
  await admin.connect()
  await admin.query(`DROP DATABASE IF EXISTS ${new URL(w.dbUri).pathname.slice(1)} WITH (FORCE)`)
  await admin.end()
}

// ---- runs ----------------------------------------------------------------------------------------------

type Direction = 'matrix' | 'signal' | 'whatsapp'
const TARGETS: Record<Direction, Net[]> = { matrix: ['signal', 'whatsapp'], signal: ['matrix', 'whatsapp'], whatsapp: ['matrix', 'signal'] }

interface RunResult {
  name: string
  portals: number
  direction: Direction
  batch?: number
  /** Matrix messages sent encrypted (Megolm) into encrypted portals, decrypted by the bridge's device. */
  encrypted?: boolean
  offeredPerS: number
  durationS: number
  generated: number
  /** Messages that reached every other network, per second, over the run after its first fifth. */
  relayedPerS: number
  /** Transactions acknowledged (events per second), Matrix direction only. */
  ackedEventsPerS?: number
  latencyMs: { p50: number; p95: number; p99: number; max: number }
  /** Messages still not at every network when the run was cut off. */
  unfinished: number
  bridgeCpuUsPerMsg: number
  /** The same for PostgreSQL's processes and for this process (fakes and load generator): where the two cores went. */
  postgresCpuUsPerMsg: number
  harnessCpuUsPerMsg: number
  /** The longest the bridge's event loop was blocked during the run (not metered in latency runs: their stages'
   * generated → arrival shows it). */
  bridgeMaxLoopDelayMs?: number
  bridgeMaxRssMb: number
  /** Latency runs: where each message's time went (bench/stages.ts). */
  stages?: StageSummary
  /** PostgreSQL's statements over 20 ms during the run, from the benchmark server's log. */
  slowStatements?: SlowStatements
  /** The costliest kinds of statement per message (latency runs; pg_stat_statements). */
  statements?: StatementCost[]
  /** Latency runs: the machine's steal, iowait and pressure-stall time over the run (bench/watch.ts). */
  machine?: WindowEvidence['machine']
  /** Latency runs: the wait, before the run, for the disk to finish with the set-up's writes (bench/disk.ts). */
  diskSettle?: DiskSettle
}

/** The end of a warm-up: waits for what it sent (up to `waitMs`), says what never arrived, and forgets it all. */
async function warmedUp(w: World, what: string, waitMs = 30_000): Promise<void> {
  const deadline = Date.now() + waitMs
  while (w.tracker.inFlight > 0 && Date.now() < deadline) await sleep(20)
  if (w.tracker.inFlight > 0) log(`warm-up: ${w.tracker.inFlight} ${what}`)
  w.tracker.reset()
}

/** Sends one message per live chat towards Matrix from each remote network and waits: ghosts get registered and joined. */
async function warmUp(w: World): Promise<void> {
  const seqs: number[] = []
  const msgs: Array<{ chat: number; id: string; text: string }> = []
  for (let i = 0; i < w.live; i++) {
    const s1 = nextSeq()
    w.tracker.expect(s1, nowMs(), ['matrix'])
    w.daemon.push(SIGNAL_RELAY.number, groupText(SIGNAL_ALEX, signalGroupId(i), `warm ${tag(s1)}`))
    const s2 = nextSeq()
    w.tracker.expect(s2, nowMs(), ['matrix'])
    msgs.push({ chat: i, id: `WARM${s2}`, text: `warm ${tag(s2)}` })
    seqs.push(s1, s2)
  }
  w.wa.deliver(msgs)
  await warmedUp(w, 'messages never reached Matrix')
}

/** Two seconds of Matrix traffic at 100 msg/s before a Matrix run: a fresh process spends its first few hundred
 * milliseconds compiling and opening connections, and those messages would otherwise make the run's tail. */
async function warmUpMatrix(w: World, port: number): Promise<void> {
  const pusher = new TransactionPusher(port, 1, w.tracker)
  let room = 0
  await openLoop({ rate: 100, durationMs: 2000, emit: count => {
    for (let i = 0; i < count; i++) pusher.add(w.rooms[room++ % w.portals]!, TARGETS.matrix)
  } })
  await warmedUp(w, 'messages never reached both networks')
  pusher.close()
}

/** The registration of a bridge with encryption.allow (MSC2409 to-device, MSC3202, MSC4190), as its operator installs it. */
function enableEncryption(w: World): void {
  Object.assign(w.hs.registration, buildRegistration(benchConfig({ databaseUri: w.dbUri, homeserver: w.hs.url, daemonUrl: 'http://127.0.0.1:1', dataDir: '/tmp', encrypted: true })))
}

/** The live rooms made encrypted (one room key for the whole run), and Alice's real Olm device in them. The
 * registration asks for to-device events and device lists from now on, as an operator's does with encryption. */
async function encryptedRooms(w: World): Promise<NonNullable<World['e2ee']>> {
  if (w.e2ee) return w.e2ee
  const alice = await OlmPeer.login(w.hs, ALICE)
  const rooms = w.rooms.slice(0, w.live)
  for (const room of rooms) {
    await w.hs.sendEvent(ALICE, room, 'm.room.encryption', { algorithm: 'm.megolm.v1.aes-sha2', rotation_period_msgs: 1_000_000, rotation_period_ms: 86_400_000 }, { stateKey: '' })
  }
  w.e2ee = { alice, rooms }
  return w.e2ee
}

/** `count` messages encrypted by Alice's device, round-robin over the encrypted rooms (the first shares the keys). */
async function encryptAhead(w: World, count: number): Promise<PreparedMessage[]> {
  const { alice, rooms } = await encryptedRooms(w)
  const started = Date.now()
  const out: PreparedMessage[] = []
  for (let i = 0; i < count; i++) {
    const roomId = rooms[i % rooms.length]!
    const seq = nextSeq()
    const content = await alice.crypto.encrypt(roomId, 'm.room.message', { msgtype: 'm.text', body: `Hello from the benchmark ${tag(seq)}` }, {
      members: w.hs.joinedMembers(roomId), encryption: w.hs.stateContent(roomId, 'm.room.encryption') ?? {}, historyVisibility: 'shared',
    })
    out.push({ seq, roomId, type: 'm.room.encrypted', content })
  }
  log(`  encrypted ${count} messages ahead in ${Date.now() - started} ms (the sender's cost, not measured)`)
  return out
}

/** The first encrypted messages at 100 msg/s: the bridge's device takes the room keys, and the run's tail is not its start. */
async function warmUpEncrypted(w: World, port: number, messages: PreparedMessage[]): Promise<void> {
  const pusher = new TransactionPusher(port, 1, w.tracker)
  await openLoop({ rate: 100, durationMs: messages.length * 10, emit: count => {
    for (let i = 0; i < count && messages.length; i++) pusher.addPrepared(messages.shift()!, TARGETS.matrix)
  } })
  await warmedUp(w, 'encrypted messages never reached both networks', 60_000)
  pusher.close()
}

async function run(w: World, direction: Direction, opts: { rate: number; durationS: number; batch?: number; name: string; encrypted?: boolean; push?: 'synapse' }): Promise<RunResult> {
  const latencyRun = opts.name === 'latency'
  const child = await startBridgeProcess(w, opts.encrypted, latencyRun && !opts.encrypted)
  const port = (child as Child & { port: number }).port
  const WARM = 200
  const prepared = opts.encrypted ? await encryptAhead(w, WARM + Math.ceil(opts.rate * opts.durationS * 1.1)) : undefined
  if (prepared) await warmUpEncrypted(w, port, prepared.splice(0, WARM))
  else if (direction === 'matrix') await warmUpMatrix(w, port)
  else await warmUp(w)
  const chats = direction === 'matrix' ? w.portals : w.live
  const nets = TARGETS[direction]
  let next = 0
  const pick = (): number => (next = (next + 1) % chats)
  let signalHeld = 0
  let pusher: Pusher | undefined
  const emit = (count: number): void => {
    if (pusher && prepared) for (let i = 0; i < count && prepared.length; i++) pusher.addPrepared(prepared.shift()!, nets)
    else if (pusher) for (let i = 0; i < count; i++) pusher.add(w.rooms[pick()]!, nets)
    else if (direction === 'signal') {
      for (let i = 0; i < count; i++) {
        const s = nextSeq()
        const env = groupText(SIGNAL_ALEX, signalGroupId(pick()), `Hello from Signal ${tag(s)}`)
        w.tracker.expect(s, nowMs(), nets)
        w.daemon.push(SIGNAL_RELAY.number, env)
      }
      signalHeld = Math.max(signalHeld, w.daemon.unreadBytes)
    } else {
      const msgs = []
      for (let i = 0; i < count; i++) {
        const s = nextSeq()
        msgs.push({ chat: pick(), id: `BENCH${s}`, text: `Hello from WhatsApp ${tag(s)}` })
        w.tracker.expect(s, nowMs(), nets)
      }
      w.wa.deliver(msgs)
    }
  }
  // A latency run is measured in the steady state of a bridge that has been relaying for a while: the run's own
  // traffic for LATENCY_WARM_S first. At 100 msg/s V8 takes about 10 s to compile the code a message passes
  // through (session 13: a WhatsApp run's CPU per message 4.0, 2.9, then 2.0–3.0 ms in its successive 5-s
  // windows), which a bridge that runs for days pays once, not per message. (Not for the encrypted run, whose
  // messages are encrypted ahead: its 200 warm-up messages stand.)
  if (latencyRun && !prepared) {
    pusher = direction === 'matrix' ? new TransactionPusher(port, opts.batch ?? 1, w.tracker) : undefined
    await openLoop({ rate: opts.rate, durationMs: LATENCY_WARM_S * 1000, emit })
    await warmedUp(w, `messages of the ${LATENCY_WARM_S}-s warm-up never arrived`)
    pusher?.close()
    signalHeld = 0
  }
  const settle = latencyRun ? await settleDisk(`${BUILD}disk-settle`, opts.rate) : undefined
  if (settle) log(`  disk ${settle.settled ? 'settled' : 'did not settle'} in ${settle.waitedMs} ms (slowest flush per second: ${settle.windowMaxMs.join(', ')} ms)`)
  const before = await child.stats()
  const pgUsed = postgresCpuMeter()
  const harnessBefore = process.cpuUsage()
  const statements = latencyRun ? await statementCosts(w.dbUri) : undefined
  const logFrom = pgLogOffset()
  w.stages?.reset()
  const watch = latencyRun ? await Watch.start(opt['watch-postgres'] ? w.dbUri : undefined) : undefined
  pusher = direction !== 'matrix' ? undefined
    : opts.push === 'synapse' ? new SynapsePusher(port, opts.batch ?? 50, w.tracker) : new TransactionPusher(port, opts.batch ?? 1, w.tracker)
  const durationMs = opts.durationS * 1000
  log(`${opts.name}: ${w.portals} portals, ${direction} → ${nets.join(' + ')}, ${opts.rate} msg/s for ${opts.durationS} s${opts.push === 'synapse' ? `, one transaction in flight of at most ${opts.batch ?? 50}` : opts.batch ? `, batches of ${opts.batch}` : ''}${opts.encrypted ? `, encrypted, in ${w.e2ee!.rooms.length} rooms` : ''}`)
  const loop = await openLoop({ rate: opts.rate, durationMs, emit })
  // Latency runs wait for the tail; saturated runs are cut off after a short grace.
  const grace = Date.now() + (opts.rate <= 200 ? 10_000 : 2_000)
  while (w.tracker.inFlight > 0 && Date.now() < grace) await sleep(20)
  await watch?.stop()
  const after = await child.stats()
  const pgUs = pgUsed()
  const harness = process.cpuUsage(harnessBefore)
  const from = loop.startedAt + durationMs / 5
  const inWindow = w.tracker.done.filter(([t]) => t >= from && t <= loop.endedAt).length
  const windowS = (loop.endedAt - from) / 1000
  const acked = pusher ? pusher.stats.acks.filter(([t]) => t >= from && t <= loop.endedAt).reduce((n, [, e]) => n + e, 0) : undefined
  const result: RunResult = {
    name: opts.name, portals: w.portals, direction, ...(opts.batch ? { batch: opts.batch } : {}), ...(opts.encrypted ? { encrypted: true } : {}),
    offeredPerS: opts.rate, durationS: opts.durationS, generated: loop.generated,
    relayedPerS: round(inWindow / windowS),
    ...(acked !== undefined ? { ackedEventsPerS: round(acked / windowS) } : {}),
    latencyMs: mapValues(percentiles(w.tracker.done.map(([, l]) => l)), v => round(v, 2)),
    unfinished: w.tracker.inFlight,
    bridgeCpuUsPerMsg: round((after.cpuUs - before.cpuUs) / Math.max(1, w.tracker.done.length)),
    postgresCpuUsPerMsg: round(pgUs / Math.max(1, w.tracker.done.length)),
    harnessCpuUsPerMsg: round((harness.user + harness.system) / Math.max(1, w.tracker.done.length)),
    ...(after.maxLoopDelayMs !== undefined ? { bridgeMaxLoopDelayMs: round(after.maxLoopDelayMs) } : {}),
    bridgeMaxRssMb: round(after.maxRss / 2 ** 20),
    ...(w.stages ? { stages: w.stages.summary(loop.startedAt, 50) } : {}),
    ...(logFrom !== undefined ? { slowStatements: slowStatements(logFrom) } : {}),
    ...(settle ? { diskSettle: settle } : {}),
  }
  if (watch) {
    result.machine = watch.window(loop.startedAt, loop.endedAt).machine
    for (const stall of result.stages?.stalls ?? []) stall.evidence = watch.window(loop.startedAt + stall.atS * 1000, loop.startedAt + stall.untilS * 1000)
  }
  const costs = await statements?.(w.tracker.done.length)
  if (costs) result.statements = costs
  pusher?.close()
  const waHeld = w.wa.maxBuffered
  await stopBridgeProcess(w)
  log(`  relayed ${result.relayedPerS}/s, p50 ${result.latencyMs.p50} ms, p99 ${result.latencyMs.p99} ms, unfinished ${result.unfinished}, ${result.bridgeMaxLoopDelayMs !== undefined ? `bridge event loop blocked ≤ ${result.bridgeMaxLoopDelayMs} ms, ` : ''}CPU µs/msg: bridge ${result.bridgeCpuUsPerMsg}, PostgreSQL ${result.postgresCpuUsPerMsg}, harness ${result.harnessCpuUsPerMsg}, bridge peak RSS ${result.bridgeMaxRssMb} MB`)
  if (direction === 'signal') log(`  Signal events waiting in the fake daemon (the bridge's event stream held back): at most ${round(signalHeld / 2 ** 20)} MB; in the bridge at the end: ${after.signalBacklog}`)
  if (direction === 'whatsapp') log(`  WhatsApp frames waiting in the harness's server (kernel buffers aside): at most ${round(waHeld / 2 ** 20)} MB; the bridge's socket held back ${after.whatsappReading?.pauses} times, ${after.whatsappReading?.backlog} messages in the bridge at the end`)
  logEvidence(result)
  return result
}

interface GhostRunResult {
  ghosts: number
  messages: number
  /** Ghosts' devices created on the homeserver during the run (each with its cross-signing identity). */
  devicesCreated: number
  /** One-time keys the ghosts' devices claimed, per message: the Olm sessions they opened. */
  olmSessionsPerMsg: number
  /** Room keys the ghosts' devices sent (to-device), per message. */
  roomKeysPerMsg: number
  relayedPerS: number
  latencyMs: { p50: number; p95: number; p99: number; max: number }
  unfinished: number
  bridgeCpuUsPerMsg: number
  postgresCpuUsPerMsg: number
  bridgeMaxRssMb: number
}

/**
 * Issue 14: Signal → Matrix + WhatsApp in the encrypted portals, from `ghosts` different people at 100 msg/s,
 * each speaking in turn (round-robin, so with more ghosts than the bridge keeps in memory every message loads a
 * machine). A ghost's first message makes its Matrix user, its device and its cross-signing identity; each
 * device opens an Olm session with Alice's device and shares its room key with it.
 */
async function ghostRun(w: World, ghosts: number): Promise<GhostRunResult> {
  const { alice, rooms } = await encryptedRooms(w)
  // At least 300 messages; with 1,000 ghosts two each (the first makes the device, the second loads it again).
  const perGhost = Math.max(2, Math.ceil(300 / ghosts))
  const messages = ghosts * perGhost
  const people = Array.from({ length: ghosts }, (_, i) => ({
    number: `+1555${String(3_000_000 + i)}`, aci: `b0b0b0b0-0000-4000-8000-${String(i).padStart(12, '0')}`, name: `Person ${i}`,
  }))
  const ghostDevices = (): number => [...w.hs.e2ee.devices.entries()].filter(([u, d]) => /^@signal_/.test(u) && d.size > 0).length
  const ghostCalls = (path: string) => w.hs.calls.filter(c => c.path.endsWith(path) && c.status === 200 && /^@signal_/.test(c.user ?? ''))
  const claimed = (): number => ghostCalls('/keys/claim').reduce((n, c) => n + Object.values(((c.response as { one_time_keys?: Record<string, object> }).one_time_keys) ?? {})
    .reduce((m, byDevice) => m + Object.keys(byDevice).length, 0), 0)
  const roomKeys = (): number => w.hs.e2ee.sentToDevice.filter(m => /^@signal_/.test(m.sender) && m.to_user_id === ALICE).length
  const devicesBefore = ghostDevices()
  const claimedBefore = claimed()
  const keysBefore = roomKeys()
  const child = await startBridgeProcess(w, true)
  w.tracker.reset()
  const before = await child.stats()
  const pgUsed = postgresCpuMeter()
  log(`ghosts-e2ee: ${ghosts} ghosts speaking ${perGhost} times each in ${rooms.length} encrypted rooms, Signal → Matrix + WhatsApp, 100 msg/s`)
  // Alice's device syncs as a client does, so it publishes new one-time keys as the ghosts' devices claim hers.
  let syncing = Promise.resolve()
  const aliceSync = setInterval(() => { syncing = syncing.then(() => alice.sync()).catch(() => {}) }, 250)
  let sent = 0
  const loop = await openLoop({
    rate: 100, durationMs: messages * 10,
    emit: count => {
      for (let i = 0; i < count && sent < messages; i++, sent++) {
        const s = nextSeq()
        const chat = sent % rooms.length
        const env = groupText(people[sent % ghosts]!, signalGroupId(chat), `Hello from Signal ${tag(s)}`)
        w.tracker.expect(s, nowMs(), TARGETS.signal)
        let queue = w.encryptedArrivals.get(rooms[chat]!)
        if (!queue) w.encryptedArrivals.set(rooms[chat]!, queue = [])
        queue.push(s)
        w.daemon.push(SIGNAL_RELAY.number, env)
      }
    },
  })
  // Every message is waited for (up to five minutes): with more ghosts than the bridge keeps in memory, each
  // message loads a machine, and the bridge falls behind the offered rate; the cost per message is the figure.
  const grace = Date.now() + 300_000
  while (w.tracker.inFlight > 0 && Date.now() < grace) await sleep(50)
  const after = await child.stats()
  const pgUs = pgUsed()
  clearInterval(aliceSync)
  await syncing
  const done = Math.max(1, w.tracker.done.length)
  const result: GhostRunResult = {
    ghosts, messages,
    devicesCreated: ghostDevices() - devicesBefore,
    olmSessionsPerMsg: round((claimed() - claimedBefore) / done, 3),
    roomKeysPerMsg: round((roomKeys() - keysBefore) / done, 3),
    relayedPerS: round(w.tracker.done.length / ((Math.max(...w.tracker.done.map(([t]) => t), loop.endedAt) - loop.startedAt) / 1000)),
    latencyMs: mapValues(percentiles(w.tracker.done.map(([, l]) => l)), v => round(v, 2)),
    unfinished: w.tracker.inFlight,
    bridgeCpuUsPerMsg: round((after.cpuUs - before.cpuUs) / done),
    postgresCpuUsPerMsg: round(pgUs / done),
    bridgeMaxRssMb: round(after.maxRss / 2 ** 20),
  }
  w.encryptedArrivals.clear()
  await stopBridgeProcess(w)
  log(`  ${result.messages} messages, ${result.devicesCreated} devices created, Olm sessions/msg ${result.olmSessionsPerMsg}, room keys/msg ${result.roomKeysPerMsg}, p50 ${result.latencyMs.p50} ms, p99 ${result.latencyMs.p99} ms, unfinished ${result.unfinished}, CPU µs/msg: bridge ${result.bridgeCpuUsPerMsg}, PostgreSQL ${result.postgresCpuUsPerMsg}; peak RSS ${result.bridgeMaxRssMb} MB`)
  return result
}

function mapValues<T extends Record<string, number>>(o: T, f: (v: number) => number): T {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, f(v)])) as T
}

// ---- evidence: stages and slow statements ---------------------------------------------------------------

interface SlowStatements {
  count: number
  maxMs: number
  /** The slowest kinds of statement (their first words), with how often each was slow. */
  top: Array<{ sql: string; count: number; maxMs: number }>
  /** Checkpoints logged during the run (log_checkpoints): each writes and syncs the dirty pages. */
  checkpoints: number
  /** Autovacuum's runs during the run ("vacuum outbox", "analyze messages"…; log_autovacuum_min_duration=0). */
  autovacuum: string[]
}

/** Where the benchmark server's log ends now (undefined for a server the benchmark did not start). */
function pgLogOffset(): number | undefined {
  if (!process.env.PG_LOG) return undefined
  try {
    return readFileSync(process.env.PG_LOG).length
  } catch {
    return undefined
  }
}

function slowStatements(from: number): SlowStatements {
  const text = readFileSync(process.env.PG_LOG!).subarray(from).toString('utf8')
  const kinds = new Map<string, { count: number; maxMs: number }>()
  let count = 0
  let maxMs = 0
  for (const m of text.matchAll(/duration: ([\d.]+) ms {2}(?:statement|execute [^:]*): (.*)/g)) {
    const ms = Number(m[1])
    const sql = m[2]!.replace(/\s+/g, ' ').slice(0, 60)
    const k = kinds.get(sql) ?? { count: 0, maxMs: 0 }
    k.count++
    k.maxMs = Math.max(k.maxMs, ms)
    kinds.set(sql, k)
    count++
    maxMs = Math.max(maxMs, ms)
  }
  const top = [...kinds].map(([sql, k]) => ({ sql, ...k })).sort((x, y) => y.maxMs - x.maxMs).slice(0, 3)
  const autovacuum = [...text.matchAll(/automatic (vacuum|analyze) of table "[^."]*\.[^."]*\.([^"]*)"/g)].map(m => `${m[1]} ${m[2]}`)
  return { count, maxMs, top, checkpoints: (text.match(/checkpoint complete/g) ?? []).length, autovacuum }
}

interface StatementCost {
  /** The statement, whitespace folded, cut at 70 characters. */
  sql: string
  callsPerMsg: number
  /** Planning and execution time per message (µs): the server's time in it, waits included. */
  planUsPerMsg: number
  execUsPerMsg: number
  walRecordsPerMsg: number
}

/**
 * What each kind of statement cost the benchmark's server from now on, per message (pg_stat_statements, when its
 * server loaded it): start before a run, call the answer with the messages relayed. Undefined on a server without it.
 */
async function statementCosts(dbUri: string): Promise<((messages: number) => Promise<StatementCost[] | undefined>) | undefined> {
  const c = new pg.Client({ connectionString: dbUri })
  await c.connect()
  try {
    await c.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements')
    await c.query('SELECT pg_stat_statements_reset()')
  } catch {
    await c.end()
    return undefined
  }
  return async messages => {
    try {
      const { rows } = await c.query<{ query: string; calls: string; plan: number; exec: number; wal: string }>(
        `SELECT query, calls, total_plan_time AS plan, total_exec_time AS exec, wal_records AS wal FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND query NOT LIKE '%pg_stat_statements%'`)
      // Statements that differ only in the number of their values are one kind here.
      const kinds = new Map<string, StatementCost>()
      const n = Math.max(1, messages)
      for (const r of rows) {
        const sql = r.query.replace(/\s+/g, ' ').slice(0, 70)
        const k = kinds.get(sql) ?? { sql, callsPerMsg: 0, planUsPerMsg: 0, execUsPerMsg: 0, walRecordsPerMsg: 0 }
        k.callsPerMsg += Number(r.calls) / n
        k.planUsPerMsg += (r.plan * 1000) / n
        k.execUsPerMsg += (r.exec * 1000) / n
        k.walRecordsPerMsg += Number(r.wal) / n
        kinds.set(sql, k)
      }
      return [...kinds.values()].sort((a, b) => b.planUsPerMsg + b.execUsPerMsg - a.planUsPerMsg - a.execUsPerMsg).slice(0, 8)
        .map(k => ({ sql: k.sql, callsPerMsg: round(k.callsPerMsg, 2), planUsPerMsg: round(k.planUsPerMsg), execUsPerMsg: round(k.execUsPerMsg), walRecordsPerMsg: round(k.walRecordsPerMsg, 1) }))
    } finally {
      await c.end()
    }
  }
}

/** "steal 120 ms (4 expected), …": what the machine spent in a stall beside what an average moment would have. */
function describeEvidence(e: WindowEvidence): string {
  const machine = Object.entries(e.machine).map(([k, v]) => `${k} ${v.ms} ms (${v.expectedMs} expected)`).join(', ')
  const postgres = e.postgres ? `; PostgreSQL (samples, slowest ${e.postgresSampleMaxMs} ms): ${e.postgres.slice(0, 8).map(([w, n]) => `${w} ×${n}`).join(', ')}` : ''
  return `${machine}; watcher's longest gap ${e.watcherLateMs} ms${postgres}`
}

function logEvidence(r: RunResult): void {
  if (r.stages) {
    const st = r.stages
    log(`  stages (ms, p50/p99): ${Object.entries(st.all).map(([k, v]) => `${k} ${v.p50}/${v.p99}`).join(', ')}`)
    log(`  slowest 1 % (median ms): ${Object.entries(st.slowest1pct).map(([k, v]) => `${k} ${v}`).join(', ')}`)
    log(`  over ${st.stallMs} ms: ${st.stalled} messages${st.stalls.length ? ` in ${st.stalls.map(x => `${x.messages} at ${x.atS} s (worst ${x.worstMs} ms)`).join(', ')}; median ${JSON.stringify(st.stalledMedian)}` : ''}`)
    for (const x of st.stalls) if (x.evidence) log(`    stall at ${x.atS}–${x.untilS} s: ${describeEvidence(x.evidence)}`)
  }
  if (r.machine) log(`  machine over the run (ms, both cores): ${Object.entries(r.machine).map(([k, v]) => `${k} ${v.ms}`).join(', ')}`)
  if (r.statements) {
    log(`  PostgreSQL per message (calls, plan + execution µs): ${r.statements.map(k => `${k.callsPerMsg}× ${round(k.planUsPerMsg + k.execUsPerMsg)} "${k.sql.slice(0, 45)}"`).join('; ')}`)
  }
  if (r.slowStatements) {
    const ss = r.slowStatements
    log(`  PostgreSQL statements over 20 ms: ${ss.count}${ss.count ? ` (max ${ss.maxMs} ms; ${ss.top.map(t => `${t.count}× ≤ ${t.maxMs} ms "${t.sql}"`).join('; ')})` : ''}, checkpoints ${ss.checkpoints}, autovacuum ${ss.autovacuum.length ? ss.autovacuum.join(', ') : 'none'}`)
  }
}

// ---- floors --------------------------------------------------------------------------------------------

const FLOOR_STEP_S = opt.quick ? 3 : 6

/** The bare framework (bot-sdk's Appservice) acknowledging transactions of 50 events, 64 in flight as in the
 * bridge's harshest run, driven step by step to its plateau. */
async function frameworkFloor(): Promise<Plateau & { maxRssMb: number }> {
  const port = await freePort()
  const child = new Child('baseline-process.ts', [String(port)])
  await child.next('ready')
  log(`floor: bot-sdk Appservice acknowledging batches of 50, ${FLOOR_STEP_S} s per step`)
  const plateau = await rampToPlateau(async rate => {
    const pusher = new TransactionPusher(port, 50)
    const durationMs = FLOOR_STEP_S * 1000
    const loop = await openLoop({ rate, durationMs, emit: count => { for (let i = 0; i < count; i++) pusher.add('!baseline:example.org', []) } })
    const from = loop.startedAt + durationMs / 5
    const acked = pusher.stats.acks.filter(([t]) => t >= from && t <= loop.endedAt).reduce((n, [, e]) => n + e, 0)
    pusher.close()
    await sleep(500)
    const perS = acked / ((loop.endedAt - from) / 1000)
    log(`  offered ${rate}/s: acknowledged ${round(perS)} events/s`)
    return perS
  }, 2000)
  const s = await child.stats()
  await child.stop()
  log(`  plateau ${plateau.plateauPerS} events/s`)
  return { ...plateau, maxRssMb: round(s.maxRss / 2 ** 20) }
}

/** PostgreSQL alone committing the rows of each Matrix → both message (bench/floors.ts), on this server, in a fresh
 * database with the bridge's schema and 10 portals, driven step by step to its plateau. */
async function postgresFloor(): Promise<Plateau & { server: Record<string, string>; atLatencyRate: { ratePerS: number; postgresCpuUsPerMsg: number } }> {
  const name = `rbfloor_${randomBytes(4).toString('hex')}`
  const admin = new pg.Client({ connectionString: ADMIN_URI })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${name}`)
  const u = new URL(ADMIN_URI)
  u.pathname = `/${name}`
  const db = openPostgres(u.toString())
  try {
    // The floor is only honest with the durability the bridge gets: say what the server did.
    const server: Record<string, string> = {}
    for (const setting of ['fsync', 'synchronous_commit', 'wal_sync_method']) server[setting] = (await admin.query<Record<string, string>>(`SHOW ${setting}`)).rows[0]![setting]!
    await migrate(db)
    await seed(db, Array.from({ length: 10 }, (_, i) => benchRoomId(i)))
    const portals = await floorPortals(u.toString())
    log(`floor: PostgreSQL committing the rows of Matrix → both messages, 10 clients, batches of up to 50, ${FLOOR_STEP_S} s per step`)
    // The same rows at the latency runs' rate, where every message comes alone (batches of 1): the least CPU
    // PostgreSQL can spend on the bridge's write set for a lone message, beside the bridge's own figure (issue 19,
    // point 5). First, on the fresh database: after the ramp, autovacuum and checkpoints would still be catching up
    // with its hundred thousand rows and count here. It starts from the bridge runs' history (bench/history.ts):
    // on empty tables each connection keeps plans made for a few rows, which cost the floor about 1 ms per message.
    await loadHistory(db)
    const latencyRate = Number(opt['latency-rate'])
    const counted = { cpuMeter: postgresCpuMeter, committed: 0, usedCpuUs: 0 }
    await postgresFloorStep(u.toString(), portals, latencyRate, LATENCY_S * 1000, counted)
    const atLatencyRate = { ratePerS: latencyRate, postgresCpuUsPerMsg: round(counted.usedCpuUs / Math.max(1, counted.committed)) }
    log(`  at ${latencyRate} msg/s, one at a time: PostgreSQL CPU ${atLatencyRate.postgresCpuUsPerMsg} µs per message`)
    const plateau = await rampToPlateau(async rate => {
      const perS = await postgresFloorStep(u.toString(), portals, rate, FLOOR_STEP_S * 1000)
      log(`  offered ${rate}/s: committed ${round(perS)} messages/s`)
      return perS
    }, 500)
    log(`  plateau ${plateau.plateauPerS} messages/s (${Object.entries(server).map(([k, v]) => `${k} ${v}`).join(', ')})`)
    return { ...plateau, server, atLatencyRate }
  } finally {
    await db.close()
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    await admin.end()
  }
}

// ---- main ----------------------------------------------------------------------------------------------

const started = Date.now()
const scales = opt.scales.split(',').map(Number)
const runs: RunResult[] = []
const ghostRuns: GhostRunResult[] = []
const idle: Array<{ portals: number; encrypted?: boolean; rssMb: number; heapUsedMb: number; heapTotalMb: number; externalMb: number }> = []
const peaks: number[] = []
const rate50 = Number(opt['rate-batch50'])
const rate1 = Number(opt['rate-batch1'])
const rateRemote = Number(opt['rate-remote'])
const latencyRate = Number(opt['latency-rate'])

const only = opt.only ? new Set(opt.only.split(',')) : undefined
const want = (key: string): boolean => !only || only.has(key)
// The floors first, on the same server, before any bridge has written to it.
const floors = {
  framework: want('floor-framework') ? await frameworkFloor() : undefined,
  postgres: want('floor-postgres') ? await postgresFloor() : undefined,
}
// The disk alone, at the latency rate: the flush every commit waits for (bench/disk.ts).
const disk = want('disk') ? await probeDisk(`${BUILD}disk-probe`, latencyRate, LATENCY_S * 1000) : undefined
// The machine alone: the same work back to back and after the latency runs' gap between messages (bench/wake.ts).
const wake = want('wake') ? await probeWake(`${BUILD}bench/wake.js`, 1000 / latencyRate) : undefined
if (wake) log(`wake-ups: the same work costs ${wake.backToBackUs} µs of CPU back to back and ${wake.afterGapUs} µs started ${wake.gapMs} ms after the last (×${wake.factor}); the wake-up alone ${wake.wakeOnlyUs} µs; a write to another process ${wake.peerWriteUs.asleep} µs when it wakes that process, ${wake.peerWriteUs.busy} µs when it is busy`)
if (disk) log(`disk: ${disk.flushes} flushes of 8 KiB at ${disk.ratePerS}/s: p50 ${disk.flushMs.p50} ms, p99 ${disk.flushMs.p99} ms, p99.9 ${disk.flushMs.p999} ms, max ${disk.flushMs.max} ms; ${disk.over50ms} over 50 ms${disk.over50ms ? ` (at ${disk.slowAtS.slice(0, 10).join(', ')} s)` : ''}`)

for (const n of scales) {
  log(`setting up ${n} portals`)
  const w = await makeWorld(n)
  try {
    // Idle: started, connected, nothing to do; then again with encryption on (the wasm crypto and the device loaded).
    const first = n === scales[0]
    for (const encrypted of [false, true]) {
      if (!want(encrypted ? 'idle-e2ee' : 'idle') || (encrypted && !first)) continue
      if (encrypted) enableEncryption(w)
      const child = await startBridgeProcess(w, encrypted)
      const start = await child.stats()
      await sleep(5000)
      const s = await child.stats()
      log(`  idle CPU${encrypted ? ' (encryption on)' : ''}: ${round((s.cpuUs - start.cpuUs) / 5000 / 10, 2)} % of a core`)
      const mb = (b = NaN): number => round(b / 2 ** 20)
      idle.push({ portals: n, ...(encrypted ? { encrypted } : {}), rssMb: mb(s.rss), heapUsedMb: mb(s.heapUsed), heapTotalMb: mb(s.heapTotal), externalMb: mb(s.external) })
      log(`  idle RSS with ${n} portals${encrypted ? ', encryption on' : ''}: ${mb(s.rss)} MB (V8 heap ${mb(s.heapUsed)} MB used of ${mb(s.heapTotal)} MB, external ${mb(s.external)} MB)`)
      await stopBridgeProcess(w)
    }
    if (want('matrix50')) runs.push(await run(w, 'matrix', { rate: rate50, durationS: SUSTAINED_S, batch: 50, name: 'sustained' }))
    if (want('matrix-synapse')) runs.push(await run(w, 'matrix', { rate: rate50, durationS: SUSTAINED_S, batch: 50, name: 'synapse', push: 'synapse' }))
    if (first && want('matrix1')) runs.push(await run(w, 'matrix', { rate: rate1, durationS: SUSTAINED_S, batch: 1, name: 'sustained' }))
    if (first && want('signal')) runs.push(await run(w, 'signal', { rate: rateRemote, durationS: SUSTAINED_S, name: 'sustained' }))
    if (first && want('whatsapp')) runs.push(await run(w, 'whatsapp', { rate: rateRemote, durationS: SUSTAINED_S, name: 'sustained' }))
    if (want('latency-matrix')) runs.push(await run(w, 'matrix', { rate: latencyRate, durationS: LATENCY_S, batch: 1, name: 'latency' }))
    if (first && want('latency-signal')) runs.push(await run(w, 'signal', { rate: latencyRate, durationS: LATENCY_S, name: 'latency' }))
    if (first && want('latency-whatsapp')) runs.push(await run(w, 'whatsapp', { rate: latencyRate, durationS: LATENCY_S, name: 'latency' }))
    // Last: the registration then asks for the encryption extensions, which the plain runs above did without.
    if (first && want('matrix50-e2ee')) runs.push(await run((enableEncryption(w), w), 'matrix', { rate: rate50, durationS: SUSTAINED_S, batch: 50, name: 'sustained', encrypted: true }))
    if (first && want('latency-matrix-e2ee')) runs.push(await run((enableEncryption(w), w), 'matrix', { rate: latencyRate, durationS: LATENCY_S, batch: 1, name: 'latency', encrypted: true }))
    if (first && want('ghosts-e2ee')) for (const g of opt.ghosts.split(',').map(Number)) ghostRuns.push(await ghostRun((enableEncryption(w), w), g))
  } finally {
    peaks.push(w.peakRss)
    await closeWorld(w)
  }
}

// ---- report --------------------------------------------------------------------------------------------

const find = (f: (r: RunResult) => boolean): RunResult | undefined => runs.find(f)
const m50 = find(r => r.name === 'sustained' && r.direction === 'matrix' && r.batch === 50 && r.portals === scales[0] && !r.encrypted)
const m50e = find(r => r.name === 'sustained' && r.direction === 'matrix' && r.encrypted === true)
const latE = find(r => r.name === 'latency' && r.direction === 'matrix' && r.encrypted === true)
const m1 = find(r => r.name === 'sustained' && r.direction === 'matrix' && r.batch === 1 && r.portals === scales[0])
const lat = (['matrix', 'signal', 'whatsapp'] as const).map(d => find(r => r.name === 'latency' && r.direction === d && r.portals === scales[0] && !r.encrypted))
const smallest = find(r => r.name === 'sustained' && r.batch === 50 && r.portals === Math.min(...scales) && !r.encrypted)
const largest = find(r => r.name === 'sustained' && r.batch === 50 && r.portals === Math.max(...scales) && !r.encrypted)
const costRatio = smallest && largest ? largest.bridgeCpuUsPerMsg / smallest.bridgeCpuUsPerMsg : NaN
const wallRatio = smallest && largest ? smallest.relayedPerS / largest.relayedPerS : NaN
const idle1000 = idle.find(i => i.portals === 1000 && !i.encrypted)?.rssMb
/** Signal → others and WhatsApp → others, saturated, at the first portal count (issue 19, point 3). */
const remote = (['signal', 'whatsapp'] as const).map(d => find(r => r.name === 'sustained' && r.direction === d && r.portals === scales[0])).filter(r => r !== undefined)
const synapse = scales.map(n => find(r => r.name === 'synapse' && r.portals === n)).filter(r => r !== undefined)
const ratio = (r: RunResult | undefined, floor: Plateau | undefined): number | null => (r && floor ? round(r.relayedPerS / floor.plateauPerS, 3) : null)
const perScale = (name: string, f: (r: RunResult) => number | null): Record<string, number | null> =>
  Object.fromEntries(runs.filter(r => r.name === name && r.direction === 'matrix' && r.batch === 50 && !r.encrypted).map(r => [`${r.portals}`, f(r)]))
/** Matrix → both (batches of 50, 64 in flight; and pushed as Synapse pushes) over each floor's plateau, per portal count. */
const ratioToFloors = {
  postgres: { sustained: perScale('sustained', r => ratio(r, floors.postgres)), synapse: perScale('synapse', r => ratio(r, floors.postgres)) },
  framework: { sustained: perScale('sustained', r => ratio(r, floors.framework)), synapse: perScale('synapse', r => ratio(r, floors.framework)) },
}
const pgRatios = [...Object.values(ratioToFloors.postgres.sustained), ...Object.values(ratioToFloors.postgres.synapse)].filter(v => v !== null)
const targets = {
  matrixToBothPerS: { target: 2000, batch50: m50?.relayedPerS, batch1: m1?.relayedPerS, met: (m50?.relayedPerS ?? 0) >= 2000 },
  matrixSynapsePerS: { target: 2000, ...Object.fromEntries(synapse.map(r => [`${r.portals} portals`, r.relayedPerS])), met: synapse.length > 0 && synapse.every(r => r.relayedPerS >= 2000) },
  ratioToPostgresFloor: { target: 0.5, floorPerS: floors.postgres?.plateauPerS ?? null, ...ratioToFloors.postgres, met: pgRatios.length > 0 && pgRatios.every(v => v >= 0.5) },
  ratioToFrameworkFloor: { target: 'reported', floorPerS: floors.framework?.plateauPerS ?? null, ...ratioToFloors.framework },
  p99At100PerS: { targetMs: 50, ...Object.fromEntries(lat.map(r => [r?.direction ?? '?', r?.latencyMs.p99])), met: lat.every(r => r && r.latencyMs.p99 <= 50) },
  scaling: { target: 'cost at the largest portal count within 20 % of the smallest', cpuPerMsgRatio: round(costRatio, 2), wallPerMsgRatio: round(wallRatio, 2), met: costRatio <= 1.2 && wallRatio <= 1.2 },
  idleRssWith1000Portals: { targetMb: 120, mb: idle1000, met: idle1000 !== undefined && idle1000 <= 120 },
  remotePerS: { target: 1000, ...Object.fromEntries(remote.map(r => [r.direction, r.relayedPerS])), met: remote.length === 2 && remote.every(r => r.relayedPerS >= 1000) },
  peakRssUnderRemoteLoad: { targetMb: 250, mb: remote.length ? round(Math.max(...remote.map(r => r.bridgeMaxRssMb))) : undefined, met: remote.length === 2 && remote.every(r => r.bridgeMaxRssMb < 250) },
  cpuPerMsgAt100PerS: {
    targetUs: { bridge: 2000, postgres: 1500 },
    ...Object.fromEntries(lat.filter(r => r !== undefined).map(r => [r.direction, { bridge: r.bridgeCpuUsPerMsg, postgres: r.postgresCpuUsPerMsg }])),
    postgresFloorUs: floors.postgres?.atLatencyRate.postgresCpuUsPerMsg,
    /** The machine's factor for work started after the latency runs' gap (bench/wake.ts), reported beside. */
    machineWakeFactor: wake?.factor,
    met: lat.every(r => r && r.bridgeCpuUsPerMsg <= 2000 && r.postgresCpuUsPerMsg <= 1500),
  },
}
const results = {
  when: new Date().toISOString(),
  machine: { nproc: cpus().length, cpu: cpus()[0]?.model, memoryGb: round(totalmem() / 2 ** 30), node: process.version, postgres: process.env.PG_VERSION ?? 'external (RELAY_BRIDGE_BENCH_DATABASE_URI)' },
  settings: {
    sustainedS: SUSTAINED_S, latencyS: LATENCY_S, floorStepS: FLOOR_STEP_S, offered: { batch50: rate50, batch1: rate1, remote: rateRemote, latency: latencyRate },
    whatsappPacing: 'off (paceMs [0, 0]); production jitters 0.8–2.5 s between two sends to one group',
    fakes: 'signal-cli daemon (HTTP + SSE) and homeserver in the parent process; WhatsApp socket in the bridge process; all acknowledge at once',
    postgres: 'a real server on loopback, fsync on; one fresh database per portal count, queues truncated before each run',
  },
  /** Each floor's steps and plateau (bench/floors.ts), and relay-bridge's Matrix → both over each. */
  floors,
  /** The disk's flushes alone at the latency rate (bench/disk.ts): what a commit waits for. */
  disk,
  /** The same work back to back and after the latency runs' gap (bench/wake.ts): the machine's part in their CPU. */
  wake,
  ratioToFloors,
  idleRss: idle,
  /** What encryption costs: Matrix → both networks in encrypted portals beside the same runs in plain ones. */
  encryption: {
    matrixToBothPerS: { plain: m50?.relayedPerS ?? null, encrypted: m50e?.relayedPerS ?? null },
    matrixP99Ms: { plain: lat[0]?.latencyMs.p99 ?? null, encrypted: latE?.latencyMs.p99 ?? null },
    bridgeCpuUsPerMsg: { plain: m50?.bridgeCpuUsPerMsg ?? null, encrypted: m50e?.bridgeCpuUsPerMsg ?? null },
    idleRssMb: { plain: idle.find(i => i.portals === scales[0] && !i.encrypted)?.rssMb ?? null, encrypted: idle.find(i => i.encrypted)?.rssMb ?? null },
    /** Each speaking ghost's own device (issue 14): Signal → both in encrypted portals, by number of ghosts. */
    ghostDevices: ghostRuns,
  },
  peakRssMb: round(Math.max(...peaks) / 2 ** 20),
  runs,
  targets,
  wallS: round((Date.now() - started) / 1000),
}
await writeFile(resolvePath(ROOT, opt.out), JSON.stringify(results, null, 2) + '\n')

const rows = runs.map(r => [
  r.encrypted ? `${r.name} (encrypted)` : r.name, String(r.portals), `${r.direction} → ${TARGETS[r.direction].join('+')}`, r.batch ? String(r.batch) : '-', String(r.offeredPerS),
  String(r.relayedPerS), String(r.latencyMs.p50), String(r.latencyMs.p95), String(r.latencyMs.p99), String(r.bridgeCpuUsPerMsg),
  String(r.postgresCpuUsPerMsg), String(r.harnessCpuUsPerMsg), String(r.unfinished),
])
const head = ['run', 'portals', 'direction', 'batch', 'offered/s', 'relayed/s', 'p50 ms', 'p95 ms', 'p99 ms', 'bridge CPU µs/msg', 'PostgreSQL', 'harness', 'unfinished']
const widths = head.map((h, i) => Math.max(h.length, ...rows.map(r => r[i]!.length)))
const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ')
console.log(line(head))
for (const r of rows) console.log(line(r))
console.log(`floors (plateaus): bot-sdk Appservice acknowledging ${floors.framework?.plateauPerS ?? '–'} events/s; PostgreSQL committing ${floors.postgres?.plateauPerS ?? '–'} messages/s`)
console.log(`Matrix → both over the PostgreSQL floor (target ≥ 0.5): ${JSON.stringify(ratioToFloors.postgres)}; over the framework floor (reported): ${JSON.stringify(ratioToFloors.framework)}`)
console.log(`idle RSS: ${idle.map(i => `${i.portals} portals${i.encrypted ? ' (encryption on)' : ''} ${i.rssMb} MB`).join(', ')}; peak ${results.peakRssMb} MB`)
console.log(`encryption: ${JSON.stringify({ ...results.encryption, ghostDevices: undefined })}`)
for (const g of ghostRuns) {
  console.log(`ghosts' own devices, ${g.ghosts} speaking ghosts: ${g.messages} messages, ${g.devicesCreated} devices created, Olm sessions/msg ${g.olmSessionsPerMsg}, ` +
    `room keys/msg ${g.roomKeysPerMsg}, p50/p99 ${g.latencyMs.p50}/${g.latencyMs.p99} ms, CPU µs/msg bridge ${g.bridgeCpuUsPerMsg}, PostgreSQL ${g.postgresCpuUsPerMsg}, peak RSS ${g.bridgeMaxRssMb} MB`)
}
console.log(`targets: ${JSON.stringify(targets)}`)
console.log(`wrote ${opt.out} in ${results.wallS} s`)
process.exit(0)
