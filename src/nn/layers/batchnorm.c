/* batchnorm [momentum=0.1] [eps=1e-5]: batch normalisation per channel (the
 * last axis) over all the others, PyTorch's BatchNorm1d/2d with Keras's
 * parameter names: gamma (1), beta (0), moving_mean (0), moving_variance
 * (1), each (C). The moving statistics are state: not trained, updated by
 * each training-mode forward of `train` (ops/batchnorm.c). */
#include "layers.h"

static const nb_layer_arg args[] = {
    {.name = "momentum",
     .meta = "M",
     .type = NB_ARG_REAL,
     .field = offsetof(nb_layer_spec, momentum),
     .flags = NB_ARG_KEY,
     .lo = 1e-6,
     .hi = 1,
     .def_real = 0.1},
    {.name = "eps",
     .meta = "E",
     .type = NB_ARG_REAL,
     .field = offsetof(nb_layer_spec, eps),
     .flags = NB_ARG_KEY,
     .lo = 1e-12,
     .hi = 1,
     .def_real = 1e-5},
};

static const nb_layer_param_decl params[] = {{"gamma", NB_PARAM_ONES},
                                             {"beta", NB_PARAM_ZEROS},
                                             {"moving_mean", NB_PARAM_STATE_ZEROS},
                                             {"moving_variance", NB_PARAM_STATE_ONES}};

static nb_node *build(nb_layer_ctx *c, const nb_layer_spec *l, nb_node *x, nb_node **pre)
{
    const nb_tensor *v = nb_value(x);
    if (v->rank < 2) return nb_layer_refuse(c, "batchnorm needs a batch axis and a channel axis (N, ..., C)");
    const int64_t C[1] = {v->shape[v->rank - 1]};
    nb_node *p[4];
    for (int i = 0; i < 4; i++)
        if (!(p[i] = nb_layer_param(c, i, 1, C))) return NULL;
    const double mom = l->momentum ? l->momentum : 0.1, eps = l->eps ? l->eps : 1e-5;
    return nb_layer_finish(nb_batchnorm(x, p[0], p[1], p[2], p[3], eps, mom), NB_ACT_NONE, pre);
}

const nb_layer_type nb_layer_batchnorm = {
    .kind = NB_LAYER_BATCHNORM,
    .keyword = "batchnorm",
    .args = args,
    .nargs = 2,
    .params = params,
    .nparams = 4,
    .example = "batchnorm momentum=0.01 eps=0.001",
    .build = build,
};
