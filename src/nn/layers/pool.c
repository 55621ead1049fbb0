/* maxpool SIZE [stride=S] [padding=valid|same] and avgpool (the same
 * arguments): windows of SIZE x SIZE over (N, H, W, C), stride SIZE unless
 * given (PyTorch's default). Two kinds, one file: they share everything but
 * the op. */
#include "layers.h"
#include "../../ops/ops_internal.h"

enum { MAX_SIZE = 1024 };

static const nb_layer_arg args[] = {
    {.name = "SIZE", .type = NB_ARG_INT, .field = offsetof(nb_layer_spec, size), .lo = 1, .hi = MAX_SIZE},
    {.name = "stride",
     .meta = "S",
     .type = NB_ARG_INT,
     .field = offsetof(nb_layer_spec, stride),
     .flags = NB_ARG_KEY,
     .lo = 1,
     .hi = MAX_SIZE,
     .def_field = offsetof(nb_layer_spec, size)},
    {.name = "padding", .type = NB_ARG_PADDING, .field = offsetof(nb_layer_spec, padding), .flags = NB_ARG_KEY},
};

static nb_node *build(nb_layer_ctx *c, const nb_layer_spec *l, nb_node *x, nb_node **pre)
{
    if (!nb_layer_need_rank(c, x, 4, "pooling needs an image input (N, H, W, C)", "")) return NULL;
    /* A max pool right after a convolution, windows not overlapping: one
     * fused op (the convolution's full output never stored, its sparse dZ
     * built directly); the convolution's node keeps its shape. */
    nb_node *z = l->kind == NB_LAYER_MAXPOOL ? nb_fuse_conv2d_maxpool(x, l->size, l->stride, l->padding) : NULL;
    if (!z)
        z = l->kind == NB_LAYER_MAXPOOL ? nb_max_pool2d(x, l->size, l->stride, l->padding)
                                        : nb_avg_pool2d(x, l->size, l->stride, l->padding);
    return nb_layer_finish(z, NB_ACT_NONE, pre);
}

const nb_layer_type nb_layer_maxpool = {
    .kind = NB_LAYER_MAXPOOL,
    .keyword = "maxpool",
    .aliases = (const char *const[]){"maxpool2d", NULL},
    .args = args,
    .nargs = 3,
    .example = "maxpool 2 stride=1 padding=same",
    .build = build,
};

const nb_layer_type nb_layer_avgpool = {
    .kind = NB_LAYER_AVGPOOL,
    .keyword = "avgpool",
    .aliases = (const char *const[]){"avgpool2d", NULL},
    .args = args,
    .nargs = 3,
    .example = "avgpool 3 stride=2",
    .build = build,
};
