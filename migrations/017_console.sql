-- The operator console's sign-in: the one-time links the bot sends in a direct chat, and the browser sessions
-- they open. Only hashes of the secrets are stored, so a copy of the database signs nobody in. Times are ms.
CREATE TABLE console_links (
  token_hash text PRIMARY KEY,
  mxid       text NOT NULL,
  expires_at bigint NOT NULL,
  used_at    bigint
);

CREATE TABLE console_sessions (
  session_hash text PRIMARY KEY,
  mxid         text NOT NULL,
  csrf_token   text NOT NULL,
  created_at   bigint NOT NULL,
  expires_at   bigint NOT NULL
);
