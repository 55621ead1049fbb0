/* The report of non-finite examples (nonfinite.h). */
#include "nonfinite.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { SHOW = 10 }; /* examples named before "and K more" */

int64_t cli_nonfinite_str(const nb_real *v, int64_t n, char *buf, size_t size)
{
    int64_t nan = 0, inf = 0;
    for (int64_t i = 0; i < n; i++) {
        nan += v[i] != v[i];
        inf += isinf(v[i]) != 0;
    }
    if (!nan && !inf) snprintf(buf, size, "finite");
    else if (!inf) snprintf(buf, size, "%lld NaN", (long long)nan);
    else if (!nan) snprintf(buf, size, "%lld Inf", (long long)inf);
    else snprintf(buf, size, "%lld NaN, %lld Inf", (long long)nan, (long long)inf);
    return nan + inf;
}

/* Whether any of n values is NaN or Inf: one pass that vectorises. */
static int any_nonfinite(const nb_real *v, int64_t n)
{
    int bad = 0;
    for (int64_t i = 0; i < n; i++) bad |= !isfinite(v[i]);
    return bad;
}

static int usable(const cli_rows *r, int64_t N) { return r->t && r->t->size % N == 0; }

/* Example n's part of the report, "input: 1 NaN; output: 10 NaN", in line;
 * returns its count of NaN and Inf and sets *overflow when all it was given
 * is finite and some result is not. */
static int64_t example_line(int64_t n, int64_t N, int ntensors, const cli_rows *rows, char *line, size_t size,
                            int *overflow)
{
    size_t u = 0;
    int64_t all = 0, given = 0, result = 0;
    line[0] = '\0';
    for (int j = 0; j < ntensors; j++) {
        if (!usable(&rows[j], N)) continue;
        const int64_t per = rows[j].t->size / N;
        char c[64];
        const int64_t k = cli_nonfinite_str(rows[j].t->data + n * per, per, c, sizeof c);
        *(rows[j].result ? &result : &given) += k;
        all += k;
        if (u < size)
            u += (size_t)snprintf(line + u, size - u, "%s%s%s%s", u ? "; " : "", rows[j].name, k ? ": " : " ", c);
    }
    *overflow = !given && result;
    return all;
}

int64_t cli_report_nonfinite(const char *cmd, int64_t N, int ntensors, const cli_rows *rows)
{
    if (N <= 0) return 0;
    int any = 0;
    for (int j = 0; j < ntensors; j++)
        if (usable(&rows[j], N)) any |= any_nonfinite(rows[j].t->data, rows[j].t->size);
    if (!any) return 0;
    char lines[SHOW][256];
    int64_t which[SHOW], bad = 0;
    int overflowed = 0; /* some example given finite values with a non-finite result */
    for (int64_t n = 0; n < N; n++) {
        char line[256];
        int overflow = 0;
        if (!example_line(n, N, ntensors, rows, line, sizeof line, &overflow)) continue;
        overflowed |= overflow;
        if (bad < SHOW) memcpy(lines[bad], line, sizeof line), which[bad] = n;
        bad++;
    }
    if (!bad) return 0;
    fflush(stdout); /* after what the command printed, where both go to one file */
    fprintf(stderr, "nabla %s: warning: %lld of %lld examples %s NaN or Inf (counted from 0):", cmd, (long long)bad,
            (long long)N, bad == 1 ? "has" : "have");
    for (int64_t i = 0; i < bad && i < SHOW; i++)
        fprintf(stderr, "%s example %lld (%s)", i ? "," : "", (long long)which[i], lines[i]);
    if (bad > SHOW) fprintf(stderr, ", and %lld more", (long long)(bad - SHOW));
    fputc('\n', stderr);
    if (overflowed)
        fprintf(stderr, "nabla %s: an example given only finite values whose result is not finite overflowed "
                        "inside the model or met a non-finite weight\n",
                cmd);
    return bad;
}
