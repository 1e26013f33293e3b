/* One nng handler on the whole tree ("/", any method) hands every request to route(): the route
 * table, the method, the token and the role are checked there on nng's thread (cheap, never
 * blocking), and an accepted request goes to the worker pool, whose job runs the route's handler
 * and completes nng's aio with the response. */
#include "http_server.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <nng/supplemental/tls/tls.h>

#include "casca_err.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "pool.h"

#define TEXT "text/plain; charset=utf-8"
/* nng reads a request's body before the route (and its token check) sees it: nng answers a
 * larger one 400 itself. As gRPC's largest message; a remote-write batch is a few hundred kB. */
#define MAX_BODY (4 * 1024 * 1024)
/* A stream whose write has not gone out in this long is a client that stopped reading (a
 * suspended tab, a stuck proxy): it is counted gone and its slot freed, as an agent session that
 * leaves its results unread 10 s is closed. */
#define STREAM_STALL_NS (10 * CASCA_NS_PER_SEC)

/* ---- the `http:` section ---- */

static const struct http_config no_http = {0};

static const struct config_key keys[] = {
    {"listen", CONFIG_STR, offsetof(struct http_config, listen)},
    {NULL},
};

static void http_config_free(void *section)
{
    struct http_config *h = section;
    if (h) free(h->listen);
    free(h);
}

static void *http_config_parse(struct config_loader *ld, const struct yd_node *const values[])
{
    const struct yd_node *root = values[0];
    struct http_config *h = calloc(1, sizeof(*h));
    if (!h) return NULL;
    config_load_keys(ld, keys, root, "http", h); /* after an unknown key, listen is read too */
    if (!h->listen) return h;
    if (!*h->listen) { /* "" = off */
        free(h->listen);
        h->listen = NULL;
        return h;
    }
    const struct yd_node *at = yd_get(root, "listen");
    const char *colon = strrchr(h->listen, ':');
    if (!strncmp(h->listen, "unix:", 5) || !colon || colon == h->listen || !colon[1] ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1)) {
        config_error(ld, at, "http.listen: '%s' is not host:port (e.g. 127.0.0.1:9464)", h->listen);
        return h;
    }
    const struct config *c = config_loader_config(ld);
    if (c->auth.ntokens == 0 && !config_listen_is_loopback(h->listen))
        config_error(ld, at,
                     "http.listen: refusing to listen on %s with no auth tokens: add auth.tokens, "
                     "or listen on 127.0.0.1",
                     h->listen);
    return h;
}

const struct config_section http_config_section = {
    .keys = (const char *const[]){HTTP_CONFIG_KEYS, NULL},
    .parse = http_config_parse,
    .free = http_config_free,
};

const struct http_config *http_config_of(const struct config *c)
{
    const struct http_config *h = config_section_of(c, &http_config_section);
    return h ? h : &no_http;
}

/* ---- the server ---- */

struct http_server {
    nng_http_server *srv;
    nng_tls_config *tls;
    struct pool *pool;
    const struct http_route *routes;
    size_t nroutes;
    rpc_auth_fn auth;
    void *auth_arg;
    pthread_mutex_t lock; /* stopping, and submitting to the pool */
    bool stopping;
    int port;
};

struct job {
    struct http_server *s;
    nng_aio *aio;
    const struct http_route *route;
    struct http_request req;
    char *query; /* malloc'ed, "" when none */
    char caller[64];
};

/* ---- answers to clients that close ----
 * nng 1.5's TLS layer reports a write done once it has encrypted it, and its server closes a
 * connection the client asked to close ("Connection: close", HTTP/1.0) right then: the end of an
 * HTTPS answer could be lost. Such answers are written here instead, on the connection taken from
 * the server, which is closed once the client has closed its end (it has read everything) or
 * LINGER_MS later. */

#define LINGER_MS 5000

struct closing_answer {
    nng_http_conn *conn;
    nng_http_req *req;
    nng_http_res *res;
    nng_aio *aio;
    bool written;
    char in[64];
};

static void linger_done(void *arg)
{
    struct closing_answer *l = arg;
    if (!l->written && !nng_aio_result(l->aio)) { /* written: wait for the client to close */
        l->written = true;
        nng_iov iov = {.iov_buf = l->in, .iov_len = sizeof(l->in)};
        nng_aio_set_iov(l->aio, 1, &iov);
        nng_aio_set_timeout(l->aio, LINGER_MS);
        nng_http_conn_read(l->conn, l->aio);
        return;
    }
    nng_http_conn_close(l->conn);
    nng_http_res_free(l->res);
    nng_http_req_free(l->req);
    nng_aio_reap(l->aio);
    free(l);
}

