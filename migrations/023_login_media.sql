-- The media files each login brought into the store (what it received: attachments, group pictures), so that
-- `logout` deletes them with the login. The store is shared and content-addressed: a file another login also
-- brought, or that a queued delivery still names, stays. The rows go with the login.
CREATE TABLE login_media (
  login_id text NOT NULL REFERENCES logins (id) ON DELETE CASCADE,
  media_id text NOT NULL,
  PRIMARY KEY (login_id, media_id)
);
CREATE INDEX login_media_by_media ON login_media (media_id);
