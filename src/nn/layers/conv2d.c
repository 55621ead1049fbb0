/* conv2d FILTERS SIZE [ACT] [stride=S] [padding=valid|same|P] [dilation=D]:
 * Z = X * K + b with X (N, H, W, C_in), K (SIZE, SIZE, C_in, FILTERS)
 * (Keras's layout), b (FILTERS); then the activation. With relu the fused
 * op nb_conv2d_relu applies it per image group (no pre-activation tensor).
 * padding=P pads P zeros on every side (PyTorch's padding=P), which 'same'
 * (TensorFlow's rule: the odd pixel after) does not express at stride 2. */
#include "layers.h"

enum { MAX_FILTERS = 1 << 20, MAX_SIZE = 1024 };

static const nb_layer_arg args[] = {
    {.name = "FILTERS", .type = NB_ARG_INT, .field = offsetof(nb_layer_spec, units), .lo = 1, .hi = MAX_FILTERS},
    {.name = "SIZE", .type = NB_ARG_KSIZE, .field = offsetof(nb_layer_spec, size), .lo = 1, .hi = MAX_SIZE},
    {.name = "ACT", .type = NB_ARG_ACT, .field = offsetof(nb_layer_spec, act), .flags = NB_ARG_OPTIONAL},
    {.name = "stride",
     .meta = "S",
     .type = NB_ARG_INT,
     .field = offsetof(nb_layer_spec, stride),
     .flags = NB_ARG_KEY,
     .lo = 1,
     .hi = MAX_SIZE,
     .def = 1},
    {.name = "padding", /* valid | same | P: hi > 0 lets it take a number of pixels */
     .type = NB_ARG_PADDING,
     .field = offsetof(nb_layer_spec, padding),
     .flags = NB_ARG_KEY,
     .hi = MAX_SIZE},
    {.name = "dilation",
     .meta = "D",
     .type = NB_ARG_INT,
     .field = offsetof(nb_layer_spec, dilation),
     .flags = NB_ARG_KEY,
     .lo = 1,
     .hi = MAX_SIZE,
     .def = 1},
};

static const nb_layer_param_decl params[] = {{"kernel", NB_PARAM_WEIGHT}, {"bias", NB_PARAM_BIAS}};

static nb_node *build(nb_layer_ctx *c, const nb_layer_spec *l, nb_node *x, nb_node **pre)
{
    if (!nb_layer_need_rank(c, x, 4, "conv2d needs an image input (N, H, W, C)", "")) return NULL;
    int64_t ks[4] = {l->size, l->size, nb_value(x)->shape[3], l->units}, bs[1] = {l->units};
    nb_node *k = nb_layer_param(c, 0, 4, ks), *b = nb_layer_param(c, 1, 1, bs);
    if (!k || !b) return NULL;
    nb_conv2d_opts o = {l->stride ? l->stride : 1, l->dilation ? l->dilation : 1, l->padding, l->pad};
    if (l->act == NB_ACT_RELU) return *pre = nb_conv2d_relu(x, k, b, &o);
    return nb_layer_finish(nb_conv2d(x, k, b, &o), l->act, pre);
}

const nb_layer_type nb_layer_conv2d = {
    .kind = NB_LAYER_CONV2D,
    .keyword = "conv2d",
    .args = args,
    .nargs = 6,
    .params = params,
    .nparams = 2,
    .example = "conv2d 4 3 relu stride=2 padding=same dilation=2",
    .build = build,
};
