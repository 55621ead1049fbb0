/* nabla demo: small lecture examples made runnable.
 *
 * demo gd: gradient descent on f(x) = 2x^2 from x0, x := x - alpha f'(x).
 * Since f'(x) = 4x, one step multiplies x by (1 - 4 alpha): the iterates are
 * x_k = (1 - 4 alpha)^k x0, which go to the minimum 0 when |1 - 4 alpha| < 1
 * (0 < alpha < 0.5) and blow up when |1 - 4 alpha| > 1. f'(x) is not written
 * by hand here: it is nabla's reverse mode on the graph f = 2 * x^2. */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_text =
    "usage: nabla demo gd [--lr ALPHA] [--x0 X] [--steps K] [--plot gd.svg]\n"
    "\n"
    "Gradient descent on f(x) = 2x^2, the lecture's 1-D example: x := x - alpha f'(x).\n"
    "f'(x) is computed by nabla's autodiff (a graph f = 2 * pow(x, 2) and nb_backward),\n"
    "not by hand. Prints step, x, f(x), f'(x) for every step. Since f'(x) = 4x, each step\n"
    "multiplies x by (1 - 4 alpha): it converges for 0 < alpha < 0.5 and diverges for\n"
    "alpha > 0.5 (alpha 0.1: 0.6, 0.36, 0.216, ...; alpha 1: -3, 9, -27, ...).\n"
    "\n"
    "  --lr ALPHA   learning rate alpha (default 0.1)\n"
    "  --x0 X       starting point (default 1)\n"
    "  --steps K    number of steps (default 10)\n"
    "  --plot F     draw the path of x over the curve f(x) = 2x^2 as an SVG file\n";

static int demo_gd(int argc, char **argv)
{
    double alpha = 0.1, x = 1;
    long long steps = 10;
    const char *plot = NULL;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (!strcmp(k, "--lr") || !strcmp(k, "--alpha")) {
            if (!v || !cli_parse_double(v, &alpha) || !isfinite(alpha))
                return cli_usage_error("demo", "bad value for %s (a number, e.g. 0.1)", k);
        } else if (!strcmp(k, "--x0")) {
            if (!v || !cli_parse_double(v, &x) || !isfinite(x))
                return cli_usage_error("demo", "bad value for %s (a number, e.g. 1)", k);
        } else if (!strcmp(k, "--plot")) {
            if (!v) return cli_usage_error("demo", "%s", "--plot needs a file name");
            plot = v;
        } else if (!strcmp(k, "--steps")) {
            if (!v || !cli_parse_int(v, 0, 1000000, &steps))
                return cli_usage_error("demo", "bad value for %s (an integer 0..1000000)", k);
        } else {
            return cli_usage_error("demo", "gd: unknown option '%s'", k);
        }
        i++;
    }

    /* The graph f(x) = 2 * x^2 with x a scalar parameter. */
    nb_graph *g = nb_graph_new();
    nb_node *xn = g ? nb_param(g, "x", 0, NULL) : NULL;
    nb_node *f = nb_scale(nb_pow(xn, 2), 2);
    if (!f) {
        nb_graph_free(g);
        return cli_fail("demo", "building f(x) = 2x^2");
    }
    printf("gradient descent on f(x) = 2x^2: x := x - alpha f'(x), alpha = %g, x0 = %g\n", alpha, x);
    printf("f'(x) by reverse-mode autodiff (nabla's nb_backward); each step multiplies x by 1 - 4 alpha = %g\n\n",
           1 - 4 * alpha);
    printf("%6s %14s %14s %14s\n", "step", "x", "f(x)", "f'(x)");
    double x0 = x;
    int rc = 0, npath = 0;
    double *path = plot ? malloc((size_t)(steps + 1) * sizeof *path) : NULL;
    if (plot && !path) {
        nb_graph_free(g);
        return cli_usage_error("demo", "%s", "out of memory for --plot");
    }
    for (long long k = 0; k <= steps; k++) {
        nb_value(xn)->data[0] = (nb_real)x;
        if (nb_forward(g) || nb_backward(f)) {
            rc = cli_fail("demo", "evaluating f and f'");
            break;
        }
        double fx = nb_value(f)->data[0], dfx = nb_grad(xn)->data[0];
        printf("%6lld %14g %14g %14g\n", k, x, fx, dfx);
        if (path) path[npath++] = x;
        if (k == steps) break;
        x = x - alpha * dfx;
        if (!isfinite(x)) {
            printf("%6lld %14g   (overflow: stopped)\n", k + 1, x);
            break;
        }
    }
    nb_graph_free(g);
    if (!rc && plot && cli_gd_svg(plot, path, npath, alpha)) rc = cli_fail("demo", "writing --plot");
    free(path);
    if (rc) return rc;
    double r = fabs(1 - 4 * alpha);
    printf("\n");
    if (alpha == 0)
        printf("alpha = 0: x never moves; converges for 0 < alpha < 0.5\n");
    else if (r > 1)
        printf("diverging: |x| grows because |1 - 4 alpha| = %g > 1; converges for 0 < alpha < 0.5\n", r);
    else if (r == 1 && x0 != 0)
        printf("oscillating: |1 - 4 alpha| = 1, so |x| stays at %g; converges for 0 < alpha < 0.5\n", fabs(x0));
    else
        printf("converging to the minimum x = 0: |1 - 4 alpha| = %g < 1 (converges for 0 < alpha < 0.5)\n", r);
    return cli_demo_gd_second_order(alpha, x0);
}

int cmd_demo(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "gd")) return demo_gd(argc - 1, argv + 1);
    return cli_usage_error("demo", "unknown demo '%s' (available: gd)", argv[1]);
}
