/* The call layer. Every call is a small state machine driven by completion-queue events:
 *
 *   NEW ──> [close batch started: RECV_CLOSE_ON_SERVER tells us when the call ends or is cancelled]
 *       ──> lookup, auth ──> RECV ──> handler(ctx, msg) ──> (streams in: RECV again ...)
 *   sends: at most one send batch in flight (t_send); later messages wait in a bounded queue; the
 *   status goes out with (or after) the last queued message, initial metadata with the first batch.
 *   These send-side rules are rpc_sendq.c, plain state that a unit test drives without a network.
 *
 * Reference counting: one ref for the service (from the call's arrival until rpc_finish) and one per
 * batch in flight. The tags are embedded in the call (at most one batch of each kind is in flight),
 * so every buffer a batch uses lives until its tag completes. The call is freed at the last unref. */
#include "rpc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "clock.h"
#include "log.h"
#include "pool.h"
#include "rpc_methods.h"
#include "rpc_sendq.h"

#define PENDING_REQUESTS 64 /* calls requested from the core ahead of arrival */

enum tag_kind { TAG_NEW, TAG_RECV, TAG_SEND, TAG_CLOSE, TAG_SHUTDOWN };

struct rpc_tag {
    enum tag_kind kind;
    struct rpc_ctx *ctx;
};

struct rpc_ctx {
    atomic_uint refs;
    struct rpc_server *srv;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    const struct rpc_method *method;
    struct rpc_tag t_new, t_recv, t_send, t_close;
    grpc_byte_buffer *recv_buf;
    int close_cancelled;
    bool handed;      /* the handler has seen the call: from now on only the service finishes it */
    bool got_request; /* unary and server-stream: the one request arrived */
    atomic_bool cancelled;

    pthread_mutex_t lock; /* guards the send side and on_cancel */
    struct rpc_sendq send; /* of grpc_byte_buffer * */
    grpc_status_code status;
    grpc_slice status_details;
    bool has_details;
    rpc_cancel_fn on_cancel;
    void *cancel_arg;

    void *data;
    void (*data_free)(void *);
    enum rpc_role role;
    char caller[64];
    /* a stream authorised by a token is listed, with the token, so a reload can revoke it */
    char *token;
    size_t token_len;
    struct rpc_ctx *live_prev, *live_next; /* under srv->live_lock */
    bool listed;
    int64_t arrived_ns; /* CLOCK_MONOTONIC, for the method's latency histogram */
};

/* A registered method: a row of its service's table, with its path and the service's state. */
struct rpc_method {
    char *path; /* "/casca.v1.AdminService/GetStatus" */
    const struct rpc_method_def *def;
    void *arg;
    /* for rpc_server_method_stats: calls by status code and their latency (relaxed atomics) */
    atomic_uint_fast64_t codes[RPC_STATUS_CODES];
    atomic_uint_fast64_t latency[RPC_LATENCY_BUCKETS + 1];
    atomic_uint_fast64_t latency_sum_ns;
};

struct method_slot {
    struct rpc_method *m;
    size_t len;
};

struct rpc_server {
    struct rpc_options opts;
    grpc_server *server;
    grpc_completion_queue *cq;
    struct pool *pool;
    pthread_t *threads;
    unsigned nthreads;
    struct method_slot *table; /* open addressing by path, size a power of two */
    size_t table_size, nmethods;
    const char **services;
    size_t nservices;
    Google__Protobuf__FileDescriptorSet *descriptors; /* to check methods' streaming kinds */
    bool started;
    atomic_bool shutting_down;
    struct rpc_tag t_shutdown;
    pthread_mutex_t shutdown_lock;
    pthread_cond_t shutdown_cond;
    bool shutdown_done;
    atomic_uint_fast64_t calls_total, calls_active, calls_failed;
    pthread_mutex_t live_lock; /* the list of token-authorised calls */
    struct rpc_ctx *live;
};

/* ---- the one translation from casca_err to gRPC status ---- */

static grpc_status_code rpc_status_of(int err)
{
    switch (err) {
    case CASCA_OK: return GRPC_STATUS_OK;
    case CASCA_ERR_INVALID: return GRPC_STATUS_INVALID_ARGUMENT;
    case CASCA_ERR_CONFIG: return GRPC_STATUS_INVALID_ARGUMENT;
    case CASCA_ERR_NOT_FOUND: return GRPC_STATUS_NOT_FOUND;
    case CASCA_ERR_EXISTS: return GRPC_STATUS_ALREADY_EXISTS;
    case CASCA_ERR_PRECONDITION: return GRPC_STATUS_FAILED_PRECONDITION;
    case CASCA_ERR_PERMISSION: return GRPC_STATUS_PERMISSION_DENIED;
    case CASCA_ERR_UNAUTH: return GRPC_STATUS_UNAUTHENTICATED;
    case CASCA_ERR_FULL: return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case CASCA_ERR_NOMEM: return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case CASCA_ERR_UNAVAILABLE: return GRPC_STATUS_UNAVAILABLE;
    case CASCA_ERR_TIMEOUT: return GRPC_STATUS_DEADLINE_EXCEEDED;
    case CASCA_ERR_CANCELLED: return GRPC_STATUS_CANCELLED;
    case CASCA_ERR_UNIMPLEMENTED: return GRPC_STATUS_UNIMPLEMENTED;
    case CASCA_ERR_IO: return GRPC_STATUS_INTERNAL;
    default: return GRPC_STATUS_INTERNAL;
    }
}

