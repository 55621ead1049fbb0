/* The kernels: GEMM, sparse rows and sliding windows, the only code that
 * knows about the hardware (src/kernels). Plain buffers in, plain buffers
 * out: no graph, no node. Not installed. */
#ifndef NB_KERNELS_H
#define NB_KERNELS_H

#include "../core/core.h"

/* Row-major GEMM, C = alpha op(A) op(B) + beta C, op(A) M x K, op(B) K x N
 * (kernels/gemm.c: CBLAS when available, else the built-in kernel). */
void nb_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, nb_real alpha, const nb_real *A,
             int64_t lda, const nb_real *B, int64_t ldb, nb_real beta, nb_real *C, int64_t ldc);
/* The same product on the calling thread only: for use inside parallel
 * regions (convolution works on images in parallel, one GEMM per group). */
void nb_gemm_serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, nb_real alpha, const nb_real *A,
                    int64_t lda, const nb_real *B, int64_t ldb, nb_real beta, nb_real *C, int64_t ldc);
/* The built-in GEMM alone (for tests and benchmarks). */
void nb_gemm_builtin(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, nb_real alpha,
                     const nb_real *A, int64_t lda, const nb_real *B, int64_t ldb, nb_real beta, nb_real *C,
                     int64_t ldc);

/* Mostly-zero left operands (kernels/sparse_rows.c). After a max pool and a
 * ReLU most of a convolution's output gradient is zero, and the product
 * dZ Kmat^T need only touch its non-zeros. nb_sparse_rows holds an m x k
 * matrix in compressed rows: row r's non-zeros are val[start[r] ..
 * start[r+1]) in columns col[...], ascending. */
typedef struct nb_sparse_rows {
    int64_t rows, nnz;
    int32_t *start; /* rows + 1 */
    int32_t *col;   /* nnz */
    nb_real *val;   /* nnz */
} nb_sparse_rows;
/* Compresses A (m x k, row-major) keeping A[r,c] where it is non-zero and,
 * when gate is given (m x k too), gate[r,c] > 0 (a fused ReLU's mask).
 * start needs m + 1 entries, col and val cap + 16 each (vector kernels store
 * whole vectors past the last kept entry); returns false, with s unspecified, as soon as more than cap non-zeros would be needed, so a
 * caller can bound the density it accepts and keep its dense path. */
bool nb_sparse_rows_compress(int64_t m, int64_t k, const nb_real *a, const nb_real *gate, int64_t cap,
                             nb_sparse_rows *s);
/* C (rows x n, leading dimension ldc) = S B with B k x n (leading dimension
 * ldb): each row of C sums the rows of B its non-zeros pick, scaled. */
void nb_sparse_rows_matmul(const nb_sparse_rows *s, int64_t n, const nb_real *B, int64_t ldb, nb_real *C,
                           int64_t ldc);
/* One row of a compression by selection (a max pool's routing): keeps
 * column c where sel[c] == base + c and, when gate is given, gate[c] > 0,
 * appending val[c] to out and c to col; returns how many. out and col need
 * k + 16 entries of room (vector kernels store whole vectors). */
int64_t nb_sparse_row_select(int64_t k, const nb_real *val, const int32_t *sel, int32_t base, const nb_real *gate,
                             int32_t *col, nb_real *out);
int64_t nb_sparse_row_select_portable(int64_t k, const nb_real *val, const int32_t *sel, int32_t base,
                                      const nb_real *gate, int32_t *col, nb_real *out);
/* The portable loops behind both (what the vector kernels are tested against). */
bool nb_sparse_rows_compress_portable(int64_t m, int64_t k, const nb_real *a, const nb_real *gate, int64_t cap,
                                      nb_sparse_rows *s);
void nb_sparse_rows_matmul_portable(const nb_sparse_rows *s, int64_t n, const nb_real *B, int64_t ldb, nb_real *C,
                                    int64_t ldc);

/* Sliding windows over NHWC images (kernels/im2col.c), shared by conv2d and
 * pooling. One spatial axis: nb_window_dim gives the output size and the
 * padding before it by TensorFlow's rule (valid: out = (in - eff)/s + 1 with
 * eff = (f-1)d + 1, -1 when eff > in; same: out = ceil(in/s), total pad
 * max((out-1)s + eff - in, 0), before = total/2, the odd pixel after).
 * nb_im2col writes, per image and output pixel (i,j), one row of fh*fw*C
 * values x[ih = i*s + p*d - pt, iw = j*s + q*d - pl, c] ordered (p, q, c),
 * zero where (ih, iw) lies in the padding; nb_col2im is its transpose: it
 * scatter-adds such rows back into the images (overwriting x first unless
 * accumulate). Both run over nimg images stacked contiguously. */
typedef struct nb_window {
    int64_t H, W, C, OH, OW;
    int fh, fw, stride, dilation, pad_top, pad_left;
} nb_window;
int64_t nb_window_dim(int64_t in, int f, int stride, int dilation, nb_padding padding, int *pad_before);
void nb_im2col(const nb_window *w, int64_t nimg, const nb_real *x, nb_real *cols);
void nb_col2im(const nb_window *w, int64_t nimg, const nb_real *cols, nb_real *x, bool accumulate);

#endif
