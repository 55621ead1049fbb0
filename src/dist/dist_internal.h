/* Internal to the library: the sharded training step behind nb_train's
 * reproducible and data-parallel modes (src/dist/shards.c). */
#ifndef NB_DIST_INTERNAL_H
#define NB_DIST_INTERNAL_H

#include "../nn/nn_internal.h"
#include "comm.h"

/* A sum of S rows over a fixed binary tree whatever the ranks that computed
 * them (src/dist/fixed_sum.c): the same bits for any number of ranks. Rank
 * r holds rows [first(S, r, P), first(S, r + 1, P)) in its rows 0, 1, ...
 * (nb_fixed_sum_row); every rank calls nb_fixed_sum_run with the same S,
 * and every rank gets the sum of all S rows (L values). */
typedef struct nb_fixed_sum {
    const nb_comm *comm;
    int rank, size;
    int64_t L, C, Qmax;          /* row length, chunk per rank, rows per rank at most */
    nb_real *local;              /* Qmax x L: this rank's rows */
    nb_real *send, *recv, *full; /* P > 1: size x Qmax x C, twice; size x C */
    nb_real **rows;              /* size x Qmax: each row (or chunk) for the tree */
    double seconds;              /* in alltoall and allgather, since init */
    int64_t bytes;               /* sent by this rank since init */
} nb_fixed_sum;
/* For S_max rows at most; comm NULL: one process. */
nb_status nb_fixed_sum_init(nb_fixed_sum *f, const nb_comm *comm, int64_t S_max, int64_t L, const char *who);
void nb_fixed_sum_free(nb_fixed_sum *f);
int64_t nb_fixed_sum_first(int64_t S, int r, int P);
nb_real *nb_fixed_sum_row(nb_fixed_sum *f, int64_t q);
/* *sum: the sum of the S rows (f's memory, valid until the next run). */
nb_status nb_fixed_sum_run(nb_fixed_sum *f, int64_t S, const nb_real **sum);

typedef struct nb_shards nb_shards;

/* An engine for model m (replica 0; more replicas, one per thread, are made
 * from its spec) and the loss node of m. xrow, yrow: values per example. */
nb_status nb_shards_new(nb_model *m, nb_node *loss, const nb_dataset *d, const nb_train_opts *opts, int64_t xrow,
                        int64_t yrow, nb_shards **out);
void nb_shards_free(nb_shards *e);
/* The gradient of the mean loss over rows idx[start .. start + b) (the global
 * batch; this rank computes its shards), left in nb_grad of m's parameters
 * (ready for nb_optim_step); *loss: the batch's mean loss, *correct: its
 * correct predictions (count_correct's), both the same on every rank. */
nb_status nb_shards_step(nb_shards *e, const nb_dataset *d, const int64_t *idx, int64_t start, int64_t b, int64_t step,
                         double *loss, double *correct);
/* Seconds this rank spent in the gradient exchange, and bytes it sent,
 * since the engine started. */
void nb_shards_comm_stats(const nb_shards *e, double *seconds, int64_t *bytes);
/* After nb_optim_step changed m's weights: the replicas copy them before
 * their next shard. */
void nb_shards_weights_changed(nb_shards *e);
/* Every rank's hash of its weights against rank 0's (NB_ERR_NUMERIC naming
 * the first rank that differs). */
nb_status nb_shards_check_weights(nb_shards *e, int epoch);
/* FNV-1a over the bytes of m's parameter values, in parameter order. */
uint64_t nb_shards_weight_hash(const nb_model *m);

/* Plain data-parallel training's gradient exchange (src/dist/grad_allreduce.c):
 * each rank's weighted gradient of its share of the batch, summed over the
 * ranks by comm->allreduce (or an allgather and a rank-order sum). */
typedef struct nb_grad_allreduce {
    const nb_comm *comm;
    int rank, size;
    int64_t L;      /* trainable values */
    nb_real *flat;  /* L values (the sum); (1 + size) x L without comm->allreduce */
    double *all_stats; /* size x 3: every rank's status, loss sum and correct count (nb_grad_allreduce_stats) */
    double seconds; /* in the exchanges, since init */
    int64_t bytes;  /* sent by this rank since init (a ring allreduce's figure) */
} nb_grad_allreduce;
/* For m (and its loss node) over c (size > 1); runs one pass on d's first
 * example so that every gradient buffer exists. */
nb_status nb_grad_allreduce_init(nb_grad_allreduce *a, const nb_comm *c, nb_model *m, nb_node *loss,
                                 const nb_dataset *d, int64_t xrow, int64_t yrow, uint64_t seed);
void nb_grad_allreduce_free(nb_grad_allreduce *a);
/* This rank's share [lo, hi) of a batch of b examples. */
void nb_grad_allreduce_share(const nb_grad_allreduce *a, int64_t b, int64_t *lo, int64_t *hi);
/* Every rank's status, loss sum and correct count (in: this rank's; out:
 * the sums over all ranks, in rank order). Mine when it failed (its message
 * kept), NB_ERR_ARG naming the first rank that failed, else NB_OK. */
nb_status nb_grad_allreduce_stats(nb_grad_allreduce *a, nb_status mine, double *loss_sum, double *correct);
/* m's gradients (of the mean loss over this rank's `own` examples) become
 * the mean-loss gradient of the whole batch of b: sum_r (own_r / b) g_r. */
nb_status nb_grad_allreduce_run(nb_grad_allreduce *a, nb_model *m, int64_t own, int64_t b);
/* Every rank's hash of m's weights against rank 0's (NB_ERR_NUMERIC naming
 * the first rank that differs); NB_OK for c NULL or of size 1. */
nb_status nb_dist_check_weights(const nb_comm *c, const nb_model *m, int epoch);

/* From src/nn/train.c: NB_OK when d fits m and its loss's target (what
 * names the data in messages), with the values per example. */
nb_status nb_train_check_data(nb_model *m, const nb_dataset *d, const char *what, int64_t *xrow, int64_t *yrow);
/* From src/nn/train.c: rows idx[start..start+b) (start.. when idx is NULL)
 * into the model's input and target; correct predictions of the loaded batch. */
nb_status nb_train_load_rows(nb_model *m, const nb_dataset *d, const int64_t *idx, int64_t start, int64_t b,
                             int64_t xrow, int64_t yrow);
double nb_train_count_correct(nb_model *m, int64_t b, int64_t *confusion);
/* From src/nn/augment.c: the loaded batch of m (its rows idx[start..start+b),
 * start.. when idx is NULL) augmented in place for this step. */
nb_status nb_augment_batch(const nb_augment *a, uint64_t seed, int64_t step, const int64_t *idx, int64_t start,
                           int64_t b, nb_model *m);

#endif