/* ---- method table ---- */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static const struct rpc_method *lookup_method(const struct rpc_server *srv, const char *path,
                                              size_t len)
{
    if (!srv->table_size)
        return NULL;
    size_t mask = srv->table_size - 1;
    for (size_t i = hash_bytes(path, len) & mask;; i = (i + 1) & mask) {
        const struct method_slot *s = &srv->table[i];
        if (!s->m)
            return NULL;
        if (s->len == len && memcmp(s->m->path, path, len) == 0)
            return s->m;
    }
}

static int table_insert(struct rpc_server *srv, struct rpc_method *m)
{
    if ((srv->nmethods + 1) * 2 > srv->table_size) {
        size_t size = srv->table_size ? srv->table_size * 2 : 64;
        struct method_slot *old = srv->table;
        size_t old_size = srv->table_size;
        srv->table = calloc(size, sizeof(*srv->table));
        if (!srv->table) {
            srv->table = old;
            return CASCA_ERR_NOMEM;
        }
        srv->table_size = size;
        srv->nmethods = 0;
        for (size_t i = 0; i < old_size; i++)
            if (old[i].m)
                table_insert(srv, old[i].m);
        free(old);
    }
    size_t len = strlen(m->path);
    if (lookup_method(srv, m->path, len))
        return CASCA_ERR_EXISTS;
    size_t mask = srv->table_size - 1;
    size_t i = hash_bytes(m->path, len) & mask;
    while (srv->table[i].m)
        i = (i + 1) & mask;
    srv->table[i] = (struct method_slot){m, len};
    srv->nmethods++;
    return CASCA_OK;
}

/* "/pkg.Service/Method" -> remembers "pkg.Service" once. */
static int note_service(struct rpc_server *srv, const char *path)
{
    const char *slash = strchr(path + 1, '/');
    if (path[0] != '/' || !slash)
        return CASCA_ERR_INVALID;
    size_t len = (size_t)(slash - path - 1);
    for (size_t i = 0; i < srv->nservices; i++)
        if (strlen(srv->services[i]) == len && memcmp(srv->services[i], path + 1, len) == 0)
            return CASCA_OK;
    const char **grown = realloc(srv->services, (srv->nservices + 1) * sizeof(*grown));
    if (!grown)
        return CASCA_ERR_NOMEM;
    srv->services = grown;
    if (!(srv->services[srv->nservices] = strndup(path + 1, len)))
        return CASCA_ERR_NOMEM;
    srv->nservices++;
    return CASCA_OK;
}

int rpc_server_add_service(struct rpc_server *srv, const ProtobufCServiceDescriptor *svc,
                           const char *as, const struct rpc_method_def *rows, size_t n, void *arg,
                           char *err, size_t errlen)
{
    if (srv->started) {
        snprintf(err, errlen, "cannot register %s: the server has started", svc->name);
        return CASCA_ERR_PRECONDITION;
    }
    if (!srv->descriptors) {
        snprintf(err, errlen, "cannot register %s: the server has no descriptor set to check it "
                              "with", svc->name);
        return CASCA_ERR_INVALID;
    }
    char why[300];
    for (size_t i = 0; i < n; i++) /* all or nothing */
        if (rpc_method_mismatch(srv->descriptors, svc, &rows[i], why, sizeof(why))) {
            snprintf(err, errlen, "%s's method table, row %zu: %s", svc->name, i + 1, why);
            return CASCA_ERR_INVALID;
        }
    for (size_t i = 0; i < n; i++) {
        struct rpc_method *m = calloc(1, sizeof(*m));
        char *path;
        int rc = CASCA_ERR_NOMEM;
        if (m && asprintf(&path, "/%s/%s", as ? as : svc->name, rows[i].name) >= 0) {
            m->path = path;
            m->def = &rows[i];
            m->arg = arg;
            if (!(rc = note_service(srv, m->path)))
                rc = table_insert(srv, m);
        }
        if (rc) {
            snprintf(err, errlen, "cannot register %s.%s: %s", as ? as : svc->name,
                     rows[i].name, casca_strerror(rc));
            if (m)
                free(m->path);
            free(m);
            return rc;
        }
    }
    return CASCA_OK;
}

/* ---- call life cycle ---- */

static void ctx_ref(struct rpc_ctx *ctx)
{
    atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
}

static void drop_message(void *buf)
{
    grpc_byte_buffer_destroy(buf);
}

