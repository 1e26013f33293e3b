#include "reflection.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"

/* v1alpha's messages are field-for-field the same as v1's, so one set of C types serves both. */
typedef Grpc__Reflection__V1__ServerReflectionRequest Request;
typedef Grpc__Reflection__V1__ServerReflectionResponse Response;

struct file {
    const char *name;
    ProtobufCBinaryData packed; /* the FileDescriptorProto as sent */
    size_t *deps;               /* indexes into files */
    size_t ndeps;
};

struct symbol {
    char *name; /* fully qualified, no leading dot */
    size_t file;
};

struct reflection {
    Google__Protobuf__FileDescriptorSet *set;
    struct file *files;
    size_t nfiles;
    struct symbol *symbols;
    size_t nsymbols, cap;
    struct rpc_server *srv;
};

static int add_symbol(struct reflection *r, const char *scope, const char *name, size_t file)
{
    if (r->nsymbols == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 256;
        struct symbol *s = realloc(r->symbols, cap * sizeof(*s));
        if (!s)
            return -1;
        r->symbols = s;
        r->cap = cap;
    }
    size_t len = strlen(scope) + strlen(name) + 2;
    char *full = malloc(len);
    if (!full)
        return -1;
    snprintf(full, len, "%s%s%s", scope, *scope ? "." : "", name);
    r->symbols[r->nsymbols++] = (struct symbol){full, file};
    return 0;
}

static int add_messages(struct reflection *r, const char *scope, size_t n,
                        Google__Protobuf__DescriptorProto **msgs, size_t file)
{
    for (size_t i = 0; i < n; i++) {
        const Google__Protobuf__DescriptorProto *m = msgs[i];
        if (add_symbol(r, scope, m->name, file))
            return -1;
        const char *full = r->symbols[r->nsymbols - 1].name;
        for (size_t e = 0; e < m->n_enum_type; e++)
            if (add_symbol(r, full, m->enum_type[e]->name, file))
                return -1;
        if (add_messages(r, full, m->n_nested_type, m->nested_type, file))
            return -1;
    }
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct symbol *)a)->name, ((const struct symbol *)b)->name);
}

static long find_file(const struct reflection *r, const char *name)
{
    for (size_t i = 0; i < r->nfiles; i++)
        if (strcmp(r->files[i].name, name) == 0)
            return (long)i;
    return -1;
}

static long find_symbol(const struct reflection *r, const char *name)
{
    if (*name == '.')
        name++;
    struct symbol key = {(char *)name, 0};
    const struct symbol *s = bsearch(&key, r->symbols, r->nsymbols, sizeof(key), by_name);
    return s ? (long)s->file : -1;
}

static int index_set(struct reflection *r)
{
    r->nfiles = r->set->n_file;
    r->files = calloc(r->nfiles, sizeof(*r->files));
    if (!r->files)
        return -1;
    for (size_t i = 0; i < r->nfiles; i++) {
        const Google__Protobuf__FileDescriptorProto *f = r->set->file[i];
        struct file *out = &r->files[i];
        out->name = f->name;
        out->packed.len = protobuf_c_message_get_packed_size(&f->base);
        if (!(out->packed.data = malloc(out->packed.len ? out->packed.len : 1)))
            return -1;
        protobuf_c_message_pack(&f->base, out->packed.data);
        /* protoc writes dependencies before their dependents, so they are indexed already */
        if (!(out->deps = calloc(f->n_dependency + 1, sizeof(size_t))))
            return -1;
        for (size_t d = 0; d < f->n_dependency; d++) {
            long at = find_file(r, f->dependency[d]);
            if (at >= 0)
                out->deps[out->ndeps++] = (size_t)at;
        }
        const char *pkg = f->package ? f->package : "";
        if (add_messages(r, pkg, f->n_message_type, f->message_type, i))
            return -1;
        for (size_t e = 0; e < f->n_enum_type; e++)
            if (add_symbol(r, pkg, f->enum_type[e]->name, i))
                return -1;
        for (size_t s = 0; s < f->n_service; s++) {
            const Google__Protobuf__ServiceDescriptorProto *svc = f->service[s];
            if (add_symbol(r, pkg, svc->name, i))
                return -1;
            const char *full = r->symbols[r->nsymbols - 1].name;
            for (size_t m = 0; m < svc->n_method; m++)
                if (add_symbol(r, full, svc->method[m]->name, i))
                    return -1;
        }
    }
    qsort(r->symbols, r->nsymbols, sizeof(*r->symbols), by_name);
    return 0;
}

/* The file and everything it imports, each once, imports first. */
static void collect(const struct reflection *r, size_t file, bool *seen, ProtobufCBinaryData *out,
                    size_t *n)
{
    if (seen[file])
        return;
    seen[file] = true;
    for (size_t d = 0; d < r->files[file].ndeps; d++)
        collect(r, r->files[file].deps[d], seen, out, n);
    out[(*n)++] = r->files[file].packed;
}

