// Matrix as a participant: remote people speak in the room through their ghosts.
import type { Logger } from 'pino'
import type { MediaStore } from '../core/media.ts'
import { NotPermitted } from '../core/errors.ts'
import { NETWORK_LABEL, type ChatField, type ChatValue, type CopyRef, type Delivery, type MembersChange, type MessageContent, type SendResult } from '../core/model.ts'
import { timerLabel } from '../core/chat-text.ts'
import type { Participant } from '../core/network.ts'
import type { HomeserverApi } from './client.ts'
import { matrixDeliveryError } from './client-errors.ts'
import { MATRIX_MSGTYPE, toMatrixText } from './convert.ts'
import { ghostMxid, parseGhost, type Ghosts } from './ghosts.ts'
import { DOUBLE_PUPPET_KEY } from './double-puppet.ts'
import type { MentionResolver } from './html.ts'
import { editContent, splitForMatrix } from './limits.ts'
import { matrixChatValue, type RoomState } from './room-state.ts'
import { RoomMembers } from './room-members.ts'

type Json = Record<string, unknown>

/** Which events a Matrix copy is made of, kept in the copy's `extra` when there is more than one: the text's
 * events in order (what an edit replaces), then the attachments'. */
interface Layout {
  text: string[]
  media: string[]
}

function layoutOf(copy: CopyRef): Layout | undefined {
  const l = copy.extra?.['layout'] as Layout | undefined
  return l && Array.isArray(l.text) && Array.isArray(l.media) ? l : undefined
}

export interface MatrixParticipantOptions {
  api: HomeserverApi
  ghosts: Ghosts
  media: MediaStore
  domain: string
  botMxid: string
  log: Logger
  roomState: RoomState
  /** Double puppeting: the homeserver API with the second registration's token, and the mark its posts carry. */
  puppet?: { api: HomeserverApi; source: string }
}

export class MatrixParticipant implements Participant {
  readonly network = 'matrix' as const
  private readonly opts: MatrixParticipantOptions
  private readonly roomMembers: RoomMembers

  constructor(opts: MatrixParticipantOptions) {
    this.opts = opts
    this.roomMembers = new RoomMembers({ api: opts.api, ghosts: opts.ghosts, domain: opts.domain, botMxid: opts.botMxid, log: opts.log })
  }

  async members(change: MembersChange): Promise<void> {
    try {
      await this.roomMembers.apply(change)
    } catch (err) {
      throw matrixDeliveryError(err)
    }
  }

  /** Whether the bridge can post as this Matrix user (a local user, with double puppeting set up). */
  canPuppet(mxid: string): boolean {
    return this.opts.puppet !== undefined && mxid !== this.opts.botMxid && mxid.endsWith(`:${this.opts.domain}`) && parseGhost(mxid, this.opts.domain) === undefined
  }

  /** The API that acts as this user: the double-puppeting one for people, the bridge's own for the bot and ghosts. */
  private apiFor(mxid: string): HomeserverApi {
    return this.canPuppet(mxid) ? this.opts.puppet!.api : this.opts.api
  }

  private mentionFor: MentionResolver = person => {
    const mxid = ghostMxid(person, this.opts.domain)
    return { mxid, displayName: person.displayName ?? mxid }
  }

  async send(d: Delivery): Promise<SendResult> {
    try {
      // A group's name, topic or picture is the room's state, set by the bot (no ghost speaks).
      if (d.kind === 'chat_update') {
        const field = d.field
        if (field !== 'timer') {
          await this.opts.roomState.set(d.target.chatId, field, d.value)
          return {}
        }
        // Matrix has no such timer: the room is told, and the bridge redacts its own copies as they run out.
        const seconds = Number(d.value)
        const where = NETWORK_LABEL[d.sender.network]
        const body = seconds > 0 ? `Disappearing messages set to ${timerLabel(seconds)} on ${where}` : `Disappearing messages turned off on ${where}`
        await this.opts.api.sendEvent(this.opts.botMxid, d.target.chatId, 'm.room.message', { msgtype: 'm.notice', body }, d.deliveryId)
        return {}
      }
      return await this.sendUnchecked(d)
    } catch (err) {
      if (err instanceof NotPermitted) throw err
      throw matrixDeliveryError(err)
    }
  }

  chatValue(field: ChatField, value: ChatValue): ChatValue {
    return matrixChatValue(field, value)
  }

