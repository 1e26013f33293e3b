/* rpc_sendq: the send side of one call (see rpc_sendq.h). */
#include "rpc_sendq.h"

#include <stdlib.h>

#include "casca_err.h"

struct rpc_out {
    void *msg;
    struct rpc_out *next;
};

int rpc_sendq_push(struct rpc_sendq *q, void *msg, unsigned limit)
{
    if (q->finishing || q->broken)
        return CASCA_ERR_CANCELLED;
    if (limit && q->len >= limit)
        return CASCA_ERR_FULL;
    struct rpc_out *o = malloc(sizeof(*o));
    if (!o)
        return CASCA_ERR_NOMEM;
    *o = (struct rpc_out){msg, NULL};
    if (q->tail)
        q->tail->next = o;
    else
        q->head = o;
    q->tail = o;
    q->len++;
    return CASCA_OK;
}

bool rpc_sendq_finish(struct rpc_sendq *q, void *last)
{
    if (!q->finishing && (!last || rpc_sendq_push(q, last, 0) == CASCA_OK))
        last = NULL;
    if (last)
        q->drop(last);
    if (q->finishing)
        return false;
    q->finishing = true;
    return true;
}

bool rpc_sendq_next(struct rpc_sendq *q, struct rpc_send_batch *b)
{
    *b = (struct rpc_send_batch){0};
    if (!q->md_sent)
        b->metadata = q->md_sent = true;
    if (q->head) {
        struct rpc_out *o = q->head;
        if (!(q->head = o->next))
            q->tail = NULL;
        q->len--;
        b->msg = q->inflight = o->msg;
        free(o);
    }
    if (q->finishing && !q->head && !q->status_sent)
        b->status = q->status_sent = true;
    if (!b->metadata && !b->msg && !b->status)
        return false;
    q->busy = true;
    return true;
}

bool rpc_sendq_sent(struct rpc_sendq *q, bool success)
{
    if (q->inflight) {
        q->drop(q->inflight);
        q->inflight = NULL;
    }
    q->busy = false;
    if (!success) { /* the transport is gone */
        q->broken = true;
        rpc_sendq_clear(q);
        return false;
    }
    return q->head || (q->finishing && !q->status_sent);
}

void rpc_sendq_clear(struct rpc_sendq *q)
{
    while (q->head) {
        struct rpc_out *o = q->head;
        q->head = o->next;
        q->drop(o->msg);
        free(o);
    }
    q->tail = NULL;
    q->len = 0;
}

unsigned rpc_sendq_pending(const struct rpc_sendq *q)
{
    return q->len + (q->inflight != NULL);
}
