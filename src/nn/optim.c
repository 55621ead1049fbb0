/* Optimisers, with PyTorch's update rules (torch.optim), per parameter p
 * with gradient g and learning rate lr:
 *   SGD:      g += wd p; b = mu b + g (b = g at the first step);
 *             g = nesterov ? g + mu b : b (when mu > 0); p -= lr g
 *   Adam:     g += wd p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 *             p -= lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
 *   AdamW:    p *= 1 - lr wd, then Adam without the L2 term
 *   RMSprop:  g += wd p; v = a v + (1-a) g^2; with momentum mu:
 *             b = mu b + g / (sqrt(v) + eps); p -= lr b, else p -= lr g / (sqrt(v) + eps)
 * Keras's Adam differs only in its default eps (1e-7 vs PyTorch's 1e-8).
 * Gradient clipping scales all gradients by max_norm / norm when the global
 * L2 norm exceeds max_norm (torch.nn.utils.clip_grad_norm_). */
#include "nn_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

struct nb_optim {
    nb_model *m;
    nb_optim_opts o;
    double lr0, lr;
    int64_t t; /* steps taken */
    nb_real *state[NB_MODEL_MAX_PARAMS][2]; /* per param: m/momentum, v */
};

nb_status nb_optim_new(nb_model *m, const nb_optim_opts *opts, nb_optim **out)
{
    if (!m || !opts || !out) return nb_fail(NB_ERR_ARG, "optimizer: NULL argument");
    *out = NULL;
    nb_optim_opts o = *opts;
    if (!(o.lr > 0) || !isfinite(o.lr))
        return nb_fail(NB_ERR_ARG, "optimizer: the learning rate must be a positive number, got %g (try 1e-3)", o.lr);
    if (!(o.momentum >= 0 && o.momentum < 1))
        return nb_fail(NB_ERR_ARG, "optimizer: momentum must be in [0, 1), got %g", o.momentum);
    if (o.nesterov && o.momentum <= 0) return nb_fail(NB_ERR_ARG, "optimizer: nesterov needs momentum > 0");
    if (o.beta1 == 0) o.beta1 = 0.9;
    if (o.beta2 == 0) o.beta2 = 0.999;
    if (o.eps == 0) o.eps = 1e-8;
    if (o.alpha == 0) o.alpha = 0.99;
    if (o.kind == NB_OPT_ADAMW && o.weight_decay < 0) o.weight_decay = 0.01;
    if (!(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1 && o.eps > 0 && o.alpha > 0 && o.alpha < 1))
        return nb_fail(NB_ERR_ARG, "optimizer: betas and alpha must be in [0, 1), eps > 0");
    if (!(o.weight_decay >= 0) || !(o.clip_norm >= 0))
        return nb_fail(NB_ERR_ARG, "optimizer: weight decay and clip norm must be >= 0");
    if (o.schedule == NB_SCHED_STEP && (o.step_size < 1 || !(o.gamma > 0)))
        return nb_fail(NB_ERR_ARG, "optimizer: the step schedule needs step_size >= 1 and gamma > 0");
    if (o.schedule == NB_SCHED_EXPONENTIAL && !(o.gamma > 0))
        return nb_fail(NB_ERR_ARG, "optimizer: the exponential schedule needs gamma > 0");
    if (o.schedule == NB_SCHED_COSINE && o.total_epochs < 1)
        return nb_fail(NB_ERR_ARG, "optimizer: the cosine schedule needs total_epochs >= 1");
    if ((unsigned)o.kind > NB_OPT_RMSPROP) return nb_fail(NB_ERR_ARG, "optimizer: unknown kind %d", (int)o.kind);
    nb_optim *p = calloc(1, sizeof *p);
    if (!p) return nb_fail(NB_ERR_NOMEM, "optimizer: out of memory");
    p->m = m, p->o = o, p->lr0 = p->lr = o.lr;
    int nstate = o.kind == NB_OPT_SGD ? (o.momentum > 0) : o.kind == NB_OPT_RMSPROP ? 1 + (o.momentum > 0) : 2;
    for (int i = 0; i < m->nparams; i++)
        for (int j = 0; j < nstate; j++)
            if (!(p->state[i][j] = nb_calloc_real(m->params[i]->value.size))) {
                nb_optim_free(p);
                return NB_ERR_NOMEM;
            }
    *out = p;
    return NB_OK;
}

