/* Sharpness during training (nb_train_opts.sharpness_every): lambda_max, the
 * largest eigenvalue of the Hessian H of the mean loss L(w) on a fixed batch
 * with respect to all trainable parameters w, by nb_hessian_eigs (subspace
 * iteration on exact Hessian-vector products).
 *
 * Why it matters: near w, L(w - lr g) ~ L(w) - lr g^T g + lr^2/2 g^T H g, and
 * along a unit eigenvector u of H with eigenvalue l a plain gradient step
 * maps the error e to (1 - lr l) e: it shrinks exactly when lr < 2 / l. So
 * plain gradient descent is stable while lambda_max < 2 / lr; Cohen et al.
 * (2021) found that under full-batch gradient descent lambda_max rises to
 * about 2 / lr and hovers there. The library measures; printing and
 * plotting are the caller's (the CLI's train --sharpness). */
#include "nn_internal.h"

#include "../dist/dist_internal.h" /* nb_train_load_rows */

#include <math.h>
#include <stdlib.h>
#include <string.h>

nb_status nb_train_sharpness_check(const nb_train_opts *opts)
{
    if (opts->sharpness_every < 0)
        return nb_fail(NB_ERR_ARG, "train: sharpness_every must be >= 0 (0: never), got %lld",
                       (long long)opts->sharpness_every);
    if (opts->sharpness_batch < 0)
        return nb_fail(NB_ERR_ARG, "train: sharpness_batch must be >= 0 (0: the training batch size), got %lld",
                       (long long)opts->sharpness_batch);
    if (opts->sharpness_every > 0 && !opts->on_sharpness)
        return nb_fail(NB_ERR_ARG, "train: sharpness_every is set but on_sharpness is NULL; give a callback to "
                                   "receive the measurements");
    return NB_OK;
}

/* The trainable parameters (any number: a ResNet has hundreds) into a new
 * array *params (free it). */
static nb_status trainable_params(nb_model *m, nb_node ***params, int *np)
{
    *np = 0;
    if (!(*params = malloc(sizeof **params * (size_t)(m->nparams + 1))))
        return nb_fail(NB_ERR_NOMEM, "train: sharpness: out of memory for %d parameter tensors", m->nparams);
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i]->requires_grad) (*params)[(*np)++] = m->params[i];
    if (*np) return NB_OK;
    free(*params), *params = NULL;
    return nb_fail(NB_ERR_ARG, "train: sharpness: the model has no trainable parameters");
}

/* y = (H - shift I) x for K flat vectors over the parameters (nb_hvp). */
typedef struct {
    nb_node *loss, **params;
    int np;
    int64_t n;
    double shift;
} shifted_op;

static nb_status shifted_hvp(void *user, int64_t K, const nb_real *x, nb_real *y)
{
    shifted_op *h = user;
    nb_tensor **vs = calloc((size_t)(2 * h->np), sizeof *vs);
    if (!vs) return nb_fail(NB_ERR_NOMEM, "train: sharpness: out of memory for %d parameter tensors", h->np);
    nb_tensor **hv = vs + h->np;
    nb_status s = NB_OK;
    int64_t off = 0;
    for (int i = 0; i < h->np && !s; i++) { /* (K, n) -> per parameter (K,) + shape */
        const nb_tensor *p = &h->params[i]->value;
        int64_t shape[NB_MAX_RANK + 1] = {K};
        memcpy(shape + 1, p->shape, sizeof(int64_t) * (size_t)p->rank);
        if (!(vs[i] = nb_tensor_new(p->rank + 1, shape))) s = NB_ERR_NOMEM;
        for (int64_t k = 0; !s && k < K; k++)
            memcpy(vs[i]->data + k * p->size, x + k * h->n + off, (size_t)p->size * sizeof(nb_real));
        off += p->size;
    }
    if (!s) s = nb_hvp(h->loss, h->np, h->params, (const nb_tensor *const *)vs, hv);
    off = 0;
    for (int i = 0; i < h->np && !s; i++) {
        const int64_t m = h->params[i]->value.size;
        for (int64_t k = 0; k < K; k++)
            for (int64_t e = 0; e < m; e++) {
                const int64_t at = k * h->n + off + e;
                y[at] = (nb_real)((double)hv[i]->data[k * m + e] - h->shift * (double)x[at]);
            }
        off += m;
    }
    for (int i = 0; i < h->np; i++)
        nb_tensor_free(vs[i]), nb_tensor_free(hv[i]);
    free(vs);
    return s;
}

/* The largest (algebraic) eigenvalue. nb_hessian_eigs gives those of largest
 * magnitude; when the largest of them is negative (a saddle's negative
 * curvature dominates), the top of H - l I with l that negative value is
 * lambda_max - l >= 0 (the spectrum shifted into [0, lambda_max - l]), so
 * a second run on it gives lambda_max. */
static nb_status top_eigenvalue(nb_node *loss, nb_node **params, int np, const nb_eigs_opts *o, nb_sharpness *r)
{
    nb_eigs_result e = {0};
    nb_status s = nb_hessian_eigs(loss, np, params, o, &e);
    if (s) return s;
    double top = e.values[0];
    for (int i = 1; i < e.k; i++)
        top = fmax(top, e.values[i]);
    nb_tensor_free(e.vectors);
    r->lambda_max = top, r->iterations = e.iterations, r->converged = e.converged, r->products = e.products;
    if (top >= 0) return NB_OK;
    shifted_op h = {loss, params, np, 0, top};
    for (int i = 0; i < np; i++)
        h.n += params[i]->value.size;
    nb_eigs_opts one = *o;
    one.k = 1;
    if ((s = nb_linop_eigs(h.n, shifted_hvp, &h, &one, &e))) return s;
    nb_tensor_free(e.vectors);
    r->lambda_max = e.values[0] + top;
    r->iterations += e.iterations, r->converged = r->converged && e.converged, r->products += e.products;
    return NB_OK;
}

nb_status nb_train_sharpness(nb_model *m, nb_node *loss, const nb_dataset *d, const nb_train_opts *opts, int64_t xrow,
                             int64_t yrow, int64_t step, int epoch, double lr, int *stop)
{
    const int64_t n = d->x->shape[0];
    int64_t b = opts->sharpness_batch ? opts->sharpness_batch : opts->batch;
    if (b > n) b = n;
    nb_node **params;
    int np;
    nb_status s = trainable_params(m, &params, &np);
    if (s) return s;
    const bool was_training = m->g->training;
    nb_graph_set_training(m->g, 0, opts->seed); /* dropout off */
    nb_sharpness r = {.step = step, .epoch = epoch, .lr = lr, .batch = b, .lambda_max = NAN};
    if (!(s = nb_train_load_rows(m, d, NULL, 0, b, xrow, yrow)) && !(s = nb_forward_upto(loss))) {
        r.loss = loss->value.data[0];
        s = top_eigenvalue(loss, params, np, &opts->sharpness_eigs, &r);
    }
    nb_graph_set_training(m->g, was_training, opts->seed);
    free(params);
    if (s) return s;
    if (opts->on_sharpness(&r, opts->user)) *stop = 1;
    return NB_OK;
}
