-- Accounts and their SCRAM credentials (never the password). The credential
-- columns hold scram_cred_encode() strings, "<iter>$<salt>$<stored>$<server>".
CREATE TABLE users (
    user_id     text PRIMARY KEY,   -- bare JID, as the router normalized it
    cred_sha1   text NOT NULL,
    cred_sha256 text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
