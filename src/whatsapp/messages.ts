// What the bridge keeps of WhatsApp messages: everything it sent (Baileys asks getMessage for it when a recipient
// retries decryption; quotes and edits need its key) and recent inbound ones of bridged groups (for quoting).
//
// A message's key and content ride in the `extra` of its copy in the message map, written by the statements the
// core makes anyway: a send's in the outbox's 'sent' mark (SendResult.extra), an arrival's in the statement that
// records it (InboundMessage.extra). That saves a write and a commit of our own per message. Between a send and
// its mark, the send is held here in memory: its echo, or a retry request, may come in that moment.
//
// wa_messages still keeps what no copy records (the further parts of a send, revokes, reactions), and rows from
// before copies kept content: every reader falls back to it.
import type { WAMessageKey, proto } from '@whiskeysockets/baileys'
import { Coalescer } from '../db/coalesce.ts'
import type { Db } from '../db/types.ts'
import { decodeJson, encodeJson } from './auth.ts'

export interface StoredMessage {
  key: WAMessageKey
  message: proto.IMessage
  fromBridge: boolean
}

/** A copy in the message map, as the core hands it to the adapter. */
export interface CopyLookup {
  findCopy(chatId: string, remoteId: string): Promise<{ extra: Record<string, unknown> } | undefined>
}

type Row = [loginId: string, msgId: string, chatJid: string, fromBridge: boolean, key: string, message: string, createdAt: number]

/** A send between sendMessage and the commit of its copy (or of its wa_messages row). */
interface Sending {
  loginId: string
  deliveryId: string
  at: number
  message?: proto.IMessage
}

/** A send whose copy was never recorded (its delivery failed after a part had gone) is forgotten after this long. */
const SENDING_MAX_MS = 10 * 60_000

/** What a WhatsApp copy keeps in its `extra`: the key, the content (BufferJSON), and the login that sent or heard it. */
export function keptExtra(loginId: string, key: WAMessageKey, message: proto.IMessage): Record<string, unknown> {
  return { key, message: encodeJson(message), login: loginId }
}

/** The message a copy's `extra` keeps, when it keeps one. */
export function fromExtra(extra: Record<string, unknown> | undefined): StoredMessage | undefined {
  if (!extra || typeof extra.message !== 'string') return undefined
  const key = extra.key as WAMessageKey
  return { key, message: decodeJson(extra.message), fromBridge: key?.fromMe === true }
}

export class MessageStore {
  readonly #db: Db
  readonly #now: () => number
  readonly #copies: CopyLookup
  // What is not kept in a copy writes a row: the sends of all chats under way share one statement.
  readonly #writes = new Coalescer<Row>(rows => this.#insert(rows))
  /** Sends under way or not yet recorded, by message id (insertion order: oldest first). */
  readonly #sending = new Map<string, Sending>()
  /** The message ids of each delivery in #sending. */
  readonly #byDelivery = new Map<string, string[]>()
  constructor(db: Db, copies: CopyLookup, now: () => number = Date.now) {
    this.#db = db
    this.#copies = copies
    this.#now = now
  }

  /** A send is about to start: its echo may arrive before sendMessage resolves. */
  sending(loginId: string, deliveryId: string, id: string): void {
    const now = this.#now()
    for (const [old, s] of this.#sending) {
      if (now - s.at < SENDING_MAX_MS) break
      this.#drop(old)
    }
    this.#drop(id) // a retried send goes to the end
    this.#sending.set(id, { loginId, deliveryId, at: now })
    const ids = this.#byDelivery.get(deliveryId)
    if (ids) ids.push(id)
    else this.#byDelivery.set(deliveryId, [id])
  }

  /** The send went out; its content answers getMessage until its copy is recorded. */
  sent(id: string, message: proto.IMessage | null | undefined): void {
    const s = this.#sending.get(id)
    if (s && message) s.message = message
  }

  /** The send failed, or its wa_messages row is written: the database answers from now on. */
  done(id: string): void {
    this.#drop(id)
  }

  /** The delivery's copies are committed (Participant.recorded): the database answers from now on. */
  recorded(deliveryId: string): void {
    for (const id of this.#byDelivery.get(deliveryId) ?? []) this.#drop(id)
  }

  /** Whether a send of this id is under way or not yet recorded. */
  holds(id: string): boolean {
    return this.#sending.has(id)
  }

  /** How many sends are held in memory (for tests). */
  get held(): number {
    return this.#sending.size
  }

  #drop(id: string): void {
    const s = this.#sending.get(id)
    if (!s) return
    this.#sending.delete(id)
    const ids = this.#byDelivery.get(s.deliveryId)?.filter(x => x !== id)
    if (ids?.length) this.#byDelivery.set(s.deliveryId, ids)
    else this.#byDelivery.delete(s.deliveryId)
  }

