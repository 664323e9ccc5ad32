-- A remote group's new name that its portal room could not take because the bot lacked the power to set
-- m.room.name: set when the room's power levels change, dropped when someone renames the room in Matrix.
CREATE TABLE pending_room_names (
  room_id    text PRIMARY KEY,
  name       text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
