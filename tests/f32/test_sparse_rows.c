/* Compressed sparse rows (kernels/sparse_rows.c) and the convolution input
 * VJP that uses them. The kernel this CPU runs (AVX-512 where it has it) is
 * compared with the portable loops exactly for the compression, and both
 * with a double-precision product for the matmul: widths n from 1 to 300
 * (every register-block count W = 1..8, tails, several blocks), leading
 * dimensions wider than n (the padding of C must stay untouched), B and C
 * against guard pages, NaN and -0 in the values, NaN in the gate, and the
 * capacity limit hit and not hit; the compression by selection against its
 * portable loop. Then conv2d's input VJP, with a seed that is 85% zeros (the
 * sparse path) and one with none (the GEMM), stacked in one call, against
 * the definition of the VJP in double; and behind a max pool, compressed
 * from the pool's arrays, against the dense adjoint. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernels/kernels.h"

static uint64_t rng = 0x2545F4914F6CDD1Du;
static float uniform(void) /* in [-1, 1) */
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2 - 1);
}

/* n floats ending on the last byte before an inaccessible page. */
static float *guarded_floats(int64_t n, void **base, size_t *span)
{
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), bytes = (size_t)n * sizeof(float);
    *span = (bytes + page - 1) / page * page + page;
    char *b = mmap(NULL, *span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(b != MAP_FAILED);
    assert_int_equal(mprotect(b + *span - page, page, PROT_NONE), 0);
    *base = b;
    return (float *)(b + *span - page - bytes);
}

/* A random m x k matrix with about `density` of it non-zero, a NaN and a -0
 * planted where there is room. */
static void sparse_matrix(int64_t m, int64_t k, double density, float *a)
{
    for (int64_t i = 0; i < m * k; i++) a[i] = (uniform() + 1) / 2 < density ? uniform() : 0;
    if (m * k > 3) a[1] = NAN, a[2] = -0.0f;
}

typedef struct {
    nb_sparse_rows s;
    int32_t start[64], col[64 * 80 + 16];
    float val[64 * 80 + 16];
} rows_buf;

static void rows_init(rows_buf *b)
{
    b->s.start = b->start, b->s.col = b->col, b->s.val = b->val;
}

static void test_compress(void **state)
{
    (void)state;
    static rows_buf fast, ref;
    static float a[64 * 80], gate[64 * 80];
    const double densities[] = {0, 0.15, 0.5, 1};
    for (int64_t k = 1; k <= 80; k += (k < 34 ? 1 : 7))
        for (int d = 0; d < 4; d++)
            for (int gated = 0; gated < 2; gated++) {
                const int64_t m = 1 + (k % 9);
                sparse_matrix(m, k, densities[d], a);
                for (int64_t i = 0; i < m * k; i++) gate[i] = uniform();
                if (m * k > 5) gate[4] = NAN;
                const float *g = gated ? gate : NULL;
                rows_init(&fast), rows_init(&ref);
                assert_true(nb_sparse_rows_compress_portable(m, k, a, g, m * k, &ref.s));
                assert_true(nb_sparse_rows_compress(m, k, a, g, m * k, &fast.s));
                assert_int_equal(fast.s.rows, m);
                assert_int_equal(fast.s.nnz, ref.s.nnz);
                assert_memory_equal(fast.start, ref.start, (size_t)(m + 1) * sizeof(int32_t));
                assert_memory_equal(fast.col, ref.col, (size_t)ref.s.nnz * sizeof(int32_t));
                assert_memory_equal(fast.val, ref.val, (size_t)ref.s.nnz * sizeof(float));
                for (int64_t r = 0; r < m; r++) /* what is kept: non-zero (NaN too), open gate */
                    for (int64_t c = 0, e = ref.start[r]; c < k; c++) {
                        const bool keep = a[r * k + c] != 0 && (!g || g[r * k + c] > 0);
                        if (keep) assert_int_equal(ref.col[e++], c);
                    }
                /* capacity: exactly enough is enough, one less is refused */
                const int64_t nnz = ref.s.nnz;
                rows_init(&fast);
                assert_true(nb_sparse_rows_compress(m, k, a, g, nnz, &fast.s));
                if (nnz > 0) {
                    rows_init(&fast), rows_init(&ref);
                    assert_false(nb_sparse_rows_compress(m, k, a, g, nnz - 1, &fast.s));
                    assert_false(nb_sparse_rows_compress_portable(m, k, a, g, nnz - 1, &ref.s));
                }
            }
}

