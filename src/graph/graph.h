/* The graph layer: nodes, the graph, the op descriptor every op fills in,
 * and the storage of the autodiff passes (indexed by node id; autodiff/
 * computes it, the graph only holds and frees it). graph/graph.c builds
 * nodes, infers shapes and runs the forward pass. Not installed. */
#ifndef NB_GRAPH_H
#define NB_GRAPH_H

#include "../core/core.h"

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
enum { NB_PASS_GRAD, NB_PASS_SCRATCH, NB_PASS_SECOND, NB_PASS_COUNT };
/* The second-order pass (autodiff/hvp.c): its tangents are the forward
 * tangents xdot (K), its adjoints the reverse pass's ybar (one seed) with
 * their tangents d(ybar) (K) stacked after it, (1 + K) x |node|. */

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
    /* Second order (autodiff/hvp.c): the tangent of the VJP for input i
     * along tangents of the inputs, for one seed ybar (|y|, the adjoint of
     * the reverse pass) and K tangents xdots[j] (K x |x_j|, NULL where
     * zero):  out[k] (+)= sum_j d/dx_j [VJP_i(ybar; x)] . xdots[j][k]
     * (K x |x_i|). With the op's VJP on the adjoint's own tangent, it is the
     * tangent of x_i's adjoint (forward-over-reverse). Zero for an op linear
     * in its inputs (nb_vjp_tangent_zero); NULL: the op has no second-order
     * rule (nb_hvp refuses it). */
    nb_status (*vjp_tangent)(nb_node *n, int i, int64_t K, const nb_real *ybar, nb_real *const *xdots,
                             nb_real *out, bool accumulate);
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
/* Frees a pass's buffers and arrays (at nb_graph_free). */
void nb_pass_free(nb_pass *p);

/* Creates an op node (checks inputs for NULL, runs infer). */
nb_node *nb_node_op_new(const nb_op *op, int ninputs, nb_node *const *inputs, const nb_attrs *at);
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
 * "the last forward" (nb_jacobian, nb_vjp, nb_jvp) sees its dropout masks.
 * Key 0 is a key like any other (nb_forward_key(g, 0)). */
nb_status nb_forward_again(nb_graph *g);
/* Re-infers all shapes and grows value buffers. */
nb_status nb_graph_prepare(nb_graph *g);
/* Node workspace of at least bytes (kept between forward and backward). */
void *nb_node_workspace(nb_node *n, size_t bytes);
/* With check_numerics on: NB_ERR_NUMERIC naming the node if x has a NaN/Inf. */
nb_status nb_graph_check_value(const nb_node *n, const nb_real *x, int64_t count, const char *what);

/* Shape inference shared by elementwise ops: output shape = input 0's. */
nb_status nb_infer_same_shape(nb_node *n);

#endif
