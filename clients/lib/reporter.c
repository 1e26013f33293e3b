/* libcasca's reporter: a bounded queue of framed messages and one sending thread per reporter
 * with an nng PUSH socket whose dialer reconnects by itself, or a UDP socket that sends up to
 * UDP_BATCH queued messages per system call (one datagram each). */
#include "casca.h"
#include "clock.h"
#include "udpaddr.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pipeline0/push.h>

#define DEFAULT_QUEUE_MESSAGES 4096
#define DEFAULT_QUEUE_BYTES (16u << 20)
#define MAX_TOPIC 256
#define SEND_SLICE_MS 100 /* how long one send waits for a connection before re-checking close */
#define LINGER_MS 100     /* after the last send, for the transport to write it out */
#define UDP_BATCH 64      /* datagrams per sendmmsg */

struct casca_reporter {
    nng_socket sock;
    int udp; /* a udp:// bus: the socket, else -1 */
    struct sockaddr_storage udp_to;
    socklen_t udp_tolen;
    char *topic;
    size_t topic_len;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    nng_msg **ring;
    size_t cap, head, count, bytes, max_bytes;
    bool closing;
    int64_t deadline_ns; /* monotonic, once closing */
    pthread_t thread;
    atomic_ullong sent, dropped;
};

/* Sends up to UDP_BATCH messages from the head of the queue; they stay queued until sent. */
static void send_datagrams(struct casca_reporter *r)
{
    struct mmsghdr msgs[UDP_BATCH];
    struct iovec iov[UDP_BATCH];
    size_t n = r->count < UDP_BATCH ? r->count : UDP_BATCH;
    for (size_t i = 0; i < n; i++) {
        nng_msg *m = r->ring[(r->head + i) % r->cap];
        iov[i] = (struct iovec){nng_msg_body(m), nng_msg_len(m)};
        msgs[i].msg_hdr = (struct msghdr){.msg_name = &r->udp_to,
                                          .msg_namelen = r->udp_tolen,
                                          .msg_iov = &iov[i],
                                          .msg_iovlen = 1};
    }
    pthread_mutex_unlock(&r->lock);
    int sent = sendmmsg(r->udp, msgs, (unsigned)n, 0);
    pthread_mutex_lock(&r->lock);
    if (sent < 0 && errno == EINTR) return;
    /* an error is the first unsent message's: it is dropped, the rest are tried again */
    size_t done = sent < 0 ? 1 : (size_t)sent;
    for (size_t i = 0; i < done; i++) {
        nng_msg *m = r->ring[r->head];
        r->head = (r->head + 1) % r->cap;
        r->count--;
        r->bytes -= nng_msg_len(m);
        nng_msg_free(m);
    }
    atomic_fetch_add(sent < 0 ? &r->dropped : &r->sent, done);
}