static void ctx_free(struct rpc_ctx *ctx)
{
    struct rpc_server *srv = ctx->srv;
    if (ctx->listed) {
        pthread_mutex_lock(&srv->live_lock);
        if (ctx->live_prev)
            ctx->live_prev->live_next = ctx->live_next;
        else
            srv->live = ctx->live_next;
        if (ctx->live_next)
            ctx->live_next->live_prev = ctx->live_prev;
        pthread_mutex_unlock(&srv->live_lock);
    }
    if (ctx->token) {
        memset(ctx->token, 0, ctx->token_len);
        free(ctx->token);
    }
    rpc_sendq_clear(&ctx->send);
    if (ctx->recv_buf)
        grpc_byte_buffer_destroy(ctx->recv_buf);
    if (ctx->data_free)
        ctx->data_free(ctx->data);
    if (ctx->has_details)
        grpc_slice_unref(ctx->status_details);
    if (ctx->call) {
        grpc_call_unref(ctx->call);
        atomic_fetch_sub(&srv->calls_active, 1);
    }
    grpc_call_details_destroy(&ctx->details);
    grpc_metadata_array_destroy(&ctx->md);
    pthread_mutex_destroy(&ctx->lock);
    free(ctx);
}

static void ctx_unref(struct rpc_ctx *ctx)
{
    if (atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) == 1)
        ctx_free(ctx);
}

static struct rpc_ctx *ctx_new(struct rpc_server *srv)
{
    struct rpc_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return NULL;
    ctx->srv = srv;
    atomic_init(&ctx->refs, 1); /* the service's ref, once the call arrives */
    grpc_call_details_init(&ctx->details);
    grpc_metadata_array_init(&ctx->md);
    pthread_mutex_init(&ctx->lock, NULL);
    ctx->send.drop = drop_message;
    ctx->t_new = (struct rpc_tag){TAG_NEW, ctx};
    ctx->t_recv = (struct rpc_tag){TAG_RECV, ctx};
    ctx->t_send = (struct rpc_tag){TAG_SEND, ctx};
    ctx->t_close = (struct rpc_tag){TAG_CLOSE, ctx};
    return ctx;
}

static void request_call(struct rpc_server *srv)
{
    struct rpc_ctx *ctx = ctx_new(srv);
    if (!ctx) {
        log_error("rpc", "out of memory: cannot accept more calls");
        return;
    }
    grpc_call_error e = grpc_server_request_call(srv->server, &ctx->call, &ctx->details, &ctx->md,
                                                 srv->cq, srv->cq, &ctx->t_new);
    if (e != GRPC_CALL_OK) {
        if (!atomic_load(&srv->shutting_down))
            log_error("rpc", "grpc_server_request_call failed (%d)", (int)e);
        ctx_free(ctx);
    }
}

static void start_batch(struct rpc_ctx *ctx, const grpc_op *ops, size_t n, struct rpc_tag *tag)
{
    ctx_ref(ctx);
    grpc_call_error e = grpc_call_start_batch(ctx->call, ops, n, tag, NULL);
    if (e != GRPC_CALL_OK) {
        log_error("rpc", "grpc_call_start_batch failed (%d)", (int)e);
        /* never the last ref: the caller holds one */
        atomic_fetch_sub(&ctx->refs, 1);
    }
}

/* Starts the next send batch, as rpc_sendq_next says. Lock held, no send in flight. */
static void start_send_locked(struct rpc_ctx *ctx)
{
    struct rpc_send_batch b;
    if (!rpc_sendq_next(&ctx->send, &b))
        return;
    grpc_op ops[3];
    size_t n = 0;
    memset(ops, 0, sizeof(ops));
    if (b.metadata)
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (b.msg) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = b.msg;
    }
    if (b.status) {
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n].data.send_status_from_server.status = ctx->status;
        ops[n++].data.send_status_from_server.status_details =
            ctx->has_details ? &ctx->status_details : NULL;
    }
    start_batch(ctx, ops, n, &ctx->t_send);
}

static grpc_byte_buffer *pack(const ProtobufCMessage *msg)
{
    size_t size = protobuf_c_message_get_packed_size(msg);
    grpc_slice slice = grpc_slice_malloc(size);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
    grpc_byte_buffer *buf = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return buf;
}

int rpc_send(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    if (atomic_load(&ctx->cancelled))
        return CASCA_ERR_CANCELLED;
    grpc_byte_buffer *buf = pack(msg);
    pthread_mutex_lock(&ctx->lock);
    int err = atomic_load(&ctx->cancelled)
                  ? CASCA_ERR_CANCELLED
                  : rpc_sendq_push(&ctx->send, buf, ctx->srv->opts.stream_queue);
    if (!err && !ctx->send.busy)
        start_send_locked(ctx);
    pthread_mutex_unlock(&ctx->lock);
    if (err)
        grpc_byte_buffer_destroy(buf);
    return err;
}

unsigned rpc_send_pending(struct rpc_ctx *ctx)
{
    pthread_mutex_lock(&ctx->lock);
    unsigned n = rpc_sendq_pending(&ctx->send);
    pthread_mutex_unlock(&ctx->lock);
    return n;
}

/* ---- per-method counters (rpc_server_method_stats) ---- */

