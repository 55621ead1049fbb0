/* Second order: Hessian-vector products by forward-over-reverse, batched.
 *
 * For a scalar L (in general a seed u on out: L = u . out) and K directions
 * v_k on the leaves wrt, H v_k = d/de [grad L(x + e v_k)] at e = 0 is the
 * tangent of the reverse pass along v_k. So one pass computes, over the
 * nodes on a path wrt -> out:
 *   forward, first to last: the tangents xdot of every node (the ops' JVPs,
 *     K stacked), seeded with v at wrt;
 *   reverse, last to first: the adjoints ybar (one seed, u at out) and their
 *     tangents d(ybar) (K, zero at out), stacked as 1 + K seeds of one VJP. For y = f(x_1..x_n) with
 *     xbar_i = VJP_i(ybar; x), the product rule gives
 *       d(xbar_i) = VJP_i(d(ybar); x) + sum_j d/dx_j [VJP_i(ybar; x)] . xdot_j:
 *     the op's VJP on K stacked seeds plus its second-order rule
 *     (nb_op.vjp_tangent, in the op's own file).
 * At wrt, d(xbar) is H v. The cost is a forward-mode pass and two reverse
 * passes (one of K seeds) plus the rules: a few gradients, whatever the
 * number of parameters, and never a finite difference. */
#include "autodiff_internal.h"

#include <stdio.h>
#include <stdlib.h>

/* Buffers of every node on the path: xdot (K x |n|) in the pass's tangent,
 * and in its adjoint ybar and d(ybar) stacked, (1 + K) x |n|: row 0 the
 * adjoint, rows 1..K its tangents, so that one VJP of 1 + K seeds carries
 * both (a convolution lowers its input once for all of them). None set yet
 * yet. */
static nb_status second_reserve(nb_graph *g, nb_pass *p, int64_t K)
{
    for (int i = 0; i < g->n; i++) {
        nb_node *n = g->nodes[i];
        p->adj[i].set = p->tan[i].set = false;
        if (!p->on_path[i]) continue;
        if (n->value.size > 0 && K > INT64_MAX / 4 / n->value.size - 1)
            return nb_fail(NB_ERR_TOO_LARGE, "hvp: %lld vectors overflow", (long long)K);
        nb_status s = nb_reserve(&p->adj[i].data, &p->adj[i].cap, (1 + K) * n->value.size);
        if (!s) s = nb_reserve(&p->tan[i].data, &p->tan[i].cap, K * n->value.size);
        if (s) return s;
    }
    return NB_OK;
}

/* The tangents xdot of the inputs of n that carry one (NULL elsewhere). */
static void input_tangents(const nb_pass *p, const nb_node *n, nb_real **xdots)
{
    for (int j = 0; j < n->ninputs; j++) {
        const nb_node *x = n->in[j];
        const bool live = p->on_path[x->id] && p->tan[x->id].set && !(n->op->nondiff_mask & (1u << j));
        xdots[j] = live ? p->tan[x->id].data : NULL;
    }
}

/* Forward: xdot = v at wrt (summed for a node listed twice), then the JVPs. */
static nb_status tangent_sweep(nb_pass *p, nb_node *out, int64_t K, int nwrt, nb_node *const *wrt,
                               const nb_real *const *vectors)
{
    nb_graph *g = out->graph;
    for (int w = 0; w < nwrt; w++) {
        nb_tangent *t = &p->tan[wrt[w]->id];
        const int64_t count = K * wrt[w]->value.size;
        if (!p->on_path[wrt[w]->id] || !vectors[w]) continue; /* NULL: a node read, not moved */
        if (t->set)
            for (int64_t i = 0; i < count; i++) t->data[i] += vectors[w][i];
        else if (count > 0)
            memcpy(t->data, vectors[w], (size_t)count * sizeof(nb_real));
        t->set = true;
    }
    nb_real *xdots[NB_NODE_MAX_INPUTS];
    for (int i = 0; i <= out->id; i++) {
        nb_node *n = g->nodes[i];
        if (!p->on_path[i] || n->kind != NB_KIND_OP) continue;
        if (!n->op->jvp) return nb_fail(NB_ERR_UNSUPPORTED, "%s: op %s has no JVP", n->name, n->op->name);
        input_tangents(p, n, xdots);
        bool any = false;
        for (int j = 0; j < n->ninputs; j++) any |= xdots[j] != NULL;
        if (!any) continue; /* a zero tangent (a node only read below a read node) */
        nb_status s = n->op->jvp(n, K, xdots, p->tan[i].data);
        if (!s) s = nb_graph_check_value(n, p->tan[i].data, K * n->value.size, "tangent");
        if (s) return s;
        p->tan[i].set = true;
    }
    return NB_OK;
}