static bool closes(nng_http_req *req)
{
    const char *c = nng_http_req_get_header(req, "Connection");
    if (!strcmp(nng_http_req_get_version(req), "HTTP/1.0"))
        return !c || !strcasestr(c, "keep-alive");
    return c && strcasestr(c, "close");
}

/* Writes res itself when the server is HTTPS and the client closes after it; false: nng's server
 * should send it (res untouched). */
static bool linger_send(nng_aio *aio, nng_http_res *res)
{
    struct http_server *s = nng_http_handler_get_data(nng_aio_get_input(aio, 1));
    nng_http_req *req = nng_aio_get_input(aio, 0);
    nng_http_conn *conn = nng_aio_get_input(aio, 2);
    if (!s->tls || !closes(req)) return false;
    struct closing_answer *l = calloc(1, sizeof(*l));
    if (!l || nng_aio_alloc(&l->aio, linger_done, l) ||
        nng_http_res_set_header(res, "Connection", "close") || nng_http_hijack(conn)) {
        if (l) nng_aio_free(l->aio);
        free(l);
        return false;
    }
    *l = (struct closing_answer){.conn = conn, .req = req, .res = res, .aio = l->aio};
    nng_aio_set_output(aio, 0, NULL); /* taken: nng's server sends nothing */
    nng_aio_finish(aio, 0);
    nng_http_conn_write_res(conn, res, l->aio);
    return true;
}

/* Completes aio with a response (extra: one more header, "Name: value", or NULL). */
static void respond(nng_aio *aio, int status, const char *type, const char *body, size_t len,
                    const char *extra)
{
    nng_http_res *res = NULL;
    int rv = nng_http_res_alloc(&res);
    if (!rv) rv = nng_http_res_set_status(res, (uint16_t)status);
    if (!rv) rv = nng_http_res_set_header(res, "Content-Type", type);
    if (!rv) rv = nng_http_res_set_header(res, "Cache-Control", "no-store");
    if (!rv && extra) {
        const char *colon = strchr(extra, ':');
        char name[64];
        snprintf(name, sizeof(name), "%.*s", (int)(colon - extra), extra);
        rv = nng_http_res_set_header(res, name, colon + 2);
    }
    if (!rv && len) rv = nng_http_res_copy_data(res, body, len);
    if (rv) { /* out of memory: nng closes the connection */
        nng_http_res_free(res);
        nng_aio_finish(aio, rv);
        return;
    }
    if (linger_send(aio, res)) return;
    nng_aio_set_output(aio, 0, res);
    nng_aio_finish(aio, 0);
}

static void respond_text(nng_aio *aio, int status, const char *extra, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void respond_text(nng_aio *aio, int status, const char *extra, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof(text) - 1, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(text) - 1 ? (size_t)n : sizeof(text) - 2;
    text[len++] = '\n';
    respond(aio, status, TEXT, text, len, extra);
}

static void run_job(void *arg)
{
    struct job *j = arg;
    struct http_response res = {.status = 200, .content_type = TEXT};
    j->route->fn(j->route->arg, &j->req, &res);
    if (res.status >= 400 && !res.body)
        respond_text(j->aio, res.status, NULL, "the request failed (HTTP %d)", res.status);
    else
        respond(j->aio, res.status, res.content_type ? res.content_type : TEXT,
                res.body ? res.body : "", res.body ? res.len : 0, res.header);
    free(res.body);
    free(j->query);
    free(j);
}

const char *http_request_header(const struct http_request *req, const char *name)
{
    return nng_http_req_get_header(req->native, name);
}

/* The roles a route allows, for a 403's message ("viewer, agent, operator"). */
static void roles_text(unsigned roles, char *buf, size_t len)
{
    *buf = 0;
    for (unsigned r = RPC_ROLE_VIEWER; r <= RPC_ROLE_OPERATOR; r <<= 1)
        if ((roles | RPC_ROLE_OPERATOR) & r)
            snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", *buf ? ", " : "",
                     rpc_role_name((enum rpc_role)r));
}