const double rpc_latency_bounds_s[RPC_LATENCY_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

/* Counts the call under its status and its time from arrival to now (its status decided). */
static void count_method_call(struct rpc_ctx *ctx)
{
    struct rpc_method *m = (struct rpc_method *)ctx->method; /* its counters only */
    int64_t ns = casca_mono_ns() - ctx->arrived_ns;
    unsigned code = (unsigned)ctx->status;
    if (code >= RPC_STATUS_CODES)
        code = 2; /* UNKNOWN */
    size_t b = 0;
    while (b < RPC_LATENCY_BUCKETS && (double)ns > rpc_latency_bounds_s[b] * 1e9)
        b++;
    atomic_fetch_add_explicit(&m->codes[code], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->latency[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->latency_sum_ns, (uint64_t)(ns > 0 ? ns : 0),
                              memory_order_relaxed);
}

/* Ends the call: the last message (may be NULL), then the status. Releases the service's ref. */
static void finish_call(struct rpc_ctx *ctx, grpc_byte_buffer *last, int err, const char *text)
{
    pthread_mutex_lock(&ctx->lock);
    if (last && atomic_load(&ctx->cancelled)) { /* nothing more goes out */
        grpc_byte_buffer_destroy(last);
        last = NULL;
    }
    if (!rpc_sendq_finish(&ctx->send, last)) { /* a second finish is a service bug */
        pthread_mutex_unlock(&ctx->lock);
        log_error("rpc", "%s: call finished twice", ctx->method ? ctx->method->path : "?");
        return;
    }
    ctx->status = rpc_status_of(err);
    if (text && *text) {
        ctx->status_details = grpc_slice_from_copied_string(text);
        ctx->has_details = true;
    }
    if (ctx->status != GRPC_STATUS_OK)
        atomic_fetch_add(&ctx->srv->calls_failed, 1);
    if (ctx->method)
        count_method_call(ctx);
    if (!ctx->send.busy && !ctx->send.broken && !atomic_load(&ctx->cancelled))
        start_send_locked(ctx);
    pthread_mutex_unlock(&ctx->lock);
    ctx_unref(ctx);
}

void rpc_reply(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    finish_call(ctx, msg && !atomic_load(&ctx->cancelled) ? pack(msg) : NULL, CASCA_OK, NULL);
}

void rpc_vfinish(struct rpc_ctx *ctx, int err, const char *fmt, va_list ap)
{
    char text[1024] = "";
    if (fmt)
        vsnprintf(text, sizeof(text), fmt, ap);
    finish_call(ctx, NULL, err, text);
}

void rpc_finish(struct rpc_ctx *ctx, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rpc_vfinish(ctx, err, fmt, ap);
    va_end(ap);
}

bool rpc_require(struct rpc_ctx *ctx, const char *field, const char *value, const char *how)
{
    if (value && *value)
        return true;
    rpc_finish(ctx, CASCA_ERR_INVALID, "%s is required: %s", field, how);
    return false;
}

bool rpc_require_each(struct rpc_ctx *ctx, const char *field, char *const *values, size_t n,
                      const char *how)
{
    for (size_t i = 0; i < n; i++)
        if (!values[i] || !*values[i]) {
            rpc_finish(ctx, CASCA_ERR_INVALID, "%s[%zu] is empty: %s", field, i, how);
            return false;
        }
    return true;
}

void rpc_on_cancel(struct rpc_ctx *ctx, rpc_cancel_fn fn, void *arg)
{
    pthread_mutex_lock(&ctx->lock);
    bool already = atomic_load(&ctx->cancelled);
    if (!already) {
        ctx->on_cancel = fn;
        ctx->cancel_arg = arg;
    }
    pthread_mutex_unlock(&ctx->lock);
    if (already) /* cancelled before the service got to register: tell it now */
        fn(ctx, arg);
}

bool rpc_cancelled(const struct rpc_ctx *ctx)
{
    return atomic_load(&ctx->cancelled);
}

int64_t rpc_deadline_ms(const struct rpc_ctx *ctx)
{
    gpr_timespec d = ctx->details.deadline;
    if (gpr_time_cmp(d, gpr_inf_future(d.clock_type)) == 0)
        return INT64_MAX;
    gpr_timespec left = gpr_time_sub(gpr_convert_clock_type(d, GPR_CLOCK_MONOTONIC),
                                     gpr_now(GPR_CLOCK_MONOTONIC));
    return left.tv_sec * 1000 + left.tv_nsec / 1000000;
}

void *rpc_method_arg(const struct rpc_ctx *ctx)
{
    return ctx->method->arg;
}

enum rpc_role rpc_caller_role(const struct rpc_ctx *ctx)
{
    return ctx->role;
}

const char *rpc_caller_name(const struct rpc_ctx *ctx)
{
    return ctx->caller;
}

void rpc_set_data(struct rpc_ctx *ctx, void *data, void (*free_fn)(void *))
{
    ctx->data = data;
    ctx->data_free = free_fn;
}

void *rpc_data(const struct rpc_ctx *ctx)
{
    return ctx->data;
}

/* ---- receiving and dispatch ---- */

static void start_recv(struct rpc_ctx *ctx)
{
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &ctx->recv_buf;
    start_batch(ctx, &op, 1, &ctx->t_recv);
}

static bool streams_in(const struct rpc_ctx *ctx)
{
    return ctx->method->def->kind == RPC_CLIENT_STREAM || ctx->method->def->kind == RPC_BIDI;
}

/* Whether the service has ended the call (rpc_reply / rpc_finish): it gets nothing more. */
static bool service_done(struct rpc_ctx *ctx)
{
    pthread_mutex_lock(&ctx->lock);
    bool done = ctx->send.finishing;
    pthread_mutex_unlock(&ctx->lock);
    return done;
}

/* Runs the handler for one message (NULL: end of input), then reads the next one if the method
 * streams in. The message is freed here. A service that already ended the call (a bidi stream
 * the server closes first) is not called again. */
static void invoke(struct rpc_ctx *ctx, ProtobufCMessage *msg)
{
    if (ctx->handed && service_done(ctx))
        goto out;
    if (!ctx->handed) {
        if (atomic_load(&ctx->cancelled)) {
            finish_call(ctx, NULL, CASCA_ERR_CANCELLED, NULL);
            goto out;
        }
        if (rpc_deadline_ms(ctx) <= 0) {
            finish_call(ctx, NULL, CASCA_ERR_TIMEOUT, "deadline exceeded before the call started");
            goto out;
        }
        ctx->handed = true;
    }
    ctx->method->def->handler(ctx, msg);
    if (msg && streams_in(ctx) && !service_done(ctx))
        start_recv(ctx);
out:
    if (msg)
        protobuf_c_message_free_unpacked(msg, NULL);
}

struct job {
    struct rpc_ctx *ctx;
    ProtobufCMessage *msg;
};

static void run_job(void *arg)
{
    struct job *j = arg;
    invoke(j->ctx, j->msg);
    ctx_unref(j->ctx);
    free(j);
}

static void dispatch(struct rpc_ctx *ctx, ProtobufCMessage *msg)
{
    if (!(ctx->method->def->flags & RPC_BLOCKING)) {
        invoke(ctx, msg);
        return;
    }
    struct job *j = malloc(sizeof(*j));
    int err = j ? CASCA_OK : CASCA_ERR_NOMEM;
    if (j) {
        *j = (struct job){ctx, msg};
        ctx_ref(ctx);
        err = pool_submit(ctx->srv->pool, run_job, j);
        if (err) {
            atomic_fetch_sub(&ctx->refs, 1); /* not the last: the service ref is held */
            free(j);
        }
    }
    if (!err)
        return;
    if (msg)
        protobuf_c_message_free_unpacked(msg, NULL);
    const char *why = "server busy: too many requests wait for a worker; retry with backoff";
    if (!ctx->handed) {
        finish_call(ctx, NULL, CASCA_ERR_FULL, why);
    } else { /* mid-stream: end the call, and tell the service its input is over */
        grpc_call_cancel_with_status(ctx->call, GRPC_STATUS_RESOURCE_EXHAUSTED, why, NULL);
        invoke(ctx, NULL);
    }
}

/* The message in buf, or NULL with *too_deep set when its nesting is over RPC_MAX_NESTING. */
static ProtobufCMessage *decode(grpc_byte_buffer *buf, const ProtobufCMessageDescriptor *desc,
                                bool *too_deep)
{
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, buf))
        return NULL;
    grpc_slice s = grpc_byte_buffer_reader_readall(&reader);
    *too_deep = rpc_nesting_exceeds(desc, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s),
                                    RPC_MAX_NESTING);
    ProtobufCMessage *msg =
        *too_deep ? NULL
                  : protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(s),
                                              GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    grpc_byte_buffer_reader_destroy(&reader);
    return msg;
}

