/* Runs the built examples and checks the numbers they print against closed
 * forms computed here, independently of the library (and, for the one that
 * trains, the model file it writes). */
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

/* The whole file, NUL-terminated; NULL if unreadable. */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0, r;
    char *b = malloc(cap);
    while (b && (r = fread(b + len, 1, cap - len - 1, f)) > 0)
        if ((len += r) + 1 == cap) b = realloc(b, cap *= 2);
    fclose(f);
    if (b) b[len] = 0;
    return b;
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

/* The README's example: J = dA1/dW of A1 = tanh(A0 W + b), against the
 * closed form (1 - A1[n, j]^2) A0[n, k] [j = l] from the documented fills. */
static void test_readme_jacobian(void **state)
{
    (void)state;
    int status;
    char *out = run_capture(NB_BINARY_DIR "/examples/readme_jacobian", &status);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_non_null(strstr(out, "J shape: (4, 2, 3, 2)"));
    double A0[4][3], W[3][2], b[2] = {0.1, -0.2}, A1[4][2];
    for (int n = 0; n < 4; n++)
        for (int k = 0; k < 3; k++) A0[n][k] = 0.25 * (n + 1) - 0.4 * k + 0.1;
    for (int k = 0; k < 3; k++)
        for (int l = 0; l < 2; l++) W[k][l] = 0.3 - 0.2 * k + 0.1 * l;
    for (int n = 0; n < 4; n++)
        for (int j = 0; j < 2; j++) {
            double z = b[j];
            for (int k = 0; k < 3; k++) z += A0[n][k] * W[k][j];
            A1[n][j] = tanh(z);
        }
    const double tol = 1e-12;
    NEAR(value_of(out, "A1[1, 0]"), A1[1][0], tol);
    NEAR(value_of(out, "J[1, 0, 2, 0]"), (1 - A1[1][0] * A1[1][0]) * A0[1][2], tol);
    NEAR(value_of(out, "J[3, 1, 0, 1]"), (1 - A1[3][1] * A1[3][1]) * A0[3][0], tol);
    assert_true(fabs(value_of(out, "J[3, 1, 0, 1]")) > 0.1); /* not the all-zero J of unfilled tensors */
    assert_true(value_of(out, "J[3, 1, 0, 0]") == 0);        /* unit 1 does not depend on column 0 of W */
    assert_true(value_of(out, "nonzero entries") == 24);     /* 4 x 2 x 3 with j = l, no A0 of 0 */
    assert_true(value_of(out, "max |J - closed form|") < tol);
    free(out);
}

/* Every code line of the README's C block stands in the example (its
 * trailing comment and ';' aside), so the README shows what runs. */
static void test_readme_block_is_the_example(void **state)
{
    (void)state;
    char *readme = read_text(NB_SOURCE_DIR "/README.md"),
         *example = read_text(NB_SOURCE_DIR "/examples/readme_jacobian.c");
    assert_non_null(readme);
    assert_non_null(example);
    const char *block = strstr(readme, "```c\n");
    assert_non_null(block);
    block += 5;
    const char *end = strstr(block, "```");
    assert_non_null(end);
    int checked = 0;
    for (const char *line = block; line < end;) {
        const char *nl = strchr(line, '\n');
        char buf[256];
        while (*line == ' ') line++;
        size_t n = (size_t)(nl - line);
        if (n >= sizeof buf) n = sizeof buf - 1;
        memcpy(buf, line, n);
        buf[n] = 0;
        char *c = strstr(buf, "/*");
        if (c) *c = 0;
        for (size_t k = strlen(buf); k > 0 && (buf[k - 1] == ' ' || buf[k - 1] == ';'); k--) buf[k - 1] = 0;
        if (buf[0] && strncmp(buf, "#include", 8)) {
            if (!strstr(example, buf)) print_error("README line not in the example: '%s'\n", buf);
            assert_non_null(strstr(example, buf));
            checked++;
        }
        line = nl + 1;
    }
    assert_true(checked >= 12);
    free(readme);
    free(example);
}

/* The second example: a model built, saved, loaded, trained and predicted
 * from C; the file it leaves is loaded here and predicts the classes'
 * centres. */
static void test_train_from_c(void **state)
{
    (void)state;
    int status;
    const char *path = NB_BINARY_DIR "/examples/test_train_from_c.safetensors";
    remove(path);
    char *out = run_capture(
        NB_BINARY_DIR "/examples/train_from_c " NB_BINARY_DIR "/examples/test_train_from_c.safetensors", &status);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_non_null(strstr(out, "model: dense 16 tanh; dense 3 softmax"));
    const double before = value_of(out, "loss before"), after = value_of(out, "loss after");
    assert_true(before > 0.5 && after < 0.1 * before);
    assert_true(value_of(out, "accuracy after") >= 0.95);
    assert_true(value_of(out, "max |sum of a row of p - 1|") < 1e-9);
    assert_true(value_of(out, "reloaded max |p - q|") <= 1e-6);
    for (int i = 0; i < 3; i++) { /* the printed rows: probabilities, the label's the largest */
        char key[16];
        snprintf(key, sizeof key, "p[%d] = ", i);
        const char *line = strstr(out, key);
        assert_non_null(line);
        double pr[3];
        int label;
        assert_int_equal(sscanf(line + strlen(key), "%lf %lf %lf (label %d)", &pr[0], &pr[1], &pr[2], &label), 4);
        NEAR(pr[0] + pr[1] + pr[2], 1, 2e-6);
        assert_int_equal(label, i % 3);
        assert_true(pr[label] > pr[(label + 1) % 3] && pr[label] > pr[(label + 2) % 3]);
    }
    free(out);
    /* The file: loads, and puts each class's centre in that class. */
    nb_model *m = NULL;
    assert_int_equal(nb_model_load(path, &m), NB_OK);
    const int64_t xs[2] = {3, 2};
    const nb_real centres[6] = {1, 0, -0.5, 0.8660254, -0.5, -0.8660254};
    nb_tensor *x = nb_tensor_from(2, xs, centres), *p = NULL;
    assert_int_equal(nb_model_predict(m, x, 3, &p), NB_OK);
    for (int c = 0; c < 3; c++) assert_true(p->data[3 * c + c] > 0.9);
    nb_tensor_free(p);
    nb_tensor_free(x);
    nb_model_free(m);
    remove(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_rule),
        cmocka_unit_test(test_readme_jacobian),
        cmocka_unit_test(test_readme_block_is_the_example),
        cmocka_unit_test(test_train_from_c),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
