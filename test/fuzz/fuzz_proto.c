/* Fuzzes protobuf decoding of every request message cascad serves: the first byte picks the
 * request type (the input of a method of one of the services), the rest is the encoded message.
 * A message that decodes is encoded again and decoded once more, as a round trip (which may
 * fail: protobuf-c keeps unknown fields as read, even a non-canonical field 0, and encodes them
 * back as they came). */
#include <stdlib.h>

#include "casca/v1/admin.pb-c.h"
#include "casca/v1/agent.pb-c.h"
#include "casca/v1/carbon.pb-c.h"
#include "casca/v1/control.pb-c.h"
#include "casca/v1/slo.pb-c.h"
#include "casca/v1/telemetry.pb-c.h"
#include "fuzz_util.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"

static const ProtobufCServiceDescriptor *const services[] = {
    &casca__v1__admin_service__descriptor,   &casca__v1__agent_service__descriptor,
    &casca__v1__carbon_service__descriptor,  &casca__v1__service_control__descriptor,
    &casca__v1__slo_service__descriptor,     &casca__v1__telemetry_service__descriptor,
    &grpc__health__v1__health__descriptor,   &grpc__reflection__v1__server_reflection__descriptor,
};

static const ProtobufCMessageDescriptor *requests[256];
static size_t nrequests;

static void collect(void)
{
    for (size_t s = 0; s < sizeof(services) / sizeof(services[0]); s++)
        for (unsigned m = 0; m < services[s]->n_methods; m++) {
            const ProtobufCMessageDescriptor *in = services[s]->methods[m].input;
            size_t i = 0;
            while (i < nrequests && requests[i] != in)
                i++;
            if (i == nrequests && nrequests < sizeof(requests) / sizeof(requests[0]))
                requests[nrequests++] = in;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!nrequests)
        collect();
    if (size < 1)
        return 0;
    const ProtobufCMessageDescriptor *d = requests[data[0] % nrequests];
    ProtobufCMessage *msg = protobuf_c_message_unpack(d, NULL, size - 1, data + 1);
    if (!msg)
        return 0;
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf && protobuf_c_message_pack(msg, buf) == len) {
        ProtobufCMessage *again = protobuf_c_message_unpack(d, NULL, len, buf);
        if (again)
            protobuf_c_message_free_unpacked(again, NULL);
    }
    free(buf);
    protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
}
