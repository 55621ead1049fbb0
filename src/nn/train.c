/* The training loop (minibatch gradient descent: forward, loss, backward,
 * optimiser step) and evaluation. Buffers are the graph's: once the first
 * batch has run, an epoch allocates nothing. */
#include "nn_internal.h"

#include "../dist/dist_internal.h"
#include "../kernels/kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Checks that d fits the model and the loss's target; returns row sizes. */
static nb_status check_data(nb_model *m, const nb_dataset *d, const char *what, int64_t *xrow, int64_t *yrow)
{
    char s1[96], s2[96];
    if (!d || !d->x || !d->y) return nb_fail(NB_ERR_ARG, "%s data: missing images or labels", what);
    int64_t n = d->x->rank ? d->x->shape[0] : 0;
    if (n < 1) return nb_fail(NB_ERR_ARG, "%s data: no examples", what);
    if (d->y->rank < 1 || d->y->shape[0] != n)
        return nb_fail(NB_ERR_SHAPE, "%s data: %lld inputs but %lld targets", what, (long long)n,
                       (long long)(d->y->rank ? d->y->shape[0] : 0));
    bool ok = d->x->rank == m->in_rank + 1;
    for (int i = 0; ok && i < m->in_rank; i++) ok = d->x->shape[i + 1] == m->in_shape[i];
    if (!ok) {
        int64_t want[NB_MAX_RANK] = {n};
        memcpy(want + 1, m->in_shape, sizeof(int64_t) * (size_t)m->in_rank);
        return nb_fail(NB_ERR_SHAPE, "%s data: inputs have shape %s, the model takes %s", what, NB_SHAPE_STR(d->x, s1),
                       nb_shape_str(m->in_rank + 1, want, s2, sizeof s2));
    }
    *xrow = d->x->size / n;
    *yrow = d->y->size / n;
    int64_t trow = m->target->value.shape[0] ? m->target->value.size / m->target->value.shape[0] : 0;
    if (*yrow != trow)
        return nb_fail(NB_ERR_SHAPE, "%s data: targets have %lld value%s per example, the loss needs %lld (%s)%s", what,
                       (long long)*yrow, *yrow == 1 ? "" : "s", (long long)trow,
                       m->loss_kind == NB_LOSS_CCE ? "one class index" : "one per model output",
                       *yrow == 1 && trow > 1 && m->loss_kind == NB_LOSS_MSE
                           ? "; these look like class indices: use --loss cce, or one-hot targets for mse"
                           : "");
    if (m->loss_kind == NB_LOSS_CCE) {
        char where[64];
        snprintf(where, sizeof where, "%s data", what);
        return nb_check_class_labels(where, d->y->data, n, m->logits->value.shape[1]);
    }
    return NB_OK;
}

nb_status nb_train_check_data(nb_model *m, const nb_dataset *d, const char *what, int64_t *xrow, int64_t *yrow)
{
    return check_data(m, d, what, xrow, yrow);
}

/* Loads rows idx[start..start+b) (or start..start+b when idx is NULL) into the graph. */
nb_status nb_train_load_rows(nb_model *m, const nb_dataset *d, const int64_t *idx, int64_t start, int64_t b,
                            int64_t xrow, int64_t yrow)
{
    nb_status s = nb_model_set_batch(m, b);
    if (s) return s;
    nb_real *x = m->input->value.data, *y = m->target->value.data;
    for (int64_t i = 0; i < b; i++) {
        int64_t r = idx ? idx[start + i] : start + i;
        memcpy(x + i * xrow, d->x->data + r * xrow, (size_t)xrow * sizeof(nb_real));
        memcpy(y + i * yrow, d->y->data + r * yrow, (size_t)yrow * sizeof(nb_real));
    }
    return NB_OK;
}

/* Correct predictions in the loaded batch (CCE: argmax; BCE: logit > 0,
 * counted per output element and returned in examples' worth). */
double nb_train_count_correct(nb_model *m, int64_t b, int64_t *confusion)
{
    const nb_tensor *z = &m->logits->value;
    const nb_real *y = m->target->value.data;
    int64_t correct = 0;
    if (m->loss_kind == NB_LOSS_CCE) {
        int64_t C = z->shape[1];
        for (int64_t i = 0; i < b; i++) {
            const nb_real *r = z->data + i * C;
            int64_t best = 0;
            for (int64_t c = 1; c < C; c++)
                if (r[c] > r[best]) best = c;
            int64_t t = (int64_t)y[i];
            correct += best == t;
            if (confusion) confusion[t * C + best]++;
        }
    } else if (m->loss_kind == NB_LOSS_BCE) {
        int64_t per = z->size / b;
        for (int64_t i = 0; i < b * per; i++) correct += (z->data[i] > 0) == (y[i] > (nb_real)0.5);
        return (double)correct / (double)(per ? per : 1);
    }
    return (double)correct;
}

