/* http_server: cascad's HTTP listener (the `http:` section), on nng's HTTP server: a table of
 * routes (path, method, roles, handler), the same bearer tokens and roles as the gRPC API, and the
 * same TLS certificate. Off unless http.listen is set.
 *
 * Every request is answered by the table: an unknown path 404, a known path with another method
 * 405 (with Allow), then, when tokens are configured, no or a malformed Authorization header 401
 * (with WWW-Authenticate), an unknown token 401, a role the route does not allow 403; each with a
 * one-line text/plain body that says what to do. HEAD is answered like GET, without the body.
 * A stream route's connection is handed to its taker once authorized (server-sent events).
 * Handlers run on the server's own worker threads (never on nng's), so they may block briefly
 * (LMDB reads, a managed service's read with a deadline). */
#ifndef CASCA_HTTP_SERVER_H
#define CASCA_HTTP_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "rpc.h"

struct config;

/* ---- the `http:` section ----
 *   http:
 *     listen: 127.0.0.1:9464   # host:port; absent or "" = no HTTP listener (the default)
 * Without auth.tokens the address must be loopback (like server.listen). With server.tls the
 * listener speaks HTTPS with the same certificate (and client CA). */
struct http_config {
    char *listen; /* NULL: off */
};
#define HTTP_CONFIG_KEYS "http"
extern const struct config_section http_config_section;
/* The section of c (never NULL: an empty one when c has none). Valid while c is. Any thread. */
const struct http_config *http_config_of(const struct config *c);

/* ---- the server ---- */

struct http_request {
    const char *method; /* "GET"; HEAD requests come as "GET" (the body is dropped) */
    const char *path;   /* without the query string: "/metrics" */
    const char *query;  /* after '?', "" when none */
    enum rpc_role role; /* the caller's (operator when no tokens are configured) */
    const char *caller; /* the token's name, "local" without tokens */
    const void *body;   /* the request's body (POST), body_len bytes; NULL when empty */
    size_t body_len;
    void *native;       /* the server's request, for http_request_header */
};

/* The value of the request's header name (case-insensitive), or NULL. Handler only. */
const char *http_request_header(const struct http_request *req, const char *name);

struct http_response {
    int status;               /* 200 unless the handler sets another */
    const char *content_type; /* static text; "text/plain; charset=utf-8" by default */
    char *body;               /* malloc'ed by the handler; the server frees it */
    size_t len;
    const char *header;       /* static text: one more header, "Name: value", or NULL */
};

typedef void (*http_handler_fn)(void *arg, const struct http_request *req,
                                struct http_response *res);

/* A response that stays open (server-sent events): the server has sent the status line and
 * headers (200, Content-Type: text/event-stream) and hands the connection over. */
struct http_stream;
/* Takes s (on one of nng's threads: must not block); from then on the taker writes to it and
 * closes it. req is valid during the call only. */
typedef void (*http_stream_fn)(void *arg, const struct http_request *req, struct http_stream *s);

enum http_route_flags {
    HTTP_PUBLIC = 1u << 0,      /* no token needed (static files that hold no data) */
    HTTP_QUERY_TOKEN = 1u << 1, /* the token may also come as ?token=..., for what a browser
                                   opens itself (EventSource cannot set headers) */
};

struct http_route {
    const char *path;   /* exact path, "/metrics" */
    const char *method; /* "GET" */
    unsigned roles;     /* RPC_ROLE_* that may call it (operator always may) */
    http_handler_fn fn; /* NULL for a stream route */
    void *arg;
    unsigned flags;        /* enum http_route_flags */
    http_stream_fn stream; /* set: a stream route (GET), answered by the taker */
    /* a stream route: at most max_streams open at once (0: no limit), counted in *streams (the
     * taker's, zeroed, living as long as its streams); one more is answered 503 */
    unsigned max_streams;
    atomic_uint *streams;
};

/* Queues len bytes of data (copied) to be written. CASCA_OK; CASCA_ERR_FULL while the previous
 * write is still going out (a slow client: send the latest state next time); CASCA_ERR_UNAVAILABLE
 * once the client has gone. Any thread. */
int http_stream_write(struct http_stream *s, const char *data, size_t len);
/* True once the client has closed the connection, a write failed, or a write has waited over
 * 10 s to go out (a client that stopped reading). Any thread. */
bool http_stream_gone(struct http_stream *s);
/* True while the token s was opened with still has a role its route allows (a reload may have
 * removed the token or changed its role); always true without tokens. Any thread. */
bool http_stream_allowed(struct http_stream *s);
/* Closes the connection and frees s, waiting for its write and read to stop. Not on nng's
 * threads. */
void http_stream_close(struct http_stream *s);

struct http_options {
    const char *listen; /* host:port (port 0: any free one; see http_server_port) */
    /* the TLS certificate chain and key (PEM text; NULL: plain HTTP), as for gRPC */
    const char *cert_pem, *key_pem, *client_ca_pem;
    bool require_client_cert;
    rpc_auth_fn auth; /* NULL: no tokens, every caller is an operator named "local" */
    void *auth_arg;
    unsigned workers; /* handler threads, default 2 */
};

struct http_server;

/* Listens and serves routes (n rows; the array must outlive the server). CASCA_OK and *out, or
 * a casca_err with the reason in err (CASCA_ERR_UNAVAILABLE: the address is in use or not this
 * host's; CASCA_ERR_INVALID: a bad address or TLS material). Main thread. */
int http_server_create(const struct http_options *o, const struct http_route *routes, size_t n,
                       struct http_server **out, char *err, size_t errlen);
/* The bound port. Any thread. */
int http_server_port(const struct http_server *s);
/* Answers the requests being handled, closes every connection, stops the threads. No handler
 * runs after it. Safe on NULL. Main thread. */
void http_server_destroy(struct http_server *s);

#endif
