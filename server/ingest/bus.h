/* bus: casca's message middleware on nng. An ingress (PULL) accepts messages from any number of
 * sources on the configured addresses (tcp, ipc, inproc; udp:// for datagrams, see bus_udp.h) and a
 * PUB fan-out hands each message to
 * every subscriber whose topic prefix matches (the hooks, in this process over inproc, or a
 * casca-hook on another host over tcp). The same code runs inside cascad and in casca-hook.
 *
 * Framing of one message (one nng message, both on the ingress and on the fan-out):
 *     topic bytes (1..BUS_MAX_TOPIC, no NUL) | one NUL byte | payload bytes (any, may be empty)
 * A subscriber subscribes to a topic prefix, so "autowatcher/" receives "autowatcher/w1".
 * The ingress drops (and counts) a message without a NUL in its first BUS_MAX_TOPIC + 1 bytes or
 * with an empty topic; a message over max_message bytes is refused by nng (the sender's
 * connection is closed and re-established by its dialer).
 *
 * Subscribers in this process (the hooks of cascad) get each message handed over directly by
 * bus_subscribe, into their own bounded queue that counts what it drops: nothing is lost on the
 * way. Subscribers in other processes (casca-hook over tcp) get the PUB fan-out, which never
 * blocks the bus: one that falls behind loses messages at nng's pipe buffers, uncounted here. */
#ifndef CASCA_BUS_H
#define CASCA_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#define BUS_MAX_TOPIC 256

struct bus;

struct bus_options {
    const char *name;          /* "main": names the inproc addresses and the log lines */
    const char *const *listen; /* extra ingress addresses ("tcp://127.0.0.1:5556") */
    size_t nlisten;
    const char *const *publish; /* extra fan-out addresses for remote hooks */
    size_t npublish;
    size_t max_message;        /* largest message accepted by the ingress, bytes */
    size_t udp_buffer;         /* receive buffer of each udp:// ingress, bytes */
    const char *const *routes; /* topic prefixes of the hooks of this process, to count */
    size_t nroutes;            /* (and warn about) messages nobody here subscribes to */
};

struct bus_stats {
    uint64_t received;  /* messages taken from the ingress */
    uint64_t published; /* messages handed to the fan-out */
    uint64_t malformed; /* dropped: no topic framing */
    uint64_t unrouted;  /* published, but no hook of this process subscribes to the topic */
    uint64_t lost;      /* datagrams a udp:// ingress lost before reading them (buffer full) */
};

/* Opens the ingress and the fan-out, listening on the inproc addresses (bus_ingress_inproc,
 * bus_publish_inproc) and on o's addresses, and starts forwarding. On failure returns a casca_err
 * and writes the reason (naming the address) into err. The caller owns *out. Any thread. */
int bus_create(const struct bus_options *o, struct bus **out, char *err, size_t errlen);
/* Stops forwarding and closes every socket. Safe on NULL. Not from an nng callback. */
void bus_destroy(struct bus *b);

/* A subscriber in this process: called on the bus's forwarding thread with each message whose
 * topic starts with the prefix it subscribed to. It owns msg (its own copy: nng_msg_free it) and
 * must not block: queue it, or drop it and count the drop. */
typedef void (*bus_deliver_fn)(void *arg, nng_msg *msg);
/* Adds a subscriber; prefix is copied. CASCA_ERR_NOMEM on failure. Any thread. */
int bus_subscribe(struct bus *b, const char *prefix, bus_deliver_fn fn, void *arg);
/* Removes every subscription with this arg; when it returns, fn is not running and will not be
 * called again for arg. Any thread but the forwarding one. */
void bus_unsubscribe(struct bus *b, void *arg);

const char *bus_name(const struct bus *b);
/* "inproc://casca/bus/NAME/in" and ".../pub": valid until bus_destroy. */
const char *bus_ingress_inproc(const struct bus *b);
const char *bus_publish_inproc(const struct bus *b);
void bus_stats(const struct bus *b, struct bus_stats *st); /* any thread */

/* Splits a framed message. Returns false (and sets nothing) if it has no valid topic. The
 * pointers point into buf. Pure, any thread. */
bool bus_split(const void *buf, size_t len, const char **topic, size_t *topic_len,
               const void **payload, size_t *payload_len);

/* True when address is one nng can use here: tcp://, ipc://, inproc:// (and tls+tcp://, ws://
 * when nng was built with them); not udp://, which only bus.listen takes. For config validation;
 * writes the reason into why. */
bool bus_address_ok(const char *address, char *why, size_t whylen);

#endif
