/* rpc_methods: RPC_METHOD rows checked against the protoc-c descriptors and the descriptor set
 * (rpc_method_mismatch), and rpc_server_add_service refusing a table with a bad row. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "casca/v1/admin.pb-c.h"
#include "casca/v1/slo.pb-c.h"
#include "opentelemetry/proto/common/v1/common.pb-c.h"
#include "casca_err.h"
#include "rpc.h"
#include "rpc_methods.h"

extern const unsigned char casca_descriptor_set[];
extern const size_t casca_descriptor_set_size;

static void handler(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
    (void)ctx;
    (void)msg;
}

static const struct rpc_method_def good[] = {
    RPC_METHOD("ListSlos", casca__v1__list_slos_request, casca__v1__list_slos_response, RPC_UNARY,
               RPC_ROLES_READ, 0, handler),
    RPC_METHOD("WatchSlos", casca__v1__watch_slos_request, casca__v1__slo_status,
               RPC_SERVER_STREAM, RPC_ROLES_READ, 0, handler),
};
static const struct rpc_method_def misspelled[] = {
    RPC_METHOD("ListSLOs", casca__v1__list_slos_request, casca__v1__list_slos_response, RPC_UNARY,
               RPC_ROLES_READ, 0, handler),
};
static const struct rpc_method_def wrong_response[] = {
    RPC_METHOD("GetSlo", casca__v1__get_slo_request, casca__v1__list_slos_response, RPC_UNARY,
               RPC_ROLES_READ, 0, handler),
};
static const struct rpc_method_def wrong_kind[] = {
    RPC_METHOD("WatchSlos", casca__v1__watch_slos_request, casca__v1__slo_status, RPC_UNARY,
               RPC_ROLES_READ, 0, handler),
};

static Google__Protobuf__FileDescriptorSet *set;

static int setup(void **state)
{
    (void)state;
    set = google__protobuf__file_descriptor_set__unpack(NULL, casca_descriptor_set_size,
                                                        casca_descriptor_set);
    return set ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
    return 0;
}

static void test_mismatch(void **state)
{
    (void)state;
    const ProtobufCServiceDescriptor *slo = &casca__v1__slo_service__descriptor;
    char buf[300];
    for (size_t i = 0; i < RPC_NMETHODS(good); i++)
        assert_null(rpc_method_mismatch(set, slo, &good[i], buf, sizeof(buf)));
    assert_string_equal(rpc_method_mismatch(set, slo, &misspelled[0], buf, sizeof(buf)),
                        "method 'ListSLOs' is not in casca.v1.SloService");
    assert_string_equal(rpc_method_mismatch(set, slo, &wrong_response[0], buf, sizeof(buf)),
                        "casca.v1.SloService.GetSlo takes casca.v1.GetSloRequest and returns "
                        "casca.v1.SloStatus, not casca.v1.ListSlosResponse");
    assert_string_equal(rpc_method_mismatch(set, slo, &wrong_kind[0], buf, sizeof(buf)),
                        "casca.v1.SloService.WatchSlos is server streaming, not unary");
    /* a row of another service */
    assert_non_null(
        rpc_method_mismatch(set, &casca__v1__admin_service__descriptor, &good[0], buf, sizeof(buf)));
    /* the descriptor set must describe the service to tell its streaming kind */
    assert_string_equal(rpc_method_mismatch(NULL, slo, &good[0], buf, sizeof(buf)),
                        "casca.v1.SloService.ListSlos is not in the descriptor set (is its .proto "
                        "compiled in?)");
}