/* The value of ?token=... in query, percent-decoded into buf; NULL when absent. */
static const char *query_token(const char *query, char *buf, size_t len)
{
    for (const char *p = query; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        if (strncmp(p, "token=", 6)) continue;
        size_t n = 0;
        for (p += 6; *p && *p != '&' && n + 1 < len; p++) {
            unsigned hex;
            if (*p == '%' && sscanf(p + 1, "%2x", &hex) == 1) {
                buf[n++] = (char)hex;
                p += 2;
            } else {
                buf[n++] = *p == '+' ? ' ' : *p;
            }
        }
        buf[n] = 0;
        return buf;
    }
    return NULL;
}

/* Checks the Authorization header (or ?token= on routes that take it): CASCA_OK with the role and
 * caller's name, or the status to answer (401, 403) after answering it. */
static int authorize(struct http_server *s, nng_aio *aio, nng_http_req *req,
                     const struct http_route *r, const char *query, enum rpc_role *role,
                     char *caller, size_t len, char *used, size_t usedlen)
{
    *used = 0;
    if (!s->auth || (r->flags & HTTP_PUBLIC)) {
        *role = s->auth ? RPC_ROLE_NONE : RPC_ROLE_OPERATOR;
        snprintf(caller, len, s->auth ? "anonymous" : "local");
        return CASCA_OK;
    }
    static const char challenge[] = "WWW-Authenticate: Bearer realm=\"casca\"";
    const char *h = nng_http_req_get_header(req, "Authorization");
    char qbuf[512];
    const char *token = NULL;
    if (h) {
        if (strncasecmp(h, "Bearer ", 7) || !h[7]) {
            respond_text(aio, 401, challenge,
                         "malformed Authorization header: send 'Authorization: Bearer <token>'");
            return 401;
        }
        token = h + 7;
    } else if (r->flags & HTTP_QUERY_TOKEN) {
        token = query_token(query, qbuf, sizeof(qbuf));
    }
    if (!token) {
        respond_text(aio, 401, challenge, "missing credentials: send the header 'Authorization: "
                                          "Bearer <token>'%s",
                     r->flags & HTTP_QUERY_TOKEN ? " (or add ?token=<token> to the address)" : "");
        return 401;
    }
    snprintf(used, usedlen, "%s", token);
    if (s->auth(s->auth_arg, token, strlen(token), role, caller, len) != CASCA_OK) {
        respond_text(aio, 401, challenge, "unknown bearer token: ask the operator for a token");
        return 401;
    }
    if (*role != RPC_ROLE_OPERATOR && !(r->roles & *role)) {
        char allowed[128];
        roles_text(r->roles, allowed, sizeof(allowed));
        respond_text(aio, 403, NULL, "role '%s' may not %s %s; it needs one of: %s",
                     rpc_role_name(*role), r->method, r->path, allowed);
        return 403;
    }
    return CASCA_OK;
}

/* ---- streams (server-sent events) ---- */

struct http_stream {
    nng_http_conn *conn;
    atomic_uint *count; /* the route's open streams, or NULL */
    rpc_auth_fn auth;   /* NULL: no tokens */
    void *auth_arg;
    unsigned roles;
    char *token; /* the one it was opened with */
    nng_aio *write_aio, *read_aio;
    pthread_mutex_t lock;
    bool writing, gone, closing;
    int64_t write_started_ns; /* monotonic, of the write going out */
    char *out;       /* the bytes being written */
    char *pending;   /* the next bytes to write (the latest replaces an earlier one) */
    size_t pending_len;
    char in[256];    /* what the client sends, read and dropped: a read error means it left */
};

static void stream_send_locked(struct http_stream *st, char *data, size_t len)
{
    free(st->out);
    st->out = data;
    st->writing = true;
    st->write_started_ns = casca_mono_ns();
    nng_iov iov = {.iov_buf = data, .iov_len = len};
    nng_aio_set_iov(st->write_aio, 1, &iov);
    nng_http_conn_write_all(st->conn, st->write_aio);
}

static void stream_written(void *arg)
{
    struct http_stream *st = arg;
    pthread_mutex_lock(&st->lock);
    st->writing = false;
    if (nng_aio_result(st->write_aio)) st->gone = true;
    if (!st->gone && !st->closing && st->pending) {
        char *data = st->pending;
        st->pending = NULL;
        stream_send_locked(st, data, st->pending_len);
    }
    pthread_mutex_unlock(&st->lock);
}

