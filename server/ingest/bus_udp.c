#include "bus_udp.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "casca_err.h"
#include "log.h"
#include "udpaddr.h"

#define BATCH 64 /* datagrams per recvmmsg */

struct bus_udp {
    struct bus_udp_options o;
    char *address, *bus;
    int fd, wake; /* the socket; an eventfd that tells the thread to stop */
    size_t slot;  /* bytes per datagram buffer: max_message + 1 (to tell one over it), <= 64 KiB */
    unsigned char *bufs;
    pthread_t thread;
    bool started;
    atomic_bool stopping;
    atomic_ullong kernel_drops; /* the socket's SO_RXQ_OVFL count */
    atomic_ullong no_memory;    /* datagrams read but not handed on: no memory for a message */
};

/* The kernel's count of datagrams it dropped on this socket (SO_RXQ_OVFL), if the header has it. */
static void note_drops(struct bus_udp *u, struct msghdr *h)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
            uint32_t drops;
            memcpy(&drops, CMSG_DATA(c), sizeof(drops));
            atomic_store(&u->kernel_drops, drops); /* cumulative; one reader thread */
        }
    }
}

/* Hands over the n datagrams just read. */
static void deliver(struct bus_udp *u, struct mmsghdr *msgs, int n)
{
    for (int i = 0; i < n; i++) {
        struct msghdr *h = &msgs[i].msg_hdr;
        size_t len = msgs[i].msg_len;
        note_drops(u, h);
        if ((h->msg_flags & MSG_TRUNC) || len > u->o.max_message) {
            u->o.oversized(u->o.arg, len);
        } else {
            nng_msg *m;
            if (nng_msg_alloc(&m, len) == 0) {
                memcpy(nng_msg_body(m), h->msg_iov->iov_base, len);
                u->o.deliver(u->o.arg, m);
            } else {
                atomic_fetch_add(&u->no_memory, 1);
            }
        }
        h->msg_controllen = CMSG_SPACE(sizeof(uint32_t));
        h->msg_flags = 0;
    }
}

static void *reader(void *arg)
{
    struct bus_udp *u = arg;
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(uint32_t))];
    } ctl[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iov[i] = (struct iovec){u->bufs + (size_t)i * u->slot, u->slot};
        msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i],
                                          .msg_iovlen = 1,
                                          .msg_control = ctl[i].buf,
                                          .msg_controllen = sizeof(ctl[i].buf)};
    }
    while (!atomic_load(&u->stopping)) {
        struct pollfd p[2] = {{.fd = u->fd, .events = POLLIN}, {.fd = u->wake, .events = POLLIN}};
        if (poll(p, 2, -1) < 0 && errno != EINTR) {
            log_error("bus", "bus %s: %s: cannot wait for datagrams: %s; no more are read", u->bus,
                      u->address, strerror(errno));
            break;
        }
        int n;
        /* read while there is something to read: under load, no poll between batches */
        while (!atomic_load(&u->stopping) &&
               (n = recvmmsg(u->fd, msgs, BATCH, MSG_DONTWAIT, NULL)) > 0)
            deliver(u, msgs, n);
    }
    return NULL;
}

/* Sets the receive buffer; root may go past net.core.rmem_max (SO_RCVBUFFORCE). */
static void set_buffer(struct bus_udp *u)
{
    int want = u->o.buffer > (size_t)INT32_MAX / 2 ? INT32_MAX / 2 : (int)u->o.buffer, got = 0;
    socklen_t len = sizeof(got);
    if (setsockopt(u->fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof(want)))
        setsockopt(u->fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof(want));
    getsockopt(u->fd, SOL_SOCKET, SO_RCVBUF, &got, &len);
    if ((size_t)got / 2 < (size_t)want / 2) /* Linux reports twice what it was asked for */
        log_warn("bus",
                 "bus %s: %s: the receive buffer is %d KiB, not the %d KiB of bus.udp_buffer: "
                 "raise the sysctl net.core.rmem_max, or datagrams may be lost under bursts",
                 u->bus, u->address, got / 2 / 1024, want / 1024);
}

int bus_udp_open(const struct bus_udp_options *o, struct bus_udp **out, char *err, size_t errlen)
{
    *out = NULL;
    struct sockaddr_storage sa;
    socklen_t salen;
    char why[512];
    if (!udpaddr_resolve(o->address, true, &sa, &salen, why, sizeof(why))) {
        snprintf(err, errlen, "bus %s: %s", o->bus, why);
        return CASCA_ERR_CONFIG;
    }
    struct bus_udp *u = calloc(1, sizeof(*u));
    if (!u) return CASCA_ERR_NOMEM;
    u->o = *o;
    u->fd = u->wake = -1;
    u->slot = o->max_message < 65535 ? o->max_message + 1 : 65536;
    int on = 1, rc = CASCA_ERR_NOMEM;
    if (!(u->address = strdup(o->address)) || !(u->bus = strdup(o->bus)) ||
        !(u->bufs = malloc(BATCH * u->slot)))
        goto fail;
    rc = CASCA_ERR_UNAVAILABLE;
    if ((u->fd = socket(sa.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0 ||
        setsockopt(u->fd, SOL_SOCKET, SO_RXQ_OVFL, &on, sizeof(on)) ||
        bind(u->fd, (struct sockaddr *)&sa, salen) ||
        (u->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        snprintf(err, errlen, "bus %s: cannot listen on %s: %s", o->bus, o->address,
                 strerror(errno));
        goto fail;
    }
    set_buffer(u);
    u->o.address = u->address;
    u->o.bus = u->bus;
    rc = CASCA_ERR_NOMEM;
    if (pthread_create(&u->thread, NULL, reader, u)) goto fail;
    u->started = true;
    *out = u;
    return CASCA_OK;
fail:
    if (rc == CASCA_ERR_NOMEM) snprintf(err, errlen, "bus %s: out of memory", o->bus);
    bus_udp_close(u);
    return rc;
}

void bus_udp_close(struct bus_udp *u)
{
    if (!u) return;
    if (u->started) {
        atomic_store(&u->stopping, true);
        uint64_t one = 1;
        ssize_t w = write(u->wake, &one, sizeof(one)); /* cannot fail on a fresh eventfd */
        (void)w;
        pthread_join(u->thread, NULL);
    }
    if (u->fd >= 0) close(u->fd);
    if (u->wake >= 0) close(u->wake);
    free(u->bufs);
    free(u->address);
    free(u->bus);
    free(u);
}

uint64_t bus_udp_lost(const struct bus_udp *u)
{
    return atomic_load(&u->kernel_drops) + atomic_load(&u->no_memory);
}
