#include "watch.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "casca_err.h"
#include "clock.h"

#define FULL_RETRY_NS (20 * 1000000LL) /* a watch whose send queue was full retries this often */
#define NEVER INT64_MAX

struct slot {
    char *id;
    uint32_t hash;        /* of id */
    bool pending;         /* value is newer than what was sent */
    int64_t sent_mono_ns; /* when this key last went out; 0 = never */
    alignas(max_align_t) unsigned char value[];
};

struct watch {
    struct watch_hub *hub;
    struct rpc_ctx *ctx;
    int refs;   /* the hub's list's and the opener's; under hub->lock */
    bool dead;  /* the call is over: never touch ctx again */
    bool ready; /* watch_start ran; until then values only fill slots */
    bool all;   /* takes keys first published later */
    int64_t min_interval_ns;
    struct slot **slots; /* in the order they were made */
    size_t nslots;
    struct slot **index; /* open addressing by hash, index_cap (a power of 2) > 2 x nslots */
    size_t index_cap;
    size_t npending; /* slots pending: the flusher skips a watch with none */
    struct watch *prev, *next;
};

struct watch_hub {
    const struct watch_ops *ops;
    void *arg; /* for ops->keyed and ops->unkeyed */
    pthread_mutex_t lock; /* the list, every watch and slot, stopping */
    pthread_cond_t wake;  /* CLOCK_MONOTONIC */
    struct watch *head;
    bool stopping;
    pthread_t flusher;
};

/* ---- slots ---- */

static void slot_free(const struct watch_hub *h, struct slot *s)
{
    if (!s) return;
    if (h->ops->clear) h->ops->clear(s->value);
    if (h->ops->unkeyed) h->ops->unkeyed(h->arg, s->id);
    free(s->id);
    free(s);
}

static uint32_t hash_of(const char *id)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

/* A watch finds a key's slot by hash: every published value looks one up in every watch, and a
 * watch of all of 1,000 SLOs would otherwise compare up to 1,000 ids each time. */
static struct slot *slot_find(const struct watch *w, const char *id, uint32_t hash)
{
    if (!w->index_cap) return NULL;
    for (size_t i = hash & (w->index_cap - 1);; i = (i + 1) & (w->index_cap - 1)) {
        struct slot *s = w->index[i];
        if (!s) return NULL;
        if (s->hash == hash && !strcmp(s->id, id)) return s;
    }
}

static void index_put(struct slot **index, size_t cap, struct slot *s)
{
    size_t i = s->hash & (cap - 1);
    while (index[i])
        i = (i + 1) & (cap - 1);
    index[i] = s;
}

/* Makes the slot for id (not in w yet), with room in slots and index; NULL when out of memory. */
static struct slot *slot_add(struct watch *w, const char *id, uint32_t hash)
{
    const struct watch_hub *h = w->hub;
    if ((w->nslots + 1) * 2 >= w->index_cap) {
        size_t cap = w->index_cap ? w->index_cap * 2 : 16;
        struct slot **index = calloc(cap, sizeof(*index));
        if (!index) return NULL;
        for (size_t i = 0; i < w->nslots; i++)
            index_put(index, cap, w->slots[i]);
        free(w->index);
        w->index = index;
        w->index_cap = cap;
    }
    struct slot **grown = realloc(w->slots, (w->nslots + 1) * sizeof(*grown));
    if (!grown) return NULL;
    w->slots = grown;
    struct slot *s = calloc(1, sizeof(*s) + h->ops->value_size);
    if (s && !(s->id = strdup(id))) {
        free(s);
        return NULL;
    }
    if (!s) return NULL;
    s->hash = hash;
    if (h->ops->keyed) h->ops->keyed(h->arg, id);
    w->slots[w->nslots++] = s;
    index_put(w->index, w->index_cap, s);
    return s;
}

static void unref_locked(struct watch *w)
{
    if (--w->refs > 0) return;
    for (size_t i = 0; i < w->nslots; i++)
        slot_free(w->hub, w->slots[i]);
    free(w->slots);
    free(w->index);
    free(w);
}

static void set_pending(struct watch *w, struct slot *s)
{
    if (!s->pending) w->npending++;
    s->pending = true;
}

/* Sends s if its interval has passed and the call's queue has room. Returns when it wants to be
 * tried again (NEVER: sent, or nothing to send). Under the lock. */
static int64_t send_slot(struct watch *w, struct slot *s, int64_t now, bool *full)
{
    const struct watch_ops *ops = w->hub->ops;
    if (!s->pending || w->dead) return NEVER;
    int64_t at = s->sent_mono_ns && w->min_interval_ns ? s->sent_mono_ns + w->min_interval_ns : 0;
    if (at > now) return at; /* held back by min_interval */
    if (!*full && ops->send(w->ctx, s->id, s->value) != CASCA_ERR_FULL) {
        s->pending = false; /* sent, or the call is over (the cancel drops the watch) */
        w->npending--;
        s->sent_mono_ns = now;
        if (ops->clear) ops->clear(s->value);
        return NEVER;
    }
    *full = true; /* stays pending: later values overwrite it */
    return now + FULL_RETRY_NS;
}

/* Sends w's pending values whose interval has passed, in slot order, until the queue is full.
 * Returns when it wants to run again (NEVER: nothing pending). Under the lock. */
