-- What the bot needs to guide people: each linked group's name (status names groups, not their ids), and
-- the people it has greeted (an admin is greeted once, not at every start).
ALTER TABLE portals ADD COLUMN signal_group_name text;
ALTER TABLE portals ADD COLUMN whatsapp_group_name text;

CREATE TABLE greetings (
  mxid       text PRIMARY KEY,
  greeted_at timestamptz NOT NULL DEFAULT now()
);
