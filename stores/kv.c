#include "kv.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "casca_err.h"
#include "salloc.h"

struct kv {
    struct store *s;
    MDB_dbi dbi;
};

/* One put or delete, run by the store's writer. */
struct kv_op {
    MDB_dbi dbi;
    bool del;
    MDB_val key, val;
};

/* A put queued by kv_put_async: the op, the caller's callback, and the copied bytes. */
struct kv_async {
    struct kv_op op;
    store_done_fn done;
    void *done_arg;
    unsigned char bytes[];
};

static int kv_write(MDB_txn *txn, void *arg)
{
    struct kv_op *op = arg;
    if (op->del) return store_err(mdb_del(txn, op->dbi, &op->key, NULL));
    return store_err(mdb_put(txn, op->dbi, &op->key, &op->val, 0));
}

static bool bad_args(const struct kv *kv, const void *key, size_t klen)
{
    return !kv || !key || klen == 0;
}

int kv_open(struct store *s, const char *name, struct kv **out)
{
    if (!s || !name || !out) return CASCA_ERR_INVALID;
    *out = NULL;
    struct kv *kv = calloc(1, sizeof *kv);
    if (!kv) return CASCA_ERR_NOMEM;
    int e = store_dbi(s, name, 0, &kv->dbi);
    if (e != CASCA_OK) {
        free(kv);
        return e;
    }
    kv->s = s;
    *out = kv;
    return CASCA_OK;
}

void kv_close(struct kv *kv)
{
    free(kv);
}

int kv_put(struct kv *kv, const void *key, size_t klen, const void *val, size_t vlen)
{
    if (bad_args(kv, key, klen) || (!val && vlen)) return CASCA_ERR_INVALID;
    struct kv_op op = {
        .dbi = kv->dbi,
        .key = {.mv_size = klen, .mv_data = (void *)key},
        .val = {.mv_size = vlen, .mv_data = (void *)val},
    };
    return store_write_wait(kv->s, kv_write, &op);
}

static void kv_async_done(int err, void *arg)
{
    struct kv_async *a = arg;
    if (a->done) a->done(err, a->done_arg);
    free(a);
}

int kv_put_async(struct kv *kv, const void *key, size_t klen, const void *val, size_t vlen,
                 store_done_fn done, void *done_arg)
{
    if (bad_args(kv, key, klen) || (!val && vlen)) return CASCA_ERR_INVALID;
    struct kv_async *a = malloc(sizeof *a + klen + vlen);
    if (!a) return CASCA_ERR_NOMEM;
    memcpy(a->bytes, key, klen);
    if (vlen) memcpy(a->bytes + klen, val, vlen);
    a->op = (struct kv_op){
        .dbi = kv->dbi,
        .key = {.mv_size = klen, .mv_data = a->bytes},
        .val = {.mv_size = vlen, .mv_data = a->bytes + klen},
    };
    a->done = done;
    a->done_arg = done_arg;
    int e = store_write(kv->s, kv_write, &a->op, kv_async_done, a);
    if (e != CASCA_OK) free(a);
    return e;
}

int kv_del(struct kv *kv, const void *key, size_t klen)
{
    if (bad_args(kv, key, klen)) return CASCA_ERR_INVALID;
    struct kv_op op = {
        .dbi = kv->dbi,
        .del = true,
        .key = {.mv_size = klen, .mv_data = (void *)key},
    };
    return store_write_wait(kv->s, kv_write, &op);
}

int kv_get(struct kv *kv, const void *key, size_t klen, void **val, size_t *vlen)
{
    if (bad_args(kv, key, klen) || !val || !vlen) return CASCA_ERR_INVALID;
    MDB_txn *txn;
    int e = store_read_begin(kv->s, &txn);
    if (e != CASCA_OK) return e;
    MDB_val k = {.mv_size = klen, .mv_data = (void *)key}, v;
    e = store_err(mdb_get(txn, kv->dbi, &k, &v));
    if (e == CASCA_OK) {
        void *copy = malloc(v.mv_size ? v.mv_size : 1);
        if (copy) {
            memcpy(copy, v.mv_data, v.mv_size);
            *val = copy;
            *vlen = v.mv_size;
        } else {
            e = CASCA_ERR_NOMEM;
        }
    }
    store_read_end(kv->s, txn);
    return e;
}

int kv_foreach_prefix(struct kv *kv, const void *prefix, size_t plen,
                      int (*fn)(const void *k, size_t kl, const void *v, size_t vl, void *arg),
                      void *arg)
{
    if (!kv || !fn || (!prefix && plen)) return CASCA_ERR_INVALID;
    MDB_txn *txn;
    int e = store_read_begin(kv->s, &txn);
    if (e != CASCA_OK) return e;
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, kv->dbi, &c);
    if (rc != 0) {
        store_read_end(kv->s, txn);
        return store_err(rc);
    }
    MDB_val k = {.mv_size = plen, .mv_data = (void *)prefix}, v;
    rc = mdb_cursor_get(c, &k, &v, plen ? MDB_SET_RANGE : MDB_FIRST);
    int ret = 0;
    while (rc == 0) {
        if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)
            break; /* past the keys with this prefix */
        if ((ret = fn(k.mv_data, k.mv_size, v.mv_data, v.mv_size, arg)) != 0) break;
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    if (ret == 0 && rc != 0 && rc != MDB_NOTFOUND) ret = store_err(rc);
    mdb_cursor_close(c);
    store_read_end(kv->s, txn);
    return ret;
}
