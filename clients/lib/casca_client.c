/* casca_client: libcasca's gRPC client on grpc's C core (see casca_client.h).
 *
 * Unary calls: one pluck completion queue per call, one batch with every op, the call's deadline
 * bounds the wait. Streams: one "next" completion queue per stream and at most one batch of each
 * kind in flight (the status batch started at open, one send, one receive); every completion is
 * recorded in the stream, so a receive that times out leaves its batch pending and the next
 * casca_stream_recv picks it up. Every buffer a batch uses lives in the stream until its tag
 * completes, and casca_stream_close cancels the call and drains the queue before freeing. */
#include "casca_client.h"
#include "clock.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#define DEFAULT_TIMEOUT_MS 5000
#define DEFAULT_CONNECT_TIMEOUT_MS 3000
#define MAX_MESSAGE_BYTES (64 << 20)
#define MAX_CA_FILE_BYTES (1 << 20)

struct casca_client {
    grpc_channel *channel;
    char *target;
    char *auth; /* "Bearer TOKEN" or NULL */
    int timeout_ms, connect_timeout_ms;
};

/* A stream's batches: one of each kind at most in flight. The tag is the address of the kind's
 * slot in the stream. */
enum batch_kind { B_STATUS, B_SEND, B_RECV, B__COUNT };

struct casca_stream {
    struct casca_client *c;
    char *method;
    grpc_completion_queue *cq;
    grpc_call *call;
    int tags[B__COUNT];    /* the tags: &tags[kind] */
    bool busy[B__COUNT];   /* batch in flight */
    bool done[B__COUNT];   /* batch completed and its result not yet consumed */
    bool ok[B__COUNT];     /* the completed batch's success flag */
    grpc_metadata auth_md; /* sent with the first batch */
    grpc_byte_buffer *send_buf;
    grpc_byte_buffer *recv_buf;
    grpc_metadata_array init_md, trailing_md;
    grpc_status_code status;
    grpc_slice status_details;
    bool ended;       /* the final status arrived */
    bool eos;         /* a receive found the end of the messages */
    bool send_closed; /* SEND_CLOSE_FROM_CLIENT went out */
    bool broken;      /* a send failed: the call is over, the status tells why */
};

/* ---- small helpers ---- */

static void status_set(struct casca_status *st, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void status_set(struct casca_status *st, int code, const char *fmt, ...)
{
    if (!st) return;
    st->code = code;
    st->message[0] = '\0';
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(st->message, sizeof(st->message), fmt, ap);
        va_end(ap);
    }
}

static void status_ok(struct casca_status *st)
{
    status_set(st, GRPC_STATUS_OK, NULL);
}

/* gRPC status code -> casca_err; every code is listed (UNKNOWN and INTERNAL are bugs). */
static const int from_grpc[] = {
    [GRPC_STATUS_OK] = CASCA_OK,
    [GRPC_STATUS_CANCELLED] = CASCA_ERR_CANCELLED,
    [GRPC_STATUS_UNKNOWN] = CASCA_ERR_INTERNAL,
    [GRPC_STATUS_INVALID_ARGUMENT] = CASCA_ERR_INVALID,
    [GRPC_STATUS_DEADLINE_EXCEEDED] = CASCA_ERR_TIMEOUT,
    [GRPC_STATUS_NOT_FOUND] = CASCA_ERR_NOT_FOUND,
    [GRPC_STATUS_ALREADY_EXISTS] = CASCA_ERR_EXISTS,
    [GRPC_STATUS_PERMISSION_DENIED] = CASCA_ERR_PERMISSION,
    [GRPC_STATUS_RESOURCE_EXHAUSTED] = CASCA_ERR_FULL,
    [GRPC_STATUS_FAILED_PRECONDITION] = CASCA_ERR_PRECONDITION,
    [GRPC_STATUS_ABORTED] = CASCA_ERR_PRECONDITION,
    [GRPC_STATUS_OUT_OF_RANGE] = CASCA_ERR_INVALID,
    [GRPC_STATUS_UNIMPLEMENTED] = CASCA_ERR_UNIMPLEMENTED,
    [GRPC_STATUS_INTERNAL] = CASCA_ERR_INTERNAL,
    [GRPC_STATUS_UNAVAILABLE] = CASCA_ERR_UNAVAILABLE,
    [GRPC_STATUS_DATA_LOSS] = CASCA_ERR_IO,
    [GRPC_STATUS_UNAUTHENTICATED] = CASCA_ERR_UNAUTH,
};

