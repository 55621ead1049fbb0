/* Reverse mode (vector-Jacobian products) and forward mode (Jacobian-vector
 * products) over one graph, both batched: K seeds or tangents ride through a
 * single pass, stacked along a leading axis of every adjoint/tangent buffer.
 *
 * Reverse: adj(out) = seeds; for nodes from last to first, every input x_i
 * of a node y gets adj(x_i) += adj(y) . dy/dx_i (the chain rule, right to
 * left). Forward: tan(wrt) = tangents; for nodes first to last,
 * tan(y) = sum_i dy/dx_i . tan(x_i). Only nodes on a path wrt -> out work. */
#include "../core/internal.h"

#include <stdlib.h>

/* mark = node lies on a path from one of the sources to out. The two flag
 * arrays live in the graph so that a training step allocates nothing. */
static void mark_paths(nb_graph *g, nb_node *out, bool (*is_source)(const nb_node *, void *), void *user,
                       bool stop_at_sources)
{
    for (int i = 0; i < g->n; i++) g->nodes[i]->source = i <= out->id && is_source(g->nodes[i], user);
    if (g->flags_cap < 2 * g->n) {
        bool *p = realloc(g->flags, (size_t)(2 * g->n) * sizeof *p);
        if (!p) { /* fall back to marking everything: slower, still right */
            for (int i = 0; i < g->n; i++) g->nodes[i]->mark = i <= out->id;
            return;
        }
        g->flags = p, g->flags_cap = 2 * g->n;
    }
    bool *from = g->flags, *to = g->flags + g->n;
    memset(g->flags, 0, (size_t)(2 * g->n) * sizeof *from);
    for (int i = 0; i <= out->id; i++) {
        nb_node *n = g->nodes[i];
        if (n->source) {
            from[i] = true;
            if (stop_at_sources) continue;
        }
        for (int j = 0; j < n->ninputs && !from[i]; j++)
            if (!(n->op->nondiff_mask & (1u << j)) && from[n->in[j]->id]) from[i] = true;
    }
    to[out->id] = true;
    for (int i = out->id; i >= 0; i--) {
        nb_node *n = g->nodes[i];
        if (!to[i]) continue;
        for (int j = 0; j < n->ninputs; j++)
            if (!(n->op->nondiff_mask & (1u << j))) to[n->in[j]->id] = true;
    }
    for (int i = 0; i < g->n; i++) g->nodes[i]->mark = from[i] && to[i];
}

/* The gradients of the last nb_backward stop being readable (a new backward
 * pass is about to overwrite them). */
static void invalidate_grads(nb_graph *g)
{
    g->grads_valid = false;
    for (int i = 0; i < g->n; i++) g->nodes[i]->grad.data = NULL, g->nodes[i]->adjs[NB_PASS_GRAD].via = NULL;
}

void nb_adjoint_resolve(nb_node *x, int pass)
{
    nb_adjoint *a = &x->adjs[pass];
    nb_node *p = a->via;
    if (!p) return;
    a->via = NULL;
    const int running = x->graph->pass;
    x->graph->pass = pass;
    /* cannot fail: the pool's VJP only reads and writes buffers it has */
    (void)p->op->vjp(p, a->via_input, a->via_k, p->adjs[pass].data, a->data, false);
    x->graph->pass = running;
}

/* The forward pass the reverse pass differentiates must have run to
 * completion over out (not failed halfway, not older than new shapes or
 * nodes): the ops' VJPs read what it saved (masks, labels, argmaxes). */
static nb_status check_forward_done(const char *who, const nb_node *out)
{
    const nb_graph *g = out->graph;
    if (g->shapes_dirty)
        return nb_fail(NB_ERR_ARG, "%s: run nb_forward first (shapes or nodes changed since the last one)", who);
    if (g->forward_done < out->id)
        return nb_fail(NB_ERR_ARG,
                       "%s: the last nb_forward did not complete up to '%s'%s; fix that and run nb_forward again",
                       who, out->name, g->forward_done < 0 ? " (it failed)" : "");
    return NB_OK;
}

/* Runs the reverse sweep of pass `pass` for K seeds already written to
 * out's adjoint. */