  /** Keeps a message in wa_messages (what no copy records). Resolves once the row is stored. */
  async put(loginId: string, key: WAMessageKey, message: proto.IMessage, fromBridge: boolean): Promise<void> {
    if (!key.id || !key.remoteJid) return
    await this.#writes.add([loginId, key.id, key.remoteJid, fromBridge, encodeJson(key), encodeJson(message), this.#now()])
  }

  async #insert(rows: Row[]): Promise<void> {
    const values = rows.map((_, i) => `(${Array.from({ length: 7 }, (_, j) => `$${i * 7 + j + 1}`).join(', ')})`)
    // A batch naming one message twice fails as a whole ("cannot affect row a second time"); the coalescer
    // then writes its rows one by one.
    await this.#db.query(
      `INSERT INTO wa_messages (login_id, msg_id, chat_jid, from_bridge, key, message, created_at)
       VALUES ${values.join(', ')}
       ON CONFLICT (login_id, msg_id) DO UPDATE SET key = EXCLUDED.key, message = EXCLUDED.message,
         from_bridge = wa_messages.from_bridge OR EXCLUDED.from_bridge`,
      rows.flat(),
    )
  }

  /** A message kept in wa_messages. */
  async get(loginId: string, id: string): Promise<StoredMessage | undefined> {
    const row = (
      await this.#db.query<{ key: string; message: string; from_bridge: boolean }>(
        'SELECT key, message, from_bridge FROM wa_messages WHERE login_id = $1 AND msg_id = $2',
        [loginId, id],
      )
    ).rows[0]
    return row ? { key: decodeJson(row.key), message: decodeJson(row.message), fromBridge: row.from_bridge } : undefined
  }

  /**
   * Who sent a message, when the bridge knows: the login and, while it is held here, the content. undefined: not a
   * copy that keeps it (nothing recorded, or recorded before copies kept content): wa_messages is asked then.
   */
  async #sender(chat: string | undefined, id: string): Promise<{ login?: string; message?: proto.IMessage } | undefined> {
    const s = this.#sending.get(id)
    if (s) return { login: s.loginId, ...(s.message ? { message: s.message } : {}) }
    if (!chat) return undefined
    const extra = (await this.#copies.findCopy(chat, id))?.extra
    if (typeof extra?.login !== 'string' || typeof extra.message !== 'string') return undefined
    // An arrival keeps its content too: only a copy the bridge sent (its own key, fromMe) names a sender.
    if ((extra.key as WAMessageKey | undefined)?.fromMe !== true) return {}
    return { login: extra.login, message: decodeJson(extra.message) }
  }

  /** What Baileys' getMessage answers: only content this login sent. */
  async sentContent(loginId: string, chat: string | undefined, id: string): Promise<proto.IMessage | undefined> {
    const s = await this.#sender(chat, id)
    if (s) return s.login === loginId ? s.message : undefined
    const m = await this.get(loginId, id)
    return m?.fromBridge ? m.message : undefined
  }

  /** Whether any of the bridge's logins sent this id (one login hears what another sent into a group they share). */
  async isBridgeSend(chat: string | undefined, id: string): Promise<boolean> {
    const s = await this.#sender(chat, id)
    if (s) return s.login !== undefined
    const { rows } = await this.#db.query('SELECT 1 FROM wa_messages WHERE msg_id = $1 AND from_bridge LIMIT 1', [id])
    return rows.length > 0
  }

  async isOwnSend(loginId: string, chat: string | undefined, id: string): Promise<boolean> {
    const s = await this.#sender(chat, id)
    if (s) return s.login === loginId
    const { rows } = await this.#db.query(
      'SELECT 1 FROM wa_messages WHERE login_id = $1 AND msg_id = $2 AND from_bridge',
      [loginId, id],
    )
    return rows.length > 0
  }

  /** Inbound copies are only needed for quoting recent messages; sent ones for retries and edits, as long as the
   * message map keeps the message they belong to (retention.message_map_days). */
  async prune(inboundMaxAgeMs: number, sentMaxAgeMs: number, forgetInbound: (before: number) => Promise<void>): Promise<void> {
    const now = this.#now()
    await forgetInbound(now - inboundMaxAgeMs)
    await this.#db.query('DELETE FROM wa_messages WHERE created_at < $1 AND NOT from_bridge', [now - inboundMaxAgeMs])
    await this.#db.query('DELETE FROM wa_messages WHERE created_at < $1 AND from_bridge', [now - sentMaxAgeMs])
  }
}
