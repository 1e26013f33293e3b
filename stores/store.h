/* store: the LMDB environment of a data dir. One writer thread commits queued writes in batches
 * (group commit), reads run on any thread, the map grows on demand. kv, audit, tsdb build on it. */
#ifndef CASCA_STORE_H
#define CASCA_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <lmdb.h>

struct store;

/* When committed writes reach the disk. A crash of the process loses nothing committed.
 * A crash of the machine (power, kernel):
 *   every_commit  loses nothing reported done;
 *   periodic      loses at most the commits of the last sync_interval, never corrupts the file
 *                 (LMDB's MDB_NOMETASYNC: data pages are synced at each commit, the meta page on
 *                 the timer, so the file always points at a complete, synced transaction);
 *   none          may lose everything since the last sync and LMDB does not promise the file
 *                 survives intact (MDB_NOSYNC): for data you can rebuild. */
enum store_sync {
    STORE_SYNC_EVERY_COMMIT, /* each batch is fsynced before its writes are reported done */
    STORE_SYNC_PERIODIC,     /* data synced per batch, the commit point every sync_interval_ms */
    STORE_SYNC_NONE,         /* fsync only on store_close (and whenever the OS decides) */
};

/* A zero field means its default. */
struct store_options {
    const char *dir;           /* data dir, created (mkdir -p) if missing; required */
    size_t map_size;           /* initial map size in bytes, default 64 MiB */
    size_t max_map_size;       /* the map doubles up to this, default 64 GiB */
    unsigned max_dbs;          /* named databases, default 32 */
    enum store_sync sync;      /* default STORE_SYNC_EVERY_COMMIT */
    unsigned sync_interval_ms; /* for STORE_SYNC_PERIODIC, default 1000 */
    unsigned max_batch;        /* writes per group commit, default 256 */
    unsigned queue_limit; /* queued writes before store_write says CASCA_ERR_FULL, default 65536 */
};

/* A snapshot of the counters, taken under the store's lock. */
struct store_stats {
    uint64_t file_bytes;     /* size of data.mdb */
    uint64_t map_bytes;      /* current map size */
    uint64_t pending;        /* writes queued, not yet taken by the writer */
    uint64_t commits;        /* write transactions committed */
    uint64_t writes;         /* writes committed */
    uint64_t failed_writes;  /* writes that completed with an error */
    uint64_t last_commit_ns; /* duration of the last batch: begin, writes, commit and sync */
    uint64_t max_wait_ns;    /* the longest a write waited from store_write to its commit */
    char last_error[160];    /* the last store-level problem worth telling a user, or "" */
};

/* Parses "every_commit", "periodic" or "none". CASCA_ERR_INVALID for anything else. */
int store_sync_parse(const char *s, enum store_sync *out);

/* The one translation from an LMDB return code (0, MDB_*, or an errno) to a casca_err:
 * MDB_NOTFOUND -> NOT_FOUND, MDB_KEYEXIST -> EXISTS, MDB_MAP_FULL and MDB_DBS_FULL -> FULL,
 * MDB_BAD_VALSIZE -> INVALID, ENOMEM -> NOMEM, anything else -> IO. Pure, any thread. */
int store_err(int mdb_rc);

/* Opens (creating if needed) the store in o->dir and starts its writer thread. On error returns a
 * casca_err and, if err is not NULL, writes a message naming the dir and what to do into err.
 * The caller owns *out and releases it with store_close. Any thread. */
int store_open(const struct store_options *o, struct store **out, char *err, size_t errlen);

/* Commits every write still queued, syncs, stops the writer thread and closes the environment.
 * Safe on NULL. Call it once, after every other user of s has stopped: no read transaction may
 * still be open and no thread may call into s again. */
void store_close(struct store *s);

/* Opens or creates the named database (mdb_flags as for mdb_dbi_open; MDB_CREATE is added) and
 * sets *out to its handle, which stays valid until store_close. Handles are cached by name; the
 * flags only matter the first time. The open runs in the writer thread, so it never races a write.
 * Any thread except the writer thread (not from inside a store_write_fn); blocks. */
int store_dbi(struct store *s, const char *name, unsigned mdb_flags, MDB_dbi *out);

/* A read-only snapshot usable on any thread (MDB_NOTLS: one thread may hold several, and another
 * thread may end it). Memory that mdb_get or a cursor returns through it belongs to LMDB and is
 * valid only until store_read_end: copy what you keep, unpack protobufs before ending.
 * While any read transaction is open the map cannot grow, so keep them short, and do not wait for
 * a write (store_write_wait, store_dbi, kv_put...) while holding one: that can deadlock with a
 * resize. Every successful store_read_begin needs exactly one store_read_end. */
int store_read_begin(struct store *s, MDB_txn **txn);
void store_read_end(struct store *s, MDB_txn *txn);

/* A write, run by the writer thread inside its own nested transaction of the batch's transaction.
 * Returns 0 or a casca_err; convert LMDB results with store_err. On an error only this write is
 * rolled back. It may run more than once (the batch is retried after the map grows), so it must
 * change nothing but the database through txn and what arg points to. Returning CASCA_ERR_FULL
 * after an LMDB call failed with MDB_MAP_FULL makes the writer grow the map and retry the batch.
 * It must not block for long (it holds up every other write) nor call store_write_wait or
 * store_dbi; store_write is allowed. */
typedef int (*store_write_fn)(MDB_txn *txn, void *arg);

/* Called by the writer thread once the write's batch is committed and synced as the sync mode says
 * (err = 0), or with the write's error. It must not call store_write_wait or store_dbi. */
typedef void (*store_done_fn)(int err, void *arg);

/* Queues a write and returns at once. CASCA_ERR_FULL when queue_limit writes are already queued,
 * CASCA_ERR_UNAVAILABLE once the store is closing; in both cases done is not called. Otherwise
 * done (may be NULL) is called exactly once, from the writer thread. fn, arg and done_arg must stay
 * valid until then. Any thread, including the writer thread. */
int store_write(struct store *s, store_write_fn fn, void *arg, store_done_fn done, void *done_arg);

/* store_write for a write nobody waits for: while only such writes are queued, the writer lets
 * them gather for up to 5 ms before it commits them together (one commit and, in periodic mode,
 * one data sync instead of one each). Any other write, or store_write_wait, commits them at
 * once with it. */
int store_write_lazy(struct store *s, store_write_fn fn, void *arg, store_done_fn done,
                     void *done_arg);

/* Queues a write and blocks until it is done; returns its result (or store_write's error).
 * Durable on return if the sync mode is every_commit. Any thread except the writer thread
 * (CASCA_ERR_INVALID there, since it would wait for itself). */
int store_write_wait(struct store *s, store_write_fn fn, void *arg);

/* The directory and sync mode the store was opened with. Any thread. */
const char *store_dir(const struct store *s);
enum store_sync store_sync_mode(const struct store *s);

/* Flushes every commit so far to the disk now, whatever the sync mode (mdb_env_sync). Blocks for
 * a disk flush. Any thread. */
int store_sync(struct store *s);

/* Fills *st. Any thread. */
int store_stats(struct store *s, struct store_stats *st);

#endif
