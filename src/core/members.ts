// Who is in a portal's groups (issue 17, membership). The people of the Signal and WhatsApp groups are in the portal's
// room as their ghosts, admins with the configured power; with the portal's choice `members to-networks`, someone
// joining or leaving one group is one short line in the other. A roster change is recorded like a message and
// delivered through the outbox: the ghosts by batches on a queue of their own (a thousand joins, paced by the
// homeserver, must not hold the conversation back), the lines on each group's queue.
//
// The record of who is in each group is what makes every change happen once: Signal re-reads the whole group on
// every update, WhatsApp may tell two of the bridge's accounts the same news, and only the difference counts.
import type { Logger } from 'pino'
import type { Db, Queryable } from '../db/types.ts'
import { cleanChatText, withinChars } from './chat-text.ts'
import { DeliveryError } from './errors.ts'
import type { SqlLoginStore } from './logins.ts'
import { NETWORK_LABEL, plainText, REMOTE_NETWORKS, type Departure, type GroupMember, type InboundMembers, type MembersChange, type NetworkId, type Person, type RemoteNetworkId } from './model.ts'
import type { Login, Participant, RemoteNetwork } from './network.ts'
import { Outbox, type NewDelivery, type OutboxRow } from './outbox.ts'
import { chatOf, type Portal, type PortalStore } from './portals.ts'

/** Ghosts brought in or taken out per delivery: each batch is one outbox row, so a homeserver's 429 halfway through
 * one repeats at most this many (already done ones are no-ops), and the queue between batches stays short. */
export const MEMBERS_BATCH = 50

/** A member's name as kept (a ghost's display name is cut shorter still, to fit Synapse's limit with its label). */
const MAX_NAME = 256

/** The queue of a room's ghosts coming and going, apart from its messages' queue. */
export const membersQueue = (roomId: string): string => `${roomId} members`

/** The portal's choice of announcing joins and leaves in the other groups (`!relay sync members to-networks`). */
const FIELD = 'members'

export interface MembersOptions {
  db: Db
  portals: PortalStore
  logins: Pick<SqlLoginStore, 'byPerson'>
  /** Makes sure a delivery queue is being worked on (Outbox.kick). */
  kick: (network: NetworkId, chatId: string) => void
  /** bridge.admin_power_level (false: none). */
  adminLevel: number | false
  log: Logger
}

interface Row {
  person_id: string
  display_name: string
  admin: boolean
}

interface Leave {
  person: Person
  how: Departure
  /** Gone because the group was unlinked from the room, not from the group. */
  unlinked?: true
}

/** The payload of a queued `members` row (the room) and of a `member_line` row (another group). */
interface MembersPayload {
  network: RemoteNetworkId
  joins: GroupMember[]
  leaves: Leave[]
}
interface LinePayload {
  sender: Person
  text: string
}

/** "Bob (WhatsApp) joined", "… left", "… was removed", "… was banned". */
export function memberLine(person: Person, change: 'join' | Departure): string {
  const what = { join: 'joined', leave: 'left', kick: 'was removed', ban: 'was banned' }[change]
  // One short line, whatever a Matrix display name holds.
  return `${withinChars(cleanChatText('name', person.displayName), 100)} (${NETWORK_LABEL[person.network]}) ${what}`
}

export class Members {
  private readonly opts: MembersOptions

  constructor(opts: MembersOptions) {
    this.opts = opts
  }

  // ---- the portal's choice --------------------------------------------------------------------------

  async announced(portalId: number, q: Queryable = this.opts.db): Promise<boolean> {
    const { rows } = await q.query<{ enabled: boolean }>(
      `SELECT enabled FROM portal_sync WHERE portal_id = $1 AND field = $2 AND direction = 'to-networks'`, [portalId, FIELD])
    return rows[0]?.enabled ?? false
  }

  async setAnnounced(portalId: number, enabled: boolean): Promise<void> {
    await this.opts.db.query(
      `INSERT INTO portal_sync (portal_id, field, direction, enabled) VALUES ($1, $2, 'to-networks', $3)
       ON CONFLICT (portal_id, field, direction) DO UPDATE SET enabled = EXCLUDED.enabled`, [portalId, FIELD, enabled])
  }

