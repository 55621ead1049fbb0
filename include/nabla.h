/* nabla: neural networks built on backpropagation and Jacobians.
 *
 * One public header. Conventions (see DESIGN.md):
 *  - every public symbol starts with nb_;
 *  - fallible calls return nb_status (NB_OK == 0) or NULL, and nb_last_error()
 *    gives a thread-local message saying what was wrong;
 *  - the library never aborts, exits or prints;
 *  - nb_*_free(NULL) is a no-op.
 *
 * Element type: nb_real is float, or double when NB_DOUBLE is defined (the
 * checking build, target nabla_f64, used by the gradient-check tests).
 */
#ifndef NABLA_H
#define NABLA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NB_VERSION "0.1.0"
#define NB_MAX_RANK 8

#ifdef NB_DOUBLE
typedef double nb_real;
#else
typedef float nb_real;
#endif

typedef enum nb_status {
    NB_OK = 0,
    NB_ERR_ARG,         /* a bad argument: NULL, out of range, wrong kind of node */
    NB_ERR_SHAPE,       /* shapes that do not fit together */
    NB_ERR_NOMEM,       /* an allocation failed */
    NB_ERR_TOO_LARGE,   /* a result would exceed a size limit (e.g. a Jacobian) */
    NB_ERR_IO,          /* a file could not be opened, read or written */
    NB_ERR_FORMAT,      /* a file's contents are malformed */
    NB_ERR_NUMERIC,     /* a non-finite value where a finite one was required */
    NB_ERR_UNSUPPORTED  /* not differentiable, or not implemented for this case */
} nb_status;

/* The message of the last failure on this thread ("" if none). */
const char *nb_last_error(void);
/* Sets this thread's message (printf-style) and returns s: for code built on
 * nabla that reports errors the same way. */
