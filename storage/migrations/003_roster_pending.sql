-- Roster versioning (RFC 6121 §2.6) and pending inbound subscription
-- requests (RFC 6121 §3.1.3). roster_ver is the router's counter, written
-- by every roster_put / roster_del; 0 means "never written". No foreign
-- keys, as in 002: user_del deletes the user's rows itself.
ALTER TABLE users ADD COLUMN roster_ver bigint NOT NULL DEFAULT 0;

CREATE TABLE roster_pending (
    user_id text NOT NULL,
    jid     text NOT NULL,   -- bare JID of the contact that asked
    PRIMARY KEY (user_id, jid)
);
