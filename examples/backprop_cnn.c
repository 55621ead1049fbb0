/* Backpropagation through Conv2D -> Conv2D -> Flatten -> Dense -> Dense.
 *
 *   X (1,6,6,1) -conv K1 (3,3,1,2), b1-> Z1 -relu-> A1 (1,4,4,2)
 *               -conv K2 (3,3,2,3), b2-> Z2 -relu-> A2 (1,2,2,3)
 *               -flatten-> A3 (1,12)
 *               -dense W4 (12,5), b4-> Z4 -relu-> A4 (1,5)
 *               -dense W5 (5,3), b5-> Z5 -softmax-> Y_hat (1,3)
 *   J = -sum_k y_k log Y_hat_k   (cross-entropy with the one-hot label y)
 *
 * One nb_backward(J) runs the chain rule right to left; every node on the
 * path keeps its gradient, read here with nb_grad(): dJ/dY_hat, dJ/dZ5,
 * dJ/dA4, ..., dJ/dA1 and the parameters' dJ/dW5 ... dJ/db1. Each has the
 * shape of what it differentiates (asserted). The closed forms of the last
 * layers are checked (dJ/dZ5 = Y_hat - y, dJ/dA4 = dJ/dZ5 W5^T,
 * dJ/dW5 = A4^T dJ/dZ5, dJ/db5 = dJ/dZ5), dJ/dK1 against finite differences,
 * and one step W := W - alpha dJ/dW must lower the loss. Exits 1 otherwise. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nabla.h"

static int failures = 0;

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "backprop_cnn: self-check failed: %s\n", what);
        failures++;
    }
}

static int die(const char *what)
{
    fprintf(stderr, "backprop_cnn: %s: %s\n", what, nb_last_error());
    return 1;
}

static int same_shape(const nb_tensor *a, const nb_tensor *b)
{
    if (a->rank != b->rank) return 0;
    for (int d = 0; d < a->rank; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return 1;
}

/* Prints "dJ/dNAME shape: (...)  [= shape of NAME]" and the first values. */
static void show(const char *name, nb_node *n)
{
    const nb_tensor *g = nb_grad(n), *v = nb_value(n);
    char s1[96], s2[96];
    if (!g) {
        printf("dJ/d%s: no gradient\n", name);
        check(0, name);
        return;
    }
    printf("dJ/d%-5s shape: %-14s (%s shape %s)", name, nb_shape_str(g->rank, g->shape, s1, sizeof s1), name,
           nb_shape_str(v->rank, v->shape, s2, sizeof s2));
    check(same_shape(g, v), "gradient shape = shape of what it differentiates");
    double mx = 0;
    for (int64_t i = 0; i < g->size; i++) mx = fmax(mx, fabs(g->data[i]));
    printf("  max|.| = %.4g\n   ", mx);
    check(mx > 0, "gradient not all zero");
    int64_t show_n = g->size < 8 ? g->size : 8;
    for (int64_t i = 0; i < show_n; i++) printf(" %10.6f", g->data[i] == 0 ? 0.0 : g->data[i]); /* no "-0" */
    printf("%s\n", g->size > show_n ? " ..." : "");
}

