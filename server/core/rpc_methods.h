/* rpc_methods: the check of a service's method table (rpc.h's RPC_METHOD rows) against the
 * service's descriptors, which rpc_server_add_service runs on every row, and the nesting check
 * the call layer runs on every request before unpacking it. Pure; any thread. */
#ifndef CASCA_RPC_METHODS_H
#define CASCA_RPC_METHODS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "google/protobuf/descriptor.pb-c.h"
#include "rpc.h"

/* NULL when row is method row->name of svc with its request and response types and, per the
 * file descriptors of set (which must describe svc), its streaming kind; otherwise why not,
 * written into buf ("method 'Foo' is not in casca.v1.AdminService", ...). */
const char *rpc_method_mismatch(const Google__Protobuf__FileDescriptorSet *set,
                                const ProtobufCServiceDescriptor *svc,
                                const struct rpc_method_def *row, char *buf, size_t len);

/* Messages of a request may nest this deep (protobuf's own default limit). */
#define RPC_MAX_NESTING 100

/* Whether the encoded message data[0..len) of type desc nests messages more than limit deep
 * (the message itself is depth 1). protobuf-c's unpack and free recurse once per level with no
 * bound, so a recursive type (OTLP's AnyValue holds arrays of AnyValue) nested a few hundred
 * thousand deep in a 4 MiB request would overflow the thread's stack. Reads each field's key
 * and skips scalars; malformed data answers false (unpack then refuses it). */
bool rpc_nesting_exceeds(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                         unsigned limit);

#endif