int casca_err_from_grpc(int code)
{
    if (code < 0 || code >= (int)(sizeof(from_grpc) / sizeof(from_grpc[0])))
        return CASCA_ERR_INTERNAL; /* a code newer than this table */
    return from_grpc[code];
}

int casca_backoff_ceiling(const struct casca_backoff *b)
{
    int64_t base = b->base_ms > 0 ? b->base_ms : CASCA_BACKOFF_BASE_MS;
    int64_t cap = b->max_ms > 0 ? b->max_ms : CASCA_BACKOFF_MAX_MS;
    unsigned n = b->attempt < 30 ? b->attempt : 30; /* 2^30 * base is past any cap */
    int64_t c = base << n;
    return (int)(c < cap ? c : cap);
}

int casca_backoff_next(struct casca_backoff *b)
{
    if (!b->seed) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        b->seed = (unsigned)(t.tv_nsec ^ t.tv_sec ^ (long)getpid()) | 1u;
    }
    int ceiling = casca_backoff_ceiling(b);
    if (b->attempt < UINT_MAX) b->attempt++;
    int d = (int)((double)rand_r(&b->seed) / ((double)RAND_MAX + 1) * (ceiling + 1));
    return d < 1 ? 1 : d;
}

void casca_backoff_reset(struct casca_backoff *b)
{
    b->attempt = 0;
}

int casca_retryable(int code)
{
    switch (code) {
    case GRPC_STATUS_UNAVAILABLE:
    case GRPC_STATUS_DEADLINE_EXCEEDED:
    case GRPC_STATUS_CANCELLED:
    case GRPC_STATUS_ABORTED:
    case GRPC_STATUS_INTERNAL:
    case GRPC_STATUS_UNKNOWN:
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
    case GRPC_STATUS_FAILED_PRECONDITION:
        return 1;
    default:
        return 0;
    }
}

int casca_reconnect_should(const struct casca_reconnect *r, int code)
{
    if (r->fail_fast) return 0;
    if (code == GRPC_STATUS_FAILED_PRECONDITION && !r->ever_connected) return 0;
    return code == GRPC_STATUS_OK || casca_retryable(code);
}

int casca_reconnect_wait_ms(struct casca_reconnect *r, const char *why)
{
    if (!r->outage_since_ns) {
        r->outage_since_ns = casca_mono_ns();
        FILE *f = r->log ? r->log : stderr;
        why = why && *why ? why : "the session ended";
        if (r->ever_connected)
            fprintf(f, "%s: lost connection to cascad at %s: %s; reconnecting\n", r->who, r->target,
                    why);
        else
            fprintf(f, "%s: cannot connect to cascad at %s yet: %s; retrying\n", r->who, r->target,
                    why);
        fflush(f);
    }
    return casca_backoff_next(&r->backoff);
}

void casca_reconnect_ok(struct casca_reconnect *r)
{
    if (r->outage_since_ns) {
        FILE *f = r->log ? r->log : stderr;
        fprintf(f, "%s: %s after %.1f s\n", r->who, r->ever_connected ? "reconnected" : "connected",
                (double)(casca_mono_ns() - r->outage_since_ns) / 1e9);
        fflush(f);
    }
    r->outage_since_ns = 0;
    r->ever_connected = 1;
    casca_backoff_reset(&r->backoff);
}