/* C = S B for one width n, with the kernel for this CPU and the portable
 * loops, against double; the columns of C past n keep their sentinel. */
static int check_matmul(int64_t m, int64_t k, int64_t n, double density)
{
    const int64_t ldb = n + 3, ldc = n + 5;
    void *bb, *cb;
    size_t bspan, cspan;
    float *B = guarded_floats(k * ldb, &bb, &bspan), *C = guarded_floats(m * ldc, &cb, &cspan);
    static float a[64 * 80];
    static rows_buf s;
    sparse_matrix(m, k, density, a);
    a[1] = 0.5f; /* no NaN here: the product is compared with a tolerance */
    for (int64_t i = 0; i < k * ldb; i++) B[i] = uniform();
    rows_init(&s);
    assert_true(nb_sparse_rows_compress(m, k, a, NULL, m * k, &s.s));
    int bad = 0;
    for (int kernel = 0; kernel < 2; kernel++) {
        for (int64_t i = 0; i < m * ldc; i++) C[i] = 12345.0f;
        if (kernel == 0) nb_sparse_rows_matmul(&s.s, n, B, ldb, C, ldc);
        else nb_sparse_rows_matmul_portable(&s.s, n, B, ldb, C, ldc);
        for (int64_t r = 0; r < m; r++)
            for (int64_t j = 0; j < ldc; j++) {
                double want = 12345.0, scale = 1;
                if (j < n) {
                    want = 0, scale = 0;
                    for (int64_t c = 0; c < k; c++) want += (double)a[r * k + c] * B[c * ldb + j];
                    for (int64_t c = 0; c < k; c++) scale += fabs((double)a[r * k + c] * B[c * ldb + j]);
                }
                if (fabs(C[r * ldc + j] - want) > 1e-6 * (scale + 1) && bad++ < 3)
                    fprintf(stderr, "%s m=%lld k=%lld n=%lld: C[%lld][%lld] = %.9g, want %.9g\n",
                            kernel ? "portable" : "dispatched", (long long)m, (long long)k, (long long)n,
                            (long long)r, (long long)j, C[r * ldc + j], want);
            }
    }
    munmap(bb, bspan), munmap(cb, cspan);
    return bad;
}

static void test_matmul(void **state)
{
    (void)state;
    const int64_t widths[] = {1, 5, 9, 15, 16, 17, 31, 33, 48, 64, 96, 100, 127, 128, 129, 130, 255, 288, 300};
    int bad = 0;
    for (size_t i = 0; i < sizeof widths / sizeof widths[0]; i++) {
        bad += check_matmul(37, 64, widths[i], 0.15);
        bad += check_matmul(5, 3, widths[i], 0.7);
        bad += check_matmul(8, 80, widths[i], 0); /* empty rows: C must be zeroed */
    }
    assert_int_equal(bad, 0);
}

/* dX[n,h,w,c] = sum over i,j,p,q,o with h = i*s + p - pt, w = j*s + q - pl of
 * dY[n,i,j,o] [y > 0] k[p,q,c,o], in double. */
static double vjp_reference(const float *dy, const float *y, const float *k, int64_t n, int64_t h, int64_t w,
                            int64_t c, int64_t H, int64_t W, int64_t C, int64_t OH, int64_t OW, int64_t O, int f,
                            int s, int pt, int pl)
{
    (void)H;
    double sum = 0;
    for (int p = 0; p < f; p++)
        for (int q = 0; q < f; q++) {
            const int64_t ti = h + pt - p, tj = w + pl - q;
            if (ti < 0 || tj < 0 || ti % s || tj % s || ti / s >= OH || tj / s >= OW) continue;
            const int64_t at = ((n * OH + ti / s) * OW + tj / s) * O;
            for (int64_t o = 0; o < O; o++)
                if (y[at + o] > 0) sum += (double)dy[at + o] * k[((p * f + q) * C + c) * O + o];
        }
    (void)W;
    return sum;
}

