/* The guided tour (docs/tour.md): runs each built example and checks the
 * numbers it prints, parsed from its lines, against closed forms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nb_test_f64.h"
#include <sys/wait.h>

/* Runs an example; returns its stdout (malloc'ed) after asserting exit 0. */
static char *run_example(const char *name)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s/examples/%s", NB_BINARY_DIR, name);
    int st;
    char *buf = run_capture(cmd, &st);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) print_error("%s exited with %d:\n%s\n", name, st, buf);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_non_null(strstr(buf, "all self-checks passed"));
    return buf;
}

/* The line that starts (after blanks) with key; fails if absent. */
static const char *line_of(const char *out, const char *key)
{
    for (const char *l = out; l && *l;) {
        const char *s = l;
        while (*s == ' ') s++;
        if (!strncmp(s, key, strlen(key))) return s;
        l = strchr(l, '\n');
        if (l) l++;
    }
    print_error("no line starting with '%s'\n", key);
    fail();
    return NULL;
}

/* The number after "<key> = " / "<key>: x = " on its line. */
static double num_after(const char *out, const char *key, const char *marker)
{
    const char *l = line_of(out, key), *m = strstr(l, marker);
    assert_non_null(m);
    return strtod(m + strlen(marker), NULL);
}

/* Whether the line starting with key contains text. */
static void line_has(const char *out, const char *key, const char *text)
{
    const char *l = line_of(out, key), *e = strchr(l, '\n');
    size_t n = e ? (size_t)(e - l) : strlen(l);
    char buf[512];
    snprintf(buf, sizeof buf, "%.*s", (int)(n < 511 ? n : 511), l);
    if (!strstr(buf, text)) print_error("line '%s' lacks '%s'\n", buf, text);
    assert_non_null(strstr(buf, text));
}

static void test_models(void **state)
{
    (void)state;
    char *out = run_example("models");
    double z = num_after(out, "neuron z", "= "), y = num_after(out, "neuron y", "= ");
    assert_true(fabs(z - -0.9) < 1e-15);
    assert_true(fabs(y - 1 / (1 + exp(0.9))) < 1e-15);
    line_has(out, "layer 1:", "A_0 (4 x 3) times W_1 (3 x 5) plus b_1 (1 x 5) -> A_1 (4 x 5)");
    line_has(out, "layer 2:", "A_1 (4 x 5) times W_2 (5 x 2) plus b_2 (1 x 2) -> A_2 (4 x 2)");
    line_has(out, "W_1 shape:", "(3, 5)");
    line_has(out, "A_2 shape:", "(4, 2)");
    assert_true(num_after(out, "dense max", "= ") < 1e-14);
    line_has(out, "X shape:", "(1, 5, 5, 2)");
    line_has(out, "K shape:", "(3, 3, 2, 3)");
    line_has(out, "b shape:", "(3,)");
    line_has(out, "conv valid output shape:", "(1, 3, 3, 3)");
    line_has(out, "conv same output shape:", "(1, 5, 5, 3)");
    assert_true(num_after(out, "conv max", "= ") < 1e-14);
    free(out);
}

static void test_gradient_descent(void **state)
{
    (void)state;
    char *out = run_example("gradient_descent");
    assert_true(num_after(out, "y(2) =", "y'(2) = ") == 4);
    assert_true(num_after(out, "y(-2) =", "y'(-2) = ") == -4);
    assert_true(num_after(out, "y(1) =", "y'(1) = ") == 2);
    const double a1[3] = {-3, 9, -27}, a01[3] = {0.6, 0.36, 0.216};
    for (int k = 1; k <= 3; k++) {
        char key[64];
        snprintf(key, sizeof key, "gd alpha 1 step %d:", k);
        assert_true(num_after(out, key, "x = ") == a1[k - 1]);
        snprintf(key, sizeof key, "gd alpha 0.1 step %d:", k);
        assert_true(fabs(num_after(out, key, "x = ") - a01[k - 1]) < 1e-12);
    }
    assert_true(num_after(out, "largest converging alpha", "= ") < 0.5);
    assert_true(num_after(out, "largest converging alpha", "= ") == 0.49);
    assert_true(num_after(out, "smallest non-converging alpha", "= ") == 0.5);
    assert_non_null(strstr(out, "sweep alpha 0.45: converges"));
    assert_non_null(strstr(out, "sweep alpha 0.5: oscillates"));
    assert_non_null(strstr(out, "sweep alpha 0.51: diverges"));
    free(out);
}

