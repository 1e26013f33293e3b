/* http: the one libcurl wrapper of the daemon (controllers, hook connectors, probes, carbon
 * providers). It owns libcurl's global set-up, the growing answer buffer with its size cap and
 * the request that every caller makes the same way: no signals, a total and a connect timeout,
 * http and https only, no redirects.
 * Messages (why) never name the URL: a caller that logs adds it itself, and nothing here can
 * carry a setting's private address to an agent. Thread-safe, except that one easy handle is
 * used by one thread at a time (callers keep handles, with their warm connections, across
 * requests). */
#ifndef CASCA_HTTP_H
#define CASCA_HTTP_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

/* Sets libcurl up for the whole program, once, whichever thread comes first (pthread_once);
 * every user calls it before curl_easy_init. It is never undone while the program runs:
 * curl_global_cleanup is not thread-safe and one user's shutdown must not pull libcurl from
 * under another. CASCA_OK, or CASCA_ERR_INTERNAL when libcurl cannot start. */
int casca_http_init(void);

/* An answer being received: p is NUL-terminated (NULL until data came); the caller frees p.
 * Up to max bytes are kept. Over it, with truncate the rest is read and dropped (the start of an
 * error page is enough for a log line), without it the transfer fails; both set overflow. */
struct casca_http_body {
    char *p;
    size_t len;
    size_t max;
    bool truncate;
    bool overflow;
};

/* One request. method NULL or "GET": GET; "HEAD": no body either way; any other method sends
 * body (body_len bytes; POST, PUT, PATCH, ...). */
struct casca_http_request {
    const char *method;
    const char *url;
    const char *body;
    size_t body_len;
    struct curl_slist *headers; /* NULL: none */
    long timeout_ms;            /* total and connect timeout; below 1 counts as 1 */
};

/* Performs r on the easy handle e, which may hold earlier requests' options and the caller's own
 * (TLS, credentials, user agent: set them before). The answer goes to resp (NULL: dropped).
 * CASCA_OK with *status the HTTP status, whatever it is (the caller judges it); otherwise
 * CASCA_ERR_TIMEOUT ("no answer within N ms"), CASCA_ERR_UNAVAILABLE (cannot connect, a broken
 * answer, or one over resp->max) or CASCA_ERR_NOMEM, with why set. */
int casca_http_request(CURL *e, const struct casca_http_request *r, struct casca_http_body *resp,
                       long *status, char *why, size_t whylen);

#endif
