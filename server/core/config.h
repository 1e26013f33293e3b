/* config: cascad's declarative configuration, read from YAML (or JSON) into an immutable, validated
 * snapshot; a reload builds a new snapshot and swaps it in atomically (struct config_live).
 *
 * Keys are declared in tables (key, type, offset, default, bounds); unknown keys and bad values are
 * errors naming file:line:col, and every error of a file is reported, not only the first.
 * Relative paths in the file are relative to the file's directory. */
#ifndef CASCA_CONFIG_H
#define CASCA_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc.h"
#include "yamldoc.h"

struct config_token {
    char *name;   /* who, in logs and audit ("ops", "gds-agent") */
    char *secret; /* the bearer token */
    enum rpc_role role;
};

/* At most this many sections in one program's list (config_load). */
#define CONFIG_SECTIONS_MAX 16

struct config_section;

struct config {
    atomic_uint refs;
    uint64_t generation; /* 1 for the first snapshot, +1 per successful reload */
    char *path;
    struct {
        char *listen;   /* host:port */
        char *data_dir; /* absolute or relative to the working directory */
        char *log_level;
        unsigned threads, workers, worker_queue, stream_queue;
        uint64_t max_message_bytes;
        char *tls_cert, *tls_key, *tls_client_ca; /* NULL: plaintext */
        bool tls_require_client_cert;
    } server;
    struct {
        struct config_token *tokens;
        size_t ntokens;
    } auth;
    struct {
        char *sync; /* every_commit | periodic | none */
        uint64_t sync_interval_ms, map_size, max_map_size;
    } store;
    const struct config_section *const *defs; /* the sections the program passed config_load */
    void *sections[CONFIG_SECTIONS_MAX];      /* sections[i]: what defs[i] parsed, or NULL */
};

/* ---- for feature section parsers (called while a file loads, on the loading thread) ---- */

struct config_loader;

