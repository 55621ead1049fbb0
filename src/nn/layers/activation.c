/* A bare activation layer: its keyword is the activation (relu, sigmoid,
 * tanh, softmax, ...; linear is the identity, "none" in older files). Also
 * the activations of every layer that takes an ACT argument. */
#include "layers.h"

nb_node *nb_layer_activate(nb_node *z, nb_activation a)
{
    switch (a) {
    case NB_ACT_NONE: return z;
    case NB_ACT_RELU: return nb_relu(z);
    case NB_ACT_SIGMOID: return nb_sigmoid(z);
    case NB_ACT_TANH: return nb_tanh(z);
    case NB_ACT_SOFTMAX: return nb_softmax(z);
    case NB_ACT_LOG_SOFTMAX: return nb_log_softmax(z);
    case NB_ACT_LEAKY_RELU: return nb_leaky_relu(z, 0.01); /* Keras's and PyTorch's slope */
    case NB_ACT_ELU: return nb_elu(z, 1.0);
    case NB_ACT_SOFTPLUS: return nb_softplus(z);
    case NB_ACT_GELU: return nb_gelu(z);
    }
    nb_fail(NB_ERR_ARG, "unknown activation %d", (int)a);
    return NULL;
}

static nb_node *build(nb_layer_ctx *c, const nb_layer_spec *l, nb_node *x, nb_node **pre)
{
    return nb_layer_finish(x, l->act, pre);
}

static int identity(const nb_layer_spec *l)
{
    return l->act == NB_ACT_NONE;
}

const nb_layer_type nb_layer_activation = {
    .kind = NB_LAYER_ACTIVATION,
    .keyword = "activation",
    .act_is_keyword = 1,
    .example = "softmax",
    .build = build,
    .identity = identity,
};
