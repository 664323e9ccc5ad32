// Starting the bridge: what the operator reads when the homeserver is missing or misconfigured, and the
// metrics listener.
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { afterEach, describe, expect, it } from 'vitest'
import { startBridge, type Bridge } from '../../src/bridge.ts'
import { buildRegistration } from '../../src/registration.ts'
import { FakeHomeserver } from '../fakes/homeserver.ts'
import { MemoryNetwork } from '../fakes/memory-network.ts'
import { startCli } from '../support/cli.ts'
import { AS_TOKEN, HS_TOKEN, tempDir, testConfig } from '../support/config.ts'
import { freshDb } from '../support/db.ts'
import { captureLog } from '../support/log.ts'

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
    }))
    const { child, output } = await startCli(['start', '-c', config], /Retrying the homeserver in \d+ s/)
    expect(output()).toMatch(/Cannot reach the homeserver at http:\/\/127\.0\.0\.1:1 \(ECONNREFUSED\)\. Is homeserver\.address right, and is the homeserver running\?/)
    expect(output()).not.toMatch(/\n\s+at /) // no stack trace
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
    hs = await FakeHomeserver.start()
    const { log } = captureLog()
    const config = testConfig({ homeserver: hs.url, dataDir: await tempDir(), extra: raw => { raw.metrics = { enabled: true, hostname: '127.0.0.1', port: 0 } } })
    Object.assign(hs.registration, buildRegistration(config))
    const net = new MemoryNetwork('signal')
    bridge = await startBridge(config, { log, db: await freshDb('pglite'), networks: [net] })
    hs.setAppserviceUrl(`http://127.0.0.1:${bridge.port}`)
    expect(hs.isRegistered('@relaybot:example.org')).toBe(true)
    expect(hs.profile('@relaybot:example.org')?.displayname).toBe('Relay bridge')
    // One transaction through the real endpoint, so the counters move.
    const res = await fetch(`http://127.0.0.1:${bridge.port}/_matrix/app/v1/transactions/t1`, {
      method: 'PUT', headers: { Authorization: `Bearer ${HS_TOKEN}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ events: [{ type: 'm.room.message', event_id: '$a:example.org', room_id: '!r:example.org', sender: '@x:example.org', content: { body: 'x' } }] }),
    })
    expect(res.status).toBe(200)
    const metrics = await (await fetch(`http://127.0.0.1:${bridge.metricsPort}/metrics`)).text()
    expect(metrics).toMatch(/relay_bridge_transactions_received_total\{result="stored"\} 1/)
    expect(metrics).toMatch(/relay_bridge_events_received_total\{type="m.room.message"\} 1/)
    expect(metrics).toMatch(/relay_bridge_db_query_seconds_bucket/)
    expect(metrics).toMatch(/process_resident_memory_bytes/)
    const health = await fetch(`http://127.0.0.1:${bridge.metricsPort}/health`)
    expect(health.status).toBe(200)
    expect(await health.json()).toMatchObject({ status: 'ok' })
  })
})