void nb_optim_free(nb_optim *o)
{
    if (!o) return;
    for (int i = 0; i < NB_MODEL_MAX_PARAMS; i++) nb_free(o->state[i][0]), nb_free(o->state[i][1]);
    free(o);
}

double nb_optim_lr(const nb_optim *o) { return o ? o->lr : 0; }

void nb_optim_set_epoch(nb_optim *o, int epoch)
{
    if (!o) return;
    const nb_optim_opts *p = &o->o;
    switch (p->schedule) {
    case NB_SCHED_CONSTANT: o->lr = o->lr0; break;
    case NB_SCHED_STEP: o->lr = o->lr0 * pow(p->gamma, epoch / p->step_size); break;
    case NB_SCHED_EXPONENTIAL: o->lr = o->lr0 * pow(p->gamma, epoch); break;
    case NB_SCHED_COSINE: {
        int e = epoch < p->total_epochs ? epoch : p->total_epochs;
        o->lr = p->min_lr + (o->lr0 - p->min_lr) * (1 + cos(3.14159265358979323846 * e / p->total_epochs)) / 2;
        break;
    }
    }
}

static double global_grad_norm(nb_model *m)
{
    double s = 0;
    for (int i = 0; i < m->nparams; i++) {
        const nb_tensor *g = nb_grad(m->params[i]);
        if (!g) continue;
        for (int64_t j = 0; j < g->size; j++) s += (double)g->data[j] * g->data[j];
    }
    return sqrt(s);
}

nb_status nb_optim_step(nb_optim *o)
{
    if (!o) return nb_fail(NB_ERR_ARG, "optimizer step: NULL optimizer");
    nb_model *m = o->m;
    const nb_optim_opts *p = &o->o;
    /* A step without the gradients of a completed backward pass would
     * silently change nothing (or apply old gradients): refuse it. */
    if (!m->g->grads_valid)
        return nb_fail(NB_ERR_ARG, "optimizer step: no gradients (the last nb_backward failed or none ran since the "
                                   "graph changed); run nb_forward and nb_backward first");
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i]->requires_grad && !nb_grad(m->params[i]))
            return nb_fail(NB_ERR_ARG, "optimizer step: parameter '%s' has no gradient; run nb_backward first",
                           m->params[i]->name);
    double clip = 1;
    if (p->clip_norm > 0) {
        double norm = global_grad_norm(m);
        if (norm > p->clip_norm) clip = p->clip_norm / (norm + 1e-6);
    }
    o->t++;
    const nb_real lr = (nb_real)o->lr, wd = (nb_real)p->weight_decay, mu = (nb_real)p->momentum;
    const nb_real b1 = (nb_real)p->beta1, b2 = (nb_real)p->beta2, eps = (nb_real)p->eps, a = (nb_real)p->alpha;
    const double bc1 = 1 - pow(p->beta1, (double)o->t), bc2 = 1 - pow(p->beta2, (double)o->t);
    for (int i = 0; i < m->nparams; i++) {
        nb_node *node = m->params[i];
        const nb_tensor *gt = nb_grad(node);
        if (!node->requires_grad || !gt) continue;
        nb_real *w = node->value.data, *s0 = o->state[i][0], *s1 = o->state[i][1];
        const nb_real *gr = gt->data;
        const int64_t n = node->value.size;
        const nb_real c = (nb_real)clip;
        switch (p->kind) {
        case NB_OPT_SGD:
            for (int64_t j = 0; j < n; j++) {
                nb_real g = c * gr[j] + wd * w[j];
                if (mu > 0) {
                    s0[j] = o->t == 1 ? g : mu * s0[j] + g;
                    g = p->nesterov ? g + mu * s0[j] : s0[j];
                }
                w[j] -= lr * g;
            }
            break;
        case NB_OPT_ADAM:
        case NB_OPT_ADAMW: {
            const nb_real step = (nb_real)(o->lr / bc1), rb2 = (nb_real)(1 / sqrt(bc2));
            const bool decoupled = p->kind == NB_OPT_ADAMW;
            for (int64_t j = 0; j < n; j++) {
                nb_real g = c * gr[j];
                if (decoupled) w[j] *= 1 - lr * wd;
                else g += wd * w[j];
                s0[j] = b1 * s0[j] + (1 - b1) * g;
                s1[j] = b2 * s1[j] + (1 - b2) * g * g;
                w[j] -= step * s0[j] / (RE(sqrt)(s1[j]) * rb2 + eps);
            }
            break;
        }
        case NB_OPT_RMSPROP:
            for (int64_t j = 0; j < n; j++) {
                nb_real g = c * gr[j] + wd * w[j];
                s0[j] = a * s0[j] + (1 - a) * g * g;
                nb_real u = g / (RE(sqrt)(s0[j]) + eps);
                if (mu > 0) u = s1[j] = mu * s1[j] + u;
                w[j] -= lr * u;
            }
            break;
        }
    }
    return NB_OK;
}

