// Step 3 of the flow of one message: in one database transaction, record the event (a unique key on its
// remote id makes a redelivery a no-op) and queue one delivery per other network of the portal.
import type { Logger } from 'pino'
import { Coalescer } from '../db/coalesce.ts'
import type { Db, Queryable } from '../db/types.ts'
import { Expiry } from './expiry.ts'
import { MessageMap, type AlsoRecorded, type FoundCopy, type Queued } from './messages.ts'
import type { ChatRef, InboundEvent, NetworkId, Person } from './model.ts'
import { NETWORKS } from './model.ts'
import { Outbox, type NewDelivery } from './outbox.ts'
import { chatOf, type Portal, type PortalStore } from './portals.ts'

export type RouteResult = 'queued' | 'duplicate' | 'no_portal' | 'unknown_target' | 'not_allowed' | 'ignored'

export interface RouterOptions {
  db: Db
  portals: PortalStore
  outbox: Outbox
  log: Logger
  /** Creates a portal for a remote group that has none yet (auto_create_portals), or declines. */
  createPortal?: (event: InboundEvent) => Promise<Portal | undefined>
  /** A group's name or topic changed. */
  onChatUpdate?: (portal: Portal, event: Extract<InboundEvent, { kind: 'chat_update' }>) => Promise<void>
  /** Who is in a group changed. */
  onMembers?: (portal: Portal, event: Extract<InboundEvent, { kind: 'members' }>) => Promise<void>
  /** Who the sender is: someone's personal account speaks as its owner's Matrix user (core/own-logins.ts). */
  identify?: (sender: Person, roomId: string) => Promise<Person>
  /** Disappearing messages were recorded (Expiry.wake): the first of their Matrix copies goes at `dueAt`. */
  onExpiring?: (dueAt: number) => void
  /** The clock disappearing messages are counted by (Expiry's). */
  now?: () => number
}

/** What a caller of receiveMany marks as handled in the transaction that records the events (see there). */
export interface Handled {
  ids: number[]
  /** The mark as one data-modifying statement (`param`: the ids, a bigint[]): run in the recording transaction, or
   * joined to the one statement that records the events (recordAlone). */
  statement: (param: string) => string
}

/** Marks `handled` in `q` (the recording transaction, or the database itself). */
async function mark(q: Queryable, handled: Handled): Promise<void> {
  if (handled.ids.length > 0) await q.query(handled.statement('$1'), [handled.ids])
}

class Duplicate extends Error {}

export class Router {
  private readonly opts: RouterOptions
  private readonly creating = new Map<string, Promise<Portal | undefined>>()

  constructor(opts: RouterOptions) {
    this.opts = opts
  }

  private async portalFor(event: InboundEvent): Promise<Portal | undefined> {
    const { portals, createPortal } = this.opts
    const existing = portals.find(event.chat.network, event.chat.id)
    if (existing || event.chat.network === 'matrix' || event.kind !== 'message' || !createPortal) return existing
    // Two messages from a new group arriving together must make one room, not two.
    const key = `${event.chat.network}:${event.chat.id}`
    let pending = this.creating.get(key)
    if (!pending) {
      pending = createPortal(event).finally(() => this.creating.delete(key))
      this.creating.set(key, pending)
    }
    return pending
  }

  async receive(event: InboundEvent): Promise<RouteResult> {
    const portal = await this.portalFor(event)
    if (!portal) return 'no_portal'
    await this.copiesRecorded([event])
    if (event.kind === 'chat_update') {
      await this.opts.onChatUpdate?.(portal, event)
      return 'queued'
    }
    if (event.kind === 'members') {
      await this.opts.onMembers?.(portal, event)
      return 'queued'
    }
    const targets = targetsOf(portal, event)
    const sender = await this.identify(event, portal)
    if (isPlain(event)) {
      // The hot path (recordAlone): one statement instead of a transaction.
      const ids = await this.recordPlain([{ portal, event, sender }])
      return ids[0] === undefined ? 'duplicate' : 'queued'
    }
    let deliveries: NewDelivery[] = []
    let result: RouteResult
    try {
      result = await this.opts.db.transaction(async tx => {
        const out = await this.record(tx, portal, event, targets, sender)
        if (typeof out === 'string') return out
        deliveries = out
        await Outbox.enqueue(tx, deliveries)
        return 'queued'
      })
    } catch (err) {
      if (err instanceof Duplicate) return 'duplicate'
      throw err
    }
    for (const d of deliveries) this.opts.outbox.kick(d.network, d.chatId)
    this.expiringRecorded([event])
    return result
  }

