#include "carbon_providers.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "casca_err.h"
#include "http.h"
#include "timeconv.h"

#define BODY_MAX (16u << 20) /* a provider answer larger than this is refused */

const struct carbon_provider_ops carbon_provider_bundled = {
    .name = "bundled",
    .source = CARBONDB_SRC_BUNDLED,
};

const struct carbon_provider_ops *const carbon_provider_table[] = {
    &carbon_provider_bundled,
    &carbon_provider_electricitymaps,
    &carbon_provider_uk,
    NULL,
};

const struct carbon_provider_ops *carbon_provider_find(const char *name)
{
    for (const struct carbon_provider_ops *const *p = carbon_provider_table; *p; p++)
        if (!strcmp((*p)->name, name)) return *p;
    return NULL;
}

bool carbon_provider_serves(const struct carbon_provider_conf *p, const char *zone)
{
    if (p->zones) {
        for (size_t i = 0; i < p->nzones; i++)
            if (!strcmp(p->zones[i], zone)) return true;
        return false;
    }
    if (!p->ops->zones) return true;
    for (const char *const *z = p->ops->zones; *z; z++)
        if (!strcmp(*z, zone)) return true;
    return false;
}

int carbon_hours_add(struct carbon_hours *h, int64_t hour, double g, uint8_t flags)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct carbondb_hour *a = realloc(h->a, cap * sizeof(*a));
        if (!a) return CASCA_ERR_NOMEM;
        h->a = a;
        h->cap = cap;
    }
    h->a[h->n++] = (struct carbondb_hour){.hour = hour, .g = g, .flags = flags};
    return CASCA_OK;
}

void carbon_hours_free(struct carbon_hours *h)
{
    free(h->a);
    memset(h, 0, sizeof(*h));
}

/* ---- time ---- */

void carbon_format_hour(int64_t hour, char *buf, size_t len)
{
    casca_rfc3339_format(buf, len, hour * 3600, 0);
}

bool carbon_parse_time(const char *s, int64_t *secs)
{
    int y, mo, d, h, mi, sec = 0, n = 0;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d%n", &y, &mo, &d, &h, &mi, &n) != 5) return false;
    const char *p = s + n;
    if (*p == ':') {
        int m2 = 0;
        if (sscanf(p, ":%2d%n", &sec, &m2) != 1) return false;
        p += m2;
        if (*p == '.')
            for (p++; *p >= '0' && *p <= '9'; p++)
                ;
    }
    if (*p == 'Z')
        p++;
    else if (!strcmp(p, "+00:00"))
        p += 6;
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return false;
    *secs = casca_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec;
    return true;
}

/* ---- HTTP ---- */

int carbon_http_get(const char *url, const char *const *headers, long timeout_ms, char **body,
                    long *status, char *why, size_t whylen)
{
    *body = NULL;
    *status = 0;
    if (casca_http_init() != CASCA_OK) {
        snprintf(why, whylen, "cannot start libcurl");
        return CASCA_ERR_INTERNAL;
    }
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(why, whylen, "out of memory");
        return CASCA_ERR_NOMEM;
    }
    struct curl_slist *hl = NULL;
    for (const char *const *h = headers; h && *h; h++) {
        struct curl_slist *next = curl_slist_append(hl, *h);
        if (!next) {
            curl_slist_free_all(hl);
            curl_easy_cleanup(c);
            snprintf(why, whylen, "out of memory");
            return CASCA_ERR_NOMEM;
        }
        hl = next;
    }
    curl_easy_setopt(c, CURLOPT_USERAGENT, "casca/" CASCA_VERSION);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
    struct casca_http_request req = {.url = url, .headers = hl, .timeout_ms = timeout_ms};
    struct casca_http_body b = {.max = BODY_MAX};
    char reason[160];
    int err = casca_http_request(c, &req, &b, status, reason, sizeof(reason));
    if (err == CASCA_ERR_UNAVAILABLE && !b.overflow)
        snprintf(why, whylen, "cannot reach the provider (%s)", reason);
    else if (err != CASCA_OK)
        snprintf(why, whylen, "%s", reason);
    else if (!b.p && !(b.p = calloc(1, 1)))
        err = CASCA_ERR_NOMEM;
    if (b.overflow) err = CASCA_ERR_INVALID; /* the provider's answer is wrong, not unreachable */
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    if (err) {
        free(b.p);
        return err;
    }
    *body = b.p;
    return CASCA_OK;
}

int carbon_http_status_err(const char *provider, long status, char *why, size_t whylen)
{
    if (status == 401 || status == 403) {
        snprintf(why, whylen, "%s refused the key (HTTP %ld): check the provider's token", provider,
                 status);
        return CASCA_ERR_UNAVAILABLE;
    }
    if (status == 429) {
        snprintf(why, whylen, "%s rate limit reached (HTTP 429): try again later", provider);
        return CASCA_ERR_UNAVAILABLE;
    }
    if (status >= 500) {
        snprintf(why, whylen, "%s is failing (HTTP %ld)", provider, status);
        return CASCA_ERR_UNAVAILABLE;
    }
    snprintf(why, whylen, "%s answered HTTP %ld", provider, status);
    return status == 404 || status == 400 ? CASCA_ERR_NOT_FOUND : CASCA_ERR_UNAVAILABLE;
}

