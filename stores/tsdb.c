#include "tsdb.h"

#include <endian.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "casca_err.h"
#include "clock.h"
#include "salloc.h"

#define RAW_VAL 16          /* time (8 bytes BE) + value (double, native) */
#define ROLL_KEY 12         /* id (4 bytes BE) + bucket start (8 bytes BE) */
#define PURGE_BUDGET 200000 /* deletions per purge transaction */
#define MAX_STEPS 1000000   /* steps of one query */

/* One rollup bucket, stored as is (native byte order: the data dir stays on its machine). */
struct rollup {
    uint64_t count;
    double sum, min, max;
    int64_t first_t;
    double first_v;
    int64_t last_t;
    double last_v;
    double incr; /* increase between consecutive points, with counter resets */
};

/* The value of a tsdb.meta record; the identity follows it. */
struct meta {
    uint64_t points;
    int64_t first, last;
};

/* ---- the queue: one struct call per tsdb_write ---- */

struct ident {
    const char *key; /* in the call's arena */
    size_t len;
    uint64_t hash;
    uint32_t u; /* index of the series in the flush that takes the call */
};

struct qpoint {
    uint32_t ident; /* index in call->idents */
    int64_t t;
    double v;
};

struct call {
    struct call *next;
    store_done_fn done;
    void *arg;
    size_t n, nident;
    struct qpoint *pts;
    struct ident *idents;
    char *arena;
};

struct tsdb {
    struct store *s;
    MDB_dbi series, meta, raw, m1, h1;
    int64_t (*clock)(void *);
    void *clock_arg;

    _Atomic int64_t raw_ret, min_ret, hour_ret, purge_interval;
    _Atomic uint64_t series_gen; /* bumped after a commit that created or deleted series */

    pthread_mutex_t mu; /* guards the fields below */
    pthread_cond_t idle;
    struct call *head, *tail;
    size_t queued, queue_limit, batch_points;
    bool flush_scheduled, closing, purge_running;
    unsigned inflight; /* flushes and purges queued in the store and not done */
    int64_t next_purge;
    struct tsdb_stats st;
};

static int64_t realtime_ns(void *arg)
{
    (void)arg;
    return casca_wall_ns();
}

/* ---- encoding ---- */

static void put32(unsigned char *p, uint32_t v)
{
    v = htobe32(v);
    memcpy(p, &v, 4);
}

static uint32_t get32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return be32toh(v);
}

static void put64(unsigned char *p, int64_t v)
{
    uint64_t u = htobe64((uint64_t)v);
    memcpy(p, &u, 8);
}

static int64_t get64(const void *p)
{
    uint64_t u;
    memcpy(&u, p, 8);
    return (int64_t)be64toh(u);
}

static double getd(const void *p)
{
    double d;
    memcpy(&d, p, 8);
    return d;
}

static int64_t floor_to(int64_t t, int64_t w)
{
    int64_t r = t % w;
    return r < 0 ? t - r - w : t - r;
}

static int64_t ceil_to(int64_t t, int64_t w)
{
    int64_t f = floor_to(t, w);
    return f == t ? t : f + w;
}

/* ---- rollups: merging in time order ---- */

static double increase(double before, double after)
{
    return after >= before ? after - before : after; /* a decrease is a counter reset */
}

static void rollup_add(struct rollup *r, int64_t t, double v)
{
    if (r->count == 0) {
        *r = (struct rollup){1, v, v, v, t, v, t, v, 0};
        return;
    }
    r->incr += increase(r->last_v, v);
    r->count++;
    r->sum += v;
    if (v < r->min) r->min = v;
    if (v > r->max) r->max = v;
    r->last_t = t;
    r->last_v = v;
}

/* Appends src, whose points all come after dst's. */
static void rollup_merge(struct rollup *dst, const struct rollup *src)
{
    if (src->count == 0) return;
    if (dst->count == 0) {
        *dst = *src;
        return;
    }
    dst->incr += increase(dst->last_v, src->first_v) + src->incr;
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min) dst->min = src->min;
    if (src->max > dst->max) dst->max = src->max;
    dst->last_t = src->last_t;
    dst->last_v = src->last_v;
}

static void roll_key(unsigned char k[ROLL_KEY], uint32_t id, int64_t start)
{
    put32(k, id);
    put64(k + 4, start);
}

/* ---- identities ---- */

static int tag_cmp(const void *a, const void *b)
{
    return strcmp((*(const struct tsdb_tag *const *)a)->key,
                  (*(const struct tsdb_tag *const *)b)->key);
}

/* Sorts p's tags into sorted[] (p->ntags entries) and returns the identity's size (name NUL
 * key NUL value NUL ...), or 0 with why filled when a tag is wrong. */
static size_t identity_size(const struct tsdb_point *p, const struct tsdb_tag **sorted, char *why,
                            size_t whylen)
{
    size_t size = strlen(p->series) + 1;
    for (size_t i = 0; i < p->ntags; i++) {
        const struct tsdb_tag *t = &p->tags[i];
        if (!t->key || !*t->key || !t->value) {
            snprintf(why, whylen, "tag %zu has an empty key or no value: give every tag a key", i);
            return 0;
        }
        sorted[i] = t;
        size += strlen(t->key) + strlen(t->value) + 2;
    }
    if (p->ntags > 1) qsort(sorted, p->ntags, sizeof(*sorted), tag_cmp);
    for (size_t i = 1; i < p->ntags; i++) {
        if (strcmp(sorted[i - 1]->key, sorted[i]->key) == 0) {
            snprintf(why, whylen, "a tag key is given twice: give each key once");
            return 0;
        }
    }
    return size;
}

static size_t identity_write(char *out, const struct tsdb_point *p,
                             const struct tsdb_tag *const *sorted)
{
    size_t n = strlen(p->series) + 1;
    memcpy(out, p->series, n);
    for (size_t i = 0; i < p->ntags; i++) {
        size_t kl = strlen(sorted[i]->key) + 1, vl = strlen(sorted[i]->value) + 1;
        memcpy(out + n, sorted[i]->key, kl);
        memcpy(out + n + kl, sorted[i]->value, vl);
        n += kl + vl;
    }
    return n;
}

/* Splits an identity into name and tags (pointers into id, which must end with a NUL). tags has
 * room for TSDB_MAX_IDENTITY / 4 entries. Returns the number of tags. */
static size_t identity_parse(const char *id, size_t len, const char **name, struct tsdb_tag *tags)
{
    const char *p = id, *end = id + len;
    *name = p;
    p += strlen(p) + 1;
    size_t n = 0;
    while (p < end) {
        tags[n].key = p;
        p += strlen(p) + 1;
        if (p >= end) break;
        tags[n].value = p;
        p += strlen(p) + 1;
        n++;
    }
    return n;
}

