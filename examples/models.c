/* Trainable models and their parameters, as nabla graphs.
 *
 *  1. A neuron: y = g(x^T w + b), with g the sigmoid.
 *  2. Dense layers in the batched form A_i = g(A_{i-1} W_i + b_i): the N
 *     examples are the rows of A_{i-1} (N x l_{i-1}), W_i is l_{i-1} x l_i and
 *     the bias row b_i (1 x l_i) is added to every row.
 *  3. Conv2D: X in R^{n_H x n_W x l}, K in R^{f x f x l_in x l_out}, b in
 *     R^{l_out}: Z[i, j, o] = b[o] + sum_{p, q, c} X[i + p, j + q, c] K[p, q, c, o],
 *     an output of n_H - f + 1 x n_W - f + 1 x l_out ('valid' padding).
 *
 * Every value is computed by a nabla graph and checked against plain loops
 * written here; the program exits 1 on a mismatch. Lines read
 * "<name> = <number>" or "<name> shape: (...)". */
#include <math.h>
#include <stdio.h>
#include <string.h>

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

static int failures = 0;

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "models: self-check failed: %s\n", what);
        failures++;
    }
}

static int die(const char *what)
{
    fprintf(stderr, "models: %s: %s\n", what, nb_last_error());
    return 1;
}

static const char *shape_of(nb_node *n, char *buf, size_t len)
{
    const nb_tensor *t = nb_value(n);
    return nb_shape_str(t->rank, t->shape, buf, len);
}

static void print_matrix(const char *name, const nb_tensor *t)
{
    int64_t rows = t->rank == 2 ? t->shape[0] : 1, cols = t->size / rows;
    printf("%s =\n", name);
    for (int64_t r = 0; r < rows; r++) {
        printf("   ");
        for (int64_t c = 0; c < cols; c++) printf(" %9.5f", t->data[r * cols + c]);
        printf("\n");
    }
}

static int neuron(void)
{
    printf("== 1. A neuron: y = g(x^T w + b), g = sigmoid ==\n");
    nb_graph *g = nb_graph_new();
    int64_t xs[2] = {1, 3}, ws[2] = {3, 1}, bs[1] = {1};
    nb_node *x = nb_input(g, "x", 2, xs), *w = nb_param(g, "w", 2, ws), *b = nb_param(g, "b", 1, bs);
    nb_node *z = nb_add(nb_matmul(x, w), b), *y = nb_sigmoid(z);
    if (!y) return die("building the neuron");
    const double xv[3] = {1, 2, -1}, wv[3] = {0.5, -0.25, 1}, bv = 0.1;
    for (int i = 0; i < 3; i++) nb_value(x)->data[i] = xv[i], nb_value(w)->data[i] = wv[i];
    nb_value(b)->data[0] = bv;
    if (nb_forward(g)) return die("forward");
    char s1[64], s2[64], s3[64];
    printf("x^T = [1, 2, -1], w^T = [0.5, -0.25, 1], b = 0.1\n");
    printf("x shape: %s (one example as a row), w shape: %s, b shape: %s\n", shape_of(x, s1, sizeof s1),
           shape_of(w, s2, sizeof s2), shape_of(b, s3, sizeof s3));
    double zr = 1 * 0.5 + 2 * -0.25 + -1 * 1 + 0.1, yr = 1 / (1 + exp(-zr));
    printf("neuron z = %s\n", num(nb_value(z)->data[0]));
    printf("neuron y = %s\n", num(nb_value(y)->data[0]));
    check(fabs(nb_value(z)->data[0] - zr) < 1e-15 && fabs(nb_value(y)->data[0] - yr) < 1e-15, "neuron value");
    printf("(1*0.5 + 2*(-0.25) + (-1)*1 + 0.1 = -0.9, sigmoid(-0.9) = 1/(1 + e^0.9))\n\n");
    nb_graph_free(g);
    return 0;
}