static gpr_timespec deadline_after(int ms)
{
    if (ms < 0) return gpr_inf_future(GPR_CLOCK_MONOTONIC);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

static grpc_byte_buffer *pack(const ProtobufCMessage *msg)
{
    size_t size = msg ? protobuf_c_message_get_packed_size(msg) : 0;
    grpc_slice slice = grpc_slice_malloc(size);
    if (size) protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
    grpc_byte_buffer *buf = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return buf;
}

static ProtobufCMessage *unpack(grpc_byte_buffer *buf, const ProtobufCMessageDescriptor *desc)
{
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, buf)) return NULL;
    grpc_slice s = grpc_byte_buffer_reader_readall(&reader);
    ProtobufCMessage *m =
        protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    grpc_byte_buffer_reader_destroy(&reader);
    return m;
}

/* Fills st from a finished call's status. Local failures of the channel (nothing reached the
 * server) are said with the target, so the user knows what to check. */
static int status_from_call(struct casca_client *c, struct casca_status *st, grpc_status_code code,
                            grpc_slice details)
{
    size_t n = GRPC_SLICE_LENGTH(details);
    char text[sizeof(st->message)];
    if (n >= sizeof(text)) n = sizeof(text) - 1;
    memcpy(text, GRPC_SLICE_START_PTR(details), n);
    text[n] = '\0';
    if (code == GRPC_STATUS_OK) {
        status_ok(st);
        return CASCA_OK;
    }
    /* UNAVAILABLE while the channel fails to connect: nothing reached cascad. (A channel that
     * was connected goes IDLE when cascad closes it, e.g. "Cancelling all calls" at shutdown:
     * that message is cascad's and is passed on as it is.) */
    grpc_connectivity_state cs = grpc_channel_check_connectivity_state(c->channel, 0);
    if (code == GRPC_STATUS_UNAVAILABLE &&
        (cs == GRPC_CHANNEL_TRANSIENT_FAILURE || cs == GRPC_CHANNEL_CONNECTING))
        status_set(st, code, "cannot reach cascad at %s: %s", c->target,
                   n ? text : "connection failed");
    else if (n)
        status_set(st, code, "%s", text);
    else
        status_set(st, code, "%s", casca_strerror(casca_err_from_grpc(code)));
    return casca_err_from_grpc(code);
}

/* Before a call on a channel that is not connected, waits at most connect_timeout_ms for it to
 * connect. A channel in TRANSIENT_FAILURE is left to the call, which then fails at once with
 * grpc's reason (refused, DNS, TLS handshake...). */
static int wait_connected(struct casca_client *c, struct casca_status *st)
{
    grpc_connectivity_state s = grpc_channel_check_connectivity_state(c->channel, 1);
    if (s == GRPC_CHANNEL_READY || s == GRPC_CHANNEL_TRANSIENT_FAILURE) return CASCA_OK;
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    gpr_timespec deadline = deadline_after(c->connect_timeout_ms);
    int tag;
    while (s == GRPC_CHANNEL_IDLE || s == GRPC_CHANNEL_CONNECTING) {
        grpc_channel_watch_connectivity_state(c->channel, s, deadline, cq, &tag);
        grpc_event ev =
            grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (!ev.success) /* deadline: no change */
            break;
        s = grpc_channel_check_connectivity_state(c->channel, 1);
    }
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
    if (s == GRPC_CHANNEL_IDLE || s == GRPC_CHANNEL_CONNECTING) {
        status_set(st, GRPC_STATUS_UNAVAILABLE,
                   "cannot reach cascad at %s: no connection within %d ms (is it running and "
                   "listening there? is a firewall dropping packets?)",
                   c->target, c->connect_timeout_ms);
        return CASCA_ERR_UNAVAILABLE;
    }
    if (s == GRPC_CHANNEL_SHUTDOWN) {
        status_set(st, GRPC_STATUS_UNAVAILABLE, "the client is closing");
        return CASCA_ERR_UNAVAILABLE;
    }
    return CASCA_OK;
}

static grpc_call *create_call(struct casca_client *c, grpc_completion_queue *cq, const char *method,
                              gpr_timespec deadline)
{
    grpc_slice path = grpc_slice_from_copied_string(method);
    grpc_call *call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, path,
                                               NULL, deadline, NULL);
    grpc_slice_unref(path);
    return call;
}

