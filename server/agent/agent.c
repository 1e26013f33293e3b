#include "agent.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent_logic.h"
#include "carbon.h"
#include "casca/v1/admin.pb-c.h"
#include "casca/v1/agent.pb-c.h"
#include "casca_err.h"
#include "clock.h"
#include "config.h"
#include "control.h"
#include "ctl.h"
#include "kv.h"
#include "log.h"
#include "slo_service.h"
#include "slo_engine.h"
#include "timeconv.h"

#define MS AGENT_MS
#define MAX_HELD 64                    /* results waiting for room in a stream before it is closed */
#define HELD_MAX_NS (10000 * MS)       /* an agent that reads nothing for this long is dropped */
#define ACTION_DEADLINE_NS (5000 * MS) /* bound on one change reaching the managed service */
#define MAX_SLEEP_NS (1000 * MS)       /* the timer looks at every session at least this often */
#define REAP INT64_MIN                 /* visit's answer for a session that is over */
#define MSG_LEN 512

typedef Casca__V1__AgentMessage AgentMessage;
typedef Casca__V1__ControlMessage ControlMessage;
typedef Casca__V1__SloStatus SloStatus;

static const char *const mode_names[] = {"UNSPECIFIED", "CONTROL", "SHADOW", "OBSERVE"};

/* ---- one session ---- */

/* An ActionResult the transport had no room for, packed, waiting its turn (oldest first). */
struct held {
    struct held *next;
    size_t len;
    uint8_t buf[];
};

struct sess {
    struct agent *a;
    struct rpc_ctx *ctx;
    atomic_int refs; /* the call's (rpc_set_data) and the session list's */
    /* immutable once hello_done */
    char id[32];
    char name[AGENT_NAME_MAX_LEN + 1];
    int mode;
    char zone[AGENT_ZONE_MAX_LEN + 1];      /* asked for; "" = default */
    char zone_name[AGENT_ZONE_MAX_LEN + 1]; /* what the states name */
    char **slos, **settings, **leased;
    size_t nslos, nsettings, nleased;
    int64_t period_ns;
    int64_t since_ns;
    size_t watching; /* settings[0..watching) are kept fresh by ctl for this session */
    /* under agent.lock, or the timer's while it visits */
    int64_t due_ns; /* when the timer looks at it next */
    struct sess *next;
    /* under lock */
    pthread_mutex_t lock;
    bool hello_done, done;
    struct agent_clock clock;
    int64_t pending_time_ns; /* wall clock of the pending state */
    int64_t last_msg_mono;
    struct agent_rate rate;
    struct held *held, *held_tail;
    unsigned nheld;
    int64_t held_since_mono; /* when the transport last refused or took a held result */
    uint64_t states_sent, actions_received, actions_applied, actions_seen;
};

struct agent {
    struct ctl *ctl;
    struct slo_service *slo;
    struct carbon *carbon;
    struct config_live *live;
    struct store *store;
    struct kv *sessions_db, *steps_db;
    pthread_mutex_t lock; /* the session list, the timer's heap, stopping */
    pthread_cond_t wake;
    struct sess *head;
    size_t nsess;
    struct sess **heap; /* min-heap on due_ns of the listed sessions the timer is not visiting */
    size_t nheap, cap;  /* cap >= nsess */
    bool stopping;
    pthread_t timer;
    bool timer_started, listening;
    struct agent_leases *leases;
    atomic_uint counter;
    atomic_ulong record_failures;
};

/* ---- small helpers ---- */

static void ts_of(int64_t ns, Google__Protobuf__Timestamp *t)
{
    google__protobuf__timestamp__init(t);
    casca_timestamp_parts(ns, &t->seconds, &t->nanos);
}

static int64_t ns_of_ts(const Google__Protobuf__Timestamp *t, int64_t if_unset)
{
    return t ? casca_ns_of(t->seconds, t->nanos) : if_unset;
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static bool strv_has(char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i], s)) return true;
    return false;
}

/* Appends a copy of s unless present. */
static int strv_add(char ***v, size_t *n, const char *s)
{
    if (strv_has(*v, *n, s)) return CASCA_OK;
    char **g = realloc(*v, (*n + 1) * sizeof(*g));
    if (!g) return CASCA_ERR_NOMEM;
    *v = g;
    if (!(g[*n] = strdup(s))) return CASCA_ERR_NOMEM;
    (*n)++;
    return CASCA_OK;
}

static void record(struct agent *a, struct kv *db, const char *key, int64_t t_ns,
                   const ProtobufCMessage *msg)
{
    size_t len = 0;
    uint8_t *buf = agent_record_pack(t_ns, msg, &len);
    if (!buf || kv_put_async(db, key, strlen(key), buf, len, NULL, NULL) != CASCA_OK) {
        unsigned long n = atomic_fetch_add(&a->record_failures, 1);
        if ((n & (n + 1)) == 0) /* 1st, 2nd, 4th, ... failure */
            log_warn("agent",
                     "could not record a trajectory step (%lu so far): the store's "
                     "write queue is full or memory is short",
                     n + 1);
    }
    free(buf);
}

/* ---- leases ---- */

/* ctl's hook: a leased setting may be changed only by its holder; shadow sessions never apply,
 * so they pass (ctl validates and audits their changes as SHADOW). */
static int lease_hook(void *arg, const char *setting_id, const char *caller, const void *session,
                      char *why, size_t whylen)
{
    (void)caller;
    struct agent *a = arg;
    const struct sess *s = session;
    if (s && s->mode == CASCA__V1__AGENT_MODE__AGENT_MODE_SHADOW) return CASCA_OK;
    return agent_leases_check(a->leases, setting_id, s, why, whylen);
}

/* ---- session lifetime ---- */

static void held_free(struct sess *s)
{
    while (s->held) {
        struct held *h = s->held;
        s->held = h->next;
        free(h);
    }
    s->held_tail = NULL;
    s->nheld = 0;
}

