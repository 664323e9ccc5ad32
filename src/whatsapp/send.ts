// Deliveries to a WhatsApp group through the portal's relay login: content, replies, edits (15-minute
// window, else a quoted correction), deletes (~48 h), reactions, idempotent ids and per-group pacing.
import { createHash } from 'node:crypto'
import type { Boom } from '@hapi/boom'
import type { AnyMessageContent, MiscMessageGenerationOptions, WAMessage, WAMessageKey } from '@whiskeysockets/baileys'
import type { Logger } from 'pino'
import { DeliveryError, NotPermitted } from '../core/errors.ts'
import type { MediaStore } from '../core/media.ts'
import type { CopyRef, Delivery, MessageContent, SendResult } from '../core/model.ts'
import { plainText } from '../core/model.ts'
import { concat } from '../core/richtext.ts'
import { fromExtra, keptExtra, type MessageStore, type StoredMessage } from './messages.ts'
import type { People } from './people.ts'
import { relayIsAdmin } from './membership.ts'
import { setGroupState } from './group-state.ts'
import { mediaContent, renderText, takesCaption } from './render.ts'
import { statusOf, type GroupCache, type WaPort } from './socket.ts'

export const EDIT_WINDOW_MS = 15 * 60_000
export const DELETE_WINDOW_MS = 48 * 60 * 60_000

export interface Connected {
  sock: WaPort
  loginId: string
  personId: string
}

export interface SenderDeps {
  /** The open socket of a login, or a DeliveryError ('hold' when logged out, 'transient' when reconnecting). */
  connection(loginId: string | undefined): Connected
  groups: GroupCache
  people: People
  store: MessageStore
  media: MediaStore
  log: Logger
  now: () => number
  paceMs: [number, number]
  /** Groups whose picture the relay is changing (their next picture notification is its echo). */
  ownPictures: Set<string>
  onSent?(ok: boolean, kind: Delivery['kind']): void
}

/** A WhatsApp-looking id derived from the delivery, so a retried delivery reuses it. */
export function messageIdFor(deliveryId: string, part = 0): string {
  return `3EB0${createHash('sha256').update(`${deliveryId}#${part}`).digest('hex').slice(0, 18).toUpperCase()}`
}

const LINK_HINT = 'Link the group again with `!relay link whatsapp <group>` once the relay account is back in it.'

/** Maps a Baileys failure onto what the outbox should do next. */
export function classify(err: unknown): DeliveryError {
  if (err instanceof DeliveryError) return err
  const status = statusOf(err)
  const text = `${(err as Error)?.message ?? err} ${JSON.stringify((err as Boom)?.data ?? '')}`
  if (status === 401) return new DeliveryError('hold', 'The WhatsApp relay account is logged out; the message will be sent after it is linked again.', { cause: err, internal: text })
  if (/not-a-participant|item-not-found|not-authorized|forbidden/i.test(text) || status === 403 || status === 404) {
    return new DeliveryError('permanent', `The WhatsApp relay account is no longer in this group (or the group is gone), so the message was not delivered. ${LINK_HINT}`, { cause: err, internal: text, loginUnusable: true })
  }
  if (/rate-overlimit/i.test(text) || status === 429)
    return new DeliveryError('transient', 'WhatsApp is rate limiting the relay account; the message will be retried.', { cause: err, internal: text, retryAfterMs: 30_000 })
  return new DeliveryError('transient', 'WhatsApp did not accept the message yet; it will be retried.', { cause: err, internal: text })
}

export class Sender {
  readonly #d: SenderDeps
  readonly #queues = new Map<string, Promise<unknown>>()
  readonly #lastSend = new Map<string, number>()
  constructor(deps: SenderDeps) {
    this.#d = deps
  }

