/* Reverse mode (vector-Jacobian products) and forward mode (Jacobian-vector
 * products) over one graph, both batched: K seeds or tangents ride through a
 * single pass, stacked along a leading axis of every adjoint/tangent buffer.
 *
 * Reverse: adj(out) = seeds; for nodes from last to first, every input x_i
 * of a node y gets adj(x_i) += adj(y) . dy/dx_i (the chain rule, right to
 * left). Forward: tan(wrt) = tangents; for nodes first to last,
 * tan(y) = sum_i dy/dx_i . tan(x_i). Only nodes on a path wrt -> out work. */
#include "autodiff_internal.h"

#include <stdlib.h>

/* ------------------------------------------------------------ pass state */


/* arr grown to cap entries of elem bytes, the new ones zero (NULL if out
 * of memory; arr is then unchanged). */
static void *grown(void *arr, size_t elem, int old, int cap)
{
    char *q = realloc(arr, (size_t)cap * elem);
    if (q) memset(q + (size_t)old * elem, 0, (size_t)(cap - old) * elem);
    return q;
}

#define GROW_ARRAY(a)                                                                                                \
    do {                                                                                                           \
        void *q_ = grown((a), sizeof *(a), old, cap);                                                              \
        if (!q_) return nb_fail(NB_ERR_NOMEM, "autodiff: out of memory for the pass state of %d nodes", g->n);     \
        (a) = q_;                                                                                                  \
    } while (0)

/* The pass of that kind, covering every node of g. Arrays grow one by one;
 * cap is raised only when all have grown. */
static nb_status pass_get(nb_graph *g, int kind, nb_pass **out)
{
    nb_pass *p = &g->passes[kind];
    if (p->cap < g->n) {
        const int cap = g->n > 2 * p->cap ? g->n : 2 * p->cap, old = p->cap;
        GROW_ARRAY(p->adj);
        GROW_ARRAY(p->tan);
        GROW_ARRAY(p->on_path);
        GROW_ARRAY(p->source);
        GROW_ARRAY(p->from);
        GROW_ARRAY(p->to);
        p->cap = cap;
    }
    *out = p;
    return NB_OK;
}

/* on_path[i] = node i lies on a path from one of the sources to out
 * (through differentiable inputs only); with stop_at_sources, paths do not
 * run through a source (forward mode: a source's tangent is given). */
static void mark_paths(nb_pass *p, nb_node *out, bool (*is_source)(const nb_node *, void *), void *user,
                       bool stop_at_sources)
{
    nb_graph *g = out->graph;
    for (int i = 0; i < g->n; i++) p->source[i] = i <= out->id && is_source(g->nodes[i], user);
    memset(p->from, 0, (size_t)g->n * sizeof(bool));
    memset(p->to, 0, (size_t)g->n * sizeof(bool));
    for (int i = 0; i <= out->id; i++) {
        nb_node *n = g->nodes[i];
        if (p->source[i]) {
            p->from[i] = true;
            if (stop_at_sources) continue;
        }
        for (int j = 0; j < n->ninputs && !p->from[i]; j++)
            if (!(n->op->nondiff_mask & (1u << j)) && p->from[n->in[j]->id]) p->from[i] = true;
    }
    p->to[out->id] = true;
    for (int i = out->id; i >= 0; i--) {
        nb_node *n = g->nodes[i];
        if (!p->to[i]) continue;
        for (int j = 0; j < n->ninputs; j++)
            if (!(n->op->nondiff_mask & (1u << j))) p->to[n->in[j]->id] = true;
    }
    for (int i = 0; i < g->n; i++) p->on_path[i] = p->from[i] && p->to[i];
}

/* ----------------------------------------------------------- reverse mode */

/* The gradients of the last nb_backward stop being readable (a new backward
 * pass is about to overwrite them). */
static void invalidate_grads(nb_graph *g)
{
    g->grads_valid = false;
    for (int i = 0; i < g->n; i++) g->nodes[i]->grad.data = NULL;
}

nb_tensor *nb_grad(nb_node *n) { return n && n->grad.data ? &n->grad : NULL; }

/* The forward pass the reverse pass differentiates must have run to
 * completion over out (not failed halfway, not older than new shapes or
 * nodes): the ops' VJPs read what it saved (masks, labels, argmaxes). */
