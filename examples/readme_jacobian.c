/* The README's C example, whole: one dense layer A1 = tanh(A0 W + b) on
 * N = 4 examples of 3 features, its Jacobian with respect to W, and that
 * Jacobian against its closed form.
 *
 * J has shape out.shape + W.shape = (4, 2) + (3, 2), and
 *   J[n, j, k, l] = dA1[n, j] / dW[k, l] = (1 - A1[n, j]^2) A0[n, k] [j = l]:
 * a unit j depends only on its own column of W. So half of J is zero by
 * structure, and the other half is a real derivative (the inputs, weights
 * and biases are filled, not left at zero: with A0 = 0 every entry of J
 * would be 0). The fills, also used by tests/f64/test_examples.c:
 *   A0[n, k] = 0.25 (n + 1) - 0.4 k + 0.1,  W[k, l] = 0.3 - 0.2 k + 0.1 l,
 *   b = (0.1, -0.2).
 * Lines read "<name> = <number>"; exits 1 when J is not its closed form (to
 * 1e-12 with the double library the tests link, 1e-6 with the float one). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nabla.h"

int main(void)
{
    nb_graph *g = nb_graph_new();
    int64_t xs[2] = {4, 3}, ws[2] = {3, 2}, bs[1] = {2};
    nb_node *x = nb_input(g, "x", 2, xs), *w = nb_param(g, "w", 2, ws), *b = nb_param(g, "b", 1, bs);
    nb_node *y = nb_tanh(nb_add(nb_matmul(x, w), b)); /* A1 = g(A0 W + b) */
    if (!y) return fprintf(stderr, "%s\n", nb_last_error()), 1;
    nb_real *A0 = nb_value(x)->data, *W = nb_value(w)->data, *B = nb_value(b)->data;
    for (int n = 0; n < 4; n++)
        for (int k = 0; k < 3; k++) A0[n * 3 + k] = 0.25 * (n + 1) - 0.4 * k + 0.1;
    for (int k = 0; k < 3; k++)
        for (int l = 0; l < 2; l++) W[k * 2 + l] = 0.3 - 0.2 * k + 0.1 * l;
    B[0] = 0.1, B[1] = -0.2;
    nb_tensor *J;
    if (nb_jacobian(y, w, NULL, &J)) /* shape (4, 2, 3, 2) = out.shape + w.shape; runs the forward pass */
        return fprintf(stderr, "%s\n", nb_last_error()), 1;
    const nb_real *A1 = nb_value(y)->data;
    double worst = 0;
    int nonzero = 0;
    for (int n = 0; n < 4; n++)
        for (int j = 0; j < 2; j++)
            for (int k = 0; k < 3; k++)
                for (int l = 0; l < 2; l++) {
                    const double v = J->data[((n * 2 + j) * 3 + k) * 2 + l];
                    const double closed = j == l ? (1 - A1[n * 2 + j] * A1[n * 2 + j]) * A0[n * 3 + k] : 0;
                    worst = fmax(worst, fabs(v - closed));
                    nonzero += v != 0;
                }
    printf("J shape: (%lld, %lld, %lld, %lld)\n", (long long)J->shape[0], (long long)J->shape[1],
           (long long)J->shape[2], (long long)J->shape[3]);
    printf("A1[1, 0] = %.17g\n", (double)A1[2]);
    printf("J[1, 0, 2, 0] = %.17g\n", (double)J->data[((1 * 2 + 0) * 3 + 2) * 2 + 0]);
    printf("J[3, 1, 0, 1] = %.17g\n", (double)J->data[((3 * 2 + 1) * 3 + 0) * 2 + 1]);
    printf("J[3, 1, 0, 0] = %.17g\n", (double)J->data[((3 * 2 + 1) * 3 + 0) * 2 + 0]);
    printf("nonzero entries = %d\n", nonzero);
    printf("max |J - closed form| = %.3g\n", worst);
    nb_tensor_free(J);
    nb_graph_free(g);
    return worst < (strcmp(nb_precision(), "float32") ? 1e-12 : 1e-6) ? 0 : 1;
}