  private async sendUnchecked(d: Delivery): Promise<SendResult> {
    const { ghosts } = this.opts
    const room = d.target.chatId
    // Who posts: a remote person's ghost; a Matrix person (whose own Signal or WhatsApp account wrote it) as
    // themselves by double puppeting, or, when the bridge cannot post as them, the bot under their name.
    const relayed = 'relayed' in d && d.relayed
    const ghost = d.sender.network !== 'matrix' ? await ghosts.ensure(d.sender, room)
      : !relayed && this.canPuppet(d.sender.id) ? d.sender.id : this.opts.botMxid
    const api = this.apiFor(ghost)
    const mark: Json = api === this.opts.api ? {} : { [DOUBLE_PUPPET_KEY]: this.opts.puppet!.source }
    // The delivery id makes each send idempotent: a retry after a crash reuses the same txn id.
    const send = async (type: string, content: Json, part = 0): Promise<string> =>
      api.sendEvent(ghost, room, type, { ...content, ...mark }, `${d.deliveryId}.${part}`)
    const done = (eventId: string): SendResult => ({ remoteId: eventId, authorId: ghost, sentAt: Date.now() })

    switch (d.kind) {
      case 'message': {
        const reply = d.replyTo ? { 'm.relates_to': { 'm.in_reply_to': { event_id: d.replyTo.remoteId } } } : {}
        const events = await this.contentEvents(d.content, ghost, api, room)
        const ids: string[] = []
        for (const [i, ev] of events.entries()) ids.push(await send(ev.type, { ...ev.content, ...(i === 0 ? reply : {}) }, i))
        if (ids.length === 0) return {}
        const layout: Layout = { text: ids.slice(0, events.filter(e => e.text).length), media: ids.slice(events.filter(e => e.text).length) }
        return { ...done(ids[0]!), ...(ids.length > 1 ? { extra: { layout }, parts: ids.slice(1) } : {}) }
      }
      case 'edit': {
        // Each part still needed is replaced; a longer text adds events after the last; parts no longer needed
        // are redacted (an empty edit would still show as a message).
        const layout = layoutOf(d.of) ?? layoutOf(d.original) ?? { text: [d.original.remoteId], media: [] }
        const parts = splitForMatrix(d.content.body, rt => toMatrixText({ ...d.content, body: rt }, this.mentionFor))
        const text: string[] = []
        let first: string | undefined
        const added: string[] = []
        for (const [i, part] of parts.entries()) {
          const target = layout.text[i]
          if (target) {
            const id = await send('m.room.message', editContent(part, target), i)
            first ??= id
            text.push(target)
          } else {
            const id = await send('m.room.message', part, i)
            text.push(id)
            added.push(id)
          }
        }
        for (const [i, gone] of layout.text.slice(parts.length).entries()) {
          await api.redact(ghost, room, gone, `${d.deliveryId}.r${i}`)
        }
        const next: Layout = { text, media: layout.media }
        return { ...done(first ?? text[0]!), extra: { layout: next }, ...(added.length > 0 ? { parts: added } : {}) }
      }
      case 'delete': {
        const layout = (d.latest && layoutOf(d.latest)) ?? layoutOf(d.of)
        const ids = layout ? [...layout.text, ...layout.media] : [d.of.remoteId]
        const by = d.of.authorId || ghost
        for (const [i, id] of ids.entries()) await this.apiFor(by).redact(by, room, id, i === 0 ? d.deliveryId : `${d.deliveryId}.${i}`)
        return {}
      }
      case 'reaction': {
        if (d.removed) {
          const by = d.previous?.authorId || ghost
          if (d.previous) await this.apiFor(by).redact(by, room, d.previous.remoteId, d.deliveryId)
          return {}
        }
        return done(await send('m.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: d.of.remoteId, key: d.emoji } }))
      }
      case 'chat_update':
        return {} // handled in send()
    }
  }

  /** Events for the text (several when it is longer than one event holds), one per attachment; a single
   * attachment carries a short text as its caption. */
  private async contentEvents(content: MessageContent, ghost: string, api: HomeserverApi, room: string): Promise<Array<{ type: string; content: Json; text?: true }>> {
    const { media } = this.opts
    const parts = content.body.text.length > 0 ? splitForMatrix(content.body, rt => toMatrixText({ ...content, body: rt }, this.mentionFor)) : []
    const text = parts[0] ?? toMatrixText(content, this.mentionFor)
    const events: Array<{ type: string; content: Json; text?: true }> = []
    const captioned = content.attachments.length === 1 && parts.length === 1
    if (!captioned) events.push(...parts.map(part => ({ type: 'm.room.message', content: part, text: true as const })))
    for (const att of content.attachments) {
      const ref = await api.uploadAttachment(room, await media.get(att.mediaId), att.mimetype, att.filename, ghost)
      const info: Json = { mimetype: att.mimetype, size: att.size }
      if (att.width) info.w = att.width
      if (att.height) info.h = att.height
      if (att.durationMs) info.duration = att.durationMs
      const c: Json = captioned
        ? { ...text, msgtype: MATRIX_MSGTYPE[att.kind], filename: att.filename, ...ref, info }
        : { msgtype: MATRIX_MSGTYPE[att.kind], body: att.filename, filename: att.filename, ...ref, info }
      if (att.kind === 'voice') c['org.matrix.msc3245.voice'] = {}
      events.push(att.kind === 'sticker' ? { type: 'm.sticker', content: { body: att.filename, ...ref, info } } : { type: 'm.room.message', content: c, ...(captioned ? { text: true as const } : {}) })
    }
    if (content.location) {
      const { latitude, longitude, name } = content.location
      events.push({ type: 'm.room.message', content: { msgtype: 'm.location', body: name ?? 'Location', geo_uri: `geo:${latitude},${longitude}` } })
    }
    return events
  }
}
