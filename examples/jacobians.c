/* Jacobians of scalars, vectors, matrices and tensors.
 *
 * The Jacobian of an output Y with respect to an input X has shape
 * Y.shape + X.shape: entry [i..., j...] is dY[i...]/dX[j...]. For a scalar
 * loss and a matrix W it has W's shape (the gradient); for a vector of a
 * vector it is a matrix; for the layers of a CNN it is a tensor of rank 8.
 *
 *  1. The full Jacobian of each layer of a small CNN with respect to its input
 *     and its parameters (nb_jacobian): shape, sparsity (fraction of exact
 *     zeros) and size.
 *  2. What the full Jacobians would take for the lecture's CNN (conv2d 32 3
 *     relu; conv2d 64 3 relu; maxpool 2; flatten; dense 128 relu; dense 10) at
 *     batch 128, and nb_jacobian refusing the biggest with NB_ERR_TOO_LARGE
 *     before allocating anything.
 *  3. Why backprop never builds them: it needs only v^T J (a VJP) for one v.
 *  4. The same Jacobian entries by reverse mode, forward mode and finite
 *     differences side by side.
 * Exits 1 if a self-check fails. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nabla.h"

static int failures = 0;

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "jacobians: self-check failed: %s\n", what);
        failures++;
    }
}

static int die(const char *what)
{
    fprintf(stderr, "jacobians: %s: %s\n", what, nb_last_error());
    return 1;
}

static const char *human(double bytes, char *buf, size_t n)
{
    const char *u[] = {"B", "KB", "MB", "GB", "TB", "PB"};
    int k = 0;
    while (bytes >= 1000 && k < 5) bytes /= 1000, k++;
    snprintf(buf, n, "%.3g %s", bytes, u[k]);
    return buf;
}

/* Full Jacobian of y w.r.t. x: prints its shape, checks it is y.shape +
 * x.shape, and its sparsity. */
static int layer_jacobian(const char *layer, const char *yname, nb_node *y, const char *xname, nb_node *x)
{
    nb_tensor *J = NULL;
    nb_jacobian_opts o = {0};
    if (nb_jacobian(y, x, &o, &J)) return die(layer);
    const nb_tensor *yv = nb_value(y), *xv = nb_value(x);
    int ok = J->rank == yv->rank + xv->rank;
    for (int d = 0; ok && d < yv->rank; d++) ok = J->shape[d] == yv->shape[d];
    for (int d = 0; ok && d < xv->rank; d++) ok = J->shape[yv->rank + d] == xv->shape[d];
    check(ok, "Jacobian shape = out.shape + in.shape");
    int64_t zeros = 0;
    for (int64_t i = 0; i < J->size; i++) zeros += J->data[i] == 0;
    char s1[96], s2[96], s3[128];
    printf("%-8s d%s/d%-3s shape %-28s = %s + %s, %6lld entries, sparsity %.3f\n", layer, yname, xname,
           nb_shape_str(J->rank, J->shape, s3, sizeof s3), nb_shape_str(yv->rank, yv->shape, s1, sizeof s1),
           nb_shape_str(xv->rank, xv->shape, s2, sizeof s2), (long long)J->size, (double)zeros / (double)J->size);
    nb_tensor_free(J);
    return 0;
}

static int small_cnn(void)
{
    printf("== 1. The full Jacobian of each layer of a small CNN (batch 1) ==\n");
    nb_graph *g = nb_graph_new();
    int64_t xs[4] = {1, 6, 6, 1}, ks[4] = {3, 3, 1, 2}, bs[1] = {2}, ws[2] = {8, 3}, cs[1] = {3};
    nb_node *X = nb_input(g, "X", 4, xs), *K = nb_param(g, "K", 4, ks), *b = nb_param(g, "b", 1, bs);
    nb_node *W = nb_param(g, "W", 2, ws), *c = nb_param(g, "c", 1, cs);
    nb_conv2d_opts valid = {1, 1, NB_PAD_VALID, 0};
    nb_node *Z1 = nb_conv2d(X, K, b, &valid), *A1 = nb_relu(Z1), *P = nb_max_pool2d(A1, 2, 0, NB_PAD_VALID);
    nb_node *F = nb_flatten(P), *Z = nb_add(nb_matmul(F, W), c);
    if (!Z) return die("building the CNN");
    nb_rng r;
    nb_rng_seed(&r, 3);
    nb_tensor_fill_uniform(nb_value(X), &r, 0, 1);
    nb_tensor_fill_uniform(nb_value(K), &r, -0.5, 0.5);
    nb_tensor_fill_uniform(nb_value(b), &r, -0.1, 0.1);
    nb_tensor_fill_uniform(nb_value(W), &r, -0.5, 0.5);
    nb_tensor_fill_uniform(nb_value(c), &r, -0.1, 0.1);
    nb_set_requires_grad(X, 1);
    if (layer_jacobian("conv2d", "Z1", Z1, "X", X) || layer_jacobian("conv2d", "Z1", Z1, "K", K) ||
        layer_jacobian("conv2d", "Z1", Z1, "b", b) || layer_jacobian("relu", "A1", A1, "Z1", Z1) ||
        layer_jacobian("maxpool", "P", P, "A1", A1) || layer_jacobian("flatten", "F", F, "P", P) ||
        layer_jacobian("dense", "Z", Z, "F", F) || layer_jacobian("dense", "Z", Z, "W", W) ||
        layer_jacobian("dense", "Z", Z, "c", c) || layer_jacobian("network", "Z", Z, "X", X))
        return 1;
    printf("(conv: each output sees only a 3x3 window; relu and flatten: diagonal; maxpool: one 1 per\n"
           " output; dense w.r.t. W: output k depends only on column k of W)\n\n");
    nb_graph_free(g);
    return 0;
}

