/* The kernels: GEMM, sparse rows and sliding windows, the only code that
 * knows about the hardware (src/kernels). Plain buffers in, plain buffers
 * out: no graph, no node. Not installed. */
#ifndef NB_KERNELS_H
#define NB_KERNELS_H

#include "../core/core.h"

/* Row-major GEMM, C = alpha op(A) op(B) + beta C, op(A) M x K, op(B) K x N
 * (kernels/gemm.c). Each call runs one kernel, chosen for its shape class
 * (below; kernels/gemm_select.c). */
void nb_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, nb_real alpha, const nb_real *A,
             int64_t lda, const nb_real *B, int64_t ldb, nb_real beta, nb_real *C, int64_t ldc);
/* The same product on the calling thread only: for use inside parallel
 * regions (convolution works on images in parallel, one GEMM per group). */
void nb_gemm_serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, nb_real alpha, const nb_real *A,
                    int64_t lda, const nb_real *B, int64_t ldb, nb_real beta, nb_real *C, int64_t ldc);
/* The portable kernel alone, split over threads (for tests and benchmarks). */
void nb_gemm_builtin(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, nb_real alpha,
                     const nb_real *A, int64_t lda, const nb_real *B, int64_t ldb, nb_real beta, nb_real *C,
                     int64_t ldc);

/* The kernels a GEMM can run. Their results differ in the last bits (each
 * sums K in its own order), so a process runs one kernel per shape class and
 * never switches (docs/design.md, "Kernels chosen by measurement"). */
typedef enum nb_gemm_kernel {
    NB_GEMM_PORTABLE, /* blocked loops the compiler vectorises: "builtin" (or "portable") */
    NB_GEMM_OPENBLAS, /* CBLAS, when built with it: "openblas" (or "blas") */
    NB_GEMM_AVX512,   /* sgemm_avx512.c, float on CPUs with AVX-512: "avx512" */
    NB_GEMM_ROWS,     /* M <= 2 rows with B not transposed, B streamed once: "rows" */
    NB_GEMM_NKERNELS
} nb_gemm_kernel;
const char *nb_gemm_kernel_name(nb_gemm_kernel k);
/* Whether this build and CPU run k on products with this trans_b and M. */
bool nb_gemm_kernel_usable(nb_gemm_kernel k, bool trans_b, int64_t M);
/* The fixed default (NB_GEMM=fixed, and what a near-tie keeps): rows for
 * M <= 2, B not transposed and N K >= 16384; else AVX-512 where usable;
 * else OpenBLAS where built; else the portable kernel. */
nb_gemm_kernel nb_gemm_fixed_kernel(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K);
/* One product through kernel k on the calling thread (k usable; OpenBLAS
 * falls back to the portable kernel past 32-bit sizes). */
void nb_gemm_with(nb_gemm_kernel k, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, nb_real alpha,
                  const nb_real *A, int64_t lda, const nb_real *B, int64_t ldb, nb_real beta, nb_real *C,
                  int64_t ldc);

/* Shape classes (kernels/gemm_select.c): the transposes and a bucket of
 * each of M, N, K with edges 2, 8, 32, 128, 512, 2048, so 4 x 7^3 classes.
 * The network's products fall in distinct classes (conv2 forward
 * "nn.m513-2048.n33-128.k129-512", its kernel gradient
 * "tn.m129-512.n33-128.k513-2048", dense1 "nn.m33-128.n33-128.k2049+"...). */
enum { NB_GEMM_BUCKETS = 7, NB_GEMM_NCLASSES = 4 * NB_GEMM_BUCKETS * NB_GEMM_BUCKETS * NB_GEMM_BUCKETS };
int nb_gemm_class_of(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K);
/* The class's key as NB_GEMM names it, e.g. "nt.m3-8.n2049+.k33-128" (at
 * most 32 bytes with the NUL). */
void nb_gemm_class_key(int cls, char out[32]);

/* The kernel for a product of this shape under NB_GEMM (read once):
 *   unset or "auto"  each class measures its usable kernels at its first
 *                    product and keeps the fastest, unless the fixed default
 *                    is within NB_GEMM_MARGIN of it;
 *   "fixed"          the fixed default, nothing measured;
 *   a kernel name    that kernel wherever usable, else the fixed default;
 *   and then, comma-separated, CLASS=auto|fixed|KERNEL for single classes,
 *   e.g. NB_GEMM=fixed,nn.m513-2048.n33-128.k129-512=openblas.
 * Thread-safe; a class is decided once, and a thread that meets a class
 * being measured waits for the decision. */
nb_gemm_kernel nb_gemm_kernel_for(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, nb_real beta);
/* Whether kernels that compute a product of this class with the AVX-512
 * GEMM's tiles but without its packing (the in-place convolutions of
 * conv_avx512.c) may: unless NB_GEMM names another kernel for the class
 * (or a followed checkpoint does, as KERNEL-only). Not a measurement: an
 * im2col and a packing saved are worth more than the few percent between
 * GEMM kernels, so where the CPU has AVX-512 the in-place paths run by
 * shape alone, the same in every process and in a resumption. */
bool nb_gemm_inplace_allowed(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K);
#define NB_GEMM_MARGIN 0.05
/* A measurement: the median seconds of one trial per kernel (0 where a
 * kernel was not a candidate, or was dropped after the first round for
 * being over 3x slower than the best), the fixed default at the measured
 * shape and the margin it keeps -> the kernel the class runs. */