static void test_backprop_cnn(void **state)
{
    (void)state;
    char *out = run_example("backprop_cnn");
    const char *shapes[][2] = {{"dJ/dY_hat", "(1, 3)"},     {"dJ/dZ5", "(1, 3)"},
                               {"dJ/dA4", "(1, 5)"},        {"dJ/dA3", "(1, 12)"},
                               {"dJ/dA2", "(1, 2, 2, 3)"},  {"dJ/dA1", "(1, 4, 4, 2)"},
                               {"dJ/dW5", "(5, 3)"},        {"dJ/db5", "(3,)"},
                               {"dJ/dW4", "(12, 5)"},       {"dJ/db4", "(5,)"},
                               {"dJ/dK2", "(3, 3, 2, 3)"},  {"dJ/db2", "(3,)"},
                               {"dJ/dK1", "(3, 3, 1, 2)"},  {"dJ/db1", "(2,)"}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        char key[32];
        snprintf(key, sizeof key, "%s ", shapes[i][0]);
        line_has(out, key, shapes[i][1]);
        assert_true(num_after(out, key, "max|.| = ") > 0);
    }
    double before = num_after(out, "loss before", "= "), after = num_after(out, "loss after", "= ");
    assert_true(before > 0 && after < before);
    assert_non_null(strstr(out, "against central differences"));
    free(out);
}

static void test_jacobians(void **state)
{
    (void)state;
    char *out = run_example("jacobians");
    line_has(out, "conv2d   dZ1/dX", "(1, 4, 4, 2, 1, 6, 6, 1)");
    line_has(out, "conv2d   dZ1/dK", "(1, 4, 4, 2, 3, 3, 1, 2)");
    line_has(out, "relu     dA1/dZ1", "(1, 4, 4, 2, 1, 4, 4, 2)");
    line_has(out, "dense    dZ/dW", "(1, 3, 8, 3)");
    /* relu's Jacobian is diagonal: at least 1 - 1/32 of it is zero */
    assert_true(num_after(out, "relu     dA1/dZ1", "sparsity ") >= 1 - 1.0 / 32 - 1e-9);
    /* conv2 of the lecture's CNN w.r.t. its input, float32, batch 128 */
    double big = 4.0 * (128.0 * 24 * 24 * 64) * (128.0 * 26 * 26 * 32);
    assert_true(num_after(out, "largest layer Jacobian bytes", "= ") == big);
    assert_true(num_after(out, "refused", "= ") == 1);
    line_has(out, "nb_jacobian(A2, A1)", "too large");
    assert_true(num_after(out, "max |rev or fwd", "= ") < 1e-15);
    assert_true(num_after(out, "max |finite difference", "= ") < 1e-8);
    free(out);
}

/* Part 6 (examples/curvature.c): f'' = 4 and the critical rate 0.5; the
 * linear model's lambda_max against its independent check; the verdicts. */
static void test_curvature(void **state)
{
    (void)state;
    FILE *data = fopen("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", "rb");
    if (!data) skip(); /* the example reads real images (scripts/deps.sh installs them) */
    fclose(data);
    char *out = run_example("curvature");
    NEAR(num_after(out, "f''(x)", "= "), 4, 0);
    NEAR(num_after(out, "critical rate", "= "), 0.5, 0);
    line_has(out, "alpha 0.45", "converges");
    line_has(out, "alpha 0.5 ", "oscillates");
    line_has(out, "alpha 0.55", "diverges");
    const double l = num_after(out, "lambda_max =", "= "), ref = num_after(out, "lambda_max of (2/10N)", "matrix = ");
    NEAR(l, ref, 1e-5);
    NEAR(num_after(out, "largest stable rate", "= "), 2 / l, 1e-5);
    line_has(out, "lr = 0.9 x 2/lambda_max = 0.0799", "converges");
    line_has(out, "lr = 1.1 x 2/lambda_max = 0.09765", "blows up");
    line_has(out, "lr = 8 x", "blows up");
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_curvature),
        cmocka_unit_test(test_models),
        cmocka_unit_test(test_gradient_descent),
        cmocka_unit_test(test_backprop_cnn),
        cmocka_unit_test(test_jacobians),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
