#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "casca_err.h"

static void every_error_has_a_message(void **state)
{
    for (int e = 0; e < CASCA_ERR__COUNT; e++) {
        const char *m = casca_strerror(e);
        assert_non_null(m);
        assert_string_not_equal(m, "unknown error");
    }
    assert_string_equal(casca_strerror(-1), "unknown error");
    assert_string_equal(casca_strerror(CASCA_ERR__COUNT), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(every_error_has_a_message)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
