-- A copy may take several remote ids: a text longer than one Matrix event is sent as up to 8 events, and a
-- message with attachments as one event each. Every further id is a 'part' row of the same message, so that a
-- reply or reaction to any of them resolves to the message.
ALTER TABLE message_copies DROP CONSTRAINT message_copies_role_check;
ALTER TABLE message_copies ADD CONSTRAINT message_copies_role_check CHECK (role IN ('original', 'revision', 'action', 'part'));
