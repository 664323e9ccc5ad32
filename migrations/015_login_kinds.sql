-- A login is of one of two kinds, chosen when it is linked. A relay account is a spare number that speaks for
-- others in the rooms it relays (and only such an account creates portals); a personal account is its owner's own
-- identity, through which they post as themselves. Every login linked before this was a relay account.
ALTER TABLE logins ADD COLUMN kind text NOT NULL DEFAULT 'relay' CHECK (kind IN ('relay', 'personal'));

-- `logout` removes a login for good: a portal it relayed keeps its links and waits for another relay.
ALTER TABLE portals DROP CONSTRAINT portals_signal_login_fkey;
ALTER TABLE portals ADD CONSTRAINT portals_signal_login_fkey FOREIGN KEY (signal_login) REFERENCES logins (id) ON DELETE SET NULL;
ALTER TABLE portals DROP CONSTRAINT portals_whatsapp_login_fkey;
ALTER TABLE portals ADD CONSTRAINT portals_whatsapp_login_fkey FOREIGN KEY (whatsapp_login) REFERENCES logins (id) ON DELETE SET NULL;
