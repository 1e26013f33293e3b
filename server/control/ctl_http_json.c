/* ctl_http_json: a value inside a JSON document served over HTTP(S), through libcurl.
 *   controller:
 *     http_json:
 *       url: "http://127.0.0.1:8096/System/Configuration/encoding"
 *       pointer: /EncodingThreadCount          # RFC 6901 JSON pointer into the document
 *       write: {method: POST, body: read_modify_write}   # or body: '{"threads": ${value}}'
 *       headers: {Authorization: "MediaBrowser Token=${JELLYFIN_TOKEN}"}
 *       timeout: 5s                            # upper bound; a call's deadline is shorter
 *       tls_verify: true                       # default true; ca_file: for a private CA
 * Reads GET the document and follow the pointer. Writes either PUT/POST/PATCH a body template
 * (${value} becomes the JSON value) or, with read_modify_write, GET the whole document, change the
 * value at the pointer and send the document back. Easy handles (each with its keep-alive
 * connection) are pooled per instance and reused across calls: no per-call set-up. */
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "casca_err.h"
#include "config.h"
#include "ctl.h"
#include "http.h"

#define MAX_BODY (8u << 20)
#define POOL_KEEP 8 /* idle handles kept per instance */

struct hj_conf {
    char *url, *pointer, *write_url, *write_method, *body; /* body NULL: read-modify-write */
    char **headers; /* "Name: value", env expanded */
    size_t nheaders;
    uint64_t timeout_ms;
    bool tls_verify;
    char *ca_file;
};

struct hj {
    const struct hj_conf *conf;
    struct curl_slist *headers;
    pthread_mutex_t lock; /* guards the idle pool */
    CURL *idle[POOL_KEEP];
    size_t nidle;
};

static void *hj_parse(struct ctl_parse *p, const struct yd_node *body)
{
    static const struct config_key keys[] = {
        {"url"}, {"pointer"}, {"write"}, {"headers"}, {"timeout"}, {"tls_verify"}, {"ca_file"},
        {NULL}};
    static const struct config_key write_keys[] = {{"method"}, {"body"}, {"url"}, {NULL}};
    struct hj_conf *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    ctl_parse_keys(p, body, keys, "controller http_json");
    const char *url = ctl_parse_str(p, body, "url", true);
    const char *ptr = ctl_parse_str(p, body, "pointer", true);
    if (url && strncmp(url, "http://", 7) && strncmp(url, "https://", 8))
        ctl_parse_error(p, yd_get(body, "url"), "url: must start with http:// or https://");
    if (ptr && *ptr && *ptr != '/')
        ctl_parse_error(p, yd_get(body, "pointer"),
                        "pointer: a JSON pointer starts with '/' (e.g. /EncodingThreadCount)");
    c->url = url ? strdup(url) : NULL;
    c->pointer = strdup(ptr ? ptr : "");
    const struct yd_node *w = yd_get(body, "write");
    const char *method = NULL, *wbody = NULL, *wurl = NULL;
    if (w && w->kind != YD_MAP) {
        ctl_parse_error(p, w, "write: expected {method: PUT|POST|PATCH, body: ...}");
    } else if (w) {
        ctl_parse_keys(p, w, write_keys, "controller http_json: write");
        method = ctl_parse_str(p, w, "method", false);
        wbody = ctl_parse_str(p, w, "body", false);
        wurl = ctl_parse_str(p, w, "url", false);
        if (method && strcmp(method, "PUT") && strcmp(method, "POST") && strcmp(method, "PATCH"))
            ctl_parse_error(p, yd_get(w, "method"), "method: '%s' is not PUT, POST or PATCH",
                            method);
        if (wurl && strncmp(wurl, "http://", 7) && strncmp(wurl, "https://", 8))
            ctl_parse_error(p, yd_get(w, "url"), "url: must start with http:// or https://");
        if (wbody && strcmp(wbody, "read_modify_write") && !strstr(wbody, "${value}"))
            ctl_parse_error(p, yd_get(w, "body"), "body: either read_modify_write or a template "
                                                  "containing ${value}");
    }
    bool rmw = !wbody || !strcmp(wbody, "read_modify_write");
    c->body = rmw ? NULL : strdup(wbody);
    c->write_method = strdup(method ? method : rmw ? "POST" : "PUT");
    c->write_url = wurl ? strdup(wurl) : url ? strdup(url) : NULL;
    const struct yd_node *h = yd_get(body, "headers");
    if (h && h->kind != YD_MAP) {
        ctl_parse_error(p, h, "headers: expected a map {Name: value}");
    } else if (h && (c->headers = calloc(h->n, sizeof(char *)))) {
        for (size_t i = 0; i < h->n; i++) {
            if (h->values[i]->kind != YD_SCALAR || strpbrk(h->keys[i]->scalar, ": \r\n")) {
                ctl_parse_error(p, h->keys[i], "headers: '%s' needs a plain name and a value",
                                h->keys[i]->scalar);
                continue;
            }
            char *val = ctl_parse_expand_env(p, h->values[i], h->values[i]->scalar);
            if (val && strpbrk(val, "\r\n"))
                ctl_parse_error(p, h->values[i], "headers: a value cannot contain a line break");
            else if (val && asprintf(&c->headers[c->nheaders], "%s: %s", h->keys[i]->scalar,
                                     val) >= 0)
                c->nheaders++;
            if (val)
                memset(val, 0, strlen(val)); /* it may hold a token */
            free(val);
        }
    }
    ctl_parse_ms(p, body, "timeout", 5000, &c->timeout_ms);
    ctl_parse_bool(p, body, "tls_verify", true, &c->tls_verify);
    const char *ca = ctl_parse_str(p, body, "ca_file", false);
    c->ca_file = ca ? ctl_parse_path(p, ca) : NULL;
    return c;
}

static void hj_free_conf(void *conf)
{
    struct hj_conf *c = conf;
    free(c->url);
    free(c->pointer);
    free(c->write_url);
    free(c->write_method);
    free(c->body);
    for (size_t i = 0; i < c->nheaders; i++) {
        memset(c->headers[i], 0, strlen(c->headers[i]));
        free(c->headers[i]);
    }
    free(c->headers);
    free(c->ca_file);
    free(c);
}

static int hj_open(const void *conf, void **inst)
{
    if (casca_http_init() != CASCA_OK)
        return CASCA_ERR_INTERNAL;
    const struct hj_conf *c = conf;
    struct hj *h = calloc(1, sizeof(*h));
    if (!h)
        return CASCA_ERR_NOMEM;
    h->conf = c;
    pthread_mutex_init(&h->lock, NULL);
    const char *fixed[] = {"Accept: application/json", "Content-Type: application/json",
                           "Expect:"};
    for (size_t i = 0; i < 3; i++)
        h->headers = curl_slist_append(h->headers, fixed[i]);
    for (size_t i = 0; i < c->nheaders; i++)
        h->headers = curl_slist_append(h->headers, c->headers[i]);
    *inst = h;
    return CASCA_OK;
}

static void hj_close(void *inst)
{
    struct hj *h = inst;
    for (size_t i = 0; i < h->nidle; i++)
        curl_easy_cleanup(h->idle[i]);
    curl_slist_free_all(h->headers);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

static CURL *take_handle(struct hj *h)
{
    pthread_mutex_lock(&h->lock);
    CURL *c = h->nidle ? h->idle[--h->nidle] : NULL;
    pthread_mutex_unlock(&h->lock);
    return c ? c : curl_easy_init();
}

static void give_handle(struct hj *h, CURL *c)
{
    pthread_mutex_lock(&h->lock);
    if (h->nidle < POOL_KEEP) {
        h->idle[h->nidle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&h->lock);
    if (c)
        curl_easy_cleanup(c);
}

/* One request: method NULL = GET. On success resp holds the body (caller frees resp->p).
 * io->detail names the URL: it goes to the daemon's log, never to a caller. */
static int request(struct hj *h, const char *method, const char *url, const char *body,
                   struct casca_http_body *resp, struct ctl_io *io)
{
    const struct hj_conf *c = h->conf;
    *resp = (struct casca_http_body){.max = MAX_BODY};
    int64_t left = ctl_io_left_ms(io);
    if (left <= 0)
        return ctl_io_fail(io, CASCA_ERR_TIMEOUT, "deadline passed before %s %s",
                           method ? method : "GET", url);
    long timeout = (long)((int64_t)c->timeout_ms < left ? (int64_t)c->timeout_ms : left);
    CURL *e = take_handle(h);
    if (!e)
        return ctl_io_fail(io, CASCA_ERR_NOMEM, "curl_easy_init failed");
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, c->tls_verify ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, c->tls_verify ? 2L : 0L);
    if (c->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
    struct casca_http_request req = {.method = method,
                                     .url = url,
                                     .body = body,
                                     .body_len = body ? strlen(body) : 0,
                                     .headers = h->headers,
                                     .timeout_ms = timeout};
    long status = 0;
    char why[160];
    int rc = casca_http_request(e, &req, resp, &status, why, sizeof(why));
    give_handle(h, e);
    if (rc != CASCA_OK)
        rc = ctl_io_fail(io, rc, "%s %s: %s", method ? method : "GET", url, why);
    else if (status < 200 || status > 299)
        rc = ctl_io_fail(io, CASCA_ERR_UNAVAILABLE, "%s %s: HTTP %ld: %.160s",
                         method ? method : "GET", url, status, resp->p ? resp->p : "");
    if (rc != CASCA_OK) {
        free(resp->p);
        resp->p = NULL;
    }
    return rc;
}

static int fetch(struct hj *h, json_t **doc, struct ctl_io *io)
{
    struct casca_http_body b;
    int rc = request(h, NULL, h->conf->url, NULL, &b, io);
    if (rc != CASCA_OK)
        return rc;
    json_error_t err;
    *doc = json_loadb(b.p ? b.p : "", b.len, JSON_DECODE_ANY, &err);
    free(b.p);
    if (!*doc)
        return ctl_io_fail(io, CASCA_ERR_UNAVAILABLE, "GET %s: not JSON: %s (line %d)",
                           h->conf->url, err.text, err.line);
    return CASCA_OK;
}

static int hj_get(void *inst, struct ctl_value *out, struct ctl_io *io)
{
    struct hj *h = inst;
    json_t *doc = NULL;
    int rc = fetch(h, &doc, io);
    if (rc != CASCA_OK)
        return rc;
    json_t *j = ctl_json_follow(doc, h->conf->pointer, NULL, NULL);
    if (!j)
        rc = ctl_io_fail(io, CASCA_ERR_NOT_FOUND, "GET %s: nothing at pointer %s", h->conf->url,
                         h->conf->pointer);
    else if ((rc = ctl_json_to_value(j, out)) != CASCA_OK)
        rc = ctl_io_fail(io, rc == CASCA_ERR_NOMEM ? rc : CASCA_ERR_UNAVAILABLE,
                         "GET %s: the value at %s is not a number, bool or string", h->conf->url,
                         h->conf->pointer);
    json_decref(doc);
    return rc;
}

/* The template with each ${value} replaced by the JSON text of v. */
static char *render(const char *tmpl, const struct ctl_value *v)
{
    json_t *j = ctl_json_from_value(v);
    char *val = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    json_decref(j);
    if (!val)
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    if (out) {
        for (const char *p = tmpl; *p;) {
            if (!strncmp(p, "${value}", 8)) {
                fputs(val, out);
                p += 8;
            } else {
                fputc(*p++, out);
            }
        }
        fclose(out);
    }
    free(val);
    return buf;
}

static int hj_set(void *inst, const struct ctl_value *v, struct ctl_io *io)
{
    struct hj *h = inst;
    const struct hj_conf *c = h->conf;
    char *body = NULL;
    int rc = CASCA_OK;
    if (c->body) {
        body = render(c->body, v);
    } else {
        json_t *doc = NULL, *parent = NULL;
        char *key = NULL;
        if ((rc = fetch(h, &doc, io)) != CASCA_OK)
            return rc;
        json_t *cur = ctl_json_follow(doc, c->pointer, &parent, &key);
        json_t *nv = ctl_json_from_value(v);
        if (!cur || !parent || !nv) {
            rc = ctl_io_fail(io, CASCA_ERR_NOT_FOUND, "GET %s: nothing at pointer %s to change",
                             c->url, c->pointer);
        } else if ((json_is_object(parent) ? json_object_set(parent, key, nv)
                                           : json_array_set(parent, strtoul(key, NULL, 10), nv)) ==
                   0) {
            body = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
        }
        json_decref(nv);
        free(key);
        json_decref(doc);
        if (rc != CASCA_OK)
            return rc;
    }
    if (!body)
        return ctl_io_fail(io, CASCA_ERR_NOMEM, "cannot build the request body");
    struct casca_http_body resp;
    rc = request(h, c->write_method, c->write_url, body, &resp, io);
    free(body);
    if (rc == CASCA_OK)
        free(resp.p);
    return rc;
}

static int hj_list(void *inst, void (*fn)(void *arg, const char *key), void *arg,
                   struct ctl_io *io)
{
    struct hj *h = inst;
    json_t *doc = NULL, *parent = NULL;
    int rc = fetch(h, &doc, io);
    if (rc != CASCA_OK)
        return rc;
    ctl_json_follow(doc, h->conf->pointer, &parent, NULL);
    const char *k;
    json_t *val;
    if (json_is_object(parent))
        json_object_foreach(parent, k, val) fn(arg, k);
    json_decref(doc);
    return CASCA_OK;
}

const struct ctl_ops ctl_http_json_ops = {
    .name = "http_json",
    .parse = hj_parse,
    .free_conf = hj_free_conf,
    .open = hj_open,
    .get = hj_get,
    .set = hj_set,
    .list = hj_list,
    .close = hj_close,
};
