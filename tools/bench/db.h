/*
 * Direct access to a Parley store (SQLite file or PostgreSQL) for the
 * benchmark's set-up and checks, bypassing the server on purpose:
 *   - bulk account creation: one transaction for all accounts, every
 *     account with the same SCRAM credential pair (one random salt). Hi()
 *     costs milliseconds per hash, so 100k accounts with their own salt
 *     would take minutes; sharing one is fine for a benchmark and nowhere
 *     else (it tells an attacker who reads the table which accounts share
 *     a password: all of them);
 *   - clearing the bench receivers' offline messages before a run;
 *   - counting stored offline messages, to time the store phase, and
 *     archived messages, to see whether the archive keeps up with a chat.
 * The schema is storage/migrations/ (users, offline_messages).
 */
#ifndef PARLEY_BENCH_DB_H
#define PARLEY_BENCH_DB_H

#include <stddef.h>
#include <stdint.h>

struct db;

/* spec is "sqlite:PATH" or "pg:CONNINFO". Returns a handle or NULL with
 * the reason in err. */
struct db *db_open(const char *spec, char *err, size_t errsz);
void db_close(struct db *d);   /* NULL ok */

/* Creates or refreshes accounts PREFIX<first>..PREFIX<first+count-1>@DOMAIN
 * with the credentials cred_sha1/cred_sha256 (scram_cred_encode strings),
 * and deletes their offline messages (on PostgreSQL, their offline_count
 * goes to 0 with them), in one transaction; then, on PostgreSQL, ANALYZEs
 * the tables, as after any bulk load. 0 or -1 (err). */
int db_create_accounts(struct db *d, const char *prefix, long first, long count, const char *domain,
                       const char *cred_sha1, const char *cred_sha256, char *err, size_t errsz);

/* Number of rows in offline_messages, or -1 (err). */
long long db_count_offline(struct db *d, char *err, size_t errsz);

/* Number of rows in archive (XEP-0313: two per chat message), or -1 (err). */
long long db_count_archive(struct db *d, char *err, size_t errsz);

#endif
