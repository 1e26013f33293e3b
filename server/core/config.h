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

/* Feature sections: each feature parses and validates its own top-level keys into its own
 * immutable struct (see config_section in config.c: one row per feature). */
enum config_section_id {
    CONFIG_SECTION_SETTINGS, /* ctl.c: settings, settings_files */
    CONFIG_SECTION_CARBON, /* carbon.c: carbon */
    CONFIG_SECTION_HOOKS,  /* hooks.c: bus, hooks */
    CONFIG_SECTION_PROBES, /* probe.c: probes */
    CONFIG_SECTION_TSDB,   /* telemetry.c: tsdb */
    CONFIG_SECTION_SLOS,   /* slo.c: slos, slo_files, slo_engine */
    CONFIG_SECTION__COUNT
};

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
    void *sections[CONFIG_SECTION__COUNT + 1]; /* each feature's parsed section, or NULL */
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
/* Value parsers shared by every section: NULL on success, else why the text is wrong. */
const char *config_parse_uint(const char *s, uint64_t *out);
const char *config_parse_size(const char *s, uint64_t *out);        /* 4096, 64MiB, 1GiB */
const char *config_parse_duration_ms(const char *s, uint64_t *out); /* 500ms, 1s, 5m, 1h */
const char *config_parse_bool(const char *s, bool *out);
const char *config_parse_double(const char *s, double *out); /* finite numbers only */

struct config_errors {
    char **lines; /* "file:line:col: message" */
    size_t n;
};
void config_errors_free(struct config_errors *e);

/* Command-line values that override the file (NULL: keep the file's). */
struct config_overrides {
    const char *listen, *data_dir;
};

/* Loads and validates path. On success *out holds one reference. On failure returns
 * CASCA_ERR_CONFIG (also for an unreadable file), *out is NULL and errs lists every problem. Any thread. */
int config_load(const char *path, const struct config_overrides *ov, struct config **out,
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
