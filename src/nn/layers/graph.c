/* The entries that make a model a graph (issue 13): `from NAME` (the named
 * output becomes the current tensor), `add NAME...` (the current tensor
 * plus the named ones, same shapes) and `concat NAME...` (the current
 * tensor and the named ones joined on the last, channel axis). Names are
 * those given by `ENTRY as NAME` to earlier entries, or `input`. Where one
 * output feeds several entries, the reverse pass adds the adjoints of its
 * consumers (autodiff's write rule), so nothing here accumulates by hand. */
#include "layers.h"

#include <stdio.h>

static const nb_layer_arg one_name[] = {
    {.name = "NAME", .type = NB_ARG_NAMES, .field = offsetof(nb_layer_spec, refs), .lo = 1, .hi = 1},
};
static const nb_layer_arg some_names[] = {
    {.name = "NAME", .type = NB_ARG_NAMES, .field = offsetof(nb_layer_spec, refs), .lo = 1, .hi = NB_SPEC_MAX_REFS},
};

static nb_node *build_from(nb_layer_ctx *c, const nb_layer_spec *l, nb_node *x, nb_node **pre)
{
    (void)x;
    nb_node *y = nb_layer_lookup(c, l->refs[0]);
    if (y) *pre = y;
    return y;
}

static int same_shape(const nb_tensor *a, const nb_tensor *b)
{
    if (a->rank != b->rank) return 0;
    for (int d = 0; d < a->rank; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return 1;
}

/* "(N, 6, 6, 8)": a shape as the user sees it, the batch as N. */
static const char *user_shape(const nb_tensor *t, char *buf, size_t n)
{
    size_t u = (size_t)snprintf(buf, n, "(N");
    for (int d = 1; d < t->rank && u < n; d++)
        u += (size_t)snprintf(buf + u, n - u, ", %lld", (long long)t->shape[d]);
    if (u < n) snprintf(buf + u, n - u, ")");
    return buf;
}

/* y = x + r_1 + ... + r_k. nb_add broadcasts, so equal shapes are checked
 * here first: a residual branch of the wrong shape is a mistake, not a
 * broadcast. Jacobian: dy/dx = dy/dr_i = I. */
static nb_node *build_add(nb_layer_ctx *c, const nb_layer_spec *l, nb_node *x, nb_node **pre)
{
    nb_node *y = x;
    for (int i = 0; i < l->nrefs && y; i++) {
        nb_node *r = nb_layer_lookup(c, l->refs[i]);
        if (!r) return NULL;
        if (!same_shape(nb_value(x), nb_value(r))) {
            char s1[96], s2[96];
            return nb_layer_refuse(c,
                                   "cannot add '%s' of shape %s to the current tensor of shape %s (add needs "
                                   "equal shapes)",
                                   l->refs[i], user_shape(nb_value(r), s2, sizeof s2),
                                   user_shape(nb_value(x), s1, sizeof s1));
        }
        y = nb_add(y, r);
    }
    return nb_layer_finish(y, NB_ACT_NONE, pre);
}

static nb_node *build_concat(nb_layer_ctx *c, const nb_layer_spec *l, nb_node *x, nb_node **pre)
{
    nb_node *y = x;
    for (int i = 0; i < l->nrefs && y; i++) {
        nb_node *r = nb_layer_lookup(c, l->refs[i]);
        if (!r) return NULL;
        const nb_tensor *a = nb_value(y), *b = nb_value(r);
        int ok = a->rank == b->rank;
        for (int d = 1; ok && d + 1 < a->rank; d++)
            ok = a->shape[d] == b->shape[d];
        if (!ok) {
            char s1[96], s2[96];
            return nb_layer_refuse(c,
                                   "cannot concat '%s' of shape %s with the current tensor of shape %s (all but "
                                   "the last axis must be equal)",
                                   l->refs[i], user_shape(b, s2, sizeof s2), user_shape(a, s1, sizeof s1));
        }
        y = nb_concat(y, r);
    }
    return nb_layer_finish(y, NB_ACT_NONE, pre);
}

const nb_layer_type nb_layer_from = {
    .kind = NB_LAYER_FROM,
    .keyword = "from",
    .args = one_name,
    .nargs = 1,
    .example = "from input",
    .build = build_from,
};

const nb_layer_type nb_layer_add = {
    .kind = NB_LAYER_ADD,
    .keyword = "add",
    .args = some_names,
    .nargs = 1,
    .example = "add input",
    .build = build_add,
};

const nb_layer_type nb_layer_concat = {
    .kind = NB_LAYER_CONCAT,
    .keyword = "concat",
    .args = some_names,
    .nargs = 1,
    .example = "concat input",
    .build = build_concat,
};
