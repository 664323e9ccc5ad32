// A portal's name, topic and picture kept in step across Matrix, Signal and WhatsApp (issue 17). A change is an
// event like a message: recorded, then delivered through the outbox to each side the portal's choices allow.
//
// The loop guard is the record of what each side shows. Before the bridge sets a field on a side it records the
// value there; the echo of its own change (WhatsApp tells every device, a later Signal group update re-reads the
// group) then finds that value already recorded and goes no further. A change to a value a side already shows is
// no change, whoever made it.
import type { Logger } from 'pino'
import type { Db, Queryable } from '../db/types.ts'
import { cleanChatText, timerLabel, withinChars } from './chat-text.ts'
import { NotPermitted } from './errors.ts'
import { CHAT_FIELDS, NETWORK_LABEL, NETWORKS, type ChatField, type ChatValue, type Delivery, type InboundChatUpdate, type NetworkId, type Person } from './model.ts'
import type { Participant } from './network.ts'
import { Outbox, type NewDelivery, type OutboxRow } from './outbox.ts'
import { chatOf, type Portal, type PortalStore } from './portals.ts'
import type { MatrixRooms } from './rooms.ts'

export type SyncDirection = 'to-matrix' | 'to-networks'
export const SYNC_DIRECTIONS: readonly SyncDirection[] = ['to-matrix', 'to-networks']
/** What a portal can choose to keep in step, and in which direction. */
export type SyncSettings = Record<ChatField, Record<SyncDirection, boolean>>

/** On toward Matrix (the room shows what the groups are called), off toward the networks (the groups barely notice the
 * bridge, and a room can keep its own name). */
const DEFAULT: Record<SyncDirection, boolean> = { 'to-matrix': true, 'to-networks': false }
/** The disappearing-message timer is a privacy setting, not a label: a group whose messages disappear must not have
 * them kept for ever in the other group, so it is mirrored unless a room says otherwise. Toward Matrix it is a notice
 * (Matrix has no such timer; the bridge redacts its copies itself, core/expiry.ts). */
const DEFAULTS: Partial<Record<ChatField, Record<SyncDirection, boolean>>> = { timer: { 'to-matrix': true, 'to-networks': true } }

export const directionOf = (target: NetworkId): SyncDirection => (target === 'matrix' ? 'to-matrix' : 'to-networks')

/** The payload of a queued chat_update. `retry` marks a change re-queued when a permission arrived. */
interface ChatPayload {
  sender: Person
  field: ChatField
  value: ChatValue
  retry?: boolean
}

/** Two values of a field are the same when they read the same (pictures: the same bytes). */
function same(a: ChatValue | undefined, b: ChatValue | undefined): boolean {
  if (a === undefined || b === undefined) return a === b
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return a === b
  return a.mediaId === b.mediaId
}

/** The fields an update names, with their values; text without control characters (which no network shows, and
 * PostgreSQL's jsonb cannot even hold a NUL of). */
function changesOf(event: InboundChatUpdate): Array<{ field: ChatField; value: ChatValue }> {
  const out: Array<{ field: ChatField; value: ChatValue }> = []
  if (event.name !== undefined) out.push({ field: 'name', value: cleanChatText('name', event.name) })
  if (event.topic !== undefined) out.push({ field: 'topic', value: cleanChatText('topic', event.topic) })
  if (event.avatar !== undefined) out.push({ field: 'avatar', value: event.avatar })
  if (event.timer !== undefined) out.push({ field: 'timer', value: Math.max(0, Math.floor(event.timer)) })
  return out
}

const json = (v: ChatValue): string => JSON.stringify(v)

export interface GroupStateOptions {
  db: Db
  portals: PortalStore
  /** Makes sure a delivery queue is being worked on (Outbox.kick; the outbox is built after its dispatcher). */
  kick: (network: NetworkId, chatId: string) => void
  rooms: MatrixRooms
  log: Logger
}

export class GroupState {
  private readonly opts: GroupStateOptions

  constructor(opts: GroupStateOptions) {
    this.opts = opts
  }

  // ---- the portal's choices ---------------------------------------------------------------------------

  async settings(portalId: number, q: Queryable = this.opts.db): Promise<SyncSettings> {
    const out = Object.fromEntries(CHAT_FIELDS.map(f => [f, { ...(DEFAULTS[f] ?? DEFAULT) }])) as SyncSettings
    const { rows } = await q.query<{ field: ChatField; direction: SyncDirection; enabled: boolean }>(
      'SELECT field, direction, enabled FROM portal_sync WHERE portal_id = $1', [portalId])
    for (const r of rows) if (out[r.field]) out[r.field][r.direction] = r.enabled
    return out
  }