static nb_status check_forward_done(const char *who, const nb_node *out)
{
    const nb_graph *g = out->graph;
    if (out->fused_into)
        return nb_fail(NB_ERR_ARG, "%s: '%s' is computed inside '%s' (fused) and has no value of its own; use '%s'",
                       who, out->name, out->fused_into->name, out->fused_into->name);
    if (g->shapes_dirty)
        return nb_fail(NB_ERR_ARG, "%s: run nb_forward first (shapes or nodes changed since the last one)", who);
    if (g->forward_done < out->id)
        return nb_fail(NB_ERR_ARG,
                       "%s: the last nb_forward did not complete up to '%s'%s; fix that and run nb_forward again",
                       who, out->name, g->forward_done < 0 ? " (it failed)" : "");
    return NB_OK;
}

/* Lent adjoints (nb_backward_leaves). An op node's adjoint lives from the
 * first VJP that writes it (its consumer of the highest id) until its own
 * VJPs have run; only then may another node's adjoint reuse its buffer. So
 * an op node takes a buffer from the pass's pool at its first write and
 * gives it back after its own VJPs, and the sweep holds the live adjoints
 * only (a few at a time in a chain or a residual block) instead of one per
 * node. The loss keeps its own (it holds the seed). Best fit: the smallest
 * pooled buffer that holds count, else the largest, grown; the same graph
 * and batch make the same choices every step, so once the buffers have
 * grown to fit, a step allocates nothing. */
static nb_status adjoint_take(nb_pass *p, nb_adjoint *a, int64_t count)
{
    int best = -1;
    for (int i = 0; a->data == NULL && i < p->npool; i++) {
        const int64_t c = p->pool[i].cap, cb = best >= 0 ? p->pool[best].cap : -1;
        const bool fits = c >= count, best_fits = cb >= count;
        if (best < 0 || (fits && (!best_fits || c < cb)) || (!fits && !best_fits && c > cb)) best = i;
    }
    if (best >= 0) {
        a->data = p->pool[best].data, a->cap = p->pool[best].cap;
        p->pool[best] = p->pool[--p->npool];
    }
    if (nb_reserve(&a->data, &a->cap, count))
        return nb_fail(NB_ERR_NOMEM, "reverse pass: out of memory for an adjoint of %lld values", (long long)count);
    return NB_OK;
}

/* a's buffer back to the pool (which has room for every node's). */
static void adjoint_give(nb_pass *p, nb_adjoint *a)
{
    if (!a->data) return;
    p->pool[p->npool++] = (nb_adjoint){a->data, a->cap, false};
    a->data = NULL, a->cap = 0, a->set = false;
}

/* Before a sweep with lent adjoints: a pool with room for every node, and
 * op nodes (but out) holding no buffer (one kept from an nb_backward is
 * freed, so switching to lent adjoints gives that memory back). */
static nb_status lend_prepare(nb_pass *p, nb_node *out)
{
    nb_graph *g = out->graph;
    if (p->pool_cap < g->n) {
        nb_adjoint *q = realloc(p->pool, (size_t)g->n * sizeof *q);
        if (!q) return nb_fail(NB_ERR_NOMEM, "reverse pass: out of memory for the adjoint pool of %d nodes", g->n);
        p->pool = q, p->pool_cap = g->n;
    }
    for (int i = 0; i < g->n; i++) {
        nb_adjoint *a = &p->adj[i];
        if (g->nodes[i]->kind != NB_KIND_OP || i == out->id || !a->data) continue;
        nb_free(a->data);
        a->data = NULL, a->cap = 0;
    }
    return NB_OK;
}

static bool lent(bool lend, const nb_node *n, const nb_node *out)
{
    return lend && n->kind == NB_KIND_OP && n != out;
}

/* Buffers for the sweep of pass p over out for K seeds: every node on a
 * path gets its own, except lent adjoints (taken at their first write). */
static nb_status sweep_buffers(nb_pass *p, nb_node *out, int64_t K, bool lend)
{
    nb_graph *g = out->graph;
    nb_status s = lend ? lend_prepare(p, out) : NB_OK;
    for (int i = 0; !s && i < g->n; i++) {
        nb_node *n = g->nodes[i];
        nb_adjoint *a = &p->adj[i];
        a->set = false;
        if (!p->on_path[i]) continue;
        if (n->value.size > 0 && K > INT64_MAX / n->value.size)
            return nb_fail(NB_ERR_TOO_LARGE, "reverse pass: %lld seeds overflow", (long long)K);
        if (!lent(lend, n, out)) s = nb_reserve(&a->data, &a->cap, K * n->value.size);
    }
    return s;
}

/* Runs the reverse sweep of pass p (paths marked) for K seeds already
 * written to out's adjoint; lend: op nodes' adjoints are lent (above) and
 * none of them is left readable afterwards. */
