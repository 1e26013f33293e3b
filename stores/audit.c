#include "audit.h"

#include <stdlib.h>
#include <string.h>

#include "casca_err.h"
#include "salloc.h"

struct audit {
    struct store *s;
    MDB_dbi dbi;
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

int audit_open(struct store *s, const char *name, struct audit **out)
{
    if (!s || !name || !out) return CASCA_ERR_INVALID;
    *out = NULL;
    struct audit *a = calloc(1, sizeof *a);
    if (!a) return CASCA_ERR_NOMEM;
    int e = store_dbi(s, name, 0, &a->dbi);
    if (e != CASCA_OK) {
        free(a);
        return e;
    }
    a->s = s;
    *out = a;
    return CASCA_OK;
}

void audit_close(struct audit *a)
{
    free(a);
}

int audit_append(struct audit *a, int64_t time_ns, const void *payload, size_t len,
                 uint64_t *seq_out)
{
    if (!a || (!payload && len)) return CASCA_ERR_INVALID;
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
    MDB_txn *txn;
    if (!a || store_read_begin(a->s, &txn) != CASCA_OK) return 0;
    MDB_stat st;
    int rc = mdb_stat(txn, a->dbi, &st);
    store_read_end(a->s, txn);
    return rc == 0 ? st.ms_entries : 0;
}
