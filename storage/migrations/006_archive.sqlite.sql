-- The chat archive (XEP-0313), append-only. Each user has their own copy of
-- a conversation; peer is the other party's bare JID and dir is "in" or
-- "out" seen from user_id. Pages are ordered by (stamp, id); the second
-- index serves queries filtered by peer ("with").
-- SQLite: text compares in byte order already; see the .pg.sql variant.
CREATE TABLE archive (
    user_id text NOT NULL,
    id      text NOT NULL,     -- archive id, unique per user, sortable in time
    peer    text NOT NULL,
    stamp   bigint NOT NULL,   -- unix microseconds
    dir     text NOT NULL,
    xml     text NOT NULL,
    PRIMARY KEY (user_id, id)
);

CREATE INDEX archive_time ON archive (user_id, stamp, id);
CREATE INDEX archive_peer ON archive (user_id, peer, stamp);