static void test_registration_refuses_a_bad_table(void **state)
{
    (void)state;
    struct rpc_options o = {.descriptor_set = casca_descriptor_set,
                            .descriptor_set_size = casca_descriptor_set_size};
    struct rpc_server *srv = rpc_server_create(&o);
    assert_non_null(srv);
    const ProtobufCServiceDescriptor *slo = &casca__v1__slo_service__descriptor;
    char err[300];
    assert_int_equal(rpc_server_add_service(srv, slo, NULL, misspelled, 1, NULL, err, sizeof(err)),
                     CASCA_ERR_INVALID);
    assert_string_equal(err, "casca.v1.SloService's method table, row 1: method 'ListSLOs' is not in "
                             "casca.v1.SloService");
    assert_int_equal(rpc_server_add_service(srv, slo, NULL, wrong_response, 1, NULL, err, sizeof(err)),
                     CASCA_ERR_INVALID);
    assert_int_equal(rpc_server_add_service(srv, slo, NULL, wrong_kind, 1, NULL, err, sizeof(err)), CASCA_ERR_INVALID);
    assert_int_equal(rpc_server_add_service(srv, slo, NULL, good, RPC_NMETHODS(good), NULL, err, sizeof(err)),
                     CASCA_OK);
    /* the same paths twice */
    assert_int_equal(rpc_server_add_service(srv, slo, NULL, good, 1, NULL, err, sizeof(err)), CASCA_ERR_EXISTS);
    /* under a second name, as reflection's v1alpha is served */
    assert_int_equal(rpc_server_add_service(srv, slo, "casca.v1alpha.SloService", good, 1, NULL, err, sizeof(err)),
                     CASCA_OK);
    rpc_server_destroy(srv);

    struct rpc_options bare = {0}; /* no descriptor set: nothing can be checked, nothing added */
    assert_non_null(srv = rpc_server_create(&bare));
    assert_int_equal(rpc_server_add_service(srv, slo, NULL, good, 1, NULL, err, sizeof(err)), CASCA_ERR_INVALID);
    rpc_server_destroy(srv);
}

/* AnyValue { array_value { values: AnyValue { ... } } }, levels deep: 2 messages a level. */
static size_t nested(uint8_t *buf, size_t cap, unsigned levels)
{
    Opentelemetry__Proto__Common__V1__AnyValue *v = calloc(levels + 1, sizeof(*v));
    Opentelemetry__Proto__Common__V1__ArrayValue *a = calloc(levels, sizeof(*a));
    Opentelemetry__Proto__Common__V1__AnyValue **ptr = calloc(levels, sizeof(*ptr));
    for (unsigned i = 0; i <= levels; i++)
        opentelemetry__proto__common__v1__any_value__init(&v[i]);
    for (unsigned i = 0; i < levels; i++) {
        opentelemetry__proto__common__v1__array_value__init(&a[i]);
        ptr[i] = &v[i + 1];
        a[i].n_values = 1;
        a[i].values = &ptr[i];
        v[i].value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE;
        v[i].array_value = &a[i];
    }
    size_t len = opentelemetry__proto__common__v1__any_value__get_packed_size(&v[0]);
    assert_true(len <= cap);
    opentelemetry__proto__common__v1__any_value__pack(&v[0], buf);
    free(v);
    free(a);
    free(ptr);
    return len;
}

static void test_nesting(void **state)
{
    (void)state;
    static uint8_t buf[4096];
    const ProtobufCMessageDescriptor *d = &opentelemetry__proto__common__v1__any_value__descriptor;
    /* 49 levels: 99 messages with the innermost AnyValue; 50 levels: 101 */
    size_t len = nested(buf, sizeof(buf), 49);
    assert_false(rpc_nesting_exceeds(d, buf, len, RPC_MAX_NESTING));
    len = nested(buf, sizeof(buf), 50);
    assert_true(rpc_nesting_exceeds(d, buf, len, RPC_MAX_NESTING));
    /* scalars, strings and unknown fields are skipped; malformed data is left to unpack */
    static const uint8_t text[] = {0x0a, 0x03, 'a', 'b', 'c', 0x18, 0x96, 0x01, 0xf8, 0x07, 0x01};
    assert_false(rpc_nesting_exceeds(d, text, sizeof(text), 1));
    static const uint8_t cut[] = {0x2a, 0x7f, 0x0a};
    assert_false(rpc_nesting_exceeds(d, cut, sizeof(cut), RPC_MAX_NESTING));
    assert_true(rpc_nesting_exceeds(d, text, 0, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mismatch),
        cmocka_unit_test(test_registration_refuses_a_bad_table),
        cmocka_unit_test(test_nesting),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
