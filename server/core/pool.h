/* pool: a fixed set of worker threads running jobs from a bounded FIFO queue, so that blocking work
 * (HTTP to a managed service, fsync, LMDB write waits) never runs on a completion-queue thread. */
#ifndef CASCA_POOL_H
#define CASCA_POOL_H

#include <stddef.h>

struct pool;
typedef void (*pool_job_fn)(void *arg);

/* Starts threads workers; at most queue_limit jobs wait. NULL on failure. Any thread. */
struct pool *pool_create(unsigned threads, unsigned queue_limit);
/* Queues fn(arg). CASCA_ERR_FULL when queue_limit jobs wait, CASCA_ERR_UNAVAILABLE after
 * pool_destroy began. Thread-safe. */
int pool_submit(struct pool *p, pool_job_fn fn, void *arg);
/* Runs every queued job, then joins the threads and frees the pool. Safe on NULL. Must not be
 * called from a pool thread. */
void pool_destroy(struct pool *p);

#endif
