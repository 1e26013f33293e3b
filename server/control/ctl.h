/* ctl: service control. The `settings:` section (and the files under `settings_files:`) parsed into
 * an immutable table of declared settings; drop-in controllers (struct ctl_ops) that reach the
 * managed service; the validate -> safety rails -> apply -> read back -> audit path.
 *
 * Two halves:
 *   - the declarations (struct ctl_decls) belong to a config snapshot (ctl_config_section) and
 *     are immutable: public fields (id, type, range, ...) and private ones (controller details);
 *   - the runtime (struct ctl) holds the open controller instances, each setting's state (last
 *     value, who changed it, when: cooldowns and caches survive a reload) and the listeners.
 * A reload builds a new runtime table and swaps it in; instances whose private details did not
 * change are carried over (connections stay open), the rest are closed when the last call using
 * the old table ends.
 *
 * Messages written into the `msg` buffers of this API are meant for callers of any role: they name
 * a setting only by its public id and never contain a URL, pointer, header, path or command.
 * Private details go to the operator's log (warn level). */
#ifndef CASCA_CTL_H
#define CASCA_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "casca/v1/admin.pb-c.h"
#include "casca/v1/common.pb-c.h"
#include "yamldoc.h"

struct config;
struct config_loader;
struct audit;

/* ---- values ---- */

/* Types of settings and values; the numbers are casca.v1.ValueType's. A value never has kind
 * CTL_ENUM: enum settings carry CTL_STRING values. */
enum ctl_type { CTL_NONE = 0, CTL_INT = 1, CTL_DOUBLE = 2, CTL_BOOL = 3, CTL_STRING = 4, CTL_ENUM = 5 };

struct ctl_value {
    enum ctl_type kind; /* CTL_NONE: no value */
    int64_t i;
    double d;
    bool b;
    char *s; /* CTL_STRING: owned by the value (ctl_value_clear frees it) */
};

void ctl_value_clear(struct ctl_value *v); /* frees s, kind = CTL_NONE; safe on a zeroed value */
int ctl_value_copy(struct ctl_value *dst, const struct ctl_value *src); /* dst is overwritten */
bool ctl_value_equal(const struct ctl_value *a, const struct ctl_value *b);
/* Converts v in place to a value of type t (CTL_ENUM -> CTL_STRING): a string "8" becomes the int
 * 8, an integral double an int, "true" a bool... CASCA_ERR_INVALID when it cannot. */
int ctl_value_coerce(struct ctl_value *v, enum ctl_type t);
/* The API's Value for v (the audit log, ServiceControl and agent sessions show values the same
 * way); pb borrows v's string. Pure. */
void ctl_value_to_pb(const struct ctl_value *v, Casca__V1__Value *pb);
/* Writes v for humans into buf ("8", "2.5", "true", "\"high\"", "(none)"). Returns buf. */
const char *ctl_value_format(const struct ctl_value *v, char *buf, size_t len);
const char *ctl_type_name(enum ctl_type t); /* "int", ... */

/* ---- controllers ---- */

