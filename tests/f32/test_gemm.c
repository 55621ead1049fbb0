/* GEMM kernels against a double-precision reference: nb_gemm_serial (the
 * kernel chosen for this CPU and build), nb_gemm (split over threads), the
 * built-in kernel, OpenBLAS and the streaming rows kernel through
 * nb_gemm_with and, where the CPU has AVX-512, nb_sgemm_avx512 itself.
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
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
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

static void with_openblas(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                         const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    nb_gemm_with(NB_GEMM_OPENBLAS, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* Where rows does not apply (M > 2 or B transposed) this is the portable kernel. */
static void with_rows(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                      const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    nb_gemm_with(NB_GEMM_ROWS, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static const struct {
    gemm_fn *fn;
    const char *name;
} KERNELS[] = {
    {avx512_or_serial, "avx512"},
    {nb_gemm_serial, "nb_gemm_serial"},
    {nb_gemm, "nb_gemm"},
    {nb_gemm_builtin, "nb_gemm_builtin"},
    {with_openblas, "openblas"},
    {with_rows, "rows"},
};
enum { NKERNELS = sizeof KERNELS / sizeof KERNELS[0] };

static void test_small_shapes(void **state)
{
    (void)state;
    static const int64_t dims[] = {1, 2, 3, 5, 13, 14, 15, 16, 17, 24, 29, 31, 32, 33, 47, 56, 64, 70};
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
            if ((k != 3 && k != 5) || S[s].M * S[s].N * S[s].K < 20000000) /* the portable kernel is slow under ASan */
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

/* ------------------------------------------------ choosing the kernel */

/* Fake timings: the fixed default takes 1 s a trial, the challenger
 * `challenger` s, except in round `odd_round` where the kernel `odd_kernel`
 * takes `odd` s (an outlier the median must ignore). Counts calls. */
typedef struct fake {
    nb_gemm_kernel fixed, rival;
    double challenger, odd;
    int odd_round, odd_kernel;
    atomic_int calls[NB_GEMM_NKERNELS];
} fake;

static double fake_trial(void *ctx, nb_gemm_kernel k, int round, bool ta, bool tb, int64_t M, int64_t N, int64_t K)
{
    fake *f = ctx;
    atomic_fetch_add(&f->calls[k], 1);
    assert_true(nb_gemm_kernel_usable(k, tb, M));
    assert_true(2.0 * (double)M * N * K <= 1e9); /* the shrunk shape */
    if (round == f->odd_round && (int)k == f->odd_kernel) return f->odd;
    return k == f->fixed ? 1.0 : k == f->rival ? f->challenger : 10.0;
}

/* The conv2 forward product (576 x 64 x 288, a class of its own), and a
 * usable kernel other than its fixed default (false when there is none). */
static const bool TA = false, TB = false;
static const int64_t M0 = 576, N0 = 64, K0 = 288;

static bool setup_fake(fake *f, double challenger)
{
    memset(f, 0, sizeof *f);
    f->fixed = nb_gemm_fixed_kernel(TA, TB, M0, N0, K0);
    f->rival = NB_GEMM_NKERNELS;
    for (int k = 0; k < NB_GEMM_NKERNELS; k++)
        if (k != (int)f->fixed && nb_gemm_kernel_usable((nb_gemm_kernel)k, TB, M0)) f->rival = (nb_gemm_kernel)k;
    f->challenger = challenger, f->odd_round = -1;
    return f->rival != NB_GEMM_NKERNELS;
}

static int total_calls(fake *f)
{
    int n = 0;
    for (int k = 0; k < NB_GEMM_NKERNELS; k++) n += atomic_load(&f->calls[k]);
    return n;
}

static void test_pick(void **state)
{
    (void)state;
    double s[NB_GEMM_NKERNELS] = {0};
    s[NB_GEMM_AVX512] = 1.0, s[NB_GEMM_OPENBLAS] = 0.8, s[NB_GEMM_PORTABLE] = 5;
    assert_int_equal(nb_gemm_pick(s, NB_GEMM_AVX512, 0.05), NB_GEMM_OPENBLAS); /* 20% faster: chosen */
    s[NB_GEMM_OPENBLAS] = 0.96;
    assert_int_equal(nb_gemm_pick(s, NB_GEMM_AVX512, 0.05), NB_GEMM_AVX512); /* 4%: a near-tie */
    s[NB_GEMM_OPENBLAS] = 0.95;
    assert_int_equal(nb_gemm_pick(s, NB_GEMM_AVX512, 0.05), NB_GEMM_AVX512); /* the margin itself: still a tie */
    s[NB_GEMM_OPENBLAS] = 0.94;
    assert_int_equal(nb_gemm_pick(s, NB_GEMM_AVX512, 0.05), NB_GEMM_OPENBLAS);
    assert_int_equal(nb_gemm_pick(s, NB_GEMM_AVX512, 0.0), NB_GEMM_OPENBLAS);
    s[NB_GEMM_OPENBLAS] = 1.5;
    assert_int_equal(nb_gemm_pick(s, NB_GEMM_AVX512, 0.05), NB_GEMM_AVX512); /* the default is fastest */
    s[NB_GEMM_ROWS] = 0.5;                                                   /* the fastest of several */
    s[NB_GEMM_OPENBLAS] = 0.7;
    assert_int_equal(nb_gemm_pick(s, NB_GEMM_AVX512, 0.05), NB_GEMM_ROWS);
    double none[NB_GEMM_NKERNELS] = {0};
    assert_int_equal(nb_gemm_pick(none, NB_GEMM_PORTABLE, 0.05), NB_GEMM_PORTABLE); /* nothing measured */
}

/* Auto: a class measures at its first product, once, with medians. */
static void test_measured_choice(void **state)
{
    (void)state;
    fake f;
    if (!setup_fake(&f, 0.8)) skip();
    f.odd_round = 3, f.odd_kernel = f.rival, f.odd = 100; /* one slow trial: the median ignores it */
    nb_gemm_select_reset("auto", fake_trial, &f);
    assert_null(nb_gemm_spec_problem());
    assert_int_equal(nb_gemm_kernel_for(TA, TB, M0, N0, K0, 0), f.rival);
    const int calls = total_calls(&f);
    assert_int_equal(atomic_load(&f.calls[f.fixed]), 8); /* warm-up + 7 rounds */
    assert_int_equal(atomic_load(&f.calls[f.rival]), 8);
    /* Same class, another shape: no new measurement, the same kernel. */
    assert_int_equal(nb_gemm_kernel_for(TA, TB, 600, 40, 300, 1), f.rival);
    assert_int_equal(total_calls(&f), calls);
    nb_gemm_choice c;
    nb_gemm_class_choice(nb_gemm_class_of(TA, TB, M0, N0, K0), &c);
    assert_true(c.used && c.measured);
    assert_int_equal(c.kernel, f.rival);
    assert_true(c.seconds[f.fixed] == 1.0 && c.seconds[f.rival] == 0.8);
    assert_int_equal(c.M, M0), assert_int_equal(c.N, N0), assert_int_equal(c.K, K0); /* 21 MFLOP: not shrunk */
    /* A huge product is measured shrunk: within its buckets, then to 1 GFLOP. */
    assert_int_equal(nb_gemm_kernel_for(false, true, 300, 20000, 20000, 0), f.rival);
    nb_gemm_class_choice(nb_gemm_class_of(false, true, 300, 20000, 20000), &c);
    /* 300 -> 150, 20000 -> 2500 within the buckets (1.9 GFLOP), then the first longest side: N 1250 */
    assert_int_equal(c.M, 150), assert_int_equal(c.N, 1250), assert_int_equal(c.K, 2500);
    assert_int_equal(nb_gemm_kernel_for(false, false, 8192, 8192, 8192, 0), f.rival);
    nb_gemm_class_choice(nb_gemm_class_of(false, false, 8192, 8192, 8192), &c);
    assert_true(2.0 * (double)c.M * c.N * c.K <= 1e9 && c.M >= 512 && c.N >= 512 && c.K >= 512);
    /* A class not used yet has no record. */
    nb_gemm_class_choice(nb_gemm_class_of(true, true, 5, 5, 5), &c);
    assert_false(c.used);

    /* A near-tie keeps the fixed default; an outlier of the default does not lose it. */
    setup_fake(&f, 0.97);
    f.odd_round = 2, f.odd_kernel = f.fixed, f.odd = 50;
    nb_gemm_select_reset("auto", fake_trial, &f);
    assert_int_equal(nb_gemm_kernel_for(TA, TB, M0, N0, K0, 0), f.fixed);

    /* A kernel over 3x slower in round 1 stops after it. */
    setup_fake(&f, 3.5);
    nb_gemm_select_reset("auto", fake_trial, &f);
    assert_int_equal(nb_gemm_kernel_for(TA, TB, M0, N0, K0, 0), f.fixed);
    assert_int_equal(atomic_load(&f.calls[f.rival]), 2);
    nb_gemm_class_choice(nb_gemm_class_of(TA, TB, M0, N0, K0), &c);
    assert_true(c.seconds[f.rival] == 0 && c.seconds[f.fixed] == 1.0);
    nb_gemm_select_reset(NULL, NULL, NULL);
}

/* nb_gemm_follow: a checkpoint's choices, followed only under auto; a spec
 * of another build is refused whole (nothing changes, measured as before). */
static void test_follow(void **state)
{
    (void)state;
    fake f;
    if (!setup_fake(&f, 0.5)) skip();
    char key[32], spec[96];
    nb_gemm_class_key(nb_gemm_class_of(TA, TB, M0, N0, K0), key);
    snprintf(spec, sizeof spec, "fixed,%s=%s", key, nb_gemm_kernel_name(f.rival));
    nb_gemm_select_reset("auto", fake_trial, &f);
    assert_int_equal(nb_gemm_follow(NULL), -1);
    assert_non_null(strstr(nb_last_error(), "spec is NULL"));
    assert_int_equal(nb_gemm_follow("fixed,nn.m9-9.n1-2.k1-2=builtin"), -1);
    assert_non_null(strstr(nb_last_error(), "unknown class 'nn.m9-9.n1-2.k1-2' ignored"));
    assert_int_equal(nb_gemm_follow("fixed,nn.m1-2.n1-2.k1-2=warp9"), -1);
    assert_non_null(strstr(nb_last_error(), "unknown kernel 'warp9'"));
    assert_null(nb_gemm_spec_problem()); /* NB_GEMM itself was fine */
    /* A checkpoint's hostile nabla.gemm: longer than any build writes (even
     * of valid items) is refused from its length, before any item is read. */
    const char *kname = nb_gemm_kernel_name(f.rival);
    const size_t item = strlen(key) + strlen(kname) + 2, items = 200000;
    char *longspec = malloc(sizeof "fixed" + items * item);
    assert_non_null(longspec);
    size_t at = (size_t)sprintf(longspec, "fixed");
    for (size_t i = 0; i < items; i++)
        at += (size_t)sprintf(longspec + at, ",%s=%s", key, kname);
    assert_int_equal(nb_gemm_follow(longspec), -1);
    assert_non_null(strstr(nb_last_error(), "longer than any build writes"));
    for (size_t i = 0; i < at; i++)
        longspec[i] = i % 8 ? 'z' : ','; /* unknown kernels */
    assert_int_equal(nb_gemm_follow(longspec), -1);
    assert_non_null(strstr(nb_last_error(), "longer than any build writes"));
    free(longspec);
    const int calls = total_calls(&f);
    assert_int_equal(nb_gemm_follow(spec), 1);
    assert_int_equal(nb_gemm_kernel_for(TA, TB, M0, N0, K0, 0), f.rival);
    assert_int_equal(nb_gemm_kernel_for(true, false, M0, N0, K0, 0), nb_gemm_fixed_kernel(true, false, M0, N0, K0));
    assert_int_equal(total_calls(&f), calls); /* followed: nothing measured */
    assert_int_equal(nb_gemm_follow(spec), 0); /* no longer all auto */
    char back[96];
    nb_gemm_choices_spec(back, sizeof back);
    assert_string_equal(back, spec); /* a resumed run's checkpoint says the same */
    nb_gemm_select_reset("fixed", fake_trial, &f);
    assert_int_equal(nb_gemm_follow(spec), 0); /* explicit NB_GEMM wins */
    assert_int_equal(nb_gemm_kernel_for(TA, TB, M0, N0, K0, 0), nb_gemm_fixed_kernel(TA, TB, M0, N0, K0));
    nb_gemm_select_reset(NULL, NULL, NULL);
}

/* nb_gemm_inplace_allowed: the in-place convolutions run under auto, fixed
 * and avx512 whatever was measured; not where NB_GEMM names another kernel,
 * which the checkpoint's spec keeps as KERNEL-only, so that following it
 * decides as the run it came from did; a measured kernel is written plain
 * and followed with the in-place paths allowed. */
static void test_inplace_allowed(void **state)
{
    (void)state;
    char key[32], spec[96], back[160];
    const int cls = nb_gemm_class_of(false, false, 784, 24, 216);
    nb_gemm_class_key(cls, key);
    for (int i = 0; i < 3; i++) {
        nb_gemm_select_reset((const char *[]){"auto", "fixed", "avx512"}[i], NULL, NULL);
        assert_true(nb_gemm_inplace_allowed(false, false, 784, 24, 216));
    }
    nb_gemm_select_reset("builtin", NULL, NULL);
    assert_false(nb_gemm_inplace_allowed(false, false, 784, 24, 216));
    assert_int_equal(nb_gemm_kernel_for(false, false, 784, 24, 216, 0), NB_GEMM_PORTABLE);
    nb_gemm_choices_spec(back, sizeof back);
    snprintf(spec, sizeof spec, "fixed,%s=builtin-only", key);
    assert_string_equal(back, spec);
    nb_gemm_select_reset("auto", NULL, NULL);
    assert_int_equal(nb_gemm_follow(spec), 1);
    assert_false(nb_gemm_inplace_allowed(false, false, 784, 24, 216)); /* as the run it resumes */
    assert_true(nb_gemm_inplace_allowed(true, false, 784, 24, 216));   /* another class */
    assert_int_equal(nb_gemm_kernel_for(false, false, 784, 24, 216, 0), NB_GEMM_PORTABLE);
    nb_gemm_choices_spec(back, sizeof back);
    assert_string_equal(back, spec); /* and its checkpoint says the same */
    /* A class only asked about (the in-place paths stand for a product the
     * lowering runs as GEMMs of other classes) is written too, and refused
     * after following. */
    const int asked = nb_gemm_class_of(true, false, 48, 144, 64);
    char akey[32], both[160];
    nb_gemm_class_key(asked, akey);
    nb_gemm_select_reset("builtin", NULL, NULL);
    assert_int_equal(nb_gemm_kernel_for(false, false, 784, 24, 216, 0), NB_GEMM_PORTABLE);
    assert_false(nb_gemm_inplace_allowed(true, false, 48, 144, 64));
    nb_gemm_choices_spec(both, sizeof both);
    assert_non_null(strstr(both, spec + strlen("fixed")));
    char aitem[64];
    snprintf(aitem, sizeof aitem, ",%s=builtin-only", akey);
    assert_non_null(strstr(both, aitem));
    nb_gemm_select_reset("auto", NULL, NULL);
    assert_int_equal(nb_gemm_follow(both), 1);
    assert_false(nb_gemm_inplace_allowed(true, false, 48, 144, 64));
    assert_int_equal(nb_gemm_kernel_for(false, false, 784, 24, 216, 0), NB_GEMM_PORTABLE);
    nb_gemm_choices_spec(back, sizeof back);
    assert_string_equal(back, both);
    snprintf(spec, sizeof spec, "fixed,%s=builtin", key); /* as a measured choice is written */
    nb_gemm_select_reset("auto", NULL, NULL);
    assert_int_equal(nb_gemm_follow(spec), 1);
    assert_true(nb_gemm_inplace_allowed(false, false, 784, 24, 216));
    assert_int_equal(nb_gemm_kernel_for(false, false, 784, 24, 216, 0), NB_GEMM_PORTABLE);
    snprintf(spec, sizeof spec, "%s=openblas-only", key); /* NB_GEMM may say it too */
    nb_gemm_select_reset(spec, NULL, NULL);
    assert_null(nb_gemm_spec_problem());
    assert_false(nb_gemm_inplace_allowed(false, false, 784, 24, 216));
    nb_gemm_select_reset("auto-only", NULL, NULL);
    assert_non_null(nb_gemm_spec_problem());
    assert_non_null(strstr(nb_gemm_spec_problem(), "unknown kernel 'auto-only'"));
    nb_gemm_select_reset(NULL, NULL, NULL);
}

/* nb_gemm_choices_spec: another process given it runs the same kernels. */
static void test_choices_spec(void **state)
{
    (void)state;
    fake f;
    if (!setup_fake(&f, 0.5)) skip();
    nb_gemm_select_reset("auto", fake_trial, &f);
    assert_int_equal(nb_gemm_kernel_for(TA, TB, M0, N0, K0, 0), f.rival);
    char spec[256], key[32], want[128];
    const size_t len = nb_gemm_choices_spec(spec, sizeof spec);
    nb_gemm_class_key(nb_gemm_class_of(TA, TB, M0, N0, K0), key);
    snprintf(want, sizeof want, "fixed,%s=%s", key, nb_gemm_kernel_name(f.rival));
    assert_string_equal(spec, want);
    assert_int_equal(len, strlen(want));
    char small[8];
    assert_int_equal(nb_gemm_choices_spec(small, sizeof small), len); /* cut, NUL-terminated */
    assert_string_equal(small, "fixed,n");
    const int calls = total_calls(&f);
    nb_gemm_select_reset(spec, fake_trial, &f);
    assert_null(nb_gemm_spec_problem());
    assert_int_equal(nb_gemm_kernel_for(TA, TB, 700, N0, K0, 0), f.rival);
    assert_int_equal(nb_gemm_kernel_for(true, false, M0, N0, K0, 0), nb_gemm_fixed_kernel(true, false, M0, N0, K0));
    assert_int_equal(total_calls(&f), calls);
    nb_gemm_select_reset(NULL, NULL, NULL);
}

/* Fixed and named kernels: nothing measured; per-class items. */
static void test_fixed_and_named(void **state)
{
    (void)state;
    fake f;
    setup_fake(&f, 0.1);
    nb_gemm_select_reset("fixed", fake_trial, &f);
    assert_int_equal(nb_gemm_kernel_for(TA, TB, M0, N0, K0, 0), nb_gemm_fixed_kernel(TA, TB, M0, N0, K0));
    /* fixed follows the shape, not the class's first product */
    assert_int_equal(nb_gemm_kernel_for(false, false, 1, 128, 9216, 0), NB_GEMM_ROWS);
    assert_int_equal(nb_gemm_kernel_for(false, false, 1, 128, 100, 0), nb_gemm_fixed_kernel(false, false, 3, 3, 3));
    nb_gemm_select_reset("builtin", fake_trial, &f);
    assert_int_equal(nb_gemm_kernel_for(TA, TB, M0, N0, K0, 0), NB_GEMM_PORTABLE);
    nb_gemm_select_reset("rows", fake_trial, &f); /* rows cannot run this: the fixed default */
    assert_int_equal(nb_gemm_kernel_for(TA, TB, M0, N0, K0, 0), nb_gemm_fixed_kernel(TA, TB, M0, N0, K0));
    assert_int_equal(nb_gemm_kernel_for(false, false, 2, 10, 10, 0), NB_GEMM_ROWS);
    char key[32];
    nb_gemm_class_key(nb_gemm_class_of(TA, TB, M0, N0, K0), key);
    char spec[96];
    snprintf(spec, sizeof spec, "fixed,%s=builtin", key);
    nb_gemm_select_reset(spec, fake_trial, &f);
    assert_null(nb_gemm_spec_problem());
    assert_int_equal(nb_gemm_kernel_for(TA, TB, M0, N0, K0, 0), NB_GEMM_PORTABLE);
    assert_int_equal(nb_gemm_kernel_for(true, false, M0, N0, K0, 0), nb_gemm_fixed_kernel(true, false, M0, N0, K0));
    assert_int_equal(total_calls(&f), 0);
    /* fixed everywhere but auto for one class: only that class measures */
    snprintf(spec, sizeof spec, "fixed,%s=auto", key);
    nb_gemm_select_reset(spec, fake_trial, &f);
    assert_int_equal(nb_gemm_kernel_for(true, false, M0, N0, K0, 0), nb_gemm_fixed_kernel(true, false, M0, N0, K0));
    assert_int_equal(total_calls(&f), 0);
    if (f.rival != NB_GEMM_NKERNELS) assert_int_equal(nb_gemm_kernel_for(TA, TB, M0, N0, K0, 0), f.rival);
    nb_gemm_select_reset(NULL, NULL, NULL);
}

static void test_spec_problems(void **state)
{
    (void)state;
    fake f;
    setup_fake(&f, 1);
    nb_gemm_select_reset("avx51", fake_trial, &f);
    assert_non_null(nb_gemm_spec_problem());
    assert_non_null(strstr(nb_gemm_spec_problem(), "unknown kernel 'avx51'"));
    assert_non_null(strstr(nb_gemm_spec_problem(), "use auto, fixed"));
    nb_gemm_select_reset("builtin,nn.m1-3=openblas", fake_trial, &f); /* the good item still applies */
    assert_non_null(strstr(nb_gemm_spec_problem(), "unknown class 'nn.m1-3'"));
    assert_int_equal(nb_gemm_kernel_for(TA, TB, M0, N0, K0, 0), NB_GEMM_PORTABLE);
    nb_gemm_select_reset("fixed,nn.m1-2.n1-2.k1-2=fast", fake_trial, &f);
    assert_non_null(strstr(nb_gemm_spec_problem(), "unknown kernel 'fast'"));
    nb_gemm_select_reset("blas,portable,fixed,nn.m1-2.n1-2.k1-2=rows", fake_trial, &f);
    assert_null(nb_gemm_spec_problem());
    nb_gemm_select_reset(NULL, NULL, NULL);
}

/* Keys: the network's classes as kernels.h names them, all distinct. */
static void test_class_keys(void **state)
{
    (void)state;
    char key[32];
    nb_gemm_class_key(nb_gemm_class_of(false, false, 576, 64, 288), key);
    assert_string_equal(key, "nn.m513-2048.n33-128.k129-512");
    nb_gemm_class_key(nb_gemm_class_of(true, false, 288, 64, 576), key);
    assert_string_equal(key, "tn.m129-512.n33-128.k513-2048");
    nb_gemm_class_key(nb_gemm_class_of(false, false, 128, 128, 9216), key);
    assert_string_equal(key, "nn.m33-128.n33-128.k2049+");
    nb_gemm_class_key(nb_gemm_class_of(false, true, 3, 9216, 128), key);
    assert_string_equal(key, "nt.m3-8.n2049+.k33-128");
    assert_int_equal(nb_gemm_class_of(false, false, 513, 33, 129), nb_gemm_class_of(false, false, 2048, 128, 512));
    assert_int_not_equal(nb_gemm_class_of(false, false, 512, 33, 129), nb_gemm_class_of(false, false, 513, 33, 129));
    static char keys[NB_GEMM_NCLASSES][32];
    for (int c = 0; c < NB_GEMM_NCLASSES; c++) nb_gemm_class_key(c, keys[c]);
    for (int c = 0; c < NB_GEMM_NCLASSES; c++)
        for (int d = c + 1; d < NB_GEMM_NCLASSES; d++) assert_true(strcmp(keys[c], keys[d]) != 0);
}

/* Threads meeting an undecided class together: one measurement, one answer. */
static void test_decided_once(void **state)
{
    (void)state;
    fake f;
    if (!setup_fake(&f, 0.5)) skip();
    nb_gemm_select_reset("auto", fake_trial, &f);
    int wrong = 0;
#pragma omp parallel for reduction(+ : wrong)
    for (int i = 0; i < 64; i++) wrong += nb_gemm_kernel_for(TA, TB, M0 + i, N0, K0, 0) != f.rival;
    assert_int_equal(wrong, 0);
    /* 8 rounds for the two, 2 for the others (10x slower: dropped after round 1) */
    int want = 0;
    for (int k = 0; k < NB_GEMM_NKERNELS; k++)
        if (nb_gemm_kernel_usable((nb_gemm_kernel)k, TB, M0)) want += k == (int)f.fixed || k == (int)f.rival ? 8 : 2;
    assert_int_equal(total_calls(&f), want);
    nb_gemm_select_reset(NULL, NULL, NULL);
}

/* Measured for real (the kernel chosen depends on this machine's timing;
 * what is asserted does not): products are right, and the same product
 * twice gives the same bits. */
static void test_auto_real(void **state)
{
    (void)state;
    nb_gemm_select_reset("auto", NULL, NULL);
    int bad = 0;
    bad += check(nb_gemm_serial, "auto", false, false, 576, 64, 288, 1, 0, 0);
    bad += check(nb_gemm_serial, "auto", true, false, 288, 64, 576, 1, 1, 0);
    bad += check(nb_gemm, "auto", false, true, 130, 300, 64, 1, 0, 0);
    bad += check(nb_gemm_serial, "auto", false, false, 1, 128, 700, 1, 0, 0);
    assert_int_equal(bad, 0);
    enum { M = 200, N = 70, K = 150 };
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N);
    float *c1 = malloc(sizeof(float) * M * N), *c2 = malloc(sizeof(float) * M * N);
    assert_non_null(a), assert_non_null(b), assert_non_null(c1), assert_non_null(c2);
    for (int i = 0; i < M * K; i++) a[i] = uniform();
    for (int i = 0; i < K * N; i++) b[i] = uniform();
    nb_gemm_serial(false, false, M, N, K, 1, a, K, b, N, 0, c1, N);
    nb_gemm_serial(false, false, M, N, K, 1, a, K, b, N, 0, c2, N);
    assert_memory_equal(c1, c2, sizeof(float) * M * N);
    nb_gemm_choice ch;
    nb_gemm_class_choice(nb_gemm_class_of(false, false, M, N, K), &ch);
    assert_true(ch.used);
    assert_true(nb_gemm_kernel_usable(ch.kernel, false, M));
    free(a), free(b), free(c1), free(c2);
    nb_gemm_select_reset(NULL, NULL, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_shapes), cmocka_unit_test(test_network_shapes), cmocka_unit_test(test_blocks),
        cmocka_unit_test(test_guard_pages),  cmocka_unit_test(test_empty_k),
        cmocka_unit_test(test_concurrent),   cmocka_unit_test(test_pick),
        cmocka_unit_test(test_measured_choice), cmocka_unit_test(test_fixed_and_named),
        cmocka_unit_test(test_choices_spec),
        cmocka_unit_test(test_follow),        cmocka_unit_test(test_inplace_allowed),
        cmocka_unit_test(test_spec_problems), cmocka_unit_test(test_class_keys),
        cmocka_unit_test(test_decided_once), cmocka_unit_test(test_auto_real),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