  async setSetting(portalId: number, field: ChatField, direction: SyncDirection, enabled: boolean): Promise<void> {
    await this.opts.db.query(
      `INSERT INTO portal_sync (portal_id, field, direction, enabled) VALUES ($1, $2, $3, $4)
       ON CONFLICT (portal_id, field, direction) DO UPDATE SET enabled = EXCLUDED.enabled`,
      [portalId, field, direction, enabled])
  }

  // ---- what each side shows -------------------------------------------------------------------------

  /** What a side of the portal shows now, as far as the bridge knows (undefined: not known yet). */
  async shown(portalId: number, network: NetworkId, field: ChatField, q: Queryable = this.opts.db): Promise<ChatValue | undefined> {
    const { rows } = await q.query<{ value: ChatValue }>(
      'SELECT value FROM group_state WHERE portal_id = $1 AND network = $2 AND field = $3', [portalId, network, field])
    return rows[0]?.value
  }

  /** Records what a side shows; true when that is a change. */
  private async record(q: Queryable, portalId: number, network: NetworkId, field: ChatField, value: ChatValue): Promise<boolean> {
    const { rowCount } = await q.query(
      `INSERT INTO group_state (portal_id, network, field, value) VALUES ($1, $2, $3, $4::jsonb)
       ON CONFLICT (portal_id, network, field) DO UPDATE SET value = EXCLUDED.value, updated_at = now()
       WHERE group_state.value IS DISTINCT FROM EXCLUDED.value`,
      [portalId, network, field, json(value)])
    return rowCount > 0
  }

  private async forget(q: Queryable, portalId: number, network: NetworkId, field: ChatField): Promise<void> {
    await q.query('DELETE FROM group_state WHERE portal_id = $1 AND network = $2 AND field = $3', [portalId, network, field])
  }

  /** What a side shows when it is linked (nothing is sent): a later update there is compared with it. */
  async seed(portal: Portal, network: NetworkId, values: Partial<Record<ChatField, ChatValue>>): Promise<void> {
    for (const field of CHAT_FIELDS) {
      const value = values[field]
      if (value !== undefined) await this.record(this.opts.db, portal.id, network, field, value)
    }
  }

  // ---- a change arrives -------------------------------------------------------------------------------

  /** A side's name, topic or picture changed: recorded, and queued to the other sides the portal's choices allow. */
  async receive(portal: Portal, event: InboundChatUpdate): Promise<void> {
    const { db, kick, portals } = this.opts
    const origin = event.chat.network
    const deliveries: NewDelivery[] = []
    let renamed: string | undefined
    await db.transaction(async tx => {
      const settings = await this.settings(portal.id, tx)
      for (const { field, value } of changesOf(event)) {
        // No change (the echo of the bridge's own, or an update that names every field, as Signal's do).
        if (!(await this.record(tx, portal.id, origin, field, value))) continue
        // Whoever changed it there has the last word over a change of ours still waiting to be made there.
        await tx.query('DELETE FROM pending_group_state WHERE portal_id = $1 AND network = $2 AND field = $3', [portal.id, origin, field])
        if (field === 'name' && typeof value === 'string') renamed = value
        for (const target of NETWORKS) {
          const chatId = chatOf(portal, target)
          if (target === origin || !chatId || !settings[field][directionOf(target)]) continue
          deliveries.push({ portalId: portal.id, messageId: null, network: target, chatId, op: 'chat_update', payload: { sender: event.sender, field, value } })
        }
      }
      await Outbox.enqueue(tx, deliveries)
    })
    if (renamed !== undefined && renamed !== portal.name) await portals.setName(portal, renamed)
    for (const d of deliveries) kick(d.network, d.chatId)
  }

  // ---- a change is delivered --------------------------------------------------------------------------