static uint64_t fnv1a(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* ---- options ---- */

static int fill_options(const struct tsdb_options *in, struct tsdb_options *o)
{
    *o = in ? *in : (struct tsdb_options){0};
    if (!o->raw_retention_ns) o->raw_retention_ns = 7 * TSDB_DAY_NS;
    if (!o->minute_retention_ns)
        o->minute_retention_ns =
            o->raw_retention_ns > 90 * TSDB_DAY_NS ? o->raw_retention_ns : 90 * TSDB_DAY_NS;
    if (!o->purge_interval_ns) o->purge_interval_ns = TSDB_MINUTE_NS;
    if (!o->queue_points) o->queue_points = 1000000;
    if (!o->batch_points) o->batch_points = 65536;
    if (o->raw_retention_ns < TSDB_MINUTE_NS || o->minute_retention_ns < o->raw_retention_ns ||
        o->hour_retention_ns < 0 ||
        (o->hour_retention_ns && o->hour_retention_ns < o->minute_retention_ns) ||
        o->purge_interval_ns < 0)
        return CASCA_ERR_INVALID;
    return CASCA_OK;
}

static int64_t raw_horizon(struct tsdb *db, int64_t now)
{
    return floor_to(now - atomic_load(&db->raw_ret), TSDB_MINUTE_NS);
}

static int64_t minute_horizon(struct tsdb *db, int64_t now)
{
    return floor_to(now - atomic_load(&db->min_ret), TSDB_HOUR_NS);
}

static int64_t hour_horizon(struct tsdb *db, int64_t now)
{
    int64_t r = atomic_load(&db->hour_ret);
    return r ? floor_to(now - r, TSDB_HOUR_NS) : INT64_MIN;
}

int tsdb_configure(struct tsdb *db, const struct tsdb_options *in)
{
    struct tsdb_options o;
    if (fill_options(in, &o)) return CASCA_ERR_INVALID;
    atomic_store(&db->raw_ret, o.raw_retention_ns);
    atomic_store(&db->min_ret, o.minute_retention_ns);
    atomic_store(&db->hour_ret, o.hour_retention_ns);
    atomic_store(&db->purge_interval, o.purge_interval_ns);
    pthread_mutex_lock(&db->mu);
    db->queue_limit = o.queue_points;
    db->batch_points = o.batch_points;
    pthread_mutex_unlock(&db->mu);
    return CASCA_OK;
}

int tsdb_open(struct store *s, const struct tsdb_options *in, struct tsdb **out)
{
    struct tsdb_options o;
    *out = NULL;
    if (fill_options(in, &o)) return CASCA_ERR_INVALID;
    struct tsdb *db = calloc(1, sizeof(*db));
    if (!db) return CASCA_ERR_NOMEM;
    db->s = s;
    db->clock = o.clock ? o.clock : realtime_ns;
    db->clock_arg = o.clock_arg;
    pthread_mutex_init(&db->mu, NULL);
    pthread_cond_init(&db->idle, NULL);
    int rc;
    if ((rc = store_dbi(s, "tsdb.series", 0, &db->series)) ||
        (rc = store_dbi(s, "tsdb.meta", 0, &db->meta)) ||
        (rc = store_dbi(s, "tsdb.raw", MDB_DUPSORT | MDB_DUPFIXED, &db->raw)) ||
        (rc = store_dbi(s, "tsdb.m1", 0, &db->m1)) || (rc = store_dbi(s, "tsdb.h1", 0, &db->h1))) {
        pthread_cond_destroy(&db->idle);
        pthread_mutex_destroy(&db->mu);
        free(db);
        return rc;
    }
    tsdb_configure(db, &o);
    db->next_purge = db->clock(db->clock_arg); /* purge soon after start, then every interval */
    MDB_txn *txn;
    if (store_read_begin(s, &txn) == 0) {
        MDB_stat ms;
        if (mdb_stat(txn, db->series, &ms) == 0) db->st.series = ms.ms_entries;
        store_read_end(s, txn);
    }
    *out = db;
    return CASCA_OK;
}

/* ---- validation and tsdb_write ---- */

int tsdb_check_point(struct tsdb *db, const struct tsdb_point *p, int64_t now, char *why,
                     size_t whylen)
{
    char scratch[8];
    if (!why) {
        why = scratch;
        whylen = sizeof scratch;
    }
    if (p->ntags > TSDB_MAX_IDENTITY / 4) {
        snprintf(why, whylen, "%zu tags are too many: use at most %d", p->ntags,
                 TSDB_MAX_IDENTITY / 4);
        return CASCA_ERR_INVALID;
    }
    const struct tsdb_tag *sorted[p->ntags ? p->ntags : 1];
    if (!p->series || !*p->series) {
        snprintf(why, whylen, "the series name is empty: name every point's series");
        return CASCA_ERR_INVALID;
    }
    if (!isfinite(p->value)) {
        snprintf(why, whylen, "the value is %s: send finite numbers only",
                 isnan(p->value) ? "NaN" : "infinite");
        return CASCA_ERR_INVALID;
    }
    if (p->ntags && !p->tags) {
        snprintf(why, whylen, "tags are missing");
        return CASCA_ERR_INVALID;
    }
    size_t size = identity_size(p, sorted, why, whylen);
    if (!size) return CASCA_ERR_INVALID;
    if (size > TSDB_MAX_IDENTITY) {
        snprintf(why, whylen,
                 "the series name and tags take %zu bytes, over the limit of %d: use shorter "
                 "names or fewer tags",
                 size, TSDB_MAX_IDENTITY);
        return CASCA_ERR_INVALID;
    }
    int64_t horizon = raw_horizon(db, now);
    if (p->time_ns < horizon || p->time_ns < 0) {
        snprintf(why, whylen,
                 "the time is older than the raw retention of %lld s: send recent points or "
                 "raise raw_retention",
                 (long long)(atomic_load(&db->raw_ret) / 1000000000));
        return CASCA_ERR_INVALID;
    }
    if (p->time_ns > now + TSDB_MAX_FUTURE_NS) {
        snprintf(why, whylen,
                 "the time is more than 24 h ahead of the server's clock: check the sender's "
                 "clock and the time's unit");
        return CASCA_ERR_INVALID;
    }
    return CASCA_OK;
}

static int flush_schedule(struct tsdb *db); /* with db->mu held */

int tsdb_write(struct tsdb *db, const struct tsdb_point *pts, size_t n, store_done_fn done,
               void *arg)
{
    int64_t now = db->clock(db->clock_arg);
    size_t arena = 0;
    if (n && !pts) return CASCA_ERR_INVALID;
    for (size_t i = 0; i < n; i++) {
        if (tsdb_check_point(db, &pts[i], now, NULL, 0) != CASCA_OK) {
            pthread_mutex_lock(&db->mu);
            db->st.refused_invalid++;
            pthread_mutex_unlock(&db->mu);
            return CASCA_ERR_INVALID;
        }
        const struct tsdb_tag *sorted[pts[i].ntags ? pts[i].ntags : 1];
        arena += identity_size(&pts[i], sorted, (char[8]){0}, 8);
    }
    /* one block: the call, its points, its identities, the identity bytes */
    size_t size =
        sizeof(struct call) + n * sizeof(struct qpoint) + n * sizeof(struct ident) + arena;
    struct call *c = malloc(size);
    if (!c) return CASCA_ERR_NOMEM;
    *c = (struct call){.done = done, .arg = arg, .n = n};
    c->pts = (struct qpoint *)(c + 1);
    c->idents = (struct ident *)(c->pts + n);
    c->arena = (char *)(c->idents + n);
    char *w = c->arena;
    for (size_t i = 0; i < n; i++) {
        const struct tsdb_point *p = &pts[i];
        const struct tsdb_tag *sorted[p->ntags ? p->ntags : 1];
        identity_size(p, sorted, (char[8]){0}, 8);
        size_t len = identity_write(w, p, sorted);
        struct ident *prev = c->nident ? &c->idents[c->nident - 1] : NULL;
        if (!prev || prev->len != len || memcmp(prev->key, w, len) != 0) {
            c->idents[c->nident++] = (struct ident){w, len, fnv1a(w, len), 0};
            w += len;
        }
        c->pts[i] = (struct qpoint){(uint32_t)(c->nident - 1), p->time_ns, p->value};
    }

    pthread_mutex_lock(&db->mu);
    int rc = CASCA_OK;
    if (db->closing) {
        rc = CASCA_ERR_UNAVAILABLE;
    } else if (db->queued + n > db->queue_limit) {
        db->st.refused_full += n;
        rc = CASCA_ERR_FULL;
    } else {
        if (db->tail)
            db->tail->next = c;
        else
            db->head = c;
        db->tail = c;
        db->queued += n;
        if (!db->flush_scheduled) {
            rc = flush_schedule(db);
            if (rc) { /* no memory, or the store refused the write: take ours back */
                struct call **pp = &db->head;
                while (*pp != c)
                    pp = &(*pp)->next;
                *pp = NULL;
                db->tail = NULL;
                for (struct call *x = db->head; x; x = x->next)
                    db->tail = x;
                db->queued -= n;
            }
        }
    }
    pthread_mutex_unlock(&db->mu);
    if (rc) free(c);
    return rc;
}

/* ---- the flush: one write transaction for many calls ---- */

struct wseries {
    const char *key;
    size_t len;
    uint64_t hash;
    uint32_t id;
};

struct wpoint {
    uint32_t u; /* index in flush->series */
    int64_t t;
    double v;
    uint64_t seq;
};

struct flush {
    struct tsdb *db;
    bool taken;
    struct call *calls;
    size_t npoints;
    int64_t now;
    /* results of the last run of flush_fn */
    uint64_t written, replaced, expired;
    bool created;
};

static int flush_fn(MDB_txn *txn, void *arg);
static void flush_done(int err, void *arg);

/* With db->mu held: queues a flush in the store for the calls waiting. 0, or why not (nothing
 * scheduled: CASCA_ERR_NOMEM, or store_write's error). */
static int flush_schedule(struct tsdb *db)
{
    struct flush *f = calloc(1, sizeof(*f));
    if (!f) return CASCA_ERR_NOMEM;
    f->db = db;
    int rc = store_write(db->s, flush_fn, f, flush_done, f);
    if (rc != CASCA_OK) {
        free(f);
        return rc;
    }
    db->flush_scheduled = true;
    db->inflight++;
    return CASCA_OK;
}

/* Takes calls off the queue, up to batch_points points (at least one call). */
static void flush_take(struct flush *f)
{
    struct tsdb *db = f->db;
    pthread_mutex_lock(&db->mu);
    struct call **last = &f->calls;
    while (db->head && (f->npoints == 0 || f->npoints + db->head->n <= db->batch_points)) {
        struct call *c = db->head;
        db->head = c->next;
        c->next = NULL;
        *last = c;
        last = &c->next;
        f->npoints += c->n;
        db->queued -= c->n;
    }
    if (!db->head) db->tail = NULL;
    db->flush_scheduled = false;
    /* The rest goes in the next transaction. Should that not queue, flush_done tries again. */
    if (db->head) flush_schedule(db);
    pthread_mutex_unlock(&db->mu);
    f->now = db->clock(db->clock_arg);
    f->taken = true;
}

static int wpoint_cmp(const void *a, const void *b)
{
    const struct wpoint *x = a, *y = b;
    if (x->u != y->u) return x->u < y->u ? -1 : 1;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int mdb(int rc)
{
    return store_err(rc);
}

/* The series id of an identity, created (with its meta record) when new. */
static int resolve_id(MDB_txn *txn, struct tsdb *db, struct wseries *ws, bool *created)
{
    MDB_val k = {ws->len, (void *)ws->key}, v;
    int rc = mdb_get(txn, db->series, &k, &v);
    if (rc == 0 && v.mv_size == 4) {
        ws->id = get32(v.mv_data);
        return CASCA_OK;
    }
    if (rc != MDB_NOTFOUND) return mdb(rc ? rc : MDB_CORRUPTED);
    unsigned char zero[4] = {0}, idbuf[4];
    MDB_val mk = {4, zero}, mv;
    uint32_t next = 1;
    rc = mdb_get(txn, db->meta, &mk, &mv);
    if (rc == 0 && mv.mv_size == 4)
        next = get32(mv.mv_data);
    else if (rc != MDB_NOTFOUND)
        return mdb(rc);
    if (next == UINT32_MAX) return CASCA_ERR_FULL;
    ws->id = next;
    put32(idbuf, next);
    unsigned char nb[4];
    put32(nb, next + 1);
    mv = (MDB_val){4, nb};
    if ((rc = mdb_put(txn, db->meta, &mk, &mv, 0))) return mdb(rc);
    v = (MDB_val){4, idbuf};
    if ((rc = mdb_put(txn, db->series, &k, &v, MDB_NOOVERWRITE))) return mdb(rc);
    unsigned char rec[sizeof(struct meta) + TSDB_MAX_IDENTITY];
    struct meta m = {0, 0, 0};
    memcpy(rec, &m, sizeof m);
    memcpy(rec + sizeof m, ws->key, ws->len);
    MDB_val ik = {4, idbuf}, iv = {sizeof m + ws->len, rec};
    if ((rc = mdb_put(txn, db->meta, &ik, &iv, 0))) return mdb(rc);
    *created = true;
    return CASCA_OK;
}

static int meta_get(MDB_txn *txn, struct tsdb *db, uint32_t id, struct meta *m, MDB_val *whole)
{
    unsigned char k[4];
    put32(k, id);
    MDB_val key = {4, k};
    int rc = mdb_get(txn, db->meta, &key, whole);
    if (rc) return mdb(rc);
    if (whole->mv_size < sizeof *m) return CASCA_ERR_IO;
    memcpy(m, whole->mv_data, sizeof *m);
    return CASCA_OK;
}

static int meta_put(MDB_txn *txn, struct tsdb *db, uint32_t id, const struct meta *m)
{
    unsigned char k[4], rec[sizeof(struct meta) + TSDB_MAX_IDENTITY];
    put32(k, id);
    MDB_val key = {4, k}, v;
    int rc = mdb_get(txn, db->meta, &key, &v);
    if (rc) return mdb(rc);
    if (v.mv_size < sizeof *m || v.mv_size > sizeof rec) return CASCA_ERR_IO;
    memcpy(rec, v.mv_data, v.mv_size);
    memcpy(rec, m, sizeof *m);
    v.mv_data = rec;
    return mdb(mdb_put(txn, db->meta, &key, &v, 0));
}

/* A rollup bucket being updated point by point. */
struct bucket {
    MDB_dbi dbi;
    int64_t width;
    uint32_t id;
    bool loaded;
    int64_t start;
    struct rollup r;
};

static int bucket_store(MDB_txn *txn, struct bucket *b)
{
    if (!b->loaded) return CASCA_OK;
    b->loaded = false;
    unsigned char k[ROLL_KEY];
    roll_key(k, b->id, b->start);
    MDB_val key = {ROLL_KEY, k}, v = {sizeof b->r, &b->r};
    return mdb(mdb_put(txn, b->dbi, &key, &v, 0));
}

static int bucket_add(MDB_txn *txn, struct bucket *b, int64_t t, double v)
{
    int64_t start = floor_to(t, b->width);
    int rc;
    if (b->loaded && b->start != start && (rc = bucket_store(txn, b))) return rc;
    if (!b->loaded) {
        unsigned char k[ROLL_KEY];
        roll_key(k, b->id, start);
        MDB_val key = {ROLL_KEY, k}, val;
        rc = mdb_get(txn, b->dbi, &key, &val);
        if (rc == 0 && val.mv_size == sizeof b->r)
            memcpy(&b->r, val.mv_data, sizeof b->r);
        else if (rc == MDB_NOTFOUND || rc == 0)
            memset(&b->r, 0, sizeof b->r);
        else
            return mdb(rc);
        b->start = start;
        b->loaded = true;
    }
    rollup_add(&b->r, t, v);
    return CASCA_OK;
}

/* Raw points of id in [x, y), in time order, page by page: fn(t, v) for each. */
typedef void (*raw_fn)(int64_t t, double v, void *arg);

static int scan_raw(MDB_cursor *c, uint32_t id, int64_t x, int64_t y, raw_fn fn, void *arg)
{
    unsigned char kb[4], vb[RAW_VAL] = {0};
    put32(kb, id);
    put64(vb, x < 0 ? 0 : x);
    MDB_val k = {4, kb}, d = {RAW_VAL, vb};
    int rc = mdb_cursor_get(c, &k, &d, MDB_GET_BOTH_RANGE);
    if (rc == MDB_NOTFOUND) return CASCA_OK;
    if (rc) return mdb(rc);
    rc = mdb_cursor_get(c, &k, &d, MDB_GET_MULTIPLE);
    while (rc == 0) {
        const unsigned char *p = d.mv_data;
        size_t n = d.mv_size / RAW_VAL, lo = 0, hi = n;
        while (lo < hi) { /* the page starts before x: find the first point >= x */
            size_t mid = (lo + hi) / 2;
            if (get64(p + mid * RAW_VAL) < x)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (size_t i = lo; i < n; i++) {
            int64_t t = get64(p + i * RAW_VAL);
            if (t >= y) return CASCA_OK;
            fn(t, getd(p + i * RAW_VAL + 8), arg);
        }
        rc = mdb_cursor_get(c, &k, &d, MDB_NEXT_MULTIPLE);
    }
    return rc == MDB_NOTFOUND ? CASCA_OK : mdb(rc);
}

/* Rollup buckets of id with start in [x, y), in time order. */
static int scan_rollup(MDB_cursor *c, uint32_t id, int64_t x, int64_t y,
                       void (*fn)(const struct rollup *r, void *arg), void *arg)
{
    unsigned char kb[ROLL_KEY];
    roll_key(kb, id, x < 0 ? 0 : x);
    MDB_val k = {ROLL_KEY, kb}, d;
    int rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
    while (rc == 0) {
        if (k.mv_size != ROLL_KEY || get32(k.mv_data) != id) return CASCA_OK;
        if (get64((const char *)k.mv_data + 4) >= y) return CASCA_OK;
        if (d.mv_size == sizeof(struct rollup)) {
            struct rollup r;
            memcpy(&r, d.mv_data, sizeof r);
            fn(&r, arg);
        }
        rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
    }
    return rc == MDB_NOTFOUND ? CASCA_OK : mdb(rc);
}

static void add_point_to_rollup(int64_t t, double v, void *arg)
{
    rollup_add(arg, t, v);
}

static void merge_rollup(const struct rollup *r, void *arg)
{
    rollup_merge(arg, r);
}

/* Rebuilds bucket [start, start + width) of id in dbi from the finer data (raw or minutes). */
static int rebuild_bucket(MDB_txn *txn, struct tsdb *db, MDB_dbi dbi, uint32_t id, int64_t start,
                          int64_t width)
{
    struct rollup r = {0};
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, dbi == db->m1 ? db->raw : db->m1, &c);
    if (rc) return mdb(rc);
    if (dbi == db->m1)
        rc = scan_raw(c, id, start, start + width, add_point_to_rollup, &r);
    else
        rc = scan_rollup(c, id, start, start + width, merge_rollup, &r);
    mdb_cursor_close(c);
    if (rc) return rc;
    unsigned char kb[ROLL_KEY];
    roll_key(kb, id, start);
    MDB_val k = {ROLL_KEY, kb}, v = {sizeof r, &r};
    if (r.count) return mdb(mdb_put(txn, dbi, &k, &v, 0));
    rc = mdb_del(txn, dbi, &k, NULL);
    return rc == MDB_NOTFOUND ? CASCA_OK : mdb(rc);
}

static bool in_sorted(const int64_t *a, size_t n, int64_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (a[mid] == x) return true;
        if (a[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* Adds x to the sorted set a (room for one more) unless present. */
static size_t sorted_insert(int64_t *a, size_t n, int64_t x)
{
    size_t i = n;
    while (i > 0 && a[i - 1] > x)
        i--;
    if (i > 0 && a[i - 1] == x) return n;
    memmove(a + i + 1, a + i, (n - i) * sizeof(*a));
    a[i] = x;
    return n + 1;
}

/* Writes the points p[0..n) (sorted by time, distinct times) of one series. dirty_m and dirty_h
 * have room for n entries each. */
static int write_series(MDB_txn *txn, struct flush *f, uint32_t id, const struct wpoint *p,
                        size_t n, int64_t *dirty_m, int64_t *dirty_h)
{
    struct tsdb *db = f->db;
    struct meta m;
    MDB_val whole;
    int rc = meta_get(txn, db, id, &m, &whole);
    if (rc) return rc;
    MDB_cursor *c;
    if ((rc = mdb_cursor_open(txn, db->raw, &c))) return mdb(rc);
    unsigned char kb[4], vb[RAW_VAL];
    put32(kb, id);
    size_t ndm = 0, ndh = 0, i = 0;

    /* points at or before the newest stored one: replace or insert, then rebuild their buckets */
    for (; i < n && m.points && p[i].t <= m.last; i++) {
        MDB_val k = {4, kb}, d = {RAW_VAL, vb};
        memset(vb, 0, sizeof vb);
        put64(vb, p[i].t);
        rc = mdb_cursor_get(c, &k, &d, MDB_GET_BOTH_RANGE);
        if (rc == 0 && get64(d.mv_data) == p[i].t) {
            if ((rc = mdb_cursor_del(c, 0))) goto out;
            f->replaced++;
        } else if (rc == 0 || rc == MDB_NOTFOUND) {
            m.points++;
        } else {
            goto out;
        }
        memcpy(vb + 8, &p[i].v, 8);
        k = (MDB_val){4, kb};
        d = (MDB_val){RAW_VAL, vb};
        if ((rc = mdb_cursor_put(c, &k, &d, 0))) goto out;
        if (p[i].t < m.first) m.first = p[i].t;
        ndm = sorted_insert(dirty_m, ndm, floor_to(p[i].t, TSDB_MINUTE_NS));
        ndh = sorted_insert(dirty_h, ndh, floor_to(p[i].t, TSDB_HOUR_NS));
        f->written++;
    }
    /* newer points: appended, rollups updated in place unless their bucket is rebuilt anyway */
    struct bucket bm = {db->m1, TSDB_MINUTE_NS, id, false, 0, {0}};
    struct bucket bh = {db->h1, TSDB_HOUR_NS, id, false, 0, {0}};
    for (; i < n; i++) {
        memcpy(vb + 8, &p[i].v, 8);
        put64(vb, p[i].t);
        MDB_val k = {4, kb}, d = {RAW_VAL, vb};
        if ((rc = mdb_cursor_put(c, &k, &d, MDB_APPENDDUP))) goto out;
        if (!m.points) m.first = p[i].t;
        m.points++;
        m.last = p[i].t;
        f->written++;
        if (!in_sorted(dirty_m, ndm, floor_to(p[i].t, TSDB_MINUTE_NS)) &&
            (rc = bucket_add(txn, &bm, p[i].t, p[i].v)))
            goto out_cstore;
        if (!in_sorted(dirty_h, ndh, floor_to(p[i].t, TSDB_HOUR_NS)) &&
            (rc = bucket_add(txn, &bh, p[i].t, p[i].v)))
            goto out_cstore;
    }
    if ((rc = bucket_store(txn, &bm)) || (rc = bucket_store(txn, &bh))) goto out_cstore;
    for (size_t j = 0; j < ndm; j++)
        if ((rc = rebuild_bucket(txn, db, db->m1, id, dirty_m[j], TSDB_MINUTE_NS))) goto out_cstore;
    for (size_t j = 0; j < ndh; j++)
        if ((rc = rebuild_bucket(txn, db, db->h1, id, dirty_h[j], TSDB_HOUR_NS))) goto out_cstore;
    mdb_cursor_close(c);
    return meta_put(txn, db, id, &m);
out:
    rc = mdb(rc);
out_cstore:
    mdb_cursor_close(c);
    return rc;
}

static int flush_fn(MDB_txn *txn, void *arg)
{
    struct flush *f = arg;
    struct tsdb *db = f->db;
    if (!f->taken) flush_take(f);
    f->written = f->replaced = f->expired = 0;
    f->created = false;
    if (!f->npoints) return CASCA_OK;

    size_t nident = 0;
    for (struct call *c = f->calls; c; c = c->next)
        nident += c->nident;
    size_t cap = 16;
    while (cap < 2 * nident)
        cap *= 2;
    uint32_t *table = malloc(cap * sizeof(*table)); /* open addressing: index + 1, 0 = empty */
    struct wseries *series = malloc(nident * sizeof(*series));
    struct wpoint *pts = malloc(f->npoints * sizeof(*pts));
    int64_t *dirty = malloc(2 * f->npoints * sizeof(*dirty));
    int rc = CASCA_OK;
    if (!table || !series || !pts || !dirty) {
        rc = CASCA_ERR_NOMEM;
        goto out;
    }
    memset(table, 0, cap * sizeof(*table));

    /* unique series across the calls */
    uint32_t nseries = 0;
    for (struct call *c = f->calls; c; c = c->next) {
        for (size_t i = 0; i < c->nident; i++) {
            struct ident *id = &c->idents[i];
            size_t slot = id->hash & (cap - 1);
            for (;; slot = (slot + 1) & (cap - 1)) {
                uint32_t e = table[slot];
                if (!e) {
                    series[nseries] = (struct wseries){id->key, id->len, id->hash, 0};
                    table[slot] = ++nseries;
                    id->u = nseries - 1;
                    break;
                }
                struct wseries *w = &series[e - 1];
                if (w->hash == id->hash && w->len == id->len && !memcmp(w->key, id->key, id->len)) {
                    id->u = e - 1;
                    break;
                }
            }
        }
    }
    /* every point, in queue order (seq), then sorted by series and time */
    int64_t horizon = raw_horizon(db, f->now);
    size_t np = 0;
    uint64_t seq = 0;
    for (struct call *c = f->calls; c; c = c->next) {
        for (size_t i = 0; i < c->n; i++, seq++) {
            if (c->pts[i].t < horizon) {
                f->expired++;
                continue;
            }
            pts[np++] =
                (struct wpoint){c->idents[c->pts[i].ident].u, c->pts[i].t, c->pts[i].v, seq};
        }
    }
    qsort(pts, np, sizeof(*pts), wpoint_cmp);
    size_t kept = 0; /* one point per series and time: the latest queued */
    for (size_t i = 0; i < np; i++) {
        if (kept && pts[kept - 1].u == pts[i].u && pts[kept - 1].t == pts[i].t)
            pts[kept - 1] = pts[i];
        else
            pts[kept++] = pts[i];
    }
    for (size_t i = 0; i < kept && rc == CASCA_OK;) {
        size_t j = i;
        while (j < kept && pts[j].u == pts[i].u)
            j++;
        struct wseries *w = &series[pts[i].u];
        rc = resolve_id(txn, db, w, &f->created);
        if (rc == CASCA_OK)
            rc = write_series(txn, f, w->id, pts + i, j - i, dirty, dirty + f->npoints);
        i = j;
    }
out:
    free(table);
    free(series);
    free(pts);
    free(dirty);
    return rc;
}

static void purge_schedule(struct tsdb *db); /* with db->mu held */

static void flush_done(int err, void *arg)
{
    struct flush *f = arg;
    struct tsdb *db = f->db;
    if (!err && f->created) atomic_fetch_add(&db->series_gen, 1);
    pthread_mutex_lock(&db->mu); /* counters first: a done callback may read them */
    db->st.batches++;
    if (err) {
        db->st.failed += f->npoints;
    } else {
        db->st.written += f->written;
        db->st.replaced += f->replaced;
        db->st.expired += f->expired;
    }
    pthread_mutex_unlock(&db->mu);
    for (struct call *c = f->calls, *next; c; c = next) {
        next = c->next;
        if (c->done) c->done(err, c->arg);
        free(c);
    }
    pthread_mutex_lock(&db->mu);
    if (!f->taken) db->flush_scheduled = false; /* the store failed it before it ran */
    /* Calls still waiting with no flush to take them (flush_take could not queue one, or the
     * store failed this one before it took them): queue one now, or fail them, so that every
     * call's done runs. */
    struct call *failed = NULL;
    int ferr = CASCA_OK;
    if (db->head && !db->flush_scheduled) {
        ferr = f->taken || !err ? flush_schedule(db) : err;
        if (ferr) {
            failed = db->head;
            db->head = db->tail = NULL;
            for (struct call *c = failed; c; c = c->next) {
                db->queued -= c->n;
                db->st.failed += c->n;
            }
        }
    }
    int64_t now = db->clock(db->clock_arg);
    if (!db->closing && !db->purge_running && now >= db->next_purge) {
        db->next_purge = now + atomic_load(&db->purge_interval);
        purge_schedule(db);
    }
    pthread_mutex_unlock(&db->mu);
    for (struct call *c = failed, *next; c; c = next) {
        next = c->next;
        if (c->done) c->done(ferr, c->arg);
        free(c);
    }
    pthread_mutex_lock(&db->mu); /* last: once inflight is 0, tsdb_close may free db */
    db->inflight--;
    pthread_cond_broadcast(&db->idle);
    pthread_mutex_unlock(&db->mu);
    free(f);
}

/* ---- retention ---- */

struct purge {
    struct tsdb *db;
    bool background; /* scheduled by the writer: reschedules itself while there is more */
    int64_t now;
    uint64_t purged;
    size_t budget;
    bool more, deleted;
};

/* Deletes rollup keys of id older than horizon; counts against the budget. */
static int purge_rollups(MDB_txn *txn, MDB_dbi dbi, uint32_t id, int64_t horizon, struct purge *p,
                         bool *left)
{
    unsigned char kb[ROLL_KEY];
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, dbi, &c);
    if (rc) return mdb(rc);
    *left = false;
    for (;;) {
        roll_key(kb, id, 0);
        MDB_val k = {ROLL_KEY, kb}, d;
        rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
        if (rc == MDB_NOTFOUND || (rc == 0 && get32(k.mv_data) != id)) {
            rc = 0;
            break;
        }
        if (rc) break;
        if (get64((const char *)k.mv_data + 4) >= horizon) {
            *left = true;
            break;
        }
        if (!p->budget) {
            p->more = *left = true;
            break;
        }
        if ((rc = mdb_cursor_del(c, 0))) break;
        p->budget--;
    }
    mdb_cursor_close(c);
    return mdb(rc);
}

static int purge_series(MDB_txn *txn, struct tsdb *db, uint32_t id, struct purge *p, bool *gone)
{
    struct meta m;
    MDB_val whole;
    int rc = meta_get(txn, db, id, &m, &whole);
    if (rc) return rc;
    unsigned char ident[TSDB_MAX_IDENTITY];
    size_t ilen = whole.mv_size - sizeof m;
    if (ilen > sizeof ident) return CASCA_ERR_IO;
    memcpy(ident, (const char *)whole.mv_data + sizeof m, ilen);

    int64_t rh = raw_horizon(db, p->now);
    unsigned char kb[4];
    put32(kb, id);
    MDB_cursor *c;
    if ((rc = mdb_cursor_open(txn, db->raw, &c))) return mdb(rc);
    MDB_val k = {4, kb}, d;
    if (m.points && m.last < rh) { /* all of it: one delete */
        if ((rc = mdb_del(txn, db->raw, &k, NULL)) && rc != MDB_NOTFOUND) goto out;
        p->purged += m.points;
        p->budget = p->budget > m.points ? p->budget - m.points : 0;
        m = (struct meta){0, 0, 0};
    }
    while (m.points && m.first < rh && p->budget) {
        k = (MDB_val){4, kb};
        if ((rc = mdb_cursor_get(c, &k, &d, MDB_SET_KEY))) goto out; /* at the first point */
        if (get64(d.mv_data) >= rh) {
            m.first = get64(d.mv_data);
            break;
        }
        if ((rc = mdb_cursor_del(c, 0))) goto out;
        p->budget--;
        p->purged++;
        if (--m.points == 0) {
            m.first = m.last = 0;
        } else {
            k = (MDB_val){4, kb};
            if ((rc = mdb_cursor_get(c, &k, &d, MDB_SET_KEY))) goto out;
            m.first = get64(d.mv_data);
        }
    }
    if (m.points && m.first < rh) p->more = true;
    mdb_cursor_close(c);
    c = NULL;
    bool mleft, hleft = false;
    if ((rc = purge_rollups(txn, db->m1, id, minute_horizon(db, p->now), p, &mleft))) return rc;
    int64_t hh = hour_horizon(db, p->now);
    if ((rc = purge_rollups(txn, db->h1, id, hh == INT64_MIN ? 0 : hh, p, &hleft))) return rc;
    *gone = !m.points && !mleft && !hleft;
    if (*gone) {
        MDB_val ik = {ilen, ident}, mk = {4, kb};
        if ((rc = mdb_del(txn, db->series, &ik, NULL)) && rc != MDB_NOTFOUND) return mdb(rc);
        if ((rc = mdb_del(txn, db->meta, &mk, NULL))) return mdb(rc);
        return CASCA_OK;
    }
    return meta_put(txn, db, id, &m);
out:
    if (c) mdb_cursor_close(c);
    return mdb(rc);
}

static int purge_fn(MDB_txn *txn, void *arg)
{
    struct purge *p = arg;
    struct tsdb *db = p->db;
    p->purged = 0;
    p->budget = PURGE_BUDGET;
    p->more = p->deleted = false;
    p->now = db->clock(db->clock_arg);
    /* the ids first (the deletes below would move a cursor over tsdb.meta) */
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, db->meta, &c);
    if (rc) return mdb(rc);
    size_t n = 0, cap = 0;
    uint32_t *ids = NULL;
    MDB_val k, d;
    for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        if (k.mv_size != 4 || get32(k.mv_data) == 0) continue;
        if (n == cap) {
            uint32_t *grown = realloc(ids, (cap = cap ? 2 * cap : 256) * sizeof(*ids));
            if (!grown) {
                rc = ENOMEM;
                break;
            }
            ids = grown;
        }
        ids[n++] = get32(k.mv_data);
    }
    mdb_cursor_close(c);
    rc = rc == MDB_NOTFOUND ? CASCA_OK : mdb(rc);
    for (size_t i = 0; i < n && rc == CASCA_OK; i++) {
        bool gone = false;
        if (!p->budget) {
            p->more = true;
            break;
        }
        rc = purge_series(txn, db, ids[i], p, &gone);
        if (gone) p->deleted = true;
    }
    free(ids);
    return rc;
}

static void purge_done(int err, void *arg)
{
    struct purge *p = arg;
    struct tsdb *db = p->db;
    if (!err && p->deleted) atomic_fetch_add(&db->series_gen, 1);
    pthread_mutex_lock(&db->mu);
    if (!err) db->st.purged += p->purged;
    db->inflight--;
    bool again = p->background && !err && p->more && !db->closing;
    if (p->background) db->purge_running = false;
    if (again) purge_schedule(db);
    pthread_cond_broadcast(&db->idle);
    pthread_mutex_unlock(&db->mu);
    free(p);
}

static void purge_schedule(struct tsdb *db)
{
    struct purge *p = calloc(1, sizeof(*p));
    if (!p) return;
    p->db = db;
    p->background = true;
    if (store_write(db->s, purge_fn, p, purge_done, p) != CASCA_OK) {
        free(p);
        return;
    }
    db->purge_running = true;
    db->inflight++;
}

int tsdb_purge(struct tsdb *db)
{
    for (;;) {
        struct purge p = {.db = db};
        int rc = store_write_wait(db->s, purge_fn, &p);
        if (rc) return rc;
        if (p.deleted) atomic_fetch_add(&db->series_gen, 1);
        pthread_mutex_lock(&db->mu);
        db->st.purged += p.purged;
        pthread_mutex_unlock(&db->mu);
        if (!p.more) return CASCA_OK;
    }
}

void tsdb_close(struct tsdb *db)
{
    if (!db) return;
    pthread_mutex_lock(&db->mu);
    db->closing = true;
    if (db->head && !db->flush_scheduled) flush_schedule(db);
    while (db->inflight > 0)
        pthread_cond_wait(&db->idle, &db->mu);
    struct call *left = db->head; /* only if the store refused the last flush */
    db->head = db->tail = NULL;
    pthread_mutex_unlock(&db->mu);
    for (struct call *c = left, *next; c; c = next) {
        next = c->next;
        if (c->done) c->done(CASCA_ERR_UNAVAILABLE, c->arg);
        free(c);
    }
    pthread_cond_destroy(&db->idle);
    pthread_mutex_destroy(&db->mu);
    free(db);
}

void tsdb_stats(struct tsdb *db, struct tsdb_stats *st)
{
    pthread_mutex_lock(&db->mu);
    *st = db->st;
    st->queued = db->queued;
    pthread_mutex_unlock(&db->mu);
    MDB_txn *txn;
    if (store_read_begin(db->s, &txn) == 0) {
        MDB_stat ms;
        if (mdb_stat(txn, db->series, &ms) == 0) st->series = ms.ms_entries;
        store_read_end(db->s, txn);
    }
}

/* ---- aggregation names ---- */

static const struct {
    const char *name;
    enum tsdb_agg agg;
    double q; /* < 0: leave q alone */
} agg_names[] = {
    {"mean", TSDB_AGG_MEAN, -1},     {"min", TSDB_AGG_MIN, -1},
    {"max", TSDB_AGG_MAX, -1},       {"sum", TSDB_AGG_SUM, -1},
    {"count", TSDB_AGG_COUNT, -1},   {"last", TSDB_AGG_LAST, -1},
    {"rate", TSDB_AGG_RATE, -1},     {"quantile", TSDB_AGG_QUANTILE, -1},
    {"p50", TSDB_AGG_QUANTILE, 0.5}, {"median", TSDB_AGG_QUANTILE, 0.5},
    {"p90", TSDB_AGG_QUANTILE, 0.9}, {"p99", TSDB_AGG_QUANTILE, 0.99},
};

int tsdb_agg_parse(const char *name, enum tsdb_agg *agg, double *q)
{
    for (size_t i = 0; name && i < sizeof agg_names / sizeof agg_names[0]; i++) {
        if (strcmp(name, agg_names[i].name) == 0) {
            *agg = agg_names[i].agg;
            if (q && agg_names[i].q >= 0) *q = agg_names[i].q;
            return CASCA_OK;
        }
    }
    return CASCA_ERR_INVALID;
}

const char *tsdb_agg_name(enum tsdb_agg agg)
{
    for (size_t i = 0; i < sizeof agg_names / sizeof agg_names[0]; i++)
        if (agg_names[i].agg == agg) return agg_names[i].name;
    return "?";
}

/* ---- selectors ---- */

struct sel_series {
    uint32_t id;
    char *identity; /* owned */
    size_t len;
    const char *name;
    struct tsdb_tag *tags; /* into identity */
    size_t ntags;
};

struct tsdb_selector {
    struct tsdb *db;
    char *name;
    struct tsdb_tag *filter; /* owned strings */
    size_t nfilter;
    uint64_t gen;
    bool resolved;
    struct sel_series *s;
    size_t n;
    double *vals; /* quantile scratch */
    size_t vcap;
};

static void sel_clear(struct tsdb_selector *sel)
{
    for (size_t i = 0; i < sel->n; i++) {
        free(sel->s[i].identity);
        free(sel->s[i].tags);
    }
    free(sel->s);
    sel->s = NULL;
    sel->n = 0;
}

void tsdb_selector_free(struct tsdb_selector *sel)
{
    if (!sel) return;
    sel_clear(sel);
    for (size_t i = 0; i < sel->nfilter; i++) {
        free((char *)sel->filter[i].key);
        free((char *)sel->filter[i].value);
    }
    free(sel->filter);
    free(sel->name);
    free(sel->vals);
    free(sel);
}

int tsdb_select(struct tsdb *db, const char *series, const struct tsdb_tag *filter, size_t nfilter,
                struct tsdb_selector **out)
{
    *out = NULL;
    if (!series || !*series || (nfilter && !filter)) return CASCA_ERR_INVALID;
    for (size_t i = 0; i < nfilter; i++) {
        if (!filter[i].key || !filter[i].value) return CASCA_ERR_INVALID;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(filter[i].key, filter[j].key)) return CASCA_ERR_INVALID;
    }
    struct tsdb_selector *sel = calloc(1, sizeof(*sel));
    if (!sel) return CASCA_ERR_NOMEM;
    sel->db = db;
    sel->name = strdup(series);
    sel->filter = calloc(nfilter ? nfilter : 1, sizeof(*sel->filter));
    bool ok = sel->name && sel->filter;
    for (size_t i = 0; ok && i < nfilter; i++) {
        sel->filter[i].key = strdup(filter[i].key);
        sel->filter[i].value = strdup(filter[i].value);
        sel->nfilter = i + 1;
        ok = sel->filter[i].key && sel->filter[i].value;
    }
    if (!ok) {
        tsdb_selector_free(sel);
        return CASCA_ERR_NOMEM;
    }
    *out = sel;
    return CASCA_OK;
}

static bool filter_match(const struct tsdb_selector *sel, const struct tsdb_tag *tags, size_t n)
{
    for (size_t i = 0; i < sel->nfilter; i++) {
        bool found = false;
        for (size_t j = 0; j < n && !found; j++)
            found = !strcmp(tags[j].key, sel->filter[i].key) &&
                    !strcmp(tags[j].value, sel->filter[i].value);
        if (!found) return false;
    }
    return true;
}

/* Re-reads the matching series when new ones appeared since the last time. */
static int sel_refresh(struct tsdb_selector *sel, MDB_txn *txn)
{
    struct tsdb *db = sel->db;
    uint64_t gen = atomic_load(&db->series_gen);
    if (sel->resolved && gen == sel->gen) return CASCA_OK;
    sel_clear(sel);
    size_t nlen = strlen(sel->name) + 1, cap = 0;
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, db->series, &c);
    if (rc) return mdb(rc);
    MDB_val k = {nlen, sel->name}, d;
    struct tsdb_tag tags[TSDB_MAX_IDENTITY / 4];
    for (rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        if (k.mv_size < nlen || memcmp(k.mv_data, sel->name, nlen) != 0) break;
        if (d.mv_size != 4 || k.mv_size > TSDB_MAX_IDENTITY ||
            ((const char *)k.mv_data)[k.mv_size - 1] != '\0')
            continue;
        const char *name;
        size_t nt = identity_parse(k.mv_data, k.mv_size, &name, tags);
        if (!filter_match(sel, tags, nt)) continue;
        if (sel->n == cap) {
            struct sel_series *grown = realloc(sel->s, (cap = cap ? 2 * cap : 4) * sizeof(*grown));
            if (!grown) {
                rc = ENOMEM;
                break;
            }
            sel->s = grown;
        }
        struct sel_series *ss = &sel->s[sel->n];
        *ss = (struct sel_series){.id = get32(d.mv_data), .len = k.mv_size};
        ss->identity = malloc(k.mv_size);
        ss->tags = malloc((nt ? nt : 1) * sizeof(*ss->tags));
        if (!ss->identity || !ss->tags) {
            free(ss->identity);
            free(ss->tags);
            rc = ENOMEM;
            break;
        }
        memcpy(ss->identity, k.mv_data, k.mv_size);
        ss->ntags = identity_parse(ss->identity, ss->len, &ss->name, ss->tags);
        sel->n++;
    }
    mdb_cursor_close(c);
    if (rc != MDB_NOTFOUND && rc != 0) {
        sel_clear(sel);
        return mdb(rc);
    }
    sel->gen = gen;
    sel->resolved = true;
    return CASCA_OK;
}

