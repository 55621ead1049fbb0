/* GEMM kernels against a double-precision reference: nb_gemm_serial (the
 * kernel chosen for this CPU and build), nb_gemm (split over threads), the
 * built-in kernel and, where the CPU has AVX-512, nb_sgemm_avx512 itself.
 * Shapes from 1 to 70 in each dimension (primes, tile edges 13..17, 31..33),
 * the network's own shapes, slices of K, M and N larger than one block, all
 * four trans_a/trans_b combinations, alpha != 1, beta 0 over C full of NaN,
 * beta 1 and 0.5, and leading dimensions wider than the matrices (the
 * padding of C must stay untouched). Float tolerance: 1e-5 * K * |alpha|
 * max|a| max|b| + 1e-5 |beta| max|c|. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "kernels/sgemm_avx512.h"

typedef void gemm_fn(bool, bool, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *, int64_t,
                     float, float *, int64_t);

static const float SENTINEL = 12345.0f;

static _Thread_local uint64_t rng = 0x9E3779B97F4A7C15u;
static float uniform(void) /* in [-1, 1) */
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2 - 1);
}

/* With guarded set, every matrix ends on the last byte before an
 * inaccessible page, so a kernel that reads or writes one element past any
 * of them faults. */
static bool guarded;

static float *alloc_floats(int64_t n)
{
    if (!guarded) return malloc((size_t)n * sizeof(float));
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), bytes = (size_t)n * sizeof(float);
    const size_t span = (bytes + page - 1) / page * page + page;
    char *base = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(base != MAP_FAILED);
    assert_int_equal(mprotect(base + span - page, page, PROT_NONE), 0);
    return (float *)(base + span - page - bytes);
}

static void free_floats(float *p, int64_t n)
{
    if (!guarded) {
        free(p);
        return;
    }
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), bytes = (size_t)n * sizeof(float);
    const size_t span = (bytes + page - 1) / page * page + page;
    munmap((char *)p + bytes + page - span, span);
}

/* One product through fn, checked against the reference; pad widens each
 * leading dimension. Returns the number of wrong elements (0). */
static int check(gemm_fn *fn, const char *name, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                 float beta, int64_t pad)
{
    const int64_t ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    const int64_t lda = ac + pad, ldb = bc + pad, ldc = N + pad;
    float *A = alloc_floats(ar * lda), *B = alloc_floats(br * ldb), *C = alloc_floats(M * ldc);
    float *C0 = malloc((size_t)(M * ldc) * sizeof *C0);
    assert_non_null(A), assert_non_null(B), assert_non_null(C), assert_non_null(C0);
    double amax = 0, bmax = 0, cmax = 0;
    for (int64_t i = 0; i < ar * lda; i++) A[i] = uniform(), amax = fmax(amax, fabs(A[i]));
    for (int64_t i = 0; i < br * ldb; i++) B[i] = uniform(), bmax = fmax(bmax, fabs(B[i]));
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < ldc; j++) {
            float v = j >= N ? SENTINEL : beta == 0 ? NAN : uniform();
            C[i * ldc + j] = C0[i * ldc + j] = v;
            if (j < N && beta != 0) cmax = fmax(cmax, fabs(v));
        }
    fn(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    const double tol = 1e-5 * (double)K * fabs(alpha) * amax * bmax + 1e-5 * fabs(beta) * cmax + 1e-30;
    int bad = 0;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < ldc; j++) {
            const float got = C[i * ldc + j];
            double want;
            if (j >= N) {
                want = SENTINEL;
            } else {
                double s = 0;
                for (int64_t k = 0; k < K; k++)
                    s += (double)(ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
                want = alpha * s + (beta == 0 ? 0 : beta * (double)C0[i * ldc + j]);
            }
            if (!(fabs(got - want) <= (j >= N ? 0 : tol))) {
                if (bad++ < 3)
                    fprintf(stderr,
                            "%s ta=%d tb=%d M=%lld N=%lld K=%lld alpha=%g beta=%g pad=%lld: C[%lld][%lld] = %.9g, "
                            "want %.9g\n",
                            name, ta, tb, (long long)M, (long long)N, (long long)K, alpha, beta, (long long)pad,
                            (long long)i, (long long)j, got, want);
            }
        }
    free_floats(A, ar * lda), free_floats(B, br * ldb), free_floats(C, M * ldc), free(C0);
    return bad;
}

