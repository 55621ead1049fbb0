/* AVX-512 kernels for compressed sparse rows of floats (sparse_rows_avx512.c),
 * behind nb_sparse_rows_compress and nb_sparse_rows_matmul (sparse_rows.c),
 * with the same contracts. Call only where nb_sparse_rows_avx512_usable(). */
#ifndef NB_SPARSE_ROWS_AVX512_H
#define NB_SPARSE_ROWS_AVX512_H

#include "sgemm_avx512.h"

#ifdef NB_HAVE_SGEMM_AVX512
#define NB_HAVE_SPARSE_ROWS_AVX512 1
struct nb_sparse_rows;
bool nb_sparse_rows_avx512_usable(void);
bool nb_sparse_rows_compress_avx512(int64_t m, int64_t k, const float *a, const float *gate, int64_t cap,
                                    struct nb_sparse_rows *s);
int64_t nb_sparse_row_select_avx512(int64_t k, const float *val, const int32_t *sel, int32_t base, const float *gate,
                                    int32_t *col, float *out);
void nb_sparse_rows_matmul_avx512(const struct nb_sparse_rows *s, int64_t n, const float *B, int64_t ldb,
                                  float *C, int64_t ldc);
#endif

#endif
