-- Content an adapter keeps in a copy's extra (`message`) for a while: the WhatsApp adapter keeps each message that
-- arrives in a bridged group (for quoting) with its origin copy, and drops it after a week in its hourly prune.
-- This index holds exactly the rows that prune looks for, so it never scans the message map.
CREATE INDEX message_copies_kept_content ON message_copies (network, sent_at) WHERE is_origin AND extra ? 'message';