int main(void)
{
    nb_graph *g = nb_graph_new();
    if (!g) return die("graph");
    int64_t xs[4] = {1, 6, 6, 1}, k1s[4] = {3, 3, 1, 2}, b1s[1] = {2}, k2s[4] = {3, 3, 2, 3}, b2s[1] = {3};
    int64_t w4s[2] = {12, 5}, b4s[1] = {5}, w5s[2] = {5, 3}, b5s[1] = {3}, ys[2] = {1, 3};
    nb_node *X = nb_input(g, "X", 4, xs), *Y = nb_input(g, "y", 2, ys);
    nb_node *K1 = nb_param(g, "K1", 4, k1s), *b1 = nb_param(g, "b1", 1, b1s);
    nb_node *K2 = nb_param(g, "K2", 4, k2s), *b2 = nb_param(g, "b2", 1, b2s);
    nb_node *W4 = nb_param(g, "W4", 2, w4s), *b4 = nb_param(g, "b4", 1, b4s);
    nb_node *W5 = nb_param(g, "W5", 2, w5s), *b5 = nb_param(g, "b5", 1, b5s);
    nb_conv2d_opts valid = {1, 1, NB_PAD_VALID, 0};
    nb_node *Z1 = nb_conv2d(X, K1, b1, &valid), *A1 = nb_relu(Z1);
    nb_node *Z2 = nb_conv2d(A1, K2, b2, &valid), *A2 = nb_relu(Z2);
    nb_node *A3 = nb_flatten(A2);
    nb_node *Z4 = nb_add(nb_matmul(A3, W4), b4), *A4 = nb_relu(Z4);
    nb_node *Z5 = nb_add(nb_matmul(A4, W5), b5), *Yh = nb_softmax(Z5);
    nb_node *J = nb_neg(nb_sum(nb_mul(Y, nb_log(Yh)), 0, NULL, 0));
    if (!J) return die("building the network");

    /* Deterministic values: an image with a bright diagonal, weights from a
     * seeded generator; the label is class 2. */
    nb_rng r;
    nb_rng_seed(&r, 7);
    for (int i = 0; i < 36; i++) nb_value(X)->data[i] = (i / 6 == i % 6) ? 1.0 : 0.1 * (i % 5);
    nb_node *params[8] = {K1, b1, K2, b2, W4, b4, W5, b5};
    for (int p = 0; p < 8; p++) nb_tensor_fill_uniform(nb_value(params[p]), &r, -0.6, 0.6);
    nb_value(Y)->data[2] = 1;

    if (nb_forward(g) || nb_backward(J)) return die("forward/backward");
    const double loss0 = nb_value(J)->data[0];
    char s[96];
    printf("network: X %s -> conv K1 relu -> A1 %s -> conv K2 relu -> A2 %s -> flatten -> A3 %s\n",
           nb_shape_str(4, xs, s, sizeof s), "(1, 4, 4, 2)", "(1, 2, 2, 3)", "(1, 12)");
    printf("         -> dense W4 relu -> A4 (1, 5) -> dense W5 -> Z5 (1, 3) -> softmax -> Y_hat (1, 3)\n");
    printf("Y_hat = [%.6f, %.6f, %.6f], label y = class 2\n", nb_value(Yh)->data[0], nb_value(Yh)->data[1],
           nb_value(Yh)->data[2]);
    printf("loss before = %.12f\n\n", loss0);

    printf("-- backward, right to left: activations --\n");
    show("Y_hat", Yh);
    show("Z5", Z5);
    show("A4", A4);
    show("Z4", Z4);
    show("A3", A3);
    show("A2", A2);
    show("Z2", Z2);
    show("A1", A1);
    show("Z1", Z1);
    printf("\n-- parameters --\n");
    show("W5", W5);
    show("b5", b5);
    show("W4", W4);
    show("b4", b4);
    show("K2", K2);
    show("b2", b2);
    show("K1", K1);
    show("b1", b1);

    /* Closed forms of the last layers. */
    const nb_real *yh = nb_value(Yh)->data, *dz5 = nb_grad(Z5)->data, *a4 = nb_value(A4)->data;
    double e1 = 0, e2 = 0, e3 = 0, e4 = 0;
    for (int k = 0; k < 3; k++) {
        e1 = fmax(e1, fabs(dz5[k] - (yh[k] - (k == 2))));
        e4 = fmax(e4, fabs(nb_grad(b5)->data[k] - dz5[k]));
    }
    for (int j = 0; j < 5; j++) {
        double v = 0;
        for (int k = 0; k < 3; k++) {
            v += dz5[k] * nb_value(W5)->data[j * 3 + k];
            e3 = fmax(e3, fabs(nb_grad(W5)->data[j * 3 + k] - a4[j] * dz5[k]));
        }
        e2 = fmax(e2, fabs(nb_grad(A4)->data[j] - v));
    }
    printf("\nclosed forms: |dJ/dZ5 - (Y_hat - y)| = %.3g, |dJ/dA4 - dJ/dZ5 W5^T| = %.3g,\n", e1, e2);
    printf("              |dJ/dW5 - A4^T dJ/dZ5| = %.3g, |dJ/db5 - dJ/dZ5| = %.3g\n", e3, e4);
    check(e1 < 1e-14 && e2 < 1e-14 && e3 < 1e-14 && e4 < 1e-14, "closed forms of the last layer");

    /* Copy the gradients before other passes reuse the buffers. */
    nb_tensor *grads[8];
    for (int p = 0; p < 8; p++) grads[p] = nb_tensor_clone(nb_grad(params[p]));

    nb_gradcheck_result gc;
    if (nb_gradcheck(J, K1, NULL, &gc)) return die("gradcheck");
    printf("gradcheck dJ/dK1 against central differences: max error rev %.3g, fwd %.3g: %s\n", gc.max_err_rev,
           gc.max_err_fwd, gc.ok ? "ok" : "FAILED");
    check(gc.ok && gc.max_abs_jacobian > 0, "gradcheck K1");

    /* One step of gradient descent on every parameter. */
    const double alpha = 0.1;
    for (int p = 0; p < 8; p++) {
        nb_tensor *v = nb_value(params[p]);
        for (int64_t i = 0; i < v->size; i++) v->data[i] -= alpha * grads[p]->data[i];
        nb_tensor_free(grads[p]);
    }
    if (nb_forward(g)) return die("forward");
    const double loss1 = nb_value(J)->data[0];
    printf("\none step W := W - alpha dJ/dW with alpha = %g on all 8 parameters:\n", alpha);
    printf("loss before = %.12f\nloss after = %.12f\n", loss0, loss1);
    check(loss1 < loss0, "the loss goes down");
    nb_graph_free(g);
    if (failures) {
        fprintf(stderr, "backprop_cnn: %d self-check(s) failed\n", failures);
        return 1;
    }
    printf("\nall self-checks passed\n");
    return 0;
}
