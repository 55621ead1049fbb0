/* The Hessian of a model's mean loss over a data set, as a product, and its
 * top eigenvalues and trace (nb_model_data_hvp, nb_model_hessian_eigs,
 * nb_model_hessian_trace), on one process or on several (nb_comm).
 *
 * The n examples are cut into S = ceil(n / shard) shards of `shard`
 * examples (the last one may be shorter). Shard j's products are the exact
 * HVPs of its mean loss (nb_hvp's forward-over-reverse pass), weighted by
 * its share s_j / n, so that
 *     H v = sum_j (s_j / n) H_j v,
 * and the sum runs over the fixed binary tree of shards (nb_fixed_sum):
 * rank r computes shards [S r / P, S (r + 1) / P) on its own copy of the
 * model, and every rank gets the same sum, with the same bits for any
 * number of processes P (at a given thread count per process: a shard's
 * products depend on its examples, the weights, the vectors and the
 * threads of its passes). The eigen-solver and the trace estimator then
 * run the same iterations on every rank. */
#include "../autodiff/autodiff_internal.h"
#include "dist_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CURV_SHARD_DEFAULT = 250 };
/* The rows a rank keeps before the sum: ceil(S / P) x K x n values. */
#define CURV_MAX_BYTES ((double)(1u << 30))

typedef struct {
    nb_model *m;
    const nb_dataset *d;
    nb_node *loss;
    nb_node **params;        /* the np trainable tensors (any number: a ResNet has hundreds) */
    const nb_real **vectors; /* np scratch pointers, one per tensor, for nb_hvp_raw */
    int np;
    int64_t n, xrow, yrow, shard, S;
    const nb_comm *comm;
} data_op;

/* The model's trainable parameters, the loss and the data set's fit. */
static nb_status data_op_make(nb_model *m, const nb_dataset *d, const nb_data_hessian_opts *o, data_op *h)
{
    memset(h, 0, sizeof *h);
    if (!m || !o) return nb_fail(NB_ERR_ARG, "curvature: model or options is NULL");
    if (o->shard < 0)
        return nb_fail(NB_ERR_ARG, "curvature: shard size must be >= 1 (0: %d), got %lld", CURV_SHARD_DEFAULT,
                       (long long)o->shard);
    nb_status s = nb_comm_check(o->comm, "curvature");
    if (!s) s = nb_model_loss(m, o->loss, NULL, &h->loss);
    if (!s) s = nb_train_check_data(m, d, "curvature", &h->xrow, &h->yrow);
    if (s) return s;
    h->m = m, h->d = d, h->comm = o->comm;
    h->shard = o->shard ? o->shard : CURV_SHARD_DEFAULT;
    h->S = (d->x->shape[0] + h->shard - 1) / h->shard;
    h->params = malloc(sizeof *h->params * (size_t)(m->nparams + 1));
    h->vectors = malloc(sizeof *h->vectors * (size_t)(m->nparams + 1));
    if (!h->params || !h->vectors)
        return nb_fail(NB_ERR_NOMEM, "curvature: out of memory for %d parameter tensors", m->nparams);
    for (int i = 0; i < m->nparams; i++) {
        if (!m->params[i]->requires_grad) continue;
        h->params[h->np++] = m->params[i];
        h->n += m->params[i]->value.size;
    }
    if (!h->n) return nb_fail(NB_ERR_ARG, "curvature: the model has no trainable parameters");
    return NB_OK;
}

static void data_op_free(data_op *h)
{
    free(h->params);
    free(h->vectors);
    h->params = NULL, h->vectors = NULL;
}

/* Shard j's K products, weighted by s_j / N, into row (K x n, vectors
 * concatenated by parameter as x is). split: K x n scratch. */
static nb_status shard_products(data_op *h, int64_t j, int64_t K, const nb_real *x, nb_real *split, nb_real *row)
{
    const int64_t N = h->d->x->shape[0], j0 = j * h->shard, sj = N - j0 < h->shard ? N - j0 : h->shard;
    nb_status s = nb_train_load_rows(h->m, h->d, NULL, j0, sj, h->xrow, h->yrow);
    if (!s) s = nb_forward_again(h->m->g);
    const nb_real **vectors = h->vectors;
    int64_t off = 0;
    for (int i = 0; i < h->np && !s; i++) { /* (K, n) -> per parameter (K, |p_i|) */
        const int64_t m = h->params[i]->value.size;
        for (int64_t k = 0; k < K; k++)
            memcpy(split + off * K + k * m, x + k * h->n + off, (size_t)m * sizeof(nb_real));
        vectors[i] = split + off * K;
        off += m;
    }
    const nb_real one = 1;
    if (!s) s = nb_hvp_raw(h->loss, &one, K, h->np, h->params, vectors);
    const nb_real w = (nb_real)((double)sj / (double)N);
    off = 0;
    for (int i = 0; i < h->np && !s; i++) {
        const int64_t m = h->params[i]->value.size;
        const nb_real *hv = nb_hvp_result(h->params[i]);
        for (int64_t k = 0; k < K; k++) {
            nb_real *dst = row + k * h->n + off;
            for (int64_t e = 0; e < m; e++)
                dst[e] = hv ? w * hv[k * m + e] : 0;
        }
        off += m;
    }
    return s;
}

