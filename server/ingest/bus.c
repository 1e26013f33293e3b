#include "bus.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pubsub0/pub.h>

#include "bus_udp.h"
#include "casca_err.h"
#include "log.h"
#include "udpaddr.h"
#include "warnlimit.h"

#define BUS_SENDBUF 128 /* messages a slow subscriber's pipe may queue before PUB drops */

struct bus {
    char *name;
    char in_addr[128], pub_addr[128];
    nng_socket pull, pub;
    bool pull_open, pub_open;
    nng_aio *aio;
    struct bus_udp **udp; /* datagram ingresses (udp:// listen addresses) */
    size_t nudp;
    char **routes;
    size_t nroutes;
    atomic_ullong received, published, malformed, unrouted;
    atomic_int pub_pipes; /* connected to the fan-out */
    struct warn_limit warn;
    pthread_mutex_t subs_lock; /* held while delivering, so unsubscribe waits for a delivery */
    struct local_sub *subs;
    size_t nsubs;
};

struct local_sub {
    char *prefix;
    size_t len;
    bus_deliver_fn fn;
    void *arg;
};

static void deliver_copy(const struct local_sub *sub, nng_msg *m)
{
    nng_msg *copy;
    if (nng_msg_dup(&copy, m) == 0) sub->fn(sub->arg, copy);
}

/* Hands m to every local subscriber of its topic, each its own copy, except that the last one gets
 * m itself if give: then returns true (m is theirs). On the forwarding thread. */
static bool deliver_local(struct bus *b, nng_msg *m, const char *topic, size_t tlen, bool give)
{
    pthread_mutex_lock(&b->subs_lock);
    const struct local_sub *last = NULL; /* the last match is served after the loop */
    for (size_t i = 0; i < b->nsubs; i++) {
        const struct local_sub *sub = &b->subs[i];
        if (sub->len > tlen || memcmp(sub->prefix, topic, sub->len)) continue;
        if (last) deliver_copy(last, m);
        last = sub;
    }
    bool given = last && give;
    if (given)
        last->fn(last->arg, m);
    else if (last)
        deliver_copy(last, m);
    pthread_mutex_unlock(&b->subs_lock);
    return given;
}

/* The fan-out's pipes come and go (remote casca-hooks): counted, so that a message nobody
 * subscribes to over nng costs no send (nng_sendmsg allocates an aio per call). nng tells
 * REM_POST exactly for the pipes it told ADD_PRE. */
static void on_pub_pipe(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    (void)p;
    struct bus *b = arg;
    atomic_fetch_add(&b->pub_pipes, ev == NNG_PIPE_EV_ADD_PRE ? 1 : -1);
}

int bus_subscribe(struct bus *b, const char *prefix, bus_deliver_fn fn, void *arg)
{
    pthread_mutex_lock(&b->subs_lock);
    struct local_sub *grown = realloc(b->subs, (b->nsubs + 1) * sizeof(*grown));
    char *copy = strdup(prefix);
    if (grown)
        b->subs = grown;
    if (!grown || !copy) {
        pthread_mutex_unlock(&b->subs_lock);
        free(copy);
        return CASCA_ERR_NOMEM;
    }
    b->subs[b->nsubs++] = (struct local_sub){copy, strlen(copy), fn, arg};
    pthread_mutex_unlock(&b->subs_lock);
    return CASCA_OK;
}

void bus_unsubscribe(struct bus *b, void *arg)
{
    pthread_mutex_lock(&b->subs_lock);
    size_t kept = 0;
    for (size_t i = 0; i < b->nsubs; i++) {
        if (b->subs[i].arg == arg)
            free(b->subs[i].prefix);
        else
            b->subs[kept++] = b->subs[i];
    }
    b->nsubs = kept;
    pthread_mutex_unlock(&b->subs_lock);
}

bool bus_split(const void *buf, size_t len, const char **topic, size_t *topic_len,
               const void **payload, size_t *payload_len)
{
    size_t scan = len < BUS_MAX_TOPIC + 1 ? len : BUS_MAX_TOPIC + 1;
    const char *nul = memchr(buf, 0, scan);
    if (!nul || nul == buf) return false;
    *topic = buf;
    *topic_len = (size_t)(nul - (const char *)buf);
    *payload = nul + 1;
    *payload_len = len - *topic_len - 1;
    return true;
}

