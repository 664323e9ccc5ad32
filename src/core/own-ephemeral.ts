// Matrix people's typing and read receipts, carried to a portal's group only through the person's own (personal)
// login on that network, as themselves. Never through the relay: it speaks for everyone, so it would seem to type
// and read; and never through anyone else's login. Someone without a login of their own on a network shows nothing
// there. As in the other direction (core/ephemeral.ts) nothing is recorded or queued: a lost one is superseded by
// the next, and a failure is only logged.
import type { Logger } from 'pino'
import type { Queryable } from '../db/types.ts'
import { MessageMap } from './messages.ts'
import { REMOTE_NETWORKS, type MatrixEphemeral, type MatrixRead, type MatrixTyping, type RemoteNetworkId } from './model.ts'
import type { Login, RemoteNetwork } from './network.ts'
import type { OwnLogins } from './own-logins.ts'
import { chatOf, type Portal, type PortalStore } from './portals.ts'

/** Read positions remembered so that a receipt never goes backwards or twice; the oldest are forgotten past this. */
const MAX_POSITIONS = 10_000

export interface OwnEphemeralOptions {
  db: Queryable
  portals: PortalStore
  own: OwnLogins
  networks: Map<RemoteNetworkId, RemoteNetwork>
  log: Logger
}

export class OwnEphemeral {
  private readonly opts: OwnEphemeralOptions
  /** Room → who Matrix last said was typing there: the list arrives whole, the groups want starts and stops. */
  private readonly typing = new Map<string, Set<string>>()
  /** `room \0 person \0 network` → the message last marked read there. */
  private readonly positions = new Map<string, number>()
  /** One at a time, in arrival order: a stop never overtakes its start. */
  private chain: Promise<unknown> = Promise.resolve()

  constructor(opts: OwnEphemeralOptions) {
    this.opts = opts
  }

  /** Takes an event; resolves to whether any of it went to a group. Never fails. */
  receive(event: MatrixEphemeral): Promise<boolean> {
    const run = this.chain.then(() => (event.kind === 'typing' ? this.typed(event) : this.read(event)))
      .catch((err: unknown) => {
        this.opts.log.debug({ kind: event.kind, err: (err as Error).message }, 'Could not carry a Matrix typing notice or receipt to a group')
        return false
      })
    this.chain = run
    return run
  }

  private async typed(event: MatrixTyping): Promise<boolean> {
    const portal = this.opts.portals.byRoom(event.roomId)
    const before = this.typing.get(event.roomId) ?? new Set<string>()
    const now = new Set(event.userIds)
    if (!portal) return false
    if (now.size > 0) this.typing.set(event.roomId, now)
    else this.typing.delete(event.roomId)
    const changes: Array<[string, boolean]> = [
      ...[...now].filter(u => !before.has(u)).map((u): [string, boolean] => [u, true]),
      ...[...before].filter(u => !now.has(u)).map((u): [string, boolean] => [u, false]),
    ]
    let sent = false
    for (const [mxid, typing] of changes) {
      await this.each(portal, mxid, async (adapter, own, chatId) => {
        if (!adapter.typingAs) return
        await adapter.typingAs(own, chatId, typing)
        sent = true
      })
    }
    return sent
  }

  private async read(event: MatrixRead): Promise<boolean> {
    const portal = this.opts.portals.byRoom(event.roomId)
    if (!portal) return false
    // Receipts are frequent and most readers have no login of their own: the message is looked up only for one who does.
    let found: ReturnType<typeof MessageMap.find> | undefined
    let sent = false
    await this.each(portal, event.userId, async (adapter, own, chatId, network) => {
      if (!adapter.readAs) return
      const message = (await (found ??= MessageMap.find(this.opts.db, 'matrix', event.roomId, event.eventId)))?.message
      if (!message || message.kind !== 'message') return
      const messageId = message.id
      const position = `${event.roomId}\u0000${event.userId}\u0000${network}`
      if ((this.positions.get(position) ?? -1) >= messageId) return
      // Only a message that has a copy there, and that someone else wrote: nobody reads their own message.
      const copy = (await MessageMap.copiesOn(this.opts.db, messageId, network)).original
      if (!copy || copy.authorId === own.personId) return
      await adapter.readAs(own, chatId, copy)
      sent = true
      this.positions.delete(position)
      this.positions.set(position, messageId)
      if (this.positions.size > MAX_POSITIONS) this.positions.delete(this.positions.keys().next().value!)
    })
    return sent
  }

  /** Runs `work` for every network of the portal where the person has a personal login that can post in its
   * group now (linked, and not found unable to post there lately). */
  private async each(portal: Portal, mxid: string,
    work: (adapter: RemoteNetwork, own: Login, chatId: string, network: RemoteNetworkId) => Promise<void>): Promise<void> {
    for (const network of REMOTE_NETWORKS) {
      const chatId = chatOf(portal, network)
      const adapter = this.opts.networks.get(network)
      if (!chatId || !adapter) continue
      const choice = await this.opts.own.speaking({ network: 'matrix', id: mxid, displayName: '' }, network, chatId)
      if (!choice || !('via' in choice)) continue
      try {
        await work(adapter, choice.via, chatId, network)
      } catch (err) {
        this.opts.log.debug({ network, login: choice.via.id, err: (err as Error).message }, 'A group did not take a typing notice or receipt')
      }
    }
  }
}
