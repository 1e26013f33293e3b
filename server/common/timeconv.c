#include "timeconv.h"

#include <stdio.h>

#define NS INT64_C(1000000000)

/* seconds and nanos with one sign (or zero), so that seconds * NS overflows only when the sum
 * does: the Timestamp form of a time before 1970 has negative seconds and positive nanos. */
static void same_sign(int64_t *seconds, int64_t *nanos)
{
    if (*seconds < 0 && *nanos > 0) {
        *seconds += 1;
        *nanos -= NS;
    } else if (*seconds > 0 && *nanos < 0) {
        *seconds -= 1;
        *nanos += NS;
    }
}

int64_t casca_ns_of(int64_t seconds, int32_t nanos32)
{
    int64_t nanos = nanos32;
    same_sign(&seconds, &nanos);
    if (seconds > INT64_MAX / NS) return INT64_MAX;
    if (seconds < INT64_MIN / NS) return INT64_MIN;
    int64_t s = seconds * NS;
    if (nanos > 0 && s > INT64_MAX - nanos) return INT64_MAX;
    if (nanos < 0 && s < INT64_MIN - nanos) return INT64_MIN;
    return s + nanos;
}

bool casca_ns_of_checked(int64_t seconds, int32_t nanos32, int64_t *ns)
{
    if (nanos32 < 0 || nanos32 >= NS) return false;
    int64_t nanos = nanos32;
    same_sign(&seconds, &nanos);
    if (seconds > INT64_MAX / NS || seconds < INT64_MIN / NS) return false;
    int64_t s = seconds * NS;
    if ((nanos > 0 && s > INT64_MAX - nanos) || (nanos < 0 && s < INT64_MIN - nanos)) return false;
    *ns = s + nanos;
    return true;
}

void casca_timestamp_parts(int64_t ns, int64_t *seconds, int32_t *nanos)
{
    int64_t s = ns / NS, r = ns % NS;
    if (r < 0) { /* floor, not truncation: nanos stays non-negative */
        s--;
        r += NS;
    }
    *seconds = s;
    *nanos = (int32_t)r;
}

void casca_duration_parts(int64_t ns, int64_t *seconds, int32_t *nanos)
{
    *seconds = ns / NS;
    *nanos = (int32_t)(ns % NS);
}

/* Howard Hinnant's algorithms (http://howardhinnant.github.io/date_algorithms.html): eras of
 * 400 years, years that start on 1 March so that the leap day ends the year. */
int64_t casca_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void casca_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d)
{
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    unsigned doe = (unsigned)(days - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

void casca_rfc3339_format(char *buf, size_t cap, int64_t seconds, int32_t nanos)
{
    int64_t days = seconds / 86400, sod = seconds % 86400;
    if (sod < 0) {
        days--;
        sod += 86400;
    }
    int64_t y;
    unsigned m, d;
    casca_civil_from_days(days, &y, &m, &d);
    int n = snprintf(buf, cap, "%04lld-%02u-%02uT%02d:%02d:%02d", (long long)y, m, d,
                     (int)(sod / 3600), (int)(sod / 60 % 60), (int)(sod % 60));
    size_t at = n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
    if (nanos > 0 && nanos % 1000000 == 0)
        snprintf(buf + at, cap - at, ".%03dZ", nanos / 1000000);
    else if (nanos > 0 && nanos % 1000 == 0)
        snprintf(buf + at, cap - at, ".%06dZ", nanos / 1000);
    else if (nanos > 0)
        snprintf(buf + at, cap - at, ".%09dZ", nanos);
    else
        snprintf(buf + at, cap - at, "Z");
}