static void *sender(void *arg)
{
    struct casca_reporter *r = arg;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        while (!r->count && !r->closing)
            pthread_cond_wait(&r->cond, &r->lock);
        if (!r->count) break;
        if (r->udp >= 0) {
            send_datagrams(r);
            continue;
        }
        nng_msg *m = r->ring[r->head];
        size_t len = nng_msg_len(m);
        pthread_mutex_unlock(&r->lock);
        int rv;
        /* the message stays first in the queue until sent, so close can count it */
        while ((rv = nng_sendmsg(r->sock, m, 0)) == NNG_ETIMEDOUT) {
            pthread_mutex_lock(&r->lock);
            bool give_up = r->closing && casca_mono_ns() > r->deadline_ns;
            pthread_mutex_unlock(&r->lock);
            if (give_up) break;
        }
        pthread_mutex_lock(&r->lock);
        if (rv == NNG_ETIMEDOUT || rv == NNG_ECLOSED) break;
        r->head = (r->head + 1) % r->cap;
        r->count--;
        r->bytes -= len;
        if (rv) {
            nng_msg_free(m); /* a transport that refuses it will not change its mind */
            atomic_fetch_add(&r->dropped, 1);
        } else {
            atomic_fetch_add(&r->sent, 1); /* the message is nng's now */
        }
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

static void close_transport(struct casca_reporter *r)
{
    if (r->udp >= 0)
        close(r->udp);
    else
        nng_close(r->sock);
}

int casca_reporter_open(const char *address, const char *topic,
                        const struct casca_reporter_options *opts, struct casca_reporter **out)
{
    *out = NULL;
    size_t tlen = topic ? strlen(topic) : 0;
    if (!address || !tlen || tlen > MAX_TOPIC) return CASCA_ERR_INVALID;
    struct casca_reporter *r = calloc(1, sizeof(*r));
    if (!r) return CASCA_ERR_NOMEM;
    r->cap = opts && opts->max_queue_messages ? opts->max_queue_messages : DEFAULT_QUEUE_MESSAGES;
    r->max_bytes = opts && opts->max_queue_bytes ? opts->max_queue_bytes : DEFAULT_QUEUE_BYTES;
    r->topic = strdup(topic);
    r->topic_len = tlen;
    r->ring = calloc(r->cap, sizeof(*r->ring));
    if (!r->topic || !r->ring) {
        free(r->topic);
        free(r->ring);
        free(r);
        return CASCA_ERR_NOMEM;
    }
    r->udp = -1;
    char why[512];
    int rv = 0;
    if (udpaddr_is(address)) {
        if (!udpaddr_resolve(address, false, &r->udp_to, &r->udp_tolen, why, sizeof(why)) ||
            (r->udp = socket(r->udp_to.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
            rv = NNG_EADDRINVAL;
    } else if (!(rv = nng_push0_open(&r->sock))) {
        nng_socket_set_ms(r->sock, NNG_OPT_SENDTIMEO, SEND_SLICE_MS);
        nng_socket_set_ms(r->sock, NNG_OPT_RECONNMINT, 100);
        nng_socket_set_ms(r->sock, NNG_OPT_RECONNMAXT, 2000);
        nng_socket_set_size(r->sock, NNG_OPT_RECVMAXSZ, 0);
        /* non-blocking: a bus that is not up yet is dialled again in the background */
        if ((rv = nng_dial(r->sock, address, NULL, NNG_FLAG_NONBLOCK))) nng_close(r->sock);
    }
    if (rv) {
        free(r->topic);
        free(r->ring);
        free(r);
        return rv == NNG_ENOMEM ? CASCA_ERR_NOMEM : CASCA_ERR_INVALID;
    }
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    if (pthread_create(&r->thread, NULL, sender, r)) {
        close_transport(r);
        pthread_mutex_destroy(&r->lock);
        pthread_cond_destroy(&r->cond);
        free(r->topic);
        free(r->ring);
        free(r);
        return CASCA_ERR_NOMEM;
    }
    *out = r;
    return CASCA_OK;
}

/* Queues m (framed) or drops it. */
static int enqueue(struct casca_reporter *r, nng_msg *m)
{
    size_t len = nng_msg_len(m);
    if (r->udp >= 0 && len > UDP_MAX_DATAGRAM) { /* one datagram cannot carry it */
        nng_msg_free(m);
        return CASCA_ERR_INVALID;
    }
    pthread_mutex_lock(&r->lock);
    bool ok = !r->closing && r->count < r->cap && r->bytes + len <= r->max_bytes;
    if (ok) {
        r->ring[(r->head + r->count++) % r->cap] = m;
        r->bytes += len;
        pthread_cond_signal(&r->cond);
    }
    pthread_mutex_unlock(&r->lock);
    if (!ok) {
        nng_msg_free(m);
        atomic_fetch_add(&r->dropped, 1);
        return CASCA_ERR_FULL;
    }
    return CASCA_OK;
}

/* A message with room for the topic, the NUL and payload_len bytes; *payload points there. */
static nng_msg *framed(struct casca_reporter *r, size_t payload_len, unsigned char **payload)
{
    nng_msg *m;
    if (nng_msg_alloc(&m, r->topic_len + 1 + payload_len)) return NULL;
    unsigned char *body = nng_msg_body(m);
    memcpy(body, r->topic, r->topic_len);
    body[r->topic_len] = 0;
    *payload = body + r->topic_len + 1;
    return m;
}

int casca_report_json(struct casca_reporter *r, const char *json, size_t len)
{
    unsigned char *p;
    nng_msg *m = framed(r, len, &p);
    if (!m) {
        atomic_fetch_add(&r->dropped, 1);
        return CASCA_ERR_NOMEM;
    }
    memcpy(p, json, len);
    return enqueue(r, m);
}

/* ---- casca.v1.PublishRequest, encoded by hand (proto3 wire format) so that the library needs
 * nothing but nng: PublishRequest{1: repeated Point}, Point{1: series, 2: map tags, 3: double
 * value, 4: Timestamp time}, map entry{1: key, 2: value}, Timestamp{1: int64 s, 2: int32 ns}. */

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static unsigned char *put_varint(unsigned char *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return p;
}

static size_t str_field_len(const char *s)
{
    size_t n = strlen(s);
    return 1 + varint_len(n) + n;
}

static unsigned char *put_str(unsigned char *p, unsigned field, const char *s)
{
    size_t n = strlen(s);
    *p++ = (unsigned char)(field << 3 | 2);
    p = put_varint(p, n);
    memcpy(p, s, n);
    return p + n;
}

static void split_time(int64_t ns, int64_t *s, int32_t *nanos)
{
    *s = ns / 1000000000;
    *nanos = (int32_t)(ns % 1000000000);
    if (*nanos < 0) {
        *nanos += 1000000000;
        (*s)--;
    }
}

static size_t time_len(int64_t ns)
{
    int64_t s;
    int32_t n;
    split_time(ns, &s, &n);
    return (s ? 1 + varint_len((uint64_t)s) : 0) + (n ? 1 + varint_len((uint64_t)n) : 0);
}

static size_t entry_len(const struct casca_tag *t)
{
    return str_field_len(t->key) + str_field_len(t->value);
}

static size_t point_len(const struct casca_point *p)
{
    size_t n = str_field_len(p->series) + 9; /* value: tag + 8 bytes */
    for (size_t i = 0; i < p->ntags; i++) {
        size_t e = entry_len(&p->tags[i]);
        n += 1 + varint_len(e) + e;
    }
    if (p->time_ns) {
        size_t t = time_len(p->time_ns);
        n += 1 + varint_len(t) + t;
    }
    return n;
}

static unsigned char *put_point(unsigned char *q, const struct casca_point *p, size_t len)
{
    *q++ = 1 << 3 | 2;
    q = put_varint(q, len);
    q = put_str(q, 1, p->series);
    for (size_t i = 0; i < p->ntags; i++) {
        *q++ = 2 << 3 | 2;
        q = put_varint(q, entry_len(&p->tags[i]));
        q = put_str(q, 1, p->tags[i].key);
        q = put_str(q, 2, p->tags[i].value);
    }
    *q++ = 3 << 3 | 1;
    memcpy(q, &p->value, 8); /* little-endian hosts: the wire order */
    q += 8;
    if (p->time_ns) {
        int64_t s;
        int32_t n;
        split_time(p->time_ns, &s, &n);
        *q++ = 4 << 3 | 2;
        q = put_varint(q, time_len(p->time_ns));
        if (s) {
            *q++ = 1 << 3;
            q = put_varint(q, (uint64_t)s);
        }
        if (n) {
            *q++ = 2 << 3;
            q = put_varint(q, (uint64_t)n);
        }
    }
    return q;
}

int casca_report_points(struct casca_reporter *r, const struct casca_point *pts, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!pts[i].series || !*pts[i].series || !isfinite(pts[i].value)) return CASCA_ERR_INVALID;
        for (size_t t = 0; t < pts[i].ntags; t++)
            if (!pts[i].tags[t].key || !pts[i].tags[t].value) return CASCA_ERR_INVALID;
        size_t pl = point_len(&pts[i]);
        total += 1 + varint_len(pl) + pl;
    }
    unsigned char *p;
    nng_msg *m = framed(r, total, &p);
    if (!m) {
        atomic_fetch_add(&r->dropped, 1);
        return CASCA_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++)
        p = put_point(p, &pts[i], point_len(&pts[i]));
    return enqueue(r, m);
}

int casca_report_value(struct casca_reporter *r, const char *series, double value, int64_t time_ns)
{
    struct casca_point p = {.series = series, .value = value, .time_ns = time_ns};
    return casca_report_points(r, &p, 1);
}

void casca_reporter_stats(struct casca_reporter *r, struct casca_reporter_stats *st)
{
    pthread_mutex_lock(&r->lock);
    st->queued = r->count;
    pthread_mutex_unlock(&r->lock);
    st->sent = atomic_load(&r->sent);
    st->dropped = atomic_load(&r->dropped);
}

uint64_t casca_reporter_close(struct casca_reporter *r, int timeout_ms)
{
    if (!r) return 0;
    int64_t start = casca_mono_ns();
    pthread_mutex_lock(&r->lock);
    r->closing = true;
    r->deadline_ns = start + (int64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    /* nng has no linger: give the transport a moment to write out the last message (a datagram
     * is the kernel's once sent) */
    int64_t left_ms = (r->deadline_ns - casca_mono_ns()) / 1000000;
    if (r->udp < 0 && atomic_load(&r->sent) && left_ms > 0) {
        struct timespec ts = {0, (left_ms < LINGER_MS ? left_ms : LINGER_MS) * 1000000};
        while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
            ;
    }
    close_transport(r);
    for (size_t i = 0; i < r->count; i++) {
        nng_msg_free(r->ring[(r->head + i) % r->cap]);
        atomic_fetch_add(&r->dropped, 1);
    }
    uint64_t dropped = atomic_load(&r->dropped);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    free(r->ring);
    free(r->topic);
    free(r);
    return dropped;
}