static void sess_unref(void *arg)
{
    struct sess *s = arg;
    if (atomic_fetch_sub(&s->refs, 1) != 1) return;
    for (size_t i = 0; i < s->watching; i++)
        ctl_unwatch(s->a->ctl, s->settings[i], s->period_ns);
    strv_free(s->slos, s->nslos);
    strv_free(s->settings, s->nsettings);
    strv_free(s->leased, s->nleased);
    held_free(s);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static void session_info(const struct sess *s, Casca__V1__AgentSessionInfo *info,
                         Google__Protobuf__Timestamp *since)
{
    casca__v1__agent_session_info__init(info);
    info->session_id = (char *)s->id;
    info->agent_name = (char *)s->name;
    info->mode = (Casca__V1__AgentMode)s->mode;
    info->n_leased_setting_ids = s->nleased;
    info->leased_setting_ids = s->leased;
    ts_of(s->since_ns, since);
    info->since = since;
    info->states_sent = s->states_sent;
    info->actions_received = s->actions_received;
    info->actions_applied = s->actions_applied;
}

/* Ends the session once: releases its leases, records it, finishes the call. s->lock held. */
static void end_locked(struct sess *s, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void end_locked(struct sess *s, int err, const char *fmt, ...)
{
    if (s->done) return;
    s->done = true;
    agent_leases_release(s->a->leases, s);
    held_free(s);
    if (s->hello_done) {
        Casca__V1__AgentSessionInfo info;
        Google__Protobuf__Timestamp since;
        session_info(s, &info, &since);
        record(s->a, s->a->sessions_db, s->id, casca_wall_ns(), &info.base);
        log_info("agent", "session %s of agent '%s' (%s) ended: %llu states, %llu actions", s->id,
                 s->name, mode_names[s->mode], (unsigned long long)s->states_sent,
                 (unsigned long long)s->actions_received);
    }
    va_list ap;
    va_start(ap, fmt);
    rpc_vfinish(s->ctx, err, fmt, ap);
    va_end(ap);
}

static void on_cancel(struct rpc_ctx *ctx, void *arg)
{
    (void)ctx;
    struct sess *s = arg;
    pthread_mutex_lock(&s->lock);
    end_locked(s, CASCA_ERR_CANCELLED, "the session was cancelled");
    pthread_mutex_unlock(&s->lock);
}

/* Sends what results are held, oldest first, until the transport is full; an agent that has read
 * nothing for HELD_MAX_NS is dropped. s->lock held; never blocks. */
static void flush_held_locked(struct sess *s, int64_t now)
{
    while (s->held && !s->done) {
        struct held *h = s->held;
        ControlMessage *m = casca__v1__control_message__unpack(NULL, h->len, h->buf);
        int rc = m ? rpc_send(s->ctx, &m->base) : CASCA_ERR_NOMEM;
        if (m) casca__v1__control_message__free_unpacked(m, NULL);
        if (rc == CASCA_ERR_FULL) {
            if (now - s->held_since_mono > HELD_MAX_NS)
                end_locked(s, CASCA_ERR_FULL,
                           "the agent has not read its stream for %lld s: the session is "
                           "closed; read states and results promptly",
                           (long long)(HELD_MAX_NS / 1000000000));
            return;
        }
        s->held = h->next;
        if (!s->held) s->held_tail = NULL;
        s->nheld--;
        s->held_since_mono = now;
        free(h);
    }
}

/* Sends msg after the results already held; when the transport has no room, holds it (at most
 * MAX_HELD: then the agent is not reading and the session ends). Never blocks: no thread waits
 * for a slow agent. CASCA_OK when sent or held; otherwise the session is over. s->lock held. */
static int send_result_locked(struct sess *s, const ProtobufCMessage *msg)
{
    if (s->done) return CASCA_ERR_CANCELLED;
    int64_t now = casca_mono_ns();
    if (s->held) flush_held_locked(s, now);
    if (s->done) return CASCA_ERR_CANCELLED;
    if (!s->held) {
        int rc = rpc_send(s->ctx, msg);
        if (rc != CASCA_ERR_FULL) return rc;
        s->held_since_mono = now;
    }
    if (s->nheld >= MAX_HELD) {
        end_locked(s, CASCA_ERR_FULL,
                   "the agent does not read its stream (%d results wait): the session is "
                   "closed; read states and results promptly",
                   MAX_HELD);
        return CASCA_ERR_FULL;
    }
    size_t len = protobuf_c_message_get_packed_size(msg);
    struct held *h = malloc(sizeof(*h) + len);
    if (!h) {
        end_locked(s, CASCA_ERR_NOMEM, "out of memory");
        return CASCA_ERR_NOMEM;
    }
    h->next = NULL;
    h->len = protobuf_c_message_pack(msg, h->buf);
    if (s->held_tail)
        s->held_tail->next = h;
    else
        s->held = h;
    s->held_tail = h;
    s->nheld++;
    return CASCA_OK;
}

/* ---- states ---- */

/* Builds and sends state seq of s if it is still pending and the queue is empty. Timer thread,
 * no lock held. */
static void send_state(struct sess *s)
{
    struct agent *a = s->a;
    pthread_mutex_lock(&s->lock);
    bool go = !s->done && s->clock.pending && !s->held && rpc_send_pending(s->ctx) == 0;
    uint64_t seq = s->clock.seq;
    uint32_t missed = s->clock.missed;
    int64_t t = s->pending_time_ns;
    pthread_mutex_unlock(&s->lock);
    if (!go) return;

    Casca__V1__State st = CASCA__V1__STATE__INIT;
    Google__Protobuf__Timestamp at;
    Casca__V1__CarbonState carbon = CASCA__V1__CARBON_STATE__INIT;
    SloStatus **slos = calloc(s->nslos ? s->nslos : 1, sizeof(*slos));
    struct control_sv *svs = calloc(s->nsettings ? s->nsettings : 1, sizeof(*svs));
    Casca__V1__SettingValue **svp = calloc(s->nsettings ? s->nsettings : 1, sizeof(*svp));
    struct ctl_reading *rs = calloc(s->nsettings ? s->nsettings : 1, sizeof(*rs));
    if (!slos || !svs || !svp || !rs) goto out;
    st.seq = seq;
    ts_of(t, &at);
    st.time = &at;
    st.missed = missed;
    double footprint = 0;
    bool has_footprint = false;
    for (size_t i = 0; i < s->nslos; i++) {
        if (slo_service_public_status(a->slo, s->slos[i], true, &slos[st.n_slos]) != CASCA_OK)
            continue; /* removed by a reload */
        SloStatus *x = slos[st.n_slos++];
        if (!has_footprint && x->slo && x->has_value &&
            x->slo->kind == CASCA__V1__SLO_KIND__SLO_KIND_CARBON_FOOTPRINT) {
            footprint = x->value;
            has_footprint = true;
        }
    }
    st.slos = slos;
    for (size_t i = 0; i < s->nsettings; i++) {
        ctl_peek(a->ctl, s->settings[i], &rs[i]); /* a reading, or why there is none */
        control_setting_value(s->settings[i], &rs[i], &svs[i]);
        svp[i] = &svs[i].sv;
    }
    st.n_settings = s->nsettings;
    st.settings = svp;
    struct carbon_figure fig;
    char replay[96];
    Google__Protobuf__Timestamp carbon_at; /* the carbon clock's hour (replay.h) */
    int64_t ct = carbon_replay_time(a->carbon, t, NULL, replay, sizeof(replay));
    ts_of(ct, &carbon_at);
    carbon.time = &carbon_at;
    carbon.note = replay;
    if (carbon_intensity_at(a->carbon, s->zone, ct, &fig) == CASCA_OK) {
        carbon.intensity_gco2eq_per_kwh = fig.gco2eq_per_kwh;
        if (has_footprint && fig.gco2eq_per_kwh > 0) {
            carbon.footprint_mg_per_min = footprint;
            carbon.power_w = footprint * 60.0 / fig.gco2eq_per_kwh;
        }
    }
    carbon.zone = s->zone_name;
    st.carbon = &carbon;

    ControlMessage m = CASCA__V1__CONTROL_MESSAGE__INIT;
    m.msg_case = CASCA__V1__CONTROL_MESSAGE__MSG_STATE;
    m.state = &st;
    pthread_mutex_lock(&s->lock);
    if (!s->done && s->clock.pending && s->clock.seq == seq && rpc_send(s->ctx, &m.base) == CASCA_OK) {
        agent_clock_sent(&s->clock);
        s->states_sent++;
        char key[80];
        agent_key_state(key, sizeof(key), s->id, seq);
        record(a, a->steps_db, key, t, &st.base);
    }
    pthread_mutex_unlock(&s->lock);
out:
    for (size_t i = 0; slos && i < st.n_slos; i++)
        casca__v1__slo_status__free_unpacked(slos[i], NULL);
    for (size_t i = 0; rs && i < s->nsettings; i++)
        ctl_reading_clear(&rs[i]);
    free(slos);
    free(svs);
    free(svp);
    free(rs);
}

/* ---- the timer: a min-heap of sessions on when each is next due ---- */

static bool heap_less(struct sess *const *h, size_t i, size_t j)
{
    return h[i]->due_ns < h[j]->due_ns;
}

static void heap_swap(struct sess **h, size_t i, size_t j)
{
    struct sess *t = h[i];
    h[i] = h[j];
    h[j] = t;
}

/* Adds s (room is reserved: a->cap >= a->nsess). a->lock held. */
static void heap_push(struct agent *a, struct sess *s)
{
    size_t i = a->nheap++;
    a->heap[i] = s;
    while (i > 0 && heap_less(a->heap, i, (i - 1) / 2)) {
        heap_swap(a->heap, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

/* Removes and returns the session due first. a->lock held, a->nheap > 0. */
static struct sess *heap_pop(struct agent *a)
{
    struct sess *top = a->heap[0];
    a->heap[0] = a->heap[--a->nheap];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < a->nheap && heap_less(a->heap, l, m)) m = l;
        if (r < a->nheap && heap_less(a->heap, r, m)) m = r;
        if (m == i) break;
        heap_swap(a->heap, i, m);
        i = m;
    }
    return top;
}

/* Lists s and hands it to the timer, due now. false when out of memory. a->lock held. */
static bool list_add_locked(struct agent *a, struct sess *s)
{
    if (a->nsess == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 64;
        struct sess **h = realloc(a->heap, cap * sizeof(*h));
        if (!h) return false;
        a->heap = h;
        a->cap = cap;
    }
    s->next = a->head;
    a->head = s;
    a->nsess++;
    s->due_ns = casca_mono_ns();
    heap_push(a, s);
    return true;
}

static void list_remove_locked(struct agent *a, struct sess *s)
{
    struct sess **pp = &a->head;
    while (*pp != s)
        pp = &(*pp)->next;
    *pp = s->next;
    a->nsess--;
}

/* One look at session s: enforces the keepalive, produces a state when one is due, sends held
 * results and the pending state. Returns when it wants the next look (monotonic), or REAP when
 * the session is over. Timer thread, no lock held. */
static int64_t visit(struct sess *s, int64_t now)
{
    bool control = s->mode == CASCA__V1__AGENT_MODE__AGENT_MODE_CONTROL;
    int64_t keepalive = agent_keepalive_ns(s->period_ns);
    pthread_mutex_lock(&s->lock);
    if (!s->done && control && now - s->last_msg_mono > keepalive)
        end_locked(s, CASCA_ERR_TIMEOUT,
                   "no message from the agent for %lld ms (keepalive: 3 periods + 5 s): the "
                   "session and its leases are released; send an Action (it may have no "
                   "changes) at least once per period",
                   (long long)(keepalive / MS));
    if (!s->done && agent_clock_tick(&s->clock, now))
        s->pending_time_ns = casca_wall_ns();
    if (s->held) flush_held_locked(s, now);
    pthread_mutex_unlock(&s->lock);
    send_state(s);
    pthread_mutex_lock(&s->lock);
    int64_t due = agent_clock_due(&s->clock, now);
    if (s->held && now + AGENT_RETRY_NS < due) due = now + AGENT_RETRY_NS;
    if (control && s->last_msg_mono + keepalive + MS < due) due = s->last_msg_mono + keepalive + MS;
    if (due > now + MAX_SLEEP_NS) due = now + MAX_SLEEP_NS; /* so an ended session is reaped */
    if (s->done) due = REAP;
    pthread_mutex_unlock(&s->lock);
    return due;
}

/* Looks at the sessions that are due, outside the agent's lock (Hello, ListAgentSessions and
 * the other sessions go on meanwhile), then sleeps until the next one is due. */
static void *timer_main(void *arg)
{
    struct agent *a = arg;
    struct sess **batch = NULL; /* the sessions being visited: the timer's own */
    size_t bcap = 0;
    pthread_mutex_lock(&a->lock);
    while (!a->stopping) {
        if (bcap < a->nheap) {
            struct sess **g = realloc(batch, a->cap * sizeof(*g));
            if (g) batch = g, bcap = a->cap;
        }
        int64_t now = casca_mono_ns();
        size_t n = 0;
        while (n < bcap && a->nheap && a->heap[0]->due_ns <= now)
            batch[n++] = heap_pop(a);
        if (n == 0) {
            int64_t until = a->nheap ? a->heap[0]->due_ns : now + MAX_SLEEP_NS;
            if (until <= now) until = now + MS; /* due, but no memory for the batch: retry */
            casca_cond_wait_until(&a->wake, &a->lock, until);
            continue;
        }
        pthread_mutex_unlock(&a->lock);
        for (size_t i = 0; i < n; i++)
            batch[i]->due_ns = visit(batch[i], now);
        pthread_mutex_lock(&a->lock);
        for (size_t i = 0; i < n; i++) {
            struct sess *s = batch[i];
            if (s->due_ns != REAP) {
                heap_push(a, s);
                continue;
            }
            list_remove_locked(a, s);
            sess_unref(s);
        }
    }
    pthread_mutex_unlock(&a->lock);
    free(batch);
    return NULL;
}

/* ---- Hello ---- */

/* Fills s from hello or ends the session with the reason. Worker thread, no lock held. */
static void hello(struct agent *a, struct sess *s, const Casca__V1__Hello *h)
{
    char why[MSG_LEN];
    int rc = CASCA_OK;
    pthread_mutex_lock(&s->lock);
#define FAIL(err, ...)                                                                             \
    do {                                                                                           \
        end_locked(s, err, __VA_ARGS__);                                                           \
        goto out;                                                                                  \
    } while (0)
    if (s->done) /* cancelled since the handler looked: take no lease */
        goto out;
    int64_t period;
    if ((rc = agent_hello_check(h, &period, why, sizeof(why))) != CASCA_OK) FAIL(rc, "%s", why);
    snprintf(s->name, sizeof(s->name), "%s", h->agent_name);
    s->mode = h->mode;
    s->period_ns = period;
    snprintf(s->zone, sizeof(s->zone), "%s", h->zone);
    if (*h->zone) {
        struct carbon_figure fig;
        rc = carbon_intensity_at(a->carbon, h->zone,
                                 carbon_replay_time(a->carbon, casca_wall_ns(), NULL, NULL, 0), &fig);
        if (rc == CASCA_ERR_INVALID)
            FAIL(rc, "Hello.zone '%s' is not a zone code (e.g. AT, DE)", h->zone);
        if (rc != CASCA_OK)
            FAIL(CASCA_ERR_NOT_FOUND,
                 "no carbon intensity for zone '%s' now: CarbonService "
                 "names the zones with data; leave zone empty for the "
                 "server's default",
                 h->zone);
        snprintf(s->zone_name, sizeof(s->zone_name), "%s", h->zone);
    } else {
        struct config *c = config_live_get(a->live);
        snprintf(s->zone_name, sizeof(s->zone_name), "%s", carbon_default_zone(c));
        config_unref(c);
    }

    /* SLOs */
    struct slo_view *sv = slo_view_get(slo_service_engine(a->slo));
    for (size_t i = 0; i < h->n_slo_ids && rc == CASCA_OK; i++)
        if (slo_view_find(sv, h->slo_ids[i]) < 0) {
            snprintf(why, sizeof(why), "unknown SLO '%.64s': ListSlos names the SLOs you may read",
                     h->slo_ids[i]);
            rc = CASCA_ERR_NOT_FOUND;
        } else {
            rc = strv_add(&s->slos, &s->nslos, h->slo_ids[i]);
        }
    for (size_t i = 0; !h->n_slo_ids && i < slo_view_count(sv) && rc == CASCA_OK; i++)
        rc = strv_add(&s->slos, &s->nslos, slo_view_def(sv, i)->id);
    slo_view_put(sv);
    if (rc == CASCA_ERR_NOT_FOUND) FAIL(rc, "%s", why);
    /* settings; CONTROL leases the writable ones */
    struct ctl_view *cv = ctl_view_get(a->ctl);
    for (size_t i = 0; i < h->n_setting_ids && rc == CASCA_OK; i++)
        if (ctl_view_find(cv, h->setting_ids[i]) < 0) {
            snprintf(why, sizeof(why),
                     "unknown setting '%.64s': ListSettings names the settings "
                     "you may use",
                     h->setting_ids[i]);
            rc = CASCA_ERR_NOT_FOUND;
        } else {
            rc = strv_add(&s->settings, &s->nsettings, h->setting_ids[i]);
        }
    for (size_t i = 0; !h->n_setting_ids && i < ctl_view_count(cv) && rc == CASCA_OK; i++)
        rc = strv_add(&s->settings, &s->nsettings, ctl_view_at(cv, i)->id);
    for (size_t i = 0;
         i < s->nsettings && rc == CASCA_OK && s->mode == CASCA__V1__AGENT_MODE__AGENT_MODE_CONTROL;
         i++) {
        const struct ctl_public *p = ctl_view_at(cv, (size_t)ctl_view_find(cv, s->settings[i]));
        if (p && !p->read_only) rc = strv_add(&s->leased, &s->nleased, s->settings[i]);
    }
    ctl_view_put(cv);
    if (rc == CASCA_ERR_NOT_FOUND) FAIL(rc, "%s", why);
    if (rc != CASCA_OK) FAIL(rc, "out of memory");
    if ((rc = agent_leases_acquire(a->leases, s, s->name, s->leased, s->nleased, why,
                                   sizeof(why))) != CASCA_OK)
        FAIL(rc, "%s", why);
    s->hello_done = true; /* s's identity is now immutable */
    s->since_ns = casca_wall_ns();
    snprintf(s->id, sizeof(s->id), "as-%013" PRIx64 "%05x", (uint64_t)(s->since_ns / MS),
             atomic_fetch_add(&a->counter, 1) & 0xfffff);
    pthread_mutex_unlock(&s->lock);

    /* ctl keeps the settings fresh for the states from now on; the first state has the current
     * values (may reach the services: worker thread) */
    for (size_t i = 0; i < s->nsettings; i++) {
        struct ctl_reading r;
        bool known = ctl_peek(a->ctl, s->settings[i], &r) == CASCA_OK && r.value.kind != CTL_NONE;
        ctl_reading_clear(&r);
        if (!known &&
            ctl_get(a->ctl, s->settings[i], casca_mono_ns() + ACTION_DEADLINE_NS, &r, why, sizeof(why)) ==
                CASCA_OK)
            ctl_reading_clear(&r);
        s->watching += ctl_watch(a->ctl, s->settings[i], s->period_ns) == CASCA_OK;
    }

    /* Welcome: public descriptions only (SloService's and ServiceControl's public fields) */
    Casca__V1__Welcome w = CASCA__V1__WELCOME__INIT;
    SloStatus **sts = calloc(s->nslos ? s->nslos : 1, sizeof(*sts));
    Casca__V1__Slo **slos = calloc(s->nslos ? s->nslos : 1, sizeof(*slos));
    Casca__V1__Setting *set = calloc(s->nsettings ? s->nsettings : 1, sizeof(*set));
    Casca__V1__Setting **setp = calloc(s->nsettings ? s->nsettings : 1, sizeof(*setp));
    Casca__V1__Range *ranges = calloc(s->nsettings ? s->nsettings : 1, sizeof(*ranges));
    Casca__V1__Value **allowedp = NULL, *allowed = NULL;
    cv = ctl_view_get(a->ctl);
    size_t nallowed = 0;
    for (size_t i = 0; i < s->nsettings; i++) {
        long k = ctl_view_find(cv, s->settings[i]);
        nallowed += k >= 0 ? ctl_view_at(cv, (size_t)k)->nallowed : 0;
    }
    allowed = calloc(nallowed + 1, sizeof(*allowed));
    allowedp = calloc(nallowed + 1, sizeof(*allowedp));
    if (!sts || !slos || !set || !setp || !ranges || !allowed || !allowedp) {
        pthread_mutex_lock(&s->lock);
        end_locked(s, CASCA_ERR_NOMEM, "out of memory");
        pthread_mutex_unlock(&s->lock);
        goto welcome_out;
    }
    w.session_id = s->id;
    for (size_t i = 0; i < s->nslos; i++)
        if (slo_service_public_status(a->slo, s->slos[i], false, &sts[w.n_slos]) == CASCA_OK)
            slos[w.n_slos] = sts[w.n_slos]->slo, w.n_slos++;
    w.slos = slos;
    size_t na = 0;
    for (size_t i = 0; i < s->nsettings; i++) {
        long k = ctl_view_find(cv, s->settings[i]);
        if (k < 0) continue;
        const struct ctl_public *p = ctl_view_at(cv, (size_t)k);
        Casca__V1__Setting *x = &set[w.n_settings];
        casca__v1__setting__init(x);
        x->id = (char *)p->id;
        x->description = (char *)p->description;
        x->unit = (char *)p->unit;
        x->type = (Casca__V1__ValueType)p->type;
        x->step = p->step;
        x->read_only = p->read_only;
        if (p->has_min || p->has_max) {
            Casca__V1__Range *r = &ranges[w.n_settings];
            casca__v1__range__init(r);
            if (p->has_min) {
                r->optional_min_case = CASCA__V1__RANGE__OPTIONAL_MIN_MIN;
                r->min = p->min;
            }
            if (p->has_max) {
                r->optional_max_case = CASCA__V1__RANGE__OPTIONAL_MAX_MAX;
                r->max = p->max;
            }
            x->range = r;
        }
        x->allowed = &allowedp[na];
        x->n_allowed = p->nallowed;
        for (size_t j = 0; j < p->nallowed; j++, na++) {
            ctl_value_to_pb(&p->allowed[j], &allowed[na]);
            allowedp[na] = &allowed[na];
        }
        setp[w.n_settings++] = x;
    }
    w.settings = setp;
    w.n_leased_setting_ids = s->nleased;
    w.leased_setting_ids = s->leased;
    ControlMessage m = CASCA__V1__CONTROL_MESSAGE__INIT;
    m.msg_case = CASCA__V1__CONTROL_MESSAGE__MSG_WELCOME;
    m.welcome = &w;
    pthread_mutex_lock(&s->lock);
    bool listed = false;
    if (send_result_locked(s, &m.base) == CASCA_OK) {
        int64_t now = casca_mono_ns();
        agent_clock_start(&s->clock, s->period_ns, h->resume_after_seq, now); /* a state now */
        s->last_msg_mono = now;
        s->rate.window_start_ns = now;
        Casca__V1__AgentSessionInfo info;
        Google__Protobuf__Timestamp since;
        session_info(s, &info, &since);
        record(a, a->sessions_db, s->id, s->since_ns, &info.base);
        log_info("agent",
                 "session %s: agent '%s' (caller %s) in %s mode, %zu SLOs, %zu "
                 "settings, %zu leased, period %lld ms",
                 s->id, s->name, rpc_caller_name(s->ctx), mode_names[s->mode], s->nslos,
                 s->nsettings, s->nleased, (long long)(s->period_ns / MS));
        listed = true;
    }
    pthread_mutex_unlock(&s->lock);
    if (listed) {
        atomic_fetch_add(&s->refs, 1);
        pthread_mutex_lock(&a->lock);
        bool added = list_add_locked(a, s);
        pthread_cond_signal(&a->wake);
        pthread_mutex_unlock(&a->lock);
        if (!added) {
            pthread_mutex_lock(&s->lock);
            end_locked(s, CASCA_ERR_NOMEM, "out of memory");
            pthread_mutex_unlock(&s->lock);
            sess_unref(s);
        }
    }
welcome_out:
    ctl_view_put(cv);
    for (size_t i = 0; sts && i < w.n_slos; i++)
        casca__v1__slo_status__free_unpacked(sts[i], NULL);
    free(sts);
    free(slos);
    free(set);
    free(setp);
    free(ranges);
    free(allowed);
    free(allowedp);
    return;
out:
    pthread_mutex_unlock(&s->lock);
#undef FAIL
}

/* ---- Action ---- */

static void reject(Casca__V1__Rejection *rj, Casca__V1__Rejection **ptr, char *id, char *reason)
{
    casca__v1__rejection__init(rj);
    rj->setting_id = id;
    rj->reason = reason;
    *ptr = rj;
}

static bool known_setting(struct agent *a, const char *id)
{
    struct ctl_view *v = ctl_view_get(a->ctl);
    bool known = ctl_view_find(v, id) >= 0;
    ctl_view_put(v);
    return known;
}

/* An Action whose changes are being applied: its ActionResult is sent when the last change's
 * audit entry is committed (ctl_set_async), so the worker that received it is free meanwhile
 * and the changes of every agent acting at once share one commit. */
struct action_job {
    struct agent *a;
    struct sess *s; /* a reference */
    Casca__V1__Action *act; /* a copy: the received message is freed when the handler returns */
    uint64_t followed;
    bool limited;
    atomic_size_t pending; /* changes in flight, plus one while they are being started */
    struct change_slot {
        struct action_job *job;
        bool applied;
        struct ctl_reading r;
        char why[MSG_LEN];
    } slots[];
};

/* Sends the result and records the step, once every change is answered. Any thread. */
static void action_finish(struct action_job *job)
{
    struct agent *a = job->a;
    struct sess *s = job->s;
    const Casca__V1__Action *act = job->act;
    size_t n = act->n_changes;
    Casca__V1__ActionResult res = CASCA__V1__ACTION_RESULT__INIT;
    res.state_seq = act->state_seq;
    res.nonce = act->nonce;
    struct control_sv *ap = calloc(n + 1, sizeof(*ap));
    Casca__V1__SettingValue **app = calloc(n + 1, sizeof(*app));
    Casca__V1__Rejection *rj = calloc(n + 1, sizeof(*rj));
    Casca__V1__Rejection **rjp = calloc(n + 1, sizeof(*rjp));
    if (!ap || !app || !rj || !rjp) {
        pthread_mutex_lock(&s->lock);
        end_locked(s, CASCA_ERR_NOMEM, "out of memory");
        pthread_mutex_unlock(&s->lock);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        struct change_slot *c = &job->slots[i];
        if (c->applied) {
            control_setting_value(act->changes[i]->id, &c->r, &ap[res.n_applied]);
            app[res.n_applied] = &ap[res.n_applied].sv;
            res.n_applied++;
        } else {
            reject(&rj[res.n_rejected], &rjp[res.n_rejected], act->changes[i]->id, c->why);
            res.n_rejected++;
        }
    }
    res.applied = app;
    res.rejected = rjp;
    ControlMessage m = CASCA__V1__CONTROL_MESSAGE__INIT;
    m.msg_case = CASCA__V1__CONTROL_MESSAGE__MSG_RESULT;
    m.result = &res;
    pthread_mutex_lock(&s->lock);
    if (res.n_rejected == 0 && n > 0 && s->mode == CASCA__V1__AGENT_MODE__AGENT_MODE_CONTROL)
        s->actions_applied++;
    uint64_t k = s->actions_seen++;
    /* Rate-limited actions are answered but not recorded: a flood would otherwise queue the
     * store's one writer, and every caller's audit commit behind it. */
    if ((send_result_locked(s, &m.base) == CASCA_OK || s->done) && !job->limited) {
        Casca__V1__TrajectoryStep step = CASCA__V1__TRAJECTORY_STEP__INIT;
        step.session_id = s->id;
        step.seq = job->followed;
        step.action = job->act;
        step.result = &res;
        char key[80];
        agent_key_action(key, sizeof(key), s->id, job->followed, k);
        record(a, a->steps_db, key, casca_wall_ns(), &step.base);
    }
    pthread_mutex_unlock(&s->lock);
out:
    for (size_t i = 0; i < n; i++)
        ctl_reading_clear(&job->slots[i].r);
    free(ap);
    free(app);
    free(rj);
    free(rjp);
    casca__v1__action__free_unpacked(job->act, NULL);
    sess_unref(s);
    free(job);
}

static void change_done(struct action_job *job)
{
    if (atomic_fetch_sub(&job->pending, 1) == 1) action_finish(job);
}

/* ctl_set_async's answer for one change (on the store's writer thread, or at once). */
static void change_answered(void *arg, int rc, const struct ctl_reading *r, const char *msg)
{
    struct change_slot *c = arg;
    if (rc == CASCA_OK) {
        c->applied = ctl_reading_copy(&c->r, r) == CASCA_OK;
        if (!c->applied) snprintf(c->why, MSG_LEN, "out of memory");
    } else {
        snprintf(c->why, MSG_LEN, "%s", msg);
    }
    change_done(c->job);
}

/* A copy of act that outlives the received message. */
static Casca__V1__Action *copy_action(const Casca__V1__Action *act)
{
    size_t len = casca__v1__action__get_packed_size(act);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) return NULL;
    casca__v1__action__pack(act, buf);
    Casca__V1__Action *copy = casca__v1__action__unpack(NULL, len, buf);
    free(buf);
    return copy;
}

static void action(struct agent *a, struct sess *s, const Casca__V1__Action *act_in)
{
    size_t n = act_in->n_changes;
    int64_t now = casca_mono_ns();
    pthread_mutex_lock(&s->lock);
    s->actions_received++;
    bool limited = !agent_rate_take(&s->rate, now, s->period_ns);
    /* the last State sent: a produced one may still be pending, after those coalesced away */
    uint64_t last_seq = s->clock.pending ? s->clock.seq - 1 - s->clock.missed : s->clock.seq;
    pthread_mutex_unlock(&s->lock);

    struct action_job *job = calloc(1, sizeof(*job) + (n + 1) * sizeof(job->slots[0]));
    Casca__V1__Action *act = job ? copy_action(act_in) : NULL;
    if (!act) {
        free(job);
        pthread_mutex_lock(&s->lock);
        end_locked(s, CASCA_ERR_NOMEM, "out of memory");
        pthread_mutex_unlock(&s->lock);
        return;
    }
    atomic_fetch_add(&s->refs, 1); /* released by action_finish */
    *job = (struct action_job){.a = a, .s = s, .act = act, .limited = limited,
                               .followed = act->state_seq <= last_seq ? act->state_seq : last_seq};
    atomic_init(&job->pending, n + 1);
    for (size_t i = 0; i < n; i++) {
        const Casca__V1__SetSettingRequest *c = act->changes[i];
        struct change_slot *slot = &job->slots[i];
        slot->job = job;
        char *w = slot->why;
        if (limited)
            snprintf(w, MSG_LEN,
                     "rate limit: more than %d actions in one period (%lld ms); "
                     "this action was not applied: send at most one action per State",
                     AGENT_MAX_ACTIONS_PER_PERIOD, (long long)(s->period_ns / MS));
        else if (s->mode == CASCA__V1__AGENT_MODE__AGENT_MODE_OBSERVE)
            snprintf(w, MSG_LEN,
                     "this session is in OBSERVE mode: it receives states only; open "
                     "a CONTROL or SHADOW session to act");
        else if (act->state_seq > last_seq)
            snprintf(w, MSG_LEN,
                     "state_seq %" PRIu64 " is ahead of the last State (%" PRIu64 "): "
                     "answer a State you received",
                     act->state_seq, last_seq);
        else if (!*c->id)
            snprintf(w, MSG_LEN, "changes[%zu].id is required: the public id of a setting of "
                                 "this session (Welcome.settings)", i);
        else if (!known_setting(a, c->id))
            snprintf(w, MSG_LEN, "unknown setting '%.64s': ListSettings names the settings",
                     c->id);
        else if (!strv_has(s->settings, s->nsettings, c->id))
            snprintf(w, MSG_LEN, "%s '%.64s'%s",
                     s->mode == CASCA__V1__AGENT_MODE__AGENT_MODE_CONTROL ? "not leased: setting"
                                                                          : "setting",
                     c->id,
                     " is not part of this session: name it in Hello.setting_ids (ListSettings "
                     "names the settings)");
        else if (s->mode == CASCA__V1__AGENT_MODE__AGENT_MODE_CONTROL &&
                 !strv_has(s->leased, s->nleased, c->id))
            snprintf(w, MSG_LEN, "not leased: setting '%s' is read-only and was not leased", c->id);
        if (*w) {
            change_done(job);
            continue;
        }
        struct ctl_value v;
        control_value_from_pb(c->value, &v);
        struct ctl_request req = {
            .id = c->id,
            .value = &v,
            .dry_run = c->dry_run,
            .shadow = s->mode == CASCA__V1__AGENT_MODE__AGENT_MODE_SHADOW,
            .caller = s->name,
            .session = s,
            .deadline_ns = casca_mono_ns() + ACTION_DEADLINE_NS,
        };
        if (ctl_set_async(a->ctl, &req, change_answered, slot) != CASCA_OK) {
            snprintf(w, MSG_LEN, "out of memory");
            change_done(job);
        }
    }
    change_done(job); /* the starting reference: the result goes out when the last is in */
}

/* ---- the Session handler ---- */

static const char *msg_name(const AgentMessage *m)
{
    switch (m->msg_case) {
    case CASCA__V1__AGENT_MESSAGE__MSG_HELLO:
        return "Hello";
    case CASCA__V1__AGENT_MESSAGE__MSG_ACTION:
        return "Action";
    case CASCA__V1__AGENT_MESSAGE__MSG_GOODBYE:
        return "Goodbye";
    default:
        return "an empty AgentMessage";
    }
}

static void session(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    struct agent *a = rpc_method_arg(ctx);
    struct sess *s = rpc_data(ctx);
    if (!s) {
        if (!(s = calloc(1, sizeof(*s)))) {
            rpc_finish(ctx, CASCA_ERR_NOMEM, "out of memory");
            return;
        }
        s->a = a;
        s->ctx = ctx;
        atomic_init(&s->refs, 1);
        pthread_mutex_init(&s->lock, NULL);
        rpc_set_data(ctx, s, sess_unref);
        rpc_on_cancel(ctx, on_cancel, s);
    }
    const AgentMessage *m = (const AgentMessage *)msg;
    pthread_mutex_lock(&s->lock);
    bool done = s->done, said_hello = s->hello_done;
    s->last_msg_mono = casca_mono_ns();
    if (!done && !m)
        end_locked(s, CASCA_OK, "%s", "");
    else if (!done && !said_hello && m->msg_case != CASCA__V1__AGENT_MESSAGE__MSG_HELLO)
        end_locked(s, CASCA_ERR_INVALID,
                   "the first message of a session must be Hello (agent_name, mode, slo_ids, "
                   "setting_ids, period, zone), not %s",
                   msg_name(m));
    else if (!done && said_hello && m->msg_case == CASCA__V1__AGENT_MESSAGE__MSG_HELLO)
        end_locked(s, CASCA_ERR_INVALID, "Hello was already sent: send it once, first");
    else if (!done && m->msg_case == CASCA__V1__AGENT_MESSAGE__MSG__NOT_SET)
        end_locked(s, CASCA_ERR_INVALID, "empty AgentMessage: set hello, action or goodbye");
    else if (!done && m->msg_case == CASCA__V1__AGENT_MESSAGE__MSG_GOODBYE) {
        log_info("agent", "session %s: agent '%s' says goodbye: %.200s", s->id, s->name,
                 m->goodbye->reason);
        end_locked(s, CASCA_OK, "%s", "");
    }
    done = s->done;
    pthread_mutex_unlock(&s->lock);
    if (done) return;
    if (m->msg_case == CASCA__V1__AGENT_MESSAGE__MSG_HELLO)
        hello(a, s, m->hello);
    else
        action(a, s, m->action);
}

/* ---- AdminService ---- */

void agent_list_sessions(struct agent *a, struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    (void)msg;
    if (!a) {
        rpc_finish(ctx, CASCA_ERR_UNAVAILABLE, "agent sessions are not set up yet; retry");
        return;
    }
    pthread_mutex_lock(&a->lock);
    size_t n = 0;
    for (struct sess *s = a->head; s; s = s->next)
        n++;
    Casca__V1__AgentSessionInfo *infos = calloc(n + 1, sizeof(*infos));
    Casca__V1__AgentSessionInfo **ptrs = calloc(n + 1, sizeof(*ptrs));
    Google__Protobuf__Timestamp *since = calloc(n + 1, sizeof(*since));
    if (!infos || !ptrs || !since) {
        pthread_mutex_unlock(&a->lock);
        rpc_finish(ctx, CASCA_ERR_NOMEM, "out of memory");
        goto out;
    }
    size_t k = 0;
    for (struct sess *s = a->head; s; s = s->next) {
        pthread_mutex_lock(&s->lock);
        if (!s->done) {
            session_info(s, &infos[k], &since[k]);
            ptrs[k] = &infos[k];
            k++;
        }
        pthread_mutex_unlock(&s->lock);
    }
    Casca__V1__ListAgentSessionsResponse resp = CASCA__V1__LIST_AGENT_SESSIONS_RESPONSE__INIT;
    resp.n_sessions = k;
    resp.sessions = ptrs;
    rpc_reply(ctx, &resp.base); /* packed now, while the sessions' strings are held */
    pthread_mutex_unlock(&a->lock);
out:
    free(infos);
    free(ptrs);
    free(since);
}

struct rec {
    char *key;
    uint8_t *val;
    size_t len;
};

struct recs {
    struct rec *v;
    size_t n, cap;
    const char *agent_name; /* collecting session ids of this agent */
    int err;
};

static int collect(const void *k, size_t kl, const void *v, size_t vl, void *arg)
{
    struct recs *r = arg;
    if (vl < 8) return 0;
    if (r->agent_name) {
        Casca__V1__AgentSessionInfo *info =
            casca__v1__agent_session_info__unpack(NULL, vl - 8, (const uint8_t *)v + 8);
        bool match = info && !strcmp(info->agent_name, r->agent_name);
        if (info) casca__v1__agent_session_info__free_unpacked(info, NULL);
        if (!match) return 0;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 64;
        struct rec *g = realloc(r->v, cap * sizeof(*g));
        if (!g) return r->err = CASCA_ERR_NOMEM;
        r->v = g;
        r->cap = cap;
    }
    struct rec *x = &r->v[r->n];
    x->key = strndup(k, kl);
    x->val = malloc(vl);
    if (!x->key || !x->val) {
        free(x->key);
        free(x->val);
        return r->err = CASCA_ERR_NOMEM;
    }
    memcpy(x->val, v, vl);
    x->len = vl;
    r->n++;
    return 0;
}

static void recs_free(struct recs *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].key);
        free(r->v[i].val);
    }
    free(r->v);
    memset(r, 0, sizeof(*r));
}

