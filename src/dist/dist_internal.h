/* Internal to the library: the sharded training step behind nb_train's
 * reproducible and data-parallel modes (src/dist/shards.c). */
#ifndef NB_DIST_INTERNAL_H
#define NB_DIST_INTERNAL_H

#include "../nn/nn_internal.h"

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
nb_status nb_shards_step(nb_shards *e, const nb_dataset *d, const int64_t *idx, int64_t start, int64_t b,
                         int64_t step, double *loss, double *correct);
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

/* From src/nn/train.c: rows idx[start..start+b) (start.. when idx is NULL)
 * into the model's input and target; correct predictions of the loaded batch. */
nb_status nb_train_load_rows(nb_model *m, const nb_dataset *d, const int64_t *idx, int64_t start, int64_t b,
                             int64_t xrow, int64_t yrow);
double nb_train_count_correct(nb_model *m, int64_t b, int64_t *confusion);

#endif
