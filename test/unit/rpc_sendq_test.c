/* rpc_sendq: the send side of a call's state machine (rpc.c), driven without a network: what each
 * batch carries (metadata first, messages in order, the status last), the bounded queue, a second
 * finish, a broken transport and a cancellation, and that every accepted message is freed once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "casca_err.h"
#include "rpc_sendq.h"

/* Messages are heap ints (ASan tells a leak or a double free); drop records their order. */
static int dropped[16];
static unsigned ndropped;

static void drop(void *msg)
{
    assert_true(ndropped < 16);
    dropped[ndropped++] = *(int *)msg;
    free(msg);
}

static void *msg(int id)
{
    int *m = malloc(sizeof(*m));
    assert_non_null(m);
    *m = id;
    return m;
}

static int setup(void **state)
{
    static struct rpc_sendq q;
    q = (struct rpc_sendq){.drop = drop};
    ndropped = 0;
    *state = &q;
    return 0;
}

static int teardown(void **state)
{
    struct rpc_sendq *q = *state;
    assert_false(q->busy); /* every test completes the batches it starts */
    rpc_sendq_clear(q);
    return 0;
}

/* The next batch, which must exist, as "m" (metadata), the message id, "s" (status). */
static void expect_batch(struct rpc_sendq *q, bool metadata, int id, bool status)
{
    struct rpc_send_batch b;
    assert_true(rpc_sendq_next(q, &b));
    assert_true(q->busy);
    assert_int_equal(b.metadata, metadata);
    if (id)
        assert_int_equal(*(int *)b.msg, id);
    else
        assert_null(b.msg);
    assert_int_equal(b.status, status);
}

static void test_unary_reply_is_one_batch(void **state)
{
    struct rpc_sendq *q = *state;
    assert_true(rpc_sendq_finish(q, msg(1)));
    expect_batch(q, true, 1, true);
    assert_int_equal(rpc_sendq_pending(q), 1);
    assert_false(rpc_sendq_sent(q, true)); /* nothing more is due */
    assert_int_equal(rpc_sendq_pending(q), 0);
    struct rpc_send_batch b;
    assert_false(rpc_sendq_next(q, &b));
    assert_int_equal(ndropped, 1);
}

static void test_error_status_without_message(void **state)
{
    struct rpc_sendq *q = *state;
    assert_true(rpc_sendq_finish(q, NULL));
    expect_batch(q, true, 0, true);
    assert_false(rpc_sendq_sent(q, true));
    assert_int_equal(ndropped, 0);
}

static void test_stream_queues_behind_the_batch_in_flight(void **state)
{
    struct rpc_sendq *q = *state;
    assert_int_equal(rpc_sendq_push(q, msg(1), 2), CASCA_OK);
    expect_batch(q, true, 1, false);
    assert_int_equal(rpc_sendq_push(q, msg(2), 2), CASCA_OK);
    assert_int_equal(rpc_sendq_push(q, msg(3), 2), CASCA_OK);
    void *extra = msg(4);
    assert_int_equal(rpc_sendq_push(q, extra, 2), CASCA_ERR_FULL); /* the caller keeps it */
    free(extra);
    assert_int_equal(rpc_sendq_pending(q), 3); /* two queued, one in flight */

    assert_true(rpc_sendq_finish(q, msg(5))); /* the last message is not bounded */
    assert_true(rpc_sendq_sent(q, true));
    expect_batch(q, false, 2, false); /* the status waits for the queue */
    assert_true(rpc_sendq_sent(q, true));
    expect_batch(q, false, 3, false);
    assert_true(rpc_sendq_sent(q, true));
    expect_batch(q, false, 5, true);
    assert_false(rpc_sendq_sent(q, true));
    assert_int_equal(rpc_sendq_pending(q), 0);
    assert_int_equal(ndropped, 4);
    const int order[] = {1, 2, 3, 5};
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(dropped[i], order[i]);
}

static void test_status_after_the_last_message_in_flight(void **state)
{
    struct rpc_sendq *q = *state;
    assert_int_equal(rpc_sendq_push(q, msg(1), 0), CASCA_OK);
    expect_batch(q, true, 1, false);
    assert_true(rpc_sendq_finish(q, NULL));
    assert_true(rpc_sendq_sent(q, true));
    expect_batch(q, false, 0, true);
    assert_false(rpc_sendq_sent(q, true));
}

static void test_finish_twice_keeps_the_first(void **state)
{
    struct rpc_sendq *q = *state;
    assert_true(rpc_sendq_finish(q, msg(1)));
    assert_false(rpc_sendq_finish(q, msg(2))); /* dropped at once */
    assert_int_equal(ndropped, 1);
    assert_int_equal(dropped[0], 2);
    void *late = msg(3);
    assert_int_equal(rpc_sendq_push(q, late, 0), CASCA_ERR_CANCELLED);
    free(late);
    expect_batch(q, true, 1, true);
    assert_false(rpc_sendq_sent(q, true));
}

static void test_broken_transport_drops_everything(void **state)
{
    struct rpc_sendq *q = *state;
    assert_int_equal(rpc_sendq_push(q, msg(1), 0), CASCA_OK);
    expect_batch(q, true, 1, false);
    assert_int_equal(rpc_sendq_push(q, msg(2), 0), CASCA_OK);
    assert_false(rpc_sendq_sent(q, false)); /* no next batch on a broken call */
    assert_true(q->broken);
    assert_int_equal(rpc_sendq_pending(q), 0);
    assert_int_equal(ndropped, 2);
    void *late = msg(3);
    assert_int_equal(rpc_sendq_push(q, late, 0), CASCA_ERR_CANCELLED);
    free(late);
    /* the service may still finish: its last message is dropped, and it is finished */
    assert_true(rpc_sendq_finish(q, msg(4)));
    assert_int_equal(ndropped, 3);
    assert_int_equal(rpc_sendq_pending(q), 0);
}

static void test_cancel_clears_the_queue(void **state)
{
    struct rpc_sendq *q = *state;
    assert_int_equal(rpc_sendq_push(q, msg(1), 0), CASCA_OK);
    expect_batch(q, true, 1, false);
    assert_int_equal(rpc_sendq_push(q, msg(2), 0), CASCA_OK);
    assert_int_equal(rpc_sendq_push(q, msg(3), 0), CASCA_OK);
    rpc_sendq_clear(q); /* what rpc.c does when the call is cancelled */
    assert_int_equal(ndropped, 2);
    assert_int_equal(rpc_sendq_pending(q), 1); /* the batch in flight still owns its message */
    assert_false(rpc_sendq_sent(q, false));
    assert_int_equal(ndropped, 3);
}

static void test_clear_leaves_an_empty_queue(void **state)
{
    struct rpc_sendq *q = *state;
    assert_int_equal(rpc_sendq_push(q, msg(4), 1), CASCA_OK);
    rpc_sendq_clear(q);
    assert_int_equal(rpc_sendq_push(q, msg(5), 1), CASCA_OK);
    expect_batch(q, true, 5, false);
    assert_false(rpc_sendq_sent(q, true));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unary_reply_is_one_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_status_without_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_queues_behind_the_batch_in_flight, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_status_after_the_last_message_in_flight, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_finish_twice_keeps_the_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broken_transport_drops_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_clears_the_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clear_leaves_an_empty_queue, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
