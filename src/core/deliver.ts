// Step 4 of the flow: turn a queued row into a Delivery for its network, send it, and say what to record.
// Also the one place that decides how a failure is reported: in Matrix, never on Signal or WhatsApp.
import type { Db } from '../db/types.ts'
import type { GroupState } from './group-state.ts'
import { Members } from './members.ts'
import { asDeliveryError, DeliveryError } from './errors.ts'
import { MessageMap } from './messages.ts'
import { NETWORK_LABEL, type CopyRef, type Delivery, type DeliveryTarget, type MessageContent, type NetworkId, type Person, type RemoteNetworkId, type SendResult } from './model.ts'
import type { Login, Participant } from './network.ts'
import type { OutboxRow, SentCopy } from './outbox.ts'
import type { OwnLogins, Why } from './own-logins.ts'
import { chatOf, loginOf, type Portal, type PortalStore } from './portals.ts'
import { renderReactionNote, renderRelayed, type ReactionPolicy, type SenderNames } from './render.ts'
import type { MatrixRooms } from './rooms.ts'

export interface DelivererOptions {
  db: Db
  portals: PortalStore
  participants: Map<NetworkId, Participant>
  names: SenderNames
  rooms: MatrixRooms
  template: string
  reactions: ReactionPolicy
  /** People's personal logins: which one sends a copy as its owner. */
  own: OwnLogins
  /** Whether the bridge can post in Matrix as this user (double puppeting); if not, the bot posts under their name. */
  puppets: (mxid: string) => boolean
  groupState: GroupState
  members: Members
}

interface Payload {
  sender: Person
  content?: MessageContent
  replyTo?: number
  emoji?: string
  removed?: boolean
  target?: number
  /** Set when a Matrix person wrote it on their own Signal or WhatsApp account. */
  typedOn?: NetworkId
}

/** The id a delivery carries to its adapter (Delivery.deliveryId): the same for every attempt of an outbox row. */
export const deliveryIdOf = (row: Pick<OutboxRow, 'id'>): string => `rb${row.id}`

export class Deliverer {
  private readonly opts: DelivererOptions
  constructor(opts: DelivererOptions) {
    this.opts = opts
  }

