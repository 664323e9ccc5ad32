// End-to-end: the real bridge process (test/e2e/entry.ts, which is runBridge with the fake WhatsApp socket
// injected) against the fake homeserver and the fake signal-cli daemon, both real HTTP servers in the test
// process. People drive it only the way people do: Matrix messages and commands, Signal envelopes, WhatsApp
// messages.
import type { ChildProcess } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { stringify } from 'yaml'
import { validateConfig } from '../../src/config.ts'
import { buildRegistration } from '../../src/registration.ts'
import { FakeHomeserver, type FakeEvent } from '../fakes/homeserver.ts'
import { FakeSignalDaemon } from '../fakes/signal-daemon.ts'
import { forkChild, stopChild } from '../support/children.ts'
import { freePort } from '../support/ports.ts'
import { AS_TOKEN, HS_TOKEN, tempDir } from '../support/config.ts'
import { createPostgresDatabase, type DbKind } from '../support/db.ts'
import { PATIENCE_MS } from '../support/patience.ts'
import { seedPgliteDataDir } from '../support/global-pglite.ts'
import { reader } from '../support/encrypted-room.ts'
import type { OlmPeer } from '../support/olm-peer.ts'

const ENTRY = fileURLToPath(new URL('./entry.ts', import.meta.url))

export interface WaSent {
  jid: string
  id: string
  content: Record<string, any>
  quotedId: string | null
}

export class E2E {
  readonly hs: FakeHomeserver
  readonly daemon: FakeSignalDaemon
  readonly dir: string
  readonly configPath: string
  readonly sentLog: string
  readonly databaseUri: string
  child: ChildProcess | undefined
  private output = ''
  /** The device through which a user of the story reads and writes encrypted rooms, once one is given. */
  private device: { peer: OlmPeer; read: ReturnType<typeof reader> } | undefined
  private nextId = 1
  private readonly pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>()

  private constructor(hs: FakeHomeserver, daemon: FakeSignalDaemon, dir: string, databaseUri: string) {
    this.hs = hs
    this.daemon = daemon
    this.dir = dir
    this.databaseUri = databaseUri
    this.configPath = join(dir, 'config.yaml')
    this.sentLog = join(dir, 'whatsapp-sent.log')
  }

  static async create(kind: DbKind, opts: { databaseUri?: string; env?: NodeJS.ProcessEnv; configure?: (raw: Record<string, any>) => void } = {}): Promise<E2E> {
    const dir = await tempDir('rb-e2e-')
    const hs = await FakeHomeserver.start({ retryBackoff: { initialMs: 20, maxMs: 500 } })
    const daemon = await FakeSignalDaemon.start({ receiveMode: 'on-connection', keepaliveMs: 1000 })
    const uri = opts.databaseUri ?? (kind === 'postgres' ? await createPostgresDatabase() : '')
    const e = new E2E(hs, daemon, dir, uri)
    const port = await freePort()
    const raw: Record<string, any> = {
      homeserver: { address: hs.url, domain: 'example.org' },
      appservice: { address: `http://127.0.0.1:${port}`, hostname: '127.0.0.1', port, id: 'relay-bridge', bot: { username: 'relaybot', displayname: 'Relay bridge' }, as_token: AS_TOKEN, hs_token: HS_TOKEN },
      database: { uri },
      data_dir: join(dir, 'data'),
      signal: { daemon_url: daemon.url },
      whatsapp: { send_pace_ms: [0, 0] },
      bridge: { permissions: { '*': 'relay', 'example.org': 'user', '@admin:example.org': 'admin' } },
      metrics: { enabled: false, port: 0 },
      logging: { level: process.env.TEST_LOG ?? 'warn' },
    }
    opts.configure?.(raw)
    await writeFile(e.configPath, stringify(raw))
    // An embedded database starts as the run's migrated copy: creating one would cost the process seconds.
    if (!uri) await seedPgliteDataDir(raw.data_dir as string)
    Object.assign(hs.registration, buildRegistration(validateConfig(raw, 'e2e')))
    hs.setAppserviceUrl(`http://127.0.0.1:${port}`)
    await e.start(opts.env)
    return e
  }

