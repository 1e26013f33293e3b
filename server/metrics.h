/* metrics: GET /metrics, cascad's figures in the Prometheus text format (prom.h), read from every
 * part through its public header: SLOs, settings, grid intensity, agent sessions, hooks, buses,
 * the store, telemetry and the call layer.
 *
 * Privacy: SLOs and settings are labelled by their public id (the alias agents see) and nothing
 * else; series, tags, SLO zones, controllers' URLs, paths and commands never appear. Hook names
 * appear to operators only. */
#ifndef CASCA_METRICS_H
#define CASCA_METRICS_H

#include <stdbool.h>

#include "http_server.h"
#include "prom.h"

struct daemon;

/* Writes every metric of d into b (b->failed after an allocation failure); the per-hook rows only
 * for an operator. Reads settings casca has not read yet from their services, within a shared
 * deadline of a second: blocks, so a worker thread only. */
void metrics_write(struct daemon *d, struct prom_buf *b, bool operator);
/* http_handler_fn for GET /metrics; arg is the daemon. */
void metrics_handler(void *arg, const struct http_request *req, struct http_response *res);

#endif
