/* Runs the built examples and checks the numbers they print against closed
 * forms computed here, independently of the library. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "nb_test_f64.h"

/* The number after the last '=' on the line whose text (after leading
 * blanks) starts with key followed by " =" or ":". Fails if absent. */
static double value_of(const char *out, const char *key)
{
    size_t klen = strlen(key);
    for (const char *line = out; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        const char *s = line;
        while (s < line + n && *s == ' ') s++;
        if ((size_t)(line + n - s) > klen && strncmp(s, key, klen) == 0 &&
            (s[klen] == ':' || strncmp(s + klen, " =", 2) == 0 || strncmp(s + klen, "  =", 3) == 0)) {
            const char *eq = NULL;
            for (const char *c = s; c < line + n; c++)
                if (*c == '=') eq = c;
            assert_non_null(eq);
            char *stop;
            double v = strtod(eq + 1, &stop);
            assert_true(stop != eq + 1);
            return v;
        }
        line = end ? end + 1 : NULL;
    }
    print_error("no line for '%s' in:\n%s\n", key, out);
    fail();
    return NAN;
}

static void test_chain_rule(void **state)
{
    (void)state;
    int status;
    char *out = run_capture(NB_BINARY_DIR "/examples/chain_rule", &status);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_non_null(strstr(out, "match: yes"));

    const double tol = 1e-12;
    double x = value_of(out, "x");
    NEAR(x, 0.4, tol);
    /* Forward, by hand. */
    double u1 = x * x, u2 = 3 * u1 + 1, u3 = tanh(u2), y = exp(u3);
    NEAR(value_of(out, "u1"), u1, tol);
    NEAR(value_of(out, "u2"), u2, tol);
    NEAR(value_of(out, "u3"), u3, tol);
    NEAR(value_of(out, "y"), y, tol);
    /* Local partials. */
    double p1 = 2 * x, p2 = 3, p3 = 1 - u3 * u3, p4 = exp(u3);
    NEAR(value_of(out, "f1'(x)"), p1, tol);
    NEAR(value_of(out, "f2'(u1)"), p2, tol);
    NEAR(value_of(out, "f3'(u2)"), p3, tol);
    NEAR(value_of(out, "f4'(u3)"), p4, tol);
    /* Backward: the running products, right to left. */
    NEAR(value_of(out, "dy/dy"), 1, tol);
    NEAR(value_of(out, "dy/du3"), p4, tol);
    NEAR(value_of(out, "dy/du2"), p4 * p3, tol);
    NEAR(value_of(out, "dy/du1"), p4 * p3 * p2, tol);
    NEAR(value_of(out, "dy/dx"), p4 * p3 * p2 * p1, tol);
    /* The product line and the closed form. */
    double closed = 6 * x * (1 - tanh(3 * x * x + 1) * tanh(3 * x * x + 1)) * exp(tanh(3 * x * x + 1));
    NEAR(value_of(out, "f4'(u3) f3'(u2) f2'(u1) f1'(x)"), closed, tol);
    NEAR(value_of(out, "closed form"), closed, tol);
    assert_true(closed > 0.1); /* a real derivative, not a vacuous zero */
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
