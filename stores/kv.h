/* kv: a key-value map of byte strings in one named database of a store, for small state (agent
 * leases, last applied settings, provider cursors). Writes go through the store's writer. */
#ifndef CASCA_KV_H
#define CASCA_KV_H

#include <stddef.h>

#include "store.h"

struct kv;

/* Opens (creating if needed) the named database `name` of s. The caller owns *out and frees it
 * with kv_close, before store_close. Any thread except the store's writer thread; blocks. */
int kv_open(struct store *s, const char *name, struct kv **out);

/* Frees the handle; the data stays in the store. Safe on NULL. */
void kv_close(struct kv *kv);

/* Sets key (1 to 511 bytes) to val (vlen may be 0), replacing any old value. Blocks until
 * committed (durable if the store syncs every commit). The bytes are copied; the caller keeps
 * ownership. Any thread except the store's writer thread. */
int kv_put(struct kv *kv, const void *key, size_t klen, const void *val, size_t vlen);

/* Like kv_put but returns once queued (key and val are copied first). done (may be NULL) gets the
 * result later, on the store's writer thread; see store_write for its rules and errors
 * (CASCA_ERR_FULL when the store's queue is full, and then done is not called). Any thread. */
int kv_put_async(struct kv *kv, const void *key, size_t klen, const void *val, size_t vlen,
                 store_done_fn done, void *done_arg);

/* Deletes key; CASCA_ERR_NOT_FOUND when it was absent. Blocks like kv_put. */
int kv_del(struct kv *kv, const void *key, size_t klen);

/* Sets *val to a malloc'ed copy of key's value (the caller frees it; never NULL on success, even
 * when *vlen is 0) and *vlen to its length. CASCA_ERR_NOT_FOUND when absent. Any thread. */
int kv_get(struct kv *kv, const void *key, size_t klen, void **val, size_t *vlen);

/* Calls fn for each key that starts with prefix (plen 0: every key), in key order, inside one
 * read transaction. k and v are LMDB's memory, valid only during that call of fn. Stops when fn
 * returns non-zero and returns that value; otherwise returns 0 or a casca_err. fn must not call
 * kv_put, kv_del or anything else that waits for a write (it could deadlock with a map resize);
 * kv_get and kv_put_async are fine. Any thread. */
int kv_foreach_prefix(struct kv *kv, const void *prefix, size_t plen,
                      int (*fn)(const void *k, size_t kl, const void *v, size_t vl, void *arg),
                      void *arg);

#endif