nb_status nb_optim_export(const nb_optim *o, nb_safetensors *st)
{
    if (!o || !st) return nb_fail(NB_ERR_ARG, "optimizer export: NULL argument");
    char name[128];
    for (int i = 0; i < o->m->nparams; i++)
        for (int j = 0; j < 2; j++) {
            if (!o->state[i][j]) continue;
            nb_tensor t = o->m->params[i]->value;
            t.data = o->state[i][j];
            snprintf(name, sizeof name, "optim.%s.%s", o->m->params[i]->name, j ? "v" : "m");
            nb_status s = nb_safetensors_add(st, name, &t);
            if (s) return s;
        }
    nb_status s = nb_safetensors_set_meta(st, "nabla.optimizer", nb_optimizer_name(o->o.kind));
    if (s) return s;
    /* The step count, exact in a double up to 2^53. */
    nb_real steps[2] = {(nb_real)(o->t >> 24), (nb_real)(o->t & 0xFFFFFF)};
    nb_tensor t = {1, {2}, 2, steps, 0};
    return nb_safetensors_add(st, "optim.step", &t);
}

nb_status nb_optim_import(nb_optim *o, const nb_safetensors *st)
{
    if (!o || !st) return nb_fail(NB_ERR_ARG, "optimizer import: NULL argument");
    /* Adam's m, RMSprop's square average and SGD's momentum share names:
     * state written by another optimiser must not be taken for ours. */
    const char *kind = nb_safetensors_meta(st, "nabla.optimizer");
    if (kind && strcmp(kind, nb_optimizer_name(o->o.kind)))
        return nb_fail(NB_ERR_FORMAT, "checkpoint: its optimizer state is %s's, not %s's (resume with --optimizer %s)",
                       kind, nb_optimizer_name(o->o.kind), kind);
    char name[128];
    for (int i = 0; i < o->m->nparams; i++)
        for (int j = 0; j < 2; j++) {
            if (!o->state[i][j]) continue;
            snprintf(name, sizeof name, "optim.%s.%s", o->m->params[i]->name, j ? "v" : "m");
            const nb_tensor *t = nb_safetensors_get(st, name);
            if (!t || t->size != o->m->params[i]->value.size)
                return nb_fail(NB_ERR_FORMAT, "checkpoint: optimizer state '%s' is missing or has the wrong size "
                                              "(was it saved with another optimizer?)", name);
            memcpy(o->state[i][j], t->data, (size_t)t->size * sizeof(nb_real));
        }
    const nb_tensor *t = nb_safetensors_get(st, "optim.step");
    if (!t || t->size != 2) return nb_fail(NB_ERR_FORMAT, "checkpoint: optim.step is missing");
    const double hi = t->data[0], lo = t->data[1];
    if (!(hi >= 0 && hi < 16777216 && lo >= 0 && lo < 16777216) || hi != (int64_t)hi || lo != (int64_t)lo)
        return nb_fail(NB_ERR_FORMAT, "checkpoint: optim.step holds (%g, %g), not a step count", hi, lo);
    o->t = ((int64_t)hi << 24) + (int64_t)lo;
    return NB_OK;
}