  /** Sends one queued change through `participant`; a change it may not make waits for the permission. */
  async deliver(row: OutboxRow, participant: Participant, base: Pick<Delivery, 'target' | 'sender' | 'deliveryId'>): Promise<void> {
    const { db } = this.opts
    const p = row.payload as unknown as ChatPayload
    const { field } = p
    const where = { portalId: row.portal_id, network: row.network }
    if (p.retry) {
      // Re-queued when a permission arrived: unless a newer change (or someone on that side) has settled it meanwhile.
      const waiting = await this.waiting(where.portalId, where.network, field)
      if (waiting === undefined || !same(waiting, p.value)) return
    }
    // As this network would keep it (cut to its limits): the echo then reads the same as what was recorded.
    const value = participant.chatValue?.(field, p.value) ?? p.value
    const before = await this.shown(where.portalId, where.network, field)
    if (!same(before, value)) {
      await this.record(db, where.portalId, where.network, field, value)
      try {
        await participant.send({ ...base, kind: 'chat_update', field, value })
      } catch (err) {
        if (before === undefined) await this.forget(db, where.portalId, where.network, field)
        else await this.record(db, where.portalId, where.network, field, before)
        if (err instanceof NotPermitted) return this.wait(row, p, err)
        throw err
      }
    }
    await db.query('DELETE FROM pending_group_state WHERE portal_id = $1 AND network = $2 AND field = $3', [where.portalId, where.network, field])
  }

  private async waiting(portalId: number, network: NetworkId, field: ChatField): Promise<ChatValue | undefined> {
    const { rows } = await this.opts.db.query<{ value: ChatValue }>(
      'SELECT value FROM pending_group_state WHERE portal_id = $1 AND network = $2 AND field = $3', [portalId, network, field])
    return rows[0]?.value
  }

  /** Keeps a change the bridge may not make, and tells the room once (not again while changes there wait). */
  private async wait(row: OutboxRow, p: ChatPayload, err: NotPermitted): Promise<void> {
    const { db, portals, rooms, log } = this.opts
    const waitingBefore = await db.transaction(async tx => {
      const { rows } = await tx.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM pending_group_state WHERE portal_id = $1 AND network = $2', [row.portal_id, row.network])
      await tx.query(
        `INSERT INTO pending_group_state (portal_id, network, field, value, sender) VALUES ($1, $2, $3, $4::jsonb, $5::jsonb)
         ON CONFLICT (portal_id, network, field) DO UPDATE SET value = EXCLUDED.value, sender = EXCLUDED.sender`,
        [row.portal_id, row.network, p.field, json(p.value), JSON.stringify(p.sender)])
      return (rows[0]?.n ?? 0) > 0
    })
    log.info({ portal: row.portal_id, network: row.network, field: p.field }, 'A group change waits for a permission')
    const portal = portals.get(row.portal_id)
    if (waitingBefore || !portal) return
    await rooms.notice(portal.roomId, `⚠️ I could not change ${whatOf(row.network, p.field)} to ${shownValue(p.value)}: ${err.missing}. ${err.remedy}`)
      .catch(e => log.warn({ err: (e as Error).message }, 'Could not say in the room that a group change waits for a permission'))
  }

  /** Something about permissions changed on a side of a portal (power levels, admins): what waited there is tried again. */
  async permissionsChanged(network: NetworkId, chatId: string): Promise<void> {
    const { db, portals, kick } = this.opts
    const portal = portals.find(network, chatId)
    if (!portal) return
    const { rows } = await db.query<{ field: ChatField; value: ChatValue; sender: Person }>(
      'SELECT field, value, sender FROM pending_group_state WHERE portal_id = $1 AND network = $2 ORDER BY created_at', [portal.id, network])
    if (rows.length === 0) return
    const target = chatOf(portal, network)!
    await Outbox.enqueue(db, rows.map(r => ({
      portalId: portal.id, messageId: null, network, chatId: target, op: 'chat_update' as const,
      payload: { sender: r.sender, field: r.field, value: r.value, retry: true },
    })))
    kick(network, target)
  }
}

/** "the room name", "the WhatsApp group's description", … */
export function whatOf(network: NetworkId, field: ChatField): string {
  if (network === 'matrix') return { name: 'the room name', topic: 'the room topic', avatar: 'the room picture', timer: 'the room’s notice of the disappearing-message timer' }[field]
  return `the ${NETWORK_LABEL[network]} group's ${{ name: 'name', topic: 'description', avatar: 'picture', timer: 'disappearing-message timer' }[field]}`
}

function shownValue(value: ChatValue): string {
  if (value === null) return 'no picture'
  if (typeof value === 'number') return timerLabel(value)
  if (typeof value !== 'string') return 'a new picture'
  return `“${withinChars(value, 80)}”`
}
