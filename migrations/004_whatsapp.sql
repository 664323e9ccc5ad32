-- WhatsApp: Baileys auth state per login, people (LID <-> PN), the messages the bridge sent or may quote,
-- and when each relay phone was last seen.

-- Creds (kind 'creds', key_id '') and Signal keys, BufferJSON-encoded. Wiped when the login logs out.
CREATE TABLE wa_auth (
  login_id text NOT NULL,
  kind     text NOT NULL,
  key_id   text NOT NULL,
  value    text NOT NULL,
  PRIMARY KEY (login_id, kind, key_id)
);

-- One row per WhatsApp person. person_id is what ghosts and the message map use: the LID user part when
-- the first sighting carried a LID, otherwise a random id; never a phone number. lid and pn are JIDs
-- without device, kept so that the PN -> LID move maps to the same person.
CREATE TABLE wa_people (
  person_id  text PRIMARY KEY,
  lid        text UNIQUE,
  pn         text UNIQUE,
  name       text,
  updated_at bigint NOT NULL
);

-- Messages the bridge sent (for getMessage retries, quotes, edits) and recent inbound ones (for quotes).
-- message is the proto.IMessage in BufferJSON; key the WAMessageKey.
CREATE TABLE wa_messages (
  login_id   text NOT NULL,
  msg_id     text NOT NULL,
  chat_jid   text NOT NULL,
  from_bridge boolean NOT NULL,
  key        text NOT NULL,
  message    text NOT NULL,
  created_at bigint NOT NULL,
  PRIMARY KEY (login_id, msg_id)
);
CREATE INDEX wa_messages_age ON wa_messages (created_at);

-- Phone activity per login (reference §11): the relay phone must come online every ~14 days.
CREATE TABLE wa_phone (
  login_id     text PRIMARY KEY,
  last_seen_at bigint NOT NULL,
  warned_at    bigint
);
