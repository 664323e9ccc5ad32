-- A portal's recent senders are read when its first delivery is rendered (names that clash get a tag). Without
-- this index that read walked the whole messages table backwards for every portal (benchmark: PostgreSQL's CPU
-- per message grew tenfold at 1,000 portals).
CREATE INDEX messages_by_portal ON messages (portal_id, id);
