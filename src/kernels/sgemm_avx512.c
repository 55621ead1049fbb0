/* Single-threaded float GEMM for AVX-512 (row-major C = alpha op(A) op(B)
 * + beta C), in the usual packed, cache-blocked form:
 *
 *   for each NC-column block of C
 *     for each KC-slice of K:   pack op(B) (KC x NC) into NR-column panels
 *       for each MC-row block:  pack op(A) (MC x KC) into MR-row panels
 *         for each NR panel, for each MR panel: the micro-kernel
 *
 * The micro-kernel keeps an MR x NR = 14 x 32 tile of C in 28 zmm registers
 * (two per row); each step over k loads one 32-float row of the B panel and
 * broadcasts the 14 values of the A panel into FMAs. Panels are zero-padded
 * to full MR/NR, so the kernel always runs full tiles and only its stores
 * are masked to the rows/columns that exist (a tile of at most 16 columns
 * runs a half-width variant that skips the right zmm). K is split into balanced slices
 * of at most KC; only the first slice applies beta (beta == 0 never reads
 * C), the others add. The transposed operands are packed through 16 x 16
 * register transposes, so every trans_a/trans_b combination reads memory in
 * rows; packing untransposed A prefetches the next panel's rows.
 *
 * Block sizes were measured on a 2-core AMD EPYC (Zen 5, 48 KiB L1d, 1 MiB
 * L2): KC from 256 to 512 ran alike within noise; 384 keeps K = 288 (the
 * convolution) in one slice. About 210-240 GFLOP/s single-threaded on the
 * network's convolution and dense shapes against 115-125 for OpenBLAS with
 * its Haswell kernels.
 *
 * Every function that uses AVX-512 carries a target attribute, so the file
 * builds without -march=native; gemm.c calls in only where
 * nb_sgemm_avx512_usable() says the CPU has it. Scratch for the packed
 * panels is one buffer per thread (C11 tss, freed when the thread ends,
 * bounded by the block sizes), so concurrent calls from an OpenMP team are
 * safe. */
#include "sgemm_avx512.h"

#ifdef NB_HAVE_SGEMM_AVX512

#include <immintrin.h>
#include <stdlib.h>
#include <threads.h>

#define NB_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,fma")))

enum {
    MR = 14,         /* rows of the micro-tile (broadcasts per k) */
    NR = 32,         /* columns of the micro-tile (two zmm) */
    KC_MAX = 384,    /* K slice (a KC x NR panel of B is at most 48 KiB) */
    MC_MAX = 14 * 24,/* rows of packed A per block (MC x KC in L2) */
    NC_MAX = 2048,   /* columns of packed B per block */
    PF = 1,          /* packing A prefetches the rows this many panels ahead */
};

bool nb_sgemm_avx512_usable(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("fma");
}

/* ------------------------------------------------------------ scratch */

static once_flag scratch_once = ONCE_FLAG_INIT;
static tss_t scratch_key;  /* written once, under call_once */
static bool scratch_keyed;

static void scratch_free(void *p) { free(p); }
static void scratch_init(void) { scratch_keyed = tss_create(&scratch_key, scratch_free) == thrd_success; }

/* This thread's buffer of at least floats floats (64-byte aligned; its first
 * 64 bytes hold the capacity), or NULL. */
static float *scratch(size_t floats)
{
    call_once(&scratch_once, scratch_init);
    if (!scratch_keyed) return NULL;
    size_t *head = tss_get(scratch_key);
    if (head && head[0] >= floats) return (float *)(head + 64 / sizeof(size_t));
    const size_t bytes = (64 + floats * sizeof(float) + 63) / 64 * 64;
    size_t *fresh = aligned_alloc(64, bytes);
    if (!fresh) return NULL;
    fresh[0] = floats;
    if (tss_set(scratch_key, fresh) != thrd_success) {
        free(fresh);
        return NULL;
    }
    free(head);
    return (float *)(fresh + 64 / sizeof(size_t));
}

/* ------------------------------------------------------------ packing */

static inline __mmask16 lanes(int64_t n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u); }

