/* Derivatives and gradient-based learning.
 *
 *  1. y = x^2 has y' = 2x: at x = 2, -2 and 1 that is 4, -4 and 2. Here the
 *     derivative comes from nabla's reverse mode (nb_backward), not by hand.
 *  2. Gradient descent x := x - alpha f'(x) on f(x) = 2x^2 from x = 1. As
 *     f'(x) = 4x, a step multiplies x by (1 - 4 alpha): alpha = 1 gives -3, 9,
 *     -27 (diverges), alpha = 0.1 gives 0.6, 0.36, 0.216 (converges).
 *  3. A sweep of learning rates: the iterates reach the minimum exactly when
 *     |1 - 4 alpha| < 1, i.e. 0 < alpha < 0.5.
 *
 * Exits 1 if a self-check fails. */
#include <math.h>
#include <stdio.h>

#include "nabla.h"

static int failures = 0;

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "gradient_descent: self-check failed: %s\n", what);
        failures++;
    }
}

/* f(x) = c * x^2 as a graph with x a scalar parameter. */
typedef struct {
    nb_graph *g;
    nb_node *x, *f;
} fgraph;

static int make_f(fgraph *fg, double c)
{
    fg->g = nb_graph_new();
    fg->x = fg->g ? nb_param(fg->g, "x", 0, NULL) : NULL;
    fg->f = nb_scale(nb_pow(fg->x, 2), c);
    if (!fg->f) {
        fprintf(stderr, "gradient_descent: building f: %s\n", nb_last_error());
        return 1;
    }
    return 0;
}

/* f and f' at x by a forward and a backward pass. */
static int eval(fgraph *fg, double x, double *f, double *df)
{
    nb_value(fg->x)->data[0] = x;
    if (nb_forward(fg->g) || nb_backward(fg->f)) {
        fprintf(stderr, "gradient_descent: %s\n", nb_last_error());
        return 1;
    }
    *f = nb_value(fg->f)->data[0];
    *df = nb_grad(fg->x)->data[0];
    return 0;
}

int main(void)
{
    fgraph sq, f2;
    if (make_f(&sq, 1) || make_f(&f2, 2)) return 1;

    printf("== 1. y = x^2, y' = 2x (by reverse-mode autodiff) ==\n");
    const double at[3] = {2, -2, 1};
    for (int i = 0; i < 3; i++) {
        double y, dy;
        if (eval(&sq, at[i], &y, &dy)) return 1;
        printf("y(%g) = %g, y'(%g) = %g\n", at[i], y, at[i], dy);
        check(dy == 2 * at[i] && y == at[i] * at[i], "derivative of x^2");
    }

    printf("\n== 2. gradient descent on f(x) = 2x^2 from x_0 = 1: x := x - alpha f'(x) ==\n");
    const double alphas[2] = {1, 0.1};
    for (int a = 0; a < 2; a++) {
        double alpha = alphas[a], x = 1;
        printf("alpha = %g (each step multiplies x by 1 - 4 alpha = %g):\n", alpha, 1 - 4 * alpha);
        for (int k = 1; k <= 5; k++) {
            double f, df;
            if (eval(&f2, x, &f, &df)) return 1;
            double nx = x - alpha * df;
            printf("  gd alpha %g step %d: x = %.10g   (f'(%.10g) = %.10g)\n", alpha, k, nx, x, df);
            check(fabs(nx - pow(1 - 4 * alpha, k)) <= 1e-12 * fmax(1, fabs(nx)), "gd iterate");
            x = nx;
        }
        printf("  -> %s\n", fabs(1 - 4 * alpha) < 1 ? "converges to the minimum x = 0" : "diverges");
    }

    printf("\n== 3. a sweep of learning rates (50 steps from x_0 = 1) ==\n");
    printf("%8s %12s %14s   %s\n", "alpha", "|1-4alpha|", "|x_50|", "verdict");
    const double sweep[] = {0.01, 0.05, 0.1, 0.2, 0.25, 0.3, 0.4, 0.45, 0.49, 0.5, 0.51, 0.55, 0.75, 1.0};
    double largest_ok = 0, smallest_bad = INFINITY;
    for (size_t i = 0; i < sizeof sweep / sizeof sweep[0]; i++) {
        double alpha = sweep[i], x = 1;
        for (int k = 0; k < 50; k++) {
            double f, df;
            if (eval(&f2, x, &f, &df)) return 1;
            x -= alpha * df;
        }
        double r = fabs(1 - 4 * alpha);
        /* from |x_0| = 1: shrinking means converging (|x_k| = |1 - 4 alpha|^k) */
        const char *verdict = fabs(x) < 1 - 1e-9 ? "converges" : fabs(x) > 1 + 1e-9 ? "diverges" : "oscillates";
        printf("%8g %12g %14.6g   sweep alpha %g: %s\n", alpha, r, fabs(x), alpha, verdict);
        int conv = fabs(x) < 1 - 1e-9;
        check(conv == (r < 1), "sweep verdict matches |1 - 4 alpha| < 1");
        if (conv && alpha > largest_ok) largest_ok = alpha;
        if (!conv && alpha < smallest_bad) smallest_bad = alpha;
    }
    printf("largest converging alpha in the sweep = %g\n", largest_ok);
    printf("smallest non-converging alpha in the sweep = %g\n", smallest_bad);
    printf("boundary: |1 - 4 alpha| < 1  <=>  0 < alpha < 0.5; at alpha = 0.5 x flips sign forever (1, -1, 1, ...)\n");
    check(largest_ok < 0.5 && smallest_bad >= 0.5, "boundary at 0.5");

    nb_graph_free(sq.g);
    nb_graph_free(f2.g);
    if (failures) {
        fprintf(stderr, "gradient_descent: %d self-check(s) failed\n", failures);
        return 1;
    }
    printf("\nall self-checks passed\n");
    return 0;
}
