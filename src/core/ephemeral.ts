// Typing notices and read receipts of Signal and WhatsApp people, shown in Matrix on their ghosts.
//
// Neither is a message, so neither takes the message path: nothing is recorded, nothing is queued in the
// outbox, and nothing here waits for or holds back a delivery. They are kept in memory only: a crash or a
// restart loses what was pending, which is harmless (a typing notice is stale within seconds; a later
// receipt supersedes an earlier one). Only the newest state per person and chat matters, so an event that
// arrives while an older one of the same person and chat still waits replaces it, and the pending set is
// bounded. One worker handles them in arrival order, so a later event never overtakes an earlier one.
import type { Logger } from 'pino'
import type { Queryable } from '../db/types.ts'
import { MessageMap } from './messages.ts'
import type { EphemeralEvent, InboundRead, InboundTyping, RemoteNetworkId } from './model.ts'
import type { EphemeralSink } from './network.ts'
import { chatOf, loginOf, type PortalStore } from './portals.ts'

/** How long a typing notice lasts in Matrix unless renewed: Signal and WhatsApp clients repeat theirs every
 * few seconds while typing and send a stop, so this only ends a typing notice whose stop was lost. */
export const TYPING_TIMEOUT_MS = 15_000
/** Beyond this many waiting events (the homeserver is slow or away), new ones are dropped. */
const MAX_PENDING = 1000
/** Read positions remembered to keep receipts from going backwards; the oldest are forgotten past this. */
const MAX_POSITIONS = 10_000

export interface EphemeralOptions {
  db: Queryable
  portals: PortalStore
  sink: EphemeralSink
  /** bridge.typing_to_matrix and bridge.receipts_to_matrix. */
  typing: boolean
  receipts: boolean
  log: Logger
  /** Resolves once the copies being sent to a chat right now are recorded (Outbox.recorded): a receipt can come for
   * a copy the network has shown before the bridge has its answer. */
  recorded?: (network: RemoteNetworkId, chatId: string) => Promise<void>
}

export class Ephemeral {
  private readonly opts: EphemeralOptions
  private readonly pending = new Map<string, EphemeralEvent>()
  /** `room \0 person` → the message id last marked read there. */
  private readonly positions = new Map<string, number>()
  private running: Promise<void> | undefined
  private stopped = false

  constructor(opts: EphemeralOptions) {
    this.opts = opts
  }

  get wants(): { typing: boolean; receipts: boolean } {
    return { typing: this.opts.typing, receipts: this.opts.receipts }
  }

  /** Takes an event; returns at once. */
  receive(event: EphemeralEvent): void {
    if (this.stopped || (event.kind === 'typing' ? !this.opts.typing : !this.opts.receipts)) return
    const key = [event.kind, event.network, event.kind === 'typing' ? event.chatId : (event.chatId ?? event.loginId), event.sender.id].join('\u0000')
    if (!this.pending.has(key) && this.pending.size >= MAX_PENDING) return
    // A newer state of the same person replaces a waiting one in its place; Map keeps the first position.
    this.pending.set(key, event)
    this.kick()
  }

  private kick(): void {
    if (this.running || this.stopped) return
    this.running = this.work().finally(() => {
      this.running = undefined
      if (this.pending.size > 0) this.kick()
    })
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.pending.clear()
    await this.running
  }

  private async work(): Promise<void> {
    for (;;) {
      const next = this.pending.entries().next()
      if (next.done || this.stopped) return
      const [key, event] = next.value
      this.pending.delete(key)
      try {
        if (event.kind === 'typing') await this.typing(event)
        else await this.read(event)
      } catch (err) {
        // Never retried: by the time the homeserver is back, this state is stale.
        this.opts.log.debug({ kind: event.kind, network: event.network, err: (err as Error).message }, 'Could not show a typing notice or receipt in Matrix')
      }
    }
  }

  private async typing(event: InboundTyping): Promise<void> {
    // Also in encrypted portals: Matrix never encrypts typing notices and receipts (ephemeral events).
    const portal = this.opts.portals.find(event.network, event.chatId)
    if (!portal) return
    await this.opts.sink.typing(event.sender, portal.roomId, event.typing, TYPING_TIMEOUT_MS)
  }

  private async read(event: InboundRead): Promise<void> {
    const { portals, db } = this.opts
    // The chats the receipt can be about: the one named, or (Signal) every group this login relays.
    const chats = event.chatId !== undefined
      ? (portals.find(event.network, event.chatId) ? [event.chatId] : [])
      : portals.all().filter(p => loginOf(p, event.network) === event.loginId).map(p => chatOf(p, event.network)).filter((c): c is string => c !== null)
    // Someone may read a copy as soon as the network shows it, before the bridge has recorded it.
    await Promise.all(chats.map(chat => this.opts.recorded?.(event.network, chat)))
    const read = await MessageMap.latestOnMatrix(db, event.network, chats, event.targets)
    if (!read) return // none of them reached Matrix
    const portal = portals.all().find(p => p.id === read.portalId)
    if (!portal) return
    const position = `${portal.roomId}\u0000${event.network}\u0000${event.sender.id}`
    if ((this.positions.get(position) ?? -1) >= read.messageId) return
    await this.opts.sink.read(event.sender, portal.roomId, read.eventId)
    this.positions.delete(position)
    this.positions.set(position, read.messageId)
    if (this.positions.size > MAX_POSITIONS) this.positions.delete(this.positions.keys().next().value!)
  }
}
