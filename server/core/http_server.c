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
#include "config.h"
#include "log.h"
#include "pool.h"

#define TEXT "text/plain; charset=utf-8"
/* nng reads a request's body before the route sees it; a larger one is answered 413 */
#define MAX_BODY (16 * 1024 * 1024)

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
                res.body ? res.body : "", res.body ? res.len : 0, NULL);
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

/* Checks the Authorization header: CASCA_OK with the role and caller's name, or the status to
 * answer (401, 403) after answering it. */
static int authorize(struct http_server *s, nng_aio *aio, nng_http_req *req,
                     const struct http_route *r, enum rpc_role *role, char *caller, size_t len)
{
    if (!s->auth) {
        *role = RPC_ROLE_OPERATOR;
        snprintf(caller, len, "local");
        return CASCA_OK;
    }
    static const char challenge[] = "WWW-Authenticate: Bearer realm=\"casca\"";
    const char *h = nng_http_req_get_header(req, "Authorization");
    if (!h) {
        respond_text(aio, 401, challenge,
                     "missing credentials: send the header 'Authorization: Bearer <token>'");
        return 401;
    }
    if (strncasecmp(h, "Bearer ", 7) || !h[7]) {
        respond_text(aio, 401, challenge,
                     "malformed Authorization header: send 'Authorization: Bearer <token>'");
        return 401;
    }
    if (s->auth(s->auth_arg, h + 7, strlen(h + 7), role, caller, len) != CASCA_OK) {
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
        char paths[256] = "";
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
    if (authorize(s, aio, req, r, &role, caller, sizeof(caller)) != CASCA_OK) return;
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
