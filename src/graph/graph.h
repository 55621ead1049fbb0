/* The graph layer: nodes, the graph, the op descriptor every op fills in,
 * and the storage of the autodiff passes (indexed by node id; autodiff/
 * computes it, the graph only holds and frees it). graph/graph.c builds
 * nodes, infers shapes and runs the forward pass. Not installed. */
#ifndef NB_GRAPH_H
#define NB_GRAPH_H

#include "../core/core.h"

#include <stddef.h>

/* ------------------------------------------------------------------ ops */

typedef struct nb_op nb_op;

/* Attributes of an op: each op declares its own struct (conv2d_attrs,
 * pool_attrs, ...) and its size in its descriptor (attrs_size); a node keeps
 * a copy inline (nb_node.attrs, NB_ATTRS_BYTES), read through the op's typed
 * accessor over nb_node_attrs. Ops without attributes declare size 0. */
#define NB_ATTRS_BYTES 80
/* In the op's file, beside its attribute struct: a compile-time check that
 * it fits a node. */
#define NB_ATTRS_FIT(type) _Static_assert(sizeof(type) <= NB_ATTRS_BYTES, #type " does not fit NB_ATTRS_BYTES")

/* One gradient-check case of an op, beside the op: builds a small graph on
 * random inputs away from kinks (relu at 0, max-pool ties) and returns the
 * output whose Jacobians nb_opcheck_all checks against central differences,
 * w.r.t. every leaf whose name does not start with '~' (labels and other
 * constants). The graph must contain the op (tests/f64/test_op_registry.c). */
typedef struct nb_op_case {
    const char *name;
    nb_node *(*build)(nb_graph *g, nb_rng *r);
} nb_op_case;

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
    /* nb_backward_leaves: adjoint buffers not held by any op node, lent to
     * one while its adjoint lives (pool_cap >= the graph's node count). */
    nb_adjoint *pool;
    int npool, pool_cap;
} nb_pass;

/* The most inputs an op takes (batchnorm: x, gamma, beta and the two
 * moving statistics). Arrays indexed by input are this long. */
enum { NB_NODE_MAX_INPUTS = 5 };

struct nb_node {
    nb_graph *graph;
    int id;
    int kind;
    const nb_op *op;
    char name[64];
    int ninputs;
    nb_node *in[NB_NODE_MAX_INPUTS];
    union {
        max_align_t align_;
        unsigned char bytes[NB_ATTRS_BYTES];
    } attrs;               /* the op's attribute struct (nb_op.attrs_size bytes) */
    nb_tensor value;       /* shape + data; data capacity in value_cap */
    int64_t value_cap;
    nb_tensor grad;        /* the last nb_backward's gradient: a view of its pass's adjoint */
    void *ws;              /* op scratch (and for most ops what forward saves for vjp/jvp) */
    size_t ws_cap;
    void *saved;           /* what forward saves for vjp/jvp when ws is the op's scratch (an argmax) */
    size_t saved_cap;
    nb_node *fused_into;   /* computed inside this node (a graph pass fused it): no value of its own */
    uint32_t seed_serial;  /* bumped by a reverse pass before it runs the VJPs of this node's inputs, one
                            * after the other with one seed: an op may keep what those calls share
                            * (batchnorm's per-channel sums of the seed) for as long as it is unchanged */
    bool requires_grad;    /* leaves: whether nb_backward fills the gradient */
};

struct nb_graph {
    nb_node **nodes;
    int n, cap;
    bool training;         /* dropout draws masks (NB_TRAINING) */
    bool batch_stats;      /* batchnorm uses the batch's statistics (NB_TRAINING, NB_TRAINING_NO_DROPOUT) */
    bool check_numerics;
    uint64_t seed;
    uint64_t key;          /* random key of the last forward pass: dropout masks are drawn from (seed, key) */
    bool keyed;            /* a forward pass has taken a key (else key is 0 and no pass has one yet) */
    bool shapes_dirty;
    int forward_done;      /* id of the last node the last forward pass computed; -1 if it failed or
                            * shapes were re-inferred since (nb_graph_prepare) */
    bool grads_valid;      /* the last nb_backward completed (nb_grad and the optimiser read it) */
    nb_pass passes[NB_PASS_COUNT];
};

/* The op descriptor: one per op, in the op's own file, named nb_op_<id>
 * and listed once in ops/op_list.h (the registry, ops/registry.c). Written
 * with designated initializers, so that a new field is one line per op. The
 * Jacobian of each op is written as math in a comment beside its functions.
 *  attrs_size: bytes of the op's attribute struct (<= NB_ATTRS_BYTES);
 *  infer:   sets n->value.rank/shape from inputs and attributes (or fails);
 *  forward: computes n->value.data from the inputs' values;
 *  vjp:     for input i, dx (+)= dy . d y / d x_i for K stacked seeds
 *           (dy: K x |y|, dx: K x |x_i|); accumulate says += instead of =;
 *  jvp:     dy = sum_i d y / d x_i . dx_i for K stacked tangents; dxs[i] is
 *           NULL where that input's tangent is zero;
 *  nondiff_mask: inputs that carry no derivative (labels), bit i = input i;
 *  cases, ncases: its gradient-check cases (at least one). */
struct nb_op {
    const char *name;
    int ninputs;
    size_t attrs_size;
    nb_status (*infer)(nb_node *n);
    nb_status (*forward)(nb_node *n);
    nb_status (*vjp)(nb_node *n, int i, int64_t K, const nb_real *dy, nb_real *dx, bool accumulate);
    nb_status (*jvp)(nb_node *n, int64_t K, nb_real *const *dxs, nb_real *dy);
    unsigned nondiff_mask;
    const nb_op_case *cases;
    int ncases;
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

/* The node's attribute struct, to be cast by the op's typed accessor. */
static inline void *nb_node_attrs(nb_node *n) { return n->attrs.bytes; }
static inline const void *nb_node_attrs_c(const nb_node *n) { return n->attrs.bytes; }

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

/* Creates an op node (checks inputs for NULL, copies op->attrs_size bytes
 * of attrs, NULL meaning zeros, and runs infer). */
nb_node *nb_node_op_new(const nb_op *op, int ninputs, nb_node *const *inputs, const void *attrs);
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
/* Node workspace of at least bytes (kept between forward and backward;
 * its contents are lost when it grows). */
void *nb_node_workspace(nb_node *n, size_t bytes);
/* A second buffer of at least bytes, for an op whose VJP also needs ws as
 * scratch: what its forward saves (contents lost when it grows). */
void *nb_node_saved(nb_node *n, size_t bytes);
/* Marks n as computed inside `into` (a fusion pass: into computes what n's
 * consumer would from n's value): n keeps its shape, for what reads layer
 * shapes, but is no longer computed and holds no value buffer. Popping
 * `into` makes n an ordinary node again. */
void nb_node_fuse_into(nb_node *n, nb_node *into);
/* With check_numerics on: NB_ERR_NUMERIC naming the node if x has a NaN/Inf. */
nb_status nb_graph_check_value(const nb_node *n, const nb_real *x, int64_t count, const char *what);

/* Shape inference shared by elementwise ops: output shape = input 0's. */
nb_status nb_infer_same_shape(nb_node *n);

#endif