  dispatch = async (row: OutboxRow): Promise<SentCopy[] | void> => {
    const { portals, participants, db } = this.opts
    const portal = portals.get(row.portal_id)
    if (!portal) throw new DeliveryError('permanent', 'The room was unbridged before this message could be delivered.')
    // A portal's Matrix room changes only when the room is upgraded: what was queued for the old room goes to the new.
    if (row.network !== 'matrix' && chatOf(portal, row.network) !== row.chat_id) {
      throw new DeliveryError('permanent', `The ${NETWORK_LABEL[row.network]} group was unlinked before this message could be delivered.`)
    }
    const participant = participants.get(row.network)
    if (!participant) throw new DeliveryError('hold', `The ${NETWORK_LABEL[row.network]} connection is not running.`)
    // Ghosts brought into the room or taken out: no one speaks.
    if (row.op === 'members') return this.opts.members.deliver(row, portal, participant)
    const target: DeliveryTarget = { network: row.network, chatId: row.network === 'matrix' ? portal.roomId : row.chat_id, roomId: portal.roomId }
    const p = row.payload as unknown as Payload
    const name = await this.opts.names.nameFor(portal.id, p.sender)
    const sender = { ...p.sender, displayName: name }
    const deliveryId = deliveryIdOf(row)
    const base = { target, sender, deliveryId }
    const messageId = row.message_id!
    const send = async (d: Delivery): Promise<SendResult> => {
      const result = await participant.send(d)
      // Sent already: a notice the homeserver refuses now must not make the outbox send it again.
      if (result.notice) await this.opts.rooms.notice(portal.roomId, result.notice).catch(() => {})
      return result
    }
    const copies = (id: number) => MessageMap.copiesOn(db, id, row.network)
    if (row.network === 'matrix') {
      // A Matrix person (their own Signal or WhatsApp account wrote it) is posted as themselves where the bridge
      // can; else the bot posts it under their name, like the relay does on the other networks.
      const relayed = p.sender.network === 'matrix' && !this.opts.puppets(p.sender.id)
      const label = { ...p.sender, network: p.typedOn ?? p.sender.network }
      const content = (c: MessageContent): MessageContent => relayed ? renderRelayed(c, label, name, { template: this.opts.template }) : c
      switch (row.op) {
        case 'message': {
          const replyTo = p.replyTo ? (await copies(p.replyTo)).original : undefined
          return this.copyOf(row, messageId, await send({ ...base, kind: 'message', content: content(p.content!), relayed, ...(replyTo ? { replyTo } : {}) }), 'original')
        }
        case 'edit': {
          const { original, latest, revisions } = await copies(messageId)
          if (!original || !latest) throw this.noOriginal(row)
          return this.copyOf(row, messageId, await send({ ...base, kind: 'edit', content: content(p.content!), of: latest, original, editCount: revisions, relayed }), 'revision')
        }
        case 'delete': {
          const { original, latest } = await copies(messageId)
          if (original) await send({ ...base, kind: 'delete', of: original, ...(latest && latest.remoteId !== original.remoteId ? { latest } : {}) })
          return
        }
        case 'reaction':
          return this.reaction(row, p, base, relayed, name)
        case 'chat_update':
          return this.opts.groupState.deliver(row, participant, base)
        case 'member_line':
          return // only ever queued for the groups: the room sees the ghosts themselves come and go
      }
    }
    const network = row.network
    // Through the room's relay, the sender named in front of what they wrote.
    const viaRelay = (): Pick<Delivery, 'target' | 'sender' | 'deliveryId'> => {
      const loginId = loginOf(portal, network)
      if (!loginId) throw new DeliveryError('hold', `No ${NETWORK_LABEL[network]} relay is set for this room. Use \`set ${network}\` to choose one.`)
      return { ...base, target: { ...target, loginId } }
    }
    const through = (login: Login): Pick<Delivery, 'target' | 'sender' | 'deliveryId'> => ({ ...base, target: { ...target, loginId: login.id } })
    const render = (c: MessageContent): MessageContent => renderRelayed(c, p.sender, name, { template: this.opts.template })
    switch (row.op) {
      case 'message': {
        const replyTo = p.replyTo ? (await copies(p.replyTo)).original : undefined
        const reply = replyTo ? { replyTo } : {}
        const result = await this.asThemselves(portal, row, p.sender, name,
          own => send({ ...through(own), kind: 'message', content: p.content!, relayed: false, ...reply }),
          () => send({ ...viaRelay(), kind: 'message', content: render(p.content!), relayed: true, ...reply }))
        return this.copyOf(row, messageId, result, 'original')
      }
      case 'edit': {
        const { original, latest, revisions } = await copies(messageId)
        if (!original || !latest) throw this.noOriginal(row)
        // An edit goes through the account that wrote the original, where that is the editor's own.
        const author = await this.ownAuthor(network, original, p.sender)
        const edit = { kind: 'edit' as const, of: latest, original, editCount: revisions }
        const result = await this.asThemselves(portal, row, p.sender, name,
          own => send({ ...through(own), ...edit, content: p.content!, relayed: false }),
          () => send({ ...viaRelay(), ...edit, content: render(p.content!), relayed: true }), author)
        return this.copyOf(row, messageId, result, 'revision')
      }
      case 'delete': {
        const { original, latest } = await copies(messageId)
        if (!original) return // it never arrived there: nothing to delete
        const author = await this.ownAuthor(network, original, p.sender)
        const del = { kind: 'delete' as const, of: original, ...(latest && latest.remoteId !== original.remoteId ? { latest } : {}) }
        await this.asThemselves(portal, row, p.sender, name, own => send({ ...through(own), ...del }), () => send({ ...viaRelay(), ...del }), author)
        return
      }
      case 'reaction':
        return this.remoteReaction(portal, row, p, name, through, viaRelay)
      case 'chat_update':
        // A group's name, description or picture changes through the room's relay (never a person's own account).
        return this.opts.groupState.deliver(row, participant, viaRelay())
      case 'member_line': {
        // "Bob (WhatsApp) joined": the relay's own words, not a message of Bob's, so no name in front and no copy kept.
        const { content } = Members.lineOf(row)
        await send({ ...viaRelay(), kind: 'message', content, relayed: true })
        return
      }
    }
  }