static void avx512_or_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                             int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
#ifdef NB_HAVE_SGEMM_AVX512
    if (nb_sgemm_avx512_usable()) {
        nb_sgemm_avx512(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#endif
    nb_gemm_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static const struct {
    gemm_fn *fn;
    const char *name;
} KERNELS[] = {
    {avx512_or_serial, "avx512"},
    {nb_gemm_serial, "nb_gemm_serial"},
    {nb_gemm, "nb_gemm"},
    {nb_gemm_builtin, "nb_gemm_builtin"},
};
enum { NKERNELS = sizeof KERNELS / sizeof KERNELS[0] };

static void test_small_shapes(void **state)
{
    (void)state;
    static const int64_t dims[] = {1, 2, 3, 5, 13, 14, 15, 16, 17, 29, 31, 32, 33, 47, 64, 70};
    static const float alphas[] = {1, -0.75f, 2.5f}, betas[] = {0, 1, 0.5f, -1.25f};
    const int nd = sizeof dims / sizeof dims[0];
    int bad = 0, n = 0;
    for (int t = 0; t < 4; t++)
        for (int a = 0; a < nd; a++)
            for (int b = 0; b < nd; b++)
                for (int c = 0; c < nd; c++, n++) {
                    const float alpha = alphas[n % 3], beta = betas[(n / 3) % 4];
                    const int64_t pad = (n / 7) % 3 == 0 ? 0 : (n / 7) % 3 == 1 ? 1 : 19;
                    /* Every kernel on a quarter of the cases, the AVX-512 one on all. */
                    for (int k = 0; k < NKERNELS; k++)
                        if (k == 0 || (n + k) % 4 == 0)
                            bad += check(KERNELS[k].fn, KERNELS[k].name, t & 1, t >> 1, dims[a], dims[b], dims[c],
                                         alpha, beta, pad);
                }
    assert_int_equal(bad, 0);
}

/* The network's products (conv1, conv2, dense1; see bench/bench.c). */
static void test_network_shapes(void **state)
{
    (void)state;
    static const struct {
        bool ta, tb;
        int64_t M, N, K;
        float beta;
    } S[] = {
        {false, false, 576, 64, 288, 0},      {false, false, 1152, 64, 288, 1}, /* conv2 forward, G = 1, 2 */
        {true, false, 288, 64, 576, 1},       {true, false, 288, 64, 1152, 1},  /* conv2 dK */
        {false, true, 576, 288, 64, 0},       {false, true, 1152, 288, 64, 0},  /* conv2 dX */
        {false, false, 676 * 40, 32, 9, 0},   {true, false, 9, 32, 676 * 40, 1},/* conv1 forward, dK */
        {false, false, 128, 128, 9216, 0},    {false, false, 128, 64, 9216, 0}, /* dense1 forward */
        {true, false, 9216, 128, 128, 0},     {false, true, 128, 9216, 128, 0}, /* dense1 dW, dX */
    };
    int bad = 0;
    for (size_t s = 0; s < sizeof S / sizeof S[0]; s++)
        for (int k = 0; k < NKERNELS; k++)
            if (k != 3 || S[s].M * S[s].N * S[s].K < 20000000) /* the built-in kernel is slow under ASan */
                bad += check(KERNELS[k].fn, KERNELS[k].name, S[s].ta, S[s].tb, S[s].M, S[s].N, S[s].K, 1, S[s].beta,
                             0);
    assert_int_equal(bad, 0);
}

/* More than one block along K (beta applied once), M and N. */
static void test_blocks(void **state)
{
    (void)state;
    int bad = 0;
    for (int t = 0; t < 4; t++) {
        bad += check(avx512_or_serial, "avx512", t & 1, t >> 1, 37, 45, 1001, 0.5f, 0, 3);
        bad += check(avx512_or_serial, "avx512", t & 1, t >> 1, 37, 45, 769, 1, 0.5f, 0);
        bad += check(avx512_or_serial, "avx512", t & 1, t >> 1, 701, 33, 400, -1, 1, 5);
        bad += check(avx512_or_serial, "avx512", t & 1, t >> 1, 29, 2100, 7, 1, 0, 2);
        bad += check(nb_gemm, "nb_gemm", t & 1, t >> 1, 301, 290, 300, 1, 0, 1);
    }
    assert_int_equal(bad, 0);
}

/* Edge tiles against guard pages (the tests above run under ASan too, but
 * ASan does not see inside masked vector loads and stores). */
static void test_guard_pages(void **state)
{
    (void)state;
    static const int64_t shapes[][3] = {{1, 1, 1},   {13, 17, 5},  {14, 32, 16}, {15, 33, 17},
                                        {29, 47, 70}, {9, 32, 401}, {37, 45, 1001}, {3, 2100, 3}};
    int bad = 0;
    guarded = true;
    for (int t = 0; t < 4; t++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int k = 0; k < NKERNELS; k++)
                bad += check(KERNELS[k].fn, KERNELS[k].name, t & 1, t >> 1, shapes[s][0], shapes[s][1], shapes[s][2],
                             1, s % 2 ? 1.0f : 0.0f, 0);
    guarded = false;
    assert_int_equal(bad, 0);
}

/* K = 0 scales C; beta 0 then writes zeros over NaN. */
static void test_empty_k(void **state)
{
    (void)state;
    float C[6] = {NAN, NAN, NAN, 1, 2, 3}, A[1] = {0}, B[1] = {0};
    nb_gemm_serial(false, false, 1, 3, 0, 1, A, 1, B, 3, 0, C, 3);
    nb_gemm_serial(false, false, 1, 3, 0, 1, A, 1, B, 3, 2, C + 3, 3);
    for (int j = 0; j < 3; j++) assert_true(C[j] == 0.0f), assert_true(C[3 + j] == 2.0f * (float)(j + 1));
}

/* Several threads in the kernel at once, each on its own product. */
static void test_concurrent(void **state)
{
    (void)state;
    int bad = 0;
#pragma omp parallel for schedule(dynamic) reduction(+ : bad)
    for (int i = 0; i < 16; i++)
        bad += check(nb_gemm_serial, "concurrent", i & 1, (i >> 1) & 1, 50 + 3 * i, 40 + 5 * i, 30 + 7 * i, 1, 0, i % 3);
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_shapes), cmocka_unit_test(test_network_shapes), cmocka_unit_test(test_blocks),
        cmocka_unit_test(test_guard_pages),  cmocka_unit_test(test_empty_k),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
