/* Helpers shared by the double-build tests (include after cmocka.h). */
#ifndef NB_TEST_F64_H
#define NB_TEST_F64_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

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

#endif
