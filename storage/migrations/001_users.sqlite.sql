-- Accounts and their SCRAM credentials (never the password). The credential
-- columns hold scram_cred_encode() strings, "<iter>$<salt>$<stored>$<server>".
CREATE TABLE users (
    user_id     TEXT PRIMARY KEY,   -- bare JID, as the router normalized it
    cred_sha1   TEXT NOT NULL,
    cred_sha256 TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
