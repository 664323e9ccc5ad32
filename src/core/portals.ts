// Portals: one Matrix room, at most one Signal group, at most one WhatsApp group, and the login that
// relays on each side. Kept in memory too: every inbound event asks "which portal?", and one process
// owns the table.
import { cleanChatText } from './chat-text.ts'
import type { Db, Queryable } from '../db/types.ts'
import { NETWORKS, type NetworkId, type RemoteNetworkId } from './model.ts'

export interface Portal {
  id: number
  roomId: string
  name: string
  signalGroup: string | null
  signalLogin: string | null
  whatsappGroup: string | null
  whatsappLogin: string | null
  /** The linked groups' names as last seen (null when unknown, for portals linked before names were kept). */
  signalGroupName: string | null
  whatsappGroupName: string | null
  creator: string | null
  encrypted: boolean
}

interface PortalRow {
  id: number
  room_id: string
  name: string
  signal_group: string | null
  signal_login: string | null
  whatsapp_group: string | null
  whatsapp_login: string | null
  signal_group_name: string | null
  whatsapp_group_name: string | null
  creator: string | null
  encrypted: boolean
}

const fromRow = (r: PortalRow): Portal => ({
  id: r.id,
  roomId: r.room_id,
  name: r.name,
  signalGroup: r.signal_group,
  signalLogin: r.signal_login,
  whatsappGroup: r.whatsapp_group,
  whatsappLogin: r.whatsapp_login,
  signalGroupName: r.signal_group_name ?? null,
  whatsappGroupName: r.whatsapp_group_name ?? null,
  creator: r.creator,
  encrypted: r.encrypted,
})

/** The chat id of a portal on a network (the room id on Matrix). */
export function chatOf(portal: Portal, network: NetworkId): string | null {
  if (network === 'matrix') return portal.roomId
  return network === 'signal' ? portal.signalGroup : portal.whatsappGroup
}

/** The linked group's name on a network, when known. */
export function groupNameOf(portal: Portal, network: RemoteNetworkId): string | null {
  return network === 'signal' ? portal.signalGroupName : portal.whatsappGroupName
}

export function loginOf(portal: Portal, network: RemoteNetworkId): string | null {
  return network === 'signal' ? portal.signalLogin : portal.whatsappLogin
}

const COLUMN = {
  signal: { group: 'signal_group', login: 'signal_login', name: 'signal_group_name' },
  whatsapp: { group: 'whatsapp_group', login: 'whatsapp_login', name: 'whatsapp_group_name' },
} as const

export class PortalStore {
  private readonly db: Db
  private readonly byId = new Map<number, Portal>()
  private readonly byChat = new Map<string, Portal>()

  constructor(db: Db) {
    this.db = db
  }

  async load(): Promise<void> {
    const { rows } = await this.db.query<PortalRow>('SELECT * FROM portals')
    this.byId.clear()
    this.byChat.clear()
    for (const r of rows) this.remember(fromRow(r))
  }

  private key(network: NetworkId, chatId: string): string {
    return `${network}\u0000${chatId}`
  }

  private remember(p: Portal): Portal {
    const old = this.byId.get(p.id)
    if (old) this.forget(old)
    this.byId.set(p.id, p)
    for (const n of NETWORKS) {
      const c = chatOf(p, n)
      if (c) this.byChat.set(this.key(n, c), p)
    }
    return p
  }

  private forget(p: Portal): void {
    this.byId.delete(p.id)
    for (const n of NETWORKS) {
      const c = chatOf(p, n)
      if (c) this.byChat.delete(this.key(n, c))
    }
  }

  all(): Portal[] {
    return [...this.byId.values()]
  }

  get(id: number): Portal | undefined {
    return this.byId.get(id)
  }

  byRoom(roomId: string): Portal | undefined {
    return this.byChat.get(this.key('matrix', roomId))
  }

  find(network: NetworkId, chatId: string): Portal | undefined {
    return this.byChat.get(this.key(network, chatId))
  }

