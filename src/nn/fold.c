/* Folding batchnorm into the convolution or dense layer before it, for
 * inference. With s_c = gamma_c / sqrt(moving_variance_c + eps), the
 * inference-mode batchnorm of z = x W + b is
 *   y = (z - moving_mean) s + beta = x (W s) + ((b - moving_mean) s + beta),
 * so W[..., c] *= s_c and b_c := (b_c - moving_mean_c) s_c + beta_c (the last
 * axis of both kernel layouts is the output channel), and the batchnorm is
 * set to the identity: gamma 1, beta 0, moving_mean 0 and moving_variance
 * 1 - eps, so that its s is 1 / sqrt(1 - eps + eps), 1 in float. Only where
 * the layer before has no activation and its output is not named (nothing
 * else reads the unnormalised value). */
#include "layers/layers.h"

#include <math.h>

/* The layer's parameters in declaration order (at most 4). */
static int layer_params(const nb_model *m, int layer, nb_tensor **out)
{
    int k = 0;
    for (int i = 0; i < m->nparams && k < 4; i++)
        if (m->param_layer[i] == layer) out[k++] = &m->params[i]->value;
    return k;
}

static int foldable(const nb_model *m, int i)
{
    if (m->layers[i].kind != NB_LAYER_BATCHNORM || i == 0) return 0;
    const nb_layer_spec *p = &m->layers[i - 1];
    return (p->kind == NB_LAYER_CONV2D || p->kind == NB_LAYER_DENSE) && p->act == NB_ACT_NONE && !p->name[0];
}

static void fold_one(const nb_model *m, int i)
{
    nb_tensor *w[4], *bn[4];
    layer_params(m, i - 1, w);
    layer_params(m, i, bn);
    const double eps = m->layers[i].eps ? m->layers[i].eps : 1e-5;
    const int64_t C = bn[0]->size;
    for (int64_t c = 0; c < C; c++) {
        const double s = (double)bn[0]->data[c] / sqrt((double)bn[3]->data[c] + eps);
        for (int64_t e = c; e < w[0]->size; e += C)
            w[0]->data[e] = (nb_real)(w[0]->data[e] * s);
        w[1]->data[c] = (nb_real)(((double)w[1]->data[c] - bn[2]->data[c]) * s + bn[1]->data[c]);
        bn[0]->data[c] = 1, bn[1]->data[c] = 0, bn[2]->data[c] = 0, bn[3]->data[c] = (nb_real)(1 - eps);
    }
}

nb_status nb_model_fold_batchnorm(nb_model *m, int *folded)
{
    if (!m) return nb_fail(NB_ERR_ARG, "fold batchnorm: model is NULL");
    int k = 0;
    for (int i = 0; i < m->nlayers; i++)
        if (foldable(m, i)) fold_one(m, i), k++;
    if (folded) *folded = k;
    return NB_OK;
}
