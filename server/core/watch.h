/* watch: the machinery shared by the server-streaming watches (ServiceControl.WatchSettings,
 * SloService.WatchSlos): a hub per service holds its open watches, drops a watch when its call is
 * cancelled, and runs one flusher thread.
 *
 * A watch has one slot per key (a setting id, an SLO id). A slot holds the latest value not yet
 * sent (latest wins), so a slow reader costs at most one value per key, never a growing queue.
 * A value is sent at once when the call's send queue has room and the watch's minimum interval
 * since the key's last send has passed; otherwise it stays pending and the flusher sends it when
 * it may (queue full: retried every 20 ms).
 *
 * Life of a watch (all on the service's handler thread unless said):
 *   w = watch_open(hub, ctx, ids, n, all, min_interval)   registered: published values fill slots
 *   watch_seed(w, id, fill, arg) ...                       the current values, read by the caller
 *   watch_start(w)                                         sends them; w is the hub's from now on
 * The hub ends the call (CANCELLED, "watch ended") when the client goes away or the server shuts
 * down; the service never finishes a watch call itself.
 *
 * Values are opaque to the hub: ops->value_size bytes per slot (zeroed when a slot is made),
 * written by the service's fill functions, sent by ops->send, and freed by ops->clear once sent.
 * Every callback runs under the hub's lock: it must not block nor call into the hub. */
#ifndef CASCA_WATCH_H
#define CASCA_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc.h"

struct watch_ops {
    size_t value_size; /* bytes of one slot's value */
    /* Frees what a value owns (not the value's storage) and leaves it as zeroes would. NULL when
     * values own nothing. */
    void (*clear)(void *value);
    /* Builds the message for key id from value and queues it with rpc_send; returns rpc_send's
     * result (CASCA_ERR_FULL keeps the value pending). */
    int (*send)(struct rpc_ctx *ctx, const char *id, void *value);
    /* Optional: a watch now has (keyed) or no longer has (unkeyed) a slot for key id, so the
     * service can keep what is watched fresh; arg is the hub's. Under the hub's lock or before
     * the watch is shared: must not block nor call into the hub. */
    void (*keyed)(void *arg, const char *id);
    void (*unkeyed)(void *arg, const char *id);
};

/* Writes a new value into value (the slot's current one: zeroes, a sent and cleared one, or a
 * pending one to replace). CASCA_OK marks the slot pending; anything else leaves it as it was
 * (so fill should change nothing when it fails). */
typedef int (*watch_fill_fn)(void *value, void *arg);

struct watch_hub;
struct watch;

/* Creates a hub and starts its flusher thread. ops must outlive the hub; arg is passed to
 * ops->keyed and ops->unkeyed. NULL on failure. Main thread. */
struct watch_hub *watch_hub_create(const struct watch_ops *ops, void *arg);
/* Stops the flusher and frees the hub. After rpc_server_destroy (every watch call is over), so
 * no watch is left but defensively freed. Safe on NULL. Main thread. */
void watch_hub_destroy(struct watch_hub *h);

/* Opens a watch of the distinct keys ids[0..n) on ctx (a server-stream call handed to the
 * service) and registers the hub's rpc_on_cancel. With all, a key first published later gets a
 * slot of its own (watch_publish with create). min_interval_ns: least time between two sends of
 * one key (0: none). Until watch_start only slots are filled. Returns the watch with a reference
 * for the caller, which must end with watch_start; NULL when out of memory (nothing registered:
 * the caller finishes the call). Copies ids. Any thread that may block briefly (takes the lock).
 */
struct watch *watch_open(struct watch_hub *h, struct rpc_ctx *ctx, const char *const *ids, size_t n,
                         bool all, int64_t min_interval_ns);
/* Fills key id's slot with fill(value, arg) unless a published value is already pending there
 * (it is newer than what the caller read). Keys the watch does not have are skipped. Between
 * watch_open and watch_start; takes the lock. */
void watch_seed(struct watch *w, const char *id, watch_fill_fn fill, void *arg);
/* Marks w ready, sends what is pending and drops the caller's reference: w must not be used
 * after. Takes the lock. */
void watch_start(struct watch *w);

/* A new value for key id: for every watch of the hub that has a slot for id (or, with create, an
 * all-keys watch that has none yet: one is made), fill(value, arg) writes it; the slot is then
 * pending and sent if it may be. Never blocks on a client: for the service's event threads. */
void watch_publish(struct watch_hub *h, const char *id, bool create, watch_fill_fn fill, void *arg);

#endif