  async create(roomId: string, opts: { name?: string; creator?: string; encrypted?: boolean } = {}): Promise<Portal> {
    const { rows } = await this.db.query<PortalRow>(
      `INSERT INTO portals (room_id, name, creator, encrypted) VALUES ($1, $2, $3, $4)
       ON CONFLICT (room_id) DO UPDATE SET room_id = EXCLUDED.room_id RETURNING *`,
      [roomId, opts.name ?? '', opts.creator ?? null, opts.encrypted ?? false],
    )
    return this.remember(fromRow(rows[0]!))
  }

  private async update(sql: string, params: unknown[], q: Queryable = this.db): Promise<Portal> {
    const { rows } = await q.query<PortalRow>(sql, params)
    if (!rows[0]) throw new Error('The portal no longer exists.')
    return this.remember(fromRow(rows[0]))
  }

  /** Links a group; the caller has checked that no other portal holds it. */
  link(portal: Portal, network: RemoteNetworkId, groupId: string, loginId: string | null, groupName?: string): Promise<Portal> {
    const c = COLUMN[network]
    return this.update(
      `UPDATE portals SET ${c.group} = $2, ${c.login} = COALESCE($3, ${c.login}), ${c.name} = $4 WHERE id = $1 RETURNING *`,
      // As people typed it on the network, less what a name cannot hold (a NUL cannot even be stored).
      [portal.id, groupId, loginId, groupName ? cleanChatText('name', groupName) || null : null],
    )
  }

  unlink(portal: Portal, network: RemoteNetworkId): Promise<Portal> {
    const c = COLUMN[network]
    return this.update(`UPDATE portals SET ${c.group} = NULL, ${c.name} = NULL WHERE id = $1 RETURNING *`, [portal.id])
  }

  /** The linked group was renamed on its network. */
  setGroupName(portal: Portal, network: RemoteNetworkId, name: string): Promise<Portal> {
    return this.update(`UPDATE portals SET ${COLUMN[network].name} = $2 WHERE id = $1 RETURNING *`, [portal.id, name])
  }

  setRelay(portal: Portal, network: RemoteNetworkId, loginId: string | null): Promise<Portal> {
    return this.update(`UPDATE portals SET ${COLUMN[network].login} = $2 WHERE id = $1 RETURNING *`, [portal.id, loginId])
  }

  /** A login was deleted (the database unset it as a relay, ON DELETE SET NULL): the portals here follow. */
  forgetLogin(loginId: string): void {
    for (const p of this.all()) {
      if (p.signalLogin === loginId || p.whatsappLogin === loginId) {
        this.remember({ ...p, signalLogin: p.signalLogin === loginId ? null : p.signalLogin, whatsappLogin: p.whatsappLogin === loginId ? null : p.whatsappLogin })
      }
    }
  }

  setName(portal: Portal, name: string): Promise<Portal> {
    return this.update('UPDATE portals SET name = $2 WHERE id = $1 RETURNING *', [portal.id, name])
  }

  setEncrypted(portal: Portal, encrypted: boolean): Promise<Portal> {
    return this.update('UPDATE portals SET encrypted = $2 WHERE id = $1 RETURNING *', [portal.id, encrypted])
  }

  /** The portal's Matrix room was replaced (a room upgrade): the portal, and the deliveries still queued for the
   * old room, move to the new one. */
  async moveRoom(portal: Portal, roomId: string): Promise<Portal> {
    const moved = await this.db.transaction(async tx => {
      await tx.query(
        `UPDATE outbox SET chat_id = $2 WHERE network = 'matrix' AND chat_id = $1 AND state IN ('pending', 'sending', 'held')`,
        [portal.roomId, roomId])
      return this.update('UPDATE portals SET room_id = $2 WHERE id = $1 RETURNING *', [portal.id, roomId], tx)
    })
    return moved
  }

  async remove(portal: Portal): Promise<void> {
    await this.db.query('DELETE FROM portals WHERE id = $1', [portal.id])
    this.forget(portal)
  }
}
