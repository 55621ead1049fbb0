/* Reproducible data-parallel training steps.
 *
 * A global batch of b examples is cut into S = ceil(b / shard) shards of
 * `shard` examples (the last one may be shorter). Shard j's gradient g_j is
 * the gradient of its mean loss, computed by one thread with no inner
 * parallelism on that thread's copy of the model (its replica), so its bits
 * depend on the shard's examples and the weights only. The batch's gradient
 * is
 *     G = sum_j (s_j / b) g_j        (s_j: shard j's size),
 * the mean loss's gradient, summed over a fixed binary tree of shards: the
 * stride-doubling tree (rows j and j + w added for w = 1, 2, 4, ...), which
 * depends on S alone. Shards are spread over ranks in contiguous runs
 * (rank r: [S r / P, S (r + 1) / P)) and over the rank's threads; where a
 * shard was computed never changes the sum, so the weights are
 * bit-identical for any number of ranks P and threads T.
 *
 * The sum itself, over ranks too, is nb_fixed_sum (fixed_sum.c).
 */
#include "dist_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NB_SHARDS_MAX_THREADS = 256, NB_SHARD_DEFAULT = 16 };

struct nb_shards {
    nb_model *rep[NB_SHARDS_MAX_THREADS]; /* rep[0]: the caller's model */
    nb_node *loss[NB_SHARDS_MAX_THREADS];
    uint64_t rep_version[NB_SHARDS_MAX_THREADS], version;
    int nrep;
    const nb_comm *comm;
    int rank, size;
    nb_loss_kind kind;
    uint64_t seed;
    nb_augment augment;        /* nb_train_opts.augment */
    int64_t shard, xrow, yrow;
    int64_t L, Qmax;           /* gradient length, shard slots per rank */
    nb_fixed_sum sum;          /* this rank's weighted shard gradients, summed over all ranks' */
    double *stats, *all_stats; /* Qmax x 2 (loss x s_j, correct), size x Qmax x 2 */
};

static int64_t ceil_div(int64_t a, int64_t b)
{
    return (a + b - 1) / b;
}

/* Rank r's shards of S: [S r / P, S (r + 1) / P). */
static int64_t first_shard(int64_t S, int r, int P)
{
    return nb_fixed_sum_first(S, r, P);
}

static int64_t grad_length(nb_model *m)
{
    int64_t L = 0;
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i]->requires_grad) L += m->params[i]->value.size;
    return L;
}

static nb_status make_replica(nb_shards *e, int t)
{
    nb_model *m = e->rep[0], *r;
    nb_status s = nb_model_from_spec(nb_model_spec(m), m->in_rank, m->in_shape, &r);
    if (s) return s;
    if (r->nparams != m->nparams) {
        nb_model_free(r);
        return nb_fail(NB_ERR_ARG, "reproducible training: a copy of the model has %d parameters, the model %d",
                       r->nparams, m->nparams);
    }
    for (int i = 0; i < m->nparams; i++)
        r->params[i]->requires_grad = m->params[i]->requires_grad;
    nb_graph_set_check_numerics(r->g, m->g->check_numerics);
    e->rep[t] = r;
    return nb_model_loss(r, e->kind, NULL, &e->loss[t]);
}

static nb_status alloc_buffers(nb_shards *e, int64_t batch)
{
    const int64_t S = ceil_div(batch, e->shard);
    e->Qmax = ceil_div(S, e->size);
    nb_status s = nb_fixed_sum_init(&e->sum, e->comm, S, e->L, "reproducible training");
    if (s) return s;
    e->stats = calloc((size_t)(e->Qmax * 2), sizeof(double));
    if (e->size > 1) e->all_stats = calloc((size_t)(e->size * e->Qmax * 2), sizeof(double));
    if (!e->stats || (e->size > 1 && !e->all_stats))
        return nb_fail(NB_ERR_NOMEM, "reproducible training: out of memory for shard gradients");
    return NB_OK;
}

/* One backward pass on the master at one example, so its gradient buffers
 * exist even on a rank that computes no shard of a step (S < P). */
static nb_status warm_master(nb_shards *e, const nb_dataset *d)
{
    nb_status s = nb_train_load_rows(e->rep[0], d, NULL, 0, 1, e->xrow, e->yrow);
    if (!s) nb_graph_set_training(e->rep[0]->g, 1, e->seed);
    if (!s) s = nb_forward_keyed(e->loss[0], 0);
    if (!s) s = nb_backward(e->loss[0]);
    nb_graph_set_training(e->rep[0]->g, 0, e->seed);
    return s;
}

