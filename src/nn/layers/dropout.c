/* dropout RATE, RATE in [0, 1): in training each element is kept with
 * probability 1 - RATE and scaled by 1 / (1 - RATE) (inverted dropout, as
 * PyTorch and Keras); in inference the identity. */
#include "layers.h"

static const nb_layer_arg args[] = {
    {.name = "RATE", .type = NB_ARG_REAL, .field = offsetof(nb_layer_spec, rate), .lo = 0, .hi = 1},
};

static nb_node *build(nb_layer_ctx *c, const nb_layer_spec *l, nb_node *x, nb_node **pre)
{
    return nb_layer_finish(nb_dropout(x, l->rate), NB_ACT_NONE, pre);
}

static int identity(const nb_layer_spec *l)
{
    return 1;
}

const nb_layer_type nb_layer_dropout = {
    .kind = NB_LAYER_DROPOUT,
    .keyword = "dropout",
    .args = args,
    .nargs = 1,
    .example = "dropout 0.25",
    .build = build,
    .identity = identity,
};
