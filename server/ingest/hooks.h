/* hooks: declarative telemetry hooks. Each hook subscribes to a topic prefix on a bus (bus.h),
 * turns every message into points with an interpreter (json: JSON pointers; protobuf: casca's
 * PublishRequest) and stores them with a connector (lmdb through tsdb_write, or influxdb).
 * One artifact, many configurations: the `bus:` and `hooks:` config sections (parsed here).
 *
 * A hook never stalls the bus or the other hooks: its receive callback only appends the message
 * to the hook's bounded queue (count and bytes), or drops and counts it; the hook's own thread
 * interprets and stores. Bad messages are counted as errors and logged at warn with the hook's
 * name (rate-limited), never fatal. The same code runs in cascad and in casca-hook. */
#ifndef CASCA_HOOKS_H
#define CASCA_HOOKS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsdb.h"

struct config_loader;
struct yd_node;
struct tz;

/* ---- configuration (immutable once parsed; part of the config snapshot) ---- */

enum hook_field_kind {
    HOOK_FIELD_POINTER,  /* "/ENERGY/Power": a JSON pointer (RFC 6901) into the message */
    HOOK_FIELD_TOPIC,    /* "$TOPIC": the message's topic */
    HOOK_FIELD_RECEIVED, /* "$RECEIVED": when the hook received the message (time only) */
    HOOK_FIELD_LITERAL,  /* any other text: a constant (tags only) */
};

struct hook_field {
    enum hook_field_kind kind;
    char *text;    /* as written in the config */
    char **tokens; /* HOOK_FIELD_POINTER: the reference tokens, unescaped */
    size_t ntokens;
    bool has_default; /* used when the field is missing (or null) in a message */
    double def_num;   /* values */
    char *def_str;    /* tags, and time ("$RECEIVED" or a time in the field's format) */
};

enum hook_time_kind {
    HOOK_TIME_STRPTIME, /* format: a strptime(3) format; a %z in it reads the zone */
    HOOK_TIME_RFC3339,  /* 2026-01-05T10:00:00.5Z, 2026-01-05T11:00:00+01:00 */
    HOOK_TIME_UNIX_S,   /* a number (or numeric string) of seconds since the epoch */
    HOOK_TIME_UNIX_MS,
    HOOK_TIME_UNIX_US,
    HOOK_TIME_UNIX_NS,
};

struct hook_time {
    struct hook_field f; /* HOOK_FIELD_RECEIVED when the config has no time */
    enum hook_time_kind kind;
    char *format; /* HOOK_TIME_STRPTIME */
    bool format_has_zone;
    struct tz *tz; /* zone of times that carry none; NULL = UTC */
};

struct hook_series {
    char *series;
    struct hook_field f;
};

struct hook_tagspec {
    char *key;
    struct hook_field f;
};

enum hook_format { HOOK_FORMAT_JSON, HOOK_FORMAT_PROTOBUF };

struct hook_connector_ops;

struct hook_config {
    char *name;
    char *bus;   /* a bus name of this config, or an nng address of a remote bus's publish side */
    char *topic; /* prefix; "" = every topic */
    enum hook_format format;
    struct hook_series *values; /* json: each value field is one series */
    size_t nvalues;
    struct hook_tagspec *tags; /* json: the tags of every point; protobuf: added to each point */
    size_t ntags;
    struct hook_time time;
    const struct hook_connector_ops *connector;
    void *connector_options; /* what connector->parse read from the hook's map, or NULL */
    uint64_t queue;       /* messages the hook may hold before dropping */
    uint64_t queue_bytes; /* bytes likewise */
    uint64_t max_message; /* larger messages are counted as errors and dropped */
};

struct bus_config {
    char *name;
    char **listen, **publish;
    size_t nlisten, npublish;
    uint64_t max_message;
    uint64_t udp_buffer; /* receive buffer of each udp:// listen address */
};

/* config_section_of(c, &hooks_config_section) */
struct hooks_section {
    struct bus_config *buses;
    size_t nbuses;
    struct hook_config *hooks;
    size_t nhooks;
    uint64_t fingerprint; /* of the bus: and hooks: text, to tell a reload whether they changed */
};

/* The bus and hooks section: its top-level keys, and its descriptor for config_load. */
#define HOOKS_CONFIG_KEYS "bus", "hooks"
extern const struct config_section hooks_config_section;

