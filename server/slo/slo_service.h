/* slo_service: casca.v1.SloService on the SLO engine (slo_engine.h): ListSlos, GetSlo,
 * GetSloHistory and WatchSlos, for the viewer, agent and operator roles.
 *
 * Privacy: every reply (and every error message) is built from an SLO's public fields only: the
 * alias, description and unit when given, the objective, the window and aggregation unless the
 * SLO hides them, the kind, and the values. Series, tags, zones and where an SLO is declared never
 * leave the server; problems that involve them go to the operator's log.
 *
 * WatchSlos sends the current status of each watched SLO, then a status whenever an SLO is
 * re-evaluated and its value, has_value or fulfilment changed, or a reload added it or changed its
 * public description; at most one per SLO per min_interval, latest wins (a slow client never
 * queues more than one pending status per SLO). A reload that removes a watched SLO sends a last
 * SloStatus with removed = true and slo.id only; the watch stays open (with no ids, it also picks
 * up SLOs a reload adds). */
#ifndef CASCA_SLO_SERVICE_H
#define CASCA_SLO_SERVICE_H

#include <stdbool.h>

#include "rpc.h"
#include "tsdb.h"

struct config;
struct carbon;
struct slo_service;

/* Creates the engine with the SLOs of c and registers SloService on srv (before
 * rpc_server_start). db (and carbon, which may be NULL: carbon-footprint SLOs then never have a
 * value) must outlive the service. CASCA_OK and *out, or a casca_err with the reason in err.
 * Main thread. */
int slo_service_create(struct rpc_server *srv, struct config *c, struct tsdb *db,
                       struct carbon *carbon, struct slo_service **out, char *err, size_t errlen);
/* After a reload swapped in c. Any thread; one at a time. */
void slo_service_reload(struct slo_service *s, struct config *c);
/* After rpc_server_destroy, before db and carbon are closed. Safe on NULL. */
void slo_service_destroy(struct slo_service *s);

struct slo_engine *slo_service_engine(struct slo_service *s);

/* For the agent module: the SloStatus of SLO id exactly as GetSlo answers it (public fields
 * only), newly allocated: free it with casca__v1__slo_status__free_unpacked(*out, NULL). With
 * with_status false only (*out)->slo (the description) is filled. CASCA_ERR_NOT_FOUND for an
 * unknown id, CASCA_ERR_NOMEM. Any thread; a few tens of microseconds (LMDB reads). */
struct Casca__V1__SloStatus;
int slo_service_public_status(struct slo_service *s, const char *id, bool with_status,
                              struct Casca__V1__SloStatus **out);

#endif