static int64_t flush_locked(struct watch *w, int64_t now)
{
    int64_t due = NEVER;
    bool full = false;
    for (size_t i = 0; i < w->nslots && w->npending && !w->dead; i++) {
        int64_t at = send_slot(w, w->slots[i], now, &full);
        due = at < due ? at : due;
    }
    return due;
}

static void *flusher_main(void *arg)
{
    struct watch_hub *h = arg;
    pthread_mutex_lock(&h->lock);
    while (!h->stopping) {
        int64_t now = casca_mono_ns(), due = NEVER;
        for (struct watch *w = h->head; w; w = w->next)
            if (w->ready && w->npending) {
                int64_t d = flush_locked(w, now);
                due = d < due ? d : due;
            }
        if (due == NEVER) {
            pthread_cond_wait(&h->wake, &h->lock);
            continue;
        }
        casca_cond_wait_until(&h->wake, &h->lock, due);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

/* ---- the hub ---- */

struct watch_hub *watch_hub_create(const struct watch_ops *ops, void *arg)
{
    struct watch_hub *h = calloc(1, sizeof(*h));
    if (!h) return NULL;
    h->ops = ops;
    h->arg = arg;
    pthread_mutex_init(&h->lock, NULL);
    casca_cond_init_mono(&h->wake);
    if (pthread_create(&h->flusher, NULL, flusher_main, h) != 0) {
        pthread_cond_destroy(&h->wake);
        pthread_mutex_destroy(&h->lock);
        free(h);
        return NULL;
    }
    return h;
}

void watch_hub_destroy(struct watch_hub *h)
{
    if (!h) return;
    pthread_mutex_lock(&h->lock);
    h->stopping = true;
    pthread_cond_signal(&h->wake);
    pthread_mutex_unlock(&h->lock);
    pthread_join(h->flusher, NULL);
    while (h->head) { /* none after rpc_server_destroy; defensive */
        struct watch *w = h->head;
        h->head = w->next;
        w->refs = 1;
        unref_locked(w);
    }
    pthread_cond_destroy(&h->wake);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

/* ---- one watch ---- */

static void cancelled(struct rpc_ctx *ctx, void *arg)
{
    struct watch *w = arg;
    struct watch_hub *h = w->hub;
    pthread_mutex_lock(&h->lock);
    if (w->prev)
        w->prev->next = w->next;
    else
        h->head = w->next;
    if (w->next) w->next->prev = w->prev;
    w->dead = true;
    unref_locked(w);
    pthread_mutex_unlock(&h->lock);
    rpc_finish(ctx, CASCA_ERR_CANCELLED, "watch ended");
}

struct watch *watch_open(struct watch_hub *h, struct rpc_ctx *ctx, const char *const *ids, size_t n,
                         bool all, int64_t min_interval_ns)
{
    struct watch *w = calloc(1, sizeof(*w));
    if (!w) return NULL;
    *w = (struct watch){
        .hub = h, .ctx = ctx, .refs = 2, .all = all, .min_interval_ns = min_interval_ns};
    for (size_t i = 0; i < n; i++) {
        uint32_t hash = hash_of(ids[i]);
        if (slot_find(w, ids[i], hash)) continue;
        if (!slot_add(w, ids[i], hash)) {
            w->refs = 1;
            unref_locked(w); /* not shared yet: no lock needed */
            return NULL;
        }
    }
    /* listed before the caller reads the current values, so no change falls in between */
    pthread_mutex_lock(&h->lock);
    w->next = h->head;
    if (h->head) h->head->prev = w;
    h->head = w;
    pthread_mutex_unlock(&h->lock);
    rpc_on_cancel(ctx, cancelled, w);
    return w;
}

void watch_seed(struct watch *w, const char *id, watch_fill_fn fill, void *arg)
{
    pthread_mutex_lock(&w->hub->lock);
    struct slot *s = w->dead ? NULL : slot_find(w, id, hash_of(id));
    if (s && !s->pending && fill(s->value, arg) == CASCA_OK) set_pending(w, s);
    pthread_mutex_unlock(&w->hub->lock);
}

void watch_start(struct watch *w)
{
    struct watch_hub *h = w->hub;
    pthread_mutex_lock(&h->lock);
    if (!w->dead) {
        w->ready = true;
        if (flush_locked(w, casca_mono_ns()) != NEVER) pthread_cond_signal(&h->wake);
    }
    unref_locked(w);
    pthread_mutex_unlock(&h->lock);
}

void watch_publish(struct watch_hub *h, const char *id, bool create, watch_fill_fn fill, void *arg)
{
    int64_t now = casca_mono_ns();
    uint32_t hash = hash_of(id);
    bool wake = false;
    pthread_mutex_lock(&h->lock);
    for (struct watch *w = h->head; w; w = w->next) {
        struct slot *s = slot_find(w, id, hash);
        if (!s && create && w->all) s = slot_add(w, id, hash);
        if (!s || fill(s->value, arg) != CASCA_OK) continue;
        set_pending(w, s);
        /* only this key: the flusher sends what waits behind a full queue or an interval */
        bool full = false;
        if (w->ready) wake |= send_slot(w, s, now, &full) != NEVER;
    }
    if (wake) pthread_cond_signal(&h->wake);
    pthread_mutex_unlock(&h->lock);
}
