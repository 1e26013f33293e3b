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

struct config_token {
    char *name;   /* who, in logs and audit ("ops", "gds-agent") */
    char *secret; /* the bearer token */
    enum rpc_role role;
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
};

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