  /**
   * Records several events of chats that already have portals in one transaction (one commit), in order.
   * Throws if any of them cannot be recorded, leaving nothing recorded: the caller then goes one by one.
   * Calls made while another is being recorded (other rooms of the same inbox batch) share its next
   * transaction; a failure there is retried per call, so each caller still learns only of its own events.
   * `handled` marks the caller's own records of these events (the Matrix inbox's rows) in the same transaction,
   * instead of a commit of its own afterwards: at low rates every commit saved is one less per message.
   */
  async receiveMany(events: InboundEvent[], handled?: Handled): Promise<void> {
    if (events.some(e => e.kind === 'chat_update' || e.kind === 'members' || !this.opts.portals.find(e.chat.network, e.chat.id))) {
      for (const e of events) await this.receive(e)
      if (handled) await mark(this.opts.db, handled)
      return
    }
    await this.copiesRecorded(events)
    await this.batches.add({ events, handled })
  }

  /** Waits until the copies these events may answer are recorded, where the bridge is sending to their chats
   * right now (Outbox.recorded says why). */
  private async copiesRecorded(events: InboundEvent[]): Promise<void> {
    const chats = new Map<string, ChatRef>()
    for (const e of events) {
      if (e.kind === 'edit' || e.kind === 'delete' || e.kind === 'reaction' || (e.kind === 'message' && e.replyTo)) {
        chats.set(`${e.chat.network}\u0000${e.chat.id}`, e.chat)
      }
    }
    await Promise.all([...chats.values()].map(c => this.opts.outbox.recorded(c.network, c.id)))
  }

  private readonly batches = new Coalescer<{ events: InboundEvent[]; handled?: Handled | undefined }>(async items => {
    const deliveries: NewDelivery[] = []
    const events = items.flatMap(i => i.events)
    // The calls that share this transaction mark their records together: one statement per kind of mark.
    const marks = new Map<Handled['statement'], Handled>()
    for (const { handled } of items) {
      if (!handled) continue
      const seen = marks.get(handled.statement)
      marks.set(handled.statement, seen ? { ...seen, ids: [...seen.ids, ...handled.ids] } : handled)
    }
    if (!await this.recordAlone(events, marks)) {
      await this.opts.db.transaction(async tx => {
        // Rooms are independent of each other: their lists go as one, so that the plain messages of all of them
        // share a statement (each room's own order is kept).
        deliveries.push(...await this.recordMany(tx, events))
        await Outbox.enqueue(tx, deliveries)
        for (const handled of marks.values()) await mark(tx, handled)
      })
    }
    for (const d of deliveries) this.opts.outbox.kick(d.network, d.chatId)
    this.expiringRecorded(events)
  })

  /**
   * The hot path, a batch of plain new messages only (no reply, nothing disappearing): recorded, queued and marked
   * handled in ONE autocommit statement, atomic as the transaction it replaces, instead of BEGIN, three
   * statements and COMMIT. At low rates every message pays its own round trips, each one PostgreSQL and bridge
   * CPU. Undefined when the batch needs the transaction (recordMany).
   */
  private async recordAlone(events: InboundEvent[], marks: Map<Handled['statement'], Handled>): Promise<boolean> {
    const handled = [...marks.values()]
    if (events.length > ALONE_MAX || handled.length > 1) return false
    const found: Array<{ portal: Portal; event: PlainMessage }> = []
    for (const event of events) {
      const portal = this.opts.portals.find(event.chat.network, event.chat.id)
      if (!isPlain(event) || !portal) return false
      found.push({ portal, event })
    }
    const items: Array<{ portal: Portal; event: PlainMessage; sender: Person }> = []
    for (const { portal, event } of found) items.push({ portal, event, sender: await this.identify(event, portal) }) // in order, as recordMany
    const h = handled[0]
    await this.recordPlain(items, h && h.ids.length > 0 ? h : undefined)
    return true
  }

