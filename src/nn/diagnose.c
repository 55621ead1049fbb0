/* Per-layer training diagnostics (nb_model_diagnose, nb_train's diagnose):
 * the gradient norm of each layer's parameters, the ratio of a step's update
 * to the weights, the fraction of dead ReLU channels and of saturated
 * sigmoid/tanh outputs. Vanishing gradients show as grad norms that shrink
 * towards the first layers, dead units as a dead fraction near 1,
 * saturation as saturated fractions near 1 (the derivative is then ~0).
 * The update ratio is the usual "about 1e-3" rule of thumb (Karpathy's
 * CS231n notes): far below, the layer barely learns; far above, it jumps. */
#include "nn_internal.h"

#include <math.h>
#include <stdlib.h>

/* Output within 0.01 of the activation's limits: sigmoid(x) < 0.01 or
 * > 0.99 is |x| > 4.595; |tanh(x)| > 0.99 is |x| > 2.647. */
#define NB_DIAG_SATURATION 0.01

/* The node holding layer i's values: a convolution fused with its pool is
 * read through the pooled output (max of relu values: 0 exactly when every
 * value of the window is 0, so dead channels are the same). */
static const nb_tensor *layer_values(const nb_model *m, int i, int *pooled)
{
    const nb_node *n = m->layer_out[i];
    *pooled = n->fused_into != NULL;
    return n->fused_into ? &n->fused_into->value : &n->value;
}

/* Channels (the last axis) that are exactly 0 at every example and position. */
static double dead_fraction(const nb_tensor *v)
{
    const int64_t C = v->rank ? v->shape[v->rank - 1] : 0, rows = C ? v->size / C : 0;
    if (!C || !rows) return NAN;
    int64_t dead = 0;
    for (int64_t c = 0; c < C; c++) {
        int64_t r = 0;
        while (r < rows && v->data[r * C + c] == 0) /* a NaN is no dead unit: it propagates */
            r++;
        dead += r == rows;
    }
    return (double)dead / (double)C;
}

static double saturated_fraction(const nb_tensor *v, nb_activation act)
{
    if (!v->size) return NAN;
    const double lo = act == NB_ACT_SIGMOID ? 0 : -1, hi = 1;
    int64_t sat = 0;
    for (int64_t i = 0; i < v->size; i++) {
        const double y = v->data[i];
        sat += y < lo + NB_DIAG_SATURATION || y > hi - NB_DIAG_SATURATION;
    }
    return (double)sat / (double)v->size;
}

/* The L2 norms of layer i's parameters and of their gradients. */
static void layer_norms(nb_model *m, int i, nb_layer_diag *d)
{
    double w2 = 0, g2 = 0;
    d->params = 0;
    for (int p = 0; p < m->nparams; p++) {
        if (m->param_layer[p] != i) continue;
        const nb_tensor *w = &m->params[p]->value, *g = nb_grad(m->params[p]);
        d->params += w->size;
        for (int64_t k = 0; k < w->size; k++)
            w2 += (double)w->data[k] * (double)w->data[k];
        for (int64_t k = 0; g && k < g->size; k++)
            g2 += (double)g->data[k] * (double)g->data[k];
    }
    d->weight_norm = d->params ? sqrt(w2) : NAN;
    d->grad_norm = d->params ? sqrt(g2) : NAN;
}

nb_status nb_model_diagnose(nb_model *m, nb_layer_diag *out, int n)
{
    if (!m || !out) return nb_fail(NB_ERR_ARG, "diagnose: NULL argument");
    if (n < m->nlayers) return nb_fail(NB_ERR_ARG, "diagnose: room for %d layers, the model has %d", n, m->nlayers);
    if (!m->g->grads_valid)
        return nb_fail(NB_ERR_ARG, "diagnose: run nb_backward of the model's loss first (no completed backward pass)");
    if (m->g->shapes_dirty)
        return nb_fail(NB_ERR_ARG, "diagnose: the batch size changed since the last pass: run nb_forward and "
                                   "nb_backward again");
    for (int i = 0; i < m->nlayers; i++) {
        nb_layer_diag *d = &out[i];
        const nb_layer_spec *l = &m->layers[i];
        *d = (nb_layer_diag){.layer = i, .update_ratio = NAN, .dead_fraction = NAN, .saturated_fraction = NAN};
        layer_norms(m, i, d);
        const int has_act = l->kind == NB_LAYER_DENSE || l->kind == NB_LAYER_CONV2D || l->kind == NB_LAYER_ACTIVATION;
        d->act = has_act ? l->act : NB_ACT_NONE;
        int pooled;
        const nb_tensor *v = layer_values(m, i, &pooled);
        d->units = v->rank ? v->shape[v->rank - 1] : 0;
        if (d->act == NB_ACT_RELU)
            d->dead_fraction = dead_fraction(v);
        else if ((d->act == NB_ACT_SIGMOID || d->act == NB_ACT_TANH) && !pooled)
            d->saturated_fraction = saturated_fraction(v, d->act);
    }
    return NB_OK;
}

/* Parameters into before (nb_model_num_params values, in parameter order). */
void nb_diag_snapshot(const nb_model *m, nb_real *before)
{
    for (int p = 0; p < m->nparams; p++) {
        const nb_tensor *w = &m->params[p]->value;
        memcpy(before, w->data, (size_t)w->size * sizeof(nb_real));
        before += w->size;
    }
}

/* After the step: each layer's ||w - before|| / ||w|| and its weight norm. */
void nb_diag_update_ratio(const nb_model *m, const nb_real *before, nb_layer_diag *d)
{
    double *du = calloc((size_t)m->nlayers, sizeof *du), *w2 = calloc((size_t)m->nlayers, sizeof *w2);
    if (!du || !w2) {
        free(du), free(w2);
        return; /* the ratios stay NaN */
    }
    for (int p = 0; p < m->nparams; p++) {
        const nb_tensor *w = &m->params[p]->value;
        const int i = m->param_layer[p];
        for (int64_t k = 0; k < w->size; k++) {
            const double x = w->data[k], dx = x - (double)before[k];
            du[i] += dx * dx, w2[i] += x * x;
        }
        before += w->size;
    }
    for (int i = 0; i < m->nlayers; i++)
        if (d[i].params) {
            d[i].weight_norm = sqrt(w2[i]);
            d[i].update_ratio = w2[i] > 0 ? sqrt(du[i]) / sqrt(w2[i]) : (du[i] > 0 ? INFINITY : 0);
        }
    free(du), free(w2);
}