/* Sends a step, waiting while the queue is full (worker thread). */
static int send_step(struct rpc_ctx *ctx, const Casca__V1__TrajectoryStep *step)
{
    int rc;
    while ((rc = rpc_send(ctx, &step->base)) == CASCA_ERR_FULL)
        nanosleep(&(struct timespec){0, 2 * MS}, NULL);
    return rc;
}

static int64_t rec_time(const struct rec *r)
{
    int64_t t = 0;
    agent_record_time(r->val, r->len, &t); /* collect kept only values of 8 bytes or more */
    return t;
}

/* Streams the steps of session sid in [start, end). */
static int export_session(struct agent *a, struct rpc_ctx *ctx, const char *sid, int64_t start,
                          int64_t end)
{
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "%s/", sid);
    struct recs r = {0};
    int rc = kv_foreach_prefix(a->steps_db, prefix, strlen(prefix), collect, &r);
    if (rc == CASCA_OK) rc = r.err;
    /* keys: sid/seq/A<n> (actions) sort before sid/seq/S (the state): one step per action, or
     * one for a state that no action answered */
    size_t plen = strlen(prefix);
    for (size_t i = 0; i < r.n && rc == CASCA_OK;) {
        uint64_t seq, sj;
        bool is_state;
        if (!agent_key_parse(r.v[i].key, strlen(r.v[i].key), plen, &seq, &is_state)) {
            i++; /* not written by this version: skip */
            continue;
        }
        const struct rec *srec = is_state ? &r.v[i] : NULL;
        size_t j = i + 1;
        for (; j < r.n && agent_key_parse(r.v[j].key, strlen(r.v[j].key), plen, &sj, &is_state) &&
               sj == seq;
             j++)
            if (is_state) srec = &r.v[j];
        size_t nact = srec ? j - i - 1 : j - i;
        Casca__V1__State *state =
            srec ? casca__v1__state__unpack(NULL, srec->len - 8, srec->val + 8) : NULL;
        int64_t t = srec ? rec_time(srec) : rec_time(&r.v[i]);
        if (t >= start && t < end) {
            Casca__V1__TrajectoryStep one = CASCA__V1__TRAJECTORY_STEP__INIT;
            one.session_id = (char *)sid;
            one.seq = seq;
            one.state = state;
            if (nact == 0) rc = send_step(ctx, &one);
            for (size_t k = i; k < j && rc == CASCA_OK; k++) {
                if (&r.v[k] == srec) continue;
                Casca__V1__TrajectoryStep *x =
                    casca__v1__trajectory_step__unpack(NULL, r.v[k].len - 8, r.v[k].val + 8);
                if (!x) continue; /* unreadable by this version: skip */
                one.action = x->action;
                one.result = x->result;
                rc = send_step(ctx, &one);
                casca__v1__trajectory_step__free_unpacked(x, NULL);
            }
        }
        if (state) casca__v1__state__free_unpacked(state, NULL);
        i = j;
    }
    recs_free(&r);
    return rc;
}