/* y = H x for K vectors (nb_linop). */
static nb_status data_op_apply(void *user, int64_t K, const nb_real *x, nb_real *y)
{
    data_op *h = user;
    const int P = h->comm ? h->comm->size : 1, r = h->comm ? h->comm->rank : 0;
    const double rows = (double)((h->S + P - 1) / P);
    if (K < 1) return nb_fail(NB_ERR_ARG, "curvature: %lld vectors; give at least 1", (long long)K);
    if (rows * (double)K * (double)h->n * sizeof(nb_real) > CURV_MAX_BYTES)
        return nb_fail(NB_ERR_TOO_LARGE,
                       "curvature: %.0f shards of %lld examples x %lld vectors x %lld parameters need %.2f GiB per "
                       "process (over 1 GiB); use larger shards, fewer examples or more processes",
                       rows, (long long)h->shard, (long long)K, (long long)h->n,
                       rows * (double)K * (double)h->n * sizeof(nb_real) / CURV_MAX_BYTES);
    nb_fixed_sum f;
    /* A failure here is this rank's alone: it still joins the status
     * exchange below, so the others do not wait for it. */
    nb_status s = nb_fixed_sum_init(&f, h->comm, h->S, K * h->n, "curvature");
    nb_real *split = s ? NULL : malloc((size_t)(K * h->n) * sizeof(nb_real));
    if (!s && !split) s = nb_fail(NB_ERR_NOMEM, "curvature: out of memory for %lld vectors", (long long)K);
    const int64_t lo = nb_fixed_sum_first(h->S, r, P), hi = nb_fixed_sum_first(h->S, r + 1, P);
    for (int64_t j = lo; j < hi && !s; j++)
        s = shard_products(h, j, K, x, split, nb_fixed_sum_row(&f, j - lo));
    /* Every rank learns whether one failed before the sum, so that none
     * returns a sum that lacks a rank's shards. */
    s = nb_comm_any_failed(h->comm, s, "curvature");
    const nb_real *sum = NULL;
    if (!s) s = nb_fixed_sum_run(&f, h->S, &sum);
    if (!s) memcpy(y, sum, (size_t)(K * h->n) * sizeof(nb_real));
    free(split);
    nb_fixed_sum_free(&f);
    return s;
}

/* Every rank's hash of (data, weights, shard) against rank 0's. */
static nb_status same_on_ranks(const data_op *h, const char *who)
{
    if (!h->comm || h->comm->size < 2) return NB_OK;
    uint64_t mine = nb_shards_weight_hash(h->m);
    mine = nb_hash_bytes(mine, h->d->x->data, (size_t)h->d->x->size * sizeof(nb_real));
    mine = nb_hash_bytes(mine, h->d->y->data, (size_t)h->d->y->size * sizeof(nb_real));
    mine = nb_hash_bytes(mine, &h->shard, sizeof h->shard);
    return nb_comm_same_hash(h->comm, mine, who, "data, weights or shard size",
                             "give every rank the same model, data set and options");
}

/* data_op_make, and with comm every rank learns whether one failed, so
 * that no rank goes on into a collective that a failed one skips. */
static nb_status make_on_all_ranks(nb_model *m, const nb_dataset *d, const nb_data_hessian_opts *o, data_op *h,
                                   const char *who)
{
    nb_status s = data_op_make(m, d, o, h);
    if (o && nb_comm_usable(o->comm)) s = nb_comm_any_failed(o->comm, s, who);
    return s;
}

nb_status nb_model_data_hvp(nb_model *m, const nb_dataset *d, const nb_data_hessian_opts *o, int64_t K,
                            const nb_real *x, nb_real *y)
{
    data_op h;
    nb_status s = data_op_make(m, d, o, &h);
    if (!s && (!x || !y)) s = nb_fail(NB_ERR_ARG, "curvature: x or y is NULL");
    if (o && nb_comm_usable(o->comm)) s = nb_comm_any_failed(o->comm, s, "curvature");
    if (!s) s = data_op_apply(&h, K, x, y);
    data_op_free(&h);
    return s;
}

int64_t nb_model_hessian_dim(const nb_model *m)
{
    int64_t n = 0;
    for (int i = 0; m && i < m->nparams; i++)
        if (m->params[i]->requires_grad) n += m->params[i]->value.size;
    return n;
}

nb_status nb_model_hessian_eigs(nb_model *m, const nb_dataset *d, const nb_data_hessian_opts *o, const nb_eigs_opts *eo,
                                nb_eigs_result *res)
{
    data_op h;
    if (res) memset(res, 0, sizeof *res);
    nb_status s = make_on_all_ranks(m, d, o, &h, "curvature eigs");
    if (!s) s = same_on_ranks(&h, "curvature eigs");
    if (!s) s = nb_linop_eigs(h.n, data_op_apply, &h, eo, res);
    data_op_free(&h);
    return s;
}

nb_status nb_model_hessian_trace(nb_model *m, const nb_dataset *d, const nb_data_hessian_opts *o, int samples,
                                 uint64_t seed, nb_trace_result *res)
{
    data_op h;
    if (res) memset(res, 0, sizeof *res);
    nb_status s = make_on_all_ranks(m, d, o, &h, "curvature trace");
    if (!s) s = same_on_ranks(&h, "curvature trace");
    if (!s) s = nb_linop_trace(h.n, data_op_apply, &h, samples, seed, res);
    data_op_free(&h);
    return s;
}
