-- Disappearing messages (issue 17, point 5). A message from a Signal or WhatsApp group with a timer must not stay
-- for ever in Matrix: when its copy there is due to go is recorded with it, durably, so that a restart keeps the
-- promise. The row goes with the message (retention keeps a message while its row waits).
CREATE TABLE expiring_messages (
  message_id bigint PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
  due_at     timestamptz NOT NULL
);
CREATE INDEX expiring_messages_by_due ON expiring_messages (due_at);

-- A group's disappearing-message timer is group state like its name (seconds, 0: off).
ALTER TABLE group_state DROP CONSTRAINT group_state_field_check;
ALTER TABLE group_state ADD CONSTRAINT group_state_field_check CHECK (field IN ('name', 'topic', 'avatar', 'timer'));
