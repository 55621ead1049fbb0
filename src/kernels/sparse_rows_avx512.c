/* AVX-512 kernels for compressed sparse rows of floats (see sparse_rows.c).
 *
 * Compression: 16 values (and 16 gate values) per step, one compare mask,
 * then a register compress and a whole-vector store of values and column
 * indices; the store may write up to 15 lanes past the non-zeros kept, which
 * the next store overwrites (hence the 16 entries of slack the caller
 * gives col and val). The compress-to-memory form is avoided: it is
 * microcoded and slow on AMD's Zen 4.
 *
 * Product: C's columns are cut into nblk blocks of W zmm (W <= 8, e.g.
 * n = 288 is 3 blocks of 6 x 16) so a block of B (k x 16 W floats, 24 KiB
 * for k = 64) stays in L1 while every row of the block is formed: the row's
 * W accumulators live in registers, each non-zero broadcasts its value and
 * adds W FMAs of the B row it names, and the row is stored once. Two sets
 * of accumulators take alternate non-zeros so the FMA latency is hidden
 * even for W = 4. */
#include "kernels.h"
#include "sparse_rows_avx512.h"

#ifdef NB_HAVE_SPARSE_ROWS_AVX512

#include <immintrin.h>

#define NB_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,fma")))
#define NB_AVX512_INLINE __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,fma"), always_inline)) inline

bool nb_sparse_rows_avx512_usable(void) { return nb_sgemm_avx512_usable(); }

NB_AVX512 bool nb_sparse_rows_compress_avx512(int64_t m, int64_t k, const float *a, const float *gate, int64_t cap,
                                              nb_sparse_rows *s)
{
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 zero = _mm512_setzero_ps();
    int64_t nnz = 0;
    s->rows = m;
    for (int64_t r = 0; r < m; r++) {
        s->start[r] = (int32_t)nnz;
        const float *ar = a + r * k, *gr = gate ? gate + r * k : NULL;
        for (int64_t c = 0; c < k; c += 16) {
            const __mmask16 live = k - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - c)) - 1);
            const __m512 v = _mm512_maskz_loadu_ps(live, ar + c);
            __mmask16 keep = _mm512_mask_cmp_ps_mask(live, v, zero, _CMP_NEQ_UQ);
            if (gr) keep = _mm512_mask_cmp_ps_mask(keep, _mm512_maskz_loadu_ps(live, gr + c), zero, _CMP_GT_OQ);
            const int cnt = __builtin_popcount(keep);
            if (nnz + cnt > cap) return false;
            _mm512_storeu_ps(s->val + nnz, _mm512_maskz_compress_ps(keep, v));
            const __m512i idx = _mm512_add_epi32(iota, _mm512_set1_epi32((int)c));
            _mm512_storeu_si512(s->col + nnz, _mm512_maskz_compress_epi32(keep, idx));
            nnz += cnt;
        }
    }
    s->start[m] = (int32_t)nnz;
    s->nnz = nnz;
    return true;
}

NB_AVX512 int64_t nb_sparse_row_select_avx512(int64_t k, const float *val, const int32_t *sel, int32_t base,
                                              const float *gate, int32_t *col, float *out)
{
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 zero = _mm512_setzero_ps();
    int64_t cnt = 0;
    for (int64_t c = 0; c < k; c += 16) {
        const __mmask16 live = k - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - c)) - 1);
        const __m512i idx = _mm512_add_epi32(iota, _mm512_set1_epi32((int)c));
        const __m512i want = _mm512_add_epi32(idx, _mm512_set1_epi32(base));
        __mmask16 keep = _mm512_mask_cmpeq_epi32_mask(live, _mm512_maskz_loadu_epi32(live, sel + c), want);
        if (gate) keep = _mm512_mask_cmp_ps_mask(keep, _mm512_maskz_loadu_ps(live, gate + c), zero, _CMP_GT_OQ);
        _mm512_storeu_ps(out + cnt, _mm512_maskz_compress_ps(keep, _mm512_maskz_loadu_ps(live, val + c)));
        _mm512_storeu_si512(col + cnt, _mm512_maskz_compress_epi32(keep, idx));
        cnt += __builtin_popcount(keep);
    }
    return cnt;
}

