/* carbon_providers: where CarbonService gets hourly intensities, one ops table per provider:
 *   bundled          the data in the store (shipped with casca, plus `casca carbon import`)
 *   electricitymaps  Electricity Maps API v3
 * (/v3/carbon-intensity/latest|history|past-range|forecast, header auth-token), lifecycle figures
 *   uk               UK National Grid ESO carbon-intensity API (/intensity,
 * /intensity/{from}/{to}), zone GB only, no key, direct emissions A live provider's fetch does
 * blocking HTTP (libcurl, with the configured timeout): call it only on a worker-pool thread (an
 * RPC_BLOCKING handler) or a thread of your own. Adding a provider is one new file with its ops and
 * one row in carbon_provider_table. */
#ifndef CASCA_CARBON_PROVIDERS_H
#define CASCA_CARBON_PROVIDERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "carbondb.h"

struct carbon_provider_conf;

/* Hours a fetch produced (any order); source and flags set, fetched_ns set by the caller. */
struct carbon_hours {
    struct carbondb_hour *a;
    size_t n, cap;
};
int carbon_hours_add(struct carbon_hours *h, int64_t hour, double g, uint8_t flags);
void carbon_hours_free(struct carbon_hours *h);

struct carbon_provider_ops {
    const char *name;         /* the name used in config and in every figure's provider field */
    uint8_t source;           /* enum carbondb_source of its cached hours */
    const char *default_url;  /* base URL; NULL for bundled */
    const char *token_env;    /* default environment variable of the key; NULL: no key */
    const char *const *zones; /* zones it can answer (NULL-terminated); NULL: any zone */
    int past_days;            /* how far back it answers (0: no limit) */
    int future_hours;         /* how far ahead it forecasts */
    /* Fetches the hours [from, to) of zone (now_h: the current hour) into out. Blocking HTTP
     * bounded by timeout_ms. On failure returns a casca_err (CASCA_ERR_UNAVAILABLE: down or
     * refused; CASCA_ERR_TIMEOUT; CASCA_ERR_INVALID: an answer it could not read) and writes a
     * reason safe to show any caller (no URL, no key) into why. NULL for bundled. */
    int (*fetch)(const struct carbon_provider_conf *p, const char *zone, int64_t from, int64_t to,
                 int64_t now_h, long timeout_ms, struct carbon_hours *out, char *why,
                 size_t whylen);
};

/* One configured provider (part of the immutable carbon config section). */
struct carbon_provider_conf {
    const struct carbon_provider_ops *ops;
    char *url;           /* base URL without a trailing '/' */
    char *token;         /* the key read from token_env at config load, or NULL */
    char *token_env;     /* for messages */
    uint64_t ttl_ms;     /* cached answers are fresh this long */
    uint64_t timeout_ms; /* per HTTP request */
    char **zones;        /* zones routed to it; NULL: ops->zones */
    size_t nzones;
};

/* The providers, NULL-terminated; and one by name (NULL if unknown). Pure. */
extern const struct carbon_provider_ops *const carbon_provider_table[];
const struct carbon_provider_ops *carbon_provider_find(const char *name);
/* True when p answers zone (its configured zones, else its ops' zones, else any). Pure. */
bool carbon_provider_serves(const struct carbon_provider_conf *p, const char *zone);

/* ---- for provider files: HTTP GET and time formatting ---- */

/* GETs url with the headers (NULL-terminated "Name: value" list, may be NULL). On success returns
 * CASCA_OK with the body (malloc'ed, NUL-terminated; caller frees) in *body and the HTTP status in
 * *status. Transport failures: CASCA_ERR_TIMEOUT or CASCA_ERR_UNAVAILABLE with why set. Blocking.
 */
int carbon_http_get(const char *url, const char *const *headers, long timeout_ms, char **body,
                    long *status, char *why, size_t whylen);
/* The casca_err and reason for a non-2xx status (401/403 key refused, 429 rate limit, 5xx down). */
int carbon_http_status_err(const char *provider, long status, char *why, size_t whylen);
/* "2022-01-01T00:00:00Z" for an hour; buf needs 24 bytes. */
void carbon_format_hour(int64_t hour, char *buf, size_t len);
/* Parses an ISO 8601 UTC time ("2022-01-01T00:00:00.000Z", "2018-01-20T12:30Z") to seconds
 * since 1970; false if it is not one. */
bool carbon_parse_time(const char *s, int64_t *secs);

extern const struct carbon_provider_ops carbon_provider_bundled;
extern const struct carbon_provider_ops carbon_provider_electricitymaps;
extern const struct carbon_provider_ops carbon_provider_uk;

#endif
