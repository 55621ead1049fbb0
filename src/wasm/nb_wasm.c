/* The C API the web page calls (web/, docs/design.md "The lecture in the
 * browser"). Compiled to WebAssembly by scripts/web.sh together with the core
 * (core, kernels, graph, ops, autodiff, nn; no io, viz or cli); natively it
 * is tested by tests/f32/test_wasm_api.c, so the numbers the page shows are
 * the ones the tests assert.
 *
 * Conventions for a JavaScript caller: every pointer is an offset into the
 * module's memory; arrays are float32 (nb_real of the float build, the one
 * the CLI uses); a pointer returned by a function stays valid until the next
 * call on the same handle; a failure returns a status, NULL or NaN and
 * nbw_error() says why. Nothing here prints. */
#include "nb_wasm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef NB_DOUBLE
#error "the page API passes float32 arrays: build it with the float library"
#endif

NBW_EXPORT(nbw_error) const char *nbw_error(void) { return nb_last_error(); }
NBW_EXPORT(nbw_malloc) void *nbw_malloc(size_t bytes) { return malloc(bytes ? bytes : 1); }
NBW_EXPORT(nbw_free) void nbw_free(void *p) { free(p); }

/* ------------------------------------------------- the lecture's functions */

/* f(x) for panel 1 (gradient descent), elementwise on x of any shape:
 *   0: 2x^2                 f' = 4x               f'' = 4
 *   1: x^4 - 3x^2 + x       f' = 4x^3 - 6x + 1    f'' = 12x^2 - 6 (two minima)
 *   2: log(1 + e^(2x)) - x  f' = tanh(x)          f'' = 1 - tanh^2(x) (flat far out) */
static nb_node *gd_function(int fn, nb_node *x)
{
    switch (fn) {
    case NBW_GD_QUADRATIC: return nb_scale(nb_pow(x, 2), 2);
    case NBW_GD_DOUBLE_WELL: return nb_add(nb_sub(nb_pow(x, 4), nb_scale(nb_pow(x, 2), 3)), x);
    case NBW_GD_SOFTPLUS: return nb_sub(nb_softplus(nb_scale(x, 2)), x);
    default: nb_set_error(NB_ERR_ARG, "gradient descent: unknown function %d (0..%d)", fn, NBW_GD_COUNT - 1);
        return NULL;
    }
}

/* The lecture's x := x - alpha f'(x), f' by nabla's reverse mode: xs[0] = x0
 * and xs[t + 1] = xs[t] - lr * grads[t], with fs[t] = f(xs[t]) (steps + 1
 * values in xs and fs, steps in grads). A diverging run stops at the first
 * non-finite x (the rest is NaN). */
NBW_EXPORT(nbw_gd)
nb_status nbw_gd(int fn, double x0, double lr, int steps, float *xs, float *fs, float *grads)
{
    if (steps < 0 || steps > 100000 || !xs || !fs || !grads)
        return nb_set_error(NB_ERR_ARG, "gradient descent: steps must be 0..100000 and the arrays given");
    int64_t one[1] = {1};
    nb_graph *g = nb_graph_new();
    nb_node *x = g ? nb_input(g, "x", 1, one) : NULL;
    if (x) nb_set_requires_grad(x, 1);
    nb_node *y = x ? gd_function(fn, x) : NULL;
    nb_status s = y ? NB_OK : NB_ERR_ARG;
    double xv = x0;
    for (int t = 0; !s && t <= steps; t++) {
        xs[t] = (float)xv;
        fs[t] = NAN;
        if (t < steps) grads[t] = NAN;
        if (!isfinite(xv)) continue;
        nb_value(x)->data[0] = (nb_real)xv;
        if ((s = nb_forward(g))) break;
        fs[t] = (float)nb_value(y)->data[0];
        if (t == steps) break;
        if ((s = nb_backward(y))) break;
        grads[t] = (float)nb_grad(x)->data[0];
        /* in float, as the CLI's demo: x is an nb_real */
        xv = (double)(nb_real)(nb_value(x)->data[0] - (nb_real)lr * nb_grad(x)->data[0]);
    }
    nb_graph_free(g);
    return s;
}