static int flush_write(MDB_txn *txn, void *arg)
{
    (void)txn;
    (void)arg;
    return CASCA_OK;
}

void agent_export_trajectory(struct agent *a, struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    const Casca__V1__ExportTrajectoryRequest *req = (const Casca__V1__ExportTrajectoryRequest *)msg;
    if (!a) {
        rpc_finish(ctx, CASCA_ERR_UNAVAILABLE, "agent sessions are not set up yet; retry");
        return;
    }
    int64_t start = ns_of_ts(req->start, INT64_MIN), end = ns_of_ts(req->end, INT64_MAX);
    if (end < start) {
        rpc_finish(ctx, CASCA_ERR_INVALID, "end is before start: swap them or leave end unset");
        return;
    }
    /* the steps are recorded asynchronously: a no-op write queued behind them returns once
     * they are committed, so the export sees every step recorded before the call */
    int rc = store_write_wait(a->store, flush_write, NULL);
    if (rc != CASCA_OK) {
        rpc_finish(ctx, rc, "cannot read the recorded trajectories: %s", casca_strerror(rc));
        return;
    }
    struct recs ids = {0};
    if (req->which_case == CASCA__V1__EXPORT_TRAJECTORY_REQUEST__WHICH_SESSION_ID &&
        *req->session_id) {
        void *v = NULL;
        size_t vl = 0;
        rc = kv_get(a->sessions_db, req->session_id, strlen(req->session_id), &v, &vl);
        free(v);
        if (rc == CASCA_ERR_NOT_FOUND) {
            rpc_finish(ctx, rc,
                       "unknown session '%.64s': ListAgentSessions names the open "
                       "sessions",
                       req->session_id);
            return;
        }
        if (rc == CASCA_OK)
            rc = collect(req->session_id, strlen(req->session_id), "\0\0\0\0\0\0\0\0", 8, &ids);
    } else if (req->which_case == CASCA__V1__EXPORT_TRAJECTORY_REQUEST__WHICH_AGENT_NAME &&
               *req->agent_name) {
        ids.agent_name = req->agent_name;
        rc = kv_foreach_prefix(a->sessions_db, "", 0, collect, &ids);
        if (rc == CASCA_OK) rc = ids.err;
    } else {
        rpc_finish(ctx, CASCA_ERR_INVALID,
                   "set session_id or agent_name to say whose steps to "
                   "export");
        return;
    }
    for (size_t i = 0; i < ids.n && rc == CASCA_OK; i++)
        rc = export_session(a, ctx, ids.v[i].key, start, end);
    recs_free(&ids);
    if (rc == CASCA_OK)
        rpc_reply(ctx, NULL);
    else if (rc == CASCA_ERR_CANCELLED)
        rpc_finish(ctx, rc, "the export was cancelled");
    else
        rpc_finish(ctx, rc, "cannot read the recorded trajectories: %s", casca_strerror(rc));
}

