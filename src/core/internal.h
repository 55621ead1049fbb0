/* Internal definitions shared by the library's parts: the node, the op
 * descriptor, error reporting and small helpers. Not installed. */
#ifndef NB_INTERNAL_H
#define NB_INTERNAL_H

#include "nabla.h"

#include <stdarg.h>
#include <stdbool.h>
#include <string.h>

/* ---------------------------------------------------------------- errors */

/* Sets the thread-local message (printf-style) and returns status: the
 * library's name for the public nb_set_error. */
#define nb_fail nb_set_error
void nb_clear_error(void);
/* NB_ERR_ARG "WHO: input I is NULL", naming the last earlier error (the
 * likely cause when calls are chained). */
nb_status nb_fail_null_input(const char *who, int i);

/* ---------------------------------------------------------------- memory */

void *nb_alloc(size_t bytes);            /* 64-byte aligned, NULL + error on failure */
void *nb_calloc_real(int64_t count);     /* zeroed nb_real array */
void nb_free(void *p);
/* Grows *buf to hold count nb_reals (never shrinks). */
nb_status nb_reserve(nb_real **buf, int64_t *cap, int64_t count);
/* Bytes, same rule. */
nb_status nb_reserve_bytes(void **buf, size_t *cap, size_t bytes);

/* ------------------------------------------------------------------ ops */

typedef struct nb_op nb_op;

/* Attributes of an op, one struct for all (small, plain data). */
typedef struct nb_attrs {
    double scalar;        /* pow exponent, scale factor, slope, alpha, dropout rate */
    int axes[NB_MAX_RANK];/* sum/mean axes (normalised), transpose perm */
    int naxes;
    int keepdims;
    bool all_axes;        /* sum/mean of everything: axes follow the input's rank at every inference */
    int stride, dilation, size;
    nb_padding padding;
    int pad_top, pad_left;/* resolved at shape inference */
    int64_t reshape[NB_MAX_RANK];
    int reshape_rank;
    int fused_relu;       /* conv2d: y = relu(z), the ReLU applied in the same pass */
} nb_attrs;

enum { NB_KIND_INPUT, NB_KIND_PARAM, NB_KIND_OP };

/* Reverse passes keep their adjoints apart by kind, so that a Jacobian or a
 * VJP run between nb_backward and the optimiser step leaves the gradients
 * of the backward pass as they were (the optimiser reads those). */
enum { NB_PASS_GRAD, NB_PASS_SCRATCH, NB_PASS_COUNT };

/* One node's adjoint in one pass: (K,) + the node's shape. */
typedef struct nb_adjoint {
    nb_real *data;
    int64_t cap;
    bool set;          /* data holds the adjoint (else it is zero) */
    nb_node *via;      /* deferred: still held by this consumer (see vjp_defer) */
    int via_input;     /* ... as its input number via_input, */
    int64_t via_k;     /* ... for this many seeds */
    uint64_t via_epoch;/* ... in this graph epoch (a later one has other argmaxes or shapes) */
} nb_adjoint;

/* One node's tangent in a forward-mode pass: (K,) + the node's shape. */
typedef struct nb_tangent {
    nb_real *data;
    int64_t cap;
    bool set;
} nb_tangent;

/* The state of one kind of pass over a graph, indexed by node id and kept
 * apart from the nodes (autodiff/autodiff.c owns it): the adjoints of a
 * reverse pass, the tangents of a forward-mode pass, which nodes are on a
 * path from the pass's sources to its output, and which are sources.
 * Arrays cover `cap` nodes and grow with the graph; buffers only grow, so
 * a training loop allocates nothing once they fit. */
typedef struct nb_pass {
    int cap;
    nb_adjoint *adj;
    nb_tangent *tan;
    bool *on_path;
    bool *source;
    bool *from, *to;   /* scratch of the path marking */
} nb_pass;

struct nb_node {
    nb_graph *graph;
    int id;
    int kind;
    const nb_op *op;
    char name[64];
    int ninputs;
    nb_node *in[4];
    nb_attrs at;
    nb_tensor value;       /* shape + data; data capacity in value_cap */
    int64_t value_cap;
    nb_tensor grad;        /* the last nb_backward's gradient: a view of its pass's adjoint */
    void *ws;              /* op workspace saved by forward for vjp/jvp */
    size_t ws_cap;
    bool requires_grad;    /* leaves: whether nb_backward fills the gradient */
};

