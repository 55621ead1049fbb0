/* The graph: nodes in creation order (a topological order, since an op's
 * inputs exist before it), shape inference, buffers and the forward pass. */
#include "graph.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

nb_graph *nb_graph_new(void)
{
    nb_graph *g = calloc(1, sizeof *g);
    if (!g) nb_fail(NB_ERR_NOMEM, "graph: out of memory");
    else g->forward_done = -1;
    return g;
}

static void node_free(nb_node *n)
{
    nb_free(n->value.data);
    nb_free(n->ws);
    nb_free(n->saved);
    free(n);
}

void nb_pass_free(nb_pass *p)
{
    for (int i = 0; i < p->cap; i++) nb_free(p->adj[i].data), nb_free(p->tan[i].data);
    for (int i = 0; i < p->npool; i++) nb_free(p->pool[i].data);
    free(p->pool), free(p->adj), free(p->tan), free(p->on_path), free(p->source), free(p->from), free(p->to);
    memset(p, 0, sizeof *p);
}

void nb_graph_free(nb_graph *g)
{
    if (!g) return;
    for (int i = 0; i < g->n; i++) node_free(g->nodes[i]);
    free(g->nodes);
    for (int p = 0; p < NB_PASS_COUNT; p++) nb_pass_free(&g->passes[p]);
    free(g);
}

static nb_node *node_add(nb_graph *g, int kind, const char *name)
{
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 32;
        nb_node **p = realloc(g->nodes, (size_t)cap * sizeof *p);
        if (!p) {
            nb_fail(NB_ERR_NOMEM, "graph: out of memory");
            return NULL;
        }
        g->nodes = p;
        g->cap = cap;
    }
    nb_node *n = calloc(1, sizeof *n);
    if (!n) {
        nb_fail(NB_ERR_NOMEM, "graph: out of memory");
        return NULL;
    }
    n->graph = g;
    n->id = g->n;
    n->kind = kind;
    if (name) snprintf(n->name, sizeof n->name, "%s", name);
    g->nodes[g->n++] = n;
    g->shapes_dirty = true;
    return n;
}

static nb_status value_alloc(nb_node *n)
{
    if (n->value.size < 0) return nb_fail(NB_ERR_SHAPE, "%s: shape overflows", n->name);
    nb_status s = nb_reserve(&n->value.data, &n->value_cap, n->value.size);
    n->value.owns_data = 0;
    return s;
}

static nb_node *leaf_new(nb_graph *g, int kind, const char *name, int rank, const int64_t *shape)
{
    if (!g) {
        nb_fail(NB_ERR_ARG, "%s: graph is NULL", name ? name : "leaf");
        return NULL;
    }
    if (rank < 0 || rank > NB_MAX_RANK || (rank && !shape) || nb_shape_size(rank, shape) < 0) {
        nb_fail(NB_ERR_SHAPE, "%s: invalid shape (rank %d)", name ? name : "leaf", rank);
        return NULL;
    }
    nb_node *n = node_add(g, kind, name);
    if (!n) return NULL;
    nb_tensor_set_shape(&n->value, rank, shape);
    n->requires_grad = kind == NB_KIND_PARAM;
    if (value_alloc(n) != NB_OK) {
        g->n--;
        node_free(n);
        return NULL;
    }
    if (!name) snprintf(n->name, sizeof n->name, "%s%d", kind == NB_KIND_PARAM ? "param" : "input", n->id);
    return n;
}

nb_node *nb_input(nb_graph *g, const char *name, int rank, const int64_t *shape)
{
    return leaf_new(g, NB_KIND_INPUT, name, rank, shape);
}

nb_node *nb_param(nb_graph *g, const char *name, int rank, const int64_t *shape)
{
    return leaf_new(g, NB_KIND_PARAM, name, rank, shape);
}

nb_status nb_input_reshape(nb_node *n, int rank, const int64_t *shape)
{
    if (!n || n->kind == NB_KIND_OP) return nb_fail(NB_ERR_ARG, "input_reshape: not a leaf node");
    if (rank < 0 || rank > NB_MAX_RANK || (rank > 0 && !shape))
        return nb_fail(NB_ERR_SHAPE, "%s: invalid shape (rank %d%s)", n->name, rank,
                       rank > 0 && !shape ? " with a NULL shape" : "");
    if (nb_shape_size(rank, shape) < 0) return nb_fail(NB_ERR_SHAPE, "%s: invalid shape", n->name);
    int64_t old = n->value.size;
    nb_tensor before = n->value;
    nb_tensor_set_shape(&n->value, rank, shape);
    nb_status s = value_alloc(n);
    if (s) { /* keep the node consistent with its buffer */
        n->value = before;
        return s;
    }
    if (n->value.size > old)
        memset(n->value.data + old, 0, (size_t)(n->value.size - old) * sizeof(nb_real));
    n->graph->shapes_dirty = true;
    return NB_OK;
}

