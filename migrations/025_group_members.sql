-- Who is in each linked group (issue 17, membership). A network tells a change as a whole roster (Signal's group
-- update re-read with listGroups) or as who came and went (WhatsApp's group-participants.update); the core compares
-- either with what is recorded here, so that a join or a leave is acted on once, however often the group is re-read.
-- Their ghosts in the portal's room, and the short lines in the other groups, go through the outbox like messages.
ALTER TABLE outbox DROP CONSTRAINT outbox_op_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_op_check
  CHECK (op IN ('message', 'edit', 'delete', 'reaction', 'chat_update', 'members', 'member_line'));

CREATE TABLE group_members (
  portal_id    bigint NOT NULL REFERENCES portals (id) ON DELETE CASCADE,
  network      text NOT NULL,
  person_id    text NOT NULL,
  display_name text NOT NULL,
  admin        boolean NOT NULL DEFAULT false,
  PRIMARY KEY (portal_id, network, person_id)
);
