/* dense UNITS [ACT], and neuron [ACT] (dense 1): A = g(X W + b) with
 * X (N, in), W (in, UNITS) (Keras's kernel layout), b (UNITS). */
#include "layers.h"

enum { MAX_UNITS = 1 << 20 };

static const nb_layer_arg args[] = {
    {.name = "UNITS", .type = NB_ARG_INT, .field = offsetof(nb_layer_spec, units), .lo = 1, .hi = MAX_UNITS},
    {.name = "ACT", .type = NB_ARG_ACT, .field = offsetof(nb_layer_spec, act), .flags = NB_ARG_OPTIONAL},
};

static const nb_layer_param_decl params[] = {{"kernel", NB_PARAM_WEIGHT}, {"bias", NB_PARAM_BIAS}};

/* "neuron" is dense 1 (the lecture's y = g(x^T w + b)): UNITS preset. */
static int match(const char *word, nb_layer_spec *l)
{
    if (!strcmp(word, "dense")) return 0;
    if (strcmp(word, "neuron")) return -1;
    l->units = 1;
    return 1;
}

static nb_node *build(nb_layer_ctx *c, const nb_layer_spec *l, nb_node *x, nb_node **pre)
{
    if (!nb_layer_need_rank(c, x, 2, "dense needs a flat input (N, features)", "; add 'flatten' before it"))
        return NULL;
    int64_t ks[2] = {nb_value(x)->shape[1], l->units}, bs[1] = {l->units};
    nb_node *k = nb_layer_param(c, 0, 2, ks), *b = nb_layer_param(c, 1, 1, bs);
    return nb_layer_finish(nb_add(nb_matmul(x, k), b), l->act, pre);
}

const nb_layer_type nb_layer_dense = {
    .kind = NB_LAYER_DENSE,
    .keyword = "dense",
    .aliases = (const char *const[]){"neuron", NULL},
    .args = args,
    .nargs = 2,
    .params = params,
    .nparams = 2,
    .example = "dense 7 tanh",
    .match = match,
    .build = build,
};
