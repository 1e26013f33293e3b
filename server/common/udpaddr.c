#include "udpaddr.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCHEME "udp://"

bool udpaddr_is(const char *address)
{
    return address && !strncmp(address, SCHEME, strlen(SCHEME));
}

/* Splits "udp://HOST:PORT" into host (brackets removed; "" for any) and port. */
static bool split(const char *address, bool listen, char *host, size_t hostlen, char *port,
                  char *why, size_t whylen)
{
    const char *rest = address + strlen(SCHEME), *colon = strrchr(rest, ':');
    if (!udpaddr_is(address) || !colon) {
        snprintf(why, whylen, "'%s' is not a udp address: write udp://HOST:PORT", address);
        return false;
    }
    const char *h = rest, *h_end = colon;
    if (*h == '[') {
        if (h_end == h || h_end[-1] != ']') {
            snprintf(why, whylen, "'%s': an IPv6 host goes in brackets: udp://[::1]:PORT", address);
            return false;
        }
        h++;
        h_end--;
    }
    size_t n = (size_t)(h_end - h);
    if (n >= hostlen) {
        snprintf(why, whylen, "'%s': the host name is too long", address);
        return false;
    }
    memcpy(host, h, n);
    host[n] = 0;
    if (!strcmp(host, "*")) host[0] = 0;
    if (!*host && !listen) {
        snprintf(why, whylen, "'%s' names no host: write udp://HOST:PORT", address);
        return false;
    }
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || p < 1 || p > 65535) {
        snprintf(why, whylen, "'%s': the port must be a number from 1 to 65535", address);
        return false;
    }
    snprintf(port, 8, "%ld", p);
    return true;
}

bool udpaddr_check(const char *address, bool listen, char *why, size_t whylen)
{
    char host[256], port[8];
    return split(address, listen, host, sizeof(host), port, why, whylen);
}

bool udpaddr_resolve(const char *address, bool listen, struct sockaddr_storage *sa, socklen_t *len,
                     char *why, size_t whylen)
{
    char host[256], port[8];
    if (!split(address, listen, host, sizeof(host), port, why, whylen)) return false;
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM,
                             .ai_flags = AI_NUMERICSERV | (listen ? AI_PASSIVE : 0)};
    struct addrinfo *ai;
    int rc = getaddrinfo(*host ? host : NULL, port, &hints, &ai);
    if (rc) {
        snprintf(why, whylen, "'%s': cannot resolve '%s': %s", address, host, gai_strerror(rc));
        return false;
    }
    memcpy(sa, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return true;
}
