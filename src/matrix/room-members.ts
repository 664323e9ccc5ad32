// Who is in a portal's groups, shown in its room: the ghosts of the groups' people come in, and go as they went from
// their group (leaving, removed, banned); the groups' admins have the configured power level in the room. Power set
// in Matrix is never carried to the groups: the groups decide who their admins are.
import type { Logger } from 'pino'
import { DeliveryError } from '../core/errors.ts'
import type { MembersChange, Person } from '../core/model.ts'
import { MatrixApiError, type HomeserverApi } from './client.ts'
import { ghostMxid, type Ghosts } from './ghosts.ts'

export interface RoomMembersOptions {
  api: HomeserverApi
  ghosts: Ghosts
  domain: string
  botMxid: string
  log: Logger
}

export class RoomMembers {
  private readonly opts: RoomMembersOptions
  /** Rooms where the bot was found unable to set power levels (said once in the log). */
  private readonly powerless = new Set<string>()
  /** Per room, the time between two joins the homeserver showed it allows (the wait of its first 429), and when
   * the next join may go: a thousand joins then meet one refusal, not one each. */
  private readonly pace = new Map<string, { intervalMs: number; next: number }>()

  constructor(opts: RoomMembersOptions) {
    this.opts = opts
  }

  /**
   * One ghost after the other: a batch is bounded (core/members.ts), and a homeserver that rate-limits joins answers
   * 429 with the wait, which the outbox honours before the batch goes again (the ghosts already in are no-ops then).
   */
  async apply(change: MembersChange): Promise<void> {
    const { ghosts, domain } = this.opts
    const room = change.roomId
    for (const j of change.joins) {
      const joining = !(await ghosts.isJoined(ghostMxid(j.person, domain), room))
      if (joining) this.wait(room)
      try {
        await ghosts.enter(j.person, room, j.named === false)
      } catch (err) {
        this.learn(room, err)
        throw err
      }
      if (joining) this.joined(room)
    }
    for (const l of change.leaves) await ghosts.depart(l.person, change.roomId, l.how, l.reason ?? '')
    if (change.adminLevel !== null) {
      await this.power(change.roomId, change.adminLevel, [
        ...change.joins.map(j => ({ person: j.person, admin: j.admin })),
        ...change.leaves.map(l => ({ person: l.person, admin: false })),
      ])
    }
  }

  /** Not yet: the outbox waits as for a 429 (the homeserver is not asked in vain), and the batch goes on then. */
  private wait(room: string): void {
    const pace = this.pace.get(room)
    const ms = pace ? pace.next - Date.now() : 0
    if (ms > 0) {
      throw new DeliveryError('transient', 'Bringing the groups\' people into the room at the pace the homeserver allows.', { retryAfterMs: ms, rateLimited: true })
    }
  }

  private joined(room: string): void {
    const pace = this.pace.get(room)
    if (pace) pace.next = Date.now() + pace.intervalMs
  }

  /**
   * A join refused with a wait (rc_joins_per_room, rc_joins): from now on this room's joins are spaced. The wait says
   * when the next join may go, which is at most the time between two (Synapse's leaky bucket), so each further
   * refusal widens the spacing by half: a few refusals find the pace, not one per join.
   */
  private learn(room: string, err: unknown): void {
    if (!(err instanceof MatrixApiError) || err.status !== 429 || err.retryAfterMs === undefined || !err.request?.includes('/join')) return
    const before = this.pace.get(room)?.intervalMs
    const intervalMs = Math.max(err.retryAfterMs, before === undefined ? 1 : before * 1.5)
    this.pace.set(room, { intervalMs, next: Date.now() + err.retryAfterMs })
    this.opts.log.info({ room, intervalMs }, 'The homeserver limits joins to this room; bringing the groups\' people in at its pace')
  }

  /** Group admins get `level` in the room, in one power-levels event per batch; others lose it. A level someone set
   * by hand (any other than `level`) is left alone. */
  private async power(roomId: string, level: number, people: Array<{ person: Person; admin: boolean }>): Promise<void> {
    const { api, botMxid, domain, log } = this.opts
    const pl = await api.getPowerLevels(roomId, botMxid)
    if (!pl) return
    const users = { ...(pl.users ?? {}) }
    const fallback = pl.users_default ?? 0
    let changed = false
    for (const { person, admin } of people) {
      const mxid = ghostMxid(person, domain)
      const now = users[mxid] ?? fallback
      if (admin && now < level) {
        users[mxid] = level
        changed = true
      } else if (!admin && users[mxid] === level) {
        delete users[mxid]
        changed = true
      }
    }
    if (!changed) return
    const mine = pl.users?.[botMxid] ?? fallback
    const need = pl.events?.['m.room.power_levels'] ?? pl.state_default ?? 50
    if (mine < need || mine < level) {
      if (!this.powerless.has(roomId)) {
        this.powerless.add(roomId)
        log.warn({ room: roomId, have: mine, need: Math.max(need, level) },
          `The groups' admins cannot be made moderators in this room: the bot has power level ${mine} and needs ${Math.max(need, level)}. Give it that level in the room, or set bridge.admin_power_level to false.`)
      }
      return
    }
    this.powerless.delete(roomId)
    await api.sendState(botMxid, roomId, 'm.room.power_levels', '', { ...pl, users })
  }
}