static void on_recv(struct rpc_ctx *ctx, bool success)
{
    grpc_byte_buffer *buf = success ? ctx->recv_buf : NULL;
    ctx->recv_buf = NULL;
    if (!buf) { /* the client half-closed, or the call is over */
        if (streams_in(ctx))
            dispatch(ctx, NULL);
        else if (!ctx->got_request)
            finish_call(ctx, NULL, CASCA_ERR_INVALID,
                        "no request message: a unary call needs exactly one");
        return;
    }
    bool too_deep = false;
    ProtobufCMessage *msg = decode(buf, ctx->method->def->request, &too_deep);
    grpc_byte_buffer_destroy(buf);
    if (!msg) {
        char why[256];
        if (too_deep)
            snprintf(why, sizeof(why),
                     "request nests messages more than %d deep: flatten the values it carries",
                     RPC_MAX_NESTING);
        else
            snprintf(why, sizeof(why),
                     "request is not a valid %s message: check that the client uses the protos "
                     "in casca's proto/ directory",
                     ctx->method->def->request->name);
        if (!ctx->handed) {
            finish_call(ctx, NULL, CASCA_ERR_INVALID, why);
        } else {
            grpc_call_cancel_with_status(ctx->call, GRPC_STATUS_INVALID_ARGUMENT, why, NULL);
            dispatch(ctx, NULL);
        }
        return;
    }
    ctx->got_request = true;
    dispatch(ctx, msg);
}

/* The bearer token from "authorization: Bearer <token>", or NULL. */
static const char *bearer_token(const grpc_metadata_array *md, size_t *len)
{
    for (size_t i = 0; i < md->count; i++) {
        const grpc_metadata *m = &md->metadata[i];
        if (!grpc_slice_str_cmp(m->key, "authorization")) {
            const char *v = (const char *)GRPC_SLICE_START_PTR(m->value);
            size_t n = GRPC_SLICE_LENGTH(m->value);
            if (n > 7 && strncasecmp(v, "Bearer ", 7) == 0) {
                *len = n - 7;
                return v + 7;
            }
            *len = 0;
            return v; /* present but malformed */
        }
    }
    return NULL;
}