/* Records an error at node at (NULL: no position) of the file being loaded. */
void config_error(struct config_loader *ld, const struct yd_node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Same, for a node of another file the section reads (an SLO file named by the config). */
void config_error_in(struct config_loader *ld, const char *file, const struct yd_node *at,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* The one check every section makes before it reads a node (above all an item of a list) as a
 * map, a list or a value: true when n is of kind want; otherwise records
 * "file:line:col: <what fmt says>, not a <kind>" (file NULL: the configuration file), returns
 * false, and the caller leaves the node out. It must not keep a half-filled item: comparing the
 * next item with one (a NULL id or name) is how a bad file used to crash cascad. */
bool config_expect(struct config_loader *ld, const char *file, const struct yd_node *n,
                   enum yd_kind want, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The name of the configuration file being loaded, as errors show it. */
const char *config_loader_file(const struct config_loader *ld);
/* Errors recorded so far (a parser may stop early once its own part failed). */
size_t config_error_count(const struct config_loader *ld);
/* p resolved against the config file's directory; malloc'ed, caller frees. */
char *config_resolve_path(const struct config_loader *ld, const char *p);
/* The snapshot being loaded, with server:, auth: and store: already read (before any section is
 * parsed; --listen and --data-dir overrides come later). For a section's checks that depend on
 * them (a listener that must be loopback without auth tokens). */
const struct config *config_loader_config(const struct config_loader *ld);
/* Whether listen ("host:port", "[v6]:port", "unix:path") accepts local connections only: a unix
 * socket, "localhost", or a literal address in 127.0.0.0/8 or ::1. Pure. */
bool config_listen_is_loopback(const char *listen);
/* Value parsers shared by every section: NULL on success, else why the text is wrong. */
const char *config_parse_uint(const char *s, uint64_t *out);
const char *config_parse_size(const char *s, uint64_t *out);        /* 4096, 64MiB, 1GiB */
const char *config_parse_duration_ms(const char *s, uint64_t *out); /* 500ms, 1s, 5m, 1h */
const char *config_parse_bool(const char *s, bool *out);
const char *config_parse_double(const char *s, double *out); /* finite numbers only */

/* ---- the key engine: a map of keys read by a table into a struct ----
 * A feature declares its keys as rows {name, type, offset, default, bounds} and calls
 * config_load_keys; unknown keys are errors that list the table's keys, bad values are errors
 * naming the key, and every error is file:line:col. */
enum config_type {
    CONFIG_CUSTOM,  /* a key the caller reads itself: the engine only knows its name ({"name"}) */
    CONFIG_STR,     /* char *, strdup'ed */
    CONFIG_PATH,    /* char *, resolved against the config file's directory */
    CONFIG_CHOICE,  /* char *, one of choices */
    CONFIG_BOOL,    /* bool: true/false, yes/no, on/off */
    CONFIG_UINT,    /* unsigned, in [min, max] */
    CONFIG_COUNT,   /* uint64_t, in [min, max] */
    CONFIG_SIZE,    /* uint64_t bytes (4096, 64MiB), in [min, max] */
    CONFIG_MS,      /* uint64_t milliseconds (500ms, 1s, 5m), in [min, max] ms */
    CONFIG_NS,      /* int64_t nanoseconds, written as a duration; bounds in ms */
    CONFIG_SECTION, /* a nested map read by section (same struct: offsets are the struct's) */
    CONFIG_LIST,    /* a list read by the function list */
};

struct config_loader;

struct config_key {
    const char *name; /* NULL ends a table */
    enum config_type type;
    size_t offset;                    /* of the field in the struct the table fills */
    const char *def;                  /* default, parsed like a value from the file; NULL: none */
    uint64_t min, max;                /* numbers' bounds (max 0: none) */
    const char *const *choices;       /* CONFIG_CHOICE: NULL-terminated */
    const struct config_key *section; /* CONFIG_SECTION: its keys */
    void (*list)(struct config_loader *ld, const struct yd_node *seq, void *obj); /* CONFIG_LIST */
    bool forever;                     /* CONFIG_NS: "forever" (or 0) is allowed and stored as 0 */
};

/* Sets the defaults of keys (and of their nested sections) in obj. */
void config_key_defaults(struct config_loader *ld, const struct config_key *keys, void *obj);
/* Reads map (NULL or a YAML null: nothing to read) by keys into obj; where names the map in
 * errors ("server.tls", "tsdb"). Returns false when map is not a map or holds an unknown key. */
bool config_load_keys(struct config_loader *ld, const struct config_key *keys,
                      const struct yd_node *map, const char *where, void *obj);
/* Only the unknown-key check of config_load_keys, for maps a feature reads by hand: errors in
 * file (NULL: the configuration file). False when map has a key that is not in keys. */
bool config_check_keys(struct config_loader *ld, const char *file, const struct yd_node *map,
                       const struct config_key *keys, const char *where);

/* ---- sections: the top-level keys a feature owns ----
 * Each feature exports one descriptor (ctl_config_section, hooks_config_section, ...); a
 * program's main passes the sections it needs to config_load, and reads each one's result with
 * config_section_of. config.c itself reads only server:, auth: and store:. */
struct config_section {
    const char *const *keys; /* the top-level keys it owns, NULL-terminated */
    /* values[i] is the node of keys[i], or NULL when absent. Called on every load, so the
     * feature can fill its defaults. Returns the section (NULL is allowed when it has nothing)
     * and records problems with config_error. NULL parse: the keys belong to a program that
     * shares the file (casca-hook reads cascad's file); they are known here but not read. */
    void *(*parse)(struct config_loader *ld, const struct yd_node *const values[]);
    void (*free)(void *section);
};

/* What sec parsed into c; NULL when c's program did not pass sec (or it has nothing). */
void *config_section_of(const struct config *c, const struct config_section *sec);

struct config_errors {
    char **lines; /* "file:line:col: message" */
    size_t n;
};
void config_errors_free(struct config_errors *e);

/* Command-line values that override the file (NULL: keep the file's). */
struct config_overrides {
    const char *listen, *data_dir;
};

/* Loads and validates path with the feature sections of the program (NULL-terminated, at most
 * CONFIG_SECTIONS_MAX; the array must outlive the snapshots). On success *out holds one reference. On failure returns
 * CASCA_ERR_CONFIG (also for an unreadable file), *out is NULL and errs lists every problem. Any thread. */
int config_load(const char *path, const struct config_overrides *ov,
                const struct config_section *const sections[], struct config **out,
                struct config_errors *errs);
struct config *config_ref(struct config *c);
void config_unref(struct config *c); /* safe on NULL */

/* Keys of next that differ from cur but only take effect at restart, as warnings. */
void config_restart_warnings(const struct config *cur, const struct config *next,
                             struct config_errors *warnings);

/* The live snapshot: readers take a reference, a reload swaps the pointer. Thread-safe. */
struct config_live;
struct config_live *config_live_create(struct config *first); /* takes the reference */
struct config *config_live_get(struct config_live *live);      /* caller unrefs */
/* Installs next (takes its reference), numbering it current generation + 1. */
void config_live_swap(struct config_live *live, struct config *next);
void config_live_destroy(struct config_live *live); /* safe on NULL */

#endif