/* Reverse through one node n: for each input x on the path,
 *   [xbar; d(xbar)] += VJP([ybar; d(ybar)])   (1 + K seeds in one call;
 *                                              d(xbar) alone for a leaf x),
 *   d(xbar) += rule(ybar, xdots)              (when some input moves). */
static nb_status reverse_node(nb_pass *p, nb_node *n, int64_t K)
{
    const nb_op *op = n->op;
    nb_real *xdots[NB_NODE_MAX_INPUTS];
    input_tangents(p, n, xdots);
    bool any_tangent = false;
    for (int j = 0; j < n->ninputs; j++) any_tangent |= xdots[j] != NULL;
    n->seed_serial++;
    for (int j = 0; j < n->ninputs; j++) {
        nb_node *x = n->in[j];
        nb_adjoint *ax = &p->adj[x->id];
        if (!p->on_path[x->id] || (op->nondiff_mask & (1u << j))) continue;
        if (!op->vjp) return nb_fail(NB_ERR_UNSUPPORTED, "%s: op %s has no VJP", n->name, op->name);
        if (!op->vjp_tangent)
            return nb_fail(NB_ERR_UNSUPPORTED, "%s: op %s has no second-order rule; Hessians cannot pass through it",
                           n->name, op->name);
        /* A leaf's adjoint (the gradient) is read by no rule and returned by
         * no caller: only its K tangents are computed (the conv2 kernel's
         * VJP of the lecture CNN is one GEMM instead of two). */
        const bool leaf = x->kind != NB_KIND_OP;
        const int64_t skip_y = leaf ? n->value.size : 0, skip_x = leaf ? x->value.size : 0;
        nb_status s = op->vjp(n, j, leaf ? K : 1 + K, p->adj[n->id].data + skip_y, ax->data + skip_x, ax->set);
        ax->set = true;
        if (!s && any_tangent)
            s = op->vjp_tangent(n, j, K, p->adj[n->id].data, xdots, ax->data + x->value.size, true);
        if (s) return s;
    }
    return NB_OK;
}

/* Reverse: ybar = u and d(ybar) = 0 at out, then node by node; nodes the
 * seeds reach through no path get zeros. */
static nb_status adjoint_sweep(nb_pass *p, nb_node *out, const nb_real *seed, int64_t K)
{
    nb_graph *g = out->graph;
    const int64_t m = out->value.size;
    memcpy(p->adj[out->id].data, seed, (size_t)m * sizeof(nb_real));
    memset(p->adj[out->id].data + m, 0, (size_t)(K * m) * sizeof(nb_real));
    p->adj[out->id].set = true;
    nb_status s = NB_OK;
    for (int i = out->id; i >= 0 && !s; i--) {
        nb_node *n = g->nodes[i];
        if (!p->on_path[i] || n->kind != NB_KIND_OP || !p->adj[i].set) continue;
        s = nb_graph_check_value(n, p->adj[i].data, (1 + K) * n->value.size, "gradient or Hessian product");
        if (!s) s = reverse_node(p, n, K);
    }
    for (int i = 0; i < g->n && !s; i++) {
        const int64_t size = g->nodes[i]->value.size;
        if (!p->on_path[i] || p->adj[i].set) continue;
        memset(p->adj[i].data, 0, (size_t)((1 + K) * size) * sizeof(nb_real));
        p->adj[i].set = true;
    }
    return s;
}

const nb_real *nb_hvp_result(const nb_node *wrt)
{
    const nb_real *a = nb_pass_adjoint(wrt, NB_PASS_SECOND);
    return a ? a + wrt->value.size : NULL;
}