  // ---- a roster arrives ------------------------------------------------------------------------------

  /** A group was just linked: its people come into the room (queued: a big group takes a while, and the link does not
   * wait for it). A roster that cannot be read now is logged; its people come as they speak or the group changes. */
  async bringIn(portal: Portal, adapter: RemoteNetwork, login: Login, groupId: string): Promise<void> {
    if (!adapter.roster) return
    const network = adapter.network
    try {
      const { members, banned } = await adapter.roster(login, groupId)
      const now = Date.now()
      await this.receive(portal, {
        kind: 'members', chat: { network, id: groupId }, sender: { network, id: login.personId, displayName: login.displayName },
        remoteId: `${groupId}/roster/${now}`, timestamp: now, loginId: login.id, members, ...(banned ? { banned } : {}),
      }, { initial: true })
    } catch (err) {
      this.opts.log.warn({ network, err: (err as Error).message }, 'Could not read who is in the group just linked; its people come into the room as they speak or the group changes')
    }
  }

  /**
   * A group's roster changed (or, with `initial`, was read when the group was linked: nobody is announced then).
   * The bridge's own accounts (relay accounts, and people's own logins, who are their Matrix selves) are no members
   * here: they get no ghost and no line.
   */
  async receive(portal: Portal, event: InboundMembers, opts: { initial?: boolean } = {}): Promise<void> {
    const network = event.chat.network
    if (network === 'matrix') return this.matrixCameOrWent(portal, event)
    if (chatOf(portal, network) !== event.chat.id) return
    const { db, kick } = this.opts
    const members = event.members && await this.people(network, event.members)
    const joined = await this.people(network, event.joined ?? [])
    // Someone gone is named as recorded, unless the network knows them better now (an empty name: it does not).
    const left = (await this.people(network, (event.left ?? []).map(person => ({ person, admin: false, named: person.displayName !== '' }))))
      .map(m => (m.named === false ? { ...m.person, displayName: '' } : m.person))
    const banned = new Set(event.banned ?? [])
    const deliveries: NewDelivery[] = []
    await db.transaction(async tx => {
      const { rows } = await tx.query<Row>(
        'SELECT person_id, display_name, admin FROM group_members WHERE portal_id = $1 AND network = $2', [portal.id, network])
      const known = new Map(rows.map(r => [r.person_id, r]))
      const joins: GroupMember[] = []
      const fresh: Person[] = []
      for (const listed of members ?? joined) {
        const was = known.get(listed.person.id)
        // A neutral label is no news about someone already named.
        const m = was && listed.named === false ? { ...listed, person: { ...listed.person, displayName: was.display_name } } : listed
        if (!was) fresh.push(m.person)
        if (!was || was.display_name !== m.person.displayName || was.admin !== m.admin) joins.push(m)
      }
      const present = new Set((members ?? []).map(m => m.person.id))
      const gone: Person[] = members
        ? rows.filter(r => !present.has(r.person_id)).map(r => ({ network, id: r.person_id, displayName: r.display_name }))
        : left.filter(p => known.has(p.id)).map(p => ({ network, id: p.id, displayName: p.displayName || known.get(p.id)!.display_name }))
      const leaves: Leave[] = gone.map(person => ({
        person, how: banned.has(person.id) ? 'ban' : person.id === event.sender.id ? 'leave' : 'kick',
      }))
      if (joins.length === 0 && leaves.length === 0) return
      await record(tx, portal.id, network, joins, gone)
      const queue = membersQueue(portal.roomId)
      for (let i = 0; i < Math.max(joins.length, leaves.length); i += MEMBERS_BATCH) {
        const payload: MembersPayload = { network, joins: joins.slice(i, i + MEMBERS_BATCH), leaves: leaves.slice(i, i + MEMBERS_BATCH) }
        deliveries.push({ portalId: portal.id, messageId: null, network: 'matrix', chatId: queue, op: 'members', payload: { ...payload } })
      }
      if (!opts.initial && await this.announced(portal.id, tx)) {
        const lines: LinePayload[] = [
          ...fresh.map(p => ({ sender: p, text: memberLine(p, 'join') })),
          ...leaves.map(l => ({ sender: l.person, text: memberLine(l.person, l.how) })),
        ]
        for (const target of REMOTE_NETWORKS) {
          const chatId = chatOf(portal, target)
          if (target === network || !chatId) continue
          for (const line of lines) deliveries.push({ portalId: portal.id, messageId: null, network: target, chatId, op: 'member_line', payload: { ...line } })
        }
      }
      await Outbox.enqueue(tx, deliveries)
    })
    const queues = new Map(deliveries.map(d => [`${d.network}\u0000${d.chatId}`, d]))
    for (const d of queues.values()) kick(d.network, d.chatId)
  }

