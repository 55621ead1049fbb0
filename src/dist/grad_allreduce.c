/* The gradient exchange of plain data-parallel training (nb_train with a
 * comm of size P > 1 and reproducible 0), as PyTorch DDP does it.
 *
 * Rank r computes, in one forward/backward pass on its own model, the
 * gradient g_r of the mean loss over its contiguous share of the global
 * batch of b examples, [b r / P, b (r + 1) / P) of s_r examples. The
 * batch's mean-loss gradient is
 *     G = sum_r (s_r / b) g_r,
 * so every rank writes (s_r / b) g_r into one flat buffer of L values (all
 * its trainable parameters' gradients, in parameter order; zeros when s_r
 * = 0) and the buffer is summed over the ranks in place: comm->allreduce
 * (MPI_Allreduce), or without it an allgather of every rank's buffer
 * summed in rank order. Every rank then copies G back into its gradients
 * and applies the same optimiser step.
 *
 * Before that, the ranks exchange their status, loss sum and correct count
 * (one allgather of 3 doubles), so a rank whose pass failed does not leave
 * the others waiting in the allreduce, and a non-finite loss anywhere
 * stops every rank at the same step without exchanging gradients.
 *
 * The sum's order depends on P and on MPI's algorithm, so the weights
 * depend on P (within float rounding of one process); they must be the
 * same on every rank, which the ranks check after every epoch
 * (nb_dist_check_weights). */
#include "dist_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One pass on one example, so the gradient buffers exist on a rank whose
 * share of some batch is empty (b < P). The graph is left in inference
 * mode; the training step sets it again. */
static nb_status warm_gradients(nb_model *m, nb_node *loss, const nb_dataset *d, int64_t xrow, int64_t yrow,
                                uint64_t seed)
{
    nb_status s = nb_train_load_rows(m, d, NULL, 0, 1, xrow, yrow);
    if (!s) nb_graph_set_training(m->g, 1, seed);
    if (!s) s = nb_forward_keyed(loss, 0);
    if (!s) s = nb_backward_leaves(loss);
    nb_graph_set_training(m->g, 0, seed);
    return s;
}

nb_status nb_grad_allreduce_init(nb_grad_allreduce *a, const nb_comm *c, nb_model *m, nb_node *loss,
                                 const nb_dataset *d, int64_t xrow, int64_t yrow, uint64_t seed)
{
    *a = (nb_grad_allreduce){.comm = c, .rank = c->rank, .size = c->size};
    if (nb_comm_check(c, "train")) return NB_ERR_ARG;
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i]->requires_grad) a->L += m->params[i]->value.size;
    const int64_t copies = c->allreduce ? 1 : 1 + c->size;
    a->flat = malloc((size_t)(a->L * copies > 0 ? a->L * copies : 1) * sizeof(nb_real));
    a->all_stats = calloc((size_t)c->size * 3, sizeof(double));
    if (!a->flat || !a->all_stats)
        return nb_fail(NB_ERR_NOMEM, "train: out of memory for the gradient exchange (%lld values)",
                       (long long)(a->L * copies));
    return warm_gradients(m, loss, d, xrow, yrow, seed);
}

void nb_grad_allreduce_free(nb_grad_allreduce *a)
{
    if (!a) return;
    free(a->flat), free(a->all_stats);
    a->flat = NULL, a->all_stats = NULL;
}

void nb_grad_allreduce_share(const nb_grad_allreduce *a, int64_t b, int64_t *lo, int64_t *hi)
{
    *lo = b * a->rank / a->size;
    *hi = b * (a->rank + 1) / a->size;
}

nb_status nb_grad_allreduce_stats(nb_grad_allreduce *a, nb_status mine, double *loss_sum, double *correct)
{
    double send[3] = {(double)mine, *loss_sum, *correct}, *all = a->all_stats; /* from init: nothing to fail here */
    char msg[512];
    snprintf(msg, sizeof msg, "%s", mine ? nb_last_error() : "");
    const double t0 = now_seconds();
    nb_status s = a->comm->allgather(send, sizeof send, all, a->comm->user);
    a->seconds += now_seconds() - t0;
    if (s) {
        const char *m = nb_last_error();
        return nb_fail(s, "train: exchanging the losses between ranks failed%s%s", m && *m ? ": " : "", m ? m : "");
    }
    *loss_sum = 0, *correct = 0;
    int failed = -1;
    for (int r = 0; r < a->size; r++) {
        if (all[3 * r] != 0 && failed < 0) failed = r;
        *loss_sum += all[3 * r + 1], *correct += all[3 * r + 2];
    }
    if (mine) return nb_fail(mine, "%s", msg);
    if (failed >= 0) return nb_fail(NB_ERR_ARG, "train: rank %d failed (its own message says why)", failed);
    return NB_OK;
}