static void stream_read(void *arg)
{
    struct http_stream *st = arg;
    pthread_mutex_lock(&st->lock);
    if (nng_aio_result(st->read_aio)) {
        st->gone = true;
    } else if (!st->closing) {
        nng_iov iov = {.iov_buf = st->in, .iov_len = sizeof(st->in)};
        nng_aio_set_iov(st->read_aio, 1, &iov);
        nng_http_conn_read(st->conn, st->read_aio);
    }
    pthread_mutex_unlock(&st->lock);
}

int http_stream_write(struct http_stream *st, const char *data, size_t len)
{
    char *copy = malloc(len ? len : 1);
    if (!copy) return CASCA_ERR_NOMEM;
    memcpy(copy, data, len);
    pthread_mutex_lock(&st->lock);
    int rc = CASCA_OK;
    if (st->gone || st->closing) {
        free(copy);
        rc = CASCA_ERR_UNAVAILABLE;
    } else if (st->writing) {
        free(st->pending);
        st->pending = copy;
        st->pending_len = len;
    } else {
        stream_send_locked(st, copy, len);
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

bool http_stream_gone(struct http_stream *st)
{
    pthread_mutex_lock(&st->lock);
    bool gone = st->gone ||
                (st->writing && casca_mono_ns() - st->write_started_ns > STREAM_STALL_NS);
    pthread_mutex_unlock(&st->lock);
    return gone;
}

void http_stream_close(struct http_stream *st)
{
    if (!st) return;
    pthread_mutex_lock(&st->lock);
    st->closing = true; /* the callbacks start nothing new */
    pthread_mutex_unlock(&st->lock);
    nng_aio_stop(st->write_aio);
    nng_aio_stop(st->read_aio);
    nng_http_conn_close(st->conn);
    if (st->count) atomic_fetch_sub(st->count, 1);
    nng_aio_free(st->write_aio);
    nng_aio_free(st->read_aio);
    pthread_mutex_destroy(&st->lock);
    free(st->out);
    free(st->pending);
    free(st->token);
    free(st);
}

bool http_stream_allowed(struct http_stream *st)
{
    if (!st->auth) return true;
    enum rpc_role role = RPC_ROLE_NONE;
    char name[64];
    return st->token &&
           st->auth(st->auth_arg, st->token, strlen(st->token), &role, name, sizeof(name)) ==
               CASCA_OK &&
           (role == RPC_ROLE_OPERATOR || (st->roles & role));
}

/* Takes the connection from nng's server, sends the event-stream headers and hands it to the
 * route's taker. On nng's thread. */
static void stream_start(struct http_server *s, nng_aio *aio, const struct http_route *r,
                         const struct http_request *hr, const char *token)
{
    nng_http_req *req = nng_aio_get_input(aio, 0);
    nng_http_conn *conn = nng_aio_get_input(aio, 2);
    if (r->max_streams && atomic_fetch_add(r->streams, 1) >= r->max_streams) {
        atomic_fetch_sub(r->streams, 1);
        respond_text(aio, 503, "Retry-After: 10",
                     "%u event streams are open on %s, the most allowed: close one (a dashboard "
                     "tab) or retry later",
                     r->max_streams, r->path);
        return;
    }
    struct http_stream *st = calloc(1, sizeof(*st));
    if (!st || nng_aio_alloc(&st->write_aio, stream_written, st) ||
        nng_aio_alloc(&st->read_aio, stream_read, st)) {
        if (st) {
            nng_aio_free(st->write_aio);
            nng_aio_free(st->read_aio);
        }
        free(st);
        if (r->max_streams) atomic_fetch_sub(r->streams, 1);
        respond_text(aio, 503, "Retry-After: 1", "server out of memory; retry");
        return;
    }
    if (nng_http_hijack(conn)) {
        nng_aio_free(st->write_aio);
        nng_aio_free(st->read_aio);
        free(st);
        if (r->max_streams) atomic_fetch_sub(r->streams, 1);
        respond_text(aio, 503, "Retry-After: 1", "server is shutting down; retry later");
        return;
    }
    st->conn = conn;
    st->count = r->max_streams ? r->streams : NULL;
    st->auth = s->auth;
    st->auth_arg = s->auth_arg;
    st->roles = r->roles;
    st->token = s->auth ? strdup(token) : NULL;
    pthread_mutex_init(&st->lock, NULL);
    nng_aio_set_output(aio, 0, NULL); /* hijacked: nng sends nothing */
    nng_aio_finish(aio, 0);
    static const char head[] = "HTTP/1.1 200 OK\r\n"
                               "Content-Type: text/event-stream\r\n"
                               "Cache-Control: no-store\r\n"
                               "Connection: close\r\n"
                               "X-Accel-Buffering: no\r\n\r\n";
    http_stream_write(st, head, sizeof(head) - 1);
    pthread_mutex_lock(&st->lock);
    nng_iov iov = {.iov_buf = st->in, .iov_len = sizeof(st->in)};
    nng_aio_set_iov(st->read_aio, 1, &iov);
    nng_http_conn_read(conn, st->read_aio);
    pthread_mutex_unlock(&st->lock);
    r->stream(r->arg, hr, st);
    nng_http_req_free(req); /* a hijacker disposes of the request */
}

/* nng's handler for every request (on an nng thread: must not block). */
static void route(nng_aio *aio)
{
    nng_http_req *req = nng_aio_get_input(aio, 0);
    struct http_server *s = nng_http_handler_get_data(nng_aio_get_input(aio, 1));
    const char *method = nng_http_req_get_method(req);
    const char *uri = nng_http_req_get_uri(req);
    size_t plen = strcspn(uri, "?");
    const struct http_route *r = NULL;
    bool path_known = false;
    for (size_t i = 0; i < s->nroutes; i++) {
        const struct http_route *c = &s->routes[i];
        if (strlen(c->path) != plen || memcmp(c->path, uri, plen)) continue;
        path_known = true;
        if (!strcmp(method, c->method) || (!strcmp(method, "HEAD") && !strcmp(c->method, "GET")))
            r = c;
    }
    if (!r && !path_known) {
        char paths[512] = "";
        for (size_t i = 0; i < s->nroutes; i++)
            snprintf(paths + strlen(paths), sizeof(paths) - strlen(paths), "%s%s %s", i ? ", " : "",
                     s->routes[i].method, s->routes[i].path);
        respond_text(aio, 404, NULL, "no such path %.*s: cascad serves %s",
                     (int)(plen > 200 ? 200 : plen), uri, paths);
        return;
    }
    if (!r) {
        char allow[128] = "Allow: ";
        for (size_t i = 0; i < s->nroutes; i++)
            if (strlen(s->routes[i].path) == plen && !memcmp(s->routes[i].path, uri, plen))
                snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), "%s%s%s",
                         allow[7] ? ", " : "", s->routes[i].method,
                         strcmp(s->routes[i].method, "GET") ? "" : ", HEAD");
        respond_text(aio, 405, allow, "method %.16s is not allowed on %.*s: use %s", method,
                     (int)(plen > 200 ? 200 : plen), uri, allow + 7);
        return;
    }
    enum rpc_role role = RPC_ROLE_NONE;
    char caller[64];
    const char *query = uri[plen] ? uri + plen + 1 : "";
    char token[512];
    if (authorize(s, aio, req, r, query, &role, caller, sizeof(caller), token, sizeof(token)) !=
        CASCA_OK)
        return;
    if (r->stream) {
        struct http_request hr = {.method = r->method, .path = r->path, .query = query,
                                  .role = role, .caller = caller, .native = req};
        stream_start(s, aio, r, &hr, token);
        return;
    }
    struct job *j = calloc(1, sizeof(*j));
    if (!j || !(j->query = strdup(uri[plen] ? uri + plen + 1 : ""))) {
        free(j);
        respond_text(aio, 503, "Retry-After: 1", "server out of memory; retry");
        return;
    }
    j->s = s;
    j->aio = aio;
    j->route = r;
    snprintf(j->caller, sizeof(j->caller), "%s", caller);
    j->req = (struct http_request){
        .method = r->method, .path = r->path, .query = j->query, .role = role, .caller = j->caller,
        .native = req};
    void *body = NULL;
    nng_http_req_get_data(req, &body, &j->req.body_len);
    j->req.body = j->req.body_len ? body : NULL;
    pthread_mutex_lock(&s->lock);
    int rc = s->stopping ? CASCA_ERR_UNAVAILABLE : pool_submit(s->pool, run_job, j);
    pthread_mutex_unlock(&s->lock);
    if (rc != CASCA_OK) {
        free(j->query);
        free(j);
        respond_text(aio, 503, "Retry-After: 1",
                     rc == CASCA_ERR_FULL ? "too many requests in progress; retry"
                                          : "server is shutting down; retry later");
    }
}

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return code;
}

