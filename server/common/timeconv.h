/* timeconv: time as int64 ns since the epoch <-> the (seconds, nanos) pairs of
 * google.protobuf.Timestamp and Duration, and the proleptic Gregorian calendar (civil dates) in
 * UTC. It takes and gives plain integers so that it needs no protobuf-c: a caller passes
 * t->seconds and t->nanos. Pure functions, thread-safe. */
#ifndef CASCA_TIMECONV_H
#define CASCA_TIMECONV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* seconds + nanos as ns, saturating at INT64_MIN / INT64_MAX (a time past 2262 reads as "no
 * end"), so that no caller's input can overflow. */
int64_t casca_ns_of(int64_t seconds, int32_t nanos);

/* seconds + nanos as ns into *ns; false (and *ns untouched) when nanos is outside
 * [0, 999999999] or the sum does not fit in an int64. Range rules of the caller come on top. */
bool casca_ns_of_checked(int64_t seconds, int32_t nanos, int64_t *ns);

/* ns as a Timestamp's seconds and nanos: nanos is always in [0, 999999999], so a time before
 * the epoch has negative seconds and positive nanos, as the Timestamp contract asks. */
void casca_timestamp_parts(int64_t ns, int64_t *seconds, int32_t *nanos);

/* ns as a Duration's seconds and nanos: both carry the sign of ns, as the Duration contract
 * asks. */
void casca_duration_parts(int64_t ns, int64_t *seconds, int32_t *nanos);

/* Days since 1970-01-01 of the civil date y-m-d (m 1..12, d 1..31; not checked). */
int64_t casca_days_from_civil(int64_t y, unsigned m, unsigned d);

/* The civil date of days since 1970-01-01; the inverse of casca_days_from_civil. */
void casca_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);

/* seconds + nanos as RFC 3339 in UTC, "2026-01-05T10:00:00Z", with 3, 6 or 9 fraction digits
 * when nanos needs them ("...:00.250Z"). Always terminates buf (cap > 0); 40 bytes hold any. */
void casca_rfc3339_format(char *buf, size_t cap, int64_t seconds, int32_t nanos);

#endif