bool bus_address_ok(const char *address, char *why, size_t whylen)
{
    static const char *const schemes[] = {"tcp://",    "tcp4://", "tcp6://",   "ipc://",
                                          "inproc://", "ws://",   "tls+tcp://"};
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        size_t n = strlen(schemes[i]);
        if (!strncmp(address, schemes[i], n)) {
            if (!address[n]) {
                snprintf(why, whylen, "'%s' has nothing after the scheme", address);
                return false;
            }
            return true;
        }
    }
    if (udpaddr_is(address))
        snprintf(why, whylen,
                 "'%s': udp:// is for bus.listen only (datagrams in); use tcp://HOST:PORT here",
                 address);
    else
        snprintf(why, whylen,
                 "'%s' is not an nng address: use tcp://HOST:PORT, ipc:///path or inproc://name",
                 address);
    return false;
}

static bool routed(const struct bus *b, const char *topic, size_t len)
{
    for (size_t i = 0; i < b->nroutes; i++) {
        size_t n = strlen(b->routes[i]);
        if (n <= len && !memcmp(b->routes[i], topic, n)) return true;
    }
    return false;
}

/* The one forwarding step, from the nng ingress or a datagram one: checks -> fan-out. */
static void forward(void *arg, nng_msg *m)
{
    struct bus *b = arg;
    atomic_fetch_add(&b->received, 1);
    const char *topic;
    size_t tlen, plen;
    const void *payload;
    uint64_t left_out = 0;
    if (!bus_split(nng_msg_body(m), nng_msg_len(m), &topic, &tlen, &payload, &plen)) {
        atomic_fetch_add(&b->malformed, 1);
        if (warn_limit_allow(&b->warn, &left_out))
            log_warn("bus",
                     "bus %s: dropped a message of %zu bytes without a topic (expected "
                     "topic, NUL, payload)%s",
                     b->name, nng_msg_len(m), left_out ? " (and more like it)" : "");
        nng_msg_free(m);
    } else {
        if (b->nroutes && !routed(b, topic, tlen)) {
            atomic_fetch_add(&b->unrouted, 1);
            if (warn_limit_allow(&b->warn, &left_out))
                log_warn("bus",
                         "bus %s: no hook of this process subscribes to topic '%.*s': "
                         "the message is not stored here%s",
                         b->name, (int)tlen, topic, left_out ? " (and more like it)" : "");
        }
        bool publish = atomic_load(&b->pub_pipes) > 0;
        if (deliver_local(b, m, topic, tlen, !publish)) return;
        if (!publish || nng_sendmsg(b->pub, m, NNG_FLAG_NONBLOCK) != 0)
            nng_msg_free(m);
        else
            atomic_fetch_add(&b->published, 1);
    }
}

/* The nng ingress, on an nng task thread. */
static void on_recv(void *arg)
{
    struct bus *b = arg;
    if (nng_aio_result(b->aio) != 0) return; /* closed (or stopped): do not re-arm */
    forward(b, nng_aio_get_msg(b->aio));
    nng_recv_aio(b->pull, b->aio);
}

static void on_oversized(void *arg, size_t len)
{
    struct bus *b = arg;
    uint64_t left_out = 0;
    atomic_fetch_add(&b->received, 1);
    atomic_fetch_add(&b->malformed, 1);
    if (warn_limit_allow(&b->warn, &left_out)) /* len: one byte over max_message at least */
        log_warn("bus",
                 "bus %s: dropped a datagram of more than %zu bytes (bus.max_message): raise it, "
                 "or send large messages over tcp://%s",
                 b->name, len - 1, left_out ? " (and more like it)" : "");
}

static int listen_all(nng_socket s, const char *const *addrs, size_t n, const char *what,
                      const char *bus, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        char why[256];
        if (!bus_address_ok(addrs[i], why, sizeof(why))) {
            snprintf(err, errlen, "bus %s: %s address %s", bus, what, why);
            return CASCA_ERR_CONFIG;
        }
        int rv = nng_listen(s, addrs[i], NULL, 0);
        if (rv) {
            snprintf(err, errlen, "bus %s: cannot listen on %s (%s): %s", bus, addrs[i], what,
                     nng_strerror(rv));
            return CASCA_ERR_UNAVAILABLE;
        }
    }
    return CASCA_OK;
}

/* Listens on o's nng ingress addresses, and with a datagram ingress on its udp:// ones. */
static int listen_in(struct bus *b, const struct bus_options *o, char *err, size_t errlen)
{
    for (size_t i = 0; i < o->nlisten; i++) {
        int rc;
        if (!udpaddr_is(o->listen[i])) {
            if ((rc = listen_all(b->pull, &o->listen[i], 1, "ingress", o->name, err, errlen)))
                return rc;
            continue;
        }
        struct bus_udp_options uo = {.bus = o->name,
                                     .address = o->listen[i],
                                     .max_message = o->max_message,
                                     .buffer = o->udp_buffer,
                                     .deliver = forward,
                                     .oversized = on_oversized,
                                     .arg = b};
        if ((rc = bus_udp_open(&uo, &b->udp[b->nudp], err, errlen))) return rc;
        b->nudp++;
    }
    return CASCA_OK;
}

