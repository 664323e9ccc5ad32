-- When the bridge last probed a silent relay phone (a peer app-state key request, as mautrix-whatsapp sends after
-- 10 days): at most one probe a day, also across restarts.
ALTER TABLE wa_phone ADD COLUMN probed_at bigint;
