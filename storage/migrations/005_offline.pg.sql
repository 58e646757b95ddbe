-- Offline messages (RFC 6121 §8.5.2.1.1), kept until the receiving client
-- acknowledged them. id is the router's unique message id, so a redelivered
-- offline_put is a no-op; the index serves offline_get's order and the
-- per-user count of the quota check.
-- PostgreSQL: ids compare in byte order (COLLATE "C"), as in SQLite, so
-- paging by (stamp, id) does not depend on the database's locale.
CREATE TABLE offline_messages (
    user_id text NOT NULL,
    id      text COLLATE "C" NOT NULL,
    stamp   bigint NOT NULL,   -- unix microseconds the server received it
    xml     text NOT NULL,
    PRIMARY KEY (user_id, id)
);

CREATE INDEX offline_messages_order ON offline_messages (user_id, stamp, id);
