/* remote_write: POST /api/v1/write on cascad's HTTP listener, Prometheus's remote write 1.0
 * (a snappy-compressed prometheus.WriteRequest), so an existing Prometheus pushes series into
 * casca. Each sample becomes a point: series = the `__name__` label, tags = the other labels,
 * time = the sample's milliseconds. The points take Publish's path (telemetry_submit: the same
 * checks, limit, counters and hooks; topic = the caller's token name), and the answer waits for
 * them to be stored.
 *
 * Answers, as Prometheus's remote-write client reads them: 204 stored; 400 for a request that can
 * never succeed (not snappy, not a WriteRequest, over the limit, or some samples refused: the
 * rest are stored and the body names the first reason), which Prometheus drops; 415 for another
 * content type, encoding or protocol version; 413 for a body that inflates past the limit; 503
 * with Retry-After when the ingest stage is full or closing, which Prometheus retries. Staleness
 * markers (the NaN Prometheus sends when a series disappears) are skipped, not refused. */
#ifndef CASCA_REMOTE_WRITE_H
#define CASCA_REMOTE_WRITE_H

#include "http_server.h"

struct telemetry;

#define REMOTE_WRITE_PATH "/api/v1/write"
/* The most bytes a request may inflate to. */
#define REMOTE_WRITE_MAX_BYTES (32u << 20)

/* http_handler_fn for POST /api/v1/write (reporter and operator roles); arg is the telemetry
 * service. Blocks until the points are stored: the HTTP worker threads only. */
void remote_write_handler(void *arg, const struct http_request *req, struct http_response *res);

#endif
