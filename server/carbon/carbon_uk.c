/* The UK National Grid ESO carbon-intensity API provider: zone GB, half-hourly national figures
 * (direct emissions), averaged into hours. No key.
 *   GET /intensity {"data":[{"from","to","intensity":{"forecast","actual","index"}}]} GET
 * /intensity/{from}/{to}    same shape, at most 14 days; from/to as 2018-01-20T12:00Z */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "carbon_providers.h"
#include "casca_err.h"

#define RANGE_HOURS (14 * 24)
#define MAX_REQUESTS 9 /* per fetch: about four months */

static const char *const uk_zones[] = {"GB", NULL};

struct hour_acc {
    double sum;
    int n;
    bool estimated;
};

static int read_data(const char *body, int64_t from, int64_t to, int64_t now_h,
                     struct carbon_hours *out, char *why, size_t whylen)
{
    json_error_t jerr;
    json_t *doc = json_loads(body, 0, &jerr);
    const json_t *data = json_object_get(doc, "data");
    if (!json_is_array(data)) {
        json_decref(doc);
        snprintf(why, whylen, "uk sent an answer casca cannot read (no JSON \"data\" list)");
        return CASCA_ERR_INVALID;
    }
    size_t span = (size_t)(to - from);
    struct hour_acc *acc = calloc(span ? span : 1, sizeof(*acc));
    if (!acc) {
        json_decref(doc);
        return CASCA_ERR_NOMEM;
    }
    int rc = CASCA_OK;
    size_t i;
    const json_t *pt;
    json_array_foreach(data, i, pt)
    {
        int64_t secs;
        if (!carbon_parse_time(json_string_value(json_object_get(pt, "from")), &secs)) {
            snprintf(why, whylen, "uk sent a period without a readable \"from\" time");
            rc = CASCA_ERR_INVALID;
            break;
        }
        const json_t *in = json_object_get(pt, "intensity");
        const json_t *actual = json_object_get(in, "actual");
        const json_t *forecast = json_object_get(in, "forecast");
        bool estimated = !json_is_number(actual);
        const json_t *v = estimated ? forecast : actual;
        if (!json_is_number(v)) continue;
        double g = json_number_value(v);
        if (g < 0 || secs < 0) {
            snprintf(why, whylen, "uk sent a negative intensity or time");
            rc = CASCA_ERR_INVALID;
            break;
        }
        int64_t hour = secs / 3600;
        if (hour < from || hour >= to) continue;
        struct hour_acc *a = &acc[hour - from];
        a->sum += g;
        a->n++;
        a->estimated |= estimated;
    }
    for (size_t h = 0; h < span && !rc; h++) {
        if (!acc[h].n) continue;
        int64_t hour = from + (int64_t)h;
        uint8_t flags = CARBONDB_DIRECT | (acc[h].estimated ? CARBONDB_ESTIMATED : 0);
        if (hour > now_h) flags |= CARBONDB_FORECAST | CARBONDB_ESTIMATED;
        rc = carbon_hours_add(out, hour, acc[h].sum / acc[h].n, flags);
    }
    free(acc);
    json_decref(doc);
    return rc;
}

static int get(const struct carbon_provider_conf *p, const char *path, int64_t from, int64_t to,
               int64_t now_h, long timeout_ms, struct carbon_hours *out, char *why, size_t whylen)
{
    char *url = NULL, *body = NULL;
    long status;
    if (asprintf(&url, "%s%s", p->url, path) < 0) return CASCA_ERR_NOMEM;
    const char *headers[] = {"Accept: application/json", NULL};
    int rc = carbon_http_get(url, headers, timeout_ms, &body, &status, why, whylen);
    free(url);
    if (rc) return rc;
    if (status < 200 || status > 299)
        rc = carbon_http_status_err("uk", status, why, whylen);
    else
        rc = read_data(body, from, to, now_h, out, why, whylen);
    free(body);
    return rc;
}

static int uk_fetch(const struct carbon_provider_conf *p, const char *zone, int64_t from,
                    int64_t to, int64_t now_h, long timeout_ms, struct carbon_hours *out, char *why,
                    size_t whylen)
{
    if (from == now_h && to == now_h + 1)
        return get(p, "/intensity", from, to, now_h, timeout_ms, out, why, whylen);
    int rc = CASCA_OK, requests = 0;
    for (int64_t a = from; a < to && !rc; a += RANGE_HOURS) {
        if (++requests > MAX_REQUESTS) {
            snprintf(why, whylen, "uk: range too long for one query");
            return CASCA_ERR_INVALID;
        }
        int64_t b = a + RANGE_HOURS < to ? a + RANGE_HOURS : to;
        char s[32], e[32], path[128];
        carbon_format_hour(a, s, sizeof(s));
        carbon_format_hour(b, e, sizeof(e));
        /* the API takes 2018-01-20T12:00Z: drop the seconds */
        memmove(s + 16, s + 19, strlen(s + 19) + 1);
        memmove(e + 16, e + 19, strlen(e + 19) + 1);
        snprintf(path, sizeof(path), "/intensity/%s/%s", s, e);
        rc = get(p, path, a, b, now_h, timeout_ms, out, why, whylen);
    }
    return rc;
}

const struct carbon_provider_ops carbon_provider_uk = {
    .name = "uk",
    .source = CARBONDB_SRC_UK,
    .default_url = "https://api.carbonintensity.org.uk",
    .token_env = NULL,
    .zones = uk_zones,
    .past_days = 0,
    .future_hours = 48,
    .fetch = uk_fetch,
};