nb_status nb_evaluate(nb_model *m, const nb_dataset *d, nb_loss_kind kind, int64_t batch, double *loss_out,
                      double *accuracy, int64_t *confusion)
{
    if (!m) return nb_fail(NB_ERR_ARG, "evaluate: model is NULL");
    nb_node *loss;
    int64_t xrow, yrow;
    nb_status s = nb_model_loss(m, kind, NULL, &loss);
    if (s || (s = check_data(m, d, "evaluation", &xrow, &yrow))) return s;
    if (batch < 1) batch = 256;
    const bool was_training = m->g->training, was_batch = m->g->batch_stats;
    m->g->training = false, m->g->batch_stats = false;
    int64_t n = d->x->shape[0];
    double correct = 0;
    if (confusion) {
        int64_t C = m->logits->value.shape[1];
        memset(confusion, 0, (size_t)(C * C) * sizeof(int64_t));
    }
    double total = 0;
    for (int64_t i = 0; i < n && !s; i += batch) {
        int64_t b = n - i < batch ? n - i : batch;
        if ((s = nb_train_load_rows(m, d, NULL, i, b, xrow, yrow)) || (s = nb_forward_upto(loss))) break;
        total += (double)loss->value.data[0] * (double)b;
        correct += nb_train_count_correct(m, b, confusion);
    }
    m->g->training = was_training, m->g->batch_stats = was_batch;
    if (s) return s;
    if (loss_out) *loss_out = total / (double)n;
    if (accuracy) *accuracy = kind == NB_LOSS_MSE ? NAN : correct / (double)n;
    return NB_OK;
}

/* The permutation of epoch e depends on (seed, e) alone, so a resumed run
 * sees the same batches as an uninterrupted one. */
static void epoch_permutation(int64_t *idx, int64_t n, uint64_t seed, int epoch, int shuffle)
{
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    if (!shuffle) return;
    nb_rng r;
    nb_rng_seed(&r, seed * 0x9E3779B97F4A7C15ull + (uint64_t)epoch + 1);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(nb_rng_next(&r) % (uint64_t)(i + 1));
        int64_t t = idx[i];
        idx[i] = idx[j], idx[j] = t;
    }
}

/* One step on the graph of m itself (the default path): its bits depend on
 * the thread count (reductions are split per thread). key: the dropout key. */
static nb_status plain_step(nb_model *m, nb_node *loss, const nb_dataset *d, const int64_t *idx, int64_t start,
                            int64_t b, int64_t step, uint64_t key, const nb_train_opts *opts, int64_t xrow,
                            int64_t yrow, double *l, double *correct)
{
    nb_status s = nb_train_load_rows(m, d, idx, start, b, xrow, yrow);
    if (!s) s = nb_augment_batch(&opts->augment, opts->seed, step, idx, start, b, m);
    if (s) return s;
    /* Dropout masks follow (seed, step): the same after a resume. */
    nb_graph_set_training(m->g, 1, opts->seed);
    if ((s = nb_forward_keyed(loss, key))) return s;
    nb_batchnorm_update_moving(m->g); /* PyTorch updates them in the training forward */
    *l = loss->value.data[0];
    *correct = nb_train_count_correct(m, b, NULL);
    return isfinite(*l) ? nb_backward_leaves(loss) : NB_OK;
}

/* The plain data-parallel step (src/dist/grad_allreduce.c): the plain step
 * on this rank's share of the batch, then the ranks' statuses, losses and
 * weighted gradients summed over the ranks. Dropout keys (step + 1) P + r:
 * those of one process for P = 1, distinct for every rank and step. */
static nb_status dp_step(nb_model *m, nb_node *loss, nb_grad_allreduce *dp, const nb_dataset *d, const int64_t *idx,
                         int64_t start, int64_t b, int64_t step, const nb_train_opts *opts, int64_t xrow,
                         int64_t yrow, double *l, double *correct)
{
    int64_t lo, hi;
    nb_grad_allreduce_share(dp, b, &lo, &hi);
    const uint64_t key = ((uint64_t)step + 1) * (uint64_t)dp->size + (uint64_t)dp->rank;
    double mean = 0, c = 0;
    nb_status s = hi > lo ? plain_step(m, loss, d, idx, start + lo, hi - lo, step, key, opts, xrow, yrow, &mean, &c)
                          : NB_OK;
    double sum = mean * (double)(hi - lo);
    if ((s = nb_grad_allreduce_stats(dp, s, &sum, &c))) return s;
    *l = sum / (double)b, *correct = c;
    if (!isfinite(*l)) return NB_OK; /* every rank stops at this step: no exchange */
    return nb_grad_allreduce_run(dp, m, hi - lo, b);
}

