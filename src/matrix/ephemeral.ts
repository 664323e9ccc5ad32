// Typing notices and read receipts in Matrix, both ways. Remote people's are shown on their ghosts (the sink
// the core's Ephemeral hands them to). Matrix people's arrive in transactions and are deliberately not
// relayed: the relay account speaks for everyone, so relaying them would show the relay typing and reading.
import type { Logger } from 'pino'
import { Counter, type Registry } from 'prom-client'
import type { Person } from '../core/model.ts'
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

/** Counts the ephemeral events of a transaction and lets them go. They are never stored: a typing notice or
 * receipt of a Matrix person has no place in the groups (see the top of this file). */
export function matrixEphemeralDrop(registry: Registry): (events: unknown[]) => void {
  const counter = (registry.getSingleMetric('relay_bridge_matrix_ephemeral_total') as Counter<'type' | 'outcome'> | undefined) ?? new Counter({
    name: 'relay_bridge_matrix_ephemeral_total',
    help: 'Ephemeral events (typing, receipts, presence) received from the homeserver, by type; none is relayed',
    labelNames: ['type', 'outcome'] as const,
    registers: [registry],
  })
  return events => {
    for (const e of events) {
      const type = (e as { type?: unknown } | null)?.type
      counter.inc({ type: typeof type === 'string' && MATRIX_EPHEMERAL_TYPES.has(type) ? type : 'other', outcome: 'not_relayed' })
    }
  }
}