static int lecture_cnn(void)
{
    printf("== 2. The lecture's CNN at batch 128: what the full Jacobians would take ==\n");
    enum { N = 128 };
    nb_graph *g = nb_graph_new();
    int64_t xs[4] = {N, 28, 28, 1}, k1[4] = {3, 3, 1, 32}, b1[1] = {32}, k2[4] = {3, 3, 32, 64}, b2[1] = {64};
    int64_t w3[2] = {9216, 128}, b3[1] = {128}, w4[2] = {128, 10}, b4[1] = {10};
    nb_node *X = nb_input(g, "X", 4, xs);
    nb_node *K1 = nb_param(g, "K1", 4, k1), *B1 = nb_param(g, "b1", 1, b1);
    nb_node *K2 = nb_param(g, "K2", 4, k2), *B2 = nb_param(g, "b2", 1, b2);
    nb_node *W3 = nb_param(g, "W3", 2, w3), *B3 = nb_param(g, "b3", 1, b3);
    nb_node *W4 = nb_param(g, "W4", 2, w4), *B4 = nb_param(g, "b4", 1, b4);
    nb_conv2d_opts valid = {1, 1, NB_PAD_VALID, 0};
    nb_node *A1 = nb_relu(nb_conv2d(X, K1, B1, &valid));
    nb_node *A2 = nb_relu(nb_conv2d(A1, K2, B2, &valid));
    nb_node *P = nb_max_pool2d(A2, 2, 0, NB_PAD_VALID), *F = nb_flatten(P);
    nb_node *A3 = nb_relu(nb_add(nb_matmul(F, W3), B3)), *Z = nb_add(nb_matmul(A3, W4), B4);
    if (!Z) return die("building the lecture CNN");
    nb_node_set_name(A1, "A1"), nb_node_set_name(A2, "A2");
    struct {
        const char *layer;
        nb_node *out, *in;
        const char *in_name;
    } rows[] = {{"conv2d 32 3 relu", A1, X, "input"},  {"", A1, K1, "kernel"},
                {"conv2d 64 3 relu", A2, A1, "input"}, {"", A2, K2, "kernel"},
                {"maxpool 2", P, A2, "input"},         {"flatten", F, P, "input"},
                {"dense 128 relu", A3, F, "input"},    {"", A3, W3, "kernel"},
                {"dense 10", Z, A3, "input"},          {"", Z, W4, "kernel"},
                {"whole network", Z, X, "input"}};
    printf("%-17s %-7s %-18s %-18s %22s %12s\n", "layer", "d/d", "out shape", "in shape", "Jacobian entries",
           "float32");
    double biggest = 0, total = 0;
    int ib = 0;
    for (int i = 0; i < (int)(sizeof rows / sizeof rows[0]); i++) {
        const nb_tensor *o = nb_value(rows[i].out), *x = nb_value(rows[i].in);
        double e = (double)o->size * (double)x->size, bytes = 4 * e;
        char s1[64], s2[64], h[32];
        printf("%-17s %-7s %-18s %-18s %22.0f %12s\n", rows[i].layer, rows[i].in_name,
               nb_shape_str(o->rank, o->shape, s1, sizeof s1), nb_shape_str(x->rank, x->shape, s2, sizeof s2), e,
               human(bytes, h, sizeof h));
        if (i < 10) total += bytes;
        if (bytes > biggest) biggest = bytes, ib = i;
    }
    char h1[32], h2[32];
    printf("largest layer Jacobian bytes = %.0f (%s, %s w.r.t. its %s)\n", biggest, human(biggest, h1, sizeof h1),
           rows[ib].layer, rows[ib].in_name);
    printf("all layer Jacobians together bytes = %.0f (%s)\n", total, human(total, h2, sizeof h2));
    check(ib == 2 && biggest == 4.0 * (N * 24.0 * 24 * 64) * (N * 26.0 * 26 * 32), "the biggest is conv2 w.r.t. A1");

    nb_tensor *J = NULL;
    nb_jacobian_opts jo = {0};
    nb_status st = nb_jacobian(A2, A1, &jo, &J);
    printf("nb_jacobian(A2, A1) -> %s: %s\n", nb_status_name(st), nb_last_error());
    check(st == NB_ERR_TOO_LARGE && J == NULL, "nb_jacobian refuses the biggest Jacobian");
    printf("refused = %d\n\n", st == NB_ERR_TOO_LARGE);
    nb_tensor_free(J);

    printf("== 3. Why backpropagation never builds them ==\n");
    printf("backprop needs dJ/dA1 = dJ/dA2 . dA2/dA1: a vector times the Jacobian (a VJP), which the\n"
           "conv2d op computes directly from dJ/dA2 and K2 (a transposed convolution) without the\n"
           "%s matrix. Memory: one gradient the size of A1 = %lld numbers (%s).\n",
           human(biggest, h1, sizeof h1), (long long)nb_value(A1)->size,
           human(4.0 * (double)nb_value(A1)->size, h2, sizeof h2));
    printf("cost: one VJP costs about one forward pass; building dA2/dA1 row by row would take\n"
           "%lld VJPs, one per element of A2.\n\n", (long long)nb_value(A2)->size);
    nb_graph_free(g);
    return 0;
}