/* ---- reading: the planner ---- */

struct reader {
    struct tsdb *db;
    MDB_cursor *raw, *m1, *h1;
    int64_t hz[3]; /* where raw, minute and hour data start */
};

/* An aggregate being built from points and buckets fed in time order. */
struct acc {
    struct rollup r;
    struct tsdb_selector *sel; /* values for quantiles go to sel->vals, or NULL */
    size_t nvals;
    bool nomem;
};

static void acc_point(int64_t t, double v, void *arg)
{
    struct acc *a = arg;
    rollup_add(&a->r, t, v);
    if (!a->sel) return;
    struct tsdb_selector *sel = a->sel;
    if (a->nvals == sel->vcap) {
        size_t cap = sel->vcap ? 2 * sel->vcap : 1024;
        double *grown = realloc(sel->vals, cap * sizeof(*grown));
        if (!grown) {
            a->nomem = true;
            return;
        }
        sel->vals = grown;
        sel->vcap = cap;
    }
    sel->vals[a->nvals++] = v;
}

static void acc_bucket(const struct rollup *r, void *arg)
{
    rollup_merge(&((struct acc *)arg)->r, r);
}

/* Feeds [a, b) of tier (0 raw, 1 minutes, 2 hours) and coarser tiers for the aligned middle. */
static int feed_tier(struct reader *rd, uint32_t id, int64_t a, int64_t b, int tier,
                     struct acc *acc)
{
    static const int64_t width[3] = {1, TSDB_MINUTE_NS, TSDB_HOUR_NS};
    if (a >= b) return CASCA_OK;
    if (tier == 2) return scan_rollup(rd->h1, id, a, b, acc_bucket, acc);
    int64_t w = width[tier + 1], l = ceil_to(a, w), r = floor_to(b, w);
    int rc;
    if (l >= r) {
        if (tier == 0) return scan_raw(rd->raw, id, a, b, acc_point, acc);
        return scan_rollup(rd->m1, id, a, b, acc_bucket, acc);
    }
    if (tier == 0)
        rc = scan_raw(rd->raw, id, a, l, acc_point, acc);
    else
        rc = scan_rollup(rd->m1, id, a, l, acc_bucket, acc);
    if (rc || (rc = feed_tier(rd, id, l, r, tier + 1, acc))) return rc;
    if (tier == 0) return scan_raw(rd->raw, id, r, b, acc_point, acc);
    return scan_rollup(rd->m1, id, r, b, acc_bucket, acc);
}