static int dense(void)
{
    printf("== 2. Dense layers, batched: A_i = g(A_{i-1} W_i + b_i) ==\n");
    enum { N = 4, L0 = 3, L1 = 5, L2 = 2 };
    nb_graph *g = nb_graph_new();
    int64_t a0s[2] = {N, L0}, w1s[2] = {L0, L1}, b1s[1] = {L1}, w2s[2] = {L1, L2}, b2s[1] = {L2};
    nb_node *A0 = nb_input(g, "A_0", 2, a0s);
    nb_node *W1 = nb_param(g, "W_1", 2, w1s), *b1 = nb_param(g, "b_1", 1, b1s);
    nb_node *W2 = nb_param(g, "W_2", 2, w2s), *b2 = nb_param(g, "b_2", 1, b2s);
    nb_node *Z1 = nb_add(nb_matmul(A0, W1), b1), *A1 = nb_relu(Z1);
    nb_node *A2 = nb_add(nb_matmul(A1, W2), b2);
    if (!A2) return die("building the dense layers");
    /* Deterministic values with no relu input at exactly 0. */
    for (int i = 0; i < N * L0; i++) nb_value(A0)->data[i] = 0.1 * (i % 7) - 0.25;
    for (int i = 0; i < L0 * L1; i++) nb_value(W1)->data[i] = 0.3 * sin(1.0 + i);
    for (int i = 0; i < L1; i++) nb_value(b1)->data[i] = 0.05 * (i - 2) + 0.01;
    for (int i = 0; i < L1 * L2; i++) nb_value(W2)->data[i] = 0.4 * cos(2.0 + i);
    for (int i = 0; i < L2; i++) nb_value(b2)->data[i] = 0.1 * (i + 1);
    if (nb_forward(g)) return die("forward");
    char s[4][64];
    printf("N = %d examples, layer sizes l_0 = %d, l_1 = %d, l_2 = %d\n", N, L0, L1, L2);
    printf("layer 1: A_0 (%d x %d) times W_1 (%d x %d) plus b_1 (1 x %d) -> A_1 (%d x %d), relu\n", N, L0, L0, L1, L1,
           N, L1);
    printf("layer 2: A_1 (%d x %d) times W_2 (%d x %d) plus b_2 (1 x %d) -> A_2 (%d x %d)\n", N, L1, L1, L2, L2, N,
           L2);
    printf("A_0 shape: %s\nW_1 shape: %s\nb_1 shape: %s\nA_1 shape: %s\n", shape_of(A0, s[0], 64),
           shape_of(W1, s[1], 64), shape_of(b1, s[2], 64), shape_of(A1, s[3], 64));
    printf("W_2 shape: %s\nb_2 shape: %s\nA_2 shape: %s\n", shape_of(W2, s[0], 64), shape_of(b2, s[1], 64),
           shape_of(A2, s[2], 64));
    print_matrix("A_0", nb_value(A0));
    print_matrix("A_1", nb_value(A1));
    print_matrix("A_2", nb_value(A2));
    /* The same by loops. */
    double a1[N][L1], err = 0;
    for (int n = 0; n < N; n++)
        for (int j = 0; j < L1; j++) {
            double v = nb_value(b1)->data[j];
            for (int k = 0; k < L0; k++) v += nb_value(A0)->data[n * L0 + k] * nb_value(W1)->data[k * L1 + j];
            a1[n][j] = v > 0 ? v : 0;
        }
    for (int n = 0; n < N; n++)
        for (int j = 0; j < L2; j++) {
            double v = nb_value(b2)->data[j];
            for (int k = 0; k < L1; k++) v += a1[n][k] * nb_value(W2)->data[k * L2 + j];
            err = fmax(err, fabs(v - nb_value(A2)->data[n * L2 + j]));
        }
    printf("dense max |graph - loops| = %.3g\n\n", err);
    check(err < 1e-14, "dense values");
    check(nb_value(A2)->rank == 2 && nb_value(A2)->shape[0] == N && nb_value(A2)->shape[1] == L2, "dense shape");
    nb_graph_free(g);
    return 0;
}