  /**
   * recordAlone's statement: the messages, their deliveries and `handled`; each message's id (undefined: a
   * redelivery). The deliveries are handed to their queues as the queues would read them: at low rates that
   * saves each message a read of its queues.
   */
  private async recordPlain(items: Array<{ portal: Portal; event: PlainMessage; sender: Person }>, handled?: AlsoRecorded['handled']): Promise<Array<number | undefined>> {
    // Each message's deliveries, made before its id is known: the statement fills it in.
    const fans = items.map(({ portal, event, sender }) =>
      fanOut(portal, sender, 'message', 0, { content: event.content, ...typedOn(event, sender) }, messageTargets(event, targetsOf(portal, event))))
    // Each payload as JSON text once: the statement stores it, and a queue is handed it back parsed, as the table
    // would give it (no undefined members, dates as strings).
    const deliveries = fans.flatMap((list, item) => list.map(d => ({ item, portalId: d.portalId, network: d.network, chatId: d.chatId, payload: JSON.stringify(d.payload) })))
    const recorded = this.opts.outbox.recording(deliveries)
    // Lone 'sent' marks of earlier messages go in this statement: at low rates one commit per message, not two.
    const marks = this.opts.outbox.carry()
    let ids: Array<number | undefined>
    let queued: Queued[]
    try {
      ({ ids, queued } = await MessageMap.createManyAndQueue(this.opts.db, items.map(({ portal, event, sender }) => newMessage(portal, event, sender)), { deliveries, handled, marks }))
    } catch (err) {
      marks?.failed()
      recorded()
      throw err
    }
    marks?.done()
    const itemOf = new Map(ids.flatMap((id, item) => id === undefined ? [] : [[id, item] as const]))
    recorded(queued.map(q => {
      const d = deliveries.find(x => x.item === itemOf.get(q.messageId) && x.network === q.network && x.chatId === q.chatId)!
      return { id: q.id, portal_id: d.portalId, message_id: q.messageId, network: q.network, chat_id: q.chatId, op: 'message',
        payload: JSON.parse(d.payload) as Record<string, unknown>, state: 'pending', attempts: 0, next_attempt_at: new Date(0), created_at: new Date() }
    }))
    return ids
  }

  /** The sender as the bridge records and shows them (see RouterOptions.identify). */
  private async identify(event: InboundEvent, portal: Portal): Promise<Person> {
    return this.opts.identify && event.chat.network !== 'matrix' ? this.opts.identify(event.sender, portal.roomId) : event.sender
  }

  /** Consecutive new messages that reply to nothing (the bulk of any traffic) are recorded in one statement. */
  private async recordMany(tx: Queryable, events: InboundEvent[]): Promise<NewDelivery[]> {
    const deliveries: NewDelivery[] = []
    let plain: Array<{ portal: Portal; event: Extract<InboundEvent, { kind: 'message' }>; targets: NetworkId[]; sender: Person }> = []
    const recordPlain = async (): Promise<void> => {
      if (plain.length === 0) return
      const items = plain
      plain = []
      const ids = await MessageMap.createManyWithOrigin(tx, items.map(({ portal, event, sender }) => newMessage(portal, event, sender)))
      await this.expiring(tx, items.flatMap(({ event, targets }, i) => ids[i] === undefined ? [] : [{ id: ids[i]!, event, targets: messageTargets(event, targets) }]))
      for (const [i, { portal, event, targets, sender }] of items.entries()) {
        const id = ids[i]
        if (id !== undefined) deliveries.push(...fanOut(portal, sender, 'message', id, { content: event.content, ...typedOn(event, sender) }, messageTargets(event, targets)))
      }
    }
    for (const event of events) {
      const portal = this.opts.portals.find(event.chat.network, event.chat.id)
      if (!portal || event.kind === 'chat_update' || event.kind === 'members') continue
      const targets = targetsOf(portal, event)
      const sender = await this.identify(event, portal)
      if (event.kind === 'message' && !event.replyTo) {
        plain.push({ portal, event, targets, sender })
        continue
      }
      await recordPlain() // a reply may quote one of them
      const out = await this.record(tx, portal, event, targets, sender)
      if (typeof out !== 'string') deliveries.push(...out)
    }
    await recordPlain()
    return deliveries
  }

