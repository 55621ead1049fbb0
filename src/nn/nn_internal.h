/* Internal to src/nn: the model's representation. */
#ifndef NB_NN_INTERNAL_H
#define NB_NN_INTERNAL_H

#include "../graph/graph.h"

enum { NB_MODEL_MAX_LAYERS = 1024, NB_MODEL_MAX_PARAMS = 4 * NB_MODEL_MAX_LAYERS };

struct nb_model {
    int in_rank;
    int64_t in_shape[NB_MAX_RANK];
    nb_layer_spec *layers;
    int nlayers, cap;
    nb_node *layer_out[NB_MODEL_MAX_LAYERS];
    nb_graph *g;
    nb_node *input, *output, *logits;
    nb_activation out_act; /* nb_model_output_activation */
    nb_node *params[NB_MODEL_MAX_PARAMS];
    int param_layer[NB_MODEL_MAX_PARAMS];          /* the layer index of each */
    unsigned char param_init[NB_MODEL_MAX_PARAMS]; /* its nb_param_init (layers/layers.h) */
    int nparams;
    nb_node *target, *loss;
    nb_loss_kind loss_kind;
    int64_t batch;
    char *spec; /* cached text of nb_model_spec */
    char *classes; /* nb_model_class_names, or NULL */
};

/* 1 if the layer is one the spec grammar can write and read back (kind,
 * activation, ranges as nb_spec_parse's); else 0 with the reason in why. */
int nb_layer_spec_check(const nb_layer_spec *l, char *why, size_t n);

/* Sharpness during training (sharpness.c): the option checks, and one
 * measurement on the first rows of d (rows of xrow and yrow values) at
 * step; sets *stop when on_sharpness asks to stop. */
nb_status nb_train_sharpness_check(const nb_train_opts *opts);
nb_status nb_train_sharpness(nb_model *m, nb_node *loss, const nb_dataset *d, const nb_train_opts *opts,
                             int64_t xrow, int64_t yrow, int64_t step, int epoch, double lr, int *stop);

/* The activations' names in enum order (names.c); n gets their count. */
const char *const *nb_activation_names(int *n);

/* diagnose.c: the parameters into before (nb_model_num_params values), and
 * after a step each layer's update ratio and weight norm into d. */
void nb_diag_snapshot(const nb_model *m, nb_real *before);
void nb_diag_update_ratio(const nb_model *m, const nb_real *before, nb_layer_diag *d);

#endif