/* Feeds [a, b) of series id: hours where only hours are kept, minutes where only minutes are
 * kept, raw points (and rollups for the aligned middle) where raw points are kept. Quantiles
 * read raw points only. */
static int feed(struct reader *rd, uint32_t id, int64_t a, int64_t b, struct acc *acc)
{
    if (acc->sel) {
        int64_t x = a > rd->hz[0] ? a : rd->hz[0];
        return x < b ? scan_raw(rd->raw, id, x, b, acc_point, acc) : CASCA_OK;
    }
    for (int tier = 2; tier >= 0; tier--) {
        int64_t lo = rd->hz[tier], hi = tier ? rd->hz[tier - 1] : INT64_MAX;
        int64_t x = a > lo ? a : lo, y = b < hi ? b : hi;
        int rc = x < y ? feed_tier(rd, id, x, y, tier, acc) : CASCA_OK;
        if (rc) return rc;
    }
    return CASCA_OK;
}

static int reader_open(struct reader *rd, struct tsdb *db, MDB_txn *txn)
{
    *rd = (struct reader){.db = db};
    int rc;
    if ((rc = mdb_cursor_open(txn, db->raw, &rd->raw)) ||
        (rc = mdb_cursor_open(txn, db->m1, &rd->m1)) ||
        (rc = mdb_cursor_open(txn, db->h1, &rd->h1))) {
        if (rd->raw) mdb_cursor_close(rd->raw);
        if (rd->m1) mdb_cursor_close(rd->m1);
        return mdb(rc);
    }
    int64_t now = db->clock(db->clock_arg);
    rd->hz[0] = raw_horizon(db, now);
    rd->hz[1] = minute_horizon(db, now);
    rd->hz[2] = hour_horizon(db, now);
    if (rd->hz[2] < 0) rd->hz[2] = 0;
    if (rd->hz[1] < rd->hz[2]) rd->hz[1] = rd->hz[2];
    if (rd->hz[0] < rd->hz[1]) rd->hz[0] = rd->hz[1];
    return CASCA_OK;
}

