#include "tz.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ZONEINFO "/usr/share/zoneinfo/"
#define TZIF_MAX (1u << 20)

struct tz {
    size_t n;       /* transitions */
    int64_t *at;    /* transition times, UTC seconds, increasing */
    int32_t *off;   /* UTC offset in force from at[i] on */
    int32_t before; /* offset before the first transition (or the fixed offset when n == 0) */
};

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

/* RFC 8536: header, v1 data (32-bit times); for version 2+ a second header and 64-bit data. */
static struct tz *parse_tzif(const unsigned char *d, size_t len)
{
    if (len < 44 || memcmp(d, "TZif", 4)) return NULL;
    int v2 = d[4] >= '2';
    size_t tsize = 4;
    for (int pass = 0; pass < 2; pass++) {
        if (len < 44) return NULL;
        uint32_t isut = be32(d + 20), isstd = be32(d + 24), leap = be32(d + 28);
        uint32_t timecnt = be32(d + 32), typecnt = be32(d + 36), charcnt = be32(d + 40);
        size_t body =
            timecnt * tsize + timecnt + typecnt * 6 + charcnt + leap * (tsize + 4) + isstd + isut;
        if (typecnt == 0 || typecnt > 256 || timecnt > 100000 || 44 + body > len) return NULL;
        if (v2 && pass == 0) { /* skip the v1 block */
            d += 44 + body;
            len -= 44 + body;
            tsize = 8;
            continue;
        }
        const unsigned char *times = d + 44, *idx = times + timecnt * tsize, *types = idx + timecnt;
        struct tz *z = calloc(1, sizeof(*z));
        if (!z || !(z->at = calloc(timecnt + 1, sizeof(int64_t))) ||
            !(z->off = calloc(timecnt + 1, sizeof(int32_t)))) {
            tz_free(z);
            return NULL;
        }
        z->n = timecnt;
        for (uint32_t i = 0; i < timecnt; i++) {
            z->at[i] = tsize == 8 ? be64(times + 8 * i) : (int32_t)be32(times + 4 * i);
            unsigned t = idx[i] < typecnt ? idx[i] : 0;
            z->off[i] = (int32_t)be32(types + 6 * t);
        }
        /* before the first transition: the first standard-time type (RFC 8536 3.2) */
        z->before = (int32_t)be32(types);
        return z;
    }
    return NULL;
}

static struct tz *fixed(int32_t off)
{
    struct tz *z = calloc(1, sizeof(*z));
    if (z) z->before = off;
    return z;
}

struct tz *tz_load(const char *name, char *err, size_t errlen)
{
    if (!strcmp(name, "UTC") || !strcmp(name, "Z") || !strcmp(name, "GMT")) return fixed(0);
    if (name[0] == '+' || name[0] == '-') {
        int h = 0, m = 0;
        size_t n = strlen(name);
        if ((n == 6 && isdigit((unsigned char)name[1]) && isdigit((unsigned char)name[2]) &&
             name[3] == ':' && sscanf(name + 1, "%2d:%2d", &h, &m) == 2) ||
            (n == 5 && strspn(name + 1, "0123456789") == 4 &&
             sscanf(name + 1, "%2d%2d", &h, &m) == 2) ||
            (n == 3 && strspn(name + 1, "0123456789") == 2 && sscanf(name + 1, "%2d", &h) == 1)) {
            if (h <= 14 && m < 60) return fixed((name[0] == '-' ? -1 : 1) * (h * 3600 + m * 60));
        }
        snprintf(err, errlen, "timezone '%s': write a fixed offset as +HH:MM", name);
        return NULL;
    }
    if (!*name || name[0] == '/' || strstr(name, "..") ||
        strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "abcdefghijklmnopqrstuvwxyz0123456789/_+-") != strlen(name)) {
        snprintf(err, errlen,
                 "timezone '%s' is not a zone name such as UTC, +01:00 or "
                 "Europe/Vienna",
                 name);
        return NULL;
    }
    char path[512];
    snprintf(path, sizeof(path), ZONEINFO "%s", name);
    FILE *f = fopen(path, "rb");
    unsigned char *buf = f ? malloc(TZIF_MAX) : NULL;
    size_t len = buf ? fread(buf, 1, TZIF_MAX, f) : 0;
    if (f) fclose(f);
    struct tz *z = buf ? parse_tzif(buf, len) : NULL;
    free(buf);
    if (!z)
        snprintf(err, errlen, "timezone '%s' is unknown (no valid %s%s: is tzdata installed?)",
                 name, ZONEINFO, name);
    return z;
}

void tz_free(struct tz *z)
{
    if (!z) return;
    free(z->at);
    free(z->off);
    free(z);
}

static int32_t offset_at(const struct tz *z, int64_t utc)
{
    if (!z->n || utc < z->at[0]) return z->before;
    size_t lo = 0, hi = z->n; /* the last transition at or before utc */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (z->at[mid] <= utc)
            lo = mid;
        else
            hi = mid;
    }
    return z->off[lo];
}

int64_t tz_local_to_utc(const struct tz *z, int64_t local_s)
{
    if (!z) return local_s;
    /* Try each offset that could apply around this time, and take the first that is consistent
     * (the earlier, larger offset first, so the repeated hour resolves to daylight time). */
    int32_t a = offset_at(z, local_s - 86400), b = offset_at(z, local_s + 86400);
    int32_t first = a > b ? a : b, second = a > b ? b : a;
    if (offset_at(z, local_s - first) == first) return local_s - first;
    if (offset_at(z, local_s - second) == second) return local_s - second;
    return local_s - a; /* in a gap: the offset before the change */
}