static int authorize(struct rpc_ctx *ctx, char *why, size_t whylen)
{
    struct rpc_server *srv = ctx->srv;
    const struct rpc_method *m = ctx->method;
    if (!srv->opts.auth) {
        ctx->role = RPC_ROLE_OPERATOR;
        snprintf(ctx->caller, sizeof(ctx->caller), "local");
        return CASCA_OK;
    }
    if (m->def->flags & RPC_PUBLIC) { /* health probes carry no token by design: any, or none, will do */
        ctx->role = RPC_ROLE_VIEWER;
        snprintf(ctx->caller, sizeof(ctx->caller), "anonymous");
        return CASCA_OK;
    }
    size_t len = 0;
    const char *token = bearer_token(&ctx->md, &len);
    if (!token || !len) {
        snprintf(why, whylen, token ? "malformed authorization header: send 'Bearer <token>'"
                                    : "missing credentials: send metadata 'authorization: "
                                      "Bearer <token>'");
        return CASCA_ERR_UNAUTH;
    }
    if (srv->opts.auth(srv->opts.auth_arg, token, len, &ctx->role, ctx->caller,
                       sizeof(ctx->caller)) != CASCA_OK) {
        snprintf(why, whylen, "unknown bearer token: ask the operator for a token");
        return CASCA_ERR_UNAUTH;
    }
    if (ctx->role != RPC_ROLE_OPERATOR && !(m->def->roles & ctx->role)) {
        char allowed[128] = "";
        for (unsigned r = RPC_ROLE_VIEWER; r <= RPC_ROLE_OPERATOR; r <<= 1)
            if ((m->def->roles | RPC_ROLE_OPERATOR) & r)
                snprintf(allowed + strlen(allowed), sizeof(allowed) - strlen(allowed), "%s%s",
                         *allowed ? ", " : "", rpc_role_name((enum rpc_role)r));
        snprintf(why, whylen, "role '%s' may not call %s; it needs one of: %s",
                 rpc_role_name(ctx->role), m->path, allowed);
        return CASCA_ERR_PERMISSION;
    }
    /* streams (unary calls end soon anyway) keep the token for rpc_server_reauthorize; one that
     * cannot keep it would not be revocable, so it is refused */
    if (m->def->kind == RPC_UNARY)
        return CASCA_OK;
    if (!(ctx->token = malloc(len))) {
        snprintf(why, whylen, "server out of memory; retry");
        return CASCA_ERR_NOMEM;
    }
    memcpy(ctx->token, token, len);
    ctx->token_len = len;
    pthread_mutex_lock(&srv->live_lock);
    ctx->live_next = srv->live;
    if (srv->live)
        srv->live->live_prev = ctx;
    srv->live = ctx;
    ctx->listed = true;
    pthread_mutex_unlock(&srv->live_lock);
    return CASCA_OK;
}

static void on_new_call(struct rpc_ctx *ctx)
{
    struct rpc_server *srv = ctx->srv;
    ctx->arrived_ns = casca_mono_ns();
    atomic_fetch_add(&srv->calls_total, 1);
    atomic_fetch_add(&srv->calls_active, 1);

    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &ctx->close_cancelled;
    start_batch(ctx, &op, 1, &ctx->t_close);

    const char *path = (const char *)GRPC_SLICE_START_PTR(ctx->details.method);
    size_t len = GRPC_SLICE_LENGTH(ctx->details.method);
    ctx->method = lookup_method(srv, path, len);
    if (!ctx->method) {
        char text[300];
        snprintf(text, sizeof(text), "unknown method %.*s: list the served methods with reflection",
                 (int)(len > 200 ? 200 : len), path);
        finish_call(ctx, NULL, CASCA_ERR_UNIMPLEMENTED, text);
        return;
    }
    if (atomic_load(&srv->shutting_down)) {
        finish_call(ctx, NULL, CASCA_ERR_UNAVAILABLE, "server is shutting down: retry elsewhere");
        return;
    }
    char why[256];
    int err = authorize(ctx, why, sizeof(why));
    if (err) {
        finish_call(ctx, NULL, err, why);
        return;
    }
    start_recv(ctx);
}

static void on_close(struct rpc_ctx *ctx, bool success)
{
    if (!ctx->close_cancelled && success)
        return;
    atomic_store(&ctx->cancelled, true);
    pthread_mutex_lock(&ctx->lock);
    rpc_cancel_fn fn = ctx->send.finishing ? NULL : ctx->on_cancel;
    void *arg = ctx->cancel_arg;
    ctx->on_cancel = NULL;
    rpc_sendq_clear(&ctx->send);
    pthread_mutex_unlock(&ctx->lock);
    if (fn)
        fn(ctx, arg);
}

static void on_send(struct rpc_ctx *ctx, bool success)
{
    pthread_mutex_lock(&ctx->lock);
    /* a failed batch: the transport is gone; the close batch reports the cancellation */
    if (rpc_sendq_sent(&ctx->send, success))
        start_send_locked(ctx);
    pthread_mutex_unlock(&ctx->lock);
}

