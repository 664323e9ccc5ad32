// Typing notices and read receipts in Matrix, both ways. Remote people's are shown on their ghosts (the sink
// the core's Ephemeral hands them to). Matrix people's arrive in transactions and go to a group only through
// the person's own login there (core/own-ephemeral.ts): the relay account speaks for everyone, so relaying them
// would show the relay typing and reading.
import type { Logger } from 'pino'
import { Counter, type Registry } from 'prom-client'
import type { MatrixEphemeral, Person } from '../core/model.ts'
import type { EphemeralSink } from '../core/network.ts'
import type { HomeserverApi } from './client.ts'
import { ghostMxid, type Ghosts } from './ghosts.ts'

/** Shows typing and receipts as the person's ghost, when that ghost is in the room. A ghost joins a room when its
 * group is linked or its person joins the group (core/members.ts), or when its person first writes there: typing or
 * reading alone does not make a membership event (nor a new ghost, nor a profile). */
export class GhostEphemeral implements EphemeralSink {
  private readonly opts: { api: HomeserverApi; ghosts: Ghosts; domain: string; log: Logger }

  constructor(opts: { api: HomeserverApi; ghosts: Ghosts; domain: string; log: Logger }) {
    this.opts = opts
  }

  async typing(person: Person, roomId: string, typing: boolean, timeoutMs: number): Promise<void> {
    const ghost = await this.joined(person, roomId)
    if (ghost) await this.opts.api.setTyping(ghost, roomId, typing, timeoutMs)
  }

  async read(person: Person, roomId: string, eventId: string): Promise<void> {
    const ghost = await this.joined(person, roomId)
    if (ghost) await this.opts.api.sendReadReceipt(ghost, roomId, eventId)
  }

  private async joined(person: Person, roomId: string): Promise<string | undefined> {
    const ghost = ghostMxid(person, this.opts.domain)
    return (await this.opts.ghosts.isJoined(ghost, roomId)) ? ghost : undefined
  }
}

const MATRIX_EPHEMERAL_TYPES = new Set(['m.typing', 'm.receipt', 'm.presence'])

/** What a transaction's ephemeral event says in the neutral model: who types in a room now (`m.typing`), who
 * read up to which event (public `m.read` receipts only: `m.read.private` is the person's own business). Presence
 * and anything malformed say nothing. */
export function matrixEphemeralOf(event: unknown): MatrixEphemeral[] {
  const e = event as { type?: unknown; room_id?: unknown; content?: unknown } | null
  if (!e || typeof e.room_id !== 'string' || typeof e.content !== 'object' || e.content === null) return []
  const roomId = e.room_id
  if (e.type === 'm.typing') {
    const ids = (e.content as { user_ids?: unknown }).user_ids
    return Array.isArray(ids) ? [{ kind: 'typing', roomId, userIds: ids.filter((u): u is string => typeof u === 'string') }] : []
  }
  if (e.type !== 'm.receipt') return []
  const out: MatrixEphemeral[] = []
  for (const [eventId, byType] of Object.entries(e.content as Record<string, unknown>)) {
    const readers = (byType as { 'm.read'?: unknown } | null)?.['m.read']
    if (typeof readers !== 'object' || readers === null) continue
    for (const userId of Object.keys(readers)) out.push({ kind: 'read', roomId, userId, eventId })
  }
  return out
}

/** Hands the ephemeral events of a transaction to `deliver` (the core, which sends them on only through people's own
 * logins, see the top of this file) and counts them by type and by whether any of it went to a group. */
export function matrixEphemeral(registry: Registry, deliver: (event: MatrixEphemeral) => Promise<boolean>): (events: unknown[]) => void {
  const counter = (registry.getSingleMetric('relay_bridge_matrix_ephemeral_total') as Counter<'type' | 'outcome'> | undefined) ?? new Counter({
    name: 'relay_bridge_matrix_ephemeral_total',
    help: 'Ephemeral events (typing, receipts, presence) received from the homeserver, by type and by whether any of it went to a group through someone\'s own login',
    labelNames: ['type', 'outcome'] as const,
    registers: [registry],
  })
  return events => {
    for (const e of events) {
      const raw = (e as { type?: unknown } | null)?.type
      const type = typeof raw === 'string' && MATRIX_EPHEMERAL_TYPES.has(raw) ? raw : 'other'
      void Promise.all(matrixEphemeralOf(e).map(deliver))
        .then(sent => counter.inc({ type, outcome: sent.some(Boolean) ? 'relayed' : 'not_relayed' }))
    }
  }
}
