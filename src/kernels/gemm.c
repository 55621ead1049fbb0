/* GEMM: the one place that knows how matrix products meet the hardware.
 * Four kernels: our packed AVX-512 kernel for float (sgemm_avx512.c),
 * CBLAS (OpenBLAS) when built with it, a blocked kernel the compiler
 * vectorises, and a streaming one for one or two rows. Which one a product
 * runs is decided per shape class (gemm_select.c). Row-major throughout.
 *
 * Threads: OpenBLAS is kept on one thread and nb_gemm splits C into one
 * block of rows (or columns) per OpenMP thread. With a single thread pool,
 * convolution can run its per-image GEMMs inside its own parallel region
 * (nb_gemm_serial) and no spinning BLAS threads steal the cores from it. */
#include "kernels.h"
#include "sgemm_avx512.h"

#include <stdlib.h>
#include <threads.h>

#ifdef NB_HAVE_CBLAS
#include <cblas.h>
void openblas_set_num_threads(int n);
static once_flag blas_once = ONCE_FLAG_INIT;
static void blas_single_thread(void) { openblas_set_num_threads(1); }
#endif

/* Element (i, j) of op(X) for a row-major X with leading dimension ld. */
#define AT(X, trans, ld, i, j) ((trans) ? (X)[(j) * (ld) + (i)] : (X)[(i) * (ld) + (j)])

static void scale_c(int64_t M, int64_t N, nb_real beta, nb_real *C, int64_t ldc)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0 ? 0 : beta * C[i * ldc + j];
}

/* Serial blocked kernel: C = beta C, then C += alpha op(A) op(B) in K x N
 * blocks, the innermost loop running along a row of C and of B. */
static void builtin_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, nb_real alpha, const nb_real *A,
                           int64_t lda, const nb_real *B, int64_t ldb, nb_real beta, nb_real *C, int64_t ldc)
{
    enum { BK = 256, BN = 512 };
    scale_c(M, N, beta, C, ldc);
    for (int64_t k0 = 0; k0 < K; k0 += BK) {
        int64_t k1 = k0 + BK < K ? k0 + BK : K;
        for (int64_t j0 = 0; j0 < N; j0 += BN) {
            int64_t j1 = j0 + BN < N ? j0 + BN : N;
            for (int64_t i = 0; i < M; i++) {
                nb_real *c = C + i * ldc;
                for (int64_t k = k0; k < k1; k++) {
                    nb_real aik = alpha * AT(A, ta, lda, i, k);
                    if (aik == 0) continue;
                    if (!tb) {
                        const nb_real *b = B + k * ldb;
#pragma omp simd
                        for (int64_t j = j0; j < j1; j++) c[j] += aik * b[j];
                    } else {
                        for (int64_t j = j0; j < j1; j++) c[j] += aik * B[j * ldb + k];
                    }
                }
            }
        }
    }
}

/* One or two rows of C with B not transposed (one image through a dense
 * layer): a GEMV in disguise, bound by reading B. Packing B would read and
 * write it once more, so B is streamed once instead: row k of B updates the
 * rows of a block of C's columns, which stay in L1 while k runs. Measured
 * (1 x 128 x 9216): 87 us against 221 us packed; from three rows on, and
 * for a transposed B, the packed kernels win. */
static void few_rows(bool ta, int64_t M, int64_t N, int64_t K, nb_real alpha, const nb_real *A, int64_t lda,
                     const nb_real *B, int64_t ldb, nb_real beta, nb_real *C, int64_t ldc)
{
    enum { NB = 512 };
    scale_c(M, N, beta, C, ldc);
    for (int64_t j0 = 0; j0 < N; j0 += NB) {
        const int64_t j1 = j0 + NB < N ? j0 + NB : N;
        for (int64_t k = 0; k < K; k++) {
            const nb_real *b = B + k * ldb;
            for (int64_t m = 0; m < M; m++) {
                const nb_real a = alpha * AT(A, ta, lda, m, k);
                nb_real *c = C + m * ldc;
#pragma omp simd
                for (int64_t j = j0; j < j1; j++) c[j] += a * b[j];
            }
        }
    }
}

const char *nb_gemm_kernel_name(nb_gemm_kernel k)
{
    static const char *const names[NB_GEMM_NKERNELS] = {"builtin", "openblas", "avx512", "rows"};
    return (unsigned)k < NB_GEMM_NKERNELS ? names[k] : "?";
}

bool nb_gemm_kernel_usable(nb_gemm_kernel k, bool tb, int64_t M)
{
    switch (k) {
    case NB_GEMM_PORTABLE: return true;
#ifdef NB_HAVE_CBLAS
    case NB_GEMM_OPENBLAS: return true;
#endif
#ifdef NB_HAVE_SGEMM_AVX512
    case NB_GEMM_AVX512: return nb_sgemm_avx512_usable();
#endif
    case NB_GEMM_ROWS: return M <= 2 && !tb;
    default: return false;
    }
}

/* Measured (1 x 128 x 9216, before the choice was measured per class):
 * rows 87 us against 221 us for the packed kernel; from three rows on, and
 * for a transposed B, the packed kernels won. */