static size_t auth_metadata(struct casca_client *c, grpc_metadata *md)
{
    if (!c->auth) return 0;
    memset(md, 0, sizeof(*md));
    md->key = grpc_slice_from_static_string("authorization");
    md->value = grpc_slice_from_static_string(c->auth); /* c->auth outlives every call */
    return 1;
}

static bool valid_method(const char *method, struct casca_status *st)
{
    if (!method || method[0] != '/' || !strchr(method + 1, '/')) {
        status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                   "bad method name '%s': expected /package.Service/Method", method ? method : "");
        return false;
    }
    return true;
}

/* ---- client ---- */

static char *read_pem(const char *path, struct casca_status *st)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "cannot read CA file %s: %m", path);
        return NULL;
    }
    char *buf = malloc(MAX_CA_FILE_BYTES + 1);
    size_t n = buf ? fread(buf, 1, MAX_CA_FILE_BYTES + 1, f) : 0;
    bool err = ferror(f);
    fclose(f);
    if (!buf || err || n == 0 || n > MAX_CA_FILE_BYTES) {
        status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "cannot read CA file %s: %s", path,
                   !buf     ? "out of memory"
                   : err    ? "read error"
                   : n == 0 ? "empty file"
                            : "larger than 1 MiB");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (!strstr(buf, "-----BEGIN CERTIFICATE-----")) {
        status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                   "CA file %s holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path);
        free(buf);
        return NULL;
    }
    return buf;
}

int casca_client_open(const char *target, const struct casca_client_options *opts,
                      struct casca_client **out, struct casca_status *st)
{
    static const struct casca_client_options defaults;
    if (!opts) opts = &defaults;
    *out = NULL;
    if (!target || !*target) {
        status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                   "no target: give cascad's address as HOST:PORT (e.g. 127.0.0.1:50051)");
        return CASCA_ERR_INVALID;
    }
    if (opts->token && (!*opts->token || strpbrk(opts->token, "\r\n"))) {
        status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                   "bad token: it must be non-empty and on one line");
        return CASCA_ERR_INVALID;
    }
    char *pem = NULL;
    if (opts->tls && opts->ca_file && !(pem = read_pem(opts->ca_file, st)))
        return CASCA_ERR_INVALID;

    struct casca_client *c = calloc(1, sizeof(*c));
    if (c) c->target = strdup(target);
    if (c && c->target && opts->token && asprintf(&c->auth, "Bearer %s", opts->token) < 0)
        c->auth = NULL;
    if (!c || !c->target || (opts->token && !c->auth)) {
        if (c) {
            free(c->target);
            free(c);
        }
        free(pem);
        status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return CASCA_ERR_NOMEM;
    }
    c->timeout_ms = opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    c->connect_timeout_ms =
        opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;

    grpc_init();
    grpc_channel_credentials *creds = opts->tls ? grpc_ssl_credentials_create(pem, NULL, NULL, NULL)
                                                : grpc_insecure_credentials_create();
    free(pem);
    grpc_arg args[] = {
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = MAX_MESSAGE_BYTES},
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
         .value.integer = MAX_MESSAGE_BYTES},
        {.type = GRPC_ARG_STRING,
         .key = GRPC_ARG_PRIMARY_USER_AGENT_STRING,
         .value.string = "casca-c/" CASCA_VERSION},
        /* grpc's own reconnect backoff (1 s growing to 120 s by default) would outlast a
         * restarted cascad by minutes, and a call on a channel waiting it out fails at once: the
         * channel tries again at least once a second (one TCP connect), and the agents' jittered
         * casca_backoff paces the Hellos. Not GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: that is also the
         * connect timeout (20 s). */
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
         .value.integer = CASCA_BACKOFF_BASE_MS},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, .value.integer = 1000},
    };
    grpc_channel_args chargs = {sizeof(args) / sizeof(args[0]), args};
    c->channel = creds ? grpc_channel_create(target, creds, &chargs) : NULL;
    if (creds) grpc_channel_credentials_release(creds);
    if (!c->channel) {
        status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "cannot create a channel to %s", target);
        casca_client_close(c);
        return CASCA_ERR_INVALID;
    }
    status_ok(st);
    *out = c;
    return CASCA_OK;
}

