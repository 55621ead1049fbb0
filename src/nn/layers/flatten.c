/* flatten: (N, d1, d2, ...) -> (N, d1 d2 ...), row-major (Keras's order for NHWC). */
#include "layers.h"

static nb_node *build(nb_layer_ctx *c, const nb_layer_spec *l, nb_node *x, nb_node **pre)
{
    return nb_layer_finish(nb_flatten(x), NB_ACT_NONE, pre);
}

const nb_layer_type nb_layer_flatten = {
    .kind = NB_LAYER_FLATTEN,
    .keyword = "flatten",
    .example = "flatten",
    .build = build,
};
