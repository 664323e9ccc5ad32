// The compose stack's `synapse-admin` one-shot service: creates the first Matrix user, an admin, from ADMIN_USER
// and ADMIN_PASSWORD in .env, through Synapse's shared-secret registration (POST /_synapse/admin/v1/register,
// the API `register_new_matrix_user` uses). An existing user is left as it is, so every `up` may run it.
// Paths and the address come from the environment, so tests run it outside Docker against a fake Synapse.
import { createHmac } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { parse } from 'yaml'

const env = process.env
const fail = (sentence: string): never => {
  console.error(`synapse-admin: ${sentence}`)
  process.exit(1)
}
const user = env.ADMIN_USER ?? ''
const password = env.ADMIN_PASSWORD ?? ''
if (!user || !password) fail('Set ADMIN_USER and ADMIN_PASSWORD in .env, then run `docker compose up -d` again.')
const synapse = (env.SYNAPSE_URL ?? 'http://synapse:8008').replace(/\/+$/, '')
const homeserverYaml = env.HOMESERVER_YAML ?? '/synapse/homeserver.yaml'
const secret = (parse(readFileSync(homeserverYaml, 'utf8')) as { registration_shared_secret?: string } | null)?.registration_shared_secret
if (!secret) fail(`${homeserverYaml} has no registration_shared_secret; add one (any long random string) and restart Synapse.`)

const url = `${synapse}/_synapse/admin/v1/register`
const nonceAnswer = await fetch(url).catch((err: unknown) => fail(`Cannot reach Synapse at ${synapse} (${(err as Error).message}).`))
if (!nonceAnswer.ok) fail(`Synapse at ${synapse} refused the shared-secret registration (HTTP ${nonceAnswer.status}).`)
const { nonce } = (await nonceAnswer.json()) as { nonce: string }
// HMAC-SHA1 over nonce, user, password and "admin", NUL-separated, keyed with the shared secret (Synapse's admin API).
const mac = createHmac('sha1', secret!).update([nonce, user, password, 'admin'].join('\0')).digest('hex')
const answer = await fetch(url, {
  method: 'POST',
  headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify({ nonce, username: user, password, admin: true, mac }),
})
const body = (await answer.json().catch(() => ({}))) as { errcode?: string; error?: string; user_id?: string }
if (answer.ok) console.log(`synapse-admin: created the admin ${body.user_id ?? user}.`)
else if (body.errcode === 'M_USER_IN_USE') console.log(`synapse-admin: the admin ${user} exists already; nothing to do.`)
else fail(`Synapse refused to create the admin ${user}: ${body.error ?? `HTTP ${answer.status}`}.`)