static int set_tls(struct http_server *s, const struct http_options *o, char *err, size_t errlen)
{
    if (!strcmp(nng_tls_engine_name(), "none"))
        return fail(err, errlen, CASCA_ERR_INVALID,
                    "http: server.tls is set but this nng library was built without TLS: "
                    "remove http.listen, or install an nng built with TLS (Debian's is)");
    int rv = nng_tls_config_alloc(&s->tls, NNG_TLS_MODE_SERVER);
    if (!rv) rv = nng_tls_config_own_cert(s->tls, o->cert_pem, o->key_pem, NULL);
    if (!rv && o->client_ca_pem) {
        rv = nng_tls_config_ca_chain(s->tls, o->client_ca_pem, NULL);
        if (!rv)
            rv = nng_tls_config_auth_mode(s->tls, o->require_client_cert
                                                      ? NNG_TLS_AUTH_MODE_REQUIRED
                                                      : NNG_TLS_AUTH_MODE_OPTIONAL);
    }
    if (!rv) rv = nng_http_server_set_tls(s->srv, s->tls);
    if (rv)
        return fail(err, errlen, CASCA_ERR_INVALID,
                    "http: cannot use the server.tls certificate and key for HTTPS: %s",
                    nng_strerror(rv));
    return CASCA_OK;
}

