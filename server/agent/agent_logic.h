/* agent_logic: the rules of agent sessions that need no network, kept apart from agent.c (the
 * streams, the timer, the store) so they can be unit tested: Hello validation, the lease table
 * (all or nothing), the action rate limit, the state clock with latest-wins coalescing, and the
 * keys and values of recorded trajectories.
 *
 * Everything here is pure or guards itself: the lease table has its own lock (any thread); the
 * other structs are plain values that the caller protects (agent.c: under the session's lock). */
#ifndef CASCA_AGENT_LOGIC_H
#define CASCA_AGENT_LOGIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "casca/v1/agent.pb-c.h"

#define AGENT_MS 1000000LL
#define AGENT_DEFAULT_PERIOD_NS (1000 * AGENT_MS)
#define AGENT_MIN_PERIOD_NS (100 * AGENT_MS)
#define AGENT_MAX_PERIOD_NS (3600 * 1000 * AGENT_MS)
#define AGENT_MAX_ACTIONS_PER_PERIOD 10
#define AGENT_NAME_MAX_LEN 63 /* ctl's changed_by holds 63 bytes */
#define AGENT_ZONE_MAX_LEN 32
#define AGENT_RETRY_NS (20 * AGENT_MS) /* how often a message the transport refused is retried */

/* ---- Hello ---- */

/* Checks what Hello needs before any lookup: agent_name (1..63 printable bytes), mode (CONTROL,
 * SHADOW or OBSERVE), period (100 ms to 1 h; unset or 0: 1 s) and zone length. Sets *period_ns.
 * CASCA_OK, or CASCA_ERR_INVALID with why saying what to fix. Pure. */
int agent_hello_check(const Casca__V1__Hello *h, int64_t *period_ns, char *why, size_t whylen);

/* ---- leases: a setting leased by at most one holder ---- */

struct agent_leases;

/* NULL when out of memory. Any thread. */
struct agent_leases *agent_leases_create(void);
/* Every lease must be released. Safe on NULL. */
void agent_leases_destroy(struct agent_leases *l);
/* Leases ids[0..n) to holder (named holder_name in refusals), all or nothing: if one of them is
 * held by another holder nothing is leased and CASCA_ERR_PRECONDITION says which and by whom.
 * ids and holder_name are borrowed until agent_leases_release(holder). Any thread. */
int agent_leases_acquire(struct agent_leases *l, const void *holder, const char *holder_name,
                         char *const *ids, size_t n, char *why, size_t whylen);
/* CASCA_OK when setting id is free or held by holder, else CASCA_ERR_PRECONDITION naming the
 * holder. Any thread. */
int agent_leases_check(struct agent_leases *l, const char *id, const void *holder, char *why,
                       size_t whylen);
/* Releases every lease of holder. Any thread. */
void agent_leases_release(struct agent_leases *l, const void *holder);

/* ---- the action rate limit ---- */

struct agent_rate {
    int64_t window_start_ns; /* monotonic */
    unsigned count;          /* actions in the window */
};

/* Counts one action at now: false when it is over AGENT_MAX_ACTIONS_PER_PERIOD in the current
 * window of one period (it is rejected, and still counted). Zero-initialised: ready. */
bool agent_rate_take(struct agent_rate *r, int64_t now_ns, int64_t period_ns);

/* ---- the state clock: one state per period, latest wins ---- */

struct agent_clock {
    int64_t period_ns;
    int64_t next_tick_ns; /* monotonic time of the next state */
    uint64_t seq;         /* the last state produced */
    bool pending;         /* state seq is produced and not yet sent */
    uint32_t missed;      /* states coalesced away since the last one sent */
};

/* Starts the clock: the first state at now, its seq after_seq + 1. */
void agent_clock_start(struct agent_clock *c, int64_t period_ns, uint64_t after_seq,
                       int64_t now_ns);
/* Produces a state if one is due at now: seq + 1, pending; a state still pending is replaced
 * (latest wins) and counted in missed. A clock that fell behind (a stalled timer) keeps its
 * cadence from now instead of producing the states it missed. Returns whether it produced. */
bool agent_clock_tick(struct agent_clock *c, int64_t now_ns);
/* The pending state went out: missed starts again from 0. */
void agent_clock_sent(struct agent_clock *c);
/* When the clock next needs the timer: the next tick, or a retry soon while a state is pending. */
int64_t agent_clock_due(const struct agent_clock *c, int64_t now_ns);

/* A CONTROL session that sends nothing for this long loses its leases: 3 periods + 5 s. */
int64_t agent_keepalive_ns(int64_t period_ns);

/* ---- recorded trajectories ---- */

/* Keys in the steps database, so that one state's actions sort before it and states in seq
 * order: "<sid>/<seq, 16 hex>/A<k, 8 hex>" for the k-th action of the session (answering state
 * seq) and "<sid>/<seq>/S" for state seq. Returns snprintf's length (buf holds 80 bytes and a
 * session id of up to 32). Pure. */
int agent_key_action(char *buf, size_t len, const char *sid, uint64_t seq, uint64_t k);
int agent_key_state(char *buf, size_t len, const char *sid, uint64_t seq);
/* Reads a key of session sid (prefix "<sid>/"): its seq and whether it is a state. false when the
 * key is not of that form. */
bool agent_key_parse(const char *key, size_t keylen, size_t prefixlen, uint64_t *seq,
                     bool *is_state);

/* A recorded value: an 8-byte time (ns since the epoch, host order) then the packed message.
 * Returns a malloc'ed buffer (caller frees) of *len bytes, or NULL when out of memory. */
uint8_t *agent_record_pack(int64_t time_ns, const ProtobufCMessage *msg, size_t *len);
/* The time of a recorded value; false when it is too short to be one. */
bool agent_record_time(const void *val, size_t len, int64_t *time_ns);

#endif