static void conv_case(int64_t N, int64_t H, int64_t C, int64_t O, int f, int stride, nb_padding pad)
{
    nb_graph *g = nb_graph_new();
    const int64_t xs[4] = {N, H, H, C}, ks[4] = {f, f, C, O}, bs[1] = {O};
    nb_node *x = nb_input(g, "x", 4, xs), *kn = nb_param(g, "k", 4, ks), *b = nb_param(g, "b", 1, bs);
    nb_conv2d_opts opts = {.stride = stride, .padding = pad};
    nb_node *y = nb_conv2d_relu(x, kn, b, &opts);
    assert_non_null(y);
    for (int64_t i = 0; i < nb_value(x)->size; i++) nb_value(x)->data[i] = uniform();
    for (int64_t i = 0; i < nb_value(kn)->size; i++) nb_value(kn)->data[i] = uniform();
    for (int64_t i = 0; i < O; i++) nb_value(b)->data[i] = 1 + uniform() / 4; /* mostly y > 0: seed 1 dense */
    assert_int_equal(nb_forward(g), NB_OK);
    const nb_tensor *yv = nb_value(y);
    const int64_t OH = yv->shape[1], OW = yv->shape[2], per = yv->size;
    const int64_t ss[5] = {2, N, OH, OW, O};
    nb_tensor *seeds = nb_tensor_new(5, ss), *dx = NULL;
    for (int64_t i = 0; i < per; i++) { /* seed 0: 85% zeros (sparse path); seed 1: none (GEMM) */
        seeds->data[i] = (uniform() + 1) / 2 < 0.15 ? uniform() : 0;
        seeds->data[per + i] = uniform() + 2;
    }
    assert_int_equal(nb_vjp(y, seeds, 1, &x, &dx), NB_OK);
    int pt = 0, pl = 0;
    nb_window_dim(H, f, stride, 1, pad, &pt);
    nb_window_dim(H, f, stride, 1, pad, &pl);
    int bad = 0;
    for (int64_t sd = 0; sd < 2; sd++)
        for (int64_t n = 0; n < N; n++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t w = 0; w < H; w++)
                    for (int64_t c = 0; c < C; c++) {
                        const double want = vjp_reference(seeds->data + sd * per, yv->data, nb_value(kn)->data, n, h,
                                                          w, c, H, H, C, OH, OW, O, f, stride, pt, pl);
                        const float got = dx->data[(((sd * N + n) * H + h) * H + w) * C + c];
                        if (fabs(got - want) > 1e-5 * (1 + fabs(want)) && bad++ < 3)
                            fprintf(stderr, "seed %lld dx[%lld,%lld,%lld,%lld] = %.9g, want %.9g\n", (long long)sd,
                                    (long long)n, (long long)h, (long long)w, (long long)c, got, want);
                    }
    assert_int_equal(bad, 0);
    nb_tensor_free(seeds), nb_tensor_free(dx);
    nb_graph_free(g);
}

/* Compression by selection (a max pool's routing) against the portable loop. */
static void test_select(void **state)
{
    (void)state;
    static float val[80], gate[80], out_fast[96], out_ref[96];
    static int32_t sel[80], col_fast[96], col_ref[96];
    for (int64_t k = 1; k <= 80; k++)
        for (int gated = 0; gated < 2; gated++) {
            const int32_t base = (int32_t)(k * 7);
            for (int64_t c = 0; c < k; c++) {
                val[c] = uniform(), gate[c] = uniform();
                sel[c] = (uniform() > 0.3f ? base + (int32_t)c : base + (int32_t)c + 1); /* ~35% selected */
            }
            gate[0] = NAN;
            const float *g = gated ? gate : NULL;
            const int64_t n_ref = nb_sparse_row_select_portable(k, val, sel, base, g, col_ref, out_ref);
            const int64_t n_fast = nb_sparse_row_select(k, val, sel, base, g, col_fast, out_fast);
            assert_int_equal(n_fast, n_ref);
            assert_memory_equal(col_fast, col_ref, (size_t)n_ref * sizeof(int32_t));
            assert_memory_equal(out_fast, out_ref, (size_t)n_ref * sizeof(float));
            for (int64_t e = 0; e < n_ref; e++) assert_int_equal(sel[col_ref[e]], base + col_ref[e]);
        }
}

