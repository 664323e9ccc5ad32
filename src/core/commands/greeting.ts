// The first word from the bot: after the first start it greets each admin named in bridge.permissions in a
// direct chat with the step that comes next, once (remembered in the database, so a restart says nothing).
import type { Logger } from 'pino'
import type { Db } from '../../db/types.ts'
import type { SqlLoginStore } from '../logins.ts'
import { NETWORK_LABEL, REMOTE_NETWORKS, type RemoteNetworkId } from '../model.ts'
import type { MatrixRooms } from '../rooms.ts'

export interface GreetingDeps {
  db: Db
  rooms: MatrixRooms
  logins: SqlLoginStore
  permissions: Record<string, string>
  networks: readonly RemoteNetworkId[]
  domain: string
  prefix: string
  log: Logger
}

/** The admins named by user id (a server name or "*" names nobody in particular to greet). */
export function namedAdmins(permissions: Record<string, string>): string[] {
  return Object.entries(permissions).filter(([who, level]) => who.startsWith('@') && level === 'admin').map(([who]) => who)
}

export async function greetingText(deps: Pick<GreetingDeps, 'logins' | 'networks' | 'domain' | 'prefix'>): Promise<string> {
  const linked = new Set((await deps.logins.list()).map(l => l.network))
  const missing = deps.networks.filter(n => !linked.has(n))
  const hello = `Hello! I am the relay bridge of ${deps.domain}, and you are one of its admins.`
  const [first, ...rest] = missing
  const next = !first
    ? `Next: invite me to a Matrix room and type \`${deps.prefix} link ${REMOTE_NETWORKS[0]} <group id or invite link>\` there.`
    : `Next: link the ${rest.length ? 'relay accounts' : `${NETWORK_LABEL[first]} relay account`}, here in our direct chat: type \`login ${first}\` and scan the code with the relay phone` +
      `${rest.map(n => `, then do the same with \`login ${n}\``).join('')}.`
  return `${hello} ${next} \`help\` lists every command; \`status\` shows how the bridge is doing.`
}

/** Greets every named admin not greeted yet. A failure is logged and tried again at the next start. */
export async function greetAdmins(deps: GreetingDeps): Promise<void> {
  const admins = namedAdmins(deps.permissions)
  if (admins.length === 0) {
    deps.log.info('No admin is named by user id in bridge.permissions, so the bot greets nobody.')
    return
  }
  const { rows } = await deps.db.query<{ mxid: string }>('SELECT mxid FROM greetings WHERE mxid = ANY($1)', [admins])
  const greeted = new Set(rows.map(r => r.mxid))
  for (const admin of admins.filter(a => !greeted.has(a))) {
    try {
      const room = await deps.rooms.directRoom(admin)
      await deps.rooms.notice(room, await greetingText(deps))
      await deps.db.query('INSERT INTO greetings (mxid) VALUES ($1) ON CONFLICT (mxid) DO NOTHING', [admin])
      deps.log.info({ admin }, 'Greeted the bridge admin in a direct chat')
    } catch (err) {
      deps.log.warn({ admin, err: (err as Error).message }, 'Could not greet the bridge admin; the bot tries again at the next start')
    }
  }
}
