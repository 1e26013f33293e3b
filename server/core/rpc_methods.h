/* rpc_methods: the check of a service's method table (rpc.h's RPC_METHOD rows) against the
 * service's descriptors, which rpc_server_add_service runs on every row. Pure; any thread. */
#ifndef CASCA_RPC_METHODS_H
#define CASCA_RPC_METHODS_H

#include <stddef.h>

#include "google/protobuf/descriptor.pb-c.h"
#include "rpc.h"

/* NULL when row is method row->name of svc with its request and response types and, per the
 * file descriptors of set (which must describe svc), its streaming kind; otherwise why not,
 * written into buf ("method 'Foo' is not in casca.v1.AdminService", ...). */
const char *rpc_method_mismatch(const Google__Protobuf__FileDescriptorSet *set,
                                const ProtobufCServiceDescriptor *svc,
                                const struct rpc_method_def *row, char *buf, size_t len);

#endif