void casca_client_close(struct casca_client *c)
{
    if (!c) return;
    if (c->channel) grpc_channel_destroy(c->channel);
    grpc_shutdown();
    free(c->auth);
    free(c->target);
    free(c);
}

/* ---- unary calls ---- */

int casca_call(struct casca_client *c, const char *method, const ProtobufCMessage *req,
               const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply,
               struct casca_status *st)
{
    *reply = NULL;
    if (!valid_method(method, st)) return CASCA_ERR_INVALID;
    int err = wait_connected(c, st);
    if (err) return err;

    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_call *call = create_call(c, cq, method, deadline_after(c->timeout_ms));
    grpc_metadata md;
    grpc_byte_buffer *send = pack(req);
    grpc_byte_buffer *recv = NULL;
    grpc_metadata_array init_md, trailing_md;
    grpc_metadata_array_init(&init_md);
    grpc_metadata_array_init(&trailing_md);
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();

    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = auth_metadata(c, &md);
    ops[0].data.send_initial_metadata.metadata = &md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing_md;
    ops[5].data.recv_status_on_client.status = &code;
    ops[5].data.recv_status_on_client.status_details = &details;

    int tag;
    grpc_call_error e = grpc_call_start_batch(call, ops, 6, &tag, NULL);
    if (e == GRPC_CALL_OK) {
        /* The call's deadline (or the server) ends it: the wait is bounded unless timeout < 0. */
        grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        err = status_from_call(c, st, code, details);
        if (!err) {
            if (!recv) {
                status_set(st, GRPC_STATUS_INTERNAL, "%s answered OK without a reply", method);
                err = CASCA_ERR_INTERNAL;
            } else if (!(*reply = unpack(recv, reply_desc))) {
                status_set(st, GRPC_STATUS_INTERNAL, "cannot decode the reply of %s as %s", method,
                           reply_desc->name);
                err = CASCA_ERR_INTERNAL;
            }
        }
    } else {
        status_set(st, GRPC_STATUS_INTERNAL, "grpc_call_start_batch failed (%d)", (int)e);
        err = CASCA_ERR_INTERNAL;
    }

    grpc_byte_buffer_destroy(send);
    if (recv) grpc_byte_buffer_destroy(recv);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&init_md);
    grpc_metadata_array_destroy(&trailing_md);
    grpc_call_unref(call);
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
    return err;
}

/* ---- streams ---- */

/* Waits for the next completion until deadline; records it. false when the deadline passed. */
static bool stream_poll(struct casca_stream *s, gpr_timespec deadline)
{
    grpc_event ev = grpc_completion_queue_next(s->cq, deadline, NULL);
    if (ev.type != GRPC_OP_COMPLETE) return false;
    int kind = (int)((int *)ev.tag - s->tags);
    s->busy[kind] = false;
    s->done[kind] = true;
    s->ok[kind] = ev.success != 0;
    if (kind == B_STATUS) s->ended = true;
    return true;
}

/* Waits until the batch of kind completes or deadline passes. */
static bool stream_wait(struct casca_stream *s, enum batch_kind kind, gpr_timespec deadline)
{
    while (s->busy[kind])
        if (!stream_poll(s, deadline)) return false;
    return true;
}

static int stream_start(struct casca_stream *s, enum batch_kind kind, const grpc_op *ops, size_t n,
                        struct casca_status *st)
{
    grpc_call_error e = grpc_call_start_batch(s->call, ops, n, &s->tags[kind], NULL);
    if (e != GRPC_CALL_OK) {
        status_set(st, GRPC_STATUS_INTERNAL, "grpc_call_start_batch failed (%d)", (int)e);
        return CASCA_ERR_INTERNAL;
    }
    s->busy[kind] = true;
    s->done[kind] = false;
    return CASCA_OK;
}