  /** Disappearing messages bound for Matrix: when their copy there must go (core/expiry.ts). */
  private async expiring(tx: Queryable, items: Array<{ id: number; event: Extract<InboundEvent, { kind: 'message' }>; targets: NetworkId[] }>): Promise<void> {
    const now = (this.opts.now ?? Date.now)()
    const due = items.filter(i => (i.event.expiresInSeconds ?? 0) > 0 && i.targets.includes('matrix'))
      // Counted from when the bridge received it, as a member's phone counts from when it showed the message: a
      // sender's clock (the event's timestamp) may be off, and the copy appears in Matrix only now.
      .map(i => ({ messageId: i.id, dueAt: now + i.event.expiresInSeconds! * 1000 }))
    if (due.length === 0) return
    await Expiry.schedule(tx, due)
  }

  /** After the commit (the loop reads what the transaction wrote): a message that disappears may be due soon. */
  private expiringRecorded(events: InboundEvent[]): void {
    const seconds = events.flatMap(e => e.kind === 'message' && (e.expiresInSeconds ?? 0) > 0 ? [e.expiresInSeconds!] : [])
    if (seconds.length > 0) this.opts.onExpiring?.((this.opts.now ?? Date.now)() + Math.min(...seconds) * 1000)
  }

  private async origin(tx: Queryable, event: InboundEvent, messageId: number, role: 'original' | 'revision' | 'action'): Promise<void> {
    const added = await MessageMap.addCopy(tx, {
      network: event.chat.network, chatId: event.chat.id, remoteId: event.remoteId, messageId, role,
      isOrigin: true, authorId: event.sender.id, sentAt: event.timestamp,
    })
    if (!added) throw new Duplicate()
  }

  private async target(tx: Queryable, chat: ChatRef, remoteId: string): Promise<FoundCopy | undefined> {
    return MessageMap.find(tx, chat.network, chat.id, remoteId)
  }

  private async record(tx: Queryable, portal: Portal, event: Exclude<InboundEvent, { kind: 'chat_update' | 'members' }>, targets: NetworkId[], sender: Person): Promise<NewDelivery[] | RouteResult> {
    const { chat } = event
    // A new message checks for a redelivery in the statement that records it (the hot path: one round trip);
    // everything else looks first.
    if (event.kind !== 'message' && await this.target(tx, chat, event.remoteId)) return 'duplicate'
    const fan = (op: NewDelivery['op'], messageId: number, payload: Record<string, unknown>, to = targets): NewDelivery[] =>
      fanOut(portal, sender, op, messageId, { ...payload, ...typedOn(event, sender) }, to)

    switch (event.kind) {
      case 'message': {
        const to = messageTargets(event, targets)
        const reply = event.replyTo ? await this.target(tx, chat, event.replyTo) : undefined
        const [id] = await MessageMap.createManyWithOrigin(tx, [newMessage(portal, event, sender)])
        if (id === undefined) return 'duplicate'
        await this.expiring(tx, [{ id, event, targets: to }])
        return fan('message', id, { content: event.content, ...(reply ? { replyTo: reply.message.id } : {}) }, to)
      }
      case 'edit': {
        const found = await this.target(tx, chat, event.target)
        if (!found || found.message.kind !== 'message') return 'unknown_target'
        if (!sameSender(found, sender)) return 'not_allowed'
        await this.origin(tx, event, found.message.id, 'revision')
        await MessageMap.countEdit(tx, found.message.id)
        return fan('edit', found.message.id, { content: event.content })
      }
      case 'delete': {
        const found = await this.target(tx, chat, event.target)
        if (!found || found.message.deleted) return 'unknown_target'
        // Matrix checks redaction power itself; Signal and WhatsApp senders may delete only their own.
        if (chat.network !== 'matrix' && !sameSender(found, sender)) return 'not_allowed'
        await this.origin(tx, event, found.message.id, 'action')
        await MessageMap.markDeleted(tx, found.message.id)
        if (found.message.kind === 'reaction') {
          return fan('reaction', found.message.id, { emoji: found.message.emoji, removed: true, target: found.message.relates_to })
        }
        return fan('delete', found.message.id, {})
      }
      case 'reaction': {
        const found = await this.target(tx, chat, event.target)
        if (!found || found.message.kind !== 'message') return 'unknown_target'
        const target = found.message.id
        if (event.removed) {
          // Signal and WhatsApp allow one reaction per person per message: a removal ends that one, whatever emoji
          // it names (WhatsApp names none). Matrix removes by redaction, which arrives as a deletion (above).
          const live = await MessageMap.findReaction(tx, target, sender, chat.network === 'matrix' ? event.emoji : undefined)
          if (!live) return 'unknown_target'
          await this.origin(tx, event, live.id, 'action')
          await MessageMap.markDeleted(tx, live.id)
          return fan('reaction', live.id, { emoji: live.emoji ?? event.emoji, removed: true, target })
        }
        const out: NewDelivery[] = []
        // On Signal and WhatsApp a new reaction replaces the person's previous one on that message.
        if (chat.network !== 'matrix') {
          for (const old of await MessageMap.deleteReactionsBy(tx, target, sender)) {
            out.push(...fan('reaction', old.id, { emoji: old.emoji, removed: true, target }))
          }
        }
        const id = await MessageMap.create(tx, { portalId: portal.id, kind: 'reaction', origin: chat.network, sender, relatesTo: target, emoji: event.emoji })
        await this.origin(tx, event, id, 'original')
        out.push(...fan('reaction', id, { emoji: event.emoji, removed: false, target }))
        return out
      }
    }
  }
}

