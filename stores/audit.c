#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "casca_err.h"
#include "salloc.h"

/* The write-ahead file, used when the store does not sync every commit. An append is written to
 * <dir>/<name>.wal with write(2) and is done at once: in the OS, it survives a crash of cascad,
 * and a crash of the machine may lose what the store had not synced yet, as those sync modes
 * allow. The store's writer commits it in the background, in the same order, gathering such
 * records for up to 5 ms (store_write_lazy). Otherwise every
 * change would wait for a hand-off to the writer and, in periodic mode, for the fdatasync of the
 * batch's data pages. The file is renamed <name>.wal.1 once it passes WAL_ROTATE bytes, and that
 * one is deleted when all of its records are committed; audit_open commits whatever the files
 * hold that the database lacks.
 *
 * A record is its LMDB key and value behind a length and a check:
 *   be32 payload length | be32 check (FNV-1a of the rest) | be64 seq | be64 time_ns | payload */
#define WAL_HEADER 24
#define WAL_ROTATE (1u << 20)

struct audit {
    struct store *s;
    MDB_dbi dbi;
    bool wal;              /* false when the store syncs every commit: no file, as before */
    int fd;                /* <name>.wal, append-only, or -1 */
    char *path, *old_path; /* <dir>/<name>.wal, <dir>/<name>.wal.1 */
    pthread_mutex_t mu;    /* the fields below; held across write and queue, so order is seq */
    pthread_cond_t committed_cv;
    uint64_t last_seq;  /* the last seq given */
    uint64_t committed; /* every seq up to this one has been through the writer */
    uint64_t old_last;  /* the last seq in <name>.wal.1, 0 when there is no such file */
    uint64_t count;     /* records in the log, counting those on their way to the database */
    off_t size;         /* bytes in <name>.wal */
    bool unsaved;       /* a record failed to commit: keep the files for the next audit_open */
};

/* One append, run by the store's writer. */
struct append {
    MDB_dbi dbi;
    int64_t time_ns;
    const void *payload;
    size_t len;
    uint64_t seq; /* out */
    audit_done_fn done; /* audit_append_async: its callback; the payload follows the struct */
    void *arg;
};

static void put_be64(unsigned char *p, uint64_t x)
{
    for (int i = 7; i >= 0; i--, x >>= 8)
        p[i] = (unsigned char)x;
}

static uint64_t get_be64(const unsigned char *p)
{
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x = x << 8 | p[i];
    return x;
}

/* The last record's seq, 0 when the log is empty; an LMDB code on error. */
static int last_seq(MDB_cursor *c, uint64_t *seq)
{
    MDB_val k, v;
    int rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    *seq = 0;
    if (rc == MDB_NOTFOUND) return 0;
    if (rc == 0 && k.mv_size != 8) return MDB_CORRUPTED; /* not an audit log */
    if (rc == 0) *seq = get_be64(k.mv_data);
    return rc;
}

/* The next seq is read from the last key inside the write transaction, so a retried batch or a
 * rolled-back append never leaves a gap. */
static int append_write(MDB_txn *txn, void *arg)
{
    struct append *ap = arg;
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, ap->dbi, &c);
    if (rc != 0) return store_err(rc);
    uint64_t last;
    rc = last_seq(c, &last);
    if (rc == 0) {
        unsigned char key[8];
        put_be64(key, last + 1);
        MDB_val k = {.mv_size = sizeof key, .mv_data = key};
        MDB_val v = {.mv_size = 8 + ap->len, .mv_data = NULL};
        rc = mdb_cursor_put(c, &k, &v, MDB_APPEND | MDB_RESERVE);
        if (rc == 0) {
            put_be64(v.mv_data, (uint64_t)ap->time_ns);
            if (ap->len) memcpy((unsigned char *)v.mv_data + 8, ap->payload, ap->len);
            ap->seq = last + 1;
        }
    }
    mdb_cursor_close(c);
    return store_err(rc);
}

/* ---- the write-ahead file ---- */

static uint32_t wal_check(const unsigned char *rec, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a over the length, seq, time and payload */
    for (size_t i = 0; i < len; i++)
        if (i < 4 || i >= 8) h = (h ^ rec[i]) * 16777619u;
    return h;
}

static void put_be32(unsigned char *p, uint32_t x)
{
    for (int i = 3; i >= 0; i--, x >>= 8)
        p[i] = (unsigned char)x;
}

static uint32_t get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A record on its way to the database: the WAL bytes follow the struct. */
struct wal_rec {
    struct audit *a;
    uint64_t seq;
    size_t len; /* of the whole record */
};