static void reader_close(struct reader *rd)
{
    mdb_cursor_close(rd->raw);
    mdb_cursor_close(rd->m1);
    mdb_cursor_close(rd->h1);
}

static int double_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The k-th smallest of v[0..n) (v is reordered): quickselect with Hoare partitioning around the
 * median of three pseudo-random elements (periodic data defeats fixed positions); after 64
 * rounds, which random pivots practically never need, the rest is sorted. */
static double select_kth(double *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;
    uint64_t x = 0x9E3779B97F4A7C15ull ^ n;
    for (int round = 0; hi - lo > 16 && round < 64; round++) {
        size_t span = hi - lo + 1, pick[3];
        for (int r = 0; r < 3; r++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
            pick[r] = lo + (size_t)(x % span);
        }
        double a = v[pick[0]], b = v[pick[1]], c = v[pick[2]];
        double pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        size_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i <= j) {
                double t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                if (j == 0) break;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return v[k];
    }
    qsort(v + lo, hi - lo + 1, sizeof(*v), double_cmp);
    return v[k];
}

static double quantile_of(double *v, size_t n, double q)
{
    double h = (double)(n - 1) * q;
    size_t k = (size_t)h;
    if (k >= n - 1) {
        double m = v[0];
        for (size_t i = 1; i < n; i++)
            if (v[i] > m) m = v[i];
        return m;
    }
    double lo = select_kth(v, n, k), hi = v[k + 1];
    for (size_t i = k + 2; i < n;
         i++) /* after select, v[k+1..] >= lo: the next rank is their min */
        if (v[i] < hi) hi = v[i];
    return lo + (h - (double)k) * (hi - lo);
}