nb_node *nb_node_op_new(const nb_op *op, int ninputs, nb_node *const *inputs, const void *attrs)
{
    if (op->attrs_size > NB_ATTRS_BYTES) { /* NB_ATTRS_FIT in the op's file prevents this */
        nb_fail(NB_ERR_TOO_LARGE, "%s: attributes of %zu bytes do not fit a node (%d)", op->name, op->attrs_size,
                NB_ATTRS_BYTES);
        return NULL;
    }
    if (ninputs < 1 || ninputs > NB_NODE_MAX_INPUTS) {
        nb_fail(NB_ERR_ARG, "%s: %d inputs (an op takes 1 to %d)", op->name, ninputs, NB_NODE_MAX_INPUTS);
        return NULL;
    }
    for (int i = 0; i < ninputs; i++)
        if (!inputs[i]) {
            nb_fail_null_input(op->name, i);
            return NULL;
        }
    for (int i = 0; i < ninputs; i++)
        if (inputs[i]->fused_into) {
            nb_fail(NB_ERR_ARG, "%s: input '%s' is computed inside '%s' (fused) and has no value of its own; use '%s'",
                    op->name, inputs[i]->name, inputs[i]->fused_into->name, inputs[i]->fused_into->name);
            return NULL;
        }
    nb_graph *g = inputs[0]->graph;
    for (int i = 1; i < ninputs; i++)
        if (inputs[i]->graph != g) {
            nb_fail(NB_ERR_ARG, "%s: inputs belong to different graphs", op->name);
            return NULL;
        }
    /* Inputs reshaped since the last pass: infer their shapes first. */
    if (g->shapes_dirty && nb_graph_prepare(g) != NB_OK) return NULL;
    nb_node *n = node_add(g, NB_KIND_OP, NULL);
    if (!n) return NULL;
    n->op = op;
    n->ninputs = ninputs;
    for (int i = 0; i < ninputs; i++) n->in[i] = inputs[i];
    if (attrs) memcpy(n->attrs.bytes, attrs, op->attrs_size);
    snprintf(n->name, sizeof n->name, "%s%d", op->name, n->id);
    if (op->infer(n) != NB_OK || value_alloc(n) != NB_OK) {
        g->n--;
        node_free(n);
        return NULL;
    }
    return n;
}

nb_status nb_graph_prepare(nb_graph *g)
{
    if (!g->shapes_dirty) return NB_OK;
    /* What the last forward saved (labels, argmaxes, masks) is for the old
     * shapes: clearing shapes_dirty must not make it look current to the
     * reverse passes (a caller may prepare and then fail before a forward,
     * as nb_jacobian does when its checks refuse). */
    g->forward_done = -1;
    for (int i = 0; i < g->n; i++) {
        nb_node *n = g->nodes[i];
        if (n->kind != NB_KIND_OP) continue;
        nb_status s = n->op->infer(n);
        if (s) return s;
        if (n->fused_into) continue; /* a shape, no value */
        s = value_alloc(n);
        if (s) return s;
    }
    g->shapes_dirty = false;
    return NB_OK;
}

void *nb_node_workspace(nb_node *n, size_t bytes)
{
    if (nb_reserve_bytes(&n->ws, &n->ws_cap, bytes) != NB_OK) return NULL;
    return n->ws;
}

void *nb_node_saved(nb_node *n, size_t bytes)
{
    if (nb_reserve_bytes(&n->saved, &n->saved_cap, bytes) != NB_OK) return NULL;
    return n->saved;
}

void nb_node_fuse_into(nb_node *n, nb_node *into)
{
    n->fused_into = into;
    nb_free(n->value.data);
    n->value.data = NULL, n->value_cap = 0;
}

static nb_status check_finite(const nb_node *n, const nb_real *x, int64_t count, const char *what)
{
    for (int64_t i = 0; i < count; i++)
        if (!isfinite(x[i]))
            return nb_fail(NB_ERR_NUMERIC, "check_numerics: %s of node '%s' (op %s) element %lld is %s",
                           what, n->name, nb_node_op(n), (long long)i, isnan(x[i]) ? "NaN" : "Inf");
    return NB_OK;
}

