// What the console and the provisioning API show one person: the logins they may manage (all of them for
// admins), the portals of rooms they can administer (all for admins), with states, queues and held or failed
// deliveries. No phone number reaches anyone but the login's owner and admins.
import type { Logger } from 'pino'
import { mayManageLogin, maySeeAddress, type Viewer } from '../core/access.ts'
import type { SqlLoginStore } from '../core/logins.ts'
import type { LoginKind } from '../core/network.ts'
import { REMOTE_NETWORKS, type NetworkId, type RemoteNetworkId } from '../core/model.ts'
import type { ConnectionState, Login, RemoteNetwork } from '../core/network.ts'
import { chatOf, loginOf, type Portal, type PortalStore } from '../core/portals.ts'
import { lastMessageTimes, problems, queueCounts, type QueueCount } from '../core/queue-report.ts'
import type { MatrixRooms } from '../core/rooms.ts'
import type { Db } from '../db/types.ts'

export interface LoginView {
  id: string
  network: RemoteNetworkId
  kind: LoginKind
  name: string
  owner: string
  state: ConnectionState | 'banned'
  state_message: string | null
  /** ms; null when the network has given no sign of life for the login yet. */
  last_activity: number | null
  held: { count: number; since: number | null }
  /** The number or JID: only for the owner and admins. */
  address?: string
  portals: number
}

export interface GroupView {
  id: string | null
  name: string | null
  relay: { id: string; name: string; state: LoginView['state'] } | null
}

export interface DeliveryView {
  id: number
  network: NetworkId
  state: 'held' | 'failed'
  op: string
  attempts: number
  reason: string | null
  queued_at: number
}

export interface PortalView {
  id: number
  room_id: string
  name: string
  matrix_to: string
  signal: GroupView
  whatsapp: GroupView
  queue: Array<{ network: NetworkId; pending: number; held: number; failed: number }>
  problems: DeliveryView[]
  last_message_at: number | null
}

export interface ViewDeps {
  db: Db
  logins: SqlLoginStore
  portals: PortalStore
  networks: Map<RemoteNetworkId, RemoteNetwork>
  rooms: MatrixRooms
  log: Logger
  now?: () => number
}

/** A number-like run of digits (a phone number in an error text or an old-style WhatsApp group id). */
const NUMBERS = /\+?\d[\d ()-]{5,}\d/g
export const hideNumbers = (text: string): string => text.replace(NUMBERS, '[number hidden]')

/** "banned" is not a state the networks report apart from others: WhatsApp's refusal says so in its sentence. */
function stateOf(login: Login): LoginView['state'] {
  return login.state === 'disconnected' && /banned/i.test(login.stateMessage ?? '') ? 'banned' : login.state
}

const CACHE_MS = 30_000

export class ConsoleViews {
  readonly #d: ViewDeps
  readonly #now: () => number
  readonly #power = new Map<string, { at: number; ok: boolean }>()
  readonly #groups = new Map<string, { at: number; names: Map<string, string> }>()

  constructor(deps: ViewDeps) {
    this.#d = deps
    this.#now = deps.now ?? Date.now
  }