static void answer(struct rpc_ctx *ctx, struct reflection *r, const Request *req)
{
    Response resp = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
    Grpc__Reflection__V1__FileDescriptorResponse files =
        GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT;
    Grpc__Reflection__V1__ListServiceResponse list = GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT;
    Grpc__Reflection__V1__ErrorResponse error = GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT;
    Grpc__Reflection__V1__ExtensionNumberResponse ext =
        GRPC__REFLECTION__V1__EXTENSION_NUMBER_RESPONSE__INIT;
    char why[300];
    resp.valid_host = req->host;
    resp.original_request = (Request *)req;

    const char *const *names;
    size_t nservices = rpc_server_services(r->srv, &names);
    Grpc__Reflection__V1__ServiceResponse svc_storage[nservices ? nservices : 1];
    Grpc__Reflection__V1__ServiceResponse *svc_ptrs[nservices ? nservices : 1];
    bool seen[r->nfiles ? r->nfiles : 1];
    ProtobufCBinaryData blobs[r->nfiles ? r->nfiles : 1];

    long file = -1;
    const char *missing = NULL;
    switch (req->message_request_case) {
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        for (size_t i = 0; i < nservices; i++) {
            grpc__reflection__v1__service_response__init(&svc_storage[i]);
            svc_storage[i].name = (char *)names[i];
            svc_ptrs[i] = &svc_storage[i];
        }
        list.n_service = nservices;
        list.service = svc_ptrs;
        resp.message_response_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
        resp.list_services_response = &list;
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
        if ((file = find_file(r, req->file_by_filename)) < 0)
            missing = "file";
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
        if ((file = find_symbol(r, req->file_containing_symbol)) < 0)
            missing = "symbol";
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
        if (find_symbol(r, req->all_extension_numbers_of_type) < 0) {
            missing = "type";
            break;
        }
        ext.base_type_name = req->all_extension_numbers_of_type; /* casca declares none */
        resp.message_response_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
        resp.all_extension_numbers_response = &ext;
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
        missing = "extension";
        break;
    default:
        error.error_code = 3; /* INVALID_ARGUMENT */
        error.error_message = "empty reflection request: set one of its message_request fields";
        resp.message_response_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
        resp.error_response = &error;
        break;
    }
    if (file >= 0) {
        memset(seen, 0, sizeof(seen));
        collect(r, (size_t)file, seen, blobs, &files.n_file_descriptor_proto);
        files.file_descriptor_proto = blobs;
        resp.message_response_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
        resp.file_descriptor_response = &files;
    } else if (missing) {
        snprintf(why, sizeof(why), "%s not found: list the services to see what is served", missing);
        error.error_code = 5; /* NOT_FOUND */
        error.error_message = why;
        resp.message_response_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
        resp.error_response = &error;
    }
    if (rpc_send(ctx, &resp.base) == CASCA_ERR_FULL)
        rpc_finish(ctx, CASCA_ERR_FULL, "reflection replies are not being read; slow down");
}

static void reflect(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    struct reflection *r = rpc_method_arg(ctx);
    if (!msg) { /* the client half-closed (or went away) */
        rpc_finish(ctx, CASCA_OK, NULL);
        return;
    }
    answer(ctx, r, (const Request *)msg);
}

/* Served as v1 and as v1alpha (the same messages): any caller, or none, like health. */
static const struct rpc_method_def reflection_methods[] = {
    RPC_METHOD("ServerReflectionInfo", grpc__reflection__v1__server_reflection_request,
               grpc__reflection__v1__server_reflection_response, RPC_BIDI, RPC_ROLES_ANY,
               RPC_PUBLIC, reflect),
};

int reflection_create(struct rpc_server *srv, const unsigned char *set, size_t len,
                      struct reflection **out, char *err, size_t errlen)
{
    struct reflection *r = *out = calloc(1, sizeof(*r));
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return CASCA_ERR_NOMEM;
    }
    r->srv = srv;
    r->set = google__protobuf__file_descriptor_set__unpack(NULL, len, set);
    int rc = CASCA_ERR_NOMEM;
    if (!r->set || index_set(r) != 0) {
        snprintf(err, errlen, "reflection: cannot index the embedded descriptor set");
    } else {
        const ProtobufCServiceDescriptor *v1 = &grpc__reflection__v1__server_reflection__descriptor;
        if (!(rc = rpc_server_add_service(srv, v1, NULL, reflection_methods, 1, r, err, errlen)))
            rc = rpc_server_add_service(srv, v1, "grpc.reflection.v1alpha.ServerReflection",
                                        reflection_methods, 1, r, err, errlen);
    }
    if (rc) {
        reflection_destroy(r);
        *out = NULL;
    }
    return rc;
}

void reflection_destroy(struct reflection *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nfiles; i++) {
        free(r->files[i].packed.data);
        free(r->files[i].deps);
    }
    free(r->files);
    for (size_t i = 0; i < r->nsymbols; i++)
        free(r->symbols[i].name);
    free(r->symbols);
    if (r->set)
        google__protobuf__file_descriptor_set__free_unpacked(r->set, NULL);
    free(r);
}
