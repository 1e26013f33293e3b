/* reflection: grpc.reflection.v1 and v1alpha ServerReflection, answered from the FileDescriptorSet
 * embedded at build time, so grpcurl list / describe / invoke work with no proto files at hand. */
#ifndef CASCA_REFLECTION_H
#define CASCA_REFLECTION_H

#include <stddef.h>

#include "rpc.h"

struct reflection;

/* Indexes the serialized FileDescriptorSet set[0..len) and registers both reflection services on
 * srv (before rpc_server_start): CASCA_OK and *out, or a casca_err with the reason in err (the
 * set does not parse, a registration failed). The set must outlive the server. */
int reflection_create(struct rpc_server *srv, const unsigned char *set, size_t len,
                      struct reflection **out, char *err, size_t errlen);
/* After rpc_server_destroy. Safe on NULL. */
void reflection_destroy(struct reflection *r);

#endif