static void *cq_thread(void *arg)
{
    struct rpc_server *srv = arg;
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(srv->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        struct rpc_tag *tag = ev.tag;
        struct rpc_ctx *ctx = tag->ctx;
        switch (tag->kind) {
        case TAG_NEW:
            if (!ev.success) { /* the server is shutting down: the request is void */
                ctx_free(ctx);
                break;
            }
            if (!atomic_load(&srv->shutting_down))
                request_call(srv);
            on_new_call(ctx);
            break;
        case TAG_RECV:
            on_recv(ctx, ev.success);
            ctx_unref(ctx);
            break;
        case TAG_SEND:
            on_send(ctx, ev.success);
            ctx_unref(ctx);
            break;
        case TAG_CLOSE:
            on_close(ctx, ev.success);
            ctx_unref(ctx);
            break;
        case TAG_SHUTDOWN:
            pthread_mutex_lock(&srv->shutdown_lock);
            srv->shutdown_done = true;
            pthread_cond_broadcast(&srv->shutdown_cond);
            pthread_mutex_unlock(&srv->shutdown_lock);
            break;
        }
    }
    return NULL;
}

/* ---- revocation ---- */

/* A reference on a listed call, unless it is already being freed. Under live_lock. */
static bool ctx_try_ref(struct rpc_ctx *ctx)
{
    unsigned n = atomic_load(&ctx->refs);
    while (n && !atomic_compare_exchange_weak(&ctx->refs, &n, n + 1))
        ;
    return n != 0;
}

size_t rpc_server_reauthorize(struct rpc_server *srv, rpc_revoke_fn fn, void *arg)
{
    if (!srv->opts.auth)
        return 0;
    struct ended {
        struct rpc_ctx *ctx;
        int err;
        char why[200];
    } *ended = NULL;
    size_t n = 0, cap = 0;
    pthread_mutex_lock(&srv->live_lock);
    for (struct rpc_ctx *ctx = srv->live; ctx; ctx = ctx->live_next) {
        enum rpc_role role;
        char name[64];
        int err = CASCA_OK;
        char why[200];
        if (srv->opts.auth(srv->opts.auth_arg, ctx->token, ctx->token_len, &role, name,
                           sizeof(name)) != CASCA_OK) {
            err = CASCA_ERR_UNAUTH;
            snprintf(why, sizeof(why), "token '%s' was revoked by a configuration reload: ask "
                                       "the operator for a new one", ctx->caller);
        } else if (role != RPC_ROLE_OPERATOR && !(ctx->method->def->roles & role)) {
            err = CASCA_ERR_PERMISSION;
            snprintf(why, sizeof(why), "token '%s' now has role '%s', which may not call %s "
                                       "(changed by a configuration reload)",
                     name, rpc_role_name(role), ctx->method->path);
        }
        if (!err || atomic_load(&ctx->cancelled) || !ctx_try_ref(ctx))
            continue;
        if (n == cap) {
            struct ended *g = realloc(ended, (cap = cap ? 2 * cap : 8) * sizeof(*g));
            if (!g) { /* out of memory: revoke what we have; the next reload retries */
                ctx_unref(ctx);
                break;
            }
            ended = g;
        }
        ended[n].ctx = ctx;
        ended[n].err = err;
        snprintf(ended[n].why, sizeof(ended[n].why), "%s", why);
        n++;
    }
    pthread_mutex_unlock(&srv->live_lock);
    for (size_t i = 0; i < n; i++) {
        struct rpc_ctx *ctx = ended[i].ctx;
        log_info("rpc", "%s by '%s' ended: %s", ctx->method->path, ctx->caller, ended[i].why);
        /* the service ends the call itself when it wants to (releasing what it holds);
         * otherwise the call is cancelled with the status and its service hears of it */
        if (!fn || !fn(arg, ctx, ended[i].err, ended[i].why))
            grpc_call_cancel_with_status(ctx->call, rpc_status_of(ended[i].err), ended[i].why,
                                         NULL);
        ctx_unref(ctx);
    }
    free(ended);
    return n;
}

/* ---- server ---- */

struct rpc_server *rpc_server_create(const struct rpc_options *opts)
{
    struct rpc_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return NULL;
    srv->opts = *opts;
    if (!srv->opts.cq_threads)
        srv->opts.cq_threads = 2;
    if (!srv->opts.workers)
        srv->opts.workers = 4;
    if (!srv->opts.max_message_bytes)
        srv->opts.max_message_bytes = 4u << 20;
    if (!srv->opts.stream_queue)
        srv->opts.stream_queue = 64;
    if (opts->descriptor_set &&
        !(srv->descriptors = google__protobuf__file_descriptor_set__unpack(
              NULL, opts->descriptor_set_size, opts->descriptor_set))) {
        free(srv);
        return NULL;
    }
    pthread_mutex_init(&srv->shutdown_lock, NULL);
    pthread_mutex_init(&srv->live_lock, NULL);
    pthread_cond_init(&srv->shutdown_cond, NULL);
    srv->t_shutdown = (struct rpc_tag){TAG_SHUTDOWN, NULL};