/* ---- interpreters: one message -> points ---- */

/* The points of one message. Strings and tags live in the batch's arena (or in the parsed
 * message it keeps) until hook_batch_reset; one batch is used by one thread at a time. */
struct hook_batch {
    struct tsdb_point *pts;
    size_t n, cap;
    struct hook_arena_chunk *arena;
    /* what an interpreter keeps for the points' strings (the json interpreter: the parsed
     * message), released at reset with release(held) */
    void *held;
    void (*release)(void *held);
};

void hook_batch_reset(struct hook_batch *b); /* keeps one arena chunk for the next message */
void hook_batch_free(struct hook_batch *b);
/* Arena allocation (8-byte aligned), NULL when out of memory. */
void *hook_batch_alloc(struct hook_batch *b, size_t size);
struct tsdb_point *hook_batch_add(struct hook_batch *b);

/* Turns a message into points appended to out. topic is NUL-terminated. Returns CASCA_OK, or a
 * casca_err with the first problem in err (what was wrong, for the operator's log); the good
 * points of a partly bad message stay in out. Thread: any, one batch per thread. */
typedef int (*hook_interpret_fn)(const struct hook_config *h, const char *topic,
                                 const void *payload, size_t len, int64_t received_ns,
                                 struct hook_batch *out, char *err, size_t errlen);
int hook_json_interpret(const struct hook_config *h, const char *topic, const void *payload,
                        size_t len, int64_t received_ns, struct hook_batch *out, char *err,
                        size_t errlen);
int hook_protobuf_interpret(const struct hook_config *h, const char *topic, const void *payload,
                            size_t len, int64_t received_ns, struct hook_batch *out, char *err,
                            size_t errlen);

/* Resolves h->time for a string or number found in a message (json), into ns since the epoch.
 * Pure, any thread. */
int hook_time_parse_string(const struct hook_time *t, const char *s, int64_t *out_ns);
int hook_time_parse_number(const struct hook_time *t, double v, int64_t *out_ns);

/* ---- acknowledgements: telling a caller its points are stored ----
 * Points someone waits for (a gRPC Publish) carry an ack. Every connector that takes them holds
 * it until they are stored (lmdb: committed; influxdb: written over HTTP) and releases it with
 * the outcome; the caller's done runs once, when the last holder lets go, with the first failure
 * (CASCA_OK when none). Any thread; NULL acks are accepted and do nothing. */
struct hook_ack;
typedef void (*hook_done_fn)(int err, const char *why, void *arg);
struct hook_ack *hook_ack_hold(struct hook_ack *a); /* returns a */
void hook_ack_release(struct hook_ack *a, int err, const char *why); /* why: NULL when err is 0 */

/* ---- connectors: points -> a store ---- */

/* Counters of one hook. Shared with writes still in flight in a store (refs), so a store that
 * completes after the hook is gone updates memory that is still alive. */
struct hook_counters {
    atomic_uint refs;
    atomic_ullong dropped; /* messages: queue full, or the store's queue full */
    atomic_ullong stored;  /* points the store confirmed */
    atomic_ullong errors;  /* messages that failed to parse, were too large, or failed to store */
};
void hook_counters_unref(struct hook_counters *c);

/* Where the daemon's stores are, for connectors that need them. */
struct hook_env {
    struct tsdb *tsdb; /* NULL: the lmdb connector is unavailable (its hooks fail to start) */
    /* The program has the built-in sources (cascad: TelemetryService and probes). Without them
     * (casca-hook), hooks on those sources are left out. */
    bool builtin_sources;
};

