#include "carbon_providers.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "casca_err.h"

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

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void carbon_format_hour(int64_t hour, char *buf, size_t len)
{
    time_t t = (time_t)(hour * 3600);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
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
    *secs = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec;
    return true;
}

/* ---- HTTP ---- */

struct body {
    char *p;
    size_t n;
    bool too_big;
};

static size_t on_data(char *data, size_t size, size_t nmemb, void *arg)
{
    struct body *b = arg;
    size_t len = size * nmemb;
    if (b->n + len > BODY_MAX) {
        b->too_big = true;
        return 0;
    }
    char *p = realloc(b->p, b->n + len + 1);
    if (!p) return 0;
    memcpy(p + b->n, data, len);
    b->p = p;
    b->n += len;
    p[b->n] = 0;
    return len;
}

int carbon_http_get(const char *url, const char *const *headers, long timeout_ms, char **body,
                    long *status, char *why, size_t whylen)
{
    *body = NULL;
    *status = 0;
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
    struct body b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "casca/" CASCA_VERSION);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    CURLcode rc = curl_easy_perform(c);
    int err = CASCA_OK;
    if (rc == CURLE_OPERATION_TIMEDOUT) {
        snprintf(why, whylen, "no answer within %ld ms", timeout_ms);
        err = CASCA_ERR_TIMEOUT;
    } else if (rc == CURLE_WRITE_ERROR && b.too_big) {
        snprintf(why, whylen, "answer larger than %u MiB", BODY_MAX >> 20);
        err = CASCA_ERR_INVALID;
    } else if (rc != CURLE_OK) {
        snprintf(why, whylen, "cannot reach the provider (%s)", curl_easy_strerror(rc));
        err = CASCA_ERR_UNAVAILABLE;
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
        if (!b.p && !(b.p = calloc(1, 1))) err = CASCA_ERR_NOMEM;
    }
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

void carbon_providers_global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

void carbon_providers_global_cleanup(void)
{
    curl_global_cleanup();
}