  async logins(v: Viewer): Promise<LoginView[]> {
    const all = (await this.#d.logins.list()).filter(l => mayManageLogin(l, v))
    const counts = await queueCounts(this.#d.db)
    const portals = this.#d.portals.all()
    const out: LoginView[] = []
    for (const l of all) {
      const relayed = portals.filter(p => loginOf(p, l.network) === l.id)
      // A held delivery holds back the ones queued behind it (which stay pending): all of them wait for this login.
      const stuck = new Set(counts.filter(c => c.state === 'held' && c.network === l.network).map(c => c.portalId))
      const held = counts.filter(c => c.network === l.network && stuck.has(c.portalId) && relayed.some(p => p.id === c.portalId) && c.state !== 'failed')
      const activity = await this.#d.networks.get(l.network)?.lastActivity?.(l.id).catch(() => undefined)
      out.push({
        id: l.id, network: l.network, kind: l.kind, name: l.displayName, owner: l.ownerMxid,
        state: stateOf(l), state_message: l.stateMessage, last_activity: activity ?? null,
        held: { count: held.reduce((n, c) => n + c.n, 0), since: held.length ? Math.min(...held.map(c => c.since)) : null },
        ...(maySeeAddress(l, v) ? { address: l.address } : {}),
        portals: relayed.length,
      })
    }
    return out
  }

  async portals(v: Viewer): Promise<PortalView[]> {
    const visible: Portal[] = []
    for (const p of this.#d.portals.all()) if (await this.#canAdminister(v, p)) visible.push(p)
    if (visible.length === 0) return []
    // One snapshot for the three reads: read apart, a delivery held between them showed among the problems while
    // the queue's counts still had it pending.
    const [counts, trouble, last] = await this.#d.db.transaction(async tx => {
      await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ')
      return [await queueCounts(tx), await problems(tx), await lastMessageTimes(tx)] as const
    })
    const privileged = v.level === 'admin'
    const out: PortalView[] = []
    for (const p of visible.sort((a, b) => a.id - b.id)) {
      const mine = counts.filter(c => c.portalId === p.id)
      out.push({
        id: p.id, room_id: p.roomId, name: p.name, matrix_to: `https://matrix.to/#/${encodeURIComponent(p.roomId)}`,
        signal: await this.#group(p, 'signal', v),
        whatsapp: await this.#group(p, 'whatsapp', v),
        queue: queueOf(mine),
        problems: trouble.filter(t => t.portalId === p.id).map(t => ({
          id: t.id, network: t.network, state: t.state, op: t.op, attempts: t.attempts,
          reason: t.reason === null || privileged ? t.reason : hideNumbers(t.reason), queued_at: t.createdAt,
        })),
        last_message_at: last.get(p.id) ?? null,
      })
    }
    return out
  }

  /** Admins administer every portal; anyone else, the rooms where their power level may change the room's state
   * (what `link` and `set` ask). Asked of the homeserver, remembered for half a minute. */
  async #canAdminister(v: Viewer, p: Portal): Promise<boolean> {
    if (v.level === 'admin') return true
    if (v.level !== 'user') return false
    const key = `${p.roomId}\u0000${v.mxid}`
    const known = this.#power.get(key)
    if (known && this.#now() - known.at < CACHE_MS) return known.ok
    const ok = await this.#d.rooms.powerLevels(p.roomId, v.mxid).then(pl => pl.user >= pl.stateDefault, () => false)
    this.#power.set(key, { at: this.#now(), ok })
    return ok
  }

  async #group(p: Portal, network: RemoteNetworkId, v: Viewer): Promise<GroupView> {
    const privileged = v.level === 'admin'
    const id = chatOf(p, network)
    const loginId = loginOf(p, network)
    const login = loginId ? await this.#d.logins.get(loginId) : undefined
    const name = id && login ? await this.#groupName(login, id) : undefined
    // An account's name may be its number (a WhatsApp push name, a test's relay): hidden like the number itself.
    const relayName = login && (maySeeAddress(login, v) ? login.displayName : hideNumbers(login.displayName))
    return {
      // Old-style WhatsApp group ids begin with their creator's number.
      id: id && (privileged || !/^\d+-\d+@g\.us$/.test(id)) ? id : id ? hideNumbers(id) : null,
      name: name ?? null,
      relay: login ? { id: login.id, name: relayName!, state: stateOf(login) } : null,
    }
  }

  /** The group's name as the relay account sees it, from a list kept for half a minute (a login that is away
   * gives none, and the portal shows the id alone). */
  async #groupName(login: Login, groupId: string): Promise<string | undefined> {
    const known = this.#groups.get(login.id)
    if (known && this.#now() - known.at < CACHE_MS) return known.names.get(groupId)
    const adapter = this.#d.networks.get(login.network)
    const names = new Map<string, string>()
    if (adapter && login.state === 'connected') {
      try {
        for (const g of await adapter.listGroups(login)) names.set(g.id, g.name)
      } catch (err) {
        this.#d.log.debug({ login: login.id, err: (err as Error).message }, 'Could not list the groups for the console')
      }
    }
    this.#groups.set(login.id, { at: this.#now(), names })
    return names.get(groupId)
  }
}

function queueOf(counts: QueueCount[]): PortalView['queue'] {
  const out: PortalView['queue'] = []
  for (const network of ['matrix', ...REMOTE_NETWORKS] as NetworkId[]) {
    const n = (state: QueueCount['state'] | 'sending') => counts.filter(c => c.network === network && c.state === state).reduce((s, c) => s + c.n, 0)
    out.push({ network, pending: n('pending') + n('sending'), held: n('held'), failed: n('failed') })
  }
  return out
}
