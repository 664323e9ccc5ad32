-- Group state kept in step across the networks (issue 17). A portal's name, topic and picture are delivered through
-- the outbox like messages; what each side is known to show is recorded, so that the echo of a change the bridge
-- made itself is recognised and never sent on again.
ALTER TABLE outbox DROP CONSTRAINT outbox_op_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_op_check CHECK (op IN ('message', 'edit', 'delete', 'reaction', 'chat_update'));

-- What one network's side of a portal shows (or was last set to by the bridge), per field.
CREATE TABLE group_state (
  portal_id  bigint NOT NULL REFERENCES portals (id) ON DELETE CASCADE,
  network    text NOT NULL,
  field      text NOT NULL CHECK (field IN ('name', 'topic', 'avatar')),
  value      jsonb NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (portal_id, network, field)
);

-- A portal's choices (`!relay sync`); a missing row means the default: on toward Matrix, off toward the networks.
CREATE TABLE portal_sync (
  portal_id bigint NOT NULL REFERENCES portals (id) ON DELETE CASCADE,
  field     text NOT NULL,
  direction text NOT NULL CHECK (direction IN ('to-matrix', 'to-networks')),
  enabled   boolean NOT NULL,
  PRIMARY KEY (portal_id, field, direction)
);

-- Changes the bridge was not permitted to make, waiting for the permission (the room was told once).
CREATE TABLE pending_group_state (
  portal_id  bigint NOT NULL REFERENCES portals (id) ON DELETE CASCADE,
  network    text NOT NULL,
  field      text NOT NULL,
  value      jsonb NOT NULL,
  sender     jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (portal_id, network, field)
);

-- Room names that waited for the bot's power (008) wait here now.
INSERT INTO pending_group_state (portal_id, network, field, value, sender)
SELECT p.id, 'matrix', 'name', to_jsonb(n.name), jsonb_build_object('network', 'matrix', 'id', '', 'displayName', '')
FROM pending_room_names n JOIN portals p ON p.room_id = n.room_id
ON CONFLICT DO NOTHING;
DROP TABLE pending_room_names;
