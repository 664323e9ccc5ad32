// Starting the bridge: what the operator reads when the homeserver is missing or misconfigured, and the
// metrics listener.
import { writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { afterEach, describe, expect, it } from 'vitest'
import { startBridge, type Bridge } from '../../src/bridge.ts'
import { buildRegistration } from '../../src/registration.ts'
import { FakeHomeserver } from '../fakes/homeserver.ts'
import { MemoryNetwork } from '../fakes/memory-network.ts'
import { STRANGER } from '../support/bridge.ts'
import { runCli, startCli } from '../support/cli.ts'
import { AS_TOKEN, HS_TOKEN, tempDir, testConfig } from '../support/config.ts'
import { freshDb } from '../support/db.ts'
import { seedPgliteDataDir } from '../support/global-pglite.ts'
import { captureLog } from '../support/log.ts'

/** A port another program holds for as long as the test runs. */
async function busyPort(): Promise<{ port: number; server: Server }> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { port: (server.address() as { port: number }).port, server }
}

/** A configuration an operator has finished filling in, on a migrated embedded database. */
async function filledConfig(dir: string, ports: { appservice: number; metrics: number }): Promise<string> {
  const path = join(dir, 'config.yaml')
  await writeFile(path, stringify({
    homeserver: { address: 'http://127.0.0.1:1', domain: 'family.example' },
    appservice: { address: `http://127.0.0.1:${ports.appservice}`, hostname: '127.0.0.1', port: ports.appservice, id: 'rb', bot: { username: 'relaybot' }, as_token: AS_TOKEN, hs_token: HS_TOKEN },
    database: { uri: '' }, data_dir: join(dir, 'data'), signal: { daemon_url: 'http://127.0.0.1:1' },
    bridge: { admin: '@me:family.example' }, metrics: { enabled: true, hostname: '127.0.0.1', port: ports.metrics }, logging: { level: 'info' },
  }), { mode: 0o600 })
  await seedPgliteDataDir(join(dir, 'data'))
  return path
}

const count = (text: string, part: string): number => text.split(part).length - 1