  private noOriginal(row: OutboxRow): DeliveryError {
    return new DeliveryError('permanent', `This edit was not sent to ${NETWORK_LABEL[row.network]}, because the original message never arrived there.`, { reason: 'm.event_not_handled' })
  }

  /** The sender's own login that wrote a copy; undefined when the relay (or anyone else) wrote it. */
  private async ownAuthor(network: RemoteNetworkId, copy: CopyRef, sender: Person): Promise<Login | null> {
    const author = await this.opts.own.author(network, copy.authorId)
    return author && author.kind === 'personal' && sender.network === 'matrix' && author.ownerMxid === sender.id ? author : null
  }

  /**
   * Sends as the person themselves through their own login when they have one that can post there (`author`: the
   * login that must send, for edits and deletions; null: none of theirs may), else through the relay. A login that
   * turns out unable to post (logged out, not in the group, banned) hands over to the relay, and the room is told
   * once. Anything else it fails with is the outbox's to retry, as for the relay.
   */
  private async asThemselves<T>(portal: Portal, row: OutboxRow, sender: Person, name: string,
    own: (login: Login) => Promise<T>, relay: () => Promise<T>, author?: Login | null): Promise<T> {
    const network = row.network as RemoteNetworkId
    const choice = author === null ? undefined
      : author ? (author.state === 'logged_out' ? { fallback: author, why: 'logged_out' as Why } : { via: author })
      : await this.opts.own.speaking(sender, network, row.chat_id)
    if (choice && 'via' in choice) {
      try {
        const result = await own(choice.via)
        this.opts.own.sent(choice.via, row.chat_id, portal.roomId)
        return result
      } catch (err) {
        const e = asDeliveryError(err)
        if (e.disposition !== 'hold' && !e.loginUnusable) throw err
        this.opts.own.failed(choice.via, row.chat_id)
        await this.tell(portal, choice.via, name, e.disposition === 'hold' ? 'logged_out' : 'cannot_post')
      }
    } else if (choice) {
      await this.tell(portal, choice.fallback, name, choice.why)
    }
    return relay()
  }

  private async tell(portal: Portal, own: Login, name: string, why: Why): Promise<void> {
    const text = this.opts.own.notice(own, portal.roomId, name, why)
    if (text) await this.opts.rooms.notice(portal.roomId, `⚠️ ${text}`).catch(() => {})
  }

  /** A reaction on Signal or WhatsApp: the person's own reaction through their login, else per the relay policy. */
  private async remoteReaction(portal: Portal, row: OutboxRow, p: Payload, name: string,
    through: (login: Login) => Pick<Delivery, 'target' | 'sender' | 'deliveryId'>, viaRelay: () => Pick<Delivery, 'target' | 'sender' | 'deliveryId'>): Promise<SentCopy[] | void> {
    const participant = this.opts.participants.get(row.network)!
    const network = row.network as RemoteNetworkId
    const reactionId = row.message_id!
    const targetCopy = (await MessageMap.copiesOn(this.opts.db, p.target!, network)).original
    if (!targetCopy) return // the message reacted to never arrived there
    const mine = (await MessageMap.copiesOn(this.opts.db, reactionId, network)).original
    const author = mine ? await this.ownAuthor(network, mine, p.sender) : null
    if (p.removed) {
      // Taken back through the login that reacted, when that was the person's own.
      if (author) {
        await participant.send({ ...through(author), kind: 'reaction', of: targetCopy, emoji: p.emoji!, removed: true })
        return
      }
      return this.reaction(row, p, viaRelay(), true, name)
    }
    let own = false
    const result = await this.asThemselves(portal, row, p.sender, name,
      async login => {
        const r = await participant.send({ ...through(login), kind: 'reaction', of: targetCopy, emoji: p.emoji!, removed: false })
        own = true
        return r
      },
      async () => undefined)
    if (own) return this.copyOf(row, reactionId, result ?? {}, 'original')
    return this.reaction(row, p, viaRelay(), true, name)
  }