static double rate_of(const struct rollup *r, bool *ok)
{
    *ok = r->count >= 2 && r->last_t > r->first_t;
    return *ok ? r->incr / ((double)(r->last_t - r->first_t) / 1e9) : 0;
}

/* Turns an aggregate into a sample (count 0: no value). */
static void finish(const struct acc *acc, enum tsdb_agg agg, double q, struct tsdb_sample *s,
                   double *vals)
{
    const struct rollup *r = &acc->r;
    s->count = r->count;
    s->value = 0;
    if (!r->count) return;
    bool ok = true;
    switch (agg) {
    case TSDB_AGG_MEAN:
        s->value = r->sum / (double)r->count;
        break;
    case TSDB_AGG_MIN:
        s->value = r->min;
        break;
    case TSDB_AGG_MAX:
        s->value = r->max;
        break;
    case TSDB_AGG_SUM:
        s->value = r->sum;
        break;
    case TSDB_AGG_COUNT:
        s->value = (double)r->count;
        break;
    case TSDB_AGG_LAST:
        s->value = r->last_v;
        break;
    case TSDB_AGG_RATE:
        s->value = rate_of(r, &ok);
        if (!ok) s->count = 0;
        break;
    case TSDB_AGG_QUANTILE:
        s->count = acc->nvals;
        if (acc->nvals) s->value = quantile_of(vals, acc->nvals, q);
        break;
    default:
        s->count = 0;
    }
}

