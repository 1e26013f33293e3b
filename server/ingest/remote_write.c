#include "remote_write.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <snappy-c.h>

#include "casca_err.h"
#include "prometheus/remote.pb-c.h"
#include "telemetry.h"

#define STALE_NAN UINT64_C(0x7ff0000000000002) /* Prometheus's staleness marker */

static void answer(struct http_response *res, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void answer(struct http_response *res, int status, const char *fmt, ...)
{
    res->status = status;
    va_list ap;
    va_start(ap, fmt);
    char *text = NULL;
    int n = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (n < 0) return; /* the server says "the request failed" */
    res->body = text;
    res->len = (size_t)n;
}

static bool is_stale(double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    return bits == STALE_NAN;
}

/* The request's headers, checked as Prometheus sends them: 0 or the status answered. */
static int check_headers(const struct http_request *req, struct http_response *res)
{
    const char *type = http_request_header(req, "Content-Type");
    const char *encoding = http_request_header(req, "Content-Encoding");
    const char *version = http_request_header(req, "X-Prometheus-Remote-Write-Version");
    if ((type && strstr(type, "io.prometheus.write.v2")) || (version && version[0] == '2')) {
        answer(res, 415,
               "remote write 2.0 is not supported: casca takes remote write 1.0 "
               "(protobuf_message: prometheus.WriteRequest in the remote_write config)\n");
        return 415;
    }
    if (!type || strncasecmp(type, "application/x-protobuf", 22)) {
        answer(res, 415,
               "Content-Type is %s: a remote write request is application/x-protobuf "
               "(a snappy-compressed prometheus.WriteRequest)\n",
               type ? type : "missing");
        return 415;
    }
    if (!encoding || strcasecmp(encoding, "snappy")) {
        answer(res, 415,
               "Content-Encoding is %s: a remote write request is compressed with snappy "
               "(Content-Encoding: snappy)\n",
               encoding ? encoding : "missing");
        return 415;
    }
    return 0;
}

/* The request's body inflated and decoded, or NULL after answering. */
static Prometheus__WriteRequest *decode(const struct http_request *req, struct http_response *res)
{
    size_t len = 0;
    if (!req->body ||
        snappy_uncompressed_length(req->body, req->body_len, &len) != SNAPPY_OK) {
        answer(res, 400, "the body is not snappy-compressed (the block format, not framed)\n");
        return NULL;
    }
    if (len > REMOTE_WRITE_MAX_BYTES) {
        answer(res, 413, "the request inflates to %zu bytes, over the limit of %u: send smaller "
                         "batches (queue_config.max_samples_per_send)\n",
               len, REMOTE_WRITE_MAX_BYTES);
        return NULL;
    }
    char *raw = malloc(len ? len : 1);
    if (!raw) {
        answer(res, 503, "server out of memory; retry\n");
        return NULL;
    }
    Prometheus__WriteRequest *wr = NULL;
    if (snappy_uncompress(req->body, req->body_len, raw, &len) != SNAPPY_OK)
        answer(res, 400, "the body is not valid snappy: its compressed data is damaged\n");
    else if (!(wr = prometheus__write_request__unpack(NULL, len, (const uint8_t *)raw)))
        answer(res, 400, "the body is not a prometheus.WriteRequest protobuf\n");
    free(raw);
    return wr;
}

/* The request's samples as points (strings borrowed from wr); *stale: markers skipped. */
static int to_points(const Prometheus__WriteRequest *wr, struct tsdb_point **out, size_t *n,
                     struct tsdb_tag **tags_out, size_t *stale)
{
    size_t npts = 0, ntags = 0;
    for (size_t i = 0; i < wr->n_timeseries; i++) {
        npts += wr->timeseries[i]->n_samples;
        ntags += wr->timeseries[i]->n_labels;
    }
    struct tsdb_point *pts = malloc((npts ? npts : 1) * sizeof(*pts));
    struct tsdb_tag *tags = malloc((ntags ? ntags : 1) * sizeof(*tags));
    if (!pts || !tags) {
        free(pts);
        free(tags);
        return CASCA_ERR_NOMEM;
    }
    *n = *stale = 0;
    struct tsdb_tag *t = tags;
    for (size_t i = 0; i < wr->n_timeseries; i++) {
        const Prometheus__TimeSeries *ts = wr->timeseries[i];
        const char *name = "";
        size_t nt = 0;
        for (size_t k = 0; k < ts->n_labels; k++) {
            if (!strcmp(ts->labels[k]->name, "__name__"))
                name = ts->labels[k]->value;
            else
                t[nt++] = (struct tsdb_tag){ts->labels[k]->name, ts->labels[k]->value};
        }
        for (size_t k = 0; k < ts->n_samples; k++) {
            const Prometheus__Sample *s = ts->samples[k];
            if (is_stale(s->value)) {
                ++*stale;
                continue;
            }
            /* a time outside 1970..2262 reads as 0, which the store refuses as too old */
            int64_t ns = s->timestamp >= 0 && s->timestamp <= INT64_MAX / 1000000
                             ? s->timestamp * 1000000
                             : 0;
            pts[(*n)++] = (struct tsdb_point){name, t, nt, ns, s->value};
        }
        t += nt;
    }
    *out = pts;
    *tags_out = tags;
    return CASCA_OK;
}

/* The handler waits for the ingest stage here. */
struct wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int err;
    char why[256];
};

static void stored(int err, const char *why, void *arg)
{
    struct wait *w = arg;
    pthread_mutex_lock(&w->mu);
    w->done = true;
    w->err = err;
    if (why) snprintf(w->why, sizeof(w->why), "%s", why);
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void unstored(struct http_response *res, int err, const char *why)
{
    if (err == CASCA_ERR_INVALID)
        answer(res, 400, "%s\n", why);
    else if (err == CASCA_ERR_PRECONDITION)
        answer(res, 503,
               "%s: add a hook with bus: publish for it (remote write takes Publish's path)\n",
               why);
    else
        answer(res, 503, "the samples were not stored: %s; retry later\n", why);
}

void remote_write_handler(void *arg, const struct http_request *req, struct http_response *res)
{
    struct telemetry *t = arg;
    if (check_headers(req, res)) return;
    Prometheus__WriteRequest *wr = decode(req, res);
    if (!wr) return;
    struct tsdb_point *pts = NULL;
    struct tsdb_tag *tags = NULL;
    size_t n = 0, stale = 0, rejected = 0;
    if (to_points(wr, &pts, &n, &tags, &stale)) {
        prometheus__write_request__free_unpacked(wr, NULL);
        answer(res, 503, "server out of memory; retry with smaller batches\n");
        return;
    }
    struct wait w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    char first[200], why[256] = "";
    int rc = telemetry_submit(t, req->caller, pts, n, &rejected, first, sizeof(first), stored, &w,
                              why, sizeof(why));
    if (rc == CASCA_OK) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        rc = w.err;
        snprintf(why, sizeof(why), "%s", w.why);
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    if (rc != CASCA_OK)
        unstored(res, rc, why);
    else if (rejected)
        answer(res, 400, "stored %zu samples, refused %zu; the first: %s\n", n - rejected,
               rejected, first);
    else
        res->status = 204;
    free(pts);
    free(tags);
    prometheus__write_request__free_unpacked(wr, NULL);
}
