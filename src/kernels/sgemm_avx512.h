/* Single-threaded float GEMM for x86-64 CPUs with AVX-512 (sgemm_avx512.c).
 * Row-major, C = alpha op(A) op(B) + beta C with op(A) M x K, op(B) K x N;
 * beta == 0 never reads C. Call it only where nb_sgemm_avx512_usable() is
 * true (the CPU has AVX-512F/DQ/BW/VL; decided at run time). Safe to call
 * from several threads at once: each thread packs into its own scratch. */
#ifndef NB_SGEMM_AVX512_H
#define NB_SGEMM_AVX512_H

#include <stdbool.h>
#include <stdint.h>

#if !defined(NB_DOUBLE) && defined(__x86_64__) && defined(__GNUC__)
#define NB_HAVE_SGEMM_AVX512 1
bool nb_sgemm_avx512_usable(void);
void nb_sgemm_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* The K slice nb_sgemm_avx512 uses for a product of this K: K is cut into
 * slices of this many (the last one shorter), the first written (or added
 * to beta C), the others added. conv_avx512.c slices alike, so its sums are
 * this kernel's bit for bit. */
int64_t nb_sgemm_avx512_kslice(int64_t K);
#endif

#endif
