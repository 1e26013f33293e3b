/* casca_client.h: libcasca's gRPC client (installed header), on grpc's C core.
 *
 * One client is one channel to cascad (HTTP/2, reconnected by grpc as needed). Calls are
 * synchronous and typed by protobuf-c: the request is any generated message, the reply is decoded
 * with the descriptor given. Methods are named by their full path, e.g.
 * "/casca.v1.SloService/GetSlo" (the generated casca/v1/ *.pb-c.h headers are installed beside
 * this one).
 *
 * Errors: every function returns CASCA_OK or a casca_err, and fills a struct casca_status with the
 * gRPC status code and the server's message when there is one (a message meant for people: what
 * was wrong and how to fix it; st may be NULL). UNAVAILABLE from a channel that cannot connect
 * says so with the target ("cannot reach cascad at HOST:PORT: ...connection refused").
 * casca_err_from_grpc maps a gRPC code to the one error enum.
 *
 * Threads: a client may be shared by threads (each call has its own completion queue). A stream
 * is used by one thread at a time. */
#ifndef CASCA_CLIENT_H
#define CASCA_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <protobuf-c/protobuf-c.h>

#include "casca_err.h"

#ifdef __cplusplus
extern "C" {
#endif

struct casca_client;
struct casca_stream;

/* Zero fields take their defaults; timeout_ms < 0 = no deadline at all. */
struct casca_client_options {
    const char *token;      /* bearer token sent as "authorization: Bearer TOKEN", NULL = none */
    int tls;                /* 1 = TLS (system roots, or ca_file), 0 = plaintext */
    const char *ca_file;    /* PEM roots for TLS, NULL = system roots */
    int timeout_ms;         /* unary calls' deadline and a stream send's limit, default 5000 */
    int connect_timeout_ms; /* how long a call waits for an unconnected channel, default 3000 */
};

struct casca_status {
    int code;          /* gRPC status code: 0 OK, 5 NOT_FOUND, 14 UNAVAILABLE... */
    char message[512]; /* the server's message, or what failed locally; "" when OK */
};

/* Opens a client for target ("host:port", "dns:///host:port", "unix:/path"); opts may be NULL.
 * Nothing is connected yet: the first call connects (waiting at most connect_timeout_ms).
 * CASCA_ERR_INVALID for an empty target, a bad token or an unreadable ca_file (st, which may be
 * NULL, says which). */
int casca_client_open(const char *target, const struct casca_client_options *opts,
                      struct casca_client **out, struct casca_status *st);
/* Safe on NULL. Every stream of the client must be closed first. */
void casca_client_close(struct casca_client *c);

/* A unary call: sends req to method and decodes the reply with reply_desc into *reply (free it
 * with protobuf_c_message_free_unpacked). On failure *reply is NULL and st says why. */
int casca_call(struct casca_client *c, const char *method, const ProtobufCMessage *req,
               const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply,
               struct casca_status *st);

/* Streams: server streaming (WatchSlos, WatchSettings...), client streaming (PublishStream) or
 * both ways (AgentService/Session). Opens a call with no deadline; req (may be NULL) is sent as
 * the first message, and for a server-streaming method the sending side is then closed
 * (half_close = 1). An unreachable server is reported here (UNAVAILABLE) when the channel cannot
 * connect within connect_timeout_ms; anything the server says comes through casca_stream_recv.
 * The stream belongs to one thread at a time; close it before its client. */
int casca_stream_open(struct casca_client *c, const char *method, const ProtobufCMessage *req,
                      int half_close, struct casca_stream **out, struct casca_status *st);
/* Sends one message and waits (at most the client's timeout_ms) until grpc has taken it.
 * CASCA_ERR_UNAVAILABLE when the call has ended or the sending side is closed (then
 * casca_stream_recv tells why). */
int casca_stream_send(struct casca_stream *s, const ProtobufCMessage *msg, struct casca_status *st);
/* Closes the sending side (the server sees the end of the client's stream). */
int casca_stream_close_send(struct casca_stream *s, struct casca_status *st);
/* Waits at most timeout_ms (<0 = forever, 0 = poll) for the next message, decoded with desc into
 * *msg (free it with protobuf_c_message_free_unpacked).
 *   - a message: CASCA_OK and *msg set;
 *   - nothing in time: CASCA_ERR_TIMEOUT, *msg NULL, st->code 0 (the call is still open): the
 *     stream stays usable and the next recv goes on waiting for the same message;
 *   - end of stream: *msg NULL, st->code is the final status; CASCA_OK when the server finished
 *     with OK, otherwise casca_err_from_grpc(st->code). */
int casca_stream_recv(struct casca_stream *s, const ProtobufCMessageDescriptor *desc,
                      ProtobufCMessage **msg, int timeout_ms, struct casca_status *st);
/* Cancels the call if it is still open and frees the stream. Safe on NULL. */
void casca_stream_close(struct casca_stream *s);

/* Reconnecting (the stream helpers' callers: agents that keep a session open across a restart
 * of cascad or a broken connection). A caller that reconnects waits casca_backoff_next() between
 * attempts: exponential backoff with full jitter (a uniform draw in [0, min(max_ms, base_ms *
 * 2^attempt)], never below 1 ms), so that many agents cut off by the same restart do not all come
 * back at once. casca_backoff_reset() after a success. A caller that prefers to fail fast (a
 * supervisor restarts it) does not reconnect at all: every agent has a flag for that. */
struct casca_backoff {
    int base_ms;      /* the first attempt's ceiling; 0 = CASCA_BACKOFF_BASE_MS */
    int max_ms;       /* the cap; 0 = CASCA_BACKOFF_MAX_MS */
    unsigned attempt; /* attempts since the last reset */
    unsigned seed;    /* rand_r state; 0 = seeded from the clock at the first draw */
};
#define CASCA_BACKOFF_BASE_MS 200
#define CASCA_BACKOFF_MAX_MS 10000
/* The ceiling of the next delay (no jitter): min(max_ms, base_ms * 2^attempt). */
int casca_backoff_ceiling(const struct casca_backoff *b);
/* The next delay in ms (jittered, >= 1) and counts the attempt. */
int casca_backoff_next(struct casca_backoff *b);
void casca_backoff_reset(struct casca_backoff *b);
/* Whether a session that ended with this gRPC status may be opened again with hope: 1 for a lost
 * server or connection (UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED by the server's shutdown,
 * ABORTED, INTERNAL, UNKNOWN, RESOURCE_EXHAUSTED) and for FAILED_PRECONDITION (a lease still held
 * by the session that the broken connection left behind, until the server times it out: retry it
 * only when reconnecting, since at a first Hello it is another agent's lease); 0 for
 * what retrying cannot fix (UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT, NOT_FOUND...). */
int casca_retryable(int grpc_code);

/* One outage at a time, for a client that keeps a session open: whether an end is retried (with
 * the fail-fast field), the jittered wait before the next attempt, and one line on log when an
 * outage starts ("WHO: lost connection to cascad at TARGET: WHY; reconnecting", or "WHO: cannot
 * connect to cascad at TARGET yet: WHY; retrying" before the first success) and one when it ends
 * ("WHO: reconnected after N s"), not one per attempt. Zero-initialise, then set who and target. */
struct casca_reconnect {
    const char *who;         /* log prefix, e.g. "casca-gds" */
    const char *target;      /* HOST:PORT, for the log line */
    int fail_fast;           /* 1 = never retry (a supervisor restarts the program instead) */
    FILE *log;               /* NULL = stderr */
    int ever_connected;      /* a session was opened once: later ends are outages */
    int64_t outage_since_ns; /* CLOCK_MONOTONIC start of the current outage; 0 = none */
    struct casca_backoff backoff;
};
/* Whether a session that ended with this gRPC status (0 = ended by the server without an error,
 * e.g. its shutdown) is opened again: not when fail_fast, not what retrying cannot fix, and not
 * FAILED_PRECONDITION before the first success (then the lease is another agent's). */
int casca_reconnect_should(const struct casca_reconnect *r, int grpc_code);
/* An attempt failed (why: its message): logs the outage's first line if it is new, and returns the
 * ms to wait before the next attempt (casca_backoff_next). */
int casca_reconnect_wait_ms(struct casca_reconnect *r, const char *why);
/* A session is open again: logs the outage's last line, if there was one, and resets the backoff.
 */
void casca_reconnect_ok(struct casca_reconnect *r);

/* gRPC status code -> casca_err (OK -> CASCA_OK, NOT_FOUND -> CASCA_ERR_NOT_FOUND...). */
int casca_err_from_grpc(int code);

#ifdef __cplusplus
}
#endif

#endif
