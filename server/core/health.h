/* health: grpc.health.v1.Health (Check and Watch) for the whole server and each served service.
 * All services share the server's status: SERVING after start, NOT_SERVING when shutting down. */
#ifndef CASCA_HEALTH_H
#define CASCA_HEALTH_H

#include <stdbool.h>

#include "rpc.h"

struct health;

/* Registers the Health methods on srv (before rpc_server_start): CASCA_OK and *out, or a
 * casca_err with the reason in err. */
int health_create(struct rpc_server *srv, struct health **out, char *err, size_t errlen);
/* Sets the status and tells every open Watch. Any thread. */
void health_set_serving(struct health *h, bool serving);
/* After rpc_server_destroy (every watch is over by then). Safe on NULL. */
void health_destroy(struct health *h);

#endif
