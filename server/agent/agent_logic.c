#include "agent_logic.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "casca_err.h"
#include "timeconv.h"

#define KEEPALIVE_PERIODS 3
#define KEEPALIVE_EXTRA_NS (5000 * AGENT_MS)

/* ---- Hello ---- */

static bool name_ok(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len > AGENT_NAME_MAX_LEN) return false;
    for (const unsigned char *p = (const unsigned char *)n; *p; p++)
        if (*p < 0x20 || *p == 0x7f) return false;
    return true;
}

int agent_hello_check(const Casca__V1__Hello *h, int64_t *period_ns, char *why, size_t whylen)
{
    if (!name_ok(h->agent_name)) {
        snprintf(why, whylen,
                 "Hello.agent_name must be 1 to %d printable bytes: name the agent (it is shown "
                 "in the audit log as changed_by)",
                 AGENT_NAME_MAX_LEN);
        return CASCA_ERR_INVALID;
    }
    if (h->mode < CASCA__V1__AGENT_MODE__AGENT_MODE_CONTROL ||
        h->mode > CASCA__V1__AGENT_MODE__AGENT_MODE_OBSERVE) {
        snprintf(why, whylen,
                 "Hello.mode must be AGENT_MODE_CONTROL, AGENT_MODE_SHADOW or "
                 "AGENT_MODE_OBSERVE");
        return CASCA_ERR_INVALID;
    }
    const Google__Protobuf__Duration *d = h->period;
    /* seconds bounded first, so the sum cannot overflow */
    int64_t max_s = AGENT_MAX_PERIOD_NS / 1000000000;
    bool sane = !d || (d->seconds >= -1 && d->seconds <= max_s + 1);
    int64_t p = d && sane ? casca_ns_of(d->seconds, d->nanos) : 0;
    if (sane && p == 0) p = AGENT_DEFAULT_PERIOD_NS;
    if (!sane || p < AGENT_MIN_PERIOD_NS || p > AGENT_MAX_PERIOD_NS) {
        snprintf(why, whylen, "Hello.period must be between 100 ms and 1 h (or unset for 1 s)");
        return CASCA_ERR_INVALID;
    }
    if (strlen(h->zone) > AGENT_ZONE_MAX_LEN) {
        snprintf(why, whylen, "Hello.zone is too long: use a zone code such as AT or DE");
        return CASCA_ERR_INVALID;
    }
    *period_ns = p;
    return CASCA_OK;
}

/* ---- leases ---- */

struct lease {
    const char *id, *holder_name; /* borrowed from the holder */
    const void *holder;
};

struct agent_leases {
    pthread_mutex_t lock;
    struct lease *v;
    size_t n;
};

struct agent_leases *agent_leases_create(void)
{
    struct agent_leases *l = calloc(1, sizeof(*l));
    if (l) pthread_mutex_init(&l->lock, NULL);
    return l;
}

void agent_leases_destroy(struct agent_leases *l)
{
    if (!l) return;
    pthread_mutex_destroy(&l->lock);
    free(l->v);
    free(l);
}

static const struct lease *held_locked(const struct agent_leases *l, const char *id)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].id, id)) return &l->v[i];
    return NULL;
}

int agent_leases_acquire(struct agent_leases *l, const void *holder, const char *holder_name,
                         char *const *ids, size_t n, char *why, size_t whylen)
{
    int rc = CASCA_OK;
    pthread_mutex_lock(&l->lock);
    for (size_t k = 0; k < n && rc == CASCA_OK; k++) {
        const struct lease *x = held_locked(l, ids[k]);
        if (x && x->holder != holder) {
            snprintf(why, whylen,
                     "setting '%s' is already leased by agent '%s' in CONTROL mode: only one "
                     "CONTROL agent may hold a setting; retry when it ends, or open a SHADOW or "
                     "OBSERVE session",
                     ids[k], x->holder_name);
            rc = CASCA_ERR_PRECONDITION;
        }
    }
    struct lease *g = rc == CASCA_OK && n ? realloc(l->v, (l->n + n) * sizeof(*g)) : NULL;
    if (rc == CASCA_OK && n && !g) {
        snprintf(why, whylen, "out of memory");
        rc = CASCA_ERR_NOMEM;
    }
    if (rc == CASCA_OK && n) {
        l->v = g;
        for (size_t k = 0; k < n; k++)
            if (!held_locked(l, ids[k])) l->v[l->n++] = (struct lease){ids[k], holder_name, holder};
    }
    pthread_mutex_unlock(&l->lock);
    return rc;
}

