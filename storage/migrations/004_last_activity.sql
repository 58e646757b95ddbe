-- Last activity (XEP-0012): when the user's last session ended, and the
-- status text of its last unavailable presence. One row per user.
CREATE TABLE last_activity (
    user_id text PRIMARY KEY,
    since   bigint NOT NULL,   -- unix seconds
    status  text               -- NULL when the presence had none
);
