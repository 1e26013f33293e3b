/* casca.h: libcasca, the continuous-reporter library of casca (installed header).
 *
 * A reporter sends measurements from any application to a casca bus (nng: tcp://, ipc://; or
 * udp://, one datagram per message, for many small reports) under a topic; hooks configured in
 * cascad (or casca-hook) turn them into time series. The library knows
 * nothing about the application: it sends JSON objects as they are, or points (series, tags,
 * value, time) encoded as casca.v1.PublishRequest for hooks with `format: protobuf`.
 *
 * Never blocks the caller: casca_report_* copy the message into a bounded buffer and return at
 * once; a background thread sends it, and the connection is re-established by itself whenever
 * the bus restarts or the network drops. When the buffer is full the message is dropped, counted,
 * and CASCA_ERR_FULL is returned.
 *
 * Wire format (one nng PUSH message, or one UDP datagram): topic bytes, a NUL byte, the payload.
 *
 * Threads: every function may be called from any thread; one reporter may be shared. */
#ifndef CASCA_H
#define CASCA_H

#include <stddef.h>
#include <stdint.h>

#include "casca_err.h"

#ifdef __cplusplus
extern "C" {
#endif

struct casca_reporter;

/* Zero fields take their defaults. */
struct casca_reporter_options {
    size_t max_queue_messages; /* messages buffered before dropping, default 4096 */
    size_t max_queue_bytes;    /* bytes buffered before dropping, default 16 MiB */
};

struct casca_tag {
    const char *key;
    const char *value;
};

struct casca_point {
    const char *series;           /* e.g. "transcoding_fps", non-empty */
    const struct casca_tag *tags; /* may be NULL when ntags is 0 */
    size_t ntags;
    double value;    /* finite */
    int64_t time_ns; /* ns since the Unix epoch (UTC); 0 = when the hook receives it */
};

/* Delivery is at most once: a message handed to the bus connection ("sent") is lost if cascad
 * restarts before reading it (nng's PUSH keeps no copy); messages still queued wait for the
 * reconnection. A datagram (udp://) is lost if nobody listens or the bus's buffer is full (cascad
 * counts the second). Publish over gRPC answers once points are stored, for data that must not be
 * lost. */
struct casca_reporter_stats {
    uint64_t sent;    /* messages handed to the bus connection */
    uint64_t dropped; /* messages dropped: buffer full, or still unsent at close */
    uint64_t queued;  /* messages in the buffer now */
};

/* Opens a reporter sending to the bus at address (tcp://HOST:PORT, ipc:///path, udp://HOST:PORT)
 * with topic (1..256 bytes, no NUL). The bus need not be up yet. Returns CASCA_OK and *out, or
 * CASCA_ERR_INVALID (bad address, an unknown host, or a bad topic) / CASCA_ERR_NOMEM. Close it with
 * casca_reporter_close. Over udp://, a message over 65,507 bytes is refused (CASCA_ERR_INVALID). */
int casca_reporter_open(const char *address, const char *topic,
                        const struct casca_reporter_options *opts, struct casca_reporter **out);

/* Sends a JSON document (an object, or an array of objects for a batch) as is: len bytes of json
 * (not checked here: the hook validates). CASCA_OK queued, CASCA_ERR_FULL dropped. */
int casca_report_json(struct casca_reporter *r, const char *json, size_t len);

/* Sends one point (series, value, time; no tags), as a casca.v1.PublishRequest. */
int casca_report_value(struct casca_reporter *r, const char *series, double value, int64_t time_ns);

/* Sends a batch of points as one casca.v1.PublishRequest message: the efficient way to send
 * many. CASCA_ERR_INVALID for an empty series name or a value that is not finite (nothing sent). */
int casca_report_points(struct casca_reporter *r, const struct casca_point *pts, size_t n);

void casca_reporter_stats(struct casca_reporter *r, struct casca_reporter_stats *st);

/* Sends what is still buffered, waiting at most timeout_ms, then closes the connection and frees
 * the reporter. What could not be sent in time is dropped and counted (see stats first).
 * Returns the number of messages dropped over the reporter's life. Safe on NULL. */
uint64_t casca_reporter_close(struct casca_reporter *r, int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif
