#include "http.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "casca_err.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static CURLcode init_rc;

static void init_curl(void)
{
    init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int casca_http_init(void)
{
    pthread_once(&init_once, init_curl);
    return init_rc == CURLE_OK ? CASCA_OK : CASCA_ERR_INTERNAL;
}

static size_t on_data(char *data, size_t size, size_t n, void *arg)
{
    struct casca_http_body *b = arg;
    size_t len = size * n, take = len;
    if (take > b->max - b->len) {
        b->overflow = true;
        if (!b->truncate) return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
        take = b->max - b->len;
    }
    if (take) {
        char *grown = realloc(b->p, b->len + take + 1);
        if (!grown) return 0;
        memcpy(grown + b->len, data, take);
        b->p = grown;
        b->len += take;
        b->p[b->len] = 0;
    }
    return len;
}

static size_t discard(char *data, size_t size, size_t n, void *arg)
{
    (void)data, (void)arg;
    return size * n;
}

static void size_text(char *buf, size_t cap, size_t bytes)
{
    if (bytes >= (1u << 20) && bytes % (1u << 20) == 0)
        snprintf(buf, cap, "%zu MiB", bytes >> 20);
    else
        snprintf(buf, cap, "%zu bytes", bytes);
}

int casca_http_request(CURL *e, const struct casca_http_request *r, struct casca_http_body *resp,
                       long *status, char *why, size_t whylen)
{
    long timeout = r->timeout_ms > 0 ? r->timeout_ms : 1;
    *status = 0;
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, resp ? on_data : discard);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, resp);
    /* a reused handle keeps the last request's method: set every part of this one */
    bool get = !r->method || !strcmp(r->method, "GET"), head = !get && !strcmp(r->method, "HEAD");
    curl_easy_setopt(e, CURLOPT_NOBODY, head ? 1L : 0L);
    if (get || head) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
        if (get) curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, strcmp(r->method, "POST") ? r->method : NULL);
    }
    CURLcode cc = curl_easy_perform(e);
    if (cc == CURLE_OPERATION_TIMEDOUT) {
        snprintf(why, whylen, "no answer within %ld ms", timeout);
        return CASCA_ERR_TIMEOUT;
    }
    if (resp && resp->overflow && !resp->truncate) {
        char max[32];
        size_text(max, sizeof(max), resp->max);
        snprintf(why, whylen, "answer larger than %s", max);
        return CASCA_ERR_UNAVAILABLE;
    }
    if (cc == CURLE_WRITE_ERROR) {
        snprintf(why, whylen, "out of memory for the answer");
        return CASCA_ERR_NOMEM;
    }
    if (cc != CURLE_OK) {
        snprintf(why, whylen, "%s", curl_easy_strerror(cc));
        return CASCA_ERR_UNAVAILABLE;
    }
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
    return CASCA_OK;
}