struct nb_graph {
    nb_node **nodes;
    int n, cap;
    bool training;
    bool check_numerics;
    uint64_t seed;
    uint64_t key;          /* random key of the last forward pass: dropout masks are drawn from (seed, key) */
    bool keyed;            /* a forward pass has taken a key (else key is 0 and no pass has one yet) */
    bool shapes_dirty;
    uint64_t epoch;        /* counts forward passes and shape changes: what a deferred adjoint depends on */
    int forward_done;      /* id of the last node the last forward pass computed; -1 if it failed or
                            * shapes were re-inferred since (nb_graph_prepare) */
    bool grads_valid;      /* the last nb_backward completed (nb_grad and the optimiser read it) */
    int pass;              /* NB_PASS_*: the reverse pass running (or that ran last) */
    nb_pass passes[NB_PASS_COUNT];
};

/* The op descriptor: one per op, in the op's own file. The Jacobian of each
 * op is written as math in a comment beside its functions.
 *  infer:   sets n->value.rank/shape from inputs and attributes (or fails);
 *  forward: computes n->value.data from the inputs' values;
 *  vjp:     for input i, dx (+)= dy . d y / d x_i for K stacked seeds
 *           (dy: K x |y|, dx: K x |x_i|); accumulate says += instead of =;
 *  jvp:     dy = sum_i d y / d x_i . dx_i for K stacked tangents; dxs[i] is
 *           NULL where that input's tangent is zero;
 *  vjp_defer (optional): whether the reverse pass may skip writing input i's
 *           adjoint and leave it with this node (x->adj_via), for x's own
 *           VJP to read in the form it needs. Only max pooling into a
 *           convolution does: the pooled adjoint is a quarter the size and
 *           the convolution gathers its rows (nb_max_pool_adjoint_rows)
 *           instead of reading a dense, three-quarters-zero tensor. Anything
 *           else that needs x's adjoint resolves it first
 *           (nb_adjoint_resolve: the ordinary vjp, run late). */
struct nb_op {
    const char *name;
    int ninputs;
    nb_status (*infer)(nb_node *n);
    nb_status (*forward)(nb_node *n);
    nb_status (*vjp)(nb_node *n, int i, int64_t K, const nb_real *dy, nb_real *dx, bool accumulate);
    nb_status (*jvp)(nb_node *n, int64_t K, nb_real *const *dxs, nb_real *dy);
    /* Inputs that carry no derivative (labels). Bit i set = input i. */
    unsigned nondiff_mask;
    bool (*vjp_defer)(const nb_node *n, int i);
};

/* The node's adjoint in the reverse pass running now (g->pass): for the
 * ops that read a deferred adjoint during their VJP. */
static inline nb_adjoint *nb_adjoint_of(const nb_node *n) { return &n->graph->passes[n->graph->pass].adj[n->id]; }
/* After a pass of that kind: whether n was on a path from its sources to
 * its output, and then its adjoint or tangent (NULL if it has none). */
static inline bool nb_pass_on_path(const nb_node *n, int kind)
{
    const nb_pass *p = &n->graph->passes[kind];
    return n->id < p->cap && p->on_path[n->id];
}
static inline const nb_real *nb_pass_adjoint(const nb_node *n, int kind)
{
    return nb_pass_on_path(n, kind) ? n->graph->passes[kind].adj[n->id].data : NULL;
}
static inline const nb_real *nb_pass_tangent(const nb_node *n, int kind)
{
    const nb_pass *p = &n->graph->passes[kind];
    return nb_pass_on_path(n, kind) && p->tan[n->id].set ? p->tan[n->id].data : NULL;
}
/* Frees a pass's buffers and arrays (graph.c, at nb_graph_free). */
void nb_pass_free(nb_pass *p);
/* Writes a deferred adjoint (via set) of pass `pass` into its data as the
 * deferring op's vjp would have; no-op otherwise (autodiff.c). */
void nb_adjoint_resolve(nb_node *x, int pass);
/* Resolves every deferred adjoint of the last nb_backward while it can
 * still be formed: before a forward pass that nb_vjp, nb_jvp or
 * nb_jacobian run themselves, which would drop it (nabla.h: those passes
 * leave nb_grad as it is). */
