// wa_messages: every message the bridge sent (Baileys asks getMessage for it when a recipient retries
// decryption; quotes and edits need its key) and recent inbound ones of bridged groups (for quoting).
import type { WAMessageKey, proto } from '@whiskeysockets/baileys'
import { Coalescer } from '../db/coalesce.ts'
import type { Db } from '../db/types.ts'
import { decodeJson, encodeJson } from './auth.ts'

export interface StoredMessage {
  key: WAMessageKey
  message: proto.IMessage
  fromBridge: boolean
}

type Row = [loginId: string, msgId: string, chatJid: string, fromBridge: boolean, key: string, message: string, createdAt: number]

export class MessageStore {
  readonly #db: Db
  readonly #now: () => number
  // Every send and every inbound message of a bridged group writes a row: the sends of all chats under way
  // share one statement.
  readonly #writes = new Coalescer<Row>(rows => this.#insert(rows))
  constructor(db: Db, now: () => number = Date.now) {
    this.#db = db
    this.#now = now
  }

  /** Resolves once the row is stored (the echo check and getMessage rely on it). */
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

  async get(loginId: string, id: string): Promise<StoredMessage | undefined> {
    const row = (
      await this.#db.query<{ key: string; message: string; from_bridge: boolean }>(
        'SELECT key, message, from_bridge FROM wa_messages WHERE login_id = $1 AND msg_id = $2',
        [loginId, id],
      )
    ).rows[0]
    return row ? { key: decodeJson(row.key), message: decodeJson(row.message), fromBridge: row.from_bridge } : undefined
  }

  /** What Baileys' getMessage answers: only content this bridge sent. */
  async sentContent(loginId: string, id: string): Promise<proto.IMessage | undefined> {
    const m = await this.get(loginId, id)
    return m?.fromBridge ? m.message : undefined
  }

  /** Whether any of the bridge's logins sent this id (one login hears what another sent into a group they share). */
  async isBridgeSend(id: string): Promise<boolean> {
    const { rows } = await this.#db.query('SELECT 1 FROM wa_messages WHERE msg_id = $1 AND from_bridge LIMIT 1', [id])
    return rows.length > 0
  }

  async isOwnSend(loginId: string, id: string): Promise<boolean> {
    const { rows } = await this.#db.query(
      'SELECT 1 FROM wa_messages WHERE login_id = $1 AND msg_id = $2 AND from_bridge',
      [loginId, id],
    )
    return rows.length > 0
  }

  /** Inbound copies are only needed for quoting recent messages; sent ones for retries and edits, as long as the
   * message map keeps the message they belong to (retention.message_map_days). */
  async prune(inboundMaxAgeMs: number, sentMaxAgeMs: number): Promise<void> {
    const now = this.#now()
    await this.#db.query('DELETE FROM wa_messages WHERE created_at < $1 AND NOT from_bridge', [now - inboundMaxAgeMs])
    await this.#db.query('DELETE FROM wa_messages WHERE created_at < $1 AND from_bridge', [now - sentMaxAgeMs])
  }
}