/* What a controller needs while parsing its part of a setting (the `controller:` map). */
struct ctl_parse;
struct config_key;
/* Records a configuration error at node (file:line:col of the file being read). */
void ctl_parse_error(struct ctl_parse *p, const struct yd_node *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Reports keys of map that are not in known (the config engine's check: the error names where
 * and lists the known keys); false if any. */
bool ctl_parse_keys(struct ctl_parse *p, const struct yd_node *map,
                    const struct config_key *known, const char *where);
/* The scalar text of key in map (NULL when absent; an error when present and not a scalar, or
 * absent and required). Borrowed from the document: copy it. */
const char *ctl_parse_str(struct ctl_parse *p, const struct yd_node *map, const char *key,
                          bool required);
/* A duration (key absent: def). Returns false after recording an error. */
bool ctl_parse_ms(struct ctl_parse *p, const struct yd_node *map, const char *key, uint64_t def,
                  uint64_t *out);
bool ctl_parse_bool(struct ctl_parse *p, const struct yd_node *map, const char *key, bool def,
                    bool *out);
/* A path resolved against the directory of the file being read; malloc'ed. */
char *ctl_parse_path(struct ctl_parse *p, const char *path);
/* Expands ${NAME} from the environment into a malloc'ed string; an unset variable is an error at
 * node (naming the variable, never its value). NULL on error. */
char *ctl_parse_expand_env(struct ctl_parse *p, const struct yd_node *node, const char *text);
/* The type of the service value being configured (the target's type). */
enum ctl_type ctl_parse_type(const struct ctl_parse *p);

/* One backend operation's limits and the private detail of a failure (for the operator log). */
struct ctl_io {
    int64_t deadline_ns; /* CLOCK_MONOTONIC ns; the operation must give up by then */
    char detail[512];    /* set on failure: what went wrong, may name URLs and paths */
};
/* Milliseconds left before io's deadline (at least 1 while it has not passed, 0 once it has). */
int64_t ctl_io_left_ms(const struct ctl_io *io);
/* Brings io's deadline forward to timeout_ms from now if that is sooner: a controller's own
 * timeout bounds the operation even when the caller's deadline is later. */
void ctl_io_clamp(struct ctl_io *io, uint64_t timeout_ms);
/* Sets io->detail (printf format) and returns err: `return ctl_io_fail(io, CASCA_ERR_..., ...)`. */
int ctl_io_fail(struct ctl_io *io, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A controller: one file and one row in ctl.c's table. Thread rules: parse and free_conf run on
 * the config-loading thread; open, get, set, list and close on any thread (worker threads,
 * the ctl poller), get/set/list concurrently on one instance, and may block up to io's deadline.
 * Errors: CASCA_ERR_UNAVAILABLE (service down, bad status, unreadable answer), CASCA_ERR_TIMEOUT
 * (deadline), CASCA_ERR_NOT_FOUND (the key is not there), CASCA_ERR_NOMEM, with io->detail set. */
struct ctl_ops {
    const char *name; /* the key under `controller:` ("http_json") */
    /* Parses the controller's map into a private conf (NULL after recording errors). */
    void *(*parse)(struct ctl_parse *p, const struct yd_node *body);
    void (*free_conf)(void *conf);
    /* Opens an instance (connections, state). conf stays valid until close. Should not block on
     * the service: connect lazily. */
    int (*open)(const void *conf, void **inst);
    /* Reads the service value; out's kind is what the service holds (ctl coerces it). */
    int (*get)(void *inst, struct ctl_value *out, struct ctl_io *io);
    /* Writes v (already of the target's type) to the service. */
    int (*set)(void *inst, const struct ctl_value *v, struct ctl_io *io);
    /* Names the keys the service has next to the configured one (siblings), for the operator's
     * diagnostics when a key is not found. NULL when the backend cannot tell. */
    int (*list)(void *inst, void (*fn)(void *arg, const char *key), void *arg, struct ctl_io *io);
    void (*close)(void *inst);
};

extern const struct ctl_ops ctl_http_json_ops, ctl_file_ops, ctl_exec_ops, ctl_memory_ops;

/* Helpers shared by controllers. */
struct json_t;
/* Follows an RFC 6901 pointer in root; returns the node (borrowed) or NULL. With parent and key
 * not NULL, also the container of the last step and that step's key (malloc'ed, caller frees). */
struct json_t *ctl_json_follow(struct json_t *root, const char *ptr, struct json_t **parent,
                               char **key);
/* A JSON scalar as a value (CASCA_ERR_INVALID for null, objects, arrays), and back (new ref). */
int ctl_json_to_value(const struct json_t *j, struct ctl_value *out);
struct json_t *ctl_json_from_value(const struct ctl_value *v);

/* A command: argv (argv[0] looked up in PATH), or a shell line run by /bin/sh -c. */
struct ctl_cmd {
    char **argv; /* NULL-terminated */
};
/* Parses a command node (a list of strings, or one string for sh -c); false after an error. */
bool ctl_parse_cmd(struct ctl_parse *p, const struct yd_node *node, struct ctl_cmd *out);
void ctl_cmd_free(struct ctl_cmd *c);
/* Runs c with every "{value}" in its arguments replaced by value (value NULL: no replacement;
 * append_value: add value as the last argument when no argument contains {value}), stdin from
 * /dev/null, in its own process group, killed (the whole group) at io's deadline. On exit 0
 * returns CASCA_OK with stdout in *out (malloc'ed, may be NULL if out is NULL). Otherwise
 * UNAVAILABLE (could not start, non-zero exit; detail has stderr's first line) or TIMEOUT. */
int ctl_cmd_run(const struct ctl_cmd *c, const char *value, bool append_value, char **out,
                struct ctl_io *io);

/* ---- the configuration section ---- */

/* The settings section (struct ctl_decls): its top-level keys, and its descriptor for
 * config_load. */
#define CTL_CONFIG_KEYS "settings", "settings_files"
extern const struct config_section ctl_config_section;

/* ---- public view of a declared setting (what ListSettings shows) ---- */

struct ctl_public {
    const char *id, *description, *unit; /* description/unit "" when hidden */
    enum ctl_type type;
    bool has_min, has_max;
    double min, max, step; /* step 0: any */
    const struct ctl_value *allowed;
    size_t nallowed;
    bool read_only;
};

/* ---- the runtime ---- */

struct ctl;

/* Creates the runtime for config c's settings (instances are opened; nothing is read from the
 * services, so a service that is down does not stop the daemon). audit may be NULL (nothing
 * logged: unit tests). NULL on allocation failure. Main thread. */
struct ctl *ctl_create(struct config *c, struct audit *audit);
/* Swaps in the settings of the new snapshot c (after config_live_swap). Calls in flight finish
 * on the old table. Any thread; serialised by the caller (daemon's reload lock). */
void ctl_reload(struct ctl *ctl, struct config *c);
/* Stops the poller and frees everything; no call may be in flight. Safe on NULL. */
void ctl_destroy(struct ctl *ctl);

/* A referenced view of the current table, for listing. Any thread, never blocks. */
struct ctl_view;
struct ctl_view *ctl_view_get(struct ctl *ctl);
void ctl_view_put(struct ctl_view *v);
size_t ctl_view_count(const struct ctl_view *v);
/* Public fields of setting i (valid while the view is held), or NULL past the end. */
const struct ctl_public *ctl_view_at(const struct ctl_view *v, size_t i);
/* Index of id, or -1. */
long ctl_view_find(const struct ctl_view *v, const char *id);

/* A setting's value as casca knows it. */
struct ctl_reading {
    struct ctl_value value; /* owned: ctl_reading_clear */
    int64_t updated_ns;     /* wall clock of the last read from / write to the service; 0 unknown */
    char changed_by[64];    /* caller of the last change made through casca; "" unknown */
    char reason[96];        /* no value: why, for any caller ("service unavailable since ...") */
};
void ctl_reading_clear(struct ctl_reading *r);
int ctl_reading_copy(struct ctl_reading *dst, const struct ctl_reading *src); /* dst overwritten */

/* The reading of id as casca last saw it, without blocking: a value, or none with a reason (not
 * read yet, or the service failing since a time). NOT_FOUND for an unknown id. Any thread. */
int ctl_peek(struct ctl *ctl, const char *id, struct ctl_reading *out);

/* Interest in fresh values. While id is watched, ctl re-reads it from its service at most every
 * max_age (the setting's own, else the shortest period among its watchers; period 0 means 1 s) on
 * its own reader threads, so a change made on the service itself, a failure and a recovery all
 * reach the listeners within a period. One read serves every watcher. Every ctl_watch is paired
 * with a ctl_unwatch of the same id and period; ids unknown for now are kept (a reload may add
 * them). Any thread, never blocks. */
int ctl_watch(struct ctl *ctl, const char *id, int64_t period_ns);
void ctl_unwatch(struct ctl *ctl, const char *id, int64_t period_ns);
/* Stops the re-reads and waits for those in flight, so no listener is called after it. Before
 * the listeners go away; ctl_destroy does it too. Main thread. */
void ctl_stop(struct ctl *ctl);

/* Reads setting id: from the cache when it is younger than the setting's max_age, otherwise from
 * the service. deadline_ns is CLOCK_MONOTONIC (INT64_MAX: the controllers' own timeouts).
 * Blocks: worker threads only. On error msg says why (public-safe). */
int ctl_get(struct ctl *ctl, const char *id, int64_t deadline_ns, struct ctl_reading *out,
            char *msg, size_t msglen);

/* One change request. */
struct ctl_request {
    const char *id;
    const struct ctl_value *value;
    bool dry_run;        /* validate only (audited as DRY_RUN) */
    bool shadow;         /* a shadow-mode agent: validate and audit as SHADOW, never apply */
    const char *caller;  /* token or agent name, for changed_by and the audit log */
    const void *session; /* the agent session asking (NULL: a plain SetSetting), for the lease hook */
    int64_t deadline_ns; /* CLOCK_MONOTONIC; INT64_MAX: none */
};

/* Validates (type, range, step, allowed, read-only, lease, cooldown, max step), applies, reads
 * back. On success out holds the value read back (or the validated value for dry_run/shadow).
 * Errors: NOT_FOUND, INVALID, PRECONDITION, UNAVAILABLE, TIMEOUT. Every outcome is audited.
 * Changes of one setting are serialised. Blocks: worker threads only. */
int ctl_set(struct ctl *ctl, const struct ctl_request *req, struct ctl_reading *out, char *msg,
            size_t msglen);
/* ctl_set without waiting for the audit entry's commit on this thread: done(arg, rc, out, msg)
 * runs once the entry is committed (on the store's writer thread, so changes in flight together
 * share one commit and one sync) or at once without an audit log; out and msg are valid during
 * the call only, and done must not block. The change itself (validation, the service's calls)
 * still runs on the calling thread. CASCA_OK (done will run) or CASCA_ERR_NOMEM (it will not). */
typedef void (*ctl_set_done_fn)(void *arg, int rc, const struct ctl_reading *out, const char *msg);
int ctl_set_async(struct ctl *ctl, const struct ctl_request *req, ctl_set_done_fn done, void *arg);

/* Listeners: fn runs after a setting's known value changed (applied through casca, a read saw a
 * new value or a first one), its service started failing (r has no value and a reason) or
 * answered again, on the thread that saw it, outside ctl's locks. It must not block. Registration
 * before calls start or between them; at most 8 listeners. */
typedef void (*ctl_listener_fn)(void *arg, const char *id, const struct ctl_reading *r);
int ctl_listen(struct ctl *ctl, ctl_listener_fn fn, void *arg);
void ctl_unlisten(struct ctl *ctl, ctl_listener_fn fn, void *arg);

/* Records an event about setting id that is not a change (old and new values unset), such as a
 * lease ended by a revoked token, in the audit log. Blocks until committed: not on a
 * completion-queue thread. */
void ctl_audit_event(struct ctl *ctl, const char *caller, const char *id,
                     Casca__V1__AuditOutcome outcome, const char *reason);

/* Lease hook (the agent module installs it): called by ctl_set for every change that would be
 * applied (not dry runs). Returns CASCA_OK to allow, or CASCA_ERR_PRECONDITION with a public-safe
 * reason in why ("held by agent gds until ..."). Runs on the caller's thread; must not block. */
typedef int (*ctl_lease_fn)(void *arg, const char *setting_id, const char *caller,
                            const void *session, char *why, size_t whylen);
void ctl_set_lease_hook(struct ctl *ctl, ctl_lease_fn fn, void *arg);

#endif
