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

typedef struct {
    double lr, x0;
    long long steps;
    const char *plot;
} gd_args;

#define F(field) offsetof(gd_args, field)
static const cli_opt gd_opts[] = {
    {"--lr", "--alpha", CLI_REAL, F(lr), "ALPHA", "0.1", "learning rate alpha", 0, 0, 0, NULL},
    {"--x0", NULL, CLI_REAL, F(x0), "X", "1", "starting point", 0, 0, 0, NULL},
    {"--steps", NULL, CLI_INT, F(steps), "K", "10", "number of steps", 0, 0, 1000000, NULL},
    {"--plot", NULL, CLI_STR, F(plot), "F.svg", NULL, "draw the path of x over the curve f(x) = 2x^2 as an SVG file", 0, 0,
     0, NULL},
};
#undef F

static const cli_spec gd_spec = {
    "demo gd", "[--lr ALPHA] [--x0 X] [--steps K] [--plot gd.svg]",
    "Gradient descent on f(x) = 2x^2, the lecture's 1-D example: x := x - alpha f'(x).\n"
    "f'(x) is computed by nabla's autodiff (a graph f = 2 * pow(x, 2) and nb_backward),\n"
    "not by hand. Prints step, x, f(x), f'(x) for every step. Since f'(x) = 4x, each step\n"
    "multiplies x by (1 - 4 alpha): it converges for 0 < alpha < 0.5 and diverges for\n"
    "alpha > 0.5 (alpha 0.1: 0.6, 0.36, 0.216, ...; alpha 1: -3, 9, -27, ...).\n",
    gd_opts, CLI_NOPTS(gd_opts), NULL};

static int parse_gd(int argc, char **argv, gd_args *a)
{
    *a = (gd_args){0};
    int r = cli_parse(&gd_spec, argc, argv, a);
    if (r >= 0) return r;
    if (a->plot && !cli_is_svg_name(a->plot))
        return cli_usage_error("demo gd", "--plot writes SVG: give a file name ending in .svg, got '%s'", a->plot);
    return -1;
}

/* The verdict on the run: converging, oscillating or diverging. */
static void print_verdict(double alpha, double x0)
{
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
}

static int demo_gd(int argc, char **argv)
{
    gd_args ga;
    int pr = parse_gd(argc, argv, &ga);
    if (pr >= 0) return pr;
    double alpha = ga.lr, x = ga.x0;
    long long steps = ga.steps;
    const char *plot = ga.plot;

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
    print_verdict(alpha, x0);
    return cli_demo_gd_second_order(alpha, x0);
}

static const char *demo_usage = "usage: nabla demo gd [options]   (nabla demo gd --help for the options)\n";

int cmd_demo_check_args(int argc, char **argv)
{
    if (argc < 2) return 2;
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) return 0;
    if (!strcmp(argv[1], "gd")) {
        gd_args a;
        return parse_gd(argc - 1, argv + 1, &a);
    }
    return cli_usage_error("demo", "unknown demo '%s' (available: gd)", argv[1]);
}

int cmd_demo(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(demo_usage, argc < 2 ? stderr : stdout);
        if (argc >= 2) cli_print_help(&gd_spec, stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "gd")) return demo_gd(argc - 1, argv + 1);
    const char *names[1] = {"gd"};
    if (cli_did_you_mean(argv[1], names, 1))
        return cli_usage_error("demo", "unknown demo '%s' (did you mean gd?)", argv[1]);
    return cli_usage_error("demo", "unknown demo '%s' (available: gd)", argv[1]);
}