static nb_status reverse_sweep(nb_pass *p, nb_node *out, int64_t K, bool lend)
{
    nb_graph *g = out->graph;
    nb_threads_apply();
    nb_status s = sweep_buffers(p, out, K, lend);
    if (s) return s;
    p->adj[out->id].set = true;
    for (int i = out->id; i >= 0; i--) {
        nb_node *n = g->nodes[i];
        nb_adjoint *an = &p->adj[i];
        if (!p->on_path[i] || n->kind != NB_KIND_OP || !an->set) continue;
        s = nb_graph_check_value(n, an->data, K * n->value.size, "gradient");
        if (s) return s;
        n->seed_serial++;
        for (int j = 0; j < n->ninputs; j++) {
            nb_node *x = n->in[j];
            nb_adjoint *ax = &p->adj[x->id];
            if (!p->on_path[x->id] || (n->op->nondiff_mask & (1u << j))) continue;
            if (!n->op->vjp)
                return nb_fail(NB_ERR_UNSUPPORTED, "%s: op %s has no VJP", n->name, n->op->name);
            if (!ax->set && lent(lend, x, out) && (s = adjoint_take(p, ax, K * x->value.size))) return s;
            s = n->op->vjp(n, j, K, an->data, ax->data, ax->set);
            if (s) return s;
            ax->set = true;
        }
        if (lent(lend, n, out)) adjoint_give(p, an);
    }
    /* Nodes on no path the seeds reach have a zero adjoint, not garbage.
     * Leaves are checked here: the loop above only checks op nodes, and a
     * leaf's adjoint (a parameter's gradient) is the one a user reads. */
    for (int i = 0; i < g->n; i++) {
        nb_node *n = g->nodes[i];
        nb_adjoint *a = &p->adj[i];
        if (lent(lend, n, out)) continue;
        if (p->on_path[i] && !a->set) {
            memset(a->data, 0, (size_t)(K * n->value.size) * sizeof(nb_real));
            a->set = true;
        } else if (p->on_path[i] && n->kind != NB_KIND_OP) {
            s = nb_graph_check_value(n, a->data, K * n->value.size, "gradient");
            if (s) return s;
        }
    }
    return NB_OK;
}

static bool leaf_requires_grad(const nb_node *n, void *user)
{
    (void)user;
    return n->kind != NB_KIND_OP && n->requires_grad;
}

static nb_status backward_from(nb_node *loss, bool lend)
{
    if (!loss) return nb_fail(NB_ERR_ARG, "backward: loss node is NULL");
    nb_graph *g = loss->graph;
    invalidate_grads(g);
    nb_status s = check_forward_done("backward", loss);
    if (s) return s;
    if (loss->value.size != 1) {
        char b[96];
        return nb_fail(NB_ERR_SHAPE, "backward: loss '%s' must be a scalar, has shape %s; use nb_vjp for seeds",
                       loss->name, NB_SHAPE_STR(&loss->value, b));
    }
    nb_pass *p;
    if ((s = pass_get(g, NB_PASS_GRAD, &p))) return s;
    mark_paths(p, loss, leaf_requires_grad, NULL, false);
    p->on_path[loss->id] = true;
    nb_adjoint *al = &p->adj[loss->id];
    if ((s = nb_reserve(&al->data, &al->cap, 1))) return s;
    al->data[0] = 1;
    if ((s = reverse_sweep(p, loss, 1, lend))) return s;
    /* Every node on a path, and every leaf asking for one, gets its gradient. */
    for (int i = 0; i < g->n; i++) {
        nb_node *n = g->nodes[i];
        nb_adjoint *a = &p->adj[i];
        if (!p->on_path[i] && n->kind != NB_KIND_OP && n->requires_grad) {
            if ((s = nb_reserve(&a->data, &a->cap, n->value.size))) return s;
            memset(a->data, 0, (size_t)n->value.size * sizeof(nb_real));
            a->set = p->on_path[i] = true;
        }
        if (!p->on_path[i]) continue;
        n->grad = n->value;
        n->grad.data = a->data;
        n->grad.owns_data = 0;
    }
    g->grads_valid = true;
    return NB_OK;
}

nb_status nb_backward(nb_node *loss) { return backward_from(loss, false); }
nb_status nb_backward_leaves(nb_node *loss) { return backward_from(loss, true); }

typedef struct {
    int n;
    nb_node *const *nodes;
} node_set;

static bool in_set(const nb_node *n, void *user)
{
    node_set *s = user;
    for (int i = 0; i < s->n; i++)
        if (s->nodes[i] == n) return true;
    return false;
}