/* ---- lifecycle ---- */

/* A session's handler waits for the service (actions): the worker pool. */
static const struct rpc_method_def agent_methods[] = {
    RPC_METHOD("Session", casca__v1__agent_message, casca__v1__control_message, RPC_BIDI,
               RPC_ROLE_AGENT | RPC_ROLE_OPERATOR, RPC_BLOCKING, session),
};

int agent_create(struct rpc_server *srv, struct ctl *ctl, struct slo_service *slo,
                 struct carbon *carbon, struct config_live *live, struct store *store,
                 struct agent **out, char *err, size_t errlen)
{
    struct agent *a = *out = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return CASCA_ERR_NOMEM;
    }
    a->ctl = ctl;
    a->slo = slo;
    a->carbon = carbon;
    a->live = live;
    a->store = store;
    pthread_mutex_init(&a->lock, NULL);
    casca_cond_init_mono(&a->wake);
    int rc = CASCA_ERR_NOMEM;
    if (!(a->leases = agent_leases_create())) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if ((rc = kv_open(store, "agent_sessions", &a->sessions_db)) ||
        (rc = kv_open(store, "agent_steps", &a->steps_db))) {
        snprintf(err, errlen, "agent sessions: cannot open their tables in the store: %s",
                 casca_strerror(rc));
        goto fail;
    }
    a->listening = true;
    if ((rc = pthread_create(&a->timer, NULL, timer_main, a))) {
        snprintf(err, errlen, "agent sessions: cannot start their timer thread: %s", strerror(rc));
        rc = CASCA_ERR_INTERNAL;
        goto fail;
    }
    a->timer_started = true;
    if ((rc = rpc_server_add_service(srv, &casca__v1__agent_service__descriptor, NULL,
                                     agent_methods, RPC_NMETHODS(agent_methods), a, err, errlen)))
        goto fail;
    ctl_set_lease_hook(ctl, lease_hook, a);
    return CASCA_OK;
