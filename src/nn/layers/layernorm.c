/* layernorm [eps=1e-5]: normalisation of each position over the last axis
 * (PyTorch's nn.LayerNorm(C)), gamma (1) and beta (0) per feature (C). */
#include "layers.h"

static const nb_layer_arg args[] = {
    {.name = "eps",
     .meta = "E",
     .type = NB_ARG_REAL,
     .field = offsetof(nb_layer_spec, eps),
     .flags = NB_ARG_KEY,
     .lo = 1e-12,
     .hi = 1,
     .def_real = 1e-5},
};

static const nb_layer_param_decl params[] = {{"gamma", NB_PARAM_ONES}, {"beta", NB_PARAM_ZEROS}};

static nb_node *build(nb_layer_ctx *c, const nb_layer_spec *l, nb_node *x, nb_node **pre)
{
    const nb_tensor *v = nb_value(x);
    const int64_t C[1] = {v->shape[v->rank - 1]};
    nb_node *ga = nb_layer_param(c, 0, 1, C), *be = ga ? nb_layer_param(c, 1, 1, C) : NULL;
    if (!be) return NULL;
    return nb_layer_finish(nb_layernorm(x, ga, be, l->eps ? l->eps : 1e-5), NB_ACT_NONE, pre);
}

const nb_layer_type nb_layer_layernorm = {
    .kind = NB_LAYER_LAYERNORM,
    .keyword = "layernorm",
    .args = args,
    .nargs = 1,
    .params = params,
    .nparams = 2,
    .example = "layernorm eps=0.001",
    .build = build,
};
