/* The protobuf interpreter: a message is casca's own casca.v1.PublishRequest (what libcasca's
 * casca_report_points sends): points with series, tags, value and time; an unset time is the time
 * of receipt. The hook's tags ($TOPIC or constants) are added to every point, replacing a point's
 * tag of the same key. Decoding allocates from the batch's arena, so a message costs no frees. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "casca/v1/telemetry.pb-c.h"
#include "casca_err.h"
#include "hooks.h"
#include "timeconv.h"

#define MAX_SECONDS 9200000000ll /* keeps seconds * 1e9 inside int64 */

static void *arena_alloc(void *data, size_t size)
{
    return hook_batch_alloc(data, size);
}

static void arena_free(void *data, void *p)
{
    (void)data; /* the arena is reset as a whole */
    (void)p;
}

static int point_tags(const struct hook_config *h, const char *topic, const Casca__V1__Point *p,
                      struct hook_batch *out, struct tsdb_point *pt)
{
    size_t n = p->n_tags;
    struct tsdb_tag *tags = hook_batch_alloc(out, (p->n_tags + h->ntags) * sizeof(*tags) + 1);
    if (!tags) return CASCA_ERR_NOMEM;
    for (size_t i = 0; i < p->n_tags; i++)
        tags[i] = (struct tsdb_tag){p->tags[i]->key, p->tags[i]->value};
    for (size_t i = 0; i < h->ntags; i++) {
        const char *value = h->tags[i].f.kind == HOOK_FIELD_TOPIC ? topic : h->tags[i].f.text;
        size_t k = 0;
        while (k < n && strcmp(tags[k].key, h->tags[i].key))
            k++;
        tags[k] = (struct tsdb_tag){h->tags[i].key, value};
        if (k == n) n++;
    }
    pt->tags = tags;
    pt->ntags = n;
    return CASCA_OK;
}

int hook_protobuf_interpret(const struct hook_config *h, const char *topic, const void *payload,
                            size_t len, int64_t received_ns, struct hook_batch *out, char *err,
                            size_t errlen)
{
    ProtobufCAllocator arena = {arena_alloc, arena_free, out};
    Casca__V1__PublishRequest *req = casca__v1__publish_request__unpack(&arena, len, payload);
    if (!req) {
        snprintf(err, errlen,
                 "%zu bytes that are not a casca.v1.PublishRequest (protobuf "
                 "decoding failed)",
                 len);
        return CASCA_ERR_INVALID;
    }
    int rc = CASCA_OK;
    for (size_t i = 0; i < req->n_points; i++) {
        const Casca__V1__Point *p = req->points[i];
        const char *why = NULL;
        int64_t t = received_ns;
        if (!*p->series)
            why = "has no series name";
        else if (!isfinite(p->value))
            why = "has a value that is not a finite number";
        else if (p->time && (p->time->nanos < 0 || p->time->nanos > 999999999 ||
                             p->time->seconds > MAX_SECONDS || p->time->seconds < -MAX_SECONDS))
            why = "has a time out of range";
        if (why) {
            if (!rc) snprintf(err, errlen, "point %zu (series '%s') %s", i, p->series, why);
            rc = CASCA_ERR_INVALID;
            continue;
        }
        if (p->time) t = casca_ns_of(p->time->seconds, p->time->nanos);
        struct tsdb_point *pt = hook_batch_add(out);
        if (!pt) return CASCA_ERR_NOMEM;
        if (point_tags(h, topic, p, out, pt) != CASCA_OK) {
            out->n--;
            return CASCA_ERR_NOMEM;
        }
        pt->series = p->series;
        pt->time_ns = t;
        pt->value = p->value;
    }
    return rc;
}
