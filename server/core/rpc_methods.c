/* rpc_methods: RPC_METHOD rows against their service's descriptors (see rpc_methods.h). */
#include "rpc_methods.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static const char *const kind_names[] = {
    [RPC_UNARY] = "unary", [RPC_SERVER_STREAM] = "server streaming",
    [RPC_CLIENT_STREAM] = "client streaming", [RPC_BIDI] = "bidirectional streaming"};

/* The method's declaration in set (full service name "casca.v1.AdminService"), or NULL. */
static const Google__Protobuf__MethodDescriptorProto *
declared(const Google__Protobuf__FileDescriptorSet *set, const char *service, const char *method)
{
    for (size_t i = 0; set && i < set->n_file; i++) {
        const Google__Protobuf__FileDescriptorProto *f = set->file[i];
        size_t pl = f->package ? strlen(f->package) : 0;
        if (pl && (strncmp(service, f->package, pl) || service[pl] != '.'))
            continue;
        const char *short_name = service + (pl ? pl + 1 : 0);
        for (size_t j = 0; j < f->n_service; j++) {
            if (strcmp(f->service[j]->name, short_name))
                continue;
            for (size_t k = 0; k < f->service[j]->n_method; k++)
                if (!strcmp(f->service[j]->method[k]->name, method))
                    return f->service[j]->method[k];
        }
    }
    return NULL;
}

const char *rpc_method_mismatch(const Google__Protobuf__FileDescriptorSet *set,
                                const ProtobufCServiceDescriptor *svc,
                                const struct rpc_method_def *row, char *buf, size_t len)
{
    const ProtobufCMethodDescriptor *m = NULL;
    for (unsigned i = 0; i < svc->n_methods && !m; i++)
        if (!strcmp(svc->methods[i].name, row->name))
            m = &svc->methods[i];
    if (!m) {
        snprintf(buf, len, "method '%s' is not in %s", row->name, svc->name);
        return buf;
    }
    if (m->input != row->request || m->output != row->response) {
        bool in = m->input != row->request;
        snprintf(buf, len, "%s.%s takes %s and returns %s, not %s", svc->name, row->name,
                 m->input->name, m->output->name,
                 in ? row->request->name : row->response->name);
        return buf;
    }
    const Google__Protobuf__MethodDescriptorProto *d = declared(set, svc->name, row->name);
    if (!d) {
        snprintf(buf, len, "%s.%s is not in the descriptor set (is its .proto compiled in?)",
                 svc->name, row->name);
        return buf;
    }
    enum rpc_kind kind = d->client_streaming ? (d->server_streaming ? RPC_BIDI : RPC_CLIENT_STREAM)
                                             : (d->server_streaming ? RPC_SERVER_STREAM : RPC_UNARY);
    if ((unsigned)row->kind > RPC_BIDI || row->kind != kind) {
        snprintf(buf, len, "%s.%s is %s, not %s", svc->name, row->name, kind_names[kind],
                 (unsigned)row->kind <= RPC_BIDI ? kind_names[row->kind] : "a kind");
        return buf;
    }
    return NULL;
}

/* ---- nesting ---- */

static bool varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false;
}

bool rpc_nesting_exceeds(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                         unsigned limit)
{
    if (limit == 0) return true;
    const uint8_t *p = data, *end = data + len;
    while (p < end) {
        uint64_t key, n;
        if (!varint(&p, end, &key)) return false;
        switch (key & 7) {
        case 0: /* varint */
            if (!varint(&p, end, &n)) return false;
            break;
        case 1: /* 64-bit */
            if (end - p < 8) return false;
            p += 8;
            break;
        case 5: /* 32-bit */
            if (end - p < 4) return false;
            p += 4;
            break;
        case 2: { /* length-delimited: a message is looked into, strings and packed arrays not */
            if (!varint(&p, end, &n) || n > (uint64_t)(end - p)) return false;
            const ProtobufCFieldDescriptor *f =
                key >> 3 <= UINT32_MAX
                    ? protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3))
                    : NULL;
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
                rpc_nesting_exceeds(f->descriptor, p, (size_t)n, limit - 1))
                return true;
            p += n;
            break;
        }
        default: /* groups, or not protobuf at all */
            return false;
        }
    }
    return false;
}
