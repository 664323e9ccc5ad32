-- End-to-bridge encryption: what a transaction brings for the crypto layer, and encrypted events waiting for
-- their key.

-- The to-device events (room keys among them), device lists and key counts of one transaction, stored
-- before the transaction is answered (a crash cannot lose a room key) and handed to the Olm machine in `id`
-- order. `digest` covers the txn id and this content: a retried transaction (same id, same body) is stored
-- once, while a homeserver that numbers its transactions from 1 again after a restart still gets its new
-- content stored.
CREATE TABLE crypto_inbox (
  id           bigserial PRIMARY KEY,
  digest       text NOT NULL UNIQUE,
  txn_id       text NOT NULL,
  to_device    jsonb NOT NULL,
  device_lists jsonb NOT NULL,
  otk_counts   jsonb NOT NULL,
  fallback_key_types jsonb,
  received_at  timestamptz NOT NULL DEFAULT now(),
  handled_at   timestamptz
);
CREATE INDEX crypto_inbox_pending ON crypto_inbox (id) WHERE handled_at IS NULL;

-- Encrypted room events that arrived before their key. The room goes on without them; each is decrypted and
-- handled when its key arrives, or marked failed in the room once `give_up_at` passes.
CREATE TABLE undecrypted_events (
  event_id    text PRIMARY KEY,
  room_id     text NOT NULL,
  session_id  text,
  event       jsonb NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  give_up_at  timestamptz NOT NULL,
  -- waiting: the key may still come; decrypted: relayed; failed: given up on (and said so in the room).
  state       text NOT NULL DEFAULT 'waiting' CHECK (state IN ('waiting', 'decrypted', 'failed')),
  done_at     timestamptz
);
CREATE INDEX undecrypted_waiting ON undecrypted_events (give_up_at) WHERE state = 'waiting';

-- The bot's encryption device: chosen on the first start with encryption allowed and kept, so that its keys
-- never change across restarts. `relay-bridge reset-encryption` deletes it (a new device, a new identity).
CREATE TABLE crypto_device (
  user_id    text PRIMARY KEY,
  device_id  text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