    grpc_init();
    grpc_arg args[] = {
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = (int)srv->opts.max_message_bytes},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, .value.integer = -1},
        /* a second daemon on the same port must fail, not share it */
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ALLOW_REUSEPORT, .value.integer = 0},
    };
    grpc_channel_args chargs = {sizeof(args) / sizeof(args[0]), args};
    srv->server = grpc_server_create(&chargs, NULL);
    srv->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(srv->server, srv->cq, NULL);
    return srv;
}

int rpc_server_listen(struct rpc_server *srv, const char *addr, const struct rpc_tls *tls)
{
    grpc_server_credentials *creds;
    if (tls) {
        grpc_ssl_pem_key_cert_pair pair = {tls->key_pem, tls->cert_pem};
        grpc_ssl_client_certificate_request_type req =
            !tls->client_ca_pem      ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
            : tls->require_client_cert ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                       : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
        creds = grpc_ssl_server_credentials_create_ex(tls->client_ca_pem, &pair, 1, req, NULL);
    } else {
        creds = grpc_insecure_server_credentials_create();
    }
    if (!creds)
        return 0;
    int port = grpc_server_add_http2_port(srv->server, addr, creds);
    grpc_server_credentials_release(creds);
    return port;
}

int rpc_server_start(struct rpc_server *srv)
{
    srv->pool = pool_create(srv->opts.workers, srv->opts.worker_queue);
    srv->threads = calloc(srv->opts.cq_threads, sizeof(pthread_t));
    if (!srv->pool || !srv->threads)
        return CASCA_ERR_NOMEM;
    grpc_server_start(srv->server);
    srv->started = true;
    for (int i = 0; i < PENDING_REQUESTS; i++)
        request_call(srv);
    for (; srv->nthreads < srv->opts.cq_threads; srv->nthreads++)
        if (pthread_create(&srv->threads[srv->nthreads], NULL, cq_thread, srv) != 0)
            return CASCA_ERR_NOMEM;
    return CASCA_OK;
}

void rpc_server_destroy(struct rpc_server *srv)
{
    if (!srv)
        return;
    if (srv->started) {
        /* stop accepting, let calls in flight end within a grace period, then cancel the rest
         * (streams never end on their own); wait until every call is gone */
        atomic_store(&srv->shutting_down, true);
        grpc_server_shutdown_and_notify(srv->server, srv->cq, &srv->t_shutdown);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 500 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&srv->shutdown_lock);
        while (!srv->shutdown_done &&
               pthread_cond_timedwait(&srv->shutdown_cond, &srv->shutdown_lock, &until) == 0)
            ;
        pthread_mutex_unlock(&srv->shutdown_lock);
        grpc_server_cancel_all_calls(srv->server);
        pthread_mutex_lock(&srv->shutdown_lock);
        while (!srv->shutdown_done)
            pthread_cond_wait(&srv->shutdown_cond, &srv->shutdown_lock);
        pthread_mutex_unlock(&srv->shutdown_lock);
    }
    pool_destroy(srv->pool); /* jobs left see their calls cancelled */
    grpc_completion_queue_shutdown(srv->cq);
    for (unsigned i = 0; i < srv->nthreads; i++)
        pthread_join(srv->threads[i], NULL);
    if (!srv->started) { /* nobody drains the queue: do it here */
        while (grpc_completion_queue_next(srv->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
               GRPC_QUEUE_SHUTDOWN)
            ;
    }
    grpc_server_destroy(srv->server);
    grpc_completion_queue_destroy(srv->cq);
    grpc_shutdown();
    for (size_t i = 0; i < srv->nservices; i++)
        free((char *)srv->services[i]);
    free(srv->services);
    for (size_t i = 0; i < srv->table_size; i++)
        if (srv->table[i].m) {
            free(srv->table[i].m->path);
            free(srv->table[i].m);
        }
    free(srv->table);
    if (srv->descriptors)
        google__protobuf__file_descriptor_set__free_unpacked(srv->descriptors, NULL);
    free(srv->threads);
    pthread_cond_destroy(&srv->shutdown_cond);
    pthread_mutex_destroy(&srv->shutdown_lock);
    pthread_mutex_destroy(&srv->live_lock);
    free(srv);
}

size_t rpc_server_services(const struct rpc_server *srv, const char *const **names)
{
    *names = srv->services;
    return srv->nservices;
}

void rpc_server_stats(const struct rpc_server *srv, struct rpc_stats *st)
{
    st->calls_total = atomic_load(&srv->calls_total);
    st->calls_active = atomic_load(&srv->calls_active);
    st->calls_failed = atomic_load(&srv->calls_failed);
}

void rpc_server_method_stats(const struct rpc_server *srv, rpc_method_stats_fn fn, void *arg)
{
    for (size_t i = 0; i < srv->table_size; i++) {
        struct rpc_method *m = srv->table[i].m;
        if (!m)
            continue;
        struct rpc_method_stats st = {.path = m->path};
        for (size_t c = 0; c < RPC_STATUS_CODES; c++)
            st.codes[c] = atomic_load_explicit(&m->codes[c], memory_order_relaxed);
        for (size_t b = 0; b <= RPC_LATENCY_BUCKETS; b++)
            st.latency[b] = atomic_load_explicit(&m->latency[b], memory_order_relaxed);
        st.latency_sum_ns = atomic_load_explicit(&m->latency_sum_ns, memory_order_relaxed);
        fn(arg, &st);
    }
}
