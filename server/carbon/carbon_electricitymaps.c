/* The Electricity Maps API v3 provider: lifecycle intensity per zone, hourly.
 *   GET /v3/carbon-intensity/latest?zone=Z {"zone","carbonIntensity","datetime","isEstimated",...}
 *   GET /v3/carbon-intensity/history?zone=Z       {"zone","history":[{...}]}   the last 24 hours
 *   GET /v3/carbon-intensity/past-range?zone=Z&start=..&end=..   {"zone","data":[{...}]}  <= 10
 * days GET /v3/carbon-intensity/forecast?zone=Z
 * {"zone","forecast":[{"carbonIntensity","datetime"}]} with the key in the "auth-token" header. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "carbon_providers.h"
#include "casca_err.h"

#define PAST_RANGE_HOURS 240 /* the API's longest hourly past-range */
#define MAX_REQUESTS 12      /* per fetch: 120 days of past-range at most */

/* Reads one array of points ({"carbonIntensity", "datetime", "isEstimated",
 * "emissionFactorType"}) into out, keeping the hours in [from, to). */
static int read_points(const json_t *arr, int64_t from, int64_t to, uint8_t extra,
                       struct carbon_hours *out, char *why, size_t whylen)
{
    if (!json_is_array(arr)) {
        snprintf(why, whylen, "electricitymaps sent an answer without its list of points");
        return CASCA_ERR_INVALID;
    }
    size_t i;
    const json_t *pt;
    json_array_foreach(arr, i, pt)
    {
        const json_t *ci = json_object_get(pt, "carbonIntensity");
        int64_t secs;
        if (!json_is_number(ci)) continue; /* null: the provider has no figure for that hour */
        if (!carbon_parse_time(json_string_value(json_object_get(pt, "datetime")), &secs)) {
            snprintf(why, whylen, "electricitymaps sent a point without a readable datetime");
            return CASCA_ERR_INVALID;
        }
        double g = json_number_value(ci);
        if (g < 0 || secs < 0) {
            snprintf(why, whylen, "electricitymaps sent a negative intensity or time");
            return CASCA_ERR_INVALID;
        }
        int64_t hour = secs / 3600;
        if (hour < from || hour >= to) continue;
        uint8_t flags = extra;
        if (json_is_true(json_object_get(pt, "isEstimated"))) flags |= CARBONDB_ESTIMATED;
        const char *type = json_string_value(json_object_get(pt, "emissionFactorType"));
        if (type && !strcmp(type, "direct")) flags |= CARBONDB_DIRECT;
        if (carbon_hours_add(out, hour, g, flags)) return CASCA_ERR_NOMEM;
    }
    return CASCA_OK;
}

/* One GET of path (with its query) and the points under key ("" = the object itself). */
static int get_points(const struct carbon_provider_conf *p, const char *path, const char *key,
                      int64_t from, int64_t to, uint8_t extra, long timeout_ms,
                      struct carbon_hours *out, char *why, size_t whylen)
{
    char *url = NULL, *hdr = NULL, *body = NULL;
    long status;
    if (asprintf(&url, "%s%s", p->url, path) < 0) return CASCA_ERR_NOMEM;
    if (asprintf(&hdr, "auth-token: %s", p->token ? p->token : "") < 0) {
        free(url);
        return CASCA_ERR_NOMEM;
    }
    const char *headers[] = {hdr, "Accept: application/json", NULL};
    int rc = carbon_http_get(url, headers, timeout_ms, &body, &status, why, whylen);
    free(url);
    free(hdr);
    if (rc) return rc;
    if (status < 200 || status > 299) {
        free(body);
        return carbon_http_status_err("electricitymaps", status, why, whylen);
    }
    json_error_t jerr;
    json_t *doc = json_loads(body, 0, &jerr);
    free(body);
    if (!json_is_object(doc)) {
        json_decref(doc);
        snprintf(why, whylen,
                 "electricitymaps sent an answer casca cannot read (not a JSON "
                 "object)");
        return CASCA_ERR_INVALID;
    }
    if (!*key) {
        json_t *arr = json_array();
        json_array_append(arr, doc);
        rc = read_points(arr, from, to, extra, out, why, whylen);
        json_decref(arr);
    } else {
        rc = read_points(json_object_get(doc, key), from, to, extra, out, why, whylen);
    }
    json_decref(doc);
    return rc;
}

static int em_fetch(const struct carbon_provider_conf *p, const char *zone, int64_t from,
                    int64_t to, int64_t now_h, long timeout_ms, struct carbon_hours *out, char *why,
                    size_t whylen)
{
    char path[256];
    if (from == now_h && to == now_h + 1) {
        snprintf(path, sizeof(path), "/v3/carbon-intensity/latest?zone=%s", zone);
        return get_points(p, path, "", from, to, 0, timeout_ms, out, why, whylen);
    }
    int rc = CASCA_OK;
    int64_t past_end = to < now_h + 1 ? to : now_h + 1;
    if (from < past_end) {
        if (from >= now_h - 23) {
            snprintf(path, sizeof(path), "/v3/carbon-intensity/history?zone=%s", zone);
            rc = get_points(p, path, "history", from, past_end, 0, timeout_ms, out, why, whylen);
        } else {
            int requests = 0;
            for (int64_t a = from; a < past_end && !rc; a += PAST_RANGE_HOURS) {
                if (++requests > MAX_REQUESTS) {
                    snprintf(why, whylen, "electricitymaps: range too long for one query");
                    return CASCA_ERR_INVALID;
                }
                int64_t b = a + PAST_RANGE_HOURS < past_end ? a + PAST_RANGE_HOURS : past_end;
                char s[32], e[32];
                carbon_format_hour(a, s, sizeof(s));
                carbon_format_hour(b, e, sizeof(e));
                snprintf(path, sizeof(path),
                         "/v3/carbon-intensity/past-range?zone=%s&start=%s&end=%s", zone, s, e);
                rc = get_points(p, path, "data", a, b, 0, timeout_ms, out, why, whylen);
            }
        }
    }
    if (!rc && to > now_h + 1) {
        snprintf(path, sizeof(path), "/v3/carbon-intensity/forecast?zone=%s", zone);
        int64_t a = from > now_h + 1 ? from : now_h + 1;
        rc = get_points(p, path, "forecast", a, to, CARBONDB_FORECAST | CARBONDB_ESTIMATED,
                        timeout_ms, out, why, whylen);
    }
    return rc;
}

const struct carbon_provider_ops carbon_provider_electricitymaps = {
    .name = "electricitymaps",
    .source = CARBONDB_SRC_ELECTRICITYMAPS,
    .default_url = "https://api.electricitymap.org",
    .token_env = "ELECTRICITYMAPS_TOKEN",
    .zones = NULL,
    .past_days = 0,
    .future_hours = 72,
    .fetch = em_fetch,
};
