-- Each user's offline queue length, kept beside the account so that the
-- quota check of offline_put reads one row instead of counting the queue
-- (O(queue) per stored message). Every statement that inserts or deletes
-- offline_messages adjusts it in the same transaction, by the rows it
-- actually inserted or deleted (RETURNING), under the users row lock
-- (storage/pg_batch.c "Locks"); user_del drops it with the row.
-- PostgreSQL only: SQLite counts the queue on its index, one writer at a
-- time, which costs it little.
ALTER TABLE users ADD COLUMN offline_count integer NOT NULL DEFAULT 0;

UPDATE users u SET offline_count = c.n
  FROM (SELECT user_id, count(*) AS n FROM offline_messages GROUP BY user_id) c
 WHERE u.user_id = c.user_id;

-- Room on each page for the new row versions those updates make, so that
-- they stay heap-only (HOT: no index entry, pruned in place) instead of
-- moving the account to another page. Applies to pages filled from now on.
ALTER TABLE users SET (fillfactor = 85);
