/* The chain rule, one link at a time.
 *
 *   y = f4(f3(f2(f1(x))))   with   f1(x) = x^2,  f2(u) = 3u + 1,
 *                                  f3(u) = tanh(u),  f4(u) = exp(u)
 *
 * Forward, left to right: u1 = f1(x), u2 = f2(u1), u3 = f3(u2), y = f4(u3).
 * Backward, right to left, each step multiplying by one local partial:
 *   dy/du3 = f4'(u3)
 *   dy/du2 = dy/du3 f3'(u2)
 *   dy/du1 = dy/du2 f2'(u1)
 *   dy/dx  = dy/du1 f1'(x)
 * so dy/dx = f4'(u3) f3'(u2) f2'(u1) f1'(x), which multiplied out is the
 * closed form 6x (1 - tanh^2(3x^2 + 1)) exp(tanh(3x^2 + 1)).
 *
 * The program builds y as a nabla graph, reads every dy/du_i with nb_grad()
 * after one nb_backward, reads every local partial with nb_jacobian() of one
 * link, and checks that all three routes give the same number. It exits 1 on
 * a mismatch. Each value line ends in "= <number>", printed to 17 digits. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "nabla.h"

/* A number with the digits that matter: the fewest that read back as the
 * same double (0.4, not 0.40000000000000002). Eight calls may share a printf. */
static const char *num(double v)
{
    static char buf[8][32];
    static int k;
    k = (k + 1) % 8;
    return nb_format_double(v, buf[k], sizeof buf[k]);
}

static int fail(const char *what)
{
    fprintf(stderr, "chain_rule: %s: %s\n", what, nb_last_error());
    return 1;
}

/* Equal to 1e-12, relative (absolute below 1). */
static int close_to(double a, double b)
{
    return fabs(a - b) <= 1e-12 * (fabs(b) > 1 ? fabs(b) : 1);
}

/* d node / d prev for two one-element nodes: the local partial of one link. */
static int local_partial(nb_node *node, nb_node *prev, double *out)
{
    nb_jacobian_opts o = {0};
    o.mode = NB_JAC_REV;
    nb_tensor *J = NULL;
    if (nb_jacobian(node, prev, &o, &J) != NB_OK) return fail("nb_jacobian");
    *out = J->data[0];
    nb_tensor_free(J);
    return 0;
}

int main(void)
{
    const double x0 = 0.4;
    int64_t shape[1] = {1};
    nb_graph *g = nb_graph_new();
    if (!g) return fail("nb_graph_new");
    nb_node *x = nb_input(g, "x", 1, shape);
    nb_node *one = nb_input(g, "one", 1, shape);
    if (!x || !one) return fail("nb_input");
    nb_value(x)->data[0] = x0;
    nb_value(one)->data[0] = 1;
    nb_set_requires_grad(x, 1); /* an input: ask for its gradient */

    nb_node *u1 = nb_pow(x, 2);                  /* f1(x) = x^2 */
    nb_node *u2 = nb_add(nb_scale(u1, 3), one);  /* f2(u) = 3u + 1 */
    nb_node *u3 = nb_tanh(u2);                   /* f3(u) = tanh(u) */
    nb_node *y = nb_exp(u3);                     /* f4(u) = exp(u) */
    if (!y) return fail("building the graph");

    if (nb_forward(g) != NB_OK) return fail("nb_forward");
    const double vu1 = nb_value(u1)->data[0], vu2 = nb_value(u2)->data[0];
    const double vu3 = nb_value(u3)->data[0], vy = nb_value(y)->data[0];

    /* One backward pass from y: every node on the path x -> y gets dy/dnode. */
    if (nb_backward(y) != NB_OK) return fail("nb_backward");
    nb_tensor *gy = nb_grad(y), *g3 = nb_grad(u3), *g2 = nb_grad(u2), *g1 = nb_grad(u1), *gx = nb_grad(x);
    if (!gy || !g3 || !g2 || !g1 || !gx) return fail("nb_grad");
    const double dy_dy = gy->data[0], dy_du3 = g3->data[0], dy_du2 = g2->data[0];
    const double dy_du1 = g1->data[0], dy_dx = gx->data[0];

    /* The local partials, each the 1x1 Jacobian of one link (these passes
     * reuse the gradient buffers, so the gradients were read first). */
    double p1, p2, p3, p4;
    if (local_partial(u1, x, &p1) || local_partial(u2, u1, &p2) || local_partial(u3, u2, &p3) ||
        local_partial(y, u3, &p4))
        return 1;
    const double product = p4 * p3 * p2 * p1;

    const double t = tanh(3 * x0 * x0 + 1);
    const double closed = 6 * x0 * (1 - t * t) * exp(t);

    printf("chain rule of y = f4(f3(f2(f1(x)))) with f1(x) = x^2, f2(u) = 3u + 1, f3(u) = tanh(u), f4(u) = exp(u)\n\n");
    printf("forward (left to right):\n");
    printf("  x  = %s\n", num(x0));
    printf("  u1 = x^2 = %s\n", num(vu1));
    printf("  u2 = 3 u1 + 1 = %s\n", num(vu2));
    printf("  u3 = tanh(u2) = %s\n", num(vu3));
    printf("  y  = exp(u3) = %s\n\n", num(vy));
    printf("local partials (the 1x1 Jacobian of each link):\n");
    printf("  f1'(x)  = 2x = %s\n", num(p1));
    printf("  f2'(u1) = 3 = %s\n", num(p2));
    printf("  f3'(u2) = 1 - tanh^2(u2) = %s\n", num(p3));
    printf("  f4'(u3) = exp(u3) = %s\n\n", num(p4));
    printf("backward (right to left), read with nb_grad():\n");
    printf("  dy/dy  = 1 = %s\n", num(dy_dy));
    printf("  dy/du3 = f4'(u3) = %s\n", num(dy_du3));
    printf("  dy/du2 = dy/du3 f3'(u2) = %s\n", num(dy_du2));
    printf("  dy/du1 = dy/du2 f2'(u1) = %s\n", num(dy_du1));
    printf("  dy/dx  = dy/du1 f1'(x) = %s\n\n", num(dy_dx));
    printf("product of the local partials:\n");
    printf("  f4'(u3) f3'(u2) f2'(u1) f1'(x) = %s x %s x %s x %s = %s\n", num(p4), num(p3), num(p2), num(p1),
           num(product));
    printf("closed form: dy/dx = 6x (1 - tanh^2(3x^2 + 1)) exp(tanh(3x^2 + 1)) = %s\n", num(closed));

    /* Each backward step must be the previous one times its local partial,
     * and the end the closed form. */
    int ok = close_to(dy_dy, 1) && close_to(dy_du3, p4) && close_to(dy_du2, dy_du3 * p3) &&
             close_to(dy_du1, dy_du2 * p2) && close_to(dy_dx, dy_du1 * p1) && close_to(dy_dx, closed) &&
             close_to(product, closed) && close_to(p1, 2 * x0) && close_to(p2, 3) && close_to(p3, 1 - t * t) &&
             close_to(p4, exp(t));
    printf("match: %s\n", ok ? "yes" : "no");
    nb_graph_free(g);
    return ok ? 0 : 1;
}
