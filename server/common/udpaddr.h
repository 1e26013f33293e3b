/* udpaddr: the udp://HOST:PORT addresses of a bus's datagram ingress, shared by cascad's listener
 * and libcasca's reporter. HOST is an IPv4 address, an IPv6 address in brackets, a name, or (to
 * listen on every address) empty or "*"; PORT is 1..65535. */
#ifndef CASCA_UDPADDR_H
#define CASCA_UDPADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* The largest payload of one UDP datagram over IPv4: the largest bus message a datagram holds. */
#define UDP_MAX_DATAGRAM 65507

/* True when address starts with "udp://". */
bool udpaddr_is(const char *address);

/* Checks the form of a udp:// address without resolving its host (for config validation).
 * listen: an empty or "*" host is allowed. False with the reason in why. */
bool udpaddr_check(const char *address, bool listen, char *why, size_t whylen);

/* Resolves a udp:// address into *sa and *len (the first address getaddrinfo gives). Returns
 * true, or false with the reason in why. May block on DNS for a host name. */
bool udpaddr_resolve(const char *address, bool listen, struct sockaddr_storage *sa, socklen_t *len,
                     char *why, size_t whylen);

#endif