static nb_status check_stacked(const char *who, const nb_tensor *t, const nb_node *n, int64_t *K)
{
    char b1[96], b2[96];
    bool ok = t && t->rank == n->value.rank + 1;
    for (int d = 0; ok && d < n->value.rank; d++) ok = t->shape[d + 1] == n->value.shape[d];
    if (!ok)
        return nb_fail(NB_ERR_SHAPE, "%s: expected shape (K,) + %s for node '%s', got %s", who,
                       NB_SHAPE_STR(&n->value, b1), n->name, t ? NB_SHAPE_STR(t, b2) : "NULL");
    if (*K >= 0 && t->shape[0] != *K)
        return nb_fail(NB_ERR_SHAPE, "%s: all tangents need the same K (%lld vs %lld)", who,
                       (long long)*K, (long long)t->shape[0]);
    *K = t->shape[0];
    return NB_OK;
}

static nb_status check_nodes(const char *who, nb_node *out, int nwrt, nb_node *const *wrt)
{
    if (!out) return nb_fail(NB_ERR_ARG, "%s: out node is NULL", who);
    if (nwrt < 0 || (nwrt > 0 && !wrt)) return nb_fail(NB_ERR_ARG, "%s: no wrt nodes", who);
    for (int i = 0; i < nwrt; i++)
        if (!wrt[i] || wrt[i]->graph != out->graph)
            return nb_fail(NB_ERR_ARG, "%s: wrt node %d is NULL or from another graph", who, i);
    return NB_OK;
}

nb_status nb_vjp_raw(nb_node *out, int64_t K, const nb_real *seeds, int nwrt, nb_node *const *wrt)
{
    nb_graph *g = out->graph;
    nb_status s = check_forward_done("vjp", out);
    if (s) return s;
    nb_pass *p;
    if ((s = pass_get(g, NB_PASS_SCRATCH, &p))) return s;
    node_set set = {nwrt, wrt};
    mark_paths(p, out, in_set, &set, false);
    p->on_path[out->id] = true;
    if (out->value.size > 0 && K > INT64_MAX / out->value.size)
        return nb_fail(NB_ERR_TOO_LARGE, "vjp: too many seeds");
    nb_adjoint *a = &p->adj[out->id];
    if ((s = nb_reserve(&a->data, &a->cap, K * out->value.size))) return s;
    memcpy(a->data, seeds, (size_t)(K * out->value.size) * sizeof(nb_real));
    return reverse_sweep(p, out, K, false);
}

/* What nb_vjp returns: the adjoints of its (scratch) pass. */
static const nb_real *scratch_adjoint(const nb_node *n)
{
    return nb_pass_adjoint(n, NB_PASS_SCRATCH);
}

nb_status nb_vjp(nb_node *out, const nb_tensor *seeds, int nwrt, nb_node *const *wrt, nb_tensor **results)
{
    nb_status s = check_nodes("vjp", out, nwrt, wrt);
    if (s) return s;
    if (!results) return nb_fail(NB_ERR_ARG, "vjp: results is NULL");
    if ((s = nb_forward_again(out->graph))) return s; /* the last pass's key: the same dropout masks */
    int64_t K = -1;
    if ((s = check_stacked("vjp seeds", seeds, out, &K))) return s;
    if ((s = nb_vjp_raw(out, K, seeds->data, nwrt, wrt))) return s;
    return nb_stacked_results(K, nwrt, wrt, scratch_adjoint, results);
}

nb_status nb_stacked_results(int64_t K, int nwrt, nb_node *const *wrt,
                             const nb_real *(*result_of)(const nb_node *), nb_tensor **results)
{
    for (int i = 0; i < nwrt; i++) results[i] = NULL;
    for (int i = 0; i < nwrt; i++) {
        int64_t shape[NB_MAX_RANK + 1] = {K};
        memcpy(shape + 1, wrt[i]->value.shape, sizeof(int64_t) * (size_t)wrt[i]->value.rank);
        results[i] = nb_tensor_new(wrt[i]->value.rank + 1, shape);
        if (!results[i]) {
            for (int j = 0; j < i; j++) nb_tensor_free(results[j]), results[j] = NULL;
            return NB_ERR_NOMEM;
        }
        const nb_real *r = result_of(wrt[i]);
        if (r) memcpy(results[i]->data, r, (size_t)results[i]->size * sizeof(nb_real));
    }
    return NB_OK;
}

/* ----------------------------------------------------------- forward mode */