describe('start-up', () => {
  let bridge: Bridge | undefined
  let hs: FakeHomeserver | undefined
  afterEach(async () => {
    await bridge?.stop()
    await hs?.stop()
    bridge = hs = undefined
  })

  it('against an unreachable homeserver, the running bridge says so in a sentence and keeps retrying', async () => {
    const dir = await tempDir()
    const config = join(dir, 'config.yaml')
    await writeFile(config, stringify({
      homeserver: { address: 'http://127.0.0.1:1', domain: 'test.example' },
      appservice: { address: 'http://127.0.0.1:29999', hostname: '127.0.0.1', port: 0, id: 'rb', bot: { username: 'relaybot' }, as_token: AS_TOKEN, hs_token: HS_TOKEN },
      database: { uri: '' }, data_dir: join(dir, 'data'), signal: { daemon_url: 'http://127.0.0.1:1' },
      bridge: {}, metrics: { enabled: false, port: 0 }, logging: { level: 'info' },
    }), { mode: 0o600 })
    await seedPgliteDataDir(join(dir, 'data'))
    const { child, output } = await startCli(['start', '-c', config], /Retrying the homeserver in \d+ s/)
    expect(output()).toMatch(/Cannot reach the homeserver at http:\/\/127\.0\.0\.1:1 \(ECONNREFUSED\)\. Is homeserver\.address right, and is the homeserver running\?/)
    expect(output()).not.toMatch(/\n\s+at /) // no stack trace
    // Only JSON lines: no deprecation warning of a dependency among them.
    for (const line of output().split('\n').filter(Boolean)) expect(() => JSON.parse(line), line).not.toThrow()
    const exited = new Promise<number | null>(resolve => child.on('close', resolve))
    child.kill('SIGTERM')
    expect(await exited).toBe(0)
  })

  it('a homeserver that rejects the as_token is named as the cause, with what to do', async () => {
    hs = await FakeHomeserver.start()
    const { log, text } = captureLog()
    const config = testConfig({ homeserver: hs.url, dataDir: await tempDir() })
    Object.assign(hs.registration, buildRegistration(config), { as_token: 'something-else' })
    bridge = await startBridge(config, { log, db: await freshDb('pglite'), networks: [], timings: { homeserverRetryMs: 60_000 } })
    expect(text()).toMatch(/rejected the bridge's as_token[\s\S]*generate-registration/)
  })

  it('when the homeserver cannot reach the bridge back, the ping result says which address to check', async () => {
    hs = await FakeHomeserver.start()
    const { log, text } = captureLog()
    const config = testConfig({ homeserver: hs.url, dataDir: await tempDir() })
    Object.assign(hs.registration, buildRegistration(config))
    hs.setAppserviceUrl('http://127.0.0.1:1') // the registration points nowhere
    bridge = await startBridge(config, { log, db: await freshDb('pglite'), networks: [] })
    expect(text()).toMatch(/The homeserver cannot deliver to the bridge at .*: The homeserver cannot reach the bridge/)
  })

  it('registers the bot with its display name, and serves /metrics and /health', async () => {
    const home = hs = await FakeHomeserver.start()
    const { log } = captureLog()
    const config = testConfig({ homeserver: hs.url, dataDir: await tempDir(), extra: raw => { raw.metrics = { enabled: true, hostname: '127.0.0.1', port: 0 } } })
    Object.assign(hs.registration, buildRegistration(config))
    const net = new MemoryNetwork('signal')
    bridge = await startBridge(config, { log, db: await freshDb('pglite'), networks: [net] })
    hs.setAppserviceUrl(`http://127.0.0.1:${bridge.port}`)
    expect(hs.isRegistered('@relaybot:example.org')).toBe(true)
    expect(hs.profile('@relaybot:example.org')?.displayname).toBe('Relay bridge')
    // One transaction through the real endpoint, so the counters move (the homeserver may push others of its own,
    // such as the greeting's direct chat: the counter is read before and after, once they are through).
    const stored = async () => Number(/relay_bridge_transactions_received_total\{result="stored"\} (\d+)/.exec(await (await fetch(`http://127.0.0.1:${bridge!.metricsPort}/metrics`)).text())?.[1] ?? 0)
    await home.waitFor(() => home.pendingForAppservice === 0, { what: 'the homeserver to deliver what it had queued' })
    const before = await stored()
    const res = await fetch(`http://127.0.0.1:${bridge.port}/_matrix/app/v1/transactions/t1`, {
      method: 'PUT', headers: { Authorization: `Bearer ${HS_TOKEN}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ events: [{ type: 'm.room.message', event_id: '$a:example.org', room_id: '!r:example.org', sender: '@x:example.org', content: { body: 'x' } }] }),
    })
    expect(res.status).toBe(200)
    const metrics = await (await fetch(`http://127.0.0.1:${bridge.metricsPort}/metrics`)).text()
    expect(await stored()).toBe(before + 1)
    expect(metrics).toMatch(/relay_bridge_events_received_total\{type="m.room.message"\} [1-9]/) // the greeting's too
    expect(metrics).toMatch(/relay_bridge_db_query_seconds_bucket/)
    expect(metrics).toMatch(/process_resident_memory_bytes/)
    const health = await fetch(`http://127.0.0.1:${bridge.metricsPort}/health`)
    expect(health.status).toBe(200)
    expect(await health.json()).toMatchObject({ status: 'ok' })
  })

  it('with the metrics port taken, start ends with a non-zero status and one sentence naming metrics.port', async () => {
    const dir = await tempDir()
    const taken = await busyPort()
    try {
      const free = await busyPort()
      await new Promise(resolve => free.server.close(resolve))
      const run = await runCli(['start', '-c', await filledConfig(dir, { appservice: free.port, metrics: taken.port })], { cwd: dir })
      expect(run.code).toBe(1)
      const all = run.stdout + run.stderr
      expect(run.stderr).toMatch(new RegExp(`Another program already listens on 127\\.0\\.0\\.1:${taken.port}, so the bridge cannot receive metrics and health checks there: stop that program, or choose a free port in metrics\\.port \\(RELAY_BRIDGE_METRICS_PORT\\), or set metrics\\.enabled to false\\.`))
      expect(count(all, 'Another program already listens')).toBe(1)
      expect(all).not.toMatch(/EADDRINUSE/)
    } finally {
      taken.server.close()
    }
  })

  it('with the appservice port taken, start ends with a non-zero status and one sentence naming appservice.port', async () => {
    const dir = await tempDir()
    const taken = await busyPort()
    try {
      const run = await runCli(['start', '-c', await filledConfig(dir, { appservice: taken.port, metrics: 0 })], { cwd: dir })
      expect(run.code).toBe(1)
      const all = run.stdout + run.stderr
      expect(run.stderr).toMatch(new RegExp(`Another program already listens on 127\\.0\\.0\\.1:${taken.port}, so the bridge cannot receive the homeserver's transactions there: .*appservice\\.port \\(RELAY_BRIDGE_APPSERVICE_PORT\\) \\(and appservice\\.address to match`))
      expect(count(all, 'Another program already listens')).toBe(1)
      expect(all).not.toMatch(/EADDRINUSE/)
    } finally {
      taken.server.close()
    }
  })

  it('a homeserver whose server name is not homeserver.domain stops the start with a sentence saying both names', async () => {
    hs = await FakeHomeserver.start({ domain: 'real.example' })
    const config = testConfig({ homeserver: hs.url, dataDir: await tempDir() })
    Object.assign(hs.registration, buildRegistration(config))
    const db = await freshDb('pglite')
    try {
      await expect(startBridge(config, { log: captureLog().log, db, networks: [], timings: { homeserverRetryMs: 60_000 } })).rejects.toThrow(
        /^homeserver\.domain is example\.org, but the homeserver at http:\/\/127\.0\.0\.1:\d+ names its users @…:real\.example\. Set homeserver\.domain to real\.example/)
    } finally {
      await db.close()
    }
  })

  it('a start where no permission entry lets homeserver.domain in says so', async () => {
    hs = await FakeHomeserver.start()
    const { log, text } = captureLog()
    const config = testConfig({ homeserver: hs.url, dataDir: await tempDir(), extra: raw => { raw.bridge.permissions = { '*': 'relay', 'other.example': 'user' } } })
    Object.assign(hs.registration, buildRegistration(config))
    bridge = await startBridge(config, { log, db: await freshDb('pglite'), networks: [] })
    expect(text()).toMatch(/No entry in bridge\.permissions lets anyone on example\.org \(homeserver\.domain\) use the bridge/)
  })

  it('with the example permissions and the operator\'s own domain, the bot accepts the operator\'s invitation and logs the rule that declines a stranger\'s', async () => {
    hs = await FakeHomeserver.start({ domain: 'family.example' })
    const { log, lines } = captureLog()
    const config = testConfig({ homeserver: hs.url, dataDir: await tempDir(), extra: raw => { raw.homeserver.domain = 'family.example' } })
    Object.assign(hs.registration, buildRegistration(config))
    bridge = await startBridge(config, { log, db: await freshDb('pglite'), networks: [] })
    hs.setAppserviceUrl(`http://127.0.0.1:${bridge.port}`)
    const me = '@me:family.example'
    hs.createUser(me)
    const mine = await hs.createRoom(me, { invite: [hs.botUserId] })
    await hs.waitFor(() => hs!.membership(mine, hs!.botUserId) === 'join', { what: "the bot to accept the operator's invitation" })
    hs.createUser(STRANGER)
    const theirs = await hs.createRoom(STRANGER, { invite: [hs.botUserId] })
    await hs.waitFor(() => hs!.membership(theirs, hs!.botUserId) === 'leave', { what: "the bot to decline the stranger's invitation" })
    expect(lines.find(l => l.msg.startsWith('Declined'))).toMatchObject({
      level: 40, sender: STRANGER, rule: '*', granted: 'relay',
      msg: expect.stringMatching(/the bridge\.permissions entry "\*" gives them "relay", and joining a room needs "user" or "admin"/),
    })
  })
})
