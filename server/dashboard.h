/* dashboard: the page at / on the HTTP listener, and what feeds it. One state, as JSON, holds
 * what an operator deciding whether to trust an agent looks at: each SLO's value against its
 * objective with a sparkline (the last 10 minutes, a point every 10 s) and its compliance; each
 * setting's value and its last changes from the audit log (who, when, old -> new, outcome); the
 * default zone's grid intensity for the next 24 hours with the best 3-hour window; and the open
 * agent sessions with their mode and last action. GET /api/state answers it once; GET /events
 * (server-sent events) pushes it whenever it changes, checked every 250 ms, and again every 15 s
 * as a heartbeat; a reload that removes a page's token (or its role) closes its stream. The page (server/web/, compiled in) draws it; it needs nothing from the
 * internet.
 *
 * Privacy: SLOs and settings by public id, sessions by agent name, changes by caller name; no
 * series, tag, URL or hook appears. */
#ifndef CASCA_DASHBOARD_H
#define CASCA_DASHBOARD_H

#include <stdatomic.h>
#include <stddef.h>

#include "http_server.h"

struct daemon;
struct dashboard;

#define DASHBOARD_MAX_STREAMS 32 /* open /events at once; one more is answered 503 */

/* Starts the feed's thread (idle while no page is open). NULL on allocation failure. Main
 * thread, after the services it reads. */
struct dashboard *dashboard_create(struct daemon *d);
/* Closes every open event stream and stops the thread. After http_server_destroy. Safe on NULL. */
void dashboard_destroy(struct dashboard *db);

/* The state as JSON (malloc'ed), or NULL without memory. Blocks briefly (LMDB reads). */
char *dashboard_state_json(struct dashboard *db);

/* Routes (arg: the dashboard): GET / and the page's files; GET /api/state; GET /events. */
void dashboard_file(void *arg, const struct http_request *req, struct http_response *res);
void dashboard_state(void *arg, const struct http_request *req, struct http_response *res);
void dashboard_events(void *arg, const struct http_request *req, struct http_stream *s);
/* The counter of open /events streams, for the route's limit. */
atomic_uint *dashboard_stream_count(struct dashboard *db);

#endif