/* f at n points (the curve panel 1 draws under the path). */
NBW_EXPORT(nbw_gd_curve)
nb_status nbw_gd_curve(int fn, const float *x, int n, float *y)
{
    if (n < 1 || !x || !y) return nb_set_error(NB_ERR_ARG, "gradient descent curve: need n >= 1 points");
    int64_t shape[1] = {n};
    nb_graph *g = nb_graph_new();
    nb_node *xn = g ? nb_input(g, "x", 1, shape) : NULL;
    nb_node *yn = xn ? gd_function(fn, xn) : NULL;
    nb_status s = yn ? NB_OK : NB_ERR_ARG;
    if (!s) {
        for (int i = 0; i < n; i++) nb_value(xn)->data[i] = x[i];
        s = nb_forward(g);
    }
    if (!s)
        for (int i = 0; i < n; i++) y[i] = (float)nb_value(yn)->data[i];
    nb_graph_free(g);
    return s;
}

/* One link of the chain for panel 2 (the page shows its closed form):
 *   0: u^2  1: 3u + 1  2: tanh u  3: e^u  4: sigmoid u  5: log(1 + e^u)
 *   6: sqrt(1 + u^2)  7: relu u */
static nb_node *chain_link(int f, nb_node *u, nb_node *one)
{
    switch (f) {
    case 0: return nb_pow(u, 2);
    case 1: return nb_add(nb_scale(u, 3), one);
    case 2: return nb_tanh(u);
    case 3: return nb_exp(u);
    case 4: return nb_sigmoid(u);
    case 5: return nb_softplus(u);
    case 6: return nb_sqrt(nb_add(nb_pow(u, 2), one));
    case 7: return nb_relu(u);
    default: nb_set_error(NB_ERR_ARG, "chain rule: unknown function %d (0..%d)", f, NBW_CHAIN_COUNT - 1);
        return NULL;
    }
}

/* y = f4(f3(f2(f1(x)))) with fs[0..3] = f1..f4. out (12 floats):
 *   out[0..3]  forward values u1, u2, u3, y;
 *   out[4..7]  the local partials du1/dx, du2/du1, du3/du2, dy/du3, each the
 *              1 x 1 Jacobian of one link (nb_jacobian, reverse mode);
 *   out[8..11] the products from one nb_backward(y), right to left:
 *              dy/du3, dy/du2, dy/du1, dy/dx (nb_grad of each node). */
NBW_EXPORT(nbw_chain)
nb_status nbw_chain(const int *fs, double x0, float *out)
{
    if (!fs || !out) return nb_set_error(NB_ERR_ARG, "chain rule: functions and output array required");
    int64_t one_shape[1] = {1};
    nb_graph *g = nb_graph_new();
    nb_node *u[5] = {g ? nb_input(g, "x", 1, one_shape) : NULL};
    nb_node *one = g ? nb_input(g, "one", 1, one_shape) : NULL;
    for (int i = 0; i < 4 && u[i] && one; i++) u[i + 1] = chain_link(fs[i], u[i], one);
    nb_status s = u[4] ? NB_OK : NB_ERR_ARG;
    if (!s) {
        nb_value(u[0])->data[0] = (nb_real)x0;
        nb_value(one)->data[0] = 1;
        nb_set_requires_grad(u[0], 1);
        s = nb_forward(g);
    }
    for (int i = 0; !s && i < 4; i++) out[i] = (float)nb_value(u[i + 1])->data[0];
    if (!s) s = nb_backward(u[4]);
    for (int i = 0; !s && i < 4; i++) {
        nb_tensor *gr = nb_grad(u[3 - i]);
        if (!gr) s = nb_set_error(NB_ERR_ARG, "chain rule: no gradient for u%d", 3 - i);
        else out[8 + i] = (float)gr->data[0];
    }
    /* The local partials after the gradients were read (these passes reuse
     * the scratch pass, not the gradients, but reading first is simplest). */
    nb_jacobian_opts o = {.mode = NB_JAC_REV};
    for (int i = 0; !s && i < 4; i++) {
        nb_tensor *J = NULL;
        s = nb_jacobian(u[i + 1], u[i], &o, &J);
        if (!s) out[4 + i] = (float)J->data[0];
        nb_tensor_free(J);
    }
    nb_graph_free(g);
    return s;
}
