-- The relay core: logins, portals, ghosts, the message map and the delivery queue.

CREATE TABLE logins (
  id               text PRIMARY KEY,
  network          text NOT NULL CHECK (network IN ('signal', 'whatsapp')),
  address          text NOT NULL,          -- number or JID: shown to the owner only
  person_id        text NOT NULL,          -- stable id of the account's person (ACI, WhatsApp person id)
  display_name     text NOT NULL DEFAULT '',
  owner_mxid       text NOT NULL,
  state            text NOT NULL DEFAULT 'disconnected'
                   CHECK (state IN ('connecting', 'connected', 'disconnected', 'logged_out')),
  state_message    text,
  state_changed_at timestamptz NOT NULL DEFAULT now(),
  metadata         jsonb NOT NULL DEFAULT '{}',
  created_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (network, address)
);

CREATE TABLE portals (
  id             bigserial PRIMARY KEY,
  room_id        text NOT NULL UNIQUE,
  name           text NOT NULL DEFAULT '',
  signal_group   text UNIQUE,
  signal_login   text REFERENCES logins (id),
  whatsapp_group text UNIQUE,
  whatsapp_login text REFERENCES logins (id),
  creator        text,
  encrypted      boolean NOT NULL DEFAULT false,
  created_at     timestamptz NOT NULL DEFAULT now()
);

-- Matrix puppets for remote people: one per person, never renamed (ids federate).
CREATE TABLE ghosts (
  mxid         text PRIMARY KEY,
  network      text NOT NULL,
  person_id    text NOT NULL,
  display_name text,
  avatar_mxc   text,
  avatar_key   text,
  registered   boolean NOT NULL DEFAULT false,
  UNIQUE (network, person_id)
);
CREATE TABLE ghost_memberships (
  mxid    text NOT NULL REFERENCES ghosts (mxid) ON DELETE CASCADE,
  room_id text NOT NULL,
  PRIMARY KEY (mxid, room_id)
);

-- Matrix room members as the bridge last saw them (names for relayed messages, disambiguation).
CREATE TABLE room_members (
  room_id     text NOT NULL,
  mxid        text NOT NULL,
  displayname text,
  membership  text NOT NULL,
  PRIMARY KEY (room_id, mxid)
);

-- One row per logical message (or reaction), whatever network it started on.
CREATE TABLE messages (
  id             bigserial PRIMARY KEY,
  portal_id      bigint NOT NULL REFERENCES portals (id) ON DELETE CASCADE,
  kind           text NOT NULL CHECK (kind IN ('message', 'reaction')),
  origin_network text NOT NULL,
  sender_network text NOT NULL,
  sender_id      text NOT NULL,
  sender_name    text NOT NULL,
  relates_to     bigint REFERENCES messages (id) ON DELETE CASCADE, -- reaction target
  emoji          text,
  edit_count     integer NOT NULL DEFAULT 0,
  deleted        boolean NOT NULL DEFAULT false,
  created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_reactions ON messages (relates_to, sender_network, sender_id) WHERE relates_to IS NOT NULL;

-- Each copy of a message on a network, keyed by its remote id there. The unique key makes a redelivered
-- event a no-op. Edits add 'revision' rows so that an edit of an edit finds the same message.
CREATE TABLE message_copies (
  network    text NOT NULL,
  chat_id    text NOT NULL,
  remote_id  text NOT NULL,
  message_id bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
  -- original: the message itself; revision: an edit of it; action: a deletion or reaction removal,
  -- kept only so that a redelivered event is recognised.
  role       text NOT NULL CHECK (role IN ('original', 'revision', 'action')),
  is_origin  boolean NOT NULL,            -- the copy the event arrived as (not one the bridge sent)
  author_id  text NOT NULL,
  sent_at    bigint NOT NULL,             -- ms since epoch
  extra      jsonb,
  PRIMARY KEY (network, chat_id, remote_id)
);
CREATE INDEX message_copies_by_message ON message_copies (message_id, network, sent_at);

-- The delivery queue: one ordered queue per (network, chat).
CREATE TABLE outbox (
  id              bigserial PRIMARY KEY,
  portal_id       bigint NOT NULL REFERENCES portals (id) ON DELETE CASCADE,
  message_id      bigint REFERENCES messages (id) ON DELETE CASCADE,
  network         text NOT NULL,
  chat_id         text NOT NULL,
  op              text NOT NULL CHECK (op IN ('message', 'edit', 'delete', 'reaction')),
  payload         jsonb NOT NULL,
  state           text NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'held')),
  attempts        integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_error      text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  finished_at     timestamptz
);
CREATE INDEX outbox_open ON outbox (network, chat_id, id) WHERE state IN ('pending', 'sending', 'held');

-- The bot's direct chat with each person (logins and management happen there).
CREATE TABLE direct_chats (
  mxid    text PRIMARY KEY,
  room_id text NOT NULL UNIQUE
);
