-- The archive with one index led by user_id instead of three B-trees.
--
-- Why: every archive_put lands on a random leaf page of each B-tree whose
-- key starts with user_id (the users in a batch are all different), and
-- SQLite writes each page it dirtied as a whole 4 KiB frame into the WAL at
-- commit, then again into the file at the checkpoint. With 006 a row dirtied
-- three such pages (primary key, archive_time, archive_peer); that page
-- traffic was most of the storage worker's CPU per chat message.
--
-- Now:
--   - the uniqueness of (user_id, id) is kept, but keyed id first: archive
--     ids grow with time (router/archive.c), so new rows go to the last
--     page of that index, which one commit dirties once for all its rows;
--   - archive_time is the one index led by user_id. It serves the time
--     order (stamp, id) and carries peer, so a query filtered by "with"
--     walks it for the user's time window and reads a table row only for
--     the entries that match. The counts (XEP-0059 count) read the index
--     alone, as the unfiltered one already did through 006's indexes;
--   - the table itself is a rowid table: rows are appended.
-- EXPLAIN QUERY PLAN of the queries: tests/e2e/test_storage_backends.py.
--
-- SQLite cannot change a table's primary key in place: the table is
-- rebuilt, inside the migration's transaction.
CREATE TABLE archive_new (
    user_id text NOT NULL,
    id      text NOT NULL,     -- archive id, unique per user, sortable in time
    peer    text NOT NULL,
    stamp   bigint NOT NULL,   -- unix microseconds
    dir     text NOT NULL,
    xml     text NOT NULL,
    PRIMARY KEY (id, user_id)
);

INSERT INTO archive_new (user_id, id, peer, stamp, dir, xml)
    SELECT user_id, id, peer, stamp, dir, xml FROM archive ORDER BY stamp, id;

DROP TABLE archive;
ALTER TABLE archive_new RENAME TO archive;

CREATE INDEX archive_time ON archive (user_id, stamp, id, peer);