nb_status nb_set_error(nb_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Text from a file (a tensor name, a label, spec text, an ONNX node name)
 * made safe to quote in a message: printable ASCII and printable UTF-8 as
 * they are, a backslash as \\, every other byte (newline, ESC and the other
 * control characters, DEL, invalid UTF-8, C1 and bidirectional controls) as
 * \xNN, so a hostile file cannot move the cursor, recolour the terminal or
 * forge lines. Reads text up to its NUL or len bytes; writes at most cap
 * bytes to buf, NUL included, ending with "..." when the text is cut.
 * Returns buf. (nb_set_error also writes control characters as \xNN: a
 * message is always one line.) */
const char *nb_escape_text(char *buf, size_t cap, const char *text, size_t len);
/* The name of a status code, e.g. "shape error". */
const char *nb_status_name(nb_status s);
const char *nb_version(void);
/* "float32" or "float64": the element type this library was built with. */
const char *nb_precision(void);
/* Threads used by the compute kernels (OpenMP and BLAS); process-wide, like
 * OpenBLAS's own setting. n <= 0 restores the default. */
void nb_set_num_threads(int n);
int nb_get_num_threads(void);
/* GEMM kernels, chosen per shape class by measurement unless NB_GEMM says
 * otherwise (docs/design.md, "Kernels chosen by measurement"). The choices
 * made so far as an NB_GEMM value, "fixed,CLASS=KERNEL,...": given to
 * another process it runs the same kernels for those classes (so the same
 * products give the same bits) and the fixed default elsewhere. Returns the
 * length it needs without the NUL (snprintf's convention; out may be NULL
 * when n is 0). Training checkpoints keep it under nabla.gemm. */
size_t nb_gemm_choices_spec(char *out, size_t n);
/* Follows spec (such a value: a checkpoint's nabla.gemm) from now on, so a
 * resumed run uses the kernels of the run it resumes and gives its bits.
 * Only where every class is left to measurement (NB_GEMM unset or "auto"):
 * an explicit NB_GEMM wins. 1 when followed; 0 when NB_GEMM is explicit;
 * -1 when spec is NULL or names a class or kernel this build does not know
 * (nb_last_error says which; nothing changed, the classes are measured).
 * Call before products run: the choices made so far are forgotten. */
int nb_gemm_follow(const char *spec);

/* ------------------------------------------------------------------ tensor */

/* A dense, contiguous, row-major tensor. Fields are public and read-only for
 * users except data[], which may be written. */
typedef struct nb_tensor {
    int rank;
    int64_t shape[NB_MAX_RANK];
    int64_t size;      /* product of shape (1 for rank 0) */
    nb_real *data;
    int owns_data;     /* internal: whether nb_tensor_free frees data */
} nb_tensor;

/* A zero-filled tensor. NULL on failure (bad shape, overflow, no memory). */
nb_tensor *nb_tensor_new(int rank, const int64_t *shape);
/* A tensor holding a copy of data (size elements). */
nb_tensor *nb_tensor_from(int rank, const int64_t *shape, const nb_real *data);
nb_tensor *nb_tensor_clone(const nb_tensor *t);
void nb_tensor_free(nb_tensor *t);
/* Numbers for people: the fewest significant digits that read back as the
 * same double (nb_format_double) or the same nb_real (nb_format_real: 0.4f
 * is "0.4"); "nan", "inf", "-inf". Returns buf; 32 bytes always suffice. */
char *nb_format_double(double v, char *buf, size_t n);
char *nb_format_real(nb_real v, char *buf, size_t n);
/* Writes "(2, 3, 4)" into buf. Returns buf. */
char *nb_shape_str(int rank, const int64_t *shape, char *buf, size_t n);
/* Product of shape with overflow check: -1 when a dimension is negative or
 * the product of the nonzero dimensions overflows (wherever a zero stands,
 * as in NumPy); otherwise the product, 0 when a dimension is 0. */
int64_t nb_shape_size(int rank, const int64_t *shape);

/* ------------------------------------------------------------------ graph */

/* A graph is defined once, then run many times: define inputs and parameters,
 * combine them with ops, call nb_forward, then nb_backward / nb_vjp / nb_jvp /
 * nb_jacobian. Buffers live in the graph; running allocates nothing once the
 * buffers have grown to the largest batch seen. */
typedef struct nb_graph nb_graph;
typedef struct nb_node nb_node;

nb_graph *nb_graph_new(void);
void nb_graph_free(nb_graph *g);

/* Leaves. The name is copied (at most 63 chars). The value is zero-filled;
 * write it through nb_value(node)->data. */
nb_node *nb_input(nb_graph *g, const char *name, int rank, const int64_t *shape);
nb_node *nb_param(nb_graph *g, const char *name, int rank, const int64_t *shape);

/* Change an input's shape (usually its batch size). Shapes of all nodes are
 * inferred again by the next nb_forward; buffers only grow. */
nb_status nb_input_reshape(nb_node *input, int rank, const int64_t *shape);

/* The node's value (valid after nb_forward, or any time for leaves) and the
 * gradient of the last nb_backward (NULL where none was computed, or when
 * the last nb_backward failed). Other passes (nb_vjp, nb_jvp, nb_jacobian)
 * keep their adjoints apart and leave it as it is, so a Jacobian may run
 * between nb_backward and nb_optim_step. nb_grad only reads. In a model, a
 * convolution followed by a non-overlapping max pool is one node (op
 * "conv2d_relu_maxpool", named after the pool's layer): the convolution's
 * own node keeps its shape but has no value or gradient. */
nb_tensor *nb_value(nb_node *n);
nb_tensor *nb_grad(nb_node *n);
const char *nb_node_name(const nb_node *n);
const char *nb_node_op(const nb_node *n); /* "input", "param", "matmul", ... */
nb_graph *nb_node_graph(const nb_node *n);
int nb_graph_size(const nb_graph *g);
nb_node *nb_graph_node(nb_graph *g, int i);          /* in creation order */
nb_node *nb_graph_find(nb_graph *g, const char *name);
void nb_node_set_name(nb_node *n, const char *name);
int nb_is_param(const nb_node *n);
/* Whether nb_backward computes this leaf's gradient (params: 1, inputs: 0). */
void nb_set_requires_grad(nb_node *leaf, int on);
int nb_node_requires_grad(const nb_node *leaf);
/* The graph's mode, one setting for every op that has modes:
 * NB_INFERENCE (default): dropout is the identity, batchnorm uses its moving
 * statistics; NB_TRAINING: dropout draws masks (from seed), batchnorm uses
 * the batch's statistics; NB_TRAINING_NO_DROPOUT: the batch's statistics
 * with dropout off (what grad, hvp and hessian differentiate). */
enum { NB_INFERENCE = 0, NB_TRAINING = 1, NB_TRAINING_NO_DROPOUT = 2 };
void nb_graph_set_training(nb_graph *g, int mode, uint64_t seed);
/* 1 if a forward pass of g in its present mode couples the examples of a
 * batch (a batchnorm in a training mode): a per-example Jacobian of it
 * would not be one. */
int nb_graph_couples_batch(const nb_graph *g);
/* NaN/Inf guard: when on, nb_forward and nb_backward fail with NB_ERR_NUMERIC
 * naming the first node whose value or gradient is not finite. */
void nb_graph_set_check_numerics(nb_graph *g, int on);

/* -------------------------------------------------------------------- ops */
/* Each returns a new node in its inputs' graph, or NULL (with nb_last_error)
 * when the shapes do not fit or an input is NULL, so that a whole expression
 * can be written first and checked once at the end. */

/* Elementwise with NumPy broadcasting. */
nb_node *nb_add(nb_node *a, nb_node *b);
nb_node *nb_sub(nb_node *a, nb_node *b);
nb_node *nb_mul(nb_node *a, nb_node *b);
nb_node *nb_div(nb_node *a, nb_node *b);
/* a (..., Ca) and b (..., Cb), same leading dims, joined on the last axis: (..., Ca + Cb). */
nb_node *nb_concat(nb_node *a, nb_node *b);
/* Elementwise, one input. */
nb_node *nb_neg(nb_node *x);
nb_node *nb_exp(nb_node *x);
nb_node *nb_log(nb_node *x);
nb_node *nb_sqrt(nb_node *x);
nb_node *nb_abs(nb_node *x);
nb_node *nb_pow(nb_node *x, double p);
nb_node *nb_scale(nb_node *x, double s); /* s * x */
nb_node *nb_sigmoid(nb_node *x);
nb_node *nb_tanh(nb_node *x);
nb_node *nb_relu(nb_node *x);
nb_node *nb_leaky_relu(nb_node *x, double slope);
nb_node *nb_elu(nb_node *x, double alpha);
nb_node *nb_softplus(nb_node *x);
nb_node *nb_gelu(nb_node *x); /* exact: x * Phi(x) */
/* Over the last axis. */
nb_node *nb_softmax(nb_node *x);
nb_node *nb_log_softmax(nb_node *x);
/* a (..., m, k) @ b (..., k, n): 2-D, or batched with broadcast batch dims. */
nb_node *nb_matmul(nb_node *a, nb_node *b);
/* Permutation of axes; perm NULL reverses them (the 2-D transpose). */
nb_node *nb_transpose(nb_node *x, const int *perm);
/* One dim may be -1 (inferred). */
nb_node *nb_reshape(nb_node *x, int rank, const int64_t *shape);
/* (N, ...) -> (N, prod(...)). */
nb_node *nb_flatten(nb_node *x);
/* Over the given axes (negative counts from the end); naxes 0 = all axes. */
nb_node *nb_sum(nb_node *x, int naxes, const int *axes, int keepdims);
nb_node *nb_mean(nb_node *x, int naxes, const int *axes, int keepdims);

/* Padding of a convolution or pool window: none ('valid'), TensorFlow's
 * 'same', or (convolutions only) `pad` zeros on every side, PyTorch's
 * padding=P. */
typedef enum { NB_PAD_VALID = 0, NB_PAD_SAME = 1, NB_PAD_EXPLICIT = 2 } nb_padding;
typedef struct nb_conv2d_opts {
    int stride;   /* 1 if 0 */
    int dilation; /* 1 if 0 */
    nb_padding padding;
    int pad; /* NB_PAD_EXPLICIT: pixels of zeros before and after each spatial axis (>= 0) */
} nb_conv2d_opts;
/* x (N,H,W,C_in), kernel (f_h,f_w,C_in,C_out), bias (C_out) or NULL.
 * 'same' pads as TensorFlow: out = ceil(in/stride), the odd pixel at the end;
 * explicit: out = floor((in + 2 pad - (f - 1) dilation - 1) / stride) + 1. */
nb_node *nb_conv2d(nb_node *x, nb_node *kernel, nb_node *bias, const nb_conv2d_opts *opts);
/* relu(conv2d(...)) as one node: the ReLU runs in the same pass over each
 * block of the output (no separate pre-activation tensor is stored). */
nb_node *nb_conv2d_relu(nb_node *x, nb_node *kernel, nb_node *bias, const nb_conv2d_opts *opts);
/* x (N,H,W,C); stride 0 means stride = size. Average pooling counts only the
 * real (unpadded) pixels, as TensorFlow does. */
nb_node *nb_max_pool2d(nb_node *x, int size, int stride, nb_padding padding);
nb_node *nb_avg_pool2d(nb_node *x, int size, int stride, nb_padding padding);
/* Inverted dropout: in training mode zeroes with probability rate and scales
 * the rest by 1/(1-rate); identity in inference mode. */
nb_node *nb_dropout(nb_node *x, double rate);
/* Batch normalisation over every axis but the last of x (..., C): with the
 * batch's statistics in a training mode, the moving ones in inference
 * (gamma, beta, moving_mean, moving_variance: (C) each; the moving ones are
 * not differentiated). eps in (0, 1), momentum in [0, 1]. */
nb_node *nb_batchnorm(nb_node *x, nb_node *gamma, nb_node *beta, nb_node *moving_mean, nb_node *moving_variance,
                      double eps, double momentum);
/* After a training-mode forward: every batchnorm of g updates its moving
 * statistics from that batch (PyTorch's rule: momentum, unbiased variance),
 * once per forward. Returns how many did. */
int nb_batchnorm_update_moving(nb_graph *g);
/* Layer normalisation over the last axis of x (..., C), gamma and beta (C). */
nb_node *nb_layernorm(nb_node *x, nb_node *gamma, nb_node *beta, double eps);

/* Losses: scalars, mean over the batch (PyTorch's and Keras's default). */
nb_node *nb_mse_loss(nb_node *pred, nb_node *target);          /* mean of (p-t)^2 over all elements */
nb_node *nb_bce_logits_loss(nb_node *logits, nb_node *target); /* mean over all elements */
/* logits (N,C); labels (N) holding class indices 0..C-1 (as nb_real). */
nb_node *nb_cce_logits_loss(nb_node *logits, nb_node *labels);
/* NB_OK when each of the n labels is a class index 0..classes-1 (a whole
 * number as nb_real); else NB_ERR_ARG with the message, the one every
 * class-label check of nabla gives (the loss, training data, the CLI):
 * "WHAT: example I has label V, not a class index 0..C-1 (C classes)". */
nb_status nb_check_class_labels(const char *what, const nb_real *labels, int64_t n, int64_t classes);
/* logits (N,C); target (N,C) probabilities or one-hot rows. */
nb_node *nb_cce_logits_probs_loss(nb_node *logits, nb_node *target);

/* --------------------------------------------------------------- autodiff */

/* Computes every node's value. Each pass takes the random key after the
 * last one's (dropout draws new masks); nb_forward_key names the key, so
 * that two passes with one key draw the same masks (as JAX's PRNG keys). */
nb_status nb_forward(nb_graph *g);
nb_status nb_forward_key(nb_graph *g, uint64_t key);
/* Reverse mode from a scalar: after a forward, fills nb_grad() of every
 * parameter and of every input with requires_grad, with dloss/dleaf.
 * NB_ERR_ARG unless the last nb_forward completed (not failed, not older
 * than a new node or shape); the same holds for the passes of nb_jacobian. */
nb_status nb_backward(nb_node *loss);
/* nb_backward for the leaves only: the same gradients of parameters and of
 * inputs with requires_grad, bit for bit, but the adjoints of op nodes
 * share buffers (one lives from its first write to its own VJP), so the
 * pass holds the live ones only; nb_grad of an op node is NULL afterwards.
 * What training steps use (PyTorch keeps no intermediate gradient either). */
nb_status nb_backward_leaves(nb_node *loss);
/* Vector-Jacobian products, batched: seeds has shape (K,) + out.shape; for
 * each of the nwrt nodes, results[i] gets a new tensor of shape
 * (K,) + wrt[i].shape with results[i][k] = seeds[k] . d out / d wrt[i].
 * One backward pass serves all K seeds. Runs the forward pass first, with
 * the random key of the last one (as nb_jacobian does): in training mode
 * it differentiates the dropout masks of the nb_forward it follows. */
nb_status nb_vjp(nb_node *out, const nb_tensor *seeds, int nwrt, nb_node *const *wrt,
                 nb_tensor **results);
/* Jacobian-vector products, batched: tangents[i] has shape (K,) + wrt[i].shape;
 * result gets shape (K,) + out.shape, result[k] = sum_i dout/dwrt[i] . t_i[k].
 * A node listed twice gets the sum of its tangents; no wrt node may depend on
 * another (a tangent given for a node replaces the one flowing into it).
 * Runs the forward pass first, with the key of the last one (as nb_vjp). */
nb_status nb_jvp(nb_node *out, int nwrt, nb_node *const *wrt, const nb_tensor *const *tangents,
                 nb_tensor **result);

/* -------------------------------------------------------------- jacobians */

typedef enum { NB_JAC_AUTO = 0, NB_JAC_REV, NB_JAC_FWD, NB_JAC_NUMERIC } nb_jac_mode;
typedef struct nb_jacobian_opts {
    nb_jac_mode mode;
    int per_example;   /* out (N,o...), wrt (N,i...) -> J (N,o...,i...); assumes example n's
                        * output depends on example n's input only (no op mixes the batch) */
    int64_t chunk;     /* seeds/tangents per pass; 0 = automatic */
    size_t max_bytes;  /* refuse a Jacobian larger than this; 0 = 2 GiB */
    double eps;        /* numeric: central-difference step; 0 = nb_gradcheck_defaults' eps,
                        * 1e-6 (1e-3 in float) */
    /* Several processes (nb_comm, defined with the training API below):
     * every rank calls nb_jacobian together, on the same graph with the
     * same values (compared by a hash: NB_ERR_ARG on every rank naming the
     * first that differs). The passes are split: the rows of J (reverse
     * mode; per example: output element o of every example) or its
     * columns (forward mode) are cut into chunks of `chunk` (0: at most
     * 1/64 of them, fewer where auto's memory rule says), fixed by the
     * shapes alone, and rank r computes a contiguous run of chunks. Rank
     * 0 gets the whole J, with the same bits for any number of ranks
     * (given the threads per rank); the other ranks get *J = NULL and
     * NB_OK. The numeric mode and nb_jacobian_kinks run in one process
     * (NB_ERR_UNSUPPORTED). NULL: one process. */
    const struct nb_comm *comm;
} nb_jacobian_opts;
/* J = d out / d wrt with shape out.shape + wrt.shape (per_example: see above).
 * wrt may be any node for REV/FWD; NUMERIC needs a leaf. Runs the forward pass,
 * after checking the size from the shapes alone: NB_ERR_TOO_LARGE (its message
 * gives the bytes needed) returns before any pass or large allocation. */
nb_status nb_jacobian(nb_node *out, nb_node *wrt, const nb_jacobian_opts *opts, nb_tensor **J);
const char *nb_jac_mode_name(nb_jac_mode m); /* "auto", "rev", "fwd", "numeric" */
nb_status nb_jac_mode_parse(const char *text, nb_jac_mode *out);

typedef struct nb_gradcheck_opts {
    double eps, atol, rtol; /* 0 = the precision's default (nb_gradcheck_defaults) */
} nb_gradcheck_opts;
/* The values that zeros in nb_gradcheck_opts (and nb_jacobian_opts' eps)
 * stand for, by precision: in double PyTorch's gradcheck defaults, eps 1e-6,
 * atol 1e-5, rtol 1e-3; in float eps 1e-3, atol 1e-3, rtol 1e-2 (a step of
 * 1e-6 would be lost in float's rounding). */
void nb_gradcheck_defaults(nb_gradcheck_opts *o);
typedef struct nb_gradcheck_result {
    int ok;                 /* both modes within |a - n| <= atol + rtol |n| */
    double max_err_rev;     /* max |a - n| of reverse mode */
    double max_err_fwd;     /* max |a - n| of forward mode */
    double worst_ratio;     /* max |a-n| / (atol + rtol |n|); <= 1 passes */
    int64_t worst_flat;     /* flat index into J of the worst element */
    int64_t worst_index[2 * NB_MAX_RANK];
    int worst_rank;
    double worst_analytic, worst_numeric;
    nb_jac_mode worst_mode;
    double max_abs_jacobian; /* to show the Jacobian was not all zero */
    int64_t kinks;          /* elements of wrt at a kink or tie for this eps (nb_jacobian_kinks) */
    int ok_off_kinks;       /* the verdict on the Jacobian's other columns (= ok when kinks is 0) */
} nb_gradcheck_result;
/* Compares the reverse- and forward-mode Jacobians of out w.r.t. the leaf wrt
 * with central differences. Returns NB_OK when the check could run (read
 * res->ok for the verdict). */
nb_status nb_gradcheck(nb_node *out, nb_node *wrt, const nb_gradcheck_opts *opts,
                       nb_gradcheck_result *res);

/* Kinks and ties: relu (and abs, leaky relu) at 0, equal values in a max
 * pool's window. There the function has no derivative; central differences
 * give the mean of the two one-sided slopes, which an analytic Jacobian
 * (one of them, or a subgradient) does not match, at any eps. Images with a
 * flat background (pixels exactly 0) put a trained CNN's max pools at ties.
 *
 * nb_jacobian_kinks computes the numeric Jacobian as nb_jacobian does
 * (opts: per_example, max_bytes, eps; mode is ignored) and marks each
 * element i of wrt where the one-sided differences of some output o
 * disagree, i.e. the step straddles a non-differentiable point:
 *   |(f(x + h e_i) - f(x)) / h - (f(x) - f(x - h e_i)) / h| / 2 > atol + rtol |central_o|
 * (half the jump is how far the kink can move the central difference from
 * the derivative on either side). No op-specific test: it finds any kink,
 * at the cost of one forward pass more than the numeric Jacobian. A smooth
 * point with curvature |f''| above about 2 (atol + rtol |f'|) / h is
 * flagged too; a smaller eps tells it from a kink. atol, rtol: 0 = those of
 * nb_gradcheck_defaults. J (may be NULL: kinks only, no size limit) gets the
 * numeric Jacobian; kinks (may be NULL) a tensor of wrt's shape, 1 at a
 * kink, else 0; nkinks (may be NULL) their count. */
nb_status nb_jacobian_kinks(nb_node *out, nb_node *wrt, const nb_jacobian_opts *opts, double atol, double rtol,
                            nb_tensor **J, nb_tensor **kinks, int64_t *nkinks);

/* The gradient check of every op on random inputs (the `nabla gradcheck`
 * table). Calls report(row, user) once per case; returns the failure count
 * or -1 on error. */
typedef struct nb_opcheck_row {
    const char *op;
    const char *case_name;
    const char *wrt;
    char shape[96];
    nb_gradcheck_result r;
} nb_opcheck_row;
int nb_opcheck_all(uint64_t seed, const nb_gradcheck_opts *opts,
                   void (*report)(const nb_opcheck_row *row, void *user), void *user);

/* ----------------------------------------------------------- second order */
/* Hessians of a scalar (a loss) by forward-over-reverse: the tangent of the
 * reverse pass along directions v, every op's VJP differentiated once more
 * (its second-order rule, beside its VJP). Exact, never finite differences
 * (those are only the reference of nb_hessian_check). Like nb_vjp, each call
 * runs the forward pass with the random key of the last one (the same
 * dropout masks) and leaves nb_grad as it is. The wrt nodes are leaves
 * (inputs and parameters), any number of them (a ResNet has hundreds).
 *
 * Hessian-vector products, batched: vectors[i] has shape (K,) + wrt[i].shape
 * (the K directions, split over the wrt nodes); results[i] gets a new tensor
 * of the same shape with
 *   results[i][k] = sum_j d^2 out / d wrt[i] d wrt[j] . vectors[j][k],
 * all K in one pass. NB_ERR_SHAPE unless out is a scalar. */
nb_status nb_hvp(nb_node *out, int nwrt, nb_node *const *wrt, const nb_tensor *const *vectors,
                 nb_tensor **results);

/* The Hessian H = d^2 out / d wrt d wrt2 with shape out.shape + wrt.shape +
 * wrt2.shape (jax.hessian's layout), H[o, i, j] = d^2 out[o] / d wrt[i]
 * d wrt2[j]; wrt2 NULL means wrt (the square Hessian, wrt.shape twice), else
 * the cross block. Exact by HVPs with the unit vectors of wrt2, chunk per
 * pass; numeric: central differences of the gradient (the reference). The
 * size is checked from the shapes first: NB_ERR_TOO_LARGE (its message gives
 * the bytes needed) returns before any pass or large allocation. */
typedef struct nb_hessian_opts {
    int numeric;       /* 1: (g(x + eps e_j) - g(x - eps e_j)) / 2 eps, g the gradient */
    double eps;        /* numeric step; 0 = nb_gradcheck_defaults' eps */
    int64_t chunk;     /* vectors per pass; 0 = automatic */
    size_t max_bytes;  /* refuse a Hessian larger than this; 0 = 2 GiB */
} nb_hessian_opts;
nb_status nb_hessian(nb_node *out, nb_node *wrt, nb_node *wrt2, const nb_hessian_opts *opts, nb_tensor **H);
/* Gauss-Newton products G v = J^T H_L J v for a loss L of logits z (its first
 * input: nb_mse_loss, nb_bce_logits_loss, nb_cce_logits_loss, ...), J = dz /
 * d wrt and H_L = d^2 L / dz^2: the part of the Hessian that is positive
 * semi-definite for these convex losses, and all of it where z is linear in
 * wrt. vectors and results as in nb_hvp. */
nb_status nb_gauss_newton_vp(nb_node *loss, int nwrt, nb_node *const *wrt, const nb_tensor *const *vectors,
                             nb_tensor **results);
/* The exact Hessian (nb_hessian) against central differences of the
 * gradient, elementwise |a - n| <= atol + rtol |n| (opts as nb_gradcheck's,
 * zeros the defaults). Returns NB_OK when the check could run: read ok. */
typedef struct nb_hessian_check_result {
    int ok;
    double max_err;          /* max |a - n| */
    double worst_ratio;      /* max |a - n| / (atol + rtol |n|); <= 1 passes */
    int64_t worst_flat;      /* flat index into H of the worst element */
    int64_t worst_index[NB_MAX_RANK];
    int worst_rank;
    double worst_analytic, worst_numeric;
    double max_abs_hessian;  /* to show the Hessian was not all zero */
} nb_hessian_check_result;
nb_status nb_hessian_check(nb_node *out, nb_node *wrt, nb_node *wrt2, const nb_gradcheck_opts *opts,
                           nb_hessian_check_result *res);

/* Curvature from products alone. A symmetric linear operator on flat
 * vectors of n values, applied to K of them at once: y (K x n) = A x. For a
 * Hessian over several tensors, a vector is their elements concatenated in
 * the order given. */
typedef nb_status (*nb_linop)(void *user, int64_t K, const nb_real *x, nb_real *y);
#define NB_EIGS_MAX 16
typedef struct nb_eigs_opts {
    int k;            /* eigenvalues wanted, 1..NB_EIGS_MAX (0: 1) */
    int max_iter;     /* iterations at most (0: 100); each applies A to k + 2 vectors */
    double tol;       /* stop when no Ritz value moved more than tol relative (0: 1e-3) */
    uint64_t seed;    /* of the random start */
} nb_eigs_opts;
typedef struct nb_eigs_result {
    int k;
    double values[NB_EIGS_MAX];    /* largest |value| first (a Hessian's may be negative) */
    double residuals[NB_EIGS_MAX]; /* |A u - l u| / |l_1| of each pair (l_1: the largest |value|) */
    int iterations;
    int64_t products;              /* matrix-vector products used (HVPs) */
    int converged;                 /* the last relative change was <= tol */
    double rel_change;             /* largest relative change of the k values in the last iteration */
    nb_tensor *vectors;            /* (k, n): the unit eigenvectors; free with nb_tensor_free */
} nb_eigs_result;
/* The k eigenvalues of largest magnitude of A and their vectors, by
 * subspace iteration with Rayleigh-Ritz (PyHessian's power iteration with
 * deflation, on k + 2 vectors at once), seeded. */
nb_status nb_linop_eigs(int64_t n, nb_linop op, void *user, const nb_eigs_opts *opts, nb_eigs_result *res);
/* The same on the Hessian of the scalar out w.r.t. the wrt nodes (nb_hvp's
 * products, the forward pass at the last key). */
nb_status nb_hessian_eigs(nb_node *out, int nwrt, nb_node *const *wrt, const nb_eigs_opts *opts,
                          nb_eigs_result *res);
/* Hutchinson's estimate of tr(A): the mean of z^T A z over samples random
 * sign vectors z (>= 2), with its standard error. */
typedef struct nb_trace_result {
    double trace, std_error;
    int samples;
    int64_t products;
} nb_trace_result;
nb_status nb_linop_trace(int64_t n, nb_linop op, void *user, int samples, uint64_t seed, nb_trace_result *res);
nb_status nb_hessian_trace(nb_node *out, int nwrt, nb_node *const *wrt, int samples, uint64_t seed,
                           nb_trace_result *res);

/* The second-order check of every op: each case of nb_opcheck_all's table,
 * made a scalar L = sum(c out^2) + sum(d out) (c, d random), gets
 * nb_hessian_check of every block (wrt, wrt2) of its leaves, cross blocks
 * included. report(row, user) once per block; returns the failure count or
 * -1 on error. */
typedef struct nb_opcheck2_row {
    const char *op;
    const char *case_name;
    const char *wrt, *wrt2;
    nb_hessian_check_result r;
} nb_opcheck2_row;
int nb_opcheck_second_all(uint64_t seed, const nb_gradcheck_opts *opts,
                          void (*report)(const nb_opcheck2_row *row, void *user), void *user);

/* --------------------------------------------------------------------- io */
/* Every reader checks each size it reads against the real length of the data
 * and against overflow before allocating; a malformed file gives
 * NB_ERR_FORMAT with a message naming the file, the field and the reason.
 * The *_parse functions read from memory (what the fuzz targets call). */

/* IDX (the MNIST format), raw or gzip-compressed (detected by its magic).
 * Any IDX element type becomes nb_real; the tensor's shape is the file's. */
nb_status nb_idx_read(const char *path, nb_tensor **out);
nb_status nb_idx_parse(const void *data, size_t len, nb_tensor **out);

/* NumPy .npy, version 1-3, C order; dtypes <f4 <f8 |u1 |i1 <i4 <i8 (and
 * big-endian variants) read; written as <f4 (float build) or <f8. */
nb_status nb_npy_read(const char *path, nb_tensor **out);
nb_status nb_npy_parse(const void *data, size_t len, nb_tensor **out);
nb_status nb_npy_write(const char *path, const nb_tensor *t);

/* CSV of numbers with an optional header line: out gets shape (rows, cols).
 * header_names (may be NULL) receives a malloc'ed array of ncols malloc'ed
 * strings (free with nb_csv_free_names), or NULL when there is no header. */
nb_status nb_csv_read(const char *path, int has_header, nb_tensor **out, char ***header_names);
nb_status nb_csv_parse(const void *data, size_t len, int has_header, nb_tensor **out, char ***header_names);
void nb_csv_free_names(char **names, int64_t ncols);

/* safetensors: named tensors plus string metadata (__metadata__). F32, F64,
 * F16, BF16 and integer dtypes are read (converted to nb_real); F32 or F64 is
 * written. Writing is atomic: a temporary file, fsync, rename, fsync of the
 * directory, so a crash leaves either the old file or the new one. */
typedef struct nb_safetensors nb_safetensors;
nb_safetensors *nb_safetensors_new(void);
void nb_safetensors_free(nb_safetensors *st);
nb_status nb_safetensors_read(const char *path, nb_safetensors **out);
nb_status nb_safetensors_parse(const void *data, size_t len, nb_safetensors **out);
/* Serialises to a malloc'ed buffer (free with free()). */
nb_status nb_safetensors_serialize(const nb_safetensors *st, int write_f64, void **data, size_t *len);
nb_status nb_safetensors_write(const char *path, const nb_safetensors *st, int write_f64);
/* Adds a copy of t under name (replacing a tensor of that name). */
nb_status nb_safetensors_add(nb_safetensors *st, const char *name, const nb_tensor *t);
nb_status nb_safetensors_set_meta(nb_safetensors *st, const char *key, const char *value);
const char *nb_safetensors_meta(const nb_safetensors *st, const char *key); /* NULL if absent */
const nb_tensor *nb_safetensors_get(const nb_safetensors *st, const char *name);
int nb_safetensors_count(const nb_safetensors *st);
const char *nb_safetensors_name(const nb_safetensors *st, int i);
/* The dtype tensor i had in the file it was read from ("F32", "BF16", "U8",
 * ...); NULL for a tensor added in memory, or i out of range. */
const char *nb_safetensors_dtype(const nb_safetensors *st, int i);

/* Writes a file atomically (temporary file + fsync + rename + directory
 * fsync): used by every writer above. */
nb_status nb_write_file_atomic(const char *path, const void *data, size_t len);
/* Reads a whole file (malloc'ed; free with free()), refusing files larger
 * than max_bytes (0 = no limit). */
nb_status nb_read_file(const char *path, size_t max_bytes, void **data, size_t *len);

/* --------------------------------------------------------------------- nn */
/* Layers, the sequential model and its text spec, initialisers, optimisers
 * and the training loop. Parameters are named "<layer index>.kernel" and
 * "<layer index>.bias" in Keras layouts: dense kernel (in, out), conv kernel
 * (f_h, f_w, C_in, C_out), bias (out). */

typedef enum nb_activation {
    NB_ACT_NONE = 0, NB_ACT_RELU, NB_ACT_SIGMOID, NB_ACT_TANH, NB_ACT_SOFTMAX, NB_ACT_LOG_SOFTMAX,
    NB_ACT_LEAKY_RELU, NB_ACT_ELU, NB_ACT_SOFTPLUS, NB_ACT_GELU
} nb_activation;

/* Names of the library's enumerations, each list kept once (src/nn/names.c):
 * nb_*_name gives the name the spec grammar and the CLI use ("relu",
 * "cce", "adam", "cosine", "rev", "glorot"; NB_ACT_NONE is "linear"), "?"
 * for a value out of range; nb_*_parse reads it back (NB_OK) or fails with
 * NB_ERR_ARG and a message that suggests the closest name and lists them
 * all: "unknown activation 'rleu'; did you mean 'relu'? (linear, relu, ...)".
 * Parsing accepts a few older or longer spellings too (activation "none",
 * schedule "exponential"). */
const char *nb_activation_name(nb_activation a);
nb_status nb_activation_parse(const char *text, nb_activation *out);
/* The closest of names[0..n) to word (edit distance, a swap of two letters
 * counting as one edit, and so does a word that begins a name or a name that
 * begins it, of 3 letters or more), or NULL when none is close (at most a
 * third of the longer word wrong) or word is one of them: for "did you
 * mean" hints. */
const char *nb_suggest(const char *word, const char *const *names, int n);

/* The layer kinds, one line each: X(ENUM, file). Each kind is one entry of
 * the layer table (src/nn/layers/FILE.c: keyword, options, build, parameters
 * and their initialisers); the spec parser and printer, the model builder and
 * the model files iterate the table (docs/design.md, "How to add a layer"). */
#define NB_LAYER_KINDS(X)                                                                                    \
    X(DENSE, dense) X(CONV2D, conv2d) X(MAXPOOL, maxpool) X(AVGPOOL, avgpool) X(FLATTEN, flatten)           \
    X(DROPOUT, dropout) X(ACTIVATION, activation) X(GLOBALAVGPOOL, globalavgpool) X(FROM, from) X(ADD, add)   \
    X(CONCAT, concat) X(BATCHNORM, batchnorm) X(LAYERNORM, layernorm)
typedef enum nb_layer_kind {
#define NB_LAYER_ENUM_(e, file) NB_LAYER_##e,
    NB_LAYER_KINDS(NB_LAYER_ENUM_)
#undef NB_LAYER_ENUM_
    NB_LAYER_KIND_COUNT
} nb_layer_kind;
/* The kind's keyword ("conv2d"; "activation" for a bare activation layer,
 * whose keyword is the activation itself), NULL out of range. */
const char *nb_layer_kind_name(nb_layer_kind k);
/* Its grammar, "conv2d FILTERS SIZE [ACT] [stride=S] [padding=valid|same]
 * [dilation=D]", and a spec line that uses its options ("conv2d 4 3 relu
 * stride=2 padding=same"), NULL out of range. */
const char *nb_layer_kind_usage(nb_layer_kind k);
const char *nb_layer_kind_example(nb_layer_kind k);

enum { NB_SPEC_NAME_MAX = 32, NB_SPEC_MAX_REFS = 8 };
/* One line of a spec. Unused fields are 0. */
typedef struct nb_layer_spec {
    nb_layer_kind kind;
    int units;            /* dense units, conv filters */
    int size;             /* conv kernel size, pool size */
    int stride;           /* conv (1 if 0), pool (size if 0) */
    int dilation;         /* conv (1 if 0) */
    nb_padding padding;
    int pad;              /* conv padding=P (NB_PAD_EXPLICIT): zeros on every side */
    nb_activation act;
    double rate;          /* dropout */
    double momentum, eps; /* batchnorm (both), layernorm (eps); 0: the default */
    /* Graph models: `ENTRY as NAME` names the entry's output (name[0] = 0:
     * unnamed); `from`, `add` and `concat` reference nrefs earlier names
     * (or `input`). Names are letters, digits and '_', not starting with a
     * digit, at most NB_SPEC_NAME_MAX - 1 characters. */
    char name[NB_SPEC_NAME_MAX];
    int nrefs;
    char refs[NB_SPEC_MAX_REFS][NB_SPEC_NAME_MAX];
} nb_layer_spec;

/* Parses a spec ("conv2d 32 3 relu; maxpool 2; flatten; dense 10"): one layer
 * per line or ';', '#' comments. *layers is malloc'ed (free with free()). */
nb_status nb_spec_parse(const char *spec, nb_layer_spec **layers, int *nlayers);
/* Writes a spec line for a layer ("conv2d 32 3 relu stride=2") that
 * nb_spec_parse reads back as the same layer (a bare identity layer is
 * "linear"; "none", written by older versions, is read as it too). */
char *nb_layer_spec_str(const nb_layer_spec *l, char *buf, size_t n);

typedef struct nb_model nb_model;

/* input_shape excludes the batch dimension, e.g. {28, 28, 1} or {784}. */
nb_model *nb_model_new(int input_rank, const int64_t *input_shape);
void nb_model_free(nb_model *m);
/* Appends a layer; fails with a message naming the layer and the shapes if it
 * does not fit the output of the previous one, or (NB_ERR_ARG) if the spec
 * grammar cannot write it (out of nb_spec_parse's ranges, an activation on a
 * layer that takes none). */
nb_status nb_model_add(nb_model *m, const nb_layer_spec *layer);
nb_status nb_model_dense(nb_model *m, int units, nb_activation act);
nb_status nb_model_neuron(nb_model *m, nb_activation act); /* dense 1: y = g(x^T w + b) */
nb_status nb_model_conv2d(nb_model *m, int filters, int size, nb_activation act, int stride, nb_padding pad);
nb_status nb_model_maxpool(nb_model *m, int size, int stride);
nb_status nb_model_avgpool(nb_model *m, int size, int stride);
nb_status nb_model_flatten(nb_model *m);
nb_status nb_model_dropout(nb_model *m, double rate);
nb_status nb_model_activation(nb_model *m, nb_activation act);
/* A model from a spec and an input shape (e.g. "28,28,1" parsed by the caller). */
nb_status nb_model_from_spec(const char *spec, int input_rank, const int64_t *input_shape, nb_model **out);
/* Parses "28,28,1" (or "28x28x1") into a shape: at most NB_MAX_RANK - 1
 * dimensions, each 1..2^24. */
nb_status nb_shape_parse(const char *text, int *rank, int64_t *shape);
/* The spec text of the model (layers joined by "; "), owned by the model. */
const char *nb_model_spec(const nb_model *m);

int nb_model_num_layers(const nb_model *m);
const nb_layer_spec *nb_model_layer(const nb_model *m, int i);
/* Output shape of layer i without the batch dimension; rank returned. */
int nb_model_layer_shape(const nb_model *m, int i, int64_t *shape);
int nb_model_input_shape(const nb_model *m, int64_t *shape);
/* The node holding layer i's output (to differentiate it or with respect to
 * it, e.g. dA2/dA1 with nb_jacobian); NULL with the reason when there is no
 * layer i or when it was fused away (a conv2d before a maxpool: a name,
 * `as NAME`, keeps it). */
nb_node *nb_model_layer_output(nb_model *m, int i);
int64_t nb_model_num_params(const nb_model *m);
/* Parameter tensors, in layer order (kernel, then bias), named
 * "<layer>.<name>" by the parameter list of their layer's kind. */
int nb_model_param_count(const nb_model *m);
/* Those of them that are trained (batchnorm's moving statistics are not). */
int nb_model_trainable_count(const nb_model *m);
/* For inference: folds every batchnorm that directly follows a conv2d or
 * dense layer without activation and without a name into its kernel and
 * bias, leaving the batchnorm the identity (src/nn/fold.c); inference
 * outputs stay equal within float rounding. Training the folded model
 * afterwards is not the same model. *folded: how many (may be NULL). */
nb_status nb_model_fold_batchnorm(nb_model *m, int *folded);
nb_node *nb_model_param(nb_model *m, int i);
nb_node *nb_model_find_param(nb_model *m, const char *name);
/* Keras's model.summary(): a layer table with output shapes and parameter
 * counts (columns as wide as the longest spec line and shape; an Inputs
 * column for graph models), then every parameter's name, shape and size.
 * A buffer too small for all of it is an error saying how many bytes it needs. */
nb_status nb_model_summary(const nb_model *m, char *buf, size_t n);
/* Class names of a classifier, one per class, joined by '\n' ("cat\ndog"),
 * or NULL when it has none. They travel in the model file's metadata
 * (nabla.classes; older nabla ignores the key). Setting NULL removes them;
 * names holding control characters other than the separators are refused. */
nb_status nb_model_set_class_names(nb_model *m, const char *names);
const char *nb_model_class_names(const nb_model *m);

typedef enum { NB_INIT_GLOROT_UNIFORM = 0, NB_INIT_HE_UNIFORM, NB_INIT_HE_NORMAL, NB_INIT_TORCH_DEFAULT } nb_init;
const char *nb_init_name(nb_init i); /* "glorot", "he", "he-normal", "torch" */
nb_status nb_init_parse(const char *text, nb_init *out);
/* Each parameter by the initialiser its layer kind declares for it: kernels
 * by init (fan_in and fan_out as Keras's: receptive field times channels),
 * biases zero (Keras), except NB_INIT_TORCH_DEFAULT which draws biases
 * uniformly in +-1/sqrt(fan_in of the layer's kernel) as PyTorch does. One
 * random stream from seed, in parameter order. */
nb_status nb_model_init(nb_model *m, nb_init init, uint64_t seed);

/* The model's graph, built for a batch size (rebuilt shapes only as needed). */
typedef enum { NB_LOSS_CCE = 0, NB_LOSS_MSE, NB_LOSS_BCE } nb_loss_kind;
const char *nb_loss_name(nb_loss_kind k); /* "cce", "mse", "bce" */
nb_status nb_loss_parse(const char *text, nb_loss_kind *out);
nb_graph *nb_model_graph(nb_model *m);
nb_node *nb_model_input(nb_model *m);   /* (N, input_shape...) */
nb_node *nb_model_output(nb_model *m);  /* the last layer's output */
/* The model's output activation: the activation of its last layer, looking
 * through dropout and linear layers (identities in inference), e.g. softmax
 * for 'dense 10 softmax; dropout 0.2'; NB_ACT_NONE for 'dense 10'. */
nb_activation nb_model_output_activation(const nb_model *m);
/* The logits: the input of the output activation when it is softmax or
 * sigmoid, else the output (log_softmax: its output, before any dropout).
 * The CCE loss and the BCE loss of a sigmoid read these, so a dropout after
 * a final softmax/sigmoid leaves them unchanged; a softmax or sigmoid
 * followed by a layer that computes is an ordinary layer. */
nb_node *nb_model_logits(nb_model *m);
/* Target and loss nodes for a loss (created on first use): target is (N)
 * class indices for CCE, else the output's shape. */
nb_status nb_model_loss(nb_model *m, nb_loss_kind kind, nb_node **target, nb_node **loss);
/* Sets the batch size of the input (and target). */
nb_status nb_model_set_batch(nb_model *m, int64_t batch);
/* Runs the model on x (N, input_shape...) in inference mode: out gets a new
 * tensor with the output (probabilities when the output activation is
 * softmax, see nb_model_output_activation; else raw outputs). */
nb_status nb_model_predict(nb_model *m, const nb_tensor *x, int64_t batch, nb_tensor **out);

/* Model files (safetensors, see DESIGN.md): weights plus nabla.spec and
 * nabla.input metadata. Saving is atomic. */
nb_status nb_model_save(nb_model *m, const char *path);
/* Loading refuses (NB_ERR_FORMAT, naming the tensor) a file whose tensors do
 * not fit its nabla.spec: a parameter missing or of another shape, or a
 * tensor that is no parameter of the spec (optimiser state, "optim.*", is
 * allowed); and (NB_ERR_NUMERIC, with the counts) a parameter holding NaN or
 * Inf, unless flags has NB_LOAD_ALLOW_NONFINITE (to inspect a diverged
 * model). */
enum { NB_LOAD_ALLOW_NONFINITE = 1 };
nb_status nb_model_load(const char *path, nb_model **out); /* flags 0 */
nb_status nb_model_load_flags(const char *path, unsigned flags, nb_model **out);
/* Into an existing safetensors (for checkpoints that add optimiser state). */
nb_status nb_model_export(nb_model *m, nb_safetensors *st);
nb_status nb_model_import(const nb_safetensors *st, nb_model **out); /* flags 0 */
nb_status nb_model_import_flags(const nb_safetensors *st, unsigned flags, nb_model **out);

/* ONNX (src/io/onnx*.c): a model as an ONNX file (opset 13, or 17 for a
 * model with a layernorm: LayerNormalization; the weights as
 * initializers, the spec in metadata_props) and back. The exported graph
 * takes (N, H, W, C) images as nabla does, or (N, C, H, W) with
 * NB_ONNX_NCHW; the operators inside run in ONNX's NCHW layout. Importing
 * reads sequential graphs of the operators nb_onnx_supported_ops lists,
 * NCHW (PyTorch's torch.onnx.export) or NHWC, into a nabla model with NHWC
 * input and Keras-layout weights: kernels transposed, and the rows of the
 * first dense kernel after a flatten of NCHW images permuted to nabla's
 * (h, w, c) order. Anything else (an operator, an attribute value, a
 * branching graph) is refused with the node's name and what is supported;
 * nothing is approximated. Import flags: NB_LOAD_ALLOW_NONFINITE. */
enum { NB_ONNX_NCHW = 1 };
nb_status nb_onnx_serialize(nb_model *m, unsigned flags, void **data, size_t *len); /* free(*data) */
nb_status nb_onnx_save(nb_model *m, const char *path, unsigned flags);             /* atomic */
nb_status nb_onnx_parse(const void *data, size_t len, unsigned flags, nb_model **out);
nb_status nb_onnx_load(const char *path, unsigned flags, nb_model **out);
/* The opset nb_onnx_serialize writes for m: 13, or 17 (LayerNormalization's
 * first) when m has a layernorm; 0 for NULL. */
int nb_onnx_opset(const nb_model *m);
/* "Conv, Gemm, ...": the operators nb_onnx_parse reads. */
const char *nb_onnx_supported_ops(void);

/* Optimisers, formulas and defaults as PyTorch's (torch.optim). */
typedef enum { NB_OPT_SGD = 0, NB_OPT_ADAM, NB_OPT_ADAMW, NB_OPT_RMSPROP } nb_optimizer;
typedef enum { NB_SCHED_CONSTANT = 0, NB_SCHED_STEP, NB_SCHED_EXPONENTIAL, NB_SCHED_COSINE } nb_schedule;
const char *nb_optimizer_name(nb_optimizer k); /* "sgd", "adam", "adamw", "rmsprop" */
nb_status nb_optimizer_parse(const char *text, nb_optimizer *out);
const char *nb_schedule_name(nb_schedule s); /* "constant", "step", "exp", "cosine" */
nb_status nb_schedule_parse(const char *text, nb_schedule *out);
typedef struct nb_optim_opts {
    nb_optimizer kind;
    double lr;             /* required, > 0 */
    double momentum;       /* SGD, RMSprop */
    int nesterov;          /* SGD */
    double beta1, beta2;   /* Adam(W): 0.9, 0.999 if 0 */
    double eps;            /* Adam(W), RMSprop: 1e-8 if 0 (Keras uses 1e-7) */
    double alpha;          /* RMSprop smoothing: 0.99 if 0 */
    double weight_decay;   /* L2 added to the gradient; AdamW: decoupled (0.01 if < 0) */
    double clip_norm;      /* clip the global gradient L2 norm to this, if > 0 */
    nb_schedule schedule;  /* applied per epoch by nb_optim_set_epoch */
    int step_size;         /* STEP: epochs between decays */
    double gamma;          /* STEP, EXPONENTIAL: decay factor */
    int total_epochs;      /* COSINE: T_max */
    double min_lr;         /* COSINE: eta_min */
} nb_optim_opts;
typedef struct nb_optim nb_optim;
/* Validates the options (a learning rate of 0, negative or NaN is refused). */
nb_status nb_optim_new(nb_model *m, const nb_optim_opts *opts, nb_optim **out);
void nb_optim_free(nb_optim *o);
/* One update of every trainable parameter from its gradient. NB_ERR_ARG,
 * changing nothing, unless the last nb_backward completed. */
nb_status nb_optim_step(nb_optim *o);
/* Sets the learning rate from the schedule for a (0-based) epoch. */
void nb_optim_set_epoch(nb_optim *o, int epoch);
double nb_optim_lr(const nb_optim *o);
/* Optimiser state as named tensors ("optim.<param>.m", ...) for checkpoints. */
nb_status nb_optim_export(const nb_optim *o, nb_safetensors *st);
nb_status nb_optim_import(nb_optim *o, const nb_safetensors *st);

/* A labelled data set: x (N, ...), y (N) class indices or (N, k) targets. */
typedef struct nb_dataset {
    nb_tensor *x, *y;
} nb_dataset;
/* Fashion-MNIST / MNIST from a directory of the four IDX files:
 * x (N,28,28,1) scaled to [0,1], y (N). split: "train" or "test". */
nb_status nb_dataset_load_mnist(const char *dir, const char *split, nb_dataset *out);
/* A CSV file with a header line whose column label_col (negative counts from
 * the end) is the target; the other columns are the inputs. */
nb_status nb_dataset_load_csv(const char *path, int label_col, nb_dataset *out);
void nb_dataset_free(nb_dataset *d);
/* Toy 2-D data sets (src/nn/toy.c, no file I/O: the web page can use the
 * same generator): x (count, 2), y (count) class indices, example i of
 * class i % classes, drawn one after the other from one random stream of
 * seed, so the first n examples of a larger draw are the n of a smaller
 * one. Points lie in about [-1.5, 1.5]^2.
 *   circles:   class 0 on the circle of radius 1, class 1 on radius 0.5,
 *              N(0, noise^2) added to each coordinate (2 classes);
 *   xor:       uniform in [-1, 1]^2, class 1 where x0 x1 < 0, then noise
 *              added (2 classes);
 *   spiral:    `classes` arms, r = t, angle 3 pi t + 2 pi k / classes for
 *              t uniform in [0.05, 1], then noise added;
 *   gaussians: `classes` blobs centred on the unit circle at angles
 *              2 pi k / classes, standard deviation 4 * noise.
 * count 1..2^24, noise in [0, 10], classes 2 for circles and xor, 2..16
 * for spiral and gaussians (0: 2). */
typedef enum { NB_TOY_CIRCLES = 0, NB_TOY_XOR, NB_TOY_SPIRAL, NB_TOY_GAUSSIANS } nb_toy_kind;
const char *nb_toy_name(nb_toy_kind k); /* "circles", "xor", "spiral", "gaussians"; NULL out of range */
/* 1 and *out set if text names a toy data set, else 0 (no error set). */
int nb_toy_parse(const char *text, nb_toy_kind *out);
typedef struct nb_toy_opts {
    nb_toy_kind kind;
    int64_t count;
    double noise;
    uint64_t seed;
    int classes;
} nb_toy_opts;
nb_status nb_dataset_toy(const nb_toy_opts *o, nb_dataset *out);
/* Moves the last fraction of d into val (Keras's validation_split). */
nb_status nb_dataset_split(nb_dataset *d, double fraction, nb_dataset *val);
nb_status nb_dataset_subset(const nb_dataset *d, int64_t start, int64_t count, nb_dataset *out);

typedef struct nb_epoch_stats {
    int epoch;            /* 0-based */
    int64_t batches_done, batches_total;
    int64_t step;         /* optimiser steps so far */
    double loss, accuracy;         /* training, running mean over the epoch */
    double val_loss, val_accuracy; /* NaN when there is no validation set */
    double seconds, images_per_second;
    double lr;
    /* Data-parallel runs (nb_train_opts.comm): this rank's time in the
     * gradient exchange of the epoch so far, and the bytes it sent. */
    double comm_seconds;
    int64_t comm_bytes;
    /* Early stopping (nb_train_opts.early): 1 when this epoch's monitored
     * value is the best so far; 1 when training stops after this epoch. */
    int improved, stopping;
    /* nb_train_opts.diagnose: one entry per layer, measured on the epoch's
     * last batch (see nb_layer_diag); NULL otherwise. */
    const struct nb_layer_diag *diag;
    int ndiag;
} nb_epoch_stats;

/* Per-layer training diagnostics: vanishing or exploding gradients and
 * dead or saturated units made visible. */
typedef struct nb_layer_diag {
    int layer;
    int64_t params;      /* parameters of the layer; 0: the norms are NaN */
    double grad_norm;    /* L2 norm of dJ/dparams of the layer (all its parameters) */
    double weight_norm;  /* L2 norm of its parameters, after the step */
    double update_ratio; /* ||w_after - w_before|| / ||w_after|| of the step (NaN unless measured by nb_train) */
    nb_activation act;   /* the layer's activation */
    int64_t units;       /* channels of its output (the last axis) */
    /* relu: the fraction of units (channels) that are 0 on every example
     * and position of the batch; NaN for other activations. */
    double dead_fraction;
    /* sigmoid and tanh: the fraction of output values within 0.01 of the
     * activation's limits (|x| > 4.6 for sigmoid, |x| > 2.65 for tanh,
     * where the derivative is below 1/25 of its maximum); NaN otherwise. */
    double saturated_fraction;
} nb_layer_diag;
/* After nb_backward of a model's loss: fills out[0..n) (n >= the number of
 * layers) for every layer, update_ratio NaN. Reads the layers' outputs and
 * the gradients of the last pass; changes nothing. A convolution fused with
 * its max pool is measured on the pooled output (a channel is 0 everywhere
 * exactly when its pooled values are). NB_ERR_ARG without a completed
 * backward pass. */
nb_status nb_model_diagnose(nb_model *m, nb_layer_diag *out, int n);

/* Keras's EarlyStopping: after each epoch the monitored validation value is
 * compared with the best so far; an improvement (by more than min_delta)
 * resets `wait`, else wait grows, and when it reaches patience training
 * stops. NaN never improves. The state (best, best_epoch, wait) is read and
 * written, so a resumed run continues it. Needs validation data. */
typedef enum { NB_MONITOR_VAL_LOSS = 0, NB_MONITOR_VAL_ACCURACY } nb_monitor;
typedef struct nb_early_stopping {
    int patience;      /* >= 1 */
    nb_monitor monitor;
    double min_delta;  /* >= 0 */
    double best;       /* in/out: NaN before the first epoch */
    int best_epoch;    /* in/out: 0-based, -1 before the first */
    int wait;          /* in/out */
    int stopped_epoch; /* out: the epoch after which it stopped (0-based), -1 if it did not */
} nb_early_stopping;

/* A communicator for data-parallel training, the data-set curvature
 * (nb_model_hessian_eigs) and Jacobians (nb_jacobian_opts.comm): the library never calls MPI
 * itself; a program passes these two collectives over its own communicator
 * (the CLI's, over MPI_COMM_WORLD, is src/dist/cli_dist.c). Both are
 * blocking and are called by every rank in the same order; a non-zero
 * return stops nb_train with that status (set nb_last_error's message).
 *   allgather: send holds `bytes`; recv (size * bytes) receives every
 *              rank's, in rank order (MPI_Allgather of MPI_BYTE).
 *   alltoall:  send holds size blocks of `bytes`, block d for rank d; recv
 *              (size * bytes) receives block `rank` of every rank, in rank
 *              order (MPI_Alltoall of MPI_BYTE). */
typedef struct nb_comm {
    int rank, size;
    nb_status (*allgather)(const void *send, size_t bytes, void *recv, void *user);
    nb_status (*alltoall)(const void *send, size_t bytes, void *recv, void *user);
    void *user;
    /* Optional (NULL: allgather, every rank then receives everything):
     * rank 0's recv (size * bytes) receives every rank's `bytes`, in rank
     * order (MPI_Gather of MPI_BYTE to root 0); recv is NULL elsewhere. The
     * Jacobians use it to bring their parts to rank 0. */
    nb_status (*gather)(const void *send, size_t bytes, void *recv, void *user);
    /* Optional (NULL: allgather, then every rank sums the ranks' buffers in
     * rank order): buf (count values) becomes the element-wise sum of every
     * rank's buf, on every rank (MPI_Allreduce, MPI_IN_PLACE, MPI_SUM of
     * MPI_FLOAT, MPI_DOUBLE in the double build). Data-parallel training
     * without `reproducible` sums its gradients with it; every rank must
     * receive the same bits (the weights are compared after every epoch). */
    nb_status (*allreduce)(nb_real *buf, size_t count, void *user);
} nb_comm;

/* A sharpness measurement during training (nb_train_opts.sharpness_every):
 * the largest eigenvalue of the Hessian of the mean loss w.r.t. all
 * parameters on a fixed batch, with the learning rate then. Plain gradient
 * descent is stable along the top eigenvector while lambda_max < 2 / lr;
 * under full-batch gradient descent lambda_max tends to rise to about 2 / lr
 * and hover there (the edge of stability, Cohen et al., 2021). */
typedef struct nb_sharpness {
    int64_t step;      /* optimiser steps done when measured (0: the initial weights) */
    int epoch;         /* 0-based epoch the step belongs to */
    double lambda_max; /* the largest eigenvalue (not the largest |value|: when
                          nb_hessian_eigs' top value is negative, a second run
                          on the Hessian shifted by it finds the largest) */
    double lr;         /* the learning rate of the next step */
    double loss;       /* the mean loss on the fixed batch */
    int64_t batch;     /* examples in the fixed batch */
    int iterations, converged;
    int64_t products;  /* Hessian-vector products used */
} nb_sharpness;

/* Data augmentation of image inputs (H, W, C) while training, as Keras's
 * RandomFlip("horizontal") and RandomTranslation (zero fill) by whole pixels:
 * each example is shifted by dy, dx drawn uniformly from -shift..shift and
 * mirrored left-right with probability 1/2 (flip), drawn anew at every step
 * from (seed, step, data set row): the same for any threads, ranks and after
 * a resume. Zeros: none. */
typedef struct nb_augment {
    int shift; /* pixels, 0: no shift */
    int flip;  /* 1: random left-right mirror */
} nb_augment;
/* NB_OK when a fits a model input of this rank and shape (H, W, C). */
nb_status nb_augment_check(const nb_augment *a, int in_rank, const int64_t *in_shape);

typedef struct nb_train_opts {
    int epochs;
    int64_t batch;
    nb_loss_kind loss;
    uint64_t seed;         /* shuffling and dropout */
    int shuffle;           /* 1 to shuffle every epoch (default behaviour of the CLI) */
    int start_epoch;       /* resuming: epochs already done */
    int64_t start_step;
    /* Called after every batch (may be NULL) and after every epoch; a
     * non-zero return stops training (nb_train returns NB_OK). */
    int (*on_batch)(const nb_epoch_stats *s, void *user);
    int (*on_epoch)(const nb_epoch_stats *s, nb_optim *o, void *user);
    void *user;
    /* Data-parallel training (comm of size > 1, reproducible 0), as PyTorch
     * DDP: rank r computes the gradient of its contiguous share [b r / P,
     * b (r + 1) / P) of the global batch b in one pass on its model, weighted
     * by share / b; comm->allreduce (or an allgather and a rank-order sum)
     * sums them to the batch's mean-loss gradient and every rank applies the
     * same update. Its bits depend on P and the threads (within float
     * rounding of one process); dropout masks follow (seed, step, rank).
     * Batchnorm models are refused (each rank would use its own statistics).
     * Reproducible training. With reproducible set (one process or a comm)
     * the batch is cut into shards of `shard` examples (0: 16; ignored
     * without reproducible); each shard's gradient is computed by one thread on its own
     * copy of the model, and the batch's gradient is their sum, weighted by
     * shard size / batch size, over a fixed binary tree of shards. Shards
     * are spread over ranks (contiguous runs) and threads, so the weights
     * and losses are bit-identical for any number of ranks and threads
     * (they depend on the seed, batch and shard size). Dropout masks then
     * follow (seed, step, shard). With comm (either way), ranks compare a
     * hash of their weights after every epoch and stop with NB_ERR_NUMERIC if they
     * differ; on_batch and on_epoch run on every rank. */
    const nb_comm *comm;   /* NULL: one process */
    int reproducible;
    int64_t shard;
    nb_early_stopping *early; /* NULL: train every epoch */
    /* 1: per-layer diagnostics on each epoch's last batch, passed to
     * on_epoch in nb_epoch_stats.diag (not with reproducible, nor a comm of size > 1). */
    int diagnose;
    /* Sharpness: every sharpness_every steps (0: never; also before the
     * first step when the start step is a multiple), nb_hessian_eigs of the
     * mean loss w.r.t. all parameters (sharpness_eigs; zeros: its defaults)
     * on a fixed batch, the first sharpness_batch training examples in the
     * data set's order (0: the training batch size; at most all), in
     * inference mode (dropout off), then on_sharpness (required; a non-zero
     * return stops training, nb_train returns NB_OK). The training steps
     * are unchanged by it. */
    int64_t sharpness_every, sharpness_batch;
    nb_eigs_opts sharpness_eigs;
    int (*on_sharpness)(const nb_sharpness *s, void *user);
    nb_augment augment; /* zeros: the examples as they are */
} nb_train_opts;
/* Minibatch training. A NaN or infinite loss stops it with NB_ERR_NUMERIC
 * and a message naming the step and suggesting a smaller learning rate. */
nb_status nb_train(nb_model *m, nb_optim *o, const nb_dataset *train, const nb_dataset *val,
                   const nb_train_opts *opts);
/* Mean loss and accuracy (accuracy for class labels; NaN otherwise). When
 * confusion is not NULL it receives a C x C matrix (true row, predicted col). */
nb_status nb_evaluate(nb_model *m, const nb_dataset *d, nb_loss_kind loss, int64_t batch, double *loss_out,
                      double *accuracy, int64_t *confusion);

/* The Hessian of a model's mean loss over a data set (dropout and BatchNorm
 * as the caller set the graph's mode: nb_graph_set_training; the CLI uses
 * inference mode), w.r.t. its trainable parameters, as a product. The n
 * examples are cut into ceil(n / shard) shards; each shard's exact HVPs
 * (nb_hvp) are weighted by its share of the examples and summed over a
 * fixed binary tree of shards. With comm, every rank passes the same model
 * and data set: rank r computes its contiguous run of shards and every rank
 * gets the whole sum, bit-identical for any number of processes (at the
 * same threads per process), so the eigen-solver and the trace estimator
 * iterate alike on every rank (each rank gets the same result; print it on
 * one). All ranks call these functions together, as collectives. A rank
 * keeps ceil(shards / P) x K x n values before the sum: over 1 GiB is
 * refused (NB_ERR_TOO_LARGE). Vectors are the parameters' elements
 * concatenated in parameter order (nb_model_param), trainable ones only. */
typedef struct nb_data_hessian_opts {
    nb_loss_kind loss;   /* the loss averaged over the examples */
    int64_t shard;       /* examples per HVP pass; 0: 250 */
    const nb_comm *comm; /* NULL: one process */
} nb_data_hessian_opts;
/* n: the elements of m's trainable parameters (the Hessian is n x n). */
int64_t nb_model_hessian_dim(const nb_model *m);
/* y (K x n) = H x (K x n): an nb_linop over the data set. */
nb_status nb_model_data_hvp(nb_model *m, const nb_dataset *d, const nb_data_hessian_opts *o, int64_t K,
                            const nb_real *x, nb_real *y);
/* nb_linop_eigs and nb_linop_trace on that product; with comm, the ranks
 * first compare a hash of their data, weights and shard size (NB_ERR_ARG
 * naming the first rank that differs). */
nb_status nb_model_hessian_eigs(nb_model *m, const nb_dataset *d, const nb_data_hessian_opts *o,
                                const nb_eigs_opts *eo, nb_eigs_result *res);
nb_status nb_model_hessian_trace(nb_model *m, const nb_dataset *d, const nb_data_hessian_opts *o, int samples,
                                 uint64_t seed, nb_trace_result *res);

/* -------------------------------------------------------------------- viz */
/* Pictures of Jacobians, gradients and kernels: 8-bit images written as PNG
 * (libpng), colour maps, heatmaps, a small built-in 5x7 bitmap font for
 * labels, and line plots written as SVG. */

/* An 8-bit image, row-major, channels 1 (gray) or 3 (RGB) per pixel. */
typedef struct nb_image {
    int width, height, channels;
    unsigned char *pixels; /* width * height * channels bytes */
} nb_image;
/* A new image filled with the colour rgb (gray: rgb[0]); NULL on failure. */
nb_image *nb_image_new(int width, int height, int channels, const unsigned char rgb[3]);
void nb_image_free(nb_image *im);
/* Writes pixels (height rows of width * channels bytes; channels 1 or 3) as
 * an 8-bit PNG. */
nb_status nb_png_write(const char *path, int width, int height, int channels, const unsigned char *pixels);
nb_status nb_image_write_png(const char *path, const nb_image *im);
/* Images as model inputs (src/io/image_read.c): a PNG (libpng) or JPEG
 * (libjpeg) file decoded to 8-bit gray or RGB (palette expanded, 16-bit
 * reduced to 8, alpha dropped; CMYK JPEGs refused). Sizes beyond 16384 a
 * side or 2^25 pixels are refused from the header, before decoding, and a
 * truncated or corrupt file is refused (no gray fill-in). */
nb_status nb_image_decode(const void *data, size_t len, nb_image **out);
nb_status nb_image_read(const char *path, nb_image **out);
/* im as a model input of shape (H, W, C), row-major into out: resized with
 * a box filter (each output pixel the mean of the input area it covers,
 * weighted by overlap; PIL's Image.BOX), RGB -> gray as ITU-R BT.601 luma
 * 0.299 R + 0.587 G + 0.114 B (gray -> RGB replicated), 0..255 -> [0, 1]. */
nb_status nb_image_to_tensor(const nb_image *im, int H, int W, int C, nb_real *out);

typedef enum {
    NB_CMAP_DIVERGING = 0, /* blue (t = 0) - white (t = 0.5) - red (t = 1) */
    NB_CMAP_SEQUENTIAL,    /* dark violet - blue - teal - green - yellow */
    NB_CMAP_GRAY           /* black - white */
} nb_colormap;
/* The colour at t in [0, 1] (clamped; NaN gives mid gray). */
void nb_colormap_rgb(nb_colormap map, double t, unsigned char rgb[3]);
/* A rows x cols array (both at least 1) as an RGB image, each value one
 * sx x sy block. Values map to colours over [lo, hi]; when lo >= hi the
 * range is the data's own.
 * The diverging map is centred on zero: v maps to t = 0.5 + 0.5 v / L with
 * L = max(|lo|, |hi|), so 0 is always white and signs keep their colours. */
nb_status nb_heatmap(const nb_real *data, int64_t rows, int64_t cols, nb_colormap map, double lo, double hi,
                     int sx, int sy, nb_image **out);
/* Copies src into dst with its top-left corner at (x, y), clipped (an RGB
 * dst takes a gray src as gray RGB). */
void nb_image_paste(nb_image *dst, const nb_image *src, int x, int y);
void nb_image_fill_rect(nb_image *im, int x, int y, int w, int h, const unsigned char rgb[3]);
/* Tiles in a grid of ncols columns, each cell as large as the largest tile,
 * gap pixels between cells and around them, on a background colour. */
nb_status nb_image_grid(nb_image *const *tiles, int ntiles, int ncols, int gap, const unsigned char bg[3],
                        nb_image **out);
/* Text in the built-in 5x7 font (ASCII 32..126; others drawn as '?'; g j p q
 * y descend 2 rows), each font pixel a scale x scale block, (x, y) the
 * top-left corner; '\n' starts a new line (10 rows). nb_text_width and
 * nb_text_height: the size in pixels of what nb_image_text would draw
 * (INT_MAX when it does not fit an int). Drawing functions clip to the
 * image: any int position and size is safe, nothing outside is touched. */
void nb_image_text(nb_image *im, int x, int y, const char *text, int scale, const unsigned char rgb[3]);
int nb_text_width(const char *text, int scale);
int nb_text_height(const char *text, int scale);
/* A horizontal colour bar from lo to hi (w x h pixels) with its end values
 * and, for the diverging map, 0 labelled below: at most w x (h + 10 scale).
 * x, y (either sign), w, h and scale at most 2^24. */
nb_status nb_colorbar(nb_image *im, int x, int y, int w, int h, nb_colormap map, double lo, double hi, int scale);

/* Line plots as SVG: axes with ticks and numbers, several series with a
 * legend, a title and axis labels. */
typedef struct nb_plot_series {
    const char *label;      /* legend text (NULL: not in the legend) */
    const double *x, *y;    /* n points; x NULL means 0, 1, ..., n-1 */
    int n;
    const char *color;      /* an SVG colour; NULL picks from a palette */
    int markers;            /* 1: a dot at every point */
    int dashed;
} nb_plot_series;
typedef struct nb_plot {
    const char *title, *xlabel, *ylabel;
    const nb_plot_series *series;
    int nseries;
    double xmin, xmax, ymin, ymax; /* axis range; lo >= hi: from the data */
    int width, height;             /* of one plot in pixels; 0: 560 x 400 */
} nb_plot;
/* Writes nplots plots side by side into one SVG file (atomically). */
nb_status nb_svg_plot(const char *path, const nb_plot *plots, int nplots);

/* ------------------------------------------------------------------ random */

/* A small, explicit random generator (xoshiro256**): no hidden global state. */
typedef struct nb_rng { uint64_t s[4]; } nb_rng;
void nb_rng_seed(nb_rng *r, uint64_t seed);
uint64_t nb_rng_next(nb_rng *r);
double nb_rng_uniform(nb_rng *r);   /* [0, 1) */
double nb_rng_normal(nb_rng *r);    /* N(0, 1) */
void nb_tensor_fill_uniform(nb_tensor *t, nb_rng *r, double lo, double hi);
void nb_tensor_fill_normal(nb_tensor *t, nb_rng *r, double mean, double std);

#ifdef __cplusplus
}
#endif
#endif /* NABLA_H */
