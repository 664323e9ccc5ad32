-- The reaction a relay account shows on a message (policy "emoji"). Signal and WhatsApp allow one reaction per
-- person per message, so the relay shows the newest reaction that stands of the people it speaks for; when that
-- changes (a new one, a removal), the relay's reaction is replaced or taken away. This is what it showed last,
-- so that a change that leaves it as it was sends nothing, and a removal names the emoji it removes.
CREATE TABLE relay_reactions (
  network   text NOT NULL,
  chat_id   text NOT NULL,
  target_id bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
  emoji     text NOT NULL,
  PRIMARY KEY (network, chat_id, target_id)
);