  /**
   * Someone linked their own account: in the groups it is in they are their Matrix self from now on, so the ghost
   * that stood for them leaves those rooms (on its own: nobody removed anyone, and no group hears a line of it).
   */
  async ownLoginLinked(login: Login): Promise<void> {
    if (login.kind !== 'personal') return
    const network = login.network
    const deliveries: NewDelivery[] = []
    await this.opts.db.transaction(async tx => {
      const { rows } = await tx.query<Row & { portal_id: number; room_id: string }>(
        `DELETE FROM group_members g USING portals p WHERE g.portal_id = p.id AND g.network = $1 AND g.person_id = $2
         RETURNING g.portal_id, p.room_id, g.person_id, g.display_name, g.admin`, [network, login.personId])
      for (const r of rows) {
        const payload: MembersPayload = { network, joins: [], leaves: [{ person: { network, id: r.person_id, displayName: r.display_name }, how: 'leave' }] }
        deliveries.push({ portalId: r.portal_id, messageId: null, network: 'matrix', chatId: membersQueue(r.room_id), op: 'members', payload: { ...payload } })
      }
      await Outbox.enqueue(tx, deliveries)
    })
    for (const d of deliveries) this.opts.kick(d.network, d.chatId)
  }

  /**
   * A group was unlinked from its room: its people are no longer in this conversation, so their ghosts leave the
   * room (on their own, saying why; nobody was removed, and no group hears a line of it). Linked again, they come
   * back with the roster.
   */
  async groupUnlinked(portal: Portal, network: RemoteNetworkId): Promise<void> {
    const deliveries: NewDelivery[] = []
    await this.opts.db.transaction(async tx => {
      const { rows } = await tx.query<Row>(
        'DELETE FROM group_members WHERE portal_id = $1 AND network = $2 RETURNING person_id, display_name, admin', [portal.id, network])
      const leaves: Leave[] = rows.map(r => ({ person: { network, id: r.person_id, displayName: r.display_name }, how: 'leave', unlinked: true }))
      for (let i = 0; i < leaves.length; i += MEMBERS_BATCH) {
        const payload: MembersPayload = { network, joins: [], leaves: leaves.slice(i, i + MEMBERS_BATCH) }
        deliveries.push({ portalId: portal.id, messageId: null, network: 'matrix', chatId: membersQueue(portal.roomId), op: 'members', payload: { ...payload } })
      }
      await Outbox.enqueue(tx, deliveries)
    })
    if (deliveries.length > 0) this.opts.kick('matrix', membersQueue(portal.roomId))
  }

  /**
   * A person joined the Matrix room or left it (the homeserver tells each change once, and the inbox drops a
   * redelivery): with `members to-networks` on, each group hears it in one line. The room itself shows it already.
   */
  private async matrixCameOrWent(portal: Portal, event: InboundMembers): Promise<void> {
    if (portal.roomId !== event.chat.id || !(await this.announced(portal.id))) return
    const banned = new Set(event.banned ?? [])
    const lines: LinePayload[] = [
      ...(event.joined ?? []).map(m => ({ sender: m.person, text: memberLine(m.person, 'join') })),
      ...(event.left ?? []).map(p => ({ sender: p, text: memberLine(p, banned.has(p.id) ? 'ban' : p.id === event.sender.id ? 'leave' : 'kick') })),
    ]
    const deliveries: NewDelivery[] = []
    for (const target of REMOTE_NETWORKS) {
      const chatId = chatOf(portal, target)
      if (chatId) for (const line of lines) deliveries.push({ portalId: portal.id, messageId: null, network: target, chatId, op: 'member_line', payload: { ...line } })
    }
    if (deliveries.length === 0) return
    await Outbox.enqueue(this.opts.db, deliveries)
    for (const d of deliveries) this.opts.kick(d.network, d.chatId)
  }