nb_status nb_shards_new(nb_model *m, nb_node *loss, const nb_dataset *d, const nb_train_opts *opts, int64_t xrow,
                        int64_t yrow, nb_shards **out)
{
    *out = NULL;
    const nb_comm *c = opts->comm;
    if (opts->shard < 0)
        return nb_fail(NB_ERR_ARG, "train: shard size must be >= 1 (0: 16), got %lld", (long long)opts->shard);
    if (nb_comm_check(c, "train")) return NB_ERR_ARG;
    nb_shards *e = calloc(1, sizeof *e);
    if (!e) return nb_fail(NB_ERR_NOMEM, "train: out of memory");
    e->rep[0] = m, e->loss[0] = loss, e->nrep = 1, e->version = 1;
    e->comm = c, e->rank = c ? c->rank : 0, e->size = c ? c->size : 1;
    e->augment = opts->augment;
    e->kind = opts->loss, e->seed = opts->seed, e->shard = opts->shard ? opts->shard : NB_SHARD_DEFAULT;
    e->xrow = xrow, e->yrow = yrow, e->L = grad_length(m);
    int T = nb_get_num_threads();
    T = T < 1 ? 1 : T > NB_SHARDS_MAX_THREADS ? NB_SHARDS_MAX_THREADS : T;
    nb_status s = alloc_buffers(e, opts->batch);
    for (int t = 1; t < T && !s; t++, e->nrep++)
        s = make_replica(e, t);
    if (!s) s = warm_master(e, d);
    if (s) {
        nb_shards_free(e);
        return s;
    }
    *out = e;
    return NB_OK;
}

void nb_shards_free(nb_shards *e)
{
    if (!e) return;
    for (int t = 1; t < e->nrep; t++)
        nb_model_free(e->rep[t]);
    nb_fixed_sum_free(&e->sum);
    free(e->stats), free(e->all_stats);
    free(e);
}

void nb_shards_weights_changed(nb_shards *e)
{
    e->version++;
}

void nb_shards_comm_stats(const nb_shards *e, double *seconds, int64_t *bytes)
{
    *seconds = e->sum.seconds;
    *bytes = e->sum.bytes;
}

static void sync_replica(nb_shards *e, int t)
{
    if (t == 0 || e->rep_version[t] == e->version) return;
    for (int i = 0; i < e->rep[0]->nparams; i++) {
        const nb_tensor *src = &e->rep[0]->params[i]->value;
        memcpy(e->rep[t]->params[i]->value.data, src->data, (size_t)src->size * sizeof(nb_real));
    }
    e->rep_version[t] = e->version;
}

/* Shard j (slot q of this rank) on replica t: rows [j shard, ...) of the
 * batch; its weighted gradient (s_j / b) g_j into local row q. */
static nb_status shard_grad(nb_shards *e, int t, const nb_dataset *d, const int64_t *idx, int64_t start, int64_t b,
                            int64_t step, int64_t j, int64_t q)
{
    nb_model *r = e->rep[t];
    sync_replica(e, t);
    const int64_t j0 = j * e->shard, sj = b - j0 < e->shard ? b - j0 : e->shard;
    nb_status s = nb_train_load_rows(r, d, idx, start + j0, sj, e->xrow, e->yrow);
    if (!s) s = nb_augment_batch(&e->augment, e->seed, step, idx, start + j0, sj, r);
    if (s) return s;
    /* Dropout masks follow (seed, step, shard): the same on any rank. */
    nb_graph_set_training(r->g, 1, e->seed);
    if ((s = nb_forward_keyed(e->loss[t], ((uint64_t)step + 1) << 21 | (uint64_t)j))) return s;
    e->stats[2 * q] = (double)e->loss[t]->value.data[0] * (double)sj;
    e->stats[2 * q + 1] = nb_train_count_correct(r, sj, NULL);
    if ((s = nb_backward(e->loss[t]))) return s;
    const nb_real w = (nb_real)((double)sj / (double)b);
    nb_real *dst = nb_fixed_sum_row(&e->sum, q);
    for (int i = 0; i < r->nparams; i++) {
        if (!r->params[i]->requires_grad) continue;
        const nb_tensor *g = nb_grad(r->params[i]);
        if (!g)
            return nb_fail(NB_ERR_ARG, "reproducible training: parameter '%s' has no gradient",
                           nb_node_name(r->params[i]));
        for (int64_t k = 0; k < g->size; k++)
            dst[k] = w * g->data[k];
        dst += g->size;
    }
    return NB_OK;
}