nb_status nb_graph_check_value(const nb_node *n, const nb_real *x, int64_t count, const char *what)
{
    return n->graph->check_numerics ? check_finite(n, x, count, what) : NB_OK;
}

nb_status nb_forward(nb_graph *g)
{
    if (!g) return nb_fail(NB_ERR_ARG, "forward: graph is NULL");
    return g->n ? nb_forward_upto(g->nodes[g->n - 1]) : NB_OK;
}

nb_status nb_forward_key(nb_graph *g, uint64_t key)
{
    if (!g) return nb_fail(NB_ERR_ARG, "forward: graph is NULL");
    g->key = key, g->keyed = true;
    return g->n ? nb_forward_keyed(g->nodes[g->n - 1], key) : NB_OK;
}

nb_status nb_forward_upto(nb_node *last) { return nb_forward_keyed(last, last->graph->key + 1); }

nb_status nb_forward_again(nb_graph *g)
{
    return g->n ? nb_forward_keyed(g->nodes[g->n - 1], g->keyed ? g->key : g->key + 1) : NB_OK;
}

nb_status nb_forward_keyed(nb_node *last, uint64_t key)
{
    nb_graph *g = last->graph;
    nb_threads_apply();
    g->forward_done = -1; /* until this pass completes */
    nb_status s = nb_graph_prepare(g);
    if (s) return s;
    g->key = key, g->keyed = true;
    for (int i = 0; i <= last->id; i++) {
        nb_node *n = g->nodes[i];
        if (n->kind != NB_KIND_OP) {
            if (g->check_numerics && (s = check_finite(n, n->value.data, n->value.size, "value")))
                return s;
            continue;
        }
        if (n->fused_into) continue; /* computed by the node it was fused into */
        s = n->op->forward(n);
        if (s) return s;
        if (g->check_numerics && (s = check_finite(n, n->value.data, n->value.size, "forward value")))
            return s;
    }
    g->forward_done = last->id;
    return NB_OK;
}

void nb_graph_pop(nb_graph *g)
{
    if (!g || g->n == 0) return;
    nb_node *last = g->nodes[--g->n];
    /* A node fused into the one popped is computed again (its value buffer
     * comes back at the next shape inference). */
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i]->fused_into == last) g->nodes[i]->fused_into = NULL, g->shapes_dirty = true;
    node_free(last);
}

nb_tensor *nb_value(nb_node *n) { return n ? &n->value : NULL; }
const char *nb_node_name(const nb_node *n) { return n ? n->name : ""; }
const char *nb_node_op(const nb_node *n)
{
    if (!n) return "";
    return n->kind == NB_KIND_INPUT ? "input" : n->kind == NB_KIND_PARAM ? "param" : n->op->name;
}
nb_graph *nb_node_graph(const nb_node *n) { return n ? n->graph : NULL; }
int nb_graph_size(const nb_graph *g) { return g ? g->n : 0; }
nb_node *nb_graph_node(nb_graph *g, int i) { return g && i >= 0 && i < g->n ? g->nodes[i] : NULL; }
nb_node *nb_graph_find(nb_graph *g, const char *name)
{
    for (int i = 0; g && name && i < g->n; i++)
        if (strcmp(g->nodes[i]->name, name) == 0) return g->nodes[i];
    return NULL;
}
void nb_node_set_name(nb_node *n, const char *name)
{
    if (n && name) snprintf(n->name, sizeof n->name, "%s", name);
}
int nb_is_param(const nb_node *n) { return n && n->kind == NB_KIND_PARAM; }
void nb_set_requires_grad(nb_node *n, int on)
{
    if (n && n->kind != NB_KIND_OP) n->requires_grad = on != 0;
}
int nb_node_requires_grad(const nb_node *n) { return n && n->requires_grad; }
void nb_graph_set_training(nb_graph *g, int mode, uint64_t seed)
{
    if (!g) return;
    g->training = mode == NB_TRAINING;
    g->batch_stats = mode == NB_TRAINING || mode == NB_TRAINING_NO_DROPOUT;
    g->seed = seed;
}
void nb_graph_set_check_numerics(nb_graph *g, int on)
{
    if (g) g->check_numerics = on != 0;
}