nb_gemm_kernel nb_gemm_pick(const double seconds[NB_GEMM_NKERNELS], nb_gemm_kernel fixed, double margin);

/* What a class has run in this process (for bench/run.sh). */
typedef struct nb_gemm_choice {
    bool used;             /* false: no product of this class yet */
    bool measured;         /* chosen by measurement (else fixed or named) */
    nb_gemm_kernel kernel; /* the kernel of its first product (auto: of all) */
    int64_t M, N, K;       /* the shape measured: the first product's, shrunk within its buckets */
    double seconds[NB_GEMM_NKERNELS]; /* as for nb_gemm_pick */
} nb_gemm_choice;
void nb_gemm_class_choice(int cls, nb_gemm_choice *out);
/* nb_gemm_choices_spec and nb_gemm_follow: in nabla.h (checkpoints keep the choices). */
/* NULL, or what was wrong with NB_GEMM (the words that were not understood
 * are ignored, the others applied); for a caller that can print it. */
const char *nb_gemm_spec_problem(void);

/* For tests: forgets every choice and reads spec as NB_GEMM (NULL: the
 * environment again); trial, when given, replaces timing: it returns the
 * seconds of one trial of kernel k at that shape (round 0 is the warm-up).
 * Not to be called while products run. */
typedef double nb_gemm_trial_fn(void *ctx, nb_gemm_kernel k, int round, bool trans_a, bool trans_b, int64_t M,
                                int64_t N, int64_t K);
void nb_gemm_select_reset(const char *spec, nb_gemm_trial_fn *trial, void *ctx);
/* Reproducible training: every class not chosen yet and left to measurement
 * takes the fixed default instead, so that the kernels (and so the bits)
 * depend on the shapes, the build and the CPU alone, not on the timings of
 * one process (two ranks, or a run and its resume, could measure
 * differently). Explicit NB_GEMM choices stay. Call before products run. */
void nb_gemm_select_fixed(void);

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
/* Whether some window of w reads padding (a zero outside the image). */
bool nb_window_reads_padding(const nb_window *w);
/* Padding made explicit, for kernels that read windows in place: the
 * window over a zero-bordered copy of the input rows that output rows
 * [r0, r1) of w read (H, W the copy's rows and columns, OH = r1 - r0, no
 * padding, the rest as w), and nb_pad_band writing that copy of one image x
 * into buf (H * W * C reals of the returned window). The windows of output
 * row r0 + i over the copy are those of row r0 + i over x, zeros included,
 * so a convolution of the copy's rows [0, r1 - r0) gives the same sums. */
nb_window nb_window_padded_band(const nb_window *w, int64_t r0, int64_t r1);
void nb_pad_band(const nb_window *w, const nb_real *x, int64_t r0, int64_t r1, nb_real *buf);

/* Convolution rows without im2col (kernels/conv_avx512.c): the AVX-512 GEMM
 * with its left operand, the im2col rows, read from the NHWC image in place
 * (no copy, no packing of A), the bias and a ReLU applied at its stores.
 * Y = bias + im2col(x) Kmat (then relu) is that GEMM's bit for bit.
 * nb_conv_inplace_usable: whether this build and CPU can, the windows lie
 * inside the image (no padding read), and nb_gemm_inplace_allowed for the
 * GEMM of the same product (m x O x fh*fw*C, B not transposed). The kernel matrix Kmat (P x O) is packed once
 * (nb_conv_inplace_packed_reals reals, 64-byte aligned for speed), then
 * nb_conv_inplace_rows writes output rows [r0, r1) of one image x into y
 * ((r1 - r0) * OW pixels x O, row-major). bias may be NULL. */
bool nb_conv_inplace_usable(const nb_window *w, int64_t O, int64_t m, bool bias);
int64_t nb_conv_inplace_packed_reals(const nb_window *w, int64_t O);
void nb_conv_inplace_pack(const nb_window *w, int64_t O, const nb_real *kmat, nb_real *packed);
void nb_conv_inplace_rows(const nb_window *w, int64_t O, const nb_real *x, const nb_real *packed,
                          const nb_real *bias, bool relu, int64_t r0, int64_t r1, nb_real *y);
/* The kernel's gradient without im2col (kernels/conv_avx512.c): for output
 * rows [0, rows) of one image x (windows as nb_conv_inplace_rows: inside the
 * image, padding made explicit by nb_pad_band), dkt (O x P, the gradient of
 * the P x O kernel matrix transposed) += dz^T im2col(x), dz the rows'
 * gradient (rows*OW x O). nb_conv_kernel_grad_usable: whether this build and
 * CPU can, the windows lie inside the image, a window segment holds at
 * least 16 values (fw*C, or C with dilation) and nb_gemm_inplace_allowed
 * for the GEMM it replaces (dK^T = dZ^T cols: O x P x m, A transposed). */
bool nb_conv_kernel_grad_usable(const nb_window *w, int64_t O, int64_t m);
void nb_conv_kernel_grad_rows(const nb_window *w, int64_t O, const nb_real *x, const nb_real *dz, int64_t rows,
                              nb_real *dkt);

#endif
