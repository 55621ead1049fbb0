/* Products with a mostly-zero left operand, kept in compressed rows (see
 * nb_sparse_rows in internal.h). The case it serves: the input VJP of a
 * convolution behind a max pool, dX = col2im(dZ Kmat^T), where a 2x2 pool
 * passes one gradient in four and the ReLU's mask removes more (about 15%
 * of dZ is non-zero in mnist_cnn). A dense GEMM spends 2 P FLOPs on every
 * element of dZ; here each non-zero adds one scaled row of Kmat^T (P
 * values) to its row of dcols, and zeros cost a compare.
 *
 * For float on CPUs with AVX-512 both steps have vector kernels
 * (sparse_rows_avx512.c): the compression by masked compress-stores, the
 * product with a block of dcols's row held in registers while the row's
 * non-zeros stream past (no read-modify-write to memory per non-zero).
 * The portable loops below are the reference and the fallback. */
#include "kernels.h"
#include "sparse_rows_avx512.h"

#include <threads.h>

#ifdef NB_HAVE_SPARSE_ROWS_AVX512
static once_flag avx512_once = ONCE_FLAG_INIT;
static bool use_avx512; /* written once, under call_once */
static void check_avx512(void) { use_avx512 = nb_sparse_rows_avx512_usable(); }
static bool avx512(void)
{
    call_once(&avx512_once, check_avx512);
    return use_avx512;
}
#endif

bool nb_sparse_rows_compress_portable(int64_t m, int64_t k, const nb_real *a, const nb_real *gate, int64_t cap,
                                      nb_sparse_rows *s)
{
    int64_t nnz = 0;
    s->rows = m;
    for (int64_t r = 0; r < m; r++) {
        s->start[r] = (int32_t)nnz;
        const nb_real *ar = a + r * k, *gr = gate ? gate + r * k : NULL;
        for (int64_t c = 0; c < k; c++) {
            if (ar[c] == 0 || (gr && !(gr[c] > 0))) continue;
            if (nnz == cap) return false;
            s->col[nnz] = (int32_t)c;
            s->val[nnz++] = ar[c];
        }
    }
    s->start[m] = (int32_t)nnz;
    s->nnz = nnz;
    return true;
}

void nb_sparse_rows_matmul_portable(const nb_sparse_rows *s, int64_t n, const nb_real *B, int64_t ldb, nb_real *C,
                                    int64_t ldc)
{
    for (int64_t r = 0; r < s->rows; r++) {
        nb_real *cr = C + r * ldc;
        for (int64_t j = 0; j < n; j++) cr[j] = 0;
        for (int32_t e = s->start[r]; e < s->start[r + 1]; e++) {
            const nb_real v = s->val[e], *br = B + (int64_t)s->col[e] * ldb;
            for (int64_t j = 0; j < n; j++) cr[j] += v * br[j];
        }
    }
}

int64_t nb_sparse_row_select_portable(int64_t k, const nb_real *val, const int32_t *sel, int32_t base,
                                      const nb_real *gate, int32_t *col, nb_real *out)
{
    int64_t cnt = 0;
    for (int64_t c = 0; c < k; c++) {
        if (sel[c] != base + (int32_t)c || (gate && !(gate[c] > 0))) continue;
        col[cnt] = (int32_t)c;
        out[cnt++] = val[c];
    }
    return cnt;
}

int64_t nb_sparse_row_select(int64_t k, const nb_real *val, const int32_t *sel, int32_t base, const nb_real *gate,
                             int32_t *col, nb_real *out)
{
#ifdef NB_HAVE_SPARSE_ROWS_AVX512
    if (avx512()) return nb_sparse_row_select_avx512(k, val, sel, base, gate, col, out);
#endif
    return nb_sparse_row_select_portable(k, val, sel, base, gate, col, out);
}

bool nb_sparse_rows_compress(int64_t m, int64_t k, const nb_real *a, const nb_real *gate, int64_t cap,
                             nb_sparse_rows *s)
{
    if (k > INT32_MAX || cap > INT32_MAX - 16) return false;
#ifdef NB_HAVE_SPARSE_ROWS_AVX512
    if (avx512()) return nb_sparse_rows_compress_avx512(m, k, a, gate, cap, s);
#endif
    return nb_sparse_rows_compress_portable(m, k, a, gate, cap, s);
}

void nb_sparse_rows_matmul(const nb_sparse_rows *s, int64_t n, const nb_real *B, int64_t ldb, nb_real *C,
                           int64_t ldc)
{
#ifdef NB_HAVE_SPARSE_ROWS_AVX512
    if (avx512()) {
        nb_sparse_rows_matmul_avx512(s, n, B, ldb, C, ldc);
        return;
    }
#endif
    nb_sparse_rows_matmul_portable(s, n, B, ldb, C, ldc);
}