/* In-register transpose of 16 rows of 16 floats: r[j][i] = old r[i][j]. */
NB_AVX512 static inline void transpose16(__m512 r[16])
{
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    /* Per 128-bit lane L, u[4g + c] = rows 4g..4g+3 at column 4L + c. */
    for (int g = 0; g < 16; g += 4) {
        const __m512d t0 = _mm512_castps_pd(t[g]), t1 = _mm512_castps_pd(t[g + 1]);
        const __m512d t2 = _mm512_castps_pd(t[g + 2]), t3 = _mm512_castps_pd(t[g + 3]);
        u[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        u[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        u[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        u[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    for (int c = 0; c < 4; c++) {
        const __m512 lo_a = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44);
        const __m512 lo_b = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44);
        const __m512 hi_a = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
        const __m512 hi_b = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
        r[c] = _mm512_shuffle_f32x4(lo_a, lo_b, 0x88);
        r[4 + c] = _mm512_shuffle_f32x4(lo_a, lo_b, 0xDD);
        r[8 + c] = _mm512_shuffle_f32x4(hi_a, hi_b, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(hi_a, hi_b, 0xDD);
    }
}

/* op(A) block of mc x kc starting at a: panels of MR rows, each kc x MR
 * (k-major), rows past mc zero. op(A)(i, k) = a[i*lda + k], or a[k*lda + i]
 * when trans. after: rows of op(A) that follow the block (to prefetch). */
NB_AVX512 static void pack_a(bool trans, const float *a, int64_t lda, int64_t mc, int64_t kc, float *out,
                             int64_t after)
{
    const __mmask16 row_mask = lanes(MR);
    for (int64_t p = 0; p < mc; p += MR, out += MR * kc) {
        const int64_t rows = mc - p < MR ? mc - p : MR;
        if (trans) {
            const __mmask16 m = lanes(rows);
            const float *src = a + p;
            for (int64_t k = 0; k < kc; k++)
                _mm512_mask_storeu_ps(out + k * MR, row_mask, _mm512_maskz_loadu_ps(m, src + k * lda));
        } else {
            const float *src = a + p * lda;
            const int64_t next = mc + after - p - PF * MR < MR ? mc + after - p - PF * MR : MR;
            for (int64_t k = 0; k < kc; k += 16) {
                const int64_t kk = kc - k < 16 ? kc - k : 16;
                const __mmask16 m = lanes(kk);
                __m512 r[16];
                for (int i = 0; i < 16; i++)
                    r[i] = i < rows ? _mm512_maskz_loadu_ps(m, src + i * lda + k) : _mm512_setzero_ps();
                /* The same columns of the rows PF panels on: 14 strided
                 * streams defeat the hardware prefetcher. */
                for (int64_t i = 0; i < next; i++)
                    _mm_prefetch((const char *)(src + (PF * MR + i) * lda + k), _MM_HINT_T0);
                transpose16(r);
                for (int j = 0; j < kk; j++) _mm512_mask_storeu_ps(out + (k + j) * MR, row_mask, r[j]);
            }
        }
    }
}

/* op(B) block of kc x nc starting at b: panels of NR columns, each kc x NR
 * (k-major, 64-byte aligned rows), columns past nc zero. op(B)(k, j) =
 * b[k*ldb + j], or b[j*ldb + k] when trans. */
NB_AVX512 static void pack_b(bool trans, const float *b, int64_t ldb, int64_t kc, int64_t nc, float *out)
{
    for (int64_t q = 0; q < nc; q += NR, out += NR * kc) {
        const int64_t cols = nc - q < NR ? nc - q : NR;
        if (!trans) {
            const __mmask16 m0 = lanes(cols), m1 = cols > 16 ? lanes(cols - 16) : 0;
            const float *src = b + q;
            for (int64_t k = 0; k < kc; k++) {
                _mm512_store_ps(out + k * NR, _mm512_maskz_loadu_ps(m0, src + k * ldb));
                _mm512_store_ps(out + k * NR + 16, m1 ? _mm512_maskz_loadu_ps(m1, src + k * ldb + 16)
                                                      : _mm512_setzero_ps());
            }
        } else {
            for (int h = 0; h < NR / 16; h++) {
                const int64_t jn = cols - 16 * h < 0 ? 0 : cols - 16 * h > 16 ? 16 : cols - 16 * h;
                const float *src = b + (q + 16 * h) * ldb;
                for (int64_t k = 0; k < kc; k += 16) {
                    const int64_t kk = kc - k < 16 ? kc - k : 16;
                    const __mmask16 m = lanes(kk);
                    __m512 r[16];
                    for (int i = 0; i < 16; i++)
                        r[i] = i < jn ? _mm512_maskz_loadu_ps(m, src + i * ldb + k) : _mm512_setzero_ps();
                    transpose16(r);
                    for (int j = 0; j < kk; j++) _mm512_store_ps(out + (k + j) * NR + 16 * h, r[j]);
                }
            }
        }
    }
}

/* ------------------------------------------------------- micro-kernel */

#define NB_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13)

/* One row of the tile into C: mode 0 writes alpha acc (C unread), mode 1
 * adds it, mode 2 adds it to beta C. */
NB_AVX512 static inline void store_row(float *c, __m512 lo, __m512 hi, __mmask16 m0, __mmask16 m1, __m512 alpha,
                                       __m512 beta, int mode)
{
    lo = _mm512_mul_ps(lo, alpha);
    hi = _mm512_mul_ps(hi, alpha);
    if (mode == 1) {
        lo = _mm512_add_ps(lo, _mm512_maskz_loadu_ps(m0, c));
        if (m1) hi = _mm512_add_ps(hi, _mm512_maskz_loadu_ps(m1, c + 16));
    } else if (mode == 2) {
        lo = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(m0, c), lo);
        if (m1) hi = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(m1, c + 16), hi);
    }
    _mm512_mask_storeu_ps(c, m0, lo);
    if (m1) _mm512_mask_storeu_ps(c + 16, m1, hi);
}

/* C[0..mr) x [0..nr) (mode as store_row) from kc steps of the panels a
 * (kc x MR) and b (kc x NR, aligned). mr and width are constants in every
 * expansion, so rows past mr (zero in the panel) are not computed. width is
 * nr rounded up to 16, 24 or 32: at 16 the right half of the tile is neither
 * computed nor stored; at 24 it is a 256-bit FMA, which a Zen 4 (512-bit
 * FMAs double-pumped on 256-bit units) runs at half the cost of a 512-bit
 * one. The lanes stored are the same FMAs in every variant: the same bits. */
NB_AVX512 static inline __attribute__((always_inline)) void
micro_body(int64_t kc, const float *restrict a, const float *restrict b, float *restrict c, int64_t ldc, const int mr,
           int nr, float alpha, float beta, int mode, const int width)
{
    const bool wide = width > 16;
#define NB_DECL(i) __m512 c##i##a = _mm512_setzero_ps(), c##i##b = _mm512_setzero_ps();
    NB_ROWS(NB_DECL)
#undef NB_DECL
    if (mode != 0)
        for (int i = 0; i < mr; i++) {
            _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
            if (wide) _mm_prefetch((const char *)(c + i * ldc + NR - 1), _MM_HINT_T0);
        }
    for (int64_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(b), b1 = wide ? _mm512_load_ps(b + 16) : b0;
#define NB_FMA(i)                                                                                                  \
    if (i < mr) {                                                                                                  \
        const __m512 ai = _mm512_set1_ps(a[i]);                                                                    \
        c##i##a = _mm512_fmadd_ps(ai, b0, c##i##a);                                                                \
        if (wide) c##i##b = nb_fma_right_half(ai, b1, c##i##b, width);                                          \
    }
        NB_ROWS(NB_FMA)
#undef NB_FMA
        a += MR;
        b += NR;
    }
    const __mmask16 m0 = lanes(nr), m1 = nr > 16 ? lanes(nr - 16) : 0;
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#define NB_STORE(i)                                                                                                \
    if (i < mr) store_row(c + (int64_t)i * ldc, c##i##a, c##i##b, m0, m1, va, vb, mode);
    NB_ROWS(NB_STORE)
#undef NB_STORE
}

/* The expansion of micro_body for mr (1..MR) and nr's width. */
NB_AVX512 static void micro_kernel(int64_t kc, const float *restrict a, const float *restrict b, float *restrict c,
                                   int64_t ldc, int mr, int nr, float alpha, float beta, int mode)
{
#define NB_CASE(m)                                                                                                 \
    case m:                                                                                                        \
        if (nr > 24)                                                                                               \
            micro_body(kc, a, b, c, ldc, m, nr, alpha, beta, mode, 32);                                            \
        else if (nr > 16)                                                                                          \
            micro_body(kc, a, b, c, ldc, m, nr, alpha, beta, mode, 24);                                            \
        else                                                                                                       \
            micro_body(kc, a, b, c, ldc, m, nr, alpha, beta, mode, 16);                                            \
        break;
    switch (mr) {
        NB_CASE(1) NB_CASE(2) NB_CASE(3) NB_CASE(4) NB_CASE(5) NB_CASE(6) NB_CASE(7)
        NB_CASE(8) NB_CASE(9) NB_CASE(10) NB_CASE(11) NB_CASE(12) NB_CASE(13) NB_CASE(14)
    default: break;
    }
#undef NB_CASE
}

/* ------------------------------------------------------------- driver */

/* The plain triple loop, for when no scratch can be had. */
static void gemm_unpacked(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                          int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float s = 0;
            for (int64_t k = 0; k < K; k++)
                s += (ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
            C[i * ldc + j] = alpha * s + (beta == 0 ? 0 : beta * C[i * ldc + j]);
        }
}

/* Balanced blocks: n split into ceil(n / max) parts of equal size, rounded
 * up to a multiple of unit. */
static int64_t block_size(int64_t n, int64_t max, int64_t unit)
{
    const int64_t parts = (n + max - 1) / max;
    const int64_t b = (n + parts - 1) / parts;
    return (b + unit - 1) / unit * unit;
}

int64_t nb_sgemm_avx512_kslice(int64_t K) { return block_size(K, KC_MAX, 1); }

NB_AVX512 void nb_sgemm_avx512(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                               int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0) {
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0 ? 0 : beta * C[i * ldc + j];
        return;
    }
    const int64_t kcb = nb_sgemm_avx512_kslice(K), ncb = block_size(N, NC_MAX, NR);
    const int64_t mcb = block_size(M, MC_MAX, MR);
    float *ap = scratch((size_t)(mcb * kcb + kcb * ncb + 16));
    if (!ap) {
        gemm_unpacked(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* B panels start on a 64-byte boundary (the kernel loads them aligned). */
    float *bp = (float *)(((uintptr_t)(ap + mcb * kcb) + 63) & ~(uintptr_t)63);
    for (int64_t jc = 0; jc < N; jc += ncb) {
        const int64_t nc = N - jc < ncb ? N - jc : ncb;
        for (int64_t pc = 0; pc < K; pc += kcb) {
            const int64_t kc = K - pc < kcb ? K - pc : kcb;
            const int mode = pc > 0 || beta == 1 ? 1 : beta == 0 ? 0 : 2;
            pack_b(tb, tb ? B + jc * ldb + pc : B + pc * ldb + jc, ldb, kc, nc, bp);
            for (int64_t ic = 0; ic < M; ic += mcb) {
                const int64_t mc = M - ic < mcb ? M - ic : mcb;
                pack_a(ta, ta ? A + pc * lda + ic : A + ic * lda + pc, lda, mc, kc, ap, M - ic - mc);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    const int nr = (int)(nc - jr < NR ? nc - jr : NR);
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        const int mr = (int)(mc - ir < MR ? mc - ir : MR);
                        micro_kernel(kc, ap + ir * kc, bp + jr * kc, C + (ic + ir) * ldc + jc + jr, ldc, mr, nr,
                                     alpha, beta, mode);
                    }
                }
            }
        }
    }
}

#else
typedef int nb_sgemm_avx512_unused; /* ISO C: no empty translation unit */
#endif