fail:
    agent_destroy(a);
    *out = NULL;
    return rc;
}

bool agent_revoke(void *agent, struct rpc_ctx *ctx, int err, const char *why)
{
    struct agent *a = agent;
    if (!a) return false;
    struct sess *s;
    pthread_mutex_lock(&a->lock);
    for (s = a->head; s && s->ctx != ctx; s = s->next)
        ;
    if (s) atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&a->lock);
    if (!s) return false;
    pthread_mutex_lock(&s->lock);
    /* the leases this session holds, for the audit log (kept until end_locked releases them) */
    size_t n = s->done || !s->hello_done ? 0 : s->nleased;
    char **ids = n ? calloc(n, sizeof(*ids)) : NULL;
    for (size_t i = 0; ids && i < n; i++)
        ids[i] = strdup(s->leased[i]);
    char name[sizeof(s->name)], sid[sizeof(s->id)];
    memcpy(name, s->name, sizeof(name));
    memcpy(sid, s->id, sizeof(sid));
    end_locked(s, err, "%s", why);
    pthread_mutex_unlock(&s->lock);
    for (size_t i = 0; ids && i < n; i++) {
        char reason[400];
        snprintf(reason, sizeof(reason), "session %s ended and its lease released: %s", sid, why);
        if (ids[i]) ctl_audit_event(a->ctl, name, ids[i], CASCA__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_REVOKED,
                                    reason);
        free(ids[i]);
    }
    free(ids);
    sess_unref(s);
    return true;
}