static unsigned char *rec_bytes(struct wal_rec *r)
{
    return (unsigned char *)(r + 1);
}

static int put_rec(MDB_txn *txn, MDB_dbi dbi, const unsigned char *rec, size_t len,
                   unsigned flags)
{
    MDB_val k = {.mv_size = 8, .mv_data = (void *)(rec + 8)};
    MDB_val v = {.mv_size = len - 16, .mv_data = (void *)(rec + 16)};
    return mdb_put(txn, dbi, &k, &v, flags);
}

static int wal_put(MDB_txn *txn, void *arg)
{
    struct wal_rec *r = arg;
    return store_err(put_rec(txn, r->a->dbi, rec_bytes(r), r->len, MDB_APPEND));
}

/* Deletes <name>.wal.1 once everything in it is committed. Called with a->mu held. */
static void drop_old(struct audit *a)
{
    if (a->old_last && a->committed >= a->old_last && !a->unsaved) {
        unlink(a->old_path);
        a->old_last = 0;
    }
}

/* On the store's writer thread, in seq order. */
static void wal_committed(int err, void *arg)
{
    struct wal_rec *r = arg;
    struct audit *a = r->a;
    pthread_mutex_lock(&a->mu);
    if (err) { /* still in the file: the next audit_open commits it */
        a->unsaved = true;
        a->count--;
    }
    a->committed = r->seq;
    drop_old(a);
    pthread_cond_broadcast(&a->committed_cv);
    pthread_mutex_unlock(&a->mu);
    free(r);
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return errno == ENOSPC ? CASCA_ERR_FULL : CASCA_ERR_IO;
        p += w;
        n -= (size_t)w;
    }
    return CASCA_OK;
}

static int open_wal(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
}

/* Starts a new <name>.wal when the current one is big and the previous one is gone. Called with
 * a->mu held; on any failure the current file simply goes on growing. */
static void maybe_rotate(struct audit *a)
{
    if (a->size < WAL_ROTATE || a->old_last) return;
    if (rename(a->path, a->old_path) != 0) return;
    int fd = open_wal(a->path);
    if (fd < 0) {
        rename(a->old_path, a->path);
        return;
    }
    close(a->fd);
    a->fd = fd;
    a->size = 0;
    a->old_last = a->last_seq;
}

static int wal_append(struct audit *a, int64_t time_ns, const void *payload, size_t len,
                      uint64_t *seq_out)
{
    if (len > UINT32_MAX) return CASCA_ERR_INVALID;
    size_t n = WAL_HEADER + len;
    struct wal_rec *r = malloc(sizeof(*r) + n);
    if (!r) return CASCA_ERR_NOMEM;
    unsigned char *rec = rec_bytes(r);
    put_be32(rec, (uint32_t)len);
    put_be64(rec + 16, (uint64_t)time_ns);
    if (len) memcpy(rec + WAL_HEADER, payload, len);
    pthread_mutex_lock(&a->mu);
    *r = (struct wal_rec){.a = a, .seq = a->last_seq + 1, .len = n};
    put_be64(rec + 8, r->seq);
    put_be32(rec + 4, wal_check(rec, n));
    int e = write_all(a->fd, rec, n);
    if (e == CASCA_OK) e = store_write_lazy(a->s, wal_put, r, wal_committed, r);
    if (e == CASCA_OK) {
        a->last_seq = r->seq;
        a->count++;
        a->size += (off_t)n;
        *seq_out = r->seq;
        maybe_rotate(a);
    } else if (ftruncate(a->fd, a->size) != 0) {
        /* The record stays in the file and the next audit_open adds it: an entry the caller was
         * told failed would appear. Writing anything more here would be worse. */
    }
    pthread_mutex_unlock(&a->mu);
    if (e != CASCA_OK) free(r);
    return e;
}

static int nothing(MDB_txn *txn, void *arg)
{
    (void)txn;
    (void)arg;
    return CASCA_OK;
}

/* Waits until every record given so far is in the database, so a read sees what was answered. */
static void wait_committed(struct audit *a)
{
    if (!a->wal) return;
    pthread_mutex_lock(&a->mu);
    uint64_t target = a->last_seq;
    bool behind = a->committed < target;
    pthread_mutex_unlock(&a->mu);
    if (behind) store_write_wait(a->s, nothing, NULL); /* commits the lazy records now */
    pthread_mutex_lock(&a->mu);
    while (a->committed < target)
        pthread_cond_wait(&a->committed_cv, &a->mu);
    pthread_mutex_unlock(&a->mu);
}

