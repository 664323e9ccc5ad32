// The message map: each logical message and its copy on every network. Replies, edits, deletions and
// reactions resolve through it, across restarts.
import type { Queryable } from '../db/types.ts'
import type { CopyRef, NetworkId, Person } from './model.ts'
import { markSentCtes, type MarkParams } from './outbox.ts'

export interface MessageRow {
  id: number
  portal_id: number
  kind: 'message' | 'reaction'
  origin_network: NetworkId
  sender_network: NetworkId
  sender_id: string
  sender_name: string
  relates_to: number | null
  emoji: string | null
  edit_count: number
  deleted: boolean
}

interface CopyRow {
  network: NetworkId
  chat_id: string
  remote_id: string
  message_id: number
  role: 'original' | 'revision' | 'action' | 'part'
  is_origin: boolean
  author_id: string
  sent_at: number
  extra: Record<string, unknown> | null
}

export interface FoundCopy {
  message: MessageRow
  copy: CopyRow
}

const toRef = (c: CopyRow): CopyRef => ({
  remoteId: c.remote_id,
  authorId: c.author_id,
  sentAt: c.sent_at,
  ...(c.extra ? { extra: c.extra } : {}),
})

/**
 * What createManyAndQueue may record in its own statement besides the messages (one autocommit statement is
 * atomic, as the transaction it replaces): each new message's deliveries (`item`: its index in the items; a
 * redelivered message queues none) and the caller's records of these events marked handled.
 */
export interface AlsoRecorded {
  /** `payload`: the JSON text the outbox stores. */
  deliveries: Array<{ item: number; portalId: number; network: NetworkId; chatId: string; payload: string }>
  /** `statement(param)`: a data-modifying statement marking `ids` (passed as `param`, a bigint[]) handled. */
  handled?: { ids: number[]; statement: (param: string) => string } | undefined
  /** Deliveries sent before, marked sent with their copies (Outbox.carry). */
  marks?: MarkParams | undefined
}

/** A new message and the copy it arrived as. */
export interface NewWithOrigin {
  m: { portalId: number; sender: Person }
  c: { network: NetworkId; chatId: string; remoteId: string; authorId: string; sentAt: number; extra?: Record<string, unknown> | undefined }
}

/** An outbox row createManyAndQueue inserted. */
export interface Queued { id: number; messageId: number; network: NetworkId; chatId: string }

