#include "health.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"

typedef Grpc__Health__V1__HealthCheckRequest CheckRequest;
typedef Grpc__Health__V1__HealthCheckResponse CheckResponse;

struct watcher {
    struct rpc_ctx *ctx;
    bool known; /* the service asked for is served */
    struct watcher *next;
};

struct health {
    struct rpc_server *srv;
    pthread_mutex_t lock; /* guards serving and the watcher list */
    bool serving;
    struct watcher *watchers;
};

static bool service_known(struct health *h, const char *name)
{
    if (!*name)
        return true; /* "" is the whole server */
    const char *const *names;
    size_t n = rpc_server_services(h->srv, &names);
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

static void status_of(const struct health *h, bool known, CheckResponse *out)
{
    grpc__health__v1__health_check_response__init(out);
    out->status = !known      ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN
                  : h->serving ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                               : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

static void check(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    struct health *h = rpc_method_arg(ctx);
    const CheckRequest *req = (const CheckRequest *)msg;
    if (!service_known(h, req->service)) {
        rpc_finish(ctx, CASCA_ERR_NOT_FOUND,
                   "unknown service '%s': ask for \"\" (the server) or a served service", req->service);
        return;
    }
    CheckResponse resp;
    pthread_mutex_lock(&h->lock);
    status_of(h, true, &resp);
    pthread_mutex_unlock(&h->lock);
    rpc_reply(ctx, &resp.base);
}

/* The watch ends when its call does: drop it from the list, then finish. */
static void watch_cancelled(struct rpc_ctx *ctx, void *arg)
{
    struct health *h = arg;
    pthread_mutex_lock(&h->lock);
    struct watcher **p = &h->watchers;
    while (*p && (*p)->ctx != ctx)
        p = &(*p)->next;
    struct watcher *w = *p;
    if (w)
        *p = w->next;
    pthread_mutex_unlock(&h->lock);
    if (w) {
        free(w);
        rpc_finish(ctx, CASCA_ERR_CANCELLED, "watch ended");
    }
}

static void watch(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    struct health *h = rpc_method_arg(ctx);
    const CheckRequest *req = (const CheckRequest *)msg;
    struct watcher *w = calloc(1, sizeof(*w));
    if (!w) {
        rpc_finish(ctx, CASCA_ERR_NOMEM, "out of memory");
        return;
    }
    w->ctx = ctx;
    w->known = service_known(h, req->service);
    CheckResponse resp;
    pthread_mutex_lock(&h->lock);
    status_of(h, w->known, &resp);
    rpc_send(ctx, &resp.base);
    w->next = h->watchers;
    h->watchers = w;
    pthread_mutex_unlock(&h->lock);
    rpc_on_cancel(ctx, watch_cancelled, h);
}

/* Probes carry no token by design: any caller, or none. */
static const struct rpc_method_def health_methods[] = {
    RPC_METHOD("Check", grpc__health__v1__health_check_request,
               grpc__health__v1__health_check_response, RPC_UNARY, RPC_ROLES_ANY, RPC_PUBLIC,
               check),
    RPC_METHOD("Watch", grpc__health__v1__health_check_request,
               grpc__health__v1__health_check_response, RPC_SERVER_STREAM, RPC_ROLES_ANY,
               RPC_PUBLIC, watch),
};

int health_create(struct rpc_server *srv, struct health **out, char *err, size_t errlen)
{
    struct health *h = *out = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return CASCA_ERR_NOMEM;
    }
    h->srv = srv;
    pthread_mutex_init(&h->lock, NULL);
    int rc = rpc_server_add_service(srv, &grpc__health__v1__health__descriptor, NULL,
                                    health_methods, RPC_NMETHODS(health_methods), h, err, errlen);
    if (rc) {
        health_destroy(h);
        *out = NULL;
    }
    return rc;
}

void health_set_serving(struct health *h, bool serving)
{
    pthread_mutex_lock(&h->lock);
    if (h->serving != serving) {
        h->serving = serving;
        for (struct watcher *w = h->watchers; w; w = w->next) {
            if (!w->known)
                continue;
            CheckResponse resp;
            status_of(h, true, &resp);
            rpc_send(w->ctx, &resp.base); /* a full queue drops it: the watch is far behind */
        }
    }
    pthread_mutex_unlock(&h->lock);
}

void health_destroy(struct health *h)
{
    if (!h)
        return;
    pthread_mutex_destroy(&h->lock);
    free(h);
}