nb_status nb_hvp_raw(nb_node *out, const nb_real *seed, int64_t K, int nwrt, nb_node *const *wrt,
                     const nb_real *const *vectors)
{
    nb_graph *g = out->graph;
    nb_status s = nb_check_forward_done("hvp", out);
    if (s) return s;
    for (int i = 0; i < nwrt; i++)
        if (wrt[i]->kind == NB_KIND_OP)
            return nb_fail(NB_ERR_ARG,
                           "hvp: '%s' is the output of op %s; Hessians are taken w.r.t. leaves (inputs and "
                           "parameters)",
                           wrt[i]->name, wrt[i]->op->name);
    nb_pass *p;
    if ((s = nb_pass_get(g, NB_PASS_SECOND, &p))) return s;
    nb_threads_apply();
    nb_pass_mark(p, out, nwrt, wrt);
    p->on_path[out->id] = true;
    if ((s = second_reserve(g, p, K))) return s;
    if ((s = tangent_sweep(p, out, K, nwrt, wrt, vectors))) return s;
    return adjoint_sweep(p, out, seed, K);
}

/* --------------------------------------------------------------- nb_hvp */

static nb_status check_vectors(const nb_tensor *t, const nb_node *n, int64_t *K)
{
    char b1[96], b2[96];
    bool ok = t && t->rank == n->value.rank + 1;
    for (int d = 0; ok && d < n->value.rank; d++) ok = t->shape[d + 1] == n->value.shape[d];
    if (!ok)
        return nb_fail(NB_ERR_SHAPE, "hvp: expected vectors of shape (K,) + %s for '%s', got %s",
                       NB_SHAPE_STR(&n->value, b1), n->name, t ? NB_SHAPE_STR(t, b2) : "NULL");
    if (*K >= 0 && t->shape[0] != *K)
        return nb_fail(NB_ERR_SHAPE, "hvp: every wrt node needs the same number of vectors K (%lld vs %lld)",
                       (long long)*K, (long long)t->shape[0]);
    *K = t->shape[0];
    return NB_OK;
}

/* The checks nb_hvp and its relatives share: every wrt node a leaf of out's
 * graph, and (scalar) out a scalar. */
nb_status nb_second_check_args(const char *who, nb_node *out, int nwrt, nb_node *const *wrt, bool scalar)
{
    if (!out) return nb_fail(NB_ERR_ARG, "%s: out node is NULL", who);
    if (nwrt < 1 || !wrt) return nb_fail(NB_ERR_ARG, "%s: give at least 1 wrt node", who);
    for (int i = 0; i < nwrt; i++) {
        if (!wrt[i] || wrt[i]->graph != out->graph)
            return nb_fail(NB_ERR_ARG, "%s: wrt node %d is NULL or from another graph", who, i);
        if (wrt[i]->kind == NB_KIND_OP)
            return nb_fail(NB_ERR_ARG, "%s: '%s' is the output of op %s; take the Hessian w.r.t. leaves (inputs "
                           "and parameters)", who, wrt[i]->name, wrt[i]->op->name);
    }
    if (scalar && out->value.size != 1) {
        char b[96];
        return nb_fail(NB_ERR_SHAPE, "%s: out '%s' must be a scalar (a loss), has shape %s; nb_hessian takes "
                       "non-scalar outputs", who, out->name, NB_SHAPE_STR(&out->value, b));
    }
    return NB_OK;
}

nb_status nb_hvp(nb_node *out, int nwrt, nb_node *const *wrt, const nb_tensor *const *vectors, nb_tensor **results)
{
    nb_status s = nb_second_check_args("hvp", out, nwrt, wrt, true);
    if (s) return s;
    if (!vectors || !results) return nb_fail(NB_ERR_ARG, "hvp: vectors or results is NULL");
    for (int i = 0; i < nwrt; i++) results[i] = NULL;
    int64_t K = -1;
    for (int i = 0; i < nwrt; i++)
        if ((s = check_vectors(vectors[i], wrt[i], &K))) return s;
    const nb_real **vdata = malloc(sizeof *vdata * (size_t)nwrt); /* any number: a ResNet has hundreds */
    if (!vdata) return nb_fail(NB_ERR_NOMEM, "hvp: out of memory for %d wrt nodes", nwrt);
    for (int i = 0; i < nwrt; i++) vdata[i] = vectors[i]->data;
    const nb_real one = 1;
    if (!(s = nb_forward_again(out->graph))) s = nb_hvp_raw(out, &one, K, nwrt, wrt, vdata);
    free(vdata);
    return s ? s : nb_stacked_results(K, nwrt, wrt, nb_hvp_result, results);
}
