/* rpc: the gRPC call layer of cascad, on the grpc C core. One completion queue served by a small
 * pool of threads, a method table, one state machine per call; services see protobuf-c messages.
 *
 * All grpc_* calls of casca live in rpc.c. A service registers its method table (RPC_METHOD
 * rows) before rpc_server_start. For every call the layer checks the method, the caller's role,
 * the deadline and the request's encoding, then calls the method's handler:
 *   - unary and server-stream: handler(ctx, request) once;
 *   - client-stream and bidi: handler(ctx, message) for each message, then handler(ctx, NULL) when
 *     the client half-closes (or the call is cancelled: rpc_cancelled tells). Once the service has
 *     ended the call itself (rpc_finish), its handler is not called again.
 * The next message is read only after the handler returns, so a handler sees messages in order.
 * A handler runs on a completion-queue thread and must not block there; a method flagged
 * RPC_BLOCKING runs its handler on the worker pool instead.
 *
 * Ownership: the request message is owned by the layer and freed when the handler returns (copy
 * what you keep). Every call handed to a handler must end with exactly one rpc_reply or rpc_finish,
 * from any thread, even after cancellation (then it is cheap and sends nothing); after it the ctx
 * must not be touched. A service that keeps a ctx beyond its handler (a watch) registers
 * rpc_on_cancel so it can drop it when the client goes away, the deadline passes, or the server
 * shuts down. */
#ifndef CASCA_RPC_H
#define CASCA_RPC_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "casca_err.h"

enum rpc_kind { RPC_UNARY, RPC_SERVER_STREAM, RPC_CLIENT_STREAM, RPC_BIDI };

/* Roles from bearer tokens; each method lists the roles that may call it. The operator may call
 * everything. With no tokens configured every caller is an operator (loopback only). */
enum rpc_role {
    RPC_ROLE_NONE = 0,
    RPC_ROLE_VIEWER = 1u << 0,
    RPC_ROLE_REPORTER = 1u << 1,
    RPC_ROLE_AGENT = 1u << 2,
    RPC_ROLE_OPERATOR = 1u << 3,
};
#define RPC_ROLES_ANY (RPC_ROLE_VIEWER | RPC_ROLE_REPORTER | RPC_ROLE_AGENT | RPC_ROLE_OPERATOR)
#define RPC_ROLES_READ (RPC_ROLE_VIEWER | RPC_ROLE_AGENT | RPC_ROLE_OPERATOR)

/* Name of one role ("operator"), and the role of a name (RPC_ROLE_NONE if unknown). */
const char *rpc_role_name(enum rpc_role role);
enum rpc_role rpc_role_parse(const char *name);

enum rpc_flags {
    RPC_BLOCKING = 1u << 0, /* run the handler on the worker pool */
    RPC_PUBLIC = 1u << 1,   /* callable without a token (health checks) */
};

struct rpc_ctx; /* one call, opaque */

typedef void (*rpc_handler_fn)(struct rpc_ctx *ctx, const ProtobufCMessage *msg);
typedef void (*rpc_cancel_fn)(struct rpc_ctx *ctx, void *arg);

/* One row of a service's method table, a static const array per service:
 *
 *   static const struct rpc_method_def methods[] = {
 *       RPC_METHOD("GetStatus", casca__v1__get_status_request, casca__v1__get_status_response,
 *                  RPC_UNARY, RPC_ROLE_OPERATOR, 0, get_status),
 *       ...
 *   };
 *   rpc_server_add_service(srv, &casca__v1__admin_service__descriptor, NULL, methods,
 *                          RPC_NMETHODS(methods), admin);
 *
 * The path ("/casca.v1.AdminService/GetStatus") comes from the service's descriptor, and every
 * row is checked against it when it is registered, so a misspelled name, a wrong message type or
 * a wrong streaming kind stops the daemon at start-up instead of compiling. */
struct rpc_method_def {
    const char *name; /* "GetStatus" */
    const ProtobufCMessageDescriptor *request;
    const ProtobufCMessageDescriptor *response;
    enum rpc_kind kind;
    unsigned roles; /* RPC_ROLE_* that may call it (operator always may) */
    unsigned flags; /* enum rpc_flags */
    rpc_handler_fn handler;
};