/* The call is over: st gets its final status (waiting for it: it follows at once). */
static int stream_final(struct casca_stream *s, struct casca_status *st)
{
    stream_wait(s, B_STATUS, gpr_inf_future(GPR_CLOCK_MONOTONIC));
    return status_from_call(s->c, st, s->status, s->status_details);
}

int casca_stream_open(struct casca_client *c, const char *method, const ProtobufCMessage *req,
                      int half_close, struct casca_stream **out, struct casca_status *st)
{
    *out = NULL;
    if (!valid_method(method, st)) return CASCA_ERR_INVALID;
    int err = wait_connected(c, st);
    if (err) return err;
    struct casca_stream *s = calloc(1, sizeof(*s));
    if (!s || !(s->method = strdup(method))) {
        free(s);
        status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return CASCA_ERR_NOMEM;
    }
    s->c = c;
    s->cq = grpc_completion_queue_create_for_next(NULL);
    s->call = create_call(c, s->cq, method, gpr_inf_future(GPR_CLOCK_MONOTONIC));
    grpc_metadata_array_init(&s->init_md);
    grpc_metadata_array_init(&s->trailing_md);
    s->status_details = grpc_empty_slice();
    s->status = GRPC_STATUS_UNKNOWN;

    /* The status batch: completes when the call ends, whatever ends it. */
    grpc_op ops[3];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[0].data.recv_initial_metadata.recv_initial_metadata = &s->init_md;
    ops[1].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[1].data.recv_status_on_client.trailing_metadata = &s->trailing_md;
    ops[1].data.recv_status_on_client.status = &s->status;
    ops[1].data.recv_status_on_client.status_details = &s->status_details;
    err = stream_start(s, B_STATUS, ops, 2, st);

    /* The first send batch: metadata, the request if any, the half-close if asked. */
    if (!err) {
        size_t n = 0;
        memset(ops, 0, sizeof(ops));
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[n].data.send_initial_metadata.count = auth_metadata(c, &s->auth_md);
        ops[n].data.send_initial_metadata.metadata = &s->auth_md;
        n++;
        if (req) {
            s->send_buf = pack(req);
            ops[n].op = GRPC_OP_SEND_MESSAGE;
            ops[n].data.send_message.send_message = s->send_buf;
            n++;
        }
        if (half_close) {
            ops[n].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
            n++;
            s->send_closed = true;
        }
        err = stream_start(s, B_SEND, ops, n, st);
    }
    if (err) {
        casca_stream_close(s);
        return err;
    }
    status_ok(st);
    *out = s;
    return CASCA_OK;
}

/* Waits for the send batch in flight; false (and the stream broken) when it failed or did not
 * complete within the client's timeout. */
static int send_settle(struct casca_stream *s, struct casca_status *st)
{
    if (!s->busy[B_SEND] && !s->done[B_SEND]) return CASCA_OK;
    bool finished = stream_wait(s, B_SEND, deadline_after(s->c->timeout_ms));
    if (!finished) {
        grpc_call_cancel_with_status(s->call, GRPC_STATUS_DEADLINE_EXCEEDED,
                                     "the server did not take a message in time", NULL);
        stream_wait(s, B_SEND, gpr_inf_future(GPR_CLOCK_MONOTONIC));
        s->ok[B_SEND] = false;
    }
    s->done[B_SEND] = false;
    if (s->send_buf) {
        grpc_byte_buffer_destroy(s->send_buf);
        s->send_buf = NULL;
    }
    if (!s->ok[B_SEND]) {
        s->broken = true;
        status_set(st, GRPC_STATUS_UNAVAILABLE, "the call has ended: casca_stream_recv tells why");
        return CASCA_ERR_UNAVAILABLE;
    }
    return CASCA_OK;
}