/* ---- replay: what the files hold that the database lacks ---- */

struct replay {
    MDB_dbi dbi;
    const unsigned char *buf[2];
    size_t len[2];
};

/* Puts each whole, intact record; stops a file at the first one that is not (a torn end). */
static int replay_write(MDB_txn *txn, void *arg)
{
    struct replay *rp = arg;
    for (int f = 0; f < 2; f++) {
        const unsigned char *p = rp->buf[f], *end = p + rp->len[f];
        while (end - p >= WAL_HEADER) {
            size_t n = WAL_HEADER + (size_t)get_be32(p);
            if (n > (size_t)(end - p) || wal_check(p, n) != get_be32(p + 4)) break;
            int rc = put_rec(txn, rp->dbi, p, n, MDB_NOOVERWRITE);
            if (rc != 0 && rc != MDB_KEYEXIST) return store_err(rc);
            p += n;
        }
    }
    return CASCA_OK;
}

/* The whole file, or NULL with *len 0 when it does not exist. */
static int read_file(const char *path, unsigned char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? CASCA_OK : CASCA_ERR_IO;
    struct stat st;
    int e = fstat(fd, &st) == 0 ? CASCA_OK : CASCA_ERR_IO;
    size_t size = e == CASCA_OK ? (size_t)st.st_size : 0;
    unsigned char *buf = e == CASCA_OK ? malloc(size ? size : 1) : NULL;
    if (e == CASCA_OK && !buf) e = CASCA_ERR_NOMEM;
    size_t got = 0;
    while (e == CASCA_OK && got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break; /* shorter than it said: read what is there */
        got += (size_t)r;
    }
    close(fd);
    if (e != CASCA_OK) {
        free(buf);
        return e;
    }
    *out = buf;
    *len = got;
    return CASCA_OK;
}

/* Commits what the files hold, flushes the store and deletes them; sets the next seq. */
static int replay(struct audit *a)
{
    struct replay rp = {.dbi = a->dbi};
    unsigned char *bufs[2];
    int e = read_file(a->old_path, &bufs[0], &rp.len[0]);
    if (e == CASCA_OK && (e = read_file(a->path, &bufs[1], &rp.len[1])) != CASCA_OK) free(bufs[0]);
    if (e != CASCA_OK) return e;
    rp.buf[0] = bufs[0];
    rp.buf[1] = bufs[1];
    if (rp.len[0] || rp.len[1]) {
        e = store_write_wait(a->s, replay_write, &rp);
        if (e == CASCA_OK) e = store_sync(a->s); /* before the files go */
    }
    free(bufs[0]);
    free(bufs[1]);
    if (e != CASCA_OK) return e;
    if ((unlink(a->old_path) != 0 && errno != ENOENT) || (unlink(a->path) != 0 && errno != ENOENT))
        return CASCA_ERR_IO;

    MDB_txn *txn;
    if ((e = store_read_begin(a->s, &txn)) != CASCA_OK) return e;
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, a->dbi, &c);
    if (rc == 0) {
        rc = last_seq(c, &a->last_seq);
        mdb_cursor_close(c);
    }
    MDB_stat st;
    if (rc == 0 && (rc = mdb_stat(txn, a->dbi, &st)) == 0) a->count = st.ms_entries;
    store_read_end(a->s, txn);
    a->committed = a->last_seq;
    return store_err(rc);
}

/* ---- the log ---- */

static char *path_in(const char *dir, const char *name, const char *suffix)
{
    size_t n = strlen(dir) + strlen(name) + strlen(suffix) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s%s", dir, name, suffix);
    return p;
}

void audit_close(struct audit *a)
{
    if (!a) return;
    if (a->wal) {
        wait_committed(a);
        close(a->fd);
        if (!a->unsaved) { /* all in the database: nothing to replay */
            unlink(a->old_path);
            unlink(a->path);
        }
    }
    pthread_cond_destroy(&a->committed_cv);
    pthread_mutex_destroy(&a->mu);
    free(a->path);
    free(a->old_path);
    free(a);
}