/* Seconds in the gradient exchange and bytes sent, since the engine began. */
static void exchange_stats(const nb_shards *sh, const nb_grad_allreduce *dp, double *seconds, int64_t *bytes)
{
    *seconds = 0, *bytes = 0;
    if (sh) nb_shards_comm_stats(sh, seconds, bytes);
    if (dp) *seconds = dp->seconds, *bytes = dp->bytes;
}

/* nb_train_opts.diagnose: the layers' entries and the weights before the
 * measured step. */
typedef struct {
    nb_layer_diag *d;
    nb_real *before;
} diag_state;

/* One optimiser step; on the epoch's last batch with diagnostics, the
 * measurements around it (gradients and activations before, the update
 * after). */
static nb_status step_measured(nb_model *m, nb_optim *o, diag_state *dg, bool last, nb_epoch_stats *st)
{
    nb_status s;
    if (!dg || !last) return nb_optim_step(o);
    if ((s = nb_model_diagnose(m, dg->d, m->nlayers))) return s;
    nb_diag_snapshot(m, dg->before);
    if ((s = nb_optim_step(o))) return s;
    nb_diag_update_ratio(m, dg->before, dg->d);
    st->diag = dg->d, st->ndiag = m->nlayers;
    return NB_OK;
}

static nb_status train_epoch(nb_model *m, nb_optim *o, nb_node *loss, nb_shards *sh, nb_grad_allreduce *dp,
                             const nb_dataset *train, const int64_t *idx, const nb_train_opts *opts, int64_t xrow,
                             int64_t yrow, diag_state *dg, nb_epoch_stats *st, int *stop)
{
    const int64_t n = train->x->shape[0];
    double t0 = now_seconds(), loss_sum = 0, correct = 0, comm0 = 0;
    int64_t seen = 0, bytes0 = 0;
    exchange_stats(sh, dp, &comm0, &bytes0);
    nb_status s = NB_OK;
    const int64_t every = opts->sharpness_every;
    if (every && st->step == opts->start_step && st->epoch == opts->start_epoch && st->step % every == 0 &&
        (s = nb_train_sharpness(m, loss, train, opts, xrow, yrow, st->step, st->epoch, nb_optim_lr(o), stop)))
        return s; /* the weights training starts from */
    for (int64_t bi = 0; bi < st->batches_total && !*stop; bi++) {
        int64_t start = bi * opts->batch, b = n - start < opts->batch ? n - start : opts->batch;
        double l, c;
        s = sh   ? nb_shards_step(sh, train, idx, start, b, st->step, &l, &c)
            : dp ? dp_step(m, loss, dp, train, idx, start, b, st->step, opts, xrow, yrow, &l, &c)
                 : plain_step(m, loss, train, idx, start, b, st->step, (uint64_t)st->step + 1, opts, xrow, yrow, &l,
                              &c);
        if (s) break;
        if (!isfinite(l))
            return nb_fail(NB_ERR_NUMERIC,
                           "training diverged: the loss is %s at step %lld (epoch %d, batch %lld); "
                           "try a smaller learning rate than %g",
                           isnan(l) ? "NaN" : "infinite", (long long)st->step + 1, st->epoch + 1, (long long)bi + 1,
                           nb_optim_lr(o));
        if ((s = step_measured(m, o, dg, bi == st->batches_total - 1, st))) break;
        if (sh) nb_shards_weights_changed(sh);
        correct += c;
        st->step++;
        seen += b;
        loss_sum += l * (double)b;
        st->batches_done = bi + 1;
        st->loss = loss_sum / (double)seen;
        st->accuracy = opts->loss == NB_LOSS_MSE ? NAN : correct / (double)seen;
        st->seconds = now_seconds() - t0;
        st->images_per_second = st->seconds > 0 ? (double)seen / st->seconds : 0;
        exchange_stats(sh, dp, &st->comm_seconds, &st->comm_bytes);
        st->comm_seconds -= comm0, st->comm_bytes -= bytes0;
        if (opts->on_batch && opts->on_batch(st, opts->user)) *stop = 1;
        if (every && st->step % every == 0 &&
            (s = nb_train_sharpness(m, loss, train, opts, xrow, yrow, st->step, st->epoch, nb_optim_lr(o), stop)))
            break;
    }
    return s;
}