  /** Starts the bridge process and waits until it listens. */
  async start(env: NodeJS.ProcessEnv = {}): Promise<void> {
    const child = forkChild(ENTRY, [this.configPath, this.sentLog], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], serialization: 'advanced', env: { ...process.env, ...env } })
    this.child = child
    child.stdout!.on('data', (d: Buffer) => (this.output = (this.output + d).slice(-200_000)))
    child.stderr!.on('data', (d: Buffer) => (this.output = (this.output + d).slice(-200_000)))
    child.on('message', (m: { id?: number; result?: unknown; error?: string }) => {
      if (m.id === undefined) return
      const p = this.pending.get(m.id)
      this.pending.delete(m.id)
      if (m.error !== undefined) p?.reject(new Error(m.error))
      else p?.resolve(m.result)
    })
    const started = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the bridge did not start within ${PATIENCE_MS} ms:\n${this.output}`)), PATIENCE_MS)
      child.on('message', (m: { ready?: boolean }) => {
        if (m.ready) {
          clearTimeout(timer)
          resolve()
        }
      })
      child.once('exit', code => {
        clearTimeout(timer)
        reject(new Error(`the bridge exited with ${code} during start:\n${this.output}`))
      })
    })
    // A bridge that never said it was ready is not left running for the next test to trip over.
    await started.catch(async (err: unknown) => {
      await stopChild(child, 'SIGKILL')
      throw err
    })
  }

  /** Sends the bridge process a real signal and waits for it to be gone (SIGKILL if it is stuck). */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.child) return
    await stopChild(this.child, signal)
    for (const p of this.pending.values()) p.reject(new Error('the bridge process went away'))
    this.pending.clear()
  }

  logs(): string {
    return this.output
  }

  /** Calls a method of the fake WhatsApp inside the bridge process. */
  wa<T = any>(method: string, ...args: unknown[]): Promise<T> {
    const id = this.nextId++
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      this.child!.send({ id, method, args })
    })
  }

  async waSent(): Promise<WaSent[]> {
    const text = await readFile(this.sentLog, 'utf8').catch(() => '')
    return text.split('\n').filter(Boolean).map(l => JSON.parse(l) as WaSent)
  }

  async waitForWaSent(check: (sent: WaSent[]) => boolean, what: string, timeoutMs = PATIENCE_MS): Promise<WaSent[]> {
    const end = Date.now() + timeoutMs
    for (;;) {
      const sent = await this.waSent()
      if (check(sent)) return sent
      if (Date.now() > end) throw new Error(`timed out waiting for WhatsApp: ${what}; sent: ${JSON.stringify(sent.map(s => s.content))}\n${this.output.slice(-5000)}`)
      await new Promise(r => setTimeout(r, 50))
    }
  }

  /** Polls a check that spans several fakes (each fake's own waits only wake on its own changes). */
  async until<T>(check: () => T | undefined | false | Promise<T | undefined | false>, what: string, timeoutMs = PATIENCE_MS): Promise<T> {
    const end = Date.now() + timeoutMs
    for (;;) {
      const v = await check()
      if (v) return v
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${this.output.slice(-5000)}`)
      await new Promise(r => setTimeout(r, 25))
    }
  }

  /** From now on `peer`'s user types in encrypted rooms through that device, and the bot's notices there are read through it. */
  useDevice(peer: OlmPeer): void {
    this.device = { peer, read: reader(this.hs, peer) }
  }

  /** The room as people read it: decrypted where a device was given with useDevice, else as the homeserver holds it. */
  clearTimeline(room: string): FakeEvent[] {
    return this.device?.read.view(room) ?? this.hs.timeline(room)
  }

  /** Sends as `user`, encrypted by their device where the room is encrypted and they have one (as Element does). */
  say(user: string, room: string, content: string | Record<string, unknown>): Promise<string> {
    if (this.device?.peer.userId === user && this.hs.stateContent(room, 'm.room.encryption')) return this.device.peer.send(room, content as never)
    return this.hs.sendMessage(user, room, content)
  }

  /** Waits for `check` over the room as people read it; an encrypted room is re-read through the device meanwhile. */
  private waitInRoom<T>(room: string, check: () => T | undefined | false, what: string, timeoutMs = PATIENCE_MS): Promise<T> {
    const device = this.device
    if (device && this.hs.stateContent(room, 'm.room.encryption')) return this.until(async () => (await device.read.timeline(room), check()), what, timeoutMs)
    return this.hs.waitFor(check, { timeoutMs, what })
  }

  botEvents(room: string): FakeEvent[] {
    return this.clearTimeline(room).filter(e => e.sender === this.hs.botUserId && e.type === 'm.room.message')
  }

  notices(room: string): string[] {
    return this.botEvents(room).filter(e => (e.content as any).msgtype === 'm.notice' && !(e.content as any)['m.new_content']).map(e => String((e.content as any).body))
  }

  async waitForNotice(room: string, match: RegExp, timeoutMs = PATIENCE_MS): Promise<string> {
    await this.waitInRoom(room, () => this.notices(room).some(n => match.test(n)), `a notice matching ${match} (logs:\n${this.output.slice(-3000)})`, timeoutMs)
    return this.notices(room).find(n => match.test(n))!
  }

  /** Types a command as `user` in `room` and returns the bot's next notice there. */
  async command(user: string, room: string, text: string): Promise<string> {
    const before = this.notices(room).length
    await this.say(user, room, text)
    await this.waitInRoom(room, () => this.notices(room).length > before, `a reply to ${text}`)
    return this.notices(room)[before]!
  }

  async stop(): Promise<void> {
    if (process.env.E2E_DEBUG) console.log(this.output)
    await this.kill('SIGTERM')
    await this.daemon.stop()
    await this.hs.stop()
  }
}
