-- Retention (retention.* in the config) deletes old messages by age. Deleting a message cascades to the outbox
-- rows and relay reactions that name it: without an index on their message column each deleted message would scan
-- the whole table.
CREATE INDEX messages_by_age ON messages (created_at);
CREATE INDEX outbox_by_message ON outbox (message_id);
CREATE INDEX relay_reactions_by_target ON relay_reactions (target_id);