static int conv(void)
{
    printf("== 3. Conv2D: X (n_H x n_W x l), K (f x f x l_in x l_out), b (l_out) ==\n");
    enum { H = 5, W = 5, CI = 2, F = 3, CO = 3, OH = H - F + 1, OW = W - F + 1 };
    nb_graph *g = nb_graph_new();
    int64_t xs[4] = {1, H, W, CI}, ks[4] = {F, F, CI, CO}, bs[1] = {CO};
    nb_node *X = nb_input(g, "X", 4, xs), *K = nb_param(g, "K", 4, ks), *b = nb_param(g, "b", 1, bs);
    nb_conv2d_opts valid = {1, 1, NB_PAD_VALID, 0}, same = {1, 1, NB_PAD_SAME, 0};
    nb_node *Z = nb_conv2d(X, K, b, &valid), *Zs = nb_conv2d(X, K, b, &same);
    if (!Z || !Zs) return die("building the convolution");
    for (int i = 0; i < H * W * CI; i++) nb_value(X)->data[i] = (double)((i * 7) % 11) / 10.0;
    for (int i = 0; i < F * F * CI * CO; i++) nb_value(K)->data[i] = 0.2 * sin(0.7 * i);
    for (int i = 0; i < CO; i++) nb_value(b)->data[i] = 0.1 * i;
    if (nb_forward(g)) return die("forward");
    char s[3][64];
    printf("n_H = %d, n_W = %d, l = l_in = %d, f = %d, l_out = %d (batch N = 1, layout NHWC)\n", H, W, CI, F, CO);
    printf("X shape: %s\nK shape: %s\nb shape: %s\n", shape_of(X, s[0], 64), shape_of(K, s[1], 64),
           shape_of(b, s[2], 64));
    printf("conv valid output shape: %s   (n_H - f + 1 = %d, n_W - f + 1 = %d, l_out = %d)\n",
           shape_of(Z, s[0], 64), OH, OW, CO);
    printf("conv same output shape: %s   (zero padding keeps n_H x n_W)\n", shape_of(Zs, s[1], 64));
    double err = 0;
    for (int o = 0; o < CO; o++) {
        printf("Z[:, :, %d] (valid) =\n", o);
        for (int i = 0; i < OH; i++) {
            printf("   ");
            for (int j = 0; j < OW; j++) {
                double v = nb_value(b)->data[o];
                for (int p = 0; p < F; p++)
                    for (int q = 0; q < F; q++)
                        for (int c = 0; c < CI; c++)
                            v += nb_value(X)->data[((i + p) * W + (j + q)) * CI + c] *
                                 nb_value(K)->data[((p * F + q) * CI + c) * CO + o];
                double z = nb_value(Z)->data[(i * OW + j) * CO + o];
                err = fmax(err, fabs(v - z));
                printf(" %9.5f", z);
            }
            printf("\n");
        }
    }
    printf("conv max |graph - loops| = %.3g\n", err);
    printf("parameters: K has %d x %d x %d x %d = %d weights, b has %d: %d in all\n", F, F, CI, CO, F * F * CI * CO,
           CO, F * F * CI * CO + CO);
    check(err < 1e-14, "conv values");
    check(nb_value(Z)->shape[1] == OH && nb_value(Z)->shape[2] == OW && nb_value(Z)->shape[3] == CO, "conv shape");
    check(nb_value(Zs)->shape[1] == H && nb_value(Zs)->shape[2] == W, "same shape");
    nb_graph_free(g);
    return 0;
}

int main(void)
{
    if (neuron() || dense() || conv()) return 1;
    if (failures) {
        fprintf(stderr, "models: %d self-check(s) failed\n", failures);
        return 1;
    }
    printf("\nall self-checks passed\n");
    return 0;
}
