/* audit: an append-only log in one named database of a store. Each record has a sequence number
 * (1, 2, 3... in commit order), a time and an opaque payload (a packed protobuf, by convention). */
#ifndef CASCA_AUDIT_H
#define CASCA_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* On disk: key = seq as 8 bytes big-endian (so keys sort in sequence order), value = time_ns as
 * 8 bytes big-endian (two's complement) followed by the payload bytes.
 *
 * When the store does not sync every commit (periodic, none), an append is first written to the
 * file <store dir>/<name>.wal and is done once the OS has it: a crash of the process loses
 * nothing appended, and the append costs no wait for the store's writer nor a disk flush. The
 * writer commits it in the background (within 5 ms: see store_write_lazy). audit_scan first has
 * the appends made before it committed, and audit_count counts them, so both see every append
 * that returned. */
struct audit;

/* Opens (creating if needed) the log `name` of s, first committing what <name>.wal files left by
 * a crash hold that the log lacks. One handle per log. The caller owns *out and frees it with
 * audit_close, before store_close. Any thread except the store's writer thread; blocks. */
int audit_open(struct store *s, const char *name, struct audit **out);

/* Waits for the appends still being committed and frees the handle; the records stay in the
 * store. Safe on NULL. */
void audit_close(struct audit *a);

/* Appends a record and sets *seq_out (may be NULL) to its sequence number: one more than the last
 * record's, given in the order records are committed, continuing after a reopen. time_ns is nanoseconds since the Unix epoch, as the caller
 * says (records are not required to be in time order). The payload is copied. Durable on return
 * when the store syncs every commit (it waits for the commit); with periodic or no sync it is in
 * the OS on return, and a crash of the machine (not of the process) may lose it. Any thread
 * except the store's writer thread; appends from many threads are safe. */
int audit_append(struct audit *a, int64_t time_ns, const void *payload, size_t len,
                 uint64_t *seq_out);

/* audit_append without waiting: done(err, seq, arg) runs once the record is as safe as
 * audit_append's return makes it: when the store syncs every commit, on the store's writer thread
 * after the commit (appends in flight together share one commit and one sync), where it must not
 * block or wait for a store write; otherwise at once, on the calling thread, before this returns.
 * Returns CASCA_OK (done ran or will run) or a casca_err (it will not). Any thread. */
typedef void (*audit_done_fn)(int err, uint64_t seq, void *arg);
int audit_append_async(struct audit *a, int64_t time_ns, const void *payload, size_t len,
                       audit_done_fn done, void *arg);

/* Calls fn, in sequence order, for the records with seq > after_seq and
 * start_ns <= time_ns < end_ns (INT64_MIN, INT64_MAX: any time), at most limit of them (0: no
 * limit). The time filter reads every record after after_seq: page with after_seq. payload is
 * LMDB's memory, valid only during that call of fn. Stops when fn returns non-zero and returns
 * that value; otherwise returns 0 or a casca_err. fn must not call audit_append (it could deadlock
 * with a map resize). When appends are on their way it waits for their commit (and, in periodic
 * mode, a data sync): not on a thread that must never wait for the disk. Any other thread. */
int audit_scan(struct audit *a, int64_t start_ns, int64_t end_ns, uint64_t after_seq, size_t limit,
               int (*fn)(uint64_t seq, int64_t time_ns, const void *payload, size_t len, void *arg),
               void *arg);

/* The number of records, or 0 if it cannot be read. Never waits for a write. Any thread. */
uint64_t audit_count(struct audit *a);

#endif