/* Rows of C, columns [0, 16 W) of this block (masks mk[w] cut the last). */
static NB_AVX512_INLINE void rows_block(const nb_sparse_rows *s, const int W, const float *B, int64_t ldb,
                                        float *C, int64_t ldc, const __mmask16 *mk)
{
    for (int64_t r = 0; r < s->rows; r++) {
        __m512 a0[8], a1[8];
        for (int w = 0; w < W; w++) a0[w] = _mm512_setzero_ps(), a1[w] = _mm512_setzero_ps();
        int32_t e = s->start[r];
        const int32_t end = s->start[r + 1];
        for (; e + 1 < end; e += 2) {
            const __m512 v0 = _mm512_set1_ps(s->val[e]), v1 = _mm512_set1_ps(s->val[e + 1]);
            const float *b0 = B + (int64_t)s->col[e] * ldb, *b1 = B + (int64_t)s->col[e + 1] * ldb;
            for (int w = 0; w < W; w++) {
                a0[w] = _mm512_fmadd_ps(v0, _mm512_maskz_loadu_ps(mk[w], b0 + 16 * w), a0[w]);
                a1[w] = _mm512_fmadd_ps(v1, _mm512_maskz_loadu_ps(mk[w], b1 + 16 * w), a1[w]);
            }
        }
        if (e < end) {
            const __m512 v0 = _mm512_set1_ps(s->val[e]);
            const float *b0 = B + (int64_t)s->col[e] * ldb;
            for (int w = 0; w < W; w++) a0[w] = _mm512_fmadd_ps(v0, _mm512_maskz_loadu_ps(mk[w], b0 + 16 * w), a0[w]);
        }
        float *cr = C + r * ldc;
        for (int w = 0; w < W; w++) _mm512_mask_storeu_ps(cr + 16 * w, mk[w], _mm512_add_ps(a0[w], a1[w]));
    }
}

NB_AVX512 void nb_sparse_rows_matmul_avx512(const nb_sparse_rows *s, int64_t n, const float *B, int64_t ldb,
                                            float *C, int64_t ldc)
{
    const int64_t vecs = (n + 15) / 16, nblk = (vecs + 7) / 8, W = (vecs + nblk - 1) / nblk;
    for (int64_t j0 = 0; j0 < n; j0 += 16 * W) {
        __mmask16 mk[8];
        for (int w = 0; w < 8; w++) {
            const int64_t left = n - j0 - 16 * w;
            mk[w] = left >= 16 ? (__mmask16)0xFFFF : left > 0 ? (__mmask16)((1u << left) - 1) : 0;
        }
        const int64_t w_here = (n - j0 + 15) / 16 < W ? (n - j0 + 15) / 16 : W;
        switch (w_here) { /* a constant W per case: the accumulators stay in registers */
        case 1: rows_block(s, 1, B + j0, ldb, C + j0, ldc, mk); break;
        case 2: rows_block(s, 2, B + j0, ldb, C + j0, ldc, mk); break;
        case 3: rows_block(s, 3, B + j0, ldb, C + j0, ldc, mk); break;
        case 4: rows_block(s, 4, B + j0, ldb, C + j0, ldc, mk); break;
        case 5: rows_block(s, 5, B + j0, ldb, C + j0, ldc, mk); break;
        case 6: rows_block(s, 6, B + j0, ldb, C + j0, ldc, mk); break;
        case 7: rows_block(s, 7, B + j0, ldb, C + j0, ldc, mk); break;
        default: rows_block(s, 8, B + j0, ldb, C + j0, ldc, mk); break;
        }
    }
}

#endif