static nb_status reverse_sweep(nb_node *out, int64_t K, int pass)
{
    nb_graph *g = out->graph;
    nb_threads_apply();
    g->pass = pass;
    for (int i = 0; i < g->n; i++) {
        nb_node *n = g->nodes[i];
        nb_adjoint *a = &n->adjs[pass];
        a->set = false, a->via = NULL;
        if (!n->mark) continue;
        if (n->value.size > 0 && K > INT64_MAX / n->value.size)
            return nb_fail(NB_ERR_TOO_LARGE, "reverse pass: %lld seeds overflow", (long long)K);
        nb_status s = nb_reserve(&a->data, &a->cap, K * n->value.size);
        if (s) return s;
    }
    out->adjs[pass].set = true;
    for (int i = out->id; i >= 0; i--) {
        nb_node *n = g->nodes[i];
        const nb_adjoint *an = &n->adjs[pass];
        if (!n->mark || n->kind != NB_KIND_OP || !an->set) continue;
        /* (a deferred adjoint was checked in its holder) */
        nb_status s = an->via ? NB_OK : nb_graph_check_value(n, an->data, K * n->value.size, "gradient");
        if (s) return s;
        for (int j = 0; j < n->ninputs; j++) {
            nb_node *x = n->in[j];
            nb_adjoint *ax = &x->adjs[pass];
            if (!x->mark || (n->op->nondiff_mask & (1u << j))) continue;
            if (!n->op->vjp)
                return nb_fail(NB_ERR_UNSUPPORTED, "%s: op %s has no VJP", n->name, n->op->name);
            if (!ax->set && !x->source && n->op->vjp_defer && n->op->vjp_defer(n, j)) {
                ax->via = n, ax->via_input = j, ax->via_k = K;
                ax->set = true;
                continue;
            }
            nb_adjoint_resolve(x, pass); /* a second consumer adds to it: make it whole first */
            s = n->op->vjp(n, j, K, an->data, ax->data, ax->set);
            if (s) return s;
            ax->set = true;
        }
    }
    /* Nodes on no path the seeds reach have a zero adjoint, not garbage.
     * Leaves are checked here: the loop above only checks op nodes, and a
     * leaf's adjoint (a parameter's gradient) is the one a user reads. */
    for (int i = 0; i < g->n; i++) {
        nb_node *n = g->nodes[i];
        nb_adjoint *a = &n->adjs[pass];
        if (n->mark && !a->set) {
            memset(a->data, 0, (size_t)(K * n->value.size) * sizeof(nb_real));
            a->set = true;
        } else if (n->mark && n->kind != NB_KIND_OP) {
            nb_status s = nb_graph_check_value(n, a->data, K * n->value.size, "gradient");
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

nb_status nb_backward(nb_node *loss)
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
    mark_paths(g, loss, leaf_requires_grad, NULL, false);
    loss->mark = true;
    nb_adjoint *al = &loss->adjs[NB_PASS_GRAD];
    if ((s = nb_reserve(&al->data, &al->cap, 1))) return s;
    al->data[0] = 1;
    if ((s = reverse_sweep(loss, 1, NB_PASS_GRAD))) return s;
    /* Every node on a path, and every leaf asking for one, gets its gradient. */
    for (int i = 0; i < g->n; i++) {
        nb_node *n = g->nodes[i];
        nb_adjoint *a = &n->adjs[NB_PASS_GRAD];
        if (!n->mark && n->kind != NB_KIND_OP && n->requires_grad) {
            if ((s = nb_reserve(&a->data, &a->cap, n->value.size))) return s;
            memset(a->data, 0, (size_t)n->value.size * sizeof(nb_real));
            a->set = n->mark = true;
        }
        if (!n->mark) continue;
        n->grad = n->value;
        n->grad.data = a->data;
        n->grad.owns_data = 0;
    }
    g->grads_valid = true;
    return NB_OK;
}

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
    node_set set = {nwrt, wrt};
    mark_paths(g, out, in_set, &set, false);
    out->mark = true;
    if (out->value.size > 0 && K > INT64_MAX / out->value.size)
        return nb_fail(NB_ERR_TOO_LARGE, "vjp: too many seeds");
    nb_adjoint *a = &out->adjs[NB_PASS_SCRATCH];
    if ((s = nb_reserve(&a->data, &a->cap, K * out->value.size))) return s;
    memcpy(a->data, seeds, (size_t)(K * out->value.size) * sizeof(nb_real));
    return reverse_sweep(out, K, NB_PASS_SCRATCH);
}

nb_status nb_vjp(nb_node *out, const nb_tensor *seeds, int nwrt, nb_node *const *wrt, nb_tensor **results)
{
    nb_status s = check_nodes("vjp", out, nwrt, wrt);
    if (s) return s;
    if (!results) return nb_fail(NB_ERR_ARG, "vjp: results is NULL");
    if ((s = nb_forward(out->graph))) return s;
    int64_t K = -1;
    if ((s = check_stacked("vjp seeds", seeds, out, &K))) return s;
    if ((s = nb_vjp_raw(out, K, seeds->data, nwrt, wrt))) return s;
    for (int i = 0; i < nwrt; i++) results[i] = NULL;
    for (int i = 0; i < nwrt; i++) {
        int64_t shape[NB_MAX_RANK + 1] = {K};
        memcpy(shape + 1, wrt[i]->value.shape, sizeof(int64_t) * (size_t)wrt[i]->value.rank);
        results[i] = nb_tensor_new(wrt[i]->value.rank + 1, shape);
        if (!results[i]) {
            for (int j = 0; j < i; j++) nb_tensor_free(results[j]), results[j] = NULL;
            return NB_ERR_NOMEM;
        }
        if (wrt[i]->mark)
            memcpy(results[i]->data, wrt[i]->adjs[NB_PASS_SCRATCH].data, (size_t)results[i]->size * sizeof(nb_real));
    }
    return NB_OK;
}

nb_status nb_jvp_raw(nb_node *out, int64_t K, int nwrt, nb_node *const *wrt, const nb_real *const *tangents)
{
    nb_graph *g = out->graph;
    nb_status s0 = check_forward_done("jvp", out);
    if (s0) return s0;
    nb_threads_apply();
    node_set set = {nwrt, wrt};
    mark_paths(g, out, in_set, &set, true);
    for (int i = 0; i < g->n; i++) g->nodes[i]->tan_set = false;
    for (int w = 0; w < nwrt; w++) {
        nb_node *n = wrt[w];
        if (!n->mark) continue;
        if (n->value.size > 0 && K > INT64_MAX / n->value.size)
            return nb_fail(NB_ERR_TOO_LARGE, "jvp: too many tangents");
        if (n->tan_set) { /* the same node twice: its tangents add up */
            for (int64_t i = 0; i < K * n->value.size; i++) n->tan[i] += tangents[w][i];
            continue;
        }
        nb_status s = nb_reserve(&n->tan, &n->tan_cap, K * n->value.size);
        if (s) return s;
        memcpy(n->tan, tangents[w], (size_t)(K * n->value.size) * sizeof(nb_real));
        n->tan_set = true;
    }
    nb_real *dxs[4];
    for (int i = 0; i <= out->id; i++) {
        nb_node *n = g->nodes[i];
        if (!n->mark || n->tan_set || n->kind != NB_KIND_OP) continue;
        nb_status s = nb_reserve(&n->tan, &n->tan_cap, K * n->value.size);
        if (s) return s;
        for (int j = 0; j < n->ninputs; j++) {
            nb_node *x = n->in[j];
            dxs[j] = (x->mark && x->tan_set && !(n->op->nondiff_mask & (1u << j))) ? x->tan : NULL;
        }
        if (!n->op->jvp) return nb_fail(NB_ERR_UNSUPPORTED, "%s: op %s has no JVP", n->name, n->op->name);
        s = n->op->jvp(n, K, dxs, n->tan);
        if (s) return s;
        n->tan_set = true;
        if ((s = nb_graph_check_value(n, n->tan, K * n->value.size, "tangent"))) return s;
    }
    return NB_OK;
}

nb_status nb_jvp(nb_node *out, int nwrt, nb_node *const *wrt, const nb_tensor *const *tangents, nb_tensor **result)
{
    nb_status s = check_nodes("jvp", out, nwrt, wrt);
    if (s) return s;
    if (!result || (nwrt && !tangents)) return nb_fail(NB_ERR_ARG, "jvp: result or tangents is NULL");
    if ((s = nb_forward(out->graph))) return s;
    int64_t K = -1;
    const nb_real *tdata[64];
    if (nwrt > 64) return nb_fail(NB_ERR_ARG, "jvp: at most 64 wrt nodes");
    for (int i = 0; i < nwrt; i++) {
        if ((s = check_stacked("jvp tangents", tangents[i], wrt[i], &K))) return s;
        tdata[i] = tangents[i]->data;
    }
    if (K < 0) K = 1;
    if ((s = nb_jvp_raw(out, K, nwrt, wrt, tdata))) return s;
    int64_t shape[NB_MAX_RANK + 1] = {K};
    memcpy(shape + 1, out->value.shape, sizeof(int64_t) * (size_t)out->value.rank);
    *result = nb_tensor_new(out->value.rank + 1, shape);
    if (!*result) return NB_ERR_NOMEM;
    if (out->mark && out->tan_set)
        memcpy((*result)->data, out->tan, (size_t)(*result)->size * sizeof(nb_real));
    return NB_OK;
}
