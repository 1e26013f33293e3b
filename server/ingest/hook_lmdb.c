/* The lmdb connector (the default): points go to casca's own time-series store with tsdb_write,
 * which copies them for the store's writer thread (group commit) and returns at once; an ack is
 * released when the points are committed. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "casca_err.h"
#include "clock.h"
#include "hooks.h"

struct lmdb_conn {
    struct tsdb *db;
    struct hook_counters *ctr;
};

struct pending {
    struct hook_counters *ctr; /* one reference, so the hook may be gone when the store answers */
    struct hook_ack *ack;      /* held until the commit */
    size_t n;
};

/* On the store's writer thread. */
static void written(int err, void *arg)
{
    struct pending *p = arg;
    if (err)
        atomic_fetch_add(&p->ctr->errors, 1);
    else
        atomic_fetch_add(&p->ctr->stored, p->n);
    hook_ack_release(p->ack, err, err ? "the store could not commit the points" : NULL);
    hook_counters_unref(p->ctr);
    free(p);
}

static int lmdb_open(const struct hook_config *h, const struct hook_env *env,
                     struct hook_counters *ctr, void **state, char *err, size_t errlen)
{
    if (!env || !env->tsdb) {
        snprintf(err, errlen,
                 "hook %s: connector lmdb needs a local time-series store (in "
                 "casca-hook: server.data_dir)",
                 h->name);
        return CASCA_ERR_CONFIG;
    }
    struct lmdb_conn *c = calloc(1, sizeof(*c));
    if (!c) return CASCA_ERR_NOMEM;
    c->db = env->tsdb;
    c->ctr = ctr;
    *state = c;
    return CASCA_OK;
}

static int queue_points(struct lmdb_conn *c, const struct tsdb_point *pts, size_t n,
                        struct hook_ack *ack)
{
    struct pending *p = malloc(sizeof(*p));
    if (!p) return CASCA_ERR_NOMEM;
    p->ctr = c->ctr;
    p->ack = hook_ack_hold(ack);
    p->n = n;
    atomic_fetch_add(&c->ctr->refs, 1);
    int rc = tsdb_write(c->db, pts, n, written, p);
    if (rc != CASCA_OK) { /* nothing queued: done will not be called; the caller records rc */
        atomic_fetch_sub(&c->ctr->refs, 1);
        hook_ack_release(p->ack, CASCA_OK, NULL);
        free(p);
    }
    return rc;
}

/* tsdb_write takes all of a call or nothing: when it refuses a point, the good ones are written
 * without it and the first reason is reported. */
static int lmdb_write(void *state, const struct tsdb_point *pts, size_t n, struct hook_ack *ack,
                      char *why, size_t whylen)
{
    struct lmdb_conn *c = state;
    int rc = queue_points(c, pts, n, ack);
    if (rc != CASCA_ERR_INVALID) return rc;
    struct tsdb_point *good = malloc(n * sizeof(*good));
    if (!good) return CASCA_ERR_NOMEM;
    size_t ngood = 0;
    bool told = false;
    int64_t now = casca_wall_ns();
    for (size_t i = 0; i < n; i++) {
        char one[200];
        if (tsdb_check_point(c->db, &pts[i], now, one, sizeof(one)) == CASCA_OK)
            good[ngood++] = pts[i];
        else if (!told && (told = true)) /* the first refusal */
            snprintf(why, whylen, "series %s: %s", pts[i].series, one);
    }
    int wrc = ngood ? queue_points(c, good, ngood, ack) : CASCA_OK;
    free(good);
    return wrc == CASCA_OK ? CASCA_ERR_INVALID : wrc;
}

static uint64_t lmdb_flush(void *state, bool force)
{
    (void)state; /* the store's writer commits on its own */
    (void)force;
    return UINT64_MAX;
}

static void lmdb_close(void *state)
{
    free(state);
}

const struct hook_connector_ops hook_connector_lmdb = {
    .name = "lmdb",
    .open = lmdb_open,
    .write = lmdb_write,
    .flush = lmdb_flush,
    .close = lmdb_close,
    .any_thread = true, /* tsdb_write is thread-safe and only queues */
};
