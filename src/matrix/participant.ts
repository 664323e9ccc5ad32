// Matrix as a participant: remote people speak in the room through their ghosts.
import type { Logger } from 'pino'
import type { MediaStore } from '../core/media.ts'
import type { Delivery, MessageContent, SendResult } from '../core/model.ts'
import type { Participant } from '../core/network.ts'
import type { HomeserverApi } from './client.ts'
import { matrixDeliveryError } from './client-errors.ts'
import { MATRIX_MSGTYPE, toMatrixText } from './convert.ts'
import { ghostMxid, type Ghosts } from './ghosts.ts'
import type { MentionResolver } from './html.ts'

type Json = Record<string, unknown>

export class MatrixParticipant implements Participant {
  readonly network = 'matrix' as const
  private readonly opts: { api: HomeserverApi; ghosts: Ghosts; media: MediaStore; domain: string; log: Logger }

  constructor(opts: { api: HomeserverApi; ghosts: Ghosts; media: MediaStore; domain: string; log: Logger }) {
    this.opts = opts
  }

  private mentionFor: MentionResolver = person => {
    const mxid = ghostMxid(person, this.opts.domain)
    return { mxid, displayName: person.displayName ?? mxid }
  }

  async send(d: Delivery): Promise<SendResult> {
    try {
      return await this.sendUnchecked(d)
    } catch (err) {
      throw matrixDeliveryError(err)
    }
  }

  private async sendUnchecked(d: Delivery): Promise<SendResult> {
    const { api, ghosts } = this.opts
    const room = d.target.chatId
    const ghost = await ghosts.ensure(d.sender, room)
    // The delivery id makes each send idempotent: a retry after a crash reuses the same txn id.
    const send = async (type: string, content: Json, part = 0): Promise<string> =>
      api.sendEvent(ghost, room, type, content, `${d.deliveryId}.${part}`)
    const done = (eventId: string): SendResult => ({ remoteId: eventId, authorId: ghost, sentAt: Date.now() })

    switch (d.kind) {
      case 'message': {
        const reply = d.replyTo ? { 'm.relates_to': { 'm.in_reply_to': { event_id: d.replyTo.remoteId } } } : {}
        const events = await this.contentEvents(d.content, ghost)
        let first: string | undefined
        for (const [i, ev] of events.entries()) {
          const id = await send(ev.type, { ...ev.content, ...(i === 0 ? reply : {}) }, i)
          first ??= id
        }
        return first ? done(first) : {}
      }
      case 'edit': {
        const text = toMatrixText(d.content, this.mentionFor)
        const content: Json = {
          ...text,
          body: `* ${String(text.body)}`,
          ...(text.formatted_body ? { formatted_body: `* ${String(text.formatted_body)}` } : {}),
          'm.new_content': text,
          // Matrix edits always point at the original event, not at the previous edit.
          'm.relates_to': { rel_type: 'm.replace', event_id: d.original.remoteId },
        }
        return done(await send('m.room.message', content))
      }
      case 'delete':
        await api.redact(d.of.authorId || ghost, room, d.of.remoteId, d.deliveryId)
        return {}
      case 'reaction': {
        if (d.removed) {
          if (d.previous) await api.redact(d.previous.authorId || ghost, room, d.previous.remoteId, d.deliveryId)
          return {}
        }
        return done(await send('m.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: d.of.remoteId, key: d.emoji } }))
      }
    }
  }

  /** One event for text, one per attachment; a single attachment carries the text as its caption. */
  private async contentEvents(content: MessageContent, ghost: string): Promise<Array<{ type: string; content: Json }>> {
    const { api, media } = this.opts
    const text = toMatrixText(content, this.mentionFor)
    const events: Array<{ type: string; content: Json }> = []
    const captioned = content.attachments.length === 1 && content.body.text.length > 0
    if (content.body.text.length > 0 && !captioned) events.push({ type: 'm.room.message', content: text })
    for (const att of content.attachments) {
      const mxc = await api.uploadMedia(await media.get(att.mediaId), att.mimetype, att.filename, ghost)
      const info: Json = { mimetype: att.mimetype, size: att.size }
      if (att.width) info.w = att.width
      if (att.height) info.h = att.height
      if (att.durationMs) info.duration = att.durationMs
      const c: Json = captioned
        ? { ...text, msgtype: MATRIX_MSGTYPE[att.kind], filename: att.filename, url: mxc, info }
        : { msgtype: MATRIX_MSGTYPE[att.kind], body: att.filename, filename: att.filename, url: mxc, info }
      if (att.kind === 'voice') c['org.matrix.msc3245.voice'] = {}
      events.push(att.kind === 'sticker' ? { type: 'm.sticker', content: { body: att.filename, url: mxc, info } } : { type: 'm.room.message', content: c })
    }
    if (content.location) {
      const { latitude, longitude, name } = content.location
      events.push({ type: 'm.room.message', content: { msgtype: 'm.location', body: name ?? 'Location', geo_uri: `geo:${latitude},${longitude}` } })
    }
    return events
  }
}
