/* bus_udp: a bus's datagram ingress (udp://HOST:PORT in bus.listen), for many small messages.
 *
 * One datagram is one bus message, framed as on nng (topic, NUL, payload). A thread of its own
 * reads up to 64 datagrams per system call (recvmmsg) and hands each to the bus in arrival order;
 * nng's TCP ingress costs two task hand-offs and two reads per message, which caps one-point
 * messages at about 40,000 per second on two cores.
 *
 * Datagrams are fire-and-forget: the kernel drops what arrives while the receive buffer
 * (bus.udp_buffer) is full; those losses are counted (SO_RXQ_OVFL) and shown, never silent. A
 * datagram over the bus's max_message is dropped and counted as malformed. Use it on loopback or a
 * trusted network: a datagram's source is not authenticated. */
#ifndef CASCA_BUS_UDP_H
#define CASCA_BUS_UDP_H

#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

struct bus_udp;

/* A datagram as a bus message (the callee owns it), on the ingress's thread. */
typedef void (*bus_udp_fn)(void *arg, nng_msg *msg);
/* A datagram over max_message (len: its size, or more), on the ingress's thread. */
typedef void (*bus_udp_oversized_fn)(void *arg, size_t len);

struct bus_udp_options {
    const char *bus;     /* the bus's name, for messages */
    const char *address; /* udp://HOST:PORT */
    size_t max_message;  /* larger datagrams are dropped */
    size_t buffer;       /* the socket's receive buffer, bytes */
    bus_udp_fn deliver;
    bus_udp_oversized_fn oversized;
    void *arg;
};

/* Binds the address and starts reading. CASCA_OK, or an error with the reason (naming the
 * address) in err. */
int bus_udp_open(const struct bus_udp_options *o, struct bus_udp **out, char *err, size_t errlen);
/* Stops the reading thread (no callback runs once it returns), closes the socket. Safe on NULL. */
void bus_udp_close(struct bus_udp *u);
/* Datagrams lost: dropped by the kernel before they were read (receive buffer full), or read
 * without memory for a message. Any thread. */
uint64_t bus_udp_lost(const struct bus_udp *u);

#endif