int audit_open(struct store *s, const char *name, struct audit **out)
{
    if (!s || !name || !out) return CASCA_ERR_INVALID;
    *out = NULL;
    struct audit *a = calloc(1, sizeof *a);
    if (!a) return CASCA_ERR_NOMEM;
    a->s = s;
    a->fd = -1;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->committed_cv, NULL);
    a->path = path_in(store_dir(s), name, ".wal");
    a->old_path = path_in(store_dir(s), name, ".wal.1");
    int e = a->path && a->old_path ? store_dbi(s, name, 0, &a->dbi) : CASCA_ERR_NOMEM;
    if (e == CASCA_OK) e = replay(a); /* whatever the mode now: it may have been another */
    if (e == CASCA_OK && store_sync_mode(s) != STORE_SYNC_EVERY_COMMIT) {
        a->fd = open_wal(a->path);
        a->wal = a->fd >= 0;
        e = a->wal ? CASCA_OK : CASCA_ERR_IO;
    }
    if (e != CASCA_OK) {
        audit_close(a);
        return e;
    }
    *out = a;
    return CASCA_OK;
}

int audit_append(struct audit *a, int64_t time_ns, const void *payload, size_t len,
                 uint64_t *seq_out)
{
    if (!a || (!payload && len)) return CASCA_ERR_INVALID;
    uint64_t seq;
    if (a->wal) {
        int e = wal_append(a, time_ns, payload, len, &seq);
        if (e == CASCA_OK && seq_out) *seq_out = seq;
        return e;
    }
    struct append ap = {.dbi = a->dbi, .time_ns = time_ns, .payload = payload, .len = len};
    int e = store_write_wait(a->s, append_write, &ap);
    if (e == CASCA_OK && seq_out) *seq_out = ap.seq;
    return e;
}

static void append_done(int err, void *arg)
{
    struct append *ap = arg;
    ap->done(err, err ? 0 : ap->seq, ap->arg);
    free(ap);
}

int audit_append_async(struct audit *a, int64_t time_ns, const void *payload, size_t len,
                       audit_done_fn done, void *arg)
{
    if (!a || (!payload && len) || !done) return CASCA_ERR_INVALID;
    if (a->wal) {
        uint64_t seq;
        int e = wal_append(a, time_ns, payload, len, &seq);
        if (e == CASCA_OK) done(CASCA_OK, seq, arg);
        return e;
    }
    struct append *ap = malloc(sizeof(*ap) + len);
    if (!ap) return CASCA_ERR_NOMEM;
    *ap = (struct append){.dbi = a->dbi, .time_ns = time_ns, .payload = ap + 1, .len = len,
                          .done = done, .arg = arg};
    if (len) memcpy(ap + 1, payload, len);
    int e = store_write(a->s, append_write, ap, append_done, ap);
    if (e != CASCA_OK) free(ap);
    return e;
}

int audit_scan(struct audit *a, int64_t start_ns, int64_t end_ns, uint64_t after_seq, size_t limit,
               int (*fn)(uint64_t seq, int64_t time_ns, const void *payload, size_t len, void *arg),
               void *arg)
{
    if (!a || !fn) return CASCA_ERR_INVALID;
    if (after_seq == UINT64_MAX) return CASCA_OK;
    wait_committed(a);
    MDB_txn *txn;
    int e = store_read_begin(a->s, &txn);
    if (e != CASCA_OK) return e;
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, a->dbi, &c);
    if (rc != 0) {
        store_read_end(a->s, txn);
        return store_err(rc);
    }
    unsigned char first[8];
    put_be64(first, after_seq + 1);
    MDB_val k = {.mv_size = sizeof first, .mv_data = first}, v;
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    int ret = 0;
    size_t n = 0;
    while (rc == 0) {
        if (k.mv_size != 8 || v.mv_size < 8) {
            rc = MDB_CORRUPTED;
            break;
        }
        int64_t t = (int64_t)get_be64(v.mv_data);
        if (t >= start_ns && t < end_ns) {
            ret = fn(get_be64(k.mv_data), t, (unsigned char *)v.mv_data + 8, v.mv_size - 8, arg);
            if (ret != 0 || (limit && ++n == limit)) break;
        }
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    if (ret == 0 && rc != 0 && rc != MDB_NOTFOUND) ret = store_err(rc);
    mdb_cursor_close(c);
    store_read_end(a->s, txn);
    return ret;
}

uint64_t audit_count(struct audit *a)
{
    if (!a) return 0;
    if (a->wal) { /* no wait: GetStatus asks on a gRPC thread */
        pthread_mutex_lock(&a->mu);
        uint64_t n = a->count;
        pthread_mutex_unlock(&a->mu);
        return n;
    }
    MDB_txn *txn;
    if (store_read_begin(a->s, &txn) != CASCA_OK) return 0;
    MDB_stat st;
    int rc = mdb_stat(txn, a->dbi, &st);
    store_read_end(a->s, txn);
    return rc == 0 ? st.ms_entries : 0;
}
