/* rpc_sendq: the send side of one call as plain state, without gRPC, so its rules can be tested
 * without a network (test/unit/rpc_sendq_test.c). rpc.c holds one per call, under the call's lock.
 *
 * At most one send batch is in flight. Messages sent while it is wait in a queue, bounded for
 * rpc_send and not for the last message of rpc_reply; initial metadata goes with the first batch
 * and the status with (or after) the last queued message, once the service has finished. A failed
 * batch means the transport is gone: the call is broken and its queue dropped. Messages are opaque
 * here (grpc_byte_buffer * in rpc.c); the queue owns those it accepted and frees them with drop. */
#ifndef CASCA_RPC_SENDQ_H
#define CASCA_RPC_SENDQ_H

#include <stdbool.h>

struct rpc_out;

struct rpc_sendq {
    void (*drop)(void *msg);
    bool md_sent, busy, finishing, status_sent, broken;
    struct rpc_out *head, *tail;
    unsigned len;  /* messages in the queue */
    void *inflight; /* the message of the batch in flight, if it carries one */
};

/* What the next send batch carries, in this order. */
struct rpc_send_batch {
    bool metadata;
    void *msg; /* NULL: none */
    bool status;
};

/* Queues msg behind the others: CASCA_OK (the queue owns it), CASCA_ERR_CANCELLED once the
 * service finished or the call broke, CASCA_ERR_FULL with limit messages already waiting (limit 0:
 * no bound), CASCA_ERR_NOMEM. On error msg stays the caller's. */
int rpc_sendq_push(struct rpc_sendq *q, void *msg, unsigned limit);
/* The service ends the call with last (may be NULL), queued without bound. False, and last
 * dropped, if it already had (a service bug: the first finish stands). */
bool rpc_sendq_finish(struct rpc_sendq *q, void *last);
/* Takes what the next batch carries off the queue into b and marks a send in flight; false if
 * there is nothing to send. Only with no send in flight. */
bool rpc_sendq_next(struct rpc_sendq *q, struct rpc_send_batch *b);
/* The batch in flight completed: its message is dropped. Returns whether another batch is due. */
bool rpc_sendq_sent(struct rpc_sendq *q, bool success);
/* Drops every queued message (the call was cancelled, or is freed). */
void rpc_sendq_clear(struct rpc_sendq *q);
/* Messages not yet on the wire: queued plus in flight. */
unsigned rpc_sendq_pending(const struct rpc_sendq *q);

#endif