static int three_ways(void)
{
    printf("== 4. The same entries three ways: reverse mode, forward mode, finite differences ==\n");
    nb_graph *g = nb_graph_new();
    int64_t xs[2] = {1, 3}, ws[2] = {3, 2};
    nb_node *x = nb_input(g, "x", 2, xs), *W = nb_param(g, "W", 2, ws);
    nb_node *y = nb_tanh(nb_matmul(x, W)); /* y = tanh(x W): (1,2) */
    if (!y) return die("building y = tanh(x W)");
    const double xv[3] = {0.5, -1.0, 2.0}, wv[6] = {0.3, -0.2, 0.1, 0.4, -0.5, 0.35};
    memcpy(nb_value(x)->data, xv, sizeof xv);
    memcpy(nb_value(W)->data, wv, sizeof wv);
    nb_set_requires_grad(x, 1);
    nb_tensor *J[3] = {NULL, NULL, NULL};
    const nb_jac_mode modes[3] = {NB_JAC_REV, NB_JAC_FWD, NB_JAC_NUMERIC};
    for (int m = 0; m < 3; m++) {
        nb_jacobian_opts o = {.mode = modes[m]};
        if (nb_jacobian(y, x, &o, &J[m])) return die(nb_jac_mode_name(modes[m]));
    }
    char s[96];
    printf("y = tanh(x W), x (1, 3), W (3, 2): dy/dx has shape %s\n", nb_shape_str(J[0]->rank, J[0]->shape, s, sizeof s));
    printf("%-14s %22s %22s %22s %22s\n", "entry", "reverse (VJP)", "forward (JVP)", "finite diff.", "closed form");
    double worst = 0, worst_fd = 0;
    for (int i = 0; i < 2; i++) {
        double z = 0;
        for (int k = 0; k < 3; k++) z += xv[k] * wv[k * 2 + i];
        for (int j = 0; j < 3; j++) {
            double exact = (1 - tanh(z) * tanh(z)) * wv[j * 2 + i];
            double a = J[0]->data[i * 3 + j], b = J[1]->data[i * 3 + j], n = J[2]->data[i * 3 + j];
            printf("J[0,%d,0,%d]     %22.17f %22.17f %22.17f %22.17f\n", i, j, a, b, n, exact);
            worst = fmax(worst, fmax(fabs(a - exact), fabs(b - exact)));
            worst_fd = fmax(worst_fd, fabs(n - exact));
        }
    }
    printf("max |rev or fwd - closed form| = %.3g\n", worst);
    printf("max |finite difference - closed form| = %.3g (central differences, eps 1e-6)\n", worst_fd);
    printf("reverse mode: one VJP per output element (2 here); forward mode: one JVP per input element (3);\n"
           "finite differences: two evaluations per input element, and only about 10 correct digits.\n");
    check(worst < 1e-15 && worst_fd < 1e-8, "three ways agree");
    for (int m = 0; m < 3; m++) nb_tensor_free(J[m]);
    nb_graph_free(g);
    return 0;
}

int main(void)
{
    if (small_cnn() || lecture_cnn() || three_ways()) return 1;
    if (failures) {
        fprintf(stderr, "jacobians: %d self-check(s) failed\n", failures);
        return 1;
    }
    printf("\nall self-checks passed\n");
    return 0;
}