/* A connector: called only from its hook's thread. */
struct hook_connector_ops {
    const char *name; /* the `connector:` value, and the key of its options in a hook */
    /* Reads the connector's options (options: the map under its name in the hook, NULL when
     * absent; hook: the hook's map, for errors about a missing one) into what open finds in
     * h->connector_options, freed with free_options; problems go to config_error. On the
     * loading thread. NULL: the connector takes no options. */
    void *(*parse)(struct config_loader *ld, const struct yd_node *options,
                   const struct yd_node *hook);
    void (*free_options)(void *options); /* safe on NULL */
    int (*open)(const struct hook_config *h, const struct hook_env *env, struct hook_counters *c,
                void **state, char *err, size_t errlen);
    /* Stores (or buffers) pts, borrowed until it returns. Returns CASCA_OK, CASCA_ERR_FULL (the
     * store is overloaded: nothing taken, count as dropped) or another casca_err with the reason
     * in why (CASCA_ERR_INVALID: the points the store refuses were left out, the others taken).
     * The counters are updated by the connector as points are confirmed or fail. ack (may be
     * NULL): held while what was taken is not yet stored, released with the outcome; the caller
     * records a returned error itself. */
    int (*write)(void *state, const struct tsdb_point *pts, size_t n, struct hook_ack *ack,
                 char *why, size_t whylen);
    /* Pushes buffered points if due (force: all of them). Returns ms until the next flush is due
     * (UINT64_MAX: nothing buffered). */
    uint64_t (*flush)(void *state, bool force);
    void (*close)(void *state); /* after a forced flush */
    /* write may run on any thread, concurrently, and never blocks: points from a built-in
     * source then go straight to it instead of through the hook's queue and thread */
    bool any_thread;
};

extern const struct hook_connector_ops hook_connector_lmdb;
extern const struct hook_connector_ops hook_connector_influxdb;
/* By name, or NULL. */
const struct hook_connector_ops *hook_connector_find(const char *name);

/* ---- built-in sources ----
 * Points that enter cascad without a bus pass the same stage as the buses' messages: a hook whose
 * bus: names a built-in source takes them, already interpreted (so no values:, time: or format:),
 * with the caller's token name ("local" without tokens) or the probe's name as the topic. When no
 * hook in the file takes a source, an implicit one (connector lmdb, topic "") stores its points;
 * implicit hooks are not listed among the hooks. */
#define HOOK_SOURCE_PUBLISH "publish" /* TelemetryService.Publish and PublishStream */
#define HOOK_SOURCE_PROBES "probes"   /* probes: */

/* ---- the running hooks (and the buses they listen to) ---- */

struct hooks;

struct hook_stats {
    const char *name; /* valid while the hooks run */
    uint64_t queued, dropped, stored, errors;
};

/* Starts the buses of sec and every hook (subscribing, its thread and connector). On failure
 * returns a casca_err with the reason in err and starts nothing. sec must outlive the hooks
 * (keep a reference on its config). Main thread. */
int hooks_create(const struct hooks_section *sec, const struct hook_env *env, struct hooks **out,
                 char *err, size_t errlen);
/* Stops the hooks (their queued messages are stored first, with a bounded wait), then the buses.
 * Safe on NULL. Main thread. */
void hooks_destroy(struct hooks *h);

/* Hands points from a built-in source (HOOK_SOURCE_*) to every hook of that source whose topic
 * prefix matches topic; pts are borrowed (copied when a hook queues them). done (NULL: nobody
 * waits) runs once, when every hook that took them has stored them or failed, on a store's or a
 * hook's thread, possibly before this returns; why then says what failed (a queue or store full:
 * CASCA_ERR_FULL). Returns CASCA_OK when done will run, or a casca_err with the reason in why when
 * nothing was taken (CASCA_ERR_PRECONDITION: no hook takes this topic). Any thread. */
int hooks_submit(struct hooks *h, const char *source, const char *topic,
                 const struct tsdb_point *pts, size_t n, hook_done_fn done, void *arg, char *why,
                 size_t whylen);

/* A reload: the buses and hooks do not change while running; says so when next differs. */
void hooks_reload(struct hooks *h, const struct hooks_section *next);

size_t hooks_count(const struct hooks *h); /* 0 for NULL */
/* Fills up to max entries, in config order; returns how many. Any thread. */
size_t hooks_stats(const struct hooks *h, struct hook_stats *out, size_t max);
/* The hooks' state as casca.v1.HookStatus messages for AdminService.GetStatus, in one block that
 * the caller frees with free(); names borrowed from the running hooks. NULL (and *n = 0) when
 * there are none. Any thread. */
struct Casca__V1__HookStatus **hooks_status_pb(const struct hooks *h, size_t *n);
/* Sums of the buses' counters. Any thread. */
struct bus_stats;
void hooks_bus_stats(const struct hooks *h, struct bus_stats *sum);

#endif
