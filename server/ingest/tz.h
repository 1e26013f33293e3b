/* tz: time zones for timestamps that carry none: UTC, a fixed offset (+01:00) or an IANA name
 * (Europe/Vienna) read from the system's zoneinfo (TZif files), so local times convert with the
 * right daylight-saving offset without touching the process's TZ. Immutable once loaded; any
 * thread may use a zone. */
#ifndef CASCA_TZ_H
#define CASCA_TZ_H

#include <stddef.h>
#include <stdint.h>

struct tz;

/* "UTC", "Z", "+01:00", "-0530", "Europe/Vienna". NULL with a reason in err if unknown.
 * The caller frees the zone with tz_free. */
struct tz *tz_load(const char *name, char *err, size_t errlen);
void tz_free(struct tz *z); /* safe on NULL */

/* Seconds since the epoch of a wall-clock time in zone z (local_s: the wall-clock time counted
 * as if it were UTC, e.g. from timegm). An ambiguous time (the repeated hour in autumn) takes the
 * first, daylight-saving occurrence; a time in the skipped spring hour takes the offset before
 * the change. z NULL: UTC. */
int64_t tz_local_to_utc(const struct tz *z, int64_t local_s);

#endif
