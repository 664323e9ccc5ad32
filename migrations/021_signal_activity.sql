-- When the signal-cli daemon last delivered anything for each Signal login (ms), shown by the console as the
-- login's last activity. Kept across restarts; written at most once a minute per login and at shutdown, not at
-- every message. Goes with its login.
CREATE TABLE signal_activity (
  login_id         text PRIMARY KEY REFERENCES logins (id) ON DELETE CASCADE,
  last_received_at bigint NOT NULL
);
