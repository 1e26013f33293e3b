#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "casca/v1/agent.pb-c.h"
#include "casca/v1/carbon.pb-c.h"
#include "casca/v1/control.pb-c.h"
#include "casca/v1/slo.pb-c.h"
#include "casca/v1/telemetry.pb-c.h"

/* Services not implemented yet, and the feature each waits for. */
static const struct {
    const ProtobufCServiceDescriptor *service;
    const char *feature;
} pending[] = {
    {&casca__v1__agent_service__descriptor, "decision-agent sessions"},
};

struct api {
    struct rpc_method *methods;
    char **strings;
    size_t n;
};

struct api *api_create(struct rpc_server *srv)
{
    struct api *a = calloc(1, sizeof(*a));
    size_t total = 0;
    for (size_t s = 0; s < sizeof(pending) / sizeof(pending[0]); s++)
        total += pending[s].service->n_methods;
    if (!a || !(a->methods = calloc(total, sizeof(*a->methods))) ||
        !(a->strings = calloc(total * 2, sizeof(char *)))) {
        api_destroy(a);
        return NULL;
    }
    for (size_t s = 0; s < sizeof(pending) / sizeof(pending[0]); s++) {
        const ProtobufCServiceDescriptor *svc = pending[s].service;
        for (unsigned m = 0; m < svc->n_methods; m++) {
            char *path = NULL, *why = NULL;
            if (asprintf(&path, "/%s/%s", svc->name, svc->methods[m].name) < 0 ||
                asprintf(&why,
                         "%s.%s is part of the casca v1 API but not implemented in this build "
                         "yet: %s has not landed",
                         svc->name, svc->methods[m].name, pending[s].feature) < 0) {
                api_destroy(a);
                return NULL;
            }
            a->strings[a->n * 2] = path;
            a->strings[a->n * 2 + 1] = why;
            a->methods[a->n++] = (struct rpc_method){
                .path = path,
                .request = svc->methods[m].input,
                .response = svc->methods[m].output,
                .kind = RPC_UNARY, /* never read: the call is answered on arrival */
                .roles = RPC_ROLES_ANY,
                .unavailable = why,
            };
        }
    }
    if (rpc_server_add_methods(srv, a->methods, a->n) != CASCA_OK) {
        api_destroy(a);
        return NULL;
    }
    return a;
}

void api_destroy(struct api *a)
{
    if (!a)
        return;
    for (size_t i = 0; a->strings && i < a->n * 2; i++)
        free(a->strings[i]);
    free(a->strings);
    free(a->methods);
    free(a);
}
