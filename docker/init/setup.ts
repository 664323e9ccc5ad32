// The compose stack's one-shot `init` service: everything the walk-through once asked the operator to do by
// hand, done before the other containers start, and again harmlessly at every `docker compose up`.
//
//   - database passwords, generated once into the secrets volume (PostgreSQL reads them from files);
//   - Synapse's homeserver.yaml (PostgreSQL, the bridge's registration, a shared secret to create the admin)
//     and its signing key, written when missing and never overwritten;
//   - the bridge's config.yaml (database.uri) and registration (tokens), through `relay-bridge
//     generate-registration`, and a copy of the registration where Synapse reads it;
//   - ownership: the bridge and Synapse run as uid 991, PostgreSQL as 999, and signal-cli writes the
//     attachments the bridge removes. Done here, as root, so that no one needs `sudo chown`.
//
// Every path comes from the environment, so tests run this outside Docker against a temporary directory.
// Plain TypeScript that Node runs directly (type stripping): the image has Node, not the compiler.
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseDocument, stringify } from 'yaml'

const env = process.env
const fail = (sentence: string): never => {
  console.error(`init: ${sentence}`)
  process.exit(1)
}

const serverName = env.SERVER_NAME ?? ''
if (!/^[a-zA-Z0-9.-]+(:\d+)?$/.test(serverName) || serverName === 'example.org') {
  fail('Set SERVER_NAME in .env to your Matrix server name (the part after the colon in user ids), then run `docker compose up -d` again.')
}
const adminUser = env.ADMIN_USER ?? ''
if (!/^[a-z0-9._=/-]+$/.test(adminUser)) fail('Set ADMIN_USER in .env to the admin\'s user name (lower case, e.g. alice), then run `docker compose up -d` again.')

const secretsDir = env.SECRETS_DIR ?? '/secrets'
const synapseDir = env.SYNAPSE_DATA ?? '/synapse'
const bridgeDir = env.BRIDGE_DATA ?? '/bridge'
const attachmentsDir = env.ATTACHMENTS_DIR ?? '/signal-attachments'
const example = env.BRIDGE_CONFIG_EXAMPLE ?? '/app/config/config.example.yaml'
const cli = (env.RELAY_BRIDGE_CLI ?? 'node /app/bin/relay-bridge.js').split(' ')
const BRIDGE_UID = 991
const POSTGRES_UID = 999
const isRoot = process.getuid?.() === 0
const own = (path: string, uid: number) => {
  if (isRoot) chownSync(path, uid, uid)
}
const writeNew = (path: string, text: string, mode: number, uid: number) => {
  writeFileSync(path, text, { mode, flag: 'wx' })
  own(path, uid)
}

// ---- secrets ----------------------------------------------------------------------------------------------
mkdirSync(secretsDir, { recursive: true })
/** A password generated once: letters and digits only, as it goes into a postgres:// URI. */
function secret(name: string, uid: number): string {
  const path = join(secretsDir, name)
  if (!existsSync(path)) writeNew(path, randomBytes(24).toString('hex'), 0o600, uid)
  return readFileSync(path, 'utf8').trim()
}
// PostgreSQL's entrypoint reads all three as the postgres user when it creates the roles.
secret('postgres_password', POSTGRES_UID)
const synapseDbPassword = secret('synapse_db_password', POSTGRES_UID)
const bridgeDbPassword = secret('bridge_db_password', POSTGRES_UID)

// ---- Synapse ----------------------------------------------------------------------------------------------
mkdirSync(join(synapseDir, 'appservices'), { recursive: true })
const homeserverYaml = join(synapseDir, 'homeserver.yaml')
const registrationForSynapse = '/data/appservices/relay-bridge.yaml'
if (!existsSync(homeserverYaml)) {
  const keyId = `a_${randomBytes(3).toString('hex')}`
  // Synapse's key file format: algorithm, key id, the unpadded base64 of the 32-byte ed25519 seed.
  writeNew(join(synapseDir, `${serverName}.signing.key`), `ed25519 ${keyId} ${randomBytes(32).toString('base64').replace(/=+$/, '')}\n`, 0o600, BRIDGE_UID)
  const config = {
    server_name: serverName,
    pid_file: '/data/homeserver.pid',
    listeners: [{ port: 8008, tls: false, type: 'http', x_forwarded: true, resources: [{ names: ['client', 'federation'], compress: false }] }],
    database: { name: 'psycopg2', args: { user: 'synapse', password: synapseDbPassword, dbname: 'synapse', host: 'postgres', cp_min: 5, cp_max: 10 } },
    media_store_path: '/data/media_store',
    signing_key_path: `/data/${serverName}.signing.key`,
    trusted_key_servers: [{ server_name: 'matrix.org' }],
    suppress_key_server_warning: true,
    report_stats: false,
    enable_registration: false,
    // The init's create-admin step registers the first admin with it; nobody else needs it.
    registration_shared_secret: randomBytes(32).toString('hex'),
    macaroon_secret_key: randomBytes(32).toString('hex'),
    form_secret: randomBytes(32).toString('hex'),
    app_service_config_files: [registrationForSynapse],
  }
  writeNew(homeserverYaml, `# Written once by relay-bridge's init service; yours to edit from now on.\n${stringify(config)}`, 0o600, BRIDGE_UID)
  console.log(`init: wrote ${homeserverYaml} for ${serverName}.`)
} else {
  const listed = (parseDocument(readFileSync(homeserverYaml, 'utf8')).toJS() as { app_service_config_files?: string[] } | null)?.app_service_config_files ?? []
  if (!listed.includes(registrationForSynapse)) {
    console.warn(`init: ${homeserverYaml} does not list ${registrationForSynapse} under app_service_config_files; add it, or Synapse will not know the bridge.`)
  }
}

// ---- the bridge -------------------------------------------------------------------------------------------
mkdirSync(bridgeDir, { recursive: true })
const configYaml = join(bridgeDir, 'config.yaml')
if (!existsSync(configYaml)) {
  const doc = parseDocument(readFileSync(example, 'utf8'))
  doc.setIn(['database', 'uri'], `postgres://relaybridge:${bridgeDbPassword}@postgres/relaybridge`)
  writeNew(configYaml, doc.toString(), 0o600, BRIDGE_UID)
  console.log(`init: wrote ${configYaml}.`)
}
const registration = join(bridgeDir, 'registration.yaml')
// Fills in missing tokens (keeping existing ones) and writes the registration from the same environment the
// bridge runs with (RELAY_BRIDGE_* from the compose file).
execFileSync(cli[0]!, [...cli.slice(1), '-c', configYaml, '-r', registration, 'generate-registration'], { stdio: ['ignore', 'inherit', 'inherit'] })
const target = join(synapseDir, 'appservices', 'relay-bridge.yaml')
copyFileSync(registration, target)
chmodSync(target, 0o600)
for (const path of [configYaml, registration, target, join(synapseDir, 'appservices')]) own(path, BRIDGE_UID)
own(bridgeDir, BRIDGE_UID)
own(synapseDir, BRIDGE_UID)

// ---- the shared attachments volume ------------------------------------------------------------------------
// signal-cli (its own user) writes received files there and the bridge (uid 991) removes them once relayed.
mkdirSync(attachmentsDir, { recursive: true })
chmodSync(attachmentsDir, 0o777)
console.log('init: ready.')