  send(delivery: Delivery): Promise<SendResult> {
    const chat = delivery.target.chatId
    const run = (this.#queues.get(chat) ?? Promise.resolve()).catch(() => {}).then(() => this.#paced(chat, delivery))
    this.#queues.set(chat, run)
    return run
  }

  async #paced(chat: string, delivery: Delivery): Promise<SendResult> {
    const [min, max] = this.#d.paceMs
    // The pace is each account's own: a person's own login and the relay do not slow each other down.
    const paceKey = `${delivery.target.loginId ?? ''}\u0000${chat}`
    if (max > 0) {
      const gap = min + Math.random() * (max - min)
      const wait = (this.#lastSend.get(paceKey) ?? 0) + gap - Date.now()
      if (wait > 0) await new Promise(r => setTimeout(r, wait))
    }
    try {
      const res = await this.#dispatch(delivery)
      this.#d.onSent?.(true, delivery.kind)
      return res
    } catch (err) {
      this.#d.onSent?.(false, delivery.kind)
      if (err instanceof NotPermitted) throw err
      throw classify(err)
    } finally {
      this.#lastSend.set(paceKey, Date.now())
    }
  }

  async #dispatch(delivery: Delivery): Promise<SendResult> {
    const conn = this.#d.connection(delivery.target.loginId)
    const chat = delivery.target.chatId
    switch (delivery.kind) {
      case 'message':
        return this.#sendContent(conn, chat, delivery.deliveryId, delivery.content, delivery.replyTo)
      case 'edit': {
        const age = this.#d.now() - delivery.original.sentAt
        if (age <= EDIT_WINDOW_MS && delivery.original.authorId === conn.personId) {
          const key = await this.#keyFor(conn, chat, delivery.original)
          const group = await this.#d.groups.load(conn.sock, chat).catch(() => undefined)
          const r = await renderText(delivery.content.body, this.#d.people, group)
          return this.#one(conn, chat, { text: r.text, mentions: r.mentions, edit: key }, delivery.deliveryId, 0, 'copy')
        }
        // Past WhatsApp's window: a new message quoting the original, marked as a correction.
        const body = concat(plainText('✏️ '), delivery.content.body)
        return this.#sendContent(conn, chat, delivery.deliveryId, { ...delivery.content, body }, delivery.original)
      }
      case 'delete': {
        if (this.#d.now() - delivery.of.sentAt > DELETE_WINDOW_MS)
          throw new DeliveryError('permanent', 'WhatsApp only deletes messages for everyone within about two days of sending, so this older message stays in the WhatsApp group.')
        const key = await this.#keyFor(conn, chat, delivery.of)
        // The relay's own copies (and what was typed on its phone) it may always revoke. Someone else's message only
        // an admin may, and WhatsApp ignores anyone else's revoke without a word: decide before sending.
        const own = delivery.of.authorId === conn.personId
        if (!own && !relayIsAdmin(await this.#d.groups.load(conn.sock, chat), conn.sock.user)) {
          throw new DeliveryError('permanent', 'WhatsApp lets only group admins delete other people\'s messages, and the relay account is not an admin of this WhatsApp group, so the message stays there. A WhatsApp group admin can delete it, or make the relay account an admin.', { reason: 'm.no_permission' })
        }
        const parts = Array.isArray(delivery.of.extra?.parts) ? (delivery.of.extra.parts as string[]) : [key.id]
        for (const [i, id] of parts.entries())
          await this.#one(conn, chat, { delete: { ...key, id } }, delivery.deliveryId, i, 'row')
        return own ? {} : { notice: 'The relay account deleted this message for everyone in the WhatsApp group, as a group admin.' }
      }
      case 'reaction': {
        const key = await this.#keyFor(conn, chat, delivery.of)
        const text = delivery.removed ? '' : delivery.emoji
        // Not always recorded as a copy (a relay's reaction under policy "emoji" is not): kept in a row of its own.
        return this.#one(conn, chat, { react: { text, key } }, delivery.deliveryId, 0, 'row')
      }
      case 'chat_update':
        await setGroupState(conn.sock, delivery, { groups: this.#d.groups, media: this.#d.media, ownPictures: this.#d.ownPictures })
        return {}
    }
  }

  async #sendContent(conn: Connected, chat: string, deliveryId: string, content: MessageContent, replyTo?: CopyRef): Promise<SendResult> {
    const group = await this.#d.groups.load(conn.sock, chat)
    const rendered = await renderText(content.body, this.#d.people, group)
    const parts: AnyMessageContent[] = []
    const [first, ...rest] = content.attachments
    const textPart: AnyMessageContent = { text: rendered.text, mentions: rendered.mentions }
    if (first) {
      if (!takesCaption(first) && rendered.text) parts.push(textPart)
      parts.push(mediaContent(first, await this.#d.media.get(first.mediaId), takesCaption(first) ? rendered : undefined))
      for (const a of rest) parts.push(mediaContent(a, await this.#d.media.get(a.mediaId)))
    } else if (content.location) {
      const { latitude, longitude, name } = content.location
      if (rendered.text && rendered.text !== name) parts.push(textPart)
      parts.push({ location: { degreesLatitude: latitude, degreesLongitude: longitude, ...(name ? { name } : {}) } })
    } else {
      parts.push(textPart)
    }
    const quoted = replyTo ? await this.#quoted(conn, chat, replyTo) : undefined
    const ids: string[] = []
    let firstResult: SendResult | undefined
    for (const [i, part] of parts.entries()) {
      // The first part is the copy the core records (with its extra); a further part is recorded by its id alone.
      const res = await this.#one(conn, chat, part, deliveryId, i, i === 0 ? 'copy' : 'row', i === 0 ? quoted : undefined)
      ids.push(res.remoteId!)
      firstResult ??= res
    }
    return { ...firstResult, extra: { ...firstResult?.extra, parts: ids } }
  }

  /**
   * One WhatsApp message. `keep`: 'copy' when the core records the result as a copy (a message's first part, an
   * edit): its key and content go in the copy's extra, written by the outbox's 'sent' mark, and the store holds the
   * send in memory until that commit (Participant.recorded); 'row' for anything else, kept in wa_messages before
   * the send counts as done.
   */
  async #one(conn: Connected, chat: string, content: AnyMessageContent, deliveryId: string, part: number, keep: 'copy' | 'row', quoted?: WAMessage): Promise<SendResult> {
    const messageId = messageIdFor(deliveryId, part)
    const options: MiscMessageGenerationOptions = { messageId }
    if (quoted) options.quoted = quoted
    if ('text' in content) Object.assign(content, { linkPreview: null })
    const { store } = this.#d
    store.sending(conn.loginId, deliveryId, messageId)
    let held = false
    try {
      const sent = await conn.sock.sendMessage(chat, content, options)
      const key = { remoteJid: sent?.key.remoteJid ?? chat, id: sent?.key.id ?? messageId, fromMe: true }
      const result = { remoteId: key.id, authorId: conn.personId, sentAt: this.#d.now() }
      if (keep === 'copy' && sent?.message) {
        store.sent(messageId, sent.message)
        held = true
        return { ...result, extra: keptExtra(conn.loginId, key, sent.message) }
      }
      if (sent?.message) await store.put(conn.loginId, sent.key, sent.message, true)
      return { ...result, extra: { key } }
    } finally {
      if (!held) store.done(messageId)
    }
  }

  /** `stored`: the copy's wa_messages row when the caller has read it already (null: there is none). */
  async #keyFor(conn: Connected, chat: string, copy: CopyRef, stored?: StoredMessage | null): Promise<WAMessageKey> {
    const k = copy.extra?.key as WAMessageKey | undefined
    if (k?.id) return k
    const row = stored === undefined ? await this.#d.store.get(conn.loginId, copy.remoteId) : stored
    if (row) return row.key
    if (copy.authorId === conn.personId) return { remoteJid: chat, id: copy.remoteId, fromMe: true }
    const who = await this.#d.people.byId(copy.authorId)
    return { remoteJid: chat, id: copy.remoteId, fromMe: false, ...(who ? { participant: who.jid } : {}) }
  }

  /** A quote needs the key and some content: the copy's extra keeps it, or (from before it did) wa_messages. */
  async #quoted(conn: Connected, chat: string, copy: CopyRef): Promise<WAMessage> {
    const stored = fromExtra(copy.extra) ?? (await this.#d.store.get(conn.loginId, copy.remoteId)) ?? null
    return { key: await this.#keyFor(conn, chat, copy, stored), message: stored?.message ?? { conversation: '' } }
  }
}