/* Keras's EarlyStopping after an epoch: improved (by more than min_delta;
 * NaN never does) resets wait, else wait grows; stop at patience. */
static void early_update(nb_early_stopping *e, nb_epoch_stats *st)
{
    const bool acc = e->monitor == NB_MONITOR_VAL_ACCURACY;
    const double v = acc ? st->val_accuracy : st->val_loss;
    const bool better = !isnan(v) && (isnan(e->best) || (acc ? v > e->best + e->min_delta : v < e->best - e->min_delta));
    if (better) e->best = v, e->best_epoch = st->epoch, e->wait = 0;
    else e->wait++;
    st->improved = better;
    st->stopping = e->wait >= e->patience;
    if (st->stopping) e->stopped_epoch = st->epoch;
}

static nb_status check_early(const nb_train_opts *opts, const nb_dataset *val)
{
    const nb_early_stopping *e = opts->early;
    if (!e) return NB_OK;
    const char *what = e->monitor == NB_MONITOR_VAL_ACCURACY ? "accuracy" : "loss";
    if (!val || !val->x)
        return nb_fail(NB_ERR_ARG, "train: early stopping watches the validation %s: give validation data "
                                   "(nabla train: --val-split F > 0 of at least 1/F examples)", what);
    if (e->patience < 1) return nb_fail(NB_ERR_ARG, "train: patience must be >= 1 epoch, got %d", e->patience);
    if (!(e->min_delta >= 0)) return nb_fail(NB_ERR_ARG, "train: min_delta must be >= 0, got %g", e->min_delta);
    if (e->monitor == NB_MONITOR_VAL_ACCURACY && opts->loss == NB_LOSS_MSE)
        return nb_fail(NB_ERR_ARG, "train: early stopping on the validation accuracy needs class labels (cce or bce); "
                                   "with mse watch the validation loss");
    if (e->monitor != NB_MONITOR_VAL_LOSS && e->monitor != NB_MONITOR_VAL_ACCURACY)
        return nb_fail(NB_ERR_ARG, "train: unknown early-stopping monitor %d", (int)e->monitor);
    return NB_OK;
}

/* The diagnostics' buffers, or a refusal where they cannot be measured. */
static nb_status diag_new(nb_model *m, const nb_train_opts *opts, diag_state *dg)
{
    *dg = (diag_state){0};
    if (!opts->diagnose) return NB_OK;
    if (opts->reproducible || (opts->comm && opts->comm->size > 1))
        return nb_fail(NB_ERR_ARG, "train: diagnostics run on the default path, not with reproducible or "
                                   "data-parallel training (their gradients are computed on copies of the model)");
    dg->d = calloc((size_t)(m->nlayers ? m->nlayers : 1), sizeof *dg->d);
    dg->before = malloc((size_t)(nb_model_num_params(m) ? nb_model_num_params(m) : 1) * sizeof(nb_real));
    if (!dg->d || !dg->before) {
        free(dg->d), free(dg->before);
        return nb_fail(NB_ERR_NOMEM, "train: out of memory for the diagnostics");
    }
    return NB_OK;
}

/* Batchnorm couples the examples of a batch: refused where a batch is cut
 * into shards (reproducible) or shares (several ranks). */
static nb_status check_batch_coupling(nb_model *m, const nb_train_opts *opts, bool reproducible, bool parallel)
{
    if (!reproducible && !parallel) return NB_OK;
    nb_graph_set_training(m->g, NB_TRAINING, opts->seed);
    const int couples = nb_graph_couples_batch(m->g);
    nb_graph_set_training(m->g, NB_INFERENCE, opts->seed);
    if (!couples) return NB_OK;
    if (reproducible)
        return nb_fail(NB_ERR_ARG, "train: reproducible and MPI training split each batch into shards, and batchnorm "
                                   "would normalise each shard with its own statistics; train a batchnorm model "
                                   "without --reproducible and on one process");
    return nb_fail(NB_ERR_ARG, "train: under MPI each rank would normalise its share of the batch with batchnorm "
                               "statistics of its own, and the ranks' moving statistics would drift apart; train a "
                               "batchnorm model on one process");
}