type PlainMessage = Extract<InboundEvent, { kind: 'message' }>

/**
 * The most events recordAlone takes in its one statement. It pays where messages come few at a time and each round
 * trip counts; under load (batches of tens) the transaction measured cheaper: the benchmark's saturated Matrix →
 * both run relayed 487–600/s with PostgreSQL at 1,520–2,060 µs per message with the one statement for every batch,
 * 558–634/s at 1,250–1,300 µs without it (why was not profiled).
 */
export const ALONE_MAX = 4

/** A new message that replies to nothing and does not disappear: the bulk of any traffic, recorded by recordPlain. */
function isPlain(event: InboundEvent): event is PlainMessage {
  return event.kind === 'message' && !event.replyTo && !((event.expiresInSeconds ?? 0) > 0)
}

/** A new message and the copy it arrived as, as MessageMap.createManyWithOrigin takes them. The copy's author is the
 * account that wrote it on its network, whoever the sender is taken to be. */
function newMessage(portal: Portal, event: Extract<InboundEvent, { kind: 'message' }>, sender: Person) {
  return {
    m: { portalId: portal.id, sender },
    c: { network: event.chat.network, chatId: event.chat.id, remoteId: event.remoteId, authorId: event.sender.id, sentAt: event.timestamp, extra: event.extra },
  }
}

function targetsOf(portal: Portal, event: InboundEvent): NetworkId[] {
  return NETWORKS.filter(n => n !== event.chat.network && chatOf(portal, n) !== null)
}

/** Notices are bot output: on Matrix they stay in Matrix (this ends the notice ping-pong of double-bridged rooms). */
function messageTargets(event: Extract<InboundEvent, { kind: 'message' }>, targets: NetworkId[]): NetworkId[] {
  return event.content.kind === 'notice' ? targets.filter(n => n === 'matrix') : targets
}

/** Where a person wrote what arrived from their own account on a network (the label of the bot's copy in Matrix). */
function typedOn(event: InboundEvent, sender: Person): { typedOn?: NetworkId } {
  return sender.network !== event.chat.network ? { typedOn: event.chat.network } : {}
}

function fanOut(portal: Portal, sender: Person, op: NewDelivery['op'], messageId: number, payload: Record<string, unknown>, to: NetworkId[]): NewDelivery[] {
  return to.map(network => ({ portalId: portal.id, messageId, network, chatId: chatOf(portal, network)!, op, payload: { sender, ...payload } }))
}

function sameSender(found: FoundCopy, sender: Person): boolean {
  return found.message.sender_network === sender.network && found.message.sender_id === sender.id
}