int bus_create(const struct bus_options *o, struct bus **out, char *err, size_t errlen)
{
    *out = NULL;
    struct bus *b = calloc(1, sizeof(*b));
    if (b)
        pthread_mutex_init(&b->subs_lock, NULL);
    if (!b || !(b->name = strdup(o->name)) ||
        (o->nroutes && !(b->routes = calloc(o->nroutes, sizeof(char *)))) ||
        (o->nlisten && !(b->udp = calloc(o->nlisten, sizeof(*b->udp))))) {
        bus_destroy(b);
        snprintf(err, errlen, "out of memory");
        return CASCA_ERR_NOMEM;
    }
    for (size_t i = 0; i < o->nroutes; i++)
        if ((b->routes[b->nroutes] = strdup(o->routes[i]))) b->nroutes++;
    snprintf(b->in_addr, sizeof(b->in_addr), "inproc://casca/bus/%s/in", o->name);
    snprintf(b->pub_addr, sizeof(b->pub_addr), "inproc://casca/bus/%s/pub", o->name);

    int rv, rc;
    if ((rv = nng_pull0_open(&b->pull)) || !(b->pull_open = true) ||
        (rv = nng_pub0_open(&b->pub)) || !(b->pub_open = true) ||
        (rv = nng_pipe_notify(b->pub, NNG_PIPE_EV_ADD_PRE, on_pub_pipe, b)) ||
        (rv = nng_pipe_notify(b->pub, NNG_PIPE_EV_REM_POST, on_pub_pipe, b)) ||
        (rv = nng_socket_set_size(b->pull, NNG_OPT_RECVMAXSZ, o->max_message)) ||
        (rv = nng_socket_set_int(b->pub, NNG_OPT_SENDBUF, BUS_SENDBUF)) ||
        (rv = nng_aio_alloc(&b->aio, on_recv, b))) {
        snprintf(err, errlen, "bus %s: cannot open its sockets: %s", o->name, nng_strerror(rv));
        bus_destroy(b);
        return CASCA_ERR_INTERNAL;
    }
    const char *in = b->in_addr, *pub = b->pub_addr;
    if ((rc = listen_all(b->pub, &pub, 1, "publish", o->name, err, errlen)) ||
        (rc = listen_all(b->pub, o->publish, o->npublish, "publish", o->name, err, errlen)) ||
        (rc = listen_all(b->pull, &in, 1, "ingress", o->name, err, errlen)) ||
        (rc = listen_in(b, o, err, errlen))) {
        bus_destroy(b);
        return rc;
    }
    nng_recv_aio(b->pull, b->aio);
    *out = b;
    return CASCA_OK;
}

void bus_destroy(struct bus *b)
{
    if (!b) return;
    for (size_t i = 0; i < b->nudp; i++)
        bus_udp_close(b->udp[i]); /* no datagram is forwarded once they return */
    free(b->udp);
    if (b->pull_open)
        nng_close(b->pull);           /* the pending receive ends with NNG_ECLOSED: on_recv stops */
    if (b->aio) nng_aio_stop(b->aio); /* waits for an on_recv still running */
    if (b->pub_open) nng_close(b->pub);
    nng_aio_free(b->aio);
    for (size_t i = 0; i < b->nroutes; i++)
        free(b->routes[i]);
    free(b->routes);
    for (size_t i = 0; i < b->nsubs; i++)
        free(b->subs[i].prefix);
    free(b->subs);
    pthread_mutex_destroy(&b->subs_lock);
    free(b->name);
    free(b);
}

const char *bus_name(const struct bus *b)
{
    return b->name;
}

const char *bus_ingress_inproc(const struct bus *b)
{
    return b->in_addr;
}

const char *bus_publish_inproc(const struct bus *b)
{
    return b->pub_addr;
}

void bus_stats(const struct bus *b, struct bus_stats *st)
{
    st->received = atomic_load(&b->received);
    st->published = atomic_load(&b->published);
    st->malformed = atomic_load(&b->malformed);
    st->unrouted = atomic_load(&b->unrouted);
    st->lost = 0;
    for (size_t i = 0; i < b->nudp; i++)
        st->lost += bus_udp_lost(b->udp[i]);
}