size_t agent_session_count(struct agent *a)
{
    if (!a) return 0;
    pthread_mutex_lock(&a->lock);
    size_t n = a->nsess;
    pthread_mutex_unlock(&a->lock);
    return n;
}

void agent_session_modes(struct agent *a, size_t counts[AGENT_MODES])
{
    for (size_t m = 0; m < AGENT_MODES; m++)
        counts[m] = 0;
    if (!a) return;
    pthread_mutex_lock(&a->lock);
    for (struct sess *s = a->head; s; s = s->next) {
        pthread_mutex_lock(&s->lock);
        if (s->hello_done && !s->done && s->mode >= 0 && s->mode < AGENT_MODES) counts[s->mode]++;
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&a->lock);
}

size_t agent_sessions(struct agent *a, struct agent_brief *out, size_t max)
{
    size_t n = 0;
    if (!a) return 0;
    pthread_mutex_lock(&a->lock);
    for (struct sess *s = a->head; s && n < max; s = s->next) {
        pthread_mutex_lock(&s->lock);
        if (s->hello_done && !s->done) {
            struct agent_brief *b = &out[n++];
            snprintf(b->name, sizeof(b->name), "%s", s->name);
            b->mode = s->mode;
            b->since_ns = s->since_ns;
            b->states_sent = s->states_sent;
            b->actions_received = s->actions_received;
            b->actions_applied = s->actions_applied;
        }
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&a->lock);
    return n;
}

void agent_destroy(struct agent *a)
{
    if (!a) return;
    if (a->listening) {
        ctl_set_lease_hook(a->ctl, NULL, NULL);
    }
    if (a->timer_started) {
        pthread_mutex_lock(&a->lock);
        a->stopping = true;
        pthread_cond_signal(&a->wake);
        pthread_mutex_unlock(&a->lock);
        pthread_join(a->timer, NULL);
    }
    while (a->head) { /* every call is over: only the list's references are left */
        struct sess *s = a->head;
        a->head = s->next;
        sess_unref(s);
    }
    free(a->heap);
    agent_leases_destroy(a->leases);
    kv_close(a->sessions_db);
    kv_close(a->steps_db);
    pthread_cond_destroy(&a->wake);
    pthread_mutex_destroy(&a->lock);
    free(a);
}
