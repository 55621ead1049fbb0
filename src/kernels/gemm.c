/* GEMM: the one place that knows how matrix products meet the hardware.
 * For float on CPUs with AVX-512, our own packed kernel (sgemm_avx512.c);
 * else CBLAS (OpenBLAS) when built with it, else a blocked kernel the
 * compiler vectorises. Row-major throughout.
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

/* The kernel behind nb_gemm_serial, chosen once per process. By default:
 * for float, the AVX-512 kernel (sgemm_avx512.c) when the CPU has AVX-512,
 * else OpenBLAS when built with it, else the built-in kernel; for double,
 * OpenBLAS when built with it, else the built-in kernel. The environment
 * variable NB_GEMM=openblas|builtin|avx512 overrides that choice (for
 * benchmarks and comparisons); a choice this build or CPU cannot run falls
 * back to the default. */
enum { BACKEND_BUILTIN, BACKEND_OPENBLAS, BACKEND_AVX512 };
static once_flag backend_once = ONCE_FLAG_INIT;
static int backend; /* written once, under call_once */

static void pick_backend(void)
{
    bool avx512 = false, blas = false;
#ifdef NB_HAVE_SGEMM_AVX512
    avx512 = nb_sgemm_avx512_usable();
#endif
#ifdef NB_HAVE_CBLAS
    blas = true;
#endif
    backend = avx512 ? BACKEND_AVX512 : blas ? BACKEND_OPENBLAS : BACKEND_BUILTIN;
    const char *env = getenv("NB_GEMM");
    if (!env) return;
    if (!strcmp(env, "builtin")) backend = BACKEND_BUILTIN;
    else if (!strcmp(env, "openblas") && blas) backend = BACKEND_OPENBLAS;
    else if (!strcmp(env, "avx512") && avx512) backend = BACKEND_AVX512;
}

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

void nb_gemm_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, nb_real alpha, const nb_real *A, int64_t lda,
                    const nb_real *B, int64_t ldb, nb_real beta, nb_real *C, int64_t ldc)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    if (M <= 2 && !tb && N * K >= 16384) {
        few_rows(ta, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    call_once(&backend_once, pick_backend);
#ifdef NB_HAVE_SGEMM_AVX512
    if (backend == BACKEND_AVX512) {
        nb_sgemm_avx512(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#endif
#ifdef NB_HAVE_CBLAS
    if (backend == BACKEND_OPENBLAS && M <= INT32_MAX && N <= INT32_MAX && K <= INT32_MAX && lda <= INT32_MAX &&
        ldb <= INT32_MAX && ldc <= INT32_MAX) {
        call_once(&blas_once, blas_single_thread);
#ifdef NB_DOUBLE
        cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N,
                    (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
#else
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N,
                    (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
#endif
        return;
    }
#endif
    builtin_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* Splits C into one block per thread along its longer side. Blocks are
 * multiples of 16 rows/columns so that every thread runs full micro-tiles. */
static void gemm_split(bool ta, bool tb, int64_t M, int64_t N, int64_t K, nb_real alpha, const nb_real *A,
                       int64_t lda, const nb_real *B, int64_t ldb, nb_real beta, nb_real *C, int64_t ldc,
                       void (*kernel)(bool, bool, int64_t, int64_t, int64_t, nb_real, const nb_real *, int64_t,
                                      const nb_real *, int64_t, nb_real, nb_real *, int64_t))
{
    const bool by_rows = M >= N;
    const int64_t len = by_rows ? M : N;
#pragma omp parallel
    {
        const int T = nb_team_size(), t = nb_thread_id();
        int64_t step = (len + T - 1) / T;
        step = (step + 15) / 16 * 16;
        const int64_t i0 = t * step, i1 = i0 + step < len ? i0 + step : len;
        if (i0 < i1) {
            if (by_rows)
                kernel(ta, tb, i1 - i0, N, K, alpha, ta ? A + i0 : A + i0 * lda, lda, B, ldb, beta, C + i0 * ldc, ldc);
            else
                kernel(ta, tb, M, i1 - i0, K, alpha, A, lda, tb ? B + i0 * ldb : B + i0, ldb, beta, C + i0, ldc);
        }
    }
}

void nb_gemm_builtin(bool ta, bool tb, int64_t M, int64_t N, int64_t K, nb_real alpha, const nb_real *A,
                     int64_t lda, const nb_real *B, int64_t ldb, nb_real beta, nb_real *C, int64_t ldc)
{
    if (M <= 0 || N <= 0) return;
    gemm_split(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, builtin_serial);
}

void nb_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, nb_real alpha, const nb_real *A, int64_t lda,
             const nb_real *B, int64_t ldb, nb_real beta, nb_real *C, int64_t ldc)
{
    if (M <= 0 || N <= 0) return;
    /* Small products, or calls from inside a parallel region: one thread. */
    const double flops = 2.0 * (double)M * (double)N * (double)(K > 0 ? K : 1);
    if (flops < 1e6 || nb_max_team() < 2
#ifdef _OPENMP
        || omp_in_parallel()
#endif
    ) {
        nb_gemm_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    gemm_split(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, nb_gemm_serial);
}