/* The checks of nb_train's arguments and data that each rank makes alone. */
static nb_status check_all(nb_model *m, const nb_train_opts *opts, const nb_dataset *train, const nb_dataset *val,
                           bool reproducible, bool parallel, nb_node **loss, int64_t *xrow, int64_t *yrow)
{
    int64_t vx, vy;
    nb_status s = check_early(opts, val);
    if (s || (s = nb_train_sharpness_check(opts))) return s;
    if ((s = nb_augment_check(&opts->augment, m->in_rank, m->in_shape))) return s;
    if ((s = nb_model_loss(m, opts->loss, NULL, loss))) return s;
    if ((s = check_data(m, train, "training", xrow, yrow))) return s;
    if (val && val->x && (s = check_data(m, val, "validation", &vx, &vy))) return s;
    return check_batch_coupling(m, opts, reproducible, parallel);
}

nb_status nb_train(nb_model *m, nb_optim *o, const nb_dataset *train, const nb_dataset *val,
                   const nb_train_opts *opts)
{
    if (!m || !o || !opts) return nb_fail(NB_ERR_ARG, "train: NULL argument");
    if (opts->epochs < 1) return nb_fail(NB_ERR_ARG, "train: epochs must be >= 1, got %d", opts->epochs);
    if (opts->batch < 1) return nb_fail(NB_ERR_ARG, "train: batch size must be >= 1, got %lld", (long long)opts->batch);
    nb_node *loss;
    int64_t xrow, yrow;
    const bool reproducible = opts->reproducible, parallel = !reproducible && opts->comm && opts->comm->size > 1;
    nb_status s = check_all(m, opts, train, val, reproducible, parallel, &loss, &xrow, &yrow);
    diag_state dg = {0};
    if (!s) s = diag_new(m, opts, &dg);
    /* Every rank agrees here, before the first collective: a rank whose own
     * checks failed (its data, its memory) would otherwise leave the others
     * waiting in that collective for ever. */
    if (nb_comm_usable(opts->comm) && opts->comm->size > 1) s = nb_comm_any_failed(opts->comm, s, "train");
    if (s) {
        free(dg.d), free(dg.before);
        return s;
    }
    nb_shards *sh = NULL;
    nb_grad_allreduce dp = {0};
    if (reproducible) nb_gemm_select_fixed(); /* kernels by shape, not by this process's timings */
    int64_t n = train->x->shape[0];
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    if (!idx) s = nb_fail(NB_ERR_NOMEM, "train: out of memory");
    if (!s && reproducible) s = nb_shards_new(m, loss, train, opts, xrow, yrow, &sh);
    if (!s && parallel) s = nb_grad_allreduce_init(&dp, opts->comm, m, loss, train, xrow, yrow, opts->seed);
    /* And again after this rank's own allocations and warm-up passes (none
     * of them collective): one that failed here says so to all. */
    if (nb_comm_usable(opts->comm) && opts->comm->size > 1) s = nb_comm_any_failed(opts->comm, s, "train");
    if (s) { /* (this rank's own setup may have succeeded: another failed) */
        nb_shards_free(sh);
        nb_grad_allreduce_free(&dp);
        free(idx), free(dg.d), free(dg.before);
        return s;
    }
    if (opts->early) opts->early->stopped_epoch = -1;
    int64_t nbatches = (n + opts->batch - 1) / opts->batch;
    int stop = 0;
    nb_epoch_stats st = {.step = opts->start_step};
    for (int e = opts->start_epoch; e < opts->epochs && !s && !stop; e++) {
        nb_optim_set_epoch(o, e);
        epoch_permutation(idx, n, opts->seed, e, opts->shuffle);
        st = (nb_epoch_stats){e, 0, nbatches, st.step, 0, 0, NAN, NAN, 0, 0, nb_optim_lr(o), 0, 0, 0, 0, NULL, 0};
        double t0 = now_seconds();
        if ((s = train_epoch(m, o, loss, sh, parallel ? &dp : NULL, train, idx, opts, xrow, yrow, dg.d ? &dg : NULL,
                             &st, &stop)))
            break;
        if ((s = nb_dist_check_weights(opts->comm, m, e))) break;
        nb_graph_set_training(m->g, 0, opts->seed);
        if (val && val->x && (s = nb_evaluate(m, val, opts->loss, 256, &st.val_loss, &st.val_accuracy, NULL))) break;
        st.seconds = now_seconds() - t0;
        if (opts->early && !stop) early_update(opts->early, &st);
        if (opts->on_epoch && opts->on_epoch(&st, o, opts->user)) stop = 1;
        if (st.stopping) stop = 1;
    }
    nb_graph_set_training(m->g, 0, opts->seed);
    nb_shards_free(sh);
    nb_grad_allreduce_free(&dp);
    free(idx), free(dg.d), free(dg.before);
    return s;
}