nb_gemm_kernel nb_gemm_fixed_kernel(bool ta, bool tb, int64_t M, int64_t N, int64_t K)
{
    if (M <= 2 && !tb && N * K >= 16384) return NB_GEMM_ROWS;
    if (nb_gemm_kernel_usable(NB_GEMM_AVX512, tb, M)) return NB_GEMM_AVX512;
    if (nb_gemm_kernel_usable(NB_GEMM_OPENBLAS, tb, M)) return NB_GEMM_OPENBLAS;
    return NB_GEMM_PORTABLE;
}

#ifdef NB_HAVE_CBLAS
static bool blas(bool ta, bool tb, int64_t M, int64_t N, int64_t K, nb_real alpha, const nb_real *A, int64_t lda,
                 const nb_real *B, int64_t ldb, nb_real beta, nb_real *C, int64_t ldc)
{
    if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX || lda > INT32_MAX || ldb > INT32_MAX || ldc > INT32_MAX)
        return false;
    call_once(&blas_once, blas_single_thread);
#ifdef NB_DOUBLE
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N,
                (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
#else
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N,
                (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
#endif
    return true;
}
#endif

void nb_gemm_with(nb_gemm_kernel k, bool ta, bool tb, int64_t M, int64_t N, int64_t K, nb_real alpha,
                  const nb_real *A, int64_t lda, const nb_real *B, int64_t ldb, nb_real beta, nb_real *C,
                  int64_t ldc)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    switch (k) {
    case NB_GEMM_ROWS:
        if (M <= 2 && !tb) {
            few_rows(ta, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
            return;
        }
        break;
#ifdef NB_HAVE_SGEMM_AVX512
    case NB_GEMM_AVX512:
        nb_sgemm_avx512(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
#endif
#ifdef NB_HAVE_CBLAS
    case NB_GEMM_OPENBLAS:
        if (blas(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) return;
        break;
#endif
    default: break;
    }
    builtin_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void nb_gemm_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, nb_real alpha, const nb_real *A, int64_t lda,
                    const nb_real *B, int64_t ldb, nb_real beta, nb_real *C, int64_t ldc)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    const nb_gemm_kernel k = nb_gemm_kernel_for(ta, tb, M, N, K, beta);
    nb_gemm_with(k, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* Splits C into one block per thread along its longer side, every block
 * through kernel k. Blocks are multiples of 16 rows/columns so that every
 * thread runs full micro-tiles; split_step gives their size. */
static int64_t split_step(int64_t len, int T)
{
    int64_t step = (len + T - 1) / T;
    return (step + 15) / 16 * 16;
}

static void gemm_split(nb_gemm_kernel k, bool ta, bool tb, int64_t M, int64_t N, int64_t K, nb_real alpha,
                       const nb_real *A, int64_t lda, const nb_real *B, int64_t ldb, nb_real beta, nb_real *C,
                       int64_t ldc)
{
    const bool by_rows = M >= N;
    const int64_t len = by_rows ? M : N;
#pragma omp parallel
    {
        const int64_t step = split_step(len, nb_team_size()), i0 = nb_thread_id() * step;
        const int64_t i1 = i0 + step < len ? i0 + step : len;
        if (i0 < i1) {
            if (by_rows)
                nb_gemm_with(k, ta, tb, i1 - i0, N, K, alpha, ta ? A + i0 : A + i0 * lda, lda, B, ldb, beta,
                             C + i0 * ldc, ldc);
            else
                nb_gemm_with(k, ta, tb, M, i1 - i0, K, alpha, A, lda, tb ? B + i0 * ldb : B + i0, ldb, beta,
                             C + i0, ldc);
        }
    }
}

void nb_gemm_builtin(bool ta, bool tb, int64_t M, int64_t N, int64_t K, nb_real alpha, const nb_real *A,
                     int64_t lda, const nb_real *B, int64_t ldb, nb_real beta, nb_real *C, int64_t ldc)
{
    if (M <= 0 || N <= 0) return;
    gemm_split(NB_GEMM_PORTABLE, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void nb_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, nb_real alpha, const nb_real *A, int64_t lda,
             const nb_real *B, int64_t ldb, nb_real beta, nb_real *C, int64_t ldc)
{
    if (M <= 0 || N <= 0) return;
    /* Small products, or calls from inside a parallel region: one thread. */
    const double flops = 2.0 * (double)M * (double)N * (double)(K > 0 ? K : 1);
    if (K <= 0 || flops < 1e6 || nb_max_team() < 2
#ifdef _OPENMP
        || omp_in_parallel()
#endif
    ) {
        nb_gemm_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* One kernel for the whole product: the one of its first block's class
     * (the blocks a thread runs), so every element rounds the same way. */
    const int T = nb_max_team();
    const nb_gemm_kernel k = M >= N ? nb_gemm_kernel_for(ta, tb, split_step(M, T) < M ? split_step(M, T) : M, N, K, beta)
                                    : nb_gemm_kernel_for(ta, tb, M, split_step(N, T) < N ? split_step(N, T) : N, K, beta);
    gemm_split(k, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
