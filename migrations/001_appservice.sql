-- What the appservice endpoint needs: transactions seen recently and the inbox of received events.

-- Only to answer a homeserver's retry quickly. Synapse on SQLite restarts txn ids at 1 after a restart,
-- so rows are pruned after an hour and the durable dedupe key is the event id in `inbox`.
CREATE TABLE appservice_txns (
  txn_id      text PRIMARY KEY,
  received_at timestamptz NOT NULL DEFAULT now()
);

-- Every room event is written here before the transaction is acknowledged; a worker processes it later.
CREATE TABLE inbox (
  id           bigserial PRIMARY KEY,
  event_id     text NOT NULL UNIQUE,
  room_id      text,
  type         text NOT NULL,
  event        jsonb NOT NULL,
  received_at  timestamptz NOT NULL DEFAULT now(),
  processed_at timestamptz,
  attempts     integer NOT NULL DEFAULT 0,
  last_error   text
);
CREATE INDEX inbox_pending ON inbox (id) WHERE processed_at IS NULL;