int agent_leases_check(struct agent_leases *l, const char *id, const void *holder, char *why,
                       size_t whylen)
{
    int rc = CASCA_OK;
    pthread_mutex_lock(&l->lock);
    const struct lease *x = held_locked(l, id);
    if (x && x->holder != holder) {
        snprintf(why, whylen,
                 "setting '%s' is leased by agent '%s' (a CONTROL session): changes wait until "
                 "that session ends",
                 id, x->holder_name);
        rc = CASCA_ERR_PRECONDITION;
    }
    pthread_mutex_unlock(&l->lock);
    return rc;
}

void agent_leases_release(struct agent_leases *l, const void *holder)
{
    pthread_mutex_lock(&l->lock);
    size_t w = 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].holder != holder) l->v[w++] = l->v[i];
    l->n = w;
    pthread_mutex_unlock(&l->lock);
}

/* ---- rate limit ---- */

bool agent_rate_take(struct agent_rate *r, int64_t now_ns, int64_t period_ns)
{
    if (now_ns - r->window_start_ns >= period_ns) {
        r->window_start_ns = now_ns;
        r->count = 0;
    }
    return ++r->count <= AGENT_MAX_ACTIONS_PER_PERIOD;
}

/* ---- the state clock ---- */

void agent_clock_start(struct agent_clock *c, int64_t period_ns, uint64_t after_seq, int64_t now_ns)
{
    *c = (struct agent_clock){.period_ns = period_ns, .next_tick_ns = now_ns, .seq = after_seq};
}

bool agent_clock_tick(struct agent_clock *c, int64_t now_ns)
{
    if (now_ns < c->next_tick_ns) return false;
    c->seq++;
    if (c->pending) c->missed++;
    c->pending = true;
    c->next_tick_ns += c->period_ns;
    if (c->next_tick_ns <= now_ns) /* late: keep the cadence from now */
        c->next_tick_ns = now_ns + c->period_ns;
    return true;
}

void agent_clock_sent(struct agent_clock *c)
{
    c->pending = false;
    c->missed = 0;
}

int64_t agent_clock_due(const struct agent_clock *c, int64_t now_ns)
{
    int64_t due = c->next_tick_ns;
    if (c->pending && now_ns + AGENT_RETRY_NS < due) due = now_ns + AGENT_RETRY_NS;
    return due;
}

int64_t agent_keepalive_ns(int64_t period_ns)
{
    return KEEPALIVE_PERIODS * period_ns + KEEPALIVE_EXTRA_NS;
}

/* ---- trajectories ---- */

int agent_key_action(char *buf, size_t len, const char *sid, uint64_t seq, uint64_t k)
{
    return snprintf(buf, len, "%s/%016" PRIx64 "/A%08" PRIx64, sid, seq, k);
}

int agent_key_state(char *buf, size_t len, const char *sid, uint64_t seq)
{
    return snprintf(buf, len, "%s/%016" PRIx64 "/S", sid, seq);
}

static bool hex_run(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (d < 0) return false;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return true;
}

bool agent_key_parse(const char *key, size_t keylen, size_t prefixlen, uint64_t *seq,
                     bool *is_state)
{
    if (keylen < prefixlen + 18) return false;
    const char *p = key + prefixlen, *end = key + keylen;
    uint64_t k;
    if (!hex_run(p, 16, seq) || p[16] != '/') return false;
    p += 17;
    if (end - p == 1 && *p == 'S') {
        *is_state = true;
        return true;
    }
    *is_state = false;
    return end - p == 9 && *p == 'A' && hex_run(p + 1, 8, &k);
}

uint8_t *agent_record_pack(int64_t time_ns, const ProtobufCMessage *msg, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(8 + n);
    if (!buf) return NULL;
    memcpy(buf, &time_ns, 8);
    protobuf_c_message_pack(msg, buf + 8);
    *len = 8 + n;
    return buf;
}

bool agent_record_time(const void *val, size_t len, int64_t *time_ns)
{
    if (len < 8) return false;
    memcpy(time_ns, val, 8);
    return true;
}