static int check_query(int64_t start, int64_t end, int64_t step, enum tsdb_agg agg, double q)
{
    if (end < start || step < 0 || (unsigned)agg >= TSDB_AGG__COUNT) return CASCA_ERR_INVALID;
    if (agg == TSDB_AGG_QUANTILE && !(q >= 0 && q <= 1)) return CASCA_ERR_INVALID;
    if (step && (end - start) / step >= MAX_STEPS) return CASCA_ERR_INVALID;
    return CASCA_OK;
}

int tsdb_aggregate(struct tsdb *db, struct tsdb_selector *sel, int64_t start, int64_t end,
                   enum tsdb_agg agg, double q, struct tsdb_sample *out)
{
    *out = (struct tsdb_sample){.time_ns = start};
    int rc = check_query(start, end, 0, agg, q);
    if (rc) return rc;
    MDB_txn *txn;
    if ((rc = store_read_begin(db->s, &txn))) return rc;
    struct reader rd;
    if ((rc = sel_refresh(sel, txn)) || (rc = reader_open(&rd, db, txn))) {
        store_read_end(db->s, txn);
        return rc;
    }
    struct rollup total = {0};
    struct tsdb_sample last = {0};
    double rate = 0;
    uint64_t rate_count = 0;
    struct acc acc = {.sel = agg == TSDB_AGG_QUANTILE ? sel : NULL};
    for (size_t i = 0; i < sel->n && !rc; i++) {
        acc.r = (struct rollup){0};
        if ((rc = feed(&rd, sel->s[i].id, start, end, &acc))) break;
        if (acc.nomem) rc = CASCA_ERR_NOMEM;
        const struct rollup *r = &acc.r;
        if (!r->count) continue;
        total.count += r->count;
        total.sum += r->sum;
        if (total.count == r->count || r->min < total.min) total.min = r->min;
        if (total.count == r->count || r->max > total.max) total.max = r->max;
        if (!last.count || r->last_t >= last.time_ns)
            last = (struct tsdb_sample){r->last_t, r->last_v, 1};
        bool ok;
        double one = rate_of(r, &ok);
        if (ok) {
            rate += one;
            rate_count += r->count;
        }
    }
    reader_close(&rd);
    store_read_end(db->s, txn);
    if (rc) return rc;
    struct acc merged = {.r = total, .nvals = acc.nvals};
    merged.r.last_v = last.value;
    finish(&merged, agg, q, out, sel->vals);
    if (agg == TSDB_AGG_RATE) {
        out->value = rate;
        out->count = rate_count;
    }
    out->time_ns = start;
    return CASCA_OK;
}

