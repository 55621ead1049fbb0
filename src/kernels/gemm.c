/* GEMM: the one place that knows how matrix products meet the hardware.
 * CBLAS (OpenBLAS) when built with it; otherwise a blocked, OpenMP-parallel
 * kernel that the compiler vectorises. Row-major throughout. */
#include "../core/internal.h"

#ifdef NB_HAVE_CBLAS
#include <cblas.h>
#endif

/* Element (i, j) of op(X) for a row-major X with leading dimension ld. */
#define AT(X, trans, ld, i, j) ((trans) ? (X)[(j) * (ld) + (i)] : (X)[(i) * (ld) + (j)])

void nb_gemm_builtin(bool ta, bool tb, int64_t M, int64_t N, int64_t K, nb_real alpha, const nb_real *A,
                     int64_t lda, const nb_real *B, int64_t ldb, nb_real beta, nb_real *C, int64_t ldc)
{
    enum { BK = 256, BN = 512 };
    /* C = beta C first, so the blocked loops only accumulate. */
#pragma omp parallel for schedule(static) if (M * N > 4096)
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0 ? 0 : beta * C[i * ldc + j];
    for (int64_t k0 = 0; k0 < K; k0 += BK) {
        int64_t k1 = k0 + BK < K ? k0 + BK : K;
        for (int64_t j0 = 0; j0 < N; j0 += BN) {
            int64_t j1 = j0 + BN < N ? j0 + BN : N;
#pragma omp parallel for schedule(static) if (M * (j1 - j0) * (k1 - k0) > 65536)
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

void nb_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, nb_real alpha, const nb_real *A, int64_t lda,
             const nb_real *B, int64_t ldb, nb_real beta, nb_real *C, int64_t ldc)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0 ? 0 : beta * C[i * ldc + j];
        return;
    }
#ifdef NB_HAVE_CBLAS
    if (M <= INT32_MAX && N <= INT32_MAX && K <= INT32_MAX && lda <= INT32_MAX && ldb <= INT32_MAX &&
        ldc <= INT32_MAX) {
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
    nb_gemm_builtin(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