/* The rank's shards [lo, hi), spread over its replicas, one shard per
 * thread at a time with the ops' own parallel loops inactive (nested), so
 * a shard's bits do not depend on the thread count. The first failing
 * shard's message is kept. */
static nb_status local_shards(nb_shards *e, const nb_dataset *d, const int64_t *idx, int64_t start, int64_t b,
                              int64_t step, int64_t lo, int64_t hi)
{
    nb_status first = NB_OK;
    int64_t first_j = INT64_MAX;
    char msg[512] = "";
#ifdef _OPENMP
    const int levels = omp_get_max_active_levels();
    omp_set_max_active_levels(1);
#pragma omp parallel num_threads(e->nrep)
#endif
    {
        const int t = nb_thread_id(), team = nb_team_size();
        for (int64_t j = lo + t; j < hi; j += team) {
            nb_status s = shard_grad(e, t, d, idx, start, b, step, j, j - lo);
            if (!s) continue;
#ifdef _OPENMP
#pragma omp critical(nb_shards_error)
#endif
            if (j < first_j) {
                first_j = j, first = s;
                snprintf(msg, sizeof msg, "%s", nb_last_error());
            }
            break;
        }
    }
#ifdef _OPENMP
    omp_set_max_active_levels(levels);
#endif
    if (first) return nb_fail(first, "%s", msg);
    return NB_OK;
}

static nb_status comm_status(nb_status s, const char *what)
{
    if (!s) return NB_OK;
    const char *m = nb_last_error();
    return nb_fail(s, "%s between ranks failed%s%s", what, m && *m ? ": " : "", m ? m : "");
}

/* Loss and correct counts of all S shards, summed in shard order. */
static nb_status batch_stats(nb_shards *e, int64_t S, int64_t Q, double *loss_sum, double *correct)
{
    const double *st = e->stats;
    if (e->size > 1) {
        const int64_t own = first_shard(S, e->rank + 1, e->size) - first_shard(S, e->rank, e->size);
        for (int64_t q = own; q < Q; q++)
            e->stats[2 * q] = e->stats[2 * q + 1] = 0;
        nb_status s = e->comm->allgather(e->stats, (size_t)(Q * 2) * sizeof(double), e->all_stats, e->comm->user);
        if (s) return comm_status(s, "gathering the losses");
        st = e->all_stats;
    }
    *loss_sum = 0, *correct = 0;
    for (int r = 0; r < e->size; r++) {
        const int64_t n = first_shard(S, r + 1, e->size) - first_shard(S, r, e->size);
        const double *row = st + (e->size > 1 ? r * Q * 2 : 0);
        for (int64_t q = 0; q < n; q++)
            *loss_sum += row[2 * q], *correct += row[2 * q + 1];
    }
    return NB_OK;
}

nb_status nb_shards_step(nb_shards *e, const nb_dataset *d, const int64_t *idx, int64_t start, int64_t b, int64_t step,
                         double *loss, double *correct)
{
    const int64_t S = ceil_div(b, e->shard), Q = ceil_div(S, e->size);
    if (Q > e->Qmax)
        return nb_fail(NB_ERR_ARG, "reproducible training: batch of %lld larger than planned", (long long)b);
    const int64_t lo = first_shard(S, e->rank, e->size), hi = first_shard(S, e->rank + 1, e->size);
    nb_status s = local_shards(e, d, idx, start, b, step, lo, hi);
    if (s) return s;
    double loss_sum = 0;
    if ((s = batch_stats(e, S, Q, &loss_sum, correct))) return s;
    *loss = loss_sum / (double)b;
    const nb_real *G = NULL;
    if ((s = nb_fixed_sum_run(&e->sum, S, &G))) return s;
    nb_model *m = e->rep[0];
    for (int i = 0; i < m->nparams; i++) {
        if (!m->params[i]->requires_grad) continue;
        nb_tensor *g = nb_grad(m->params[i]);
        memcpy(g->data, G, (size_t)g->size * sizeof(nb_real));
        G += g->size;
    }
    m->g->grads_valid = true;
    return NB_OK;
}

uint64_t nb_shards_weight_hash(const nb_model *m)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < m->nparams; i++) {
        const nb_tensor *v = &m->params[i]->value;
        const unsigned char *p = (const unsigned char *)v->data;
        for (size_t k = 0; k < (size_t)v->size * sizeof(nb_real); k++)
            h = (h ^ p[k]) * 0x100000001b3ull;
    }
    return h;
}

nb_status nb_shards_check_weights(nb_shards *e, int epoch)
{
    return nb_dist_check_weights(e->comm, e->rep[0], epoch);
}