nb_status nb_jvp_raw(nb_node *out, int64_t K, int nwrt, nb_node *const *wrt, const nb_real *const *tangents)
{
    nb_graph *g = out->graph;
    nb_pass *p;
    nb_status s = check_forward_done("jvp", out);
    if (s || (s = pass_get(g, NB_PASS_SCRATCH, &p))) return s;
    nb_threads_apply();
    node_set set = {nwrt, wrt};
    mark_paths(p, out, in_set, &set, true);
    for (int i = 0; i < g->n; i++) p->tan[i].set = false;
    for (int w = 0; w < nwrt; w++) {
        nb_node *n = wrt[w];
        nb_tangent *t = &p->tan[n->id];
        if (!p->on_path[n->id]) continue;
        if (n->value.size > 0 && K > INT64_MAX / n->value.size)
            return nb_fail(NB_ERR_TOO_LARGE, "jvp: too many tangents");
        if (t->set) { /* the same node twice: its tangents add up */
            for (int64_t i = 0; i < K * n->value.size; i++) t->data[i] += tangents[w][i];
            continue;
        }
        if ((s = nb_reserve(&t->data, &t->cap, K * n->value.size))) return s;
        memcpy(t->data, tangents[w], (size_t)(K * n->value.size) * sizeof(nb_real));
        t->set = true;
    }
    nb_real *dxs[NB_NODE_MAX_INPUTS];
    for (int i = 0; i <= out->id; i++) {
        nb_node *n = g->nodes[i];
        nb_tangent *t = &p->tan[i];
        if (!p->on_path[i] || t->set || n->kind != NB_KIND_OP) continue;
        if ((s = nb_reserve(&t->data, &t->cap, K * n->value.size))) return s;
        for (int j = 0; j < n->ninputs; j++) {
            const nb_tangent *tx = &p->tan[n->in[j]->id];
            bool live = p->on_path[n->in[j]->id] && tx->set && !(n->op->nondiff_mask & (1u << j));
            dxs[j] = live ? tx->data : NULL;
        }
        if (!n->op->jvp) return nb_fail(NB_ERR_UNSUPPORTED, "%s: op %s has no JVP", n->name, n->op->name);
        if ((s = n->op->jvp(n, K, dxs, t->data))) return s;
        t->set = true;
        if ((s = nb_graph_check_value(n, t->data, K * n->value.size, "tangent"))) return s;
    }
    return NB_OK;
}

nb_status nb_jvp(nb_node *out, int nwrt, nb_node *const *wrt, const nb_tensor *const *tangents, nb_tensor **result)
{
    nb_status s = check_nodes("jvp", out, nwrt, wrt);
    if (s) return s;
    if (!result || (nwrt && !tangents)) return nb_fail(NB_ERR_ARG, "jvp: result or tangents is NULL");
    if ((s = nb_forward_again(out->graph))) return s;
    int64_t K = -1;
    for (int i = 0; i < nwrt; i++)
        if ((s = check_stacked("jvp tangents", tangents[i], wrt[i], &K))) return s;
    const nb_real **tdata = malloc(sizeof *tdata * (size_t)(nwrt + 1)); /* any number of wrt nodes */
    if (!tdata) return nb_fail(NB_ERR_NOMEM, "jvp: out of memory for %d wrt nodes", nwrt);
    for (int i = 0; i < nwrt; i++) tdata[i] = tangents[i]->data;
    if (K < 0) K = 1;
    s = nb_jvp_raw(out, K, nwrt, wrt, tdata);
    free(tdata);
    if (s) return s;
    int64_t shape[NB_MAX_RANK + 1] = {K};
    memcpy(shape + 1, out->value.shape, sizeof(int64_t) * (size_t)out->value.rank);
    *result = nb_tensor_new(out->value.rank + 1, shape);
    if (!*result) return NB_ERR_NOMEM;
    const nb_real *tan = nb_pass_tangent(out, NB_PASS_SCRATCH);
    if (tan) memcpy((*result)->data, tan, (size_t)(*result)->size * sizeof(nb_real));
    return NB_OK;
}

/* ------------------------------------------ pass state for other passes */

nb_status nb_pass_get(nb_graph *g, int kind, nb_pass **out) { return pass_get(g, kind, out); }

void nb_pass_mark(nb_pass *p, nb_node *out, int nwrt, nb_node *const *wrt)
{
    node_set set = {nwrt, wrt};
    mark_paths(p, out, in_set, &set, false);
}

nb_status nb_check_forward_done(const char *who, const nb_node *out) { return check_forward_done(who, out); }
