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

/* The right half (columns 16..) of a register tile's row, shared by the
 * GEMM's micro-kernel and the in-place convolution tiles: c + a b on the
 * lanes a panel of `width` columns (24 or 32) uses. At 24 it is a 256-bit
 * FMA, which a Zen 4 (512-bit FMAs double-pumped on 256-bit units) runs at
 * half the cost of a 512-bit one; the lanes it computes are the same FMAs,
 * and the lanes above 8 it leaves undefined are never stored. */
#include <immintrin.h>
__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,fma"))) static inline __attribute__((always_inline)) __m512
nb_fma_right_half(__m512 a, __m512 b, __m512 c, const int width)
{
    if (width == 24)
        return _mm512_castps256_ps512(
            _mm256_fmadd_ps(_mm512_castps512_ps256(a), _mm512_castps512_ps256(b), _mm512_castps512_ps256(c)));
    return _mm512_fmadd_ps(a, b, c);
}
#endif

#endif