  private async reaction(row: OutboxRow, p: Payload, base: Pick<Delivery, 'target' | 'sender' | 'deliveryId'>, relayed: boolean, name: string): Promise<SentCopy[] | void> {
    const participant = this.opts.participants.get(row.network)!
    const { db } = this.opts
    const reactionId = row.message_id!
    const targetCopy = (await MessageMap.copiesOn(db, p.target!, row.network)).original
    if (!targetCopy) return // the message reacted to never arrived there
    const own = (await MessageMap.copiesOn(db, reactionId, row.network)).original
    if (!relayed) {
      // Matrix: each person reacts as themselves (a ghost), with as many reactions as they like; whatever the policy.
      if (p.removed) {
        if (own) await participant.send({ ...base, kind: 'reaction', of: targetCopy, emoji: p.emoji!, removed: true, previous: own })
        return
      }
      const result = await participant.send({ ...base, kind: 'reaction', of: targetCopy, emoji: p.emoji!, removed: false })
      return this.copyOf(row, reactionId, result, 'original')
    }
    switch (this.opts.reactions) {
      case 'drop':
        return
      case 'message': {
        if (p.removed) {
          // The line that announced it goes, where the network lets the relay delete its own message.
          if (own) await participant.send({ ...base, kind: 'delete', of: own })
          return
        }
        const content = renderReactionNote(p.sender, name, p.emoji!, { template: this.opts.template })
        const result = await participant.send({ ...base, kind: 'message', content, relayed: true, replyTo: targetCopy })
        return this.copyOf(row, reactionId, result, 'original')
      }
      case 'emoji':
        return this.relayReaction(row, p.target!, targetCopy, base)
    }
  }

  /**
   * Policy "emoji": a relay account has one reaction per message, so it shows the newest reaction that stands of the
   * people it speaks for. Any change among them (a reaction, a removal) brings it up to date, or takes it away when
   * none stands. Sent again after a crash, it sends the same, which changes nothing.
   */
  private async relayReaction(row: OutboxRow, targetId: number, of: CopyRef, base: Pick<Delivery, 'target' | 'sender' | 'deliveryId'>): Promise<void> {
    const { db } = this.opts
    const shown = await MessageMap.relayReaction(db, row.network, row.chat_id, targetId)
    const wanted = (await MessageMap.latestReaction(db, targetId, row.network))?.emoji
    if (wanted === shown) return
    const participant = this.opts.participants.get(row.network)!
    if (wanted !== undefined) await participant.send({ ...base, kind: 'reaction', of, emoji: wanted, removed: false })
    else await participant.send({ ...base, kind: 'reaction', of, emoji: shown!, removed: true })
    await MessageMap.setRelayReaction(db, row.network, row.chat_id, targetId, wanted)
  }

  /** The sent copy and its further parts, which the outbox records in the statement that marks the row sent. */
  private copyOf(row: OutboxRow, messageId: number, result: SendResult, role: 'original' | 'revision'): SentCopy[] | void {
    const common = { network: row.network, chatId: row.chat_id, messageId, authorId: result.authorId ?? '', sentAt: result.sentAt ?? Date.now() }
    const parts = (result.parts ?? []).map((remoteId): SentCopy => ({ ...common, remoteId, role: 'part' }))
    if (!result.remoteId) return parts.length > 0 ? parts : undefined
    return [{ ...common, remoteId: result.remoteId, role, extra: result.extra }, ...parts]
  }

  /** A delivery failed for good: a notice and a message-status event in the Matrix room, nowhere else. */
  onFailed = async (row: OutboxRow, error: DeliveryError): Promise<void> => {
    const portal = this.opts.portals.get(row.portal_id)
    if (!portal || row.network === 'matrix' && !portal.roomId) return
    const p = row.payload as unknown as Payload
    const where = NETWORK_LABEL[row.network]
    const what = { message: 'A message', edit: 'An edit', delete: 'A deletion', reaction: 'A reaction', chat_update: 'A change of the group’s name, description or picture',
      members: 'A change of who is in the groups', member_line: 'A line saying who joined or left' }[row.op]
    const who = p.sender?.displayName ? ` from ${p.sender.displayName}` : ''
    await this.opts.rooms.notice(portal.roomId, `⚠️ ${what}${who} was not delivered to ${where}: ${error.userMessage}`)
    const matrixCopy = row.message_id ? (await MessageMap.copiesOn(this.opts.db, row.message_id, 'matrix')).original : undefined
    if (matrixCopy && row.network !== 'matrix') {
      await this.opts.rooms.messageStatus(portal.roomId, matrixCopy.remoteId, row.network, 'FAIL_PERMANENT',
        { reason: error.reason, message: error.userMessage, internal: error.message })
    }
  }
}