/* A max pool after the convolution keeps the convolution's adjoint and the
 * input VJP compresses it from the pool's arrays. With the convolution also
 * a wrt node (a source, never deferred) the pass writes it dense instead:
 * the input gradients must agree. */
static void pool_case(int64_t N, int64_t H, int64_t C, int64_t O)
{
    nb_graph *g = nb_graph_new();
    const int64_t xs[4] = {N, H, H, C}, ks[4] = {3, 3, C, O}, bs[1] = {O};
    nb_node *x = nb_input(g, "x", 4, xs), *kn = nb_param(g, "k", 4, ks), *b = nb_param(g, "b", 1, bs);
    nb_node *c = nb_conv2d_relu(x, kn, b, NULL), *y = nb_max_pool2d(c, 2, 0, NB_PAD_VALID);
    assert_non_null(y);
    for (int64_t i = 0; i < nb_value(x)->size; i++) nb_value(x)->data[i] = uniform();
    for (int64_t i = 0; i < nb_value(kn)->size; i++) nb_value(kn)->data[i] = uniform();
    for (int64_t i = 0; i < O; i++) nb_value(b)->data[i] = uniform() / 4;
    assert_int_equal(nb_forward(g), NB_OK);
    const nb_tensor *yv = nb_value(y);
    const int64_t ss[5] = {3, yv->shape[0], yv->shape[1], yv->shape[2], yv->shape[3]};
    nb_tensor *seeds = nb_tensor_new(5, ss);
    for (int64_t i = 0; i < seeds->size; i++) seeds->data[i] = uniform();
    nb_tensor *routed = NULL, *dense[2] = {NULL, NULL};
    nb_node *both[2] = {x, c};
    assert_int_equal(nb_vjp(y, seeds, 1, &x, &routed), NB_OK);
    assert_int_equal(nb_vjp(y, seeds, 2, both, dense), NB_OK);
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < routed->size; i++) {
        worst = fmax(worst, fabs((double)routed->data[i] - dense[0]->data[i]));
        scale = fmax(scale, fabs((double)dense[0]->data[i]));
    }
    assert_true(scale > 0);
    assert_true(worst <= 1e-5 * scale);
    nb_tensor_free(seeds), nb_tensor_free(routed), nb_tensor_free(dense[0]), nb_tensor_free(dense[1]);
    nb_graph_free(g);
}

static void test_pool_routed_vjp(void **state)
{
    (void)state;
    pool_case(3, 14, 32, 64); /* conv2 of mnist_cnn on smaller images */
    pool_case(2, 11, 1, 16);  /* one channel; odd size: a row and column no window reads */
}

static void test_conv2d_input_vjp(void **state)
{
    (void)state;
    conv_case(3, 12, 32, 64, 3, 1, NB_PAD_VALID); /* conv2 of mnist_cnn, smaller images */
    conv_case(2, 9, 3, 17, 3, 2, NB_PAD_SAME);    /* stride, padding, odd channel counts */
    conv_case(1, 7, 1, 5, 5, 1, NB_PAD_SAME);    /* one input channel: the transposed GEMM and tap planes */
    conv_case(3, 28, 1, 32, 3, 1, NB_PAD_VALID); /* conv1 of mnist_cnn */
    conv_case(2, 10, 1, 7, 3, 2, NB_PAD_SAME);
    conv_case(2, 9, 1, 3, 2, 3, NB_PAD_VALID);   /* stride > window: pixels no window reads */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compress),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_select),
        cmocka_unit_test(test_conv2d_input_vjp),
        cmocka_unit_test(test_pool_routed_vjp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