export const MessageMap = {
  async find(q: Queryable, network: NetworkId, chatId: string, remoteId: string): Promise<FoundCopy | undefined> {
    const { rows } = await q.query<CopyRow & { m: MessageRow }>(
      `SELECT c.*, row_to_json(m) AS m FROM message_copies c JOIN messages m ON m.id = c.message_id
       WHERE c.network = $1 AND c.chat_id = $2 AND c.remote_id = $3`,
      [network, chatId, remoteId],
    )
    const r = rows[0]
    if (!r) return undefined
    const { m, ...copy } = r
    return { message: m, copy }
  },


  async create(
    q: Queryable,
    m: { portalId: number; kind: 'message' | 'reaction'; origin: NetworkId; sender: Person; relatesTo?: number; emoji?: string },
  ): Promise<number> {
    const { rows } = await q.query<{ id: number }>(
      `INSERT INTO messages (portal_id, kind, origin_network, sender_network, sender_id, sender_name, relates_to, emoji)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
      [m.portalId, m.kind, m.origin, m.sender.network, m.sender.id, m.sender.displayName, m.relatesTo ?? null, m.emoji ?? null],
    )
    return rows[0]!.id
  },

  /**
   * New messages and the copies they arrived as, in one statement: the ids in input order, undefined (and nothing
   * recorded) where the remote id is already known — a redelivery or an echo. Two inputs with one remote id fail
   * the statement (and so their transaction).
   */
  async createManyWithOrigin(q: Queryable, items: NewWithOrigin[]): Promise<Array<number | undefined>> {
    return (await MessageMap.createManyAndQueue(q, items)).ids
  },

  /** createManyWithOrigin, and what `also` adds in the same statement; `queued`: the outbox rows' ids. */
  async createManyAndQueue(q: Queryable, items: NewWithOrigin[], also?: AlsoRecorded): Promise<{ ids: Array<number | undefined>; queued: Queued[] }> {
    if (items.length === 0) return { ids: [], queued: [] }
    const col = <T>(f: (i: (typeof items)[number]) => T): T[] => items.map(f)
    // Ids are drawn from the sequence first, so that both inserts can name them and the answer can be put
    // back in input order (INSERT … RETURNING does not say which input row a returned id came from).
    const { rows } = await q.query<{ ord: number | null; id: number; outbox_id: number | null; network: NetworkId | null; chat_id: string | null }>(
      `WITH input AS (
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[], $10::text[])
           WITH ORDINALITY AS t(portal_id, sender_network, sender_id, sender_name, network, chat_id, remote_id, author_id, sent_at, extra, ord)),
       fresh AS MATERIALIZED (
         SELECT i.*, nextval('messages_id_seq') AS id FROM (
           SELECT * FROM input i WHERE NOT EXISTS (SELECT 1 FROM message_copies c
             WHERE c.network = i.network AND c.chat_id = i.chat_id AND c.remote_id = i.remote_id) ORDER BY ord) i),
       m AS (INSERT INTO messages (id, portal_id, kind, origin_network, sender_network, sender_id, sender_name)
             SELECT id, portal_id, 'message', network, sender_network, sender_id, sender_name FROM fresh),
       c AS (INSERT INTO message_copies (network, chat_id, remote_id, message_id, role, is_origin, author_id, sent_at, extra)
             SELECT network, chat_id, remote_id, id, 'original', true, author_id, sent_at, extra::jsonb FROM fresh)${also ? `,
       -- The deliveries of the messages that are new (a redelivery queues nothing), in the order given.
       o AS (INSERT INTO outbox (portal_id, message_id, network, chat_id, op, payload)
             SELECT d.portal_id, f.id, d.network, d.chat_id, 'message', d.payload::jsonb
             FROM unnest($11::bigint[], $12::bigint[], $13::text[], $14::text[], $15::text[]) WITH ORDINALITY AS d(ord, portal_id, network, chat_id, payload, n)
             JOIN fresh f ON f.ord = d.ord ORDER BY d.n
             RETURNING id, message_id, network, chat_id)${also.handled ? `,
       h AS (${also.handled.statement('$16')})` : ''}${also.marks ? `,
       ${markSentCtes(`$${also.handled ? 17 : 16}`, `$${also.handled ? 18 : 17}`)}` : ''}` : ''}
       SELECT ord, id${also ? `, NULL::bigint AS outbox_id, NULL AS network, NULL AS chat_id FROM fresh
       UNION ALL SELECT NULL, message_id, id, network, chat_id FROM o` : ' FROM fresh'}`,
      [col(i => i.m.portalId), col(i => i.m.sender.network), col(i => i.m.sender.id), col(i => i.m.sender.displayName),
        col(i => i.c.network), col(i => i.c.chatId), col(i => i.c.remoteId), col(i => i.c.authorId), col(i => i.c.sentAt),
        col(i => (i.c.extra ? JSON.stringify(i.c.extra) : null)),
        ...(also ? [also.deliveries.map(d => d.item + 1), also.deliveries.map(d => d.portalId), also.deliveries.map(d => d.network),
          also.deliveries.map(d => d.chatId), also.deliveries.map(d => d.payload)] : []),
        ...(also?.handled ? [also.handled.ids] : []),
        ...(also?.marks ? [also.marks.ids, also.marks.copies] : [])],
    )
    const ids: Array<number | undefined> = items.map(() => undefined)
    const queued: Queued[] = []
    for (const r of rows) {
      if (r.outbox_id == null) ids[Number(r.ord) - 1] = Number(r.id)
      else queued.push({ id: Number(r.outbox_id), messageId: Number(r.id), network: r.network!, chatId: r.chat_id! })
    }
    return { ids, queued }
  },

  /** Records a copy. Returns false when this remote id is already known (a redelivery or an echo). */
  async addCopy(
    q: Queryable,
    c: { network: NetworkId; chatId: string; remoteId: string; messageId: number; role: 'original' | 'revision' | 'action' | 'part';
      isOrigin: boolean; authorId: string; sentAt: number; extra?: Record<string, unknown> | undefined },
  ): Promise<boolean> {
    const res = await q.query(
      `INSERT INTO message_copies (network, chat_id, remote_id, message_id, role, is_origin, author_id, sent_at, extra)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb) ON CONFLICT DO NOTHING`,
      [c.network, c.chatId, c.remoteId, c.messageId, c.role, c.isOrigin, c.authorId, c.sentAt,
        c.extra ? JSON.stringify(c.extra) : null],
    )
    return res.rowCount > 0
  },

  /**
   * Content an adapter keeps in its copies' `extra.message` (CopyRef.extra) goes: from this network's origin copies
   * sent before `originSentBefore` (what arrived is kept only for a while), or from every copy of it whose
   * `extra.login` is `login` (the login is gone: its name goes too). The key and the rest of `extra` stay.
   */
  async forgetKeptContent(q: Queryable, network: NetworkId, which: { originSentBefore: number } | { login: string }): Promise<number> {
    // The first form is the hourly prune: message_copies_kept_content (027) holds exactly the rows it looks for.
    const { rowCount } = 'login' in which
      ? await q.query(`UPDATE message_copies SET extra = extra - 'message' - 'login' WHERE network = $1 AND extra->>'login' = $2`, [network, which.login])
      : await q.query(`UPDATE message_copies SET extra = extra - 'message' WHERE network = $1 AND is_origin AND extra ? 'message' AND sent_at < $2`,
        [network, which.originSentBefore])
    return rowCount
  },

  /** The first copy of a message on a network, and its latest revision there (further parts of a copy aside). */
  async copiesOn(q: Queryable, messageId: number, network: NetworkId): Promise<{ original?: CopyRef; latest?: CopyRef; revisions: number }> {
    const { rows } = await q.query<CopyRow>(
      `SELECT * FROM message_copies WHERE message_id = $1 AND network = $2 AND role IN ('original', 'revision')
       ORDER BY sent_at, role DESC`,
      [messageId, network],
    )
    const original = rows.find(r => r.role === 'original')
    const last = rows.at(-1)
    return {
      ...(original ? { original: toRef(original) } : {}),
      ...(last ? { latest: toRef(last) } : {}),
      revisions: rows.filter(r => r.role === 'revision').length,
    }
  },

  /**
   * The live reaction of one person on a message: with `emoji`, the one with that emoji (on Matrix a person may
   * have several); without, whichever they have (Signal and WhatsApp allow one per person per message).
   */
  async findReaction(q: Queryable, targetId: number, sender: Pick<Person, 'network' | 'id'>, emoji?: string): Promise<MessageRow | undefined> {
    const { rows } = await q.query<MessageRow>(
      `SELECT * FROM messages WHERE relates_to = $1 AND sender_network = $2 AND sender_id = $3
       AND ($4::text IS NULL OR emoji = $4) AND kind = 'reaction' AND NOT deleted ORDER BY id DESC LIMIT 1`,
      [targetId, sender.network, sender.id, emoji ?? null],
    )
    return rows[0]
  },

  /** The newest live reaction to a message that did not come from `network`: what a relay account there shows. */
  async latestReaction(q: Queryable, targetId: number, network: NetworkId): Promise<{ id: number; emoji: string } | undefined> {
    const { rows } = await q.query<{ id: number; emoji: string }>(
      `SELECT id, emoji FROM messages WHERE relates_to = $1 AND kind = 'reaction' AND NOT deleted AND origin_network <> $2
       ORDER BY id DESC LIMIT 1`,
      [targetId, network],
    )
    return rows[0]
  },

  /** The emoji the relay account last showed on a message in a chat (policy "emoji"), if any. */
  async relayReaction(q: Queryable, network: NetworkId, chatId: string, targetId: number): Promise<string | undefined> {
    const { rows } = await q.query<{ emoji: string }>(
      'SELECT emoji FROM relay_reactions WHERE network = $1 AND chat_id = $2 AND target_id = $3',
      [network, chatId, targetId],
    )
    return rows[0]?.emoji
  },

  /** Records what the relay account shows now on a message; undefined when it shows nothing. */
  async setRelayReaction(q: Queryable, network: NetworkId, chatId: string, targetId: number, emoji: string | undefined): Promise<void> {
    if (emoji === undefined) {
      await q.query('DELETE FROM relay_reactions WHERE network = $1 AND chat_id = $2 AND target_id = $3', [network, chatId, targetId])
      return
    }
    await q.query(
      `INSERT INTO relay_reactions (network, chat_id, target_id, emoji) VALUES ($1, $2, $3, $4)
       ON CONFLICT (network, chat_id, target_id) DO UPDATE SET emoji = EXCLUDED.emoji`,
      [network, chatId, targetId, emoji],
    )
  },

  /** Marks a person's live reactions to a message deleted; answers which they were. */
  async deleteReactionsBy(q: Queryable, targetId: number, sender: Pick<Person, 'network' | 'id'>): Promise<Array<{ id: number; emoji: string }>> {
    const { rows } = await q.query<{ id: number; emoji: string }>(
      `UPDATE messages SET deleted = true WHERE relates_to = $1 AND sender_network = $2 AND sender_id = $3
       AND kind = 'reaction' AND NOT deleted RETURNING id, emoji`,
      [targetId, sender.network, sender.id],
    )
    return rows
  },

  /**
   * Of the messages with these remote ids in these chats of a network, the latest one and its first Matrix event
   * (what a read receipt lands on). Undefined when none of them reached Matrix.
   */
  async latestOnMatrix(q: Queryable, network: NetworkId, chatIds: string[], remoteIds: string[]): Promise<{ messageId: number; portalId: number; eventId: string } | undefined> {
    if (chatIds.length === 0 || remoteIds.length === 0) return undefined
    const { rows } = await q.query<{ message_id: number; portal_id: number; event_id: string }>(
      `SELECT m.id AS message_id, m.portal_id, x.remote_id AS event_id
       FROM message_copies c JOIN messages m ON m.id = c.message_id
       JOIN message_copies x ON x.message_id = m.id AND x.network = 'matrix' AND x.role = 'original'
       WHERE c.network = $1 AND c.chat_id = ANY($2::text[]) AND c.remote_id = ANY($3::text[]) AND m.kind = 'message'
       ORDER BY m.id DESC, x.sent_at LIMIT 1`,
      [network, chatIds, remoteIds],
    )
    const r = rows[0]
    return r ? { messageId: Number(r.message_id), portalId: Number(r.portal_id), eventId: r.event_id } : undefined
  },

  async markDeleted(q: Queryable, id: number): Promise<void> {
    await q.query('UPDATE messages SET deleted = true WHERE id = $1', [id])
  },

  async countEdit(q: Queryable, id: number): Promise<void> {
    await q.query('UPDATE messages SET edit_count = edit_count + 1 WHERE id = $1', [id])
  },
}