int casca_stream_send(struct casca_stream *s, const ProtobufCMessage *msg, struct casca_status *st)
{
    int err = send_settle(s, st);
    if (err) return err;
    if (s->broken || s->ended || s->send_closed) {
        status_set(st, GRPC_STATUS_UNAVAILABLE,
                   s->send_closed ? "the sending side of the stream is closed"
                                  : "the call has ended: casca_stream_recv tells why");
        return CASCA_ERR_UNAVAILABLE;
    }
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_MESSAGE;
    s->send_buf = pack(msg);
    op.data.send_message.send_message = s->send_buf;
    if ((err = stream_start(s, B_SEND, &op, 1, st))) return err;
    /* Waiting here keeps the contract simple: the message is on its way when send returns. */
    if ((err = send_settle(s, st))) return err;
    status_ok(st);
    return CASCA_OK;
}

int casca_stream_close_send(struct casca_stream *s, struct casca_status *st)
{
    int err = send_settle(s, st);
    if (err) return err;
    if (s->send_closed) {
        status_ok(st);
        return CASCA_OK;
    }
    if (s->broken || s->ended) {
        status_set(st, GRPC_STATUS_UNAVAILABLE, "the call has ended: casca_stream_recv tells why");
        return CASCA_ERR_UNAVAILABLE;
    }
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    s->send_closed = true;
    if ((err = stream_start(s, B_SEND, &op, 1, st))) return err;
    if ((err = send_settle(s, st))) return err;
    status_ok(st);
    return CASCA_OK;
}

int casca_stream_recv(struct casca_stream *s, const ProtobufCMessageDescriptor *desc,
                      ProtobufCMessage **msg, int timeout_ms, struct casca_status *st)
{
    *msg = NULL;
    if (s->eos) return stream_final(s, st);
    if (!s->busy[B_RECV] && !s->done[B_RECV]) {
        /* even after the status arrived: messages received before it are still to be read */
        grpc_op op;
        memset(&op, 0, sizeof(op));
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &s->recv_buf;
        int err = stream_start(s, B_RECV, &op, 1, st);
        if (err) return err;
    }
    if (!stream_wait(s, B_RECV, deadline_after(timeout_ms))) {
        status_set(st, GRPC_STATUS_OK, "no message within %d ms", timeout_ms);
        return CASCA_ERR_TIMEOUT;
    }
    s->done[B_RECV] = false;
    grpc_byte_buffer *buf = s->recv_buf;
    s->recv_buf = NULL;
    if (!s->ok[B_RECV] || !buf) { /* end of stream */
        if (buf) grpc_byte_buffer_destroy(buf);
        s->eos = true;
        return stream_final(s, st);
    }
    *msg = unpack(buf, desc);
    grpc_byte_buffer_destroy(buf);
    if (!*msg) {
        grpc_call_cancel_with_status(s->call, GRPC_STATUS_INTERNAL, "undecodable message", NULL);
        s->eos = true;
        status_set(st, GRPC_STATUS_INTERNAL,
                   "cannot decode a message of %s as %s; the call is "
                   "cancelled",
                   s->method, desc->name);
        return CASCA_ERR_INTERNAL;
    }
    status_ok(st);
    return CASCA_OK;
}

void casca_stream_close(struct casca_stream *s)
{
    if (!s) return;
    if (s->call) {
        if (!s->ended) grpc_call_cancel(s->call, NULL);
        for (int k = 0; k < B__COUNT; k++)
            stream_wait(s, (enum batch_kind)k, gpr_inf_future(GPR_CLOCK_MONOTONIC));
        grpc_call_unref(s->call);
    }
    if (s->cq) {
        grpc_completion_queue_shutdown(s->cq);
        while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
               GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(s->cq);
    }
    if (s->send_buf) grpc_byte_buffer_destroy(s->send_buf);
    if (s->recv_buf) grpc_byte_buffer_destroy(s->recv_buf);
    grpc_metadata_array_destroy(&s->init_md);
    grpc_metadata_array_destroy(&s->trailing_md);
    grpc_slice_unref(s->status_details);
    free(s->method);
    free(s);
}