void nb_grads_settle(nb_graph *g);
/* Rows [r0, r0 + m) of seed k's adjoint of a max pool's input x (rows: the
 * pixels of x, image-major, C values each) computed from the pool's own
 * adjoint: dx[r, c] = dy[o, c] where the pool's window o took its maximum
 * from (r, c), else 0; times [y[o, c] > 0] when gate_positive (the mask of
 * a ReLU fused into x, whose value at the argmax is y[o, c]). For a pool
 * with stride = window (the only case it defers, pool.c). */
void nb_max_pool_adjoint_rows(const nb_node *pool, int64_t k, int64_t r0, int64_t m, bool gate_positive,
                              nb_real *out);
/* The same rows as compressed sparse rows, straight from the pool's arrays
 * (no dense rows written); false if more than cap non-zeros (col and val
 * hold cap + 16). */
struct nb_sparse_rows;
bool nb_max_pool_adjoint_sparse(const nb_node *pool, int64_t k, int64_t r0, int64_t m, bool gate_positive,
                                int64_t cap, struct nb_sparse_rows *s);

/* Creates an op node (checks inputs for NULL, runs infer). */
nb_node *nb_node_op_new(const nb_op *op, int ninputs, nb_node *const *inputs, const nb_attrs *at);
/* Shape of a tensor from another. */
void nb_tensor_set_shape(nb_tensor *t, int rank, const int64_t *shape);
/* Removes the most recently created node (undoing a failed layer). */
void nb_graph_pop(nb_graph *g);
/* Forward pass over the nodes up to and including last (creation order),
 * with the random key after the last pass's. */
nb_status nb_forward_upto(nb_node *last);
/* The same with an explicit random key: a pass with the key of an earlier
 * one draws the same dropout masks (the Jacobians' and the training loop's
 * way to evaluate one function several times). */
nb_status nb_forward_keyed(nb_node *last, uint64_t key);
/* A forward pass over the whole graph with the key of the last one (the
 * first key if none ran): it redraws nothing, so a pass that differentiates
 * "the last forward" (nb_jacobian, nb_vjp, nb_jvp) sees its dropout masks. Key 0 is a key
 * like any other (nb_forward_key(g, 0)). */
nb_status nb_forward_again(nb_graph *g);
/* Re-infers all shapes and grows value buffers. */
nb_status nb_graph_prepare(nb_graph *g);
/* Node workspace of at least bytes (kept between forward and backward). */
void *nb_node_workspace(nb_node *n, size_t bytes);
/* With check_numerics on: NB_ERR_NUMERIC naming the node if x has a NaN/Inf. */
/* Applies nb_set_num_threads's count to the calling thread's OpenMP
 * thread count (error.c); called at the start of every pass. */
void nb_threads_apply(void);
nb_status nb_graph_check_value(const nb_node *n, const nb_real *x, int64_t count, const char *what);

#define NB_SHAPE_STR(t, buf) nb_shape_str((t)->rank, (t)->shape, buf, sizeof(buf))

/* y = acc ? y + v : v, the write rule of every VJP. */
#define NB_PUT(acc, y, v) ((y) = (acc) ? (y) + (v) : (v))



/* Passes on raw buffers (autodiff.c), used by the Jacobian code:
 * seeds K x |out| -> adjoints in wrt[i]->adj (valid where wrt[i]->mark);
 * tangents[i] K x |wrt[i]| -> out->tan (valid where out->mark). */
nb_status nb_vjp_raw(nb_node *out, int64_t K, const nb_real *seeds, int nwrt, nb_node *const *wrt);
nb_status nb_jvp_raw(nb_node *out, int64_t K, int nwrt, nb_node *const *wrt, const nb_real *const *tangents);

/* Threads: the one OpenMP team does all parallel work (the BLAS runs on one
 * thread inside it), so no two thread pools fight over the cores. */
#ifdef _OPENMP
#include <omp.h>
static inline int nb_thread_id(void) { return omp_get_thread_num(); }
static inline int nb_team_size(void) { return omp_get_num_threads(); }
static inline int nb_max_team(void) { return omp_get_max_threads(); }
#else
static inline int nb_thread_id(void) { return 0; }
static inline int nb_team_size(void) { return 1; }
static inline int nb_max_team(void) { return 1; }
#endif

/* Math functions of the element type: RE(exp)(x) is expf or exp. */
#ifdef NB_DOUBLE
#define RE(fn) fn
#else
#define RE(fn) fn##f
#endif

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
/* Shape inference shared by elementwise ops: output shape = input 0's. */
nb_status nb_infer_same_shape(nb_node *n);
#endif