/* req and resp are protoc-c message names (casca__v1__get_status_request). */
#define RPC_METHOD(name, req, resp, kind, roles, flags, handler)                                   \
    {name, &req##__descriptor, &resp##__descriptor, kind, roles, flags, handler}
#define RPC_NMETHODS(table) (sizeof(table) / sizeof((table)[0]))

/* Answers a bearer token (not NUL-terminated) with a role and a caller name (copied into name,
 * at most namelen bytes). Called on completion-queue threads for every call; must not block. */
typedef int (*rpc_auth_fn)(void *arg, const char *token, size_t len, enum rpc_role *role,
                           char *name, size_t namelen);

struct rpc_options {
    unsigned cq_threads;      /* completion-queue threads, default 2 */
    unsigned workers;         /* worker-pool threads for RPC_BLOCKING handlers, default 4 */
    unsigned worker_queue;    /* jobs waiting for a worker before RESOURCE_EXHAUSTED, default 4096 */
    size_t max_message_bytes; /* largest request accepted, default 4 MiB */
    unsigned stream_queue;    /* messages queued behind the one in flight, default 64 */
    rpc_auth_fn auth;         /* NULL: every caller is an operator named "local" */
    void *auth_arg;
    /* A serialized google.protobuf.FileDescriptorSet of every service registered (the one
     * reflection serves), to check each method's streaming kind; protoc-c's descriptors do not
     * say. Required by rpc_server_add_service. */
    const unsigned char *descriptor_set;
    size_t descriptor_set_size;
};

struct rpc_tls {
    const char *cert_pem; /* server certificate chain */
    const char *key_pem;  /* its private key */
    const char *client_ca_pem; /* NULL: no client certificates asked for */
    bool require_client_cert;
};

struct rpc_stats {
    uint64_t calls_total, calls_active, calls_failed;
};

struct rpc_server;

/* Creates a server (not yet listening). Returns NULL on allocation failure. Main thread only. */
struct rpc_server *rpc_server_create(const struct rpc_options *opts);
/* Registers the n rows of service svc (its protoc-c descriptor), each handler getting arg back
 * from rpc_method_arg. as: the service's full name in paths, NULL = svc's own (a service served
 * under a second name with the same messages, like reflection's v1alpha). Each row must name a
 * method of svc with its request and response types and, per the descriptor set, its streaming
 * kind: otherwise nothing is registered and CASCA_ERR_INVALID is returned with the row named in
 * err. rows must outlive the server. Before rpc_server_start only. */
int rpc_server_add_service(struct rpc_server *srv, const ProtobufCServiceDescriptor *svc,
                           const char *as, const struct rpc_method_def *rows, size_t n,
                           void *arg, char *err, size_t errlen);
/* Listens on addr ("127.0.0.1:50051"), plaintext when tls is NULL. Returns the bound port (useful
 * with port 0) or 0 on failure. Before rpc_server_start only. */
int rpc_server_listen(struct rpc_server *srv, const char *addr, const struct rpc_tls *tls);
/* Starts the completion-queue threads and the worker pool. */
int rpc_server_start(struct rpc_server *srv);
/* Graceful shutdown: stops accepting, cancels open calls (their rpc_on_cancel callbacks run),
 * waits for every call to end, stops the threads. Then frees everything. Safe on NULL. */
void rpc_server_destroy(struct rpc_server *srv);
/* Paths of the services served ("grpc.health.v1.Health"), unique, in registration order;
 * valid until destroy. Any thread after start. */
size_t rpc_server_services(const struct rpc_server *srv, const char *const **names);
void rpc_server_stats(const struct rpc_server *srv, struct rpc_stats *st);
/* Per-method counters, for /metrics: calls by gRPC status code, and a latency histogram of the
 * time from a call's arrival to its status being decided (for streams, the stream's life). */
#define RPC_STATUS_CODES 17     /* grpc_status_code 0 (OK) .. 16 (UNAUTHENTICATED) */
#define RPC_LATENCY_BUCKETS 14  /* upper bounds in rpc_latency_bounds_s, then +Inf */
extern const double rpc_latency_bounds_s[RPC_LATENCY_BUCKETS];
struct rpc_method_stats {
    const char *path; /* "/casca.v1.SloService/ListSlos"; valid as long as the server */
    uint64_t codes[RPC_STATUS_CODES];
    uint64_t latency[RPC_LATENCY_BUCKETS + 1]; /* per bucket, not cumulative; the last is +Inf */
    uint64_t latency_sum_ns;
};
typedef void (*rpc_method_stats_fn)(void *arg, const struct rpc_method_stats *st);
/* Calls fn once per registered method (in no particular order) with a snapshot of its counters
 * (each counter read atomically, not all of them at one instant). Any thread after start; never
 * blocks. */
void rpc_server_method_stats(const struct rpc_server *srv, rpc_method_stats_fn fn, void *arg);
/* After the tokens changed (a reload): every open stream authorised by a token that is gone, or
 * whose role may no longer call its method, is ended, UNAUTHENTICATED or PERMISSION_DENIED with
 * a message naming the token's name (never its secret). For each, fn (may be NULL) is asked
 * first and returns true when the service ended the call itself (to release what it holds);
 * otherwise the call is cancelled with that status, and its rpc_on_cancel runs. Health and
 * reflection (RPC_PUBLIC) are never ended. Returns how many were ended. Any thread but a
 * completion-queue one. */
typedef bool (*rpc_revoke_fn)(void *arg, struct rpc_ctx *ctx, int err, const char *why);
size_t rpc_server_reauthorize(struct rpc_server *srv, rpc_revoke_fn fn, void *arg);

/* ---- inside a call (any thread, until the call's rpc_reply / rpc_finish) ---- */

/* Unary and server-stream end: sends msg (may be NULL for none) and status OK. */
void rpc_reply(struct rpc_ctx *ctx, const ProtobufCMessage *msg);
/* Ends the call with err (CASCA_OK for success) and a message for the caller (printf format; it
 * must say what was wrong and how to fix it, and never leak private details to non-operators). */
void rpc_finish(struct rpc_ctx *ctx, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void rpc_vfinish(struct rpc_ctx *ctx, int err, const char *fmt, va_list ap);
/* A required request field: when value is NULL or empty, ends the call with INVALID_ARGUMENT
 * naming the field ("id is required: <how>") and returns false. The same answer everywhere for
 * a missing field, before any lookup could say NOT_FOUND. */
bool rpc_require(struct rpc_ctx *ctx, const char *field, const char *value, const char *how);
/* The same for every element of a repeated string field ("ids[1] is empty: ..."). */
bool rpc_require_each(struct rpc_ctx *ctx, const char *field, char *const *values, size_t n,
                      const char *how);
/* Streams: queues msg behind the send in flight (it is serialised now; the caller keeps msg).
 * CASCA_ERR_FULL when the bounded queue is full (nothing queued: coalesce and retry later),
 * CASCA_ERR_CANCELLED when the call is over. */
int rpc_send(struct rpc_ctx *ctx, const ProtobufCMessage *msg);
/* Messages queued and not yet written to the transport. */
unsigned rpc_send_pending(struct rpc_ctx *ctx);

/* fn(ctx, arg) runs once, on a completion-queue thread, when the call is cancelled (client gone,
 * deadline passed, server shutting down) before the service finished it. It must not block; it
 * should make the service drop the ctx and call rpc_finish. Set it at most once, from the handler. */
void rpc_on_cancel(struct rpc_ctx *ctx, rpc_cancel_fn fn, void *arg);
bool rpc_cancelled(const struct rpc_ctx *ctx);
/* Milliseconds before the call's deadline (INT64_MAX if none; <= 0 when passed). */
int64_t rpc_deadline_ms(const struct rpc_ctx *ctx);

void *rpc_method_arg(const struct rpc_ctx *ctx);
enum rpc_role rpc_caller_role(const struct rpc_ctx *ctx);
const char *rpc_caller_name(const struct rpc_ctx *ctx);
/* Per-call service state: freed with free_fn when the call is destroyed. */
void rpc_set_data(struct rpc_ctx *ctx, void *data, void (*free_fn)(void *));
void *rpc_data(const struct rpc_ctx *ctx);

#endif
