/* api: the casca.v1 methods whose features have not landed yet. Each is registered from protobuf-c's
 * service descriptor and answers UNIMPLEMENTED with a message that says so, so clients generated
 * from the full API see every method from day one. A feature that lands removes its row here. */
#ifndef CASCA_API_H
#define CASCA_API_H

#include "rpc.h"

struct api;

/* Registers the pending methods on srv (before rpc_server_start). NULL on failure. */
struct api *api_create(struct rpc_server *srv);
void api_destroy(struct api *a); /* after rpc_server_destroy; safe on NULL */

#endif