int http_server_create(const struct http_options *o, const struct http_route *routes, size_t n,
                       struct http_server **out, char *err, size_t errlen)
{
    *out = NULL;
    struct http_server *s = calloc(1, sizeof(*s));
    if (!s) return fail(err, errlen, CASCA_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    s->routes = routes;
    s->nroutes = n;
    s->auth = o->auth;
    s->auth_arg = o->auth_arg;
    int rc = CASCA_OK, rv;
    char url[300];
    snprintf(url, sizeof(url), "%s://%s", o->cert_pem ? "https" : "http", o->listen);
    nng_url *u = NULL;
    nng_http_handler *h = NULL;
    if (!(s->pool = pool_create(o->workers ? o->workers : 2, 64))) {
        rc = fail(err, errlen, CASCA_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((rv = nng_url_parse(&u, url)) || (rv = nng_http_server_hold(&s->srv, u))) {
        rc = fail(err, errlen, CASCA_ERR_INVALID, "http.listen: cannot use %s: %s", o->listen,
                  nng_strerror(rv));
        goto out;
    }
    if (o->cert_pem && (rc = set_tls(s, o, err, errlen))) goto out;
    if ((rv = nng_http_handler_alloc(&h, "/", route)) ||
        (rv = nng_http_handler_set_method(h, NULL)) || (rv = nng_http_handler_set_tree(h)) ||
        (rv = nng_http_handler_collect_body(h, true, MAX_BODY)) ||
        (rv = nng_http_handler_set_data(h, s, NULL)) ||
        (rv = nng_http_server_add_handler(s->srv, h))) {
        if (h) nng_http_handler_free(h);
        rc = fail(err, errlen, CASCA_ERR_NOMEM, "http: cannot set up the handler: %s",
                  nng_strerror(rv));
        goto out;
    }
    if ((rv = nng_http_server_start(s->srv))) {
        rc = fail(err, errlen, CASCA_ERR_UNAVAILABLE,
                  "http.listen: cannot listen on %s: %s (the address is in use or not local to "
                  "this host: pick another)",
                  o->listen, nng_strerror(rv));
        goto out;
    }
    nng_sockaddr sa;
    if (!nng_http_server_get_addr(s->srv, &sa))
        s->port = sa.s_family == NNG_AF_INET6 ? ntohs(sa.s_in6.sa_port) : ntohs(sa.s_in.sa_port);
out:
    nng_url_free(u);
    if (rc) {
        http_server_destroy(s);
        return rc;
    }
    *out = s;
    return CASCA_OK;
}

int http_server_port(const struct http_server *s)
{
    return s->port;
}

void http_server_destroy(struct http_server *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->lock);
    s->stopping = true; /* from now on route() answers 503 itself */
    pthread_mutex_unlock(&s->lock);
    pool_destroy(s->pool); /* every accepted request is answered */
    if (s->srv) {
        nng_http_server_stop(s->srv);
        nng_http_server_release(s->srv); /* frees the handler */
    }
    if (s->tls) nng_tls_config_free(s->tls);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
