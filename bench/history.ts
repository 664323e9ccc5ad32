// Every run starts from the same message history, with statistics that know it, as a bridge that has been running
// for a while does: HISTORY_MESSAGES messages Alice wrote in Matrix spread over the portals, each with its copies on
// the three networks, its two deliveries sent, its inbox row processed and its WhatsApp send kept; then VACUUM
// ANALYZE, as autovacuum would have run (left to autovacuum, it vacuumed the history's inserts during the runs),
// and a CHECKPOINT.
// Runs used to start on empty tables. Each of the bridge's connections keeps one plan per prepared statement, made
// while the tables held a few rows (a hash of the whole of message_copies to look up one id, a scan of the whole
// inbox to mark one row), and kept it while the run grew them tenfold: the cost of a bridge's first minutes, not
// of its life, and about 0.5 ms of PostgreSQL CPU per message at 100 msg/s (docs/performance.md, session 9).
import type { Db } from '../src/db/types.ts'
import { ALICE, SIGNAL_RELAY, WHATSAPP_LOGIN } from './config.ts'

/** About a week of a small, busy deployment. */
export const HISTORY_MESSAGES = 20_000

export async function loadHistory(db: Db): Promise<void> {
  await db.query(
    `WITH p AS (SELECT array_agg(id ORDER BY id) AS ids, array_agg(room_id ORDER BY id) AS rooms,
                       array_agg(signal_group ORDER BY id) AS sg, array_agg(whatsapp_group ORDER BY id) AS wg FROM portals),
     h AS MATERIALIZED (
       SELECT nextval('messages_id_seq') AS id, g, p.ids[k] AS portal_id, p.rooms[k] AS room, p.sg[k] AS sg, p.wg[k] AS wg,
              now() - make_interval(secs => ($1 - g) * 30) AS at
       FROM p, generate_series(1, $1::int) AS g, LATERAL (SELECT 1 + g % array_length(p.ids, 1) AS k) AS pick),
     m AS (INSERT INTO messages (id, portal_id, kind, origin_network, sender_network, sender_id, sender_name, created_at)
           SELECT id, portal_id, 'message', 'matrix', 'matrix', $2, 'Alice', at FROM h),
     c AS (INSERT INTO message_copies (network, chat_id, remote_id, message_id, role, is_origin, author_id, sent_at, extra)
           SELECT n.network, CASE n.network WHEN 'matrix' THEN h.room WHEN 'signal' THEN h.sg ELSE h.wg END,
                  n.prefix || h.g, h.id, 'original', n.network = 'matrix', n.author, (extract(epoch FROM h.at) * 1000)::bigint,
                  -- The WhatsApp send's key and content, kept with its copy (src/whatsapp/messages.ts).
                  CASE n.network WHEN 'whatsapp' THEN jsonb_build_object(
                    'key', jsonb_build_object('remoteJid', h.wg, 'id', '3EB0HISTORY' || h.g, 'fromMe', true),
                    'message', jsonb_build_object('extendedTextMessage', jsonb_build_object('text', '*Alice (Matrix)*: An older message ' || h.g))::text,
                    'login', $5::text) END
           FROM h CROSS JOIN (VALUES ('matrix', '$history', $2), ('signal', '17', $3), ('whatsapp', '3EB0HISTORY', $4)) AS n(network, prefix, author)),
     o AS (INSERT INTO outbox (portal_id, message_id, network, chat_id, op, payload, state, attempts, created_at, finished_at)
           SELECT h.portal_id, h.id, n, CASE n WHEN 'signal' THEN h.sg ELSE h.wg END, 'message',
                  jsonb_build_object('sender', jsonb_build_object('network', 'matrix', 'id', $2::text, 'displayName', 'Alice'),
                    'content', jsonb_build_object('kind', 'text', 'text', 'An older message ' || h.g)), 'sent', 1, h.at, h.at
           FROM h CROSS JOIN unnest(ARRAY['signal', 'whatsapp']) AS n),
     i AS (INSERT INTO inbox (event_id, room_id, type, event, received_at, processed_at)
           SELECT '$history' || h.g, h.room, 'm.room.message', jsonb_build_object('event_id', '$history' || h.g, 'room_id', h.room,
                    'type', 'm.room.message', 'sender', $2::text, 'content', jsonb_build_object('msgtype', 'm.text', 'body', 'An older message ' || h.g)),
                  h.at, h.at FROM h)
     SELECT count(*) FROM h`,
    [HISTORY_MESSAGES, ALICE, SIGNAL_RELAY.aci, '15550100000@s.whatsapp.net', WHATSAPP_LOGIN],
  )
  await db.query('VACUUM ANALYZE')
  // And written out: the load leaves about 150,000 rows' pages dirty, which the next checkpoint (or the kernel's
  // writeback) would otherwise write while the run is measured, slowing the run's own commits behind them.
  // CHECKPOINT needs a superuser (or pg_checkpoint): on a server the benchmark did not start, it may be refused.
  await db.query('CHECKPOINT').catch(() => {})
}