struct qseries {
    size_t index; /* in sel->s */
    struct tsdb_sample *samples;
    size_t n;
};

int tsdb_query(struct tsdb *db, struct tsdb_selector *sel, const struct tsdb_query *q,
               tsdb_series_fn fn, void *arg)
{
    int rc = check_query(q->start_ns, q->end_ns, q->step_ns, q->agg, q->q);
    if (rc) return rc;
    int64_t step = q->step_ns ? q->step_ns : (q->end_ns - q->start_ns);
    size_t nsteps =
        q->end_ns == q->start_ns ? 0 : (size_t)((q->end_ns - q->start_ns - 1) / step) + 1;
    MDB_txn *txn;
    if ((rc = store_read_begin(db->s, &txn))) return rc;
    struct reader rd;
    if ((rc = sel_refresh(sel, txn)) || (rc = reader_open(&rd, db, txn))) {
        store_read_end(db->s, txn);
        return rc;
    }
    struct qseries *res = calloc(sel->n ? sel->n : 1, sizeof(*res));
    struct tsdb_sample *buf = nsteps ? malloc(nsteps * sizeof(*buf)) : NULL;
    size_t nres = 0, total = 0;
    if (!res || (nsteps && !buf)) rc = CASCA_ERR_NOMEM;
    for (size_t i = 0; i < sel->n && !rc; i++) {
        size_t n = 0;
        for (size_t s = 0; s < nsteps && !rc; s++) {
            int64_t a = q->start_ns + (int64_t)s * step;
            int64_t b = q->end_ns - a > step ? a + step : q->end_ns;
            struct acc acc = {.sel = q->agg == TSDB_AGG_QUANTILE ? sel : NULL};
            rc = feed(&rd, sel->s[i].id, a, b, &acc);
            if (!rc && acc.nomem) rc = CASCA_ERR_NOMEM;
            if (rc) break;
            struct tsdb_sample smp = {.time_ns = a};
            finish(&acc, q->agg, q->q, &smp, sel->vals);
            if (smp.count) buf[n++] = smp;
        }
        if (rc || !n) continue;
        total += n;
        if (q->max_samples && total > q->max_samples) {
            rc = CASCA_ERR_FULL;
            break;
        }
        res[nres] = (struct qseries){i, malloc(n * sizeof(*buf)), n};
        if (!res[nres].samples) {
            rc = CASCA_ERR_NOMEM;
            break;
        }
        memcpy(res[nres++].samples, buf, n * sizeof(*buf));
    }
    reader_close(&rd);
    store_read_end(db->s, txn);
    for (size_t i = 0; i < nres; i++) {
        if (!rc) {
            const struct sel_series *ss = &sel->s[res[i].index];
            struct tsdb_series_result r = {ss->name, ss->tags, ss->ntags, res[i].samples, res[i].n};
            rc = fn(&r, arg);
        }
        free(res[i].samples);
    }
    free(res);
    free(buf);
    return rc;
}

int tsdb_list(struct tsdb *db, const char *prefix,
              int (*fn)(const struct tsdb_series_info *info, void *arg), void *arg)
{
    size_t plen = prefix ? strlen(prefix) : 0;
    MDB_txn *txn;
    int rc = store_read_begin(db->s, &txn);
    if (rc) return rc;
    MDB_cursor *c;
    if ((rc = mdb_cursor_open(txn, db->series, &c))) {
        store_read_end(db->s, txn);
        return mdb(rc);
    }
    MDB_val k = {plen, (void *)prefix}, d;
    struct tsdb_tag tags[TSDB_MAX_IDENTITY / 4];
    char ident[TSDB_MAX_IDENTITY];
    int stop = 0;
    for (rc = mdb_cursor_get(c, &k, &d, plen ? MDB_SET_RANGE : MDB_FIRST); rc == 0 && !stop;
         rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0) break;
        if (d.mv_size != 4 || k.mv_size > sizeof ident ||
            ((const char *)k.mv_data)[k.mv_size - 1] != '\0')
            continue;
        memcpy(ident, k.mv_data, k.mv_size);
        struct tsdb_series_info info = {0};
        info.ntags = identity_parse(ident, k.mv_size, &info.series, tags);
        info.tags = tags;
        struct meta m;
        MDB_val whole;
        if (meta_get(txn, db, get32(d.mv_data), &m, &whole) == CASCA_OK) {
            info.points = m.points;
            info.first_ns = m.first;
            info.last_ns = m.last;
        }
        stop = fn(&info, arg);
    }
    mdb_cursor_close(c);
    store_read_end(db->s, txn);
    if (stop) return stop;
    return rc == MDB_NOTFOUND || rc == 0 ? CASCA_OK : mdb(rc);
}
