/* Helpers shared by the double-build tests (include after cmocka.h). */
#ifndef NB_TEST_F64_H
#define NB_TEST_F64_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "nabla.h"

/* |a - b| <= tol * max(1, |b|): absolute near zero, relative elsewhere. */
#define NEAR(a, b, tol) near_impl((double)(a), (double)(b), (tol), #a, #b, __FILE__, __LINE__)
static inline void near_impl(double a, double b, double tol, const char *ea, const char *eb, const char *file,
                             int line)
{
    double scale = fabs(b) > 1 ? fabs(b) : 1;
    if (!(fabs(a - b) <= tol * scale)) {
        print_error("%s = %.17g, %s = %.17g: |diff| %.3g > %.3g\n", ea, a, eb, b, fabs(a - b), tol * scale);
        _fail(file, line);
    }
}

/* Runs cmd; returns its whole stdout (malloc'ed) and its wait status. */
static inline char *run_capture(const char *cmd, int *status)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, len = 0, got;
    char *buf = malloc(cap);
    assert_non_null(buf);
    while ((got = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += got;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    buf[len] = '\0';
    *status = pclose(p);
    return buf;
}

/* An input (param 0) or parameter (param 1) holding vals (zeros if NULL). */
static inline nb_node *leaf(nb_graph *g, int param, const char *name, int rank, const int64_t *shape, const double *vals)
{
    nb_node *n = param ? nb_param(g, name, rank, shape) : nb_input(g, name, rank, shape);
    assert_non_null(n);
    if (vals)
        for (int64_t i = 0; i < nb_value(n)->size; i++) nb_value(n)->data[i] = vals[i];
    return n;
}

static inline void assert_shape(const nb_tensor *t, int rank, const int64_t *shape)
{
    assert_non_null(t);
    assert_int_equal(t->rank, rank);
    for (int d = 0; d < rank; d++) assert_int_equal(t->shape[d], shape[d]);
}

#endif
