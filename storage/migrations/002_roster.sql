-- Rosters (RFC 6121 §2). One row per contact, and one per group the contact
-- is in. No foreign keys: SQLite enforces them only per connection with a
-- pragma, so user_del deletes a user's rows from all three tables itself.
CREATE TABLE roster_items (
    user_id      TEXT NOT NULL,
    jid          TEXT NOT NULL,
    name         TEXT,
    subscription TEXT NOT NULL DEFAULT 'none',   -- none | to | from | both
    ask          TEXT,                            -- NULL | subscribe
    PRIMARY KEY (user_id, jid)
);

CREATE TABLE roster_groups (
    user_id TEXT NOT NULL,
    jid     TEXT NOT NULL,
    grp     TEXT NOT NULL,
    PRIMARY KEY (user_id, jid, grp)
);