  /** The people of a list who are no account of the bridge's own, named as a name can be kept (a profile name may
   * hold control characters, even a NUL, which the database cannot store); a picture only from the media store (a
   * queued delivery carries no bytes). */
  private async people(network: RemoteNetworkId, list: GroupMember[]): Promise<GroupMember[]> {
    const out: GroupMember[] = []
    for (const m of list) {
      if (await this.opts.logins.byPerson(network, m.person.id)) continue
      const name = withinChars(cleanChatText('name', m.person.displayName), MAX_NAME)
      // The adapters never name anyone by number; should one slip through, it still goes no further.
      const displayName = name && !/^\+?[\d\s().-]{5,}$/.test(name.replace(/\p{Cf}/gu, '')) ? name : `${NETWORK_LABEL[network]} member`
      const avatar = m.person.avatar && 'mediaId' in m.person.avatar ? { avatar: { mediaId: m.person.avatar.mediaId, mimetype: m.person.avatar.mimetype } } : {}
      out.push({ person: { network, id: m.person.id, displayName, ...avatar }, admin: m.admin, ...(m.named === false ? { named: false } : {}) })
    }
    return out
  }

  // ---- delivered ----------------------------------------------------------------------------------------

  /** A batch of ghosts brought into the room or taken out, through the Matrix participant. */
  async deliver(row: OutboxRow, portal: Portal, participant: Participant): Promise<void> {
    if (!participant.members) throw new DeliveryError('permanent', 'This Matrix connection cannot show who is in the groups.')
    const p = row.payload as unknown as MembersPayload
    const change: MembersChange = {
      roomId: portal.roomId,
      joins: p.joins,
      leaves: p.leaves.map(l => ({ ...l, reason: reasonOf(l) })),
      adminLevel: this.opts.adminLevel === false ? null : this.opts.adminLevel,
    }
    await participant.members(change)
  }

  /** The line a `member_line` row sends through the relay. */
  static lineOf(row: OutboxRow): { sender: Person; content: { kind: 'text'; body: ReturnType<typeof plainText>; attachments: [] } } {
    const p = row.payload as unknown as LinePayload
    return { sender: p.sender, content: { kind: 'text', body: plainText(p.text), attachments: [] } }
  }
}

function reasonOf(l: Leave): string {
  const where = NETWORK_LABEL[l.person.network]
  if (l.unlinked) return `The ${where} group was unlinked from this room`
  return { leave: `Left the ${where} group`, kick: `Removed from the ${where} group`, ban: `Banned from the ${where} group` }[l.how]
}

/** Writes who is in the group now: one statement for the arrivals and changes (a thousand at linking), one for those gone. */
async function record(tx: Queryable, portalId: number, network: RemoteNetworkId, joins: GroupMember[], gone: Person[]): Promise<void> {
  if (joins.length > 0) {
    await tx.query(
      `INSERT INTO group_members (portal_id, network, person_id, display_name, admin)
       SELECT $1, $2, m.id, m.name, m.admin FROM jsonb_to_recordset($3::jsonb) AS m(id text, name text, admin boolean)
       ON CONFLICT (portal_id, network, person_id) DO UPDATE SET display_name = EXCLUDED.display_name, admin = EXCLUDED.admin`,
      [portalId, network, JSON.stringify(joins.map(j => ({ id: j.person.id, name: j.person.displayName, admin: j.admin })))])
  }
  if (gone.length > 0) {
    await tx.query('DELETE FROM group_members WHERE portal_id = $1 AND network = $2 AND person_id = ANY($3::text[])', [portalId, network, gone.map(p => p.id)])
  }
}