/* The rank's weighted gradient w g_r into a->flat (zeros when it had no
 * examples: w = 0). */
static nb_status pack(nb_grad_allreduce *a, nb_model *m, nb_real w)
{
    nb_real *dst = a->flat;
    for (int i = 0; i < m->nparams; i++) {
        if (!m->params[i]->requires_grad) continue;
        const nb_tensor *g = nb_grad(m->params[i]);
        if (!g)
            return nb_fail(NB_ERR_ARG, "train: parameter '%s' has no gradient to exchange", nb_node_name(m->params[i]));
        for (int64_t k = 0; k < g->size; k++)
            dst[k] = w == 0 ? 0 : w * g->data[k];
        dst += g->size;
    }
    return NB_OK;
}

/* Without comm->allreduce: every rank's buffer by allgather, summed in rank
 * order (the same bits on every rank by construction). */
static nb_status sum_by_allgather(nb_grad_allreduce *a)
{
    nb_real *all = a->flat + a->L;
    nb_status s = a->comm->allgather(a->flat, (size_t)a->L * sizeof(nb_real), all, a->comm->user);
    if (s) return s;
    for (int64_t k = 0; k < a->L; k++) {
        nb_real v = all[k];
        for (int r = 1; r < a->size; r++)
            v += all[r * a->L + k];
        a->flat[k] = v;
    }
    a->bytes += (int64_t)(a->size - 1) * a->L * (int64_t)sizeof(nb_real);
    return NB_OK;
}

nb_status nb_grad_allreduce_run(nb_grad_allreduce *a, nb_model *m, int64_t own, int64_t b)
{
    nb_status s = pack(a, m, (nb_real)((double)own / (double)b));
    if (s) return s; /* the same parameters on every rank: all fail alike */
    const double t0 = now_seconds();
    if (a->comm->allreduce) {
        s = a->comm->allreduce(a->flat, (size_t)a->L, a->comm->user);
        /* A ring allreduce's figure: 2 (P - 1) / P x the buffer. */
        a->bytes += 2 * (int64_t)(a->size - 1) * a->L * (int64_t)sizeof(nb_real) / a->size;
    } else {
        s = sum_by_allgather(a);
    }
    a->seconds += now_seconds() - t0;
    if (s) {
        const char *msg = nb_last_error();
        return nb_fail(s, "train: summing the gradients between ranks failed%s%s", msg && *msg ? ": " : "",
                       msg ? msg : "");
    }
    const nb_real *G = a->flat;
    for (int i = 0; i < m->nparams; i++) {
        if (!m->params[i]->requires_grad) continue;
        nb_tensor *g = nb_grad(m->params[i]);
        memcpy(g->data, G, (size_t)g->size * sizeof(nb_real));
        G += g->size;
    }
    m->g->grads_valid = true;
    return NB_OK;
}

nb_status nb_dist_check_weights(const nb_comm *c, const nb_model *m, int epoch)
{
    if (!c || c->size < 2) return NB_OK;
    nb_comm_gathered g;
    nb_status s = nb_comm_gather_u64(c, nb_shards_weight_hash(m), "train: comparing the weights between ranks", &g);
    if (s) return s;
    const uint64_t *all = g.all;
    for (int r = 1; r < c->size && !s; r++)
        if (all[r] != all[0])
            s = nb_fail(NB_ERR_NUMERIC,
                        "after epoch %d the weights of rank %d differ from rank 0's (hash %016llx, rank 0 %016llx): "
                        "the ranks no longer train the same model; run the same nabla build with the same data "
                        "and options on every rank",
                        epoch + 1, r, (unsigned long long)all[r], (unsigned long long)all[0]);
    nb_comm_gathered_free(&g);
    return s;
}
