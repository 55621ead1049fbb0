/* Networks for the page: the playground's small dense networks (panel 3) and
 * the Fashion-MNIST CNN (panel 4), both nb_models built from a spec. The
 * page loads a model file's weights itself (it parses safetensors in
 * JavaScript and writes each tensor through nbw_net_param_data), so the
 * WebAssembly build needs no file I/O and no JSON parser. */
#include "nb_wasm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../nn/nn_internal.h"

struct nbw_net {
    nb_model *m;
    nb_optim *opt;
    nb_loss_kind loss_kind;
    nb_tensor *result; /* the last Jacobian or VJP handed out */
    nb_rng rng;        /* minibatch sampling */
    int64_t *order;    /* a permutation of the training rows, walked in batches */
    int64_t order_n, order_pos;
};

NBW_EXPORT(nbw_net_new)
nbw_net *nbw_net_new(const char *spec, int rank, const int *input_shape, int loss_kind, int seed)
{
    int64_t shape[NB_MAX_RANK];
    if (!spec || !input_shape || rank < 1 || rank >= NB_MAX_RANK) {
        nb_set_error(NB_ERR_ARG, "net: need a spec and an input shape of rank 1..%d", NB_MAX_RANK - 1);
        return NULL;
    }
    for (int k = 0; k < rank; k++) shape[k] = input_shape[k];
    if (loss_kind < NB_LOSS_CCE || loss_kind > NB_LOSS_BCE) {
        nb_set_error(NB_ERR_ARG, "net: loss kind %d is not 0 (CCE), 1 (MSE) or 2 (BCE)", loss_kind);
        return NULL;
    }
    nbw_net *h = calloc(1, sizeof *h);
    if (!h) {
        nb_set_error(NB_ERR_NOMEM, "net: out of memory");
        return NULL;
    }
    h->loss_kind = (nb_loss_kind)loss_kind;
    nb_rng_seed(&h->rng, (uint64_t)seed);
    nb_node *target = NULL, *loss = NULL;
    if (nb_model_from_spec(spec, rank, shape, &h->m) || nb_model_init(h->m, NB_INIT_GLOROT_UNIFORM, (uint64_t)seed) ||
        nb_model_loss(h->m, h->loss_kind, &target, &loss)) {
        nbw_net_free(h);
        return NULL;
    }
    return h;
}

NBW_EXPORT(nbw_net_free)
void nbw_net_free(nbw_net *h)
{
    if (!h) return;
    nb_optim_free(h->opt);
    nb_model_free(h->m);
    nb_tensor_free(h->result);
    free(h->order);
    free(h);
}

/* kind: 0 SGD, 1 Adam, 2 AdamW, 3 RMSprop (nb_optimizer); a new optimiser
 * starts with fresh state. */
NBW_EXPORT(nbw_net_optim)
nb_status nbw_net_optim(nbw_net *h, int kind, double lr)
{
    if (!h) return nb_set_error(NB_ERR_ARG, "optimiser: no network");
    if (kind < NB_OPT_SGD || kind > NB_OPT_RMSPROP)
        return nb_set_error(NB_ERR_ARG, "optimiser: kind %d is not 0..3 (sgd, adam, adamw, rmsprop)", kind);
    nb_optim_opts o = {.kind = (nb_optimizer)kind, .lr = lr};
    nb_optim *opt = NULL;
    nb_status s = nb_optim_new(h->m, &o, &opt);
    if (s) return s;
    nb_optim_free(h->opt);
    h->opt = opt;
    return NB_OK;
}

NBW_EXPORT(nbw_net_param_count) int nbw_net_param_count(nbw_net *h) { return h ? nb_model_param_count(h->m) : 0; }

static nb_node *param(nbw_net *h, int i)
{
    return h && i >= 0 && i < nb_model_param_count(h->m) ? nb_model_param(h->m, i) : NULL;
}

NBW_EXPORT(nbw_net_param_name) const char *nbw_net_param_name(nbw_net *h, int i)
{
    nb_node *p = param(h, i);
    return p ? nb_node_name(p) : NULL;
}

/* The parameter's values (size nbw_net_param_size), writable: the page
 * writes a model file's tensors here, in Keras layouts. */
NBW_EXPORT(nbw_net_param_data) float *nbw_net_param_data(nbw_net *h, int i)
{
    nb_node *p = param(h, i);
    return p ? nb_value(p)->data : NULL;
}

NBW_EXPORT(nbw_net_param_size) int nbw_net_param_size(nbw_net *h, int i)
{
    nb_node *p = param(h, i);
    return p ? (int)nb_value(p)->size : 0;
}

/* dJ/d(parameter) of the last training step (nbw_net_train), same layout as
 * the values; NULL before the first step. */
NBW_EXPORT(nbw_net_param_grad) float *nbw_net_param_grad(nbw_net *h, int i)
{
    nb_node *p = param(h, i);
    nb_tensor *gr = p ? nb_grad(p) : NULL;
    return gr ? gr->data : NULL;
}

NBW_EXPORT(nbw_net_layer_count) int nbw_net_layer_count(nbw_net *h) { return h ? nb_model_num_layers(h->m) : 0; }

/* Layer i's output shape without the batch dimension (at most 8 values);
 * returns the rank. i = -1 gives the input's shape. */
NBW_EXPORT(nbw_net_layer_shape) int nbw_net_layer_shape(nbw_net *h, int i, int *shape)
{
    if (!h || !shape || i < -1 || i >= nb_model_num_layers(h->m)) return 0;
    int64_t s64[NB_MAX_RANK];
    int rank = i < 0 ? nb_model_input_shape(h->m, s64) : nb_model_layer_shape(h->m, i, s64);
    for (int k = 0; k < rank; k++) shape[k] = (int)s64[k];
    return rank;
}

/* A new pass over the rows in a random order once the last is used up. */
static nb_status next_batch_rows(nbw_net *h, int64_t n, int64_t b, int64_t *rows)
{
    if (h->order_n != n) {
        free(h->order);
        h->order = malloc(sizeof(int64_t) * (size_t)n);
        if (!h->order) return nb_set_error(NB_ERR_NOMEM, "train: out of memory for %lld rows", (long long)n);
        for (int64_t i = 0; i < n; i++) h->order[i] = i;
        h->order_n = n;
        h->order_pos = n;
    }
    for (int64_t k = 0; k < b; k++) {
        if (h->order_pos == n) { /* Fisher-Yates */
            for (int64_t i = n - 1; i > 0; i--) {
                int64_t j = (int64_t)(nb_rng_uniform(&h->rng) * (double)(i + 1)), t = h->order[i];
                h->order[i] = h->order[j];
                h->order[j] = t;
            }
            h->order_pos = 0;
        }
        rows[k] = h->order[h->order_pos++];
    }
    return NB_OK;
}

/* Copies rows of x (n, in...) and y (n, target...) into the graph. */
static nb_status load_rows(nbw_net *h, const float *x, const float *y, const int64_t *rows, int64_t b)
{
    nb_model *m = h->m;
    nb_status s = nb_model_set_batch(m, b);
    if (s) return s;
    int64_t xrow = 1, yrow = 1;
    for (int k = 0; k < m->in_rank; k++) xrow *= m->in_shape[k];
    if (h->loss_kind != NB_LOSS_CCE) {
        int64_t shape[NB_MAX_RANK];
        int r = nb_model_layer_shape(m, m->nlayers - 1, shape);
        for (int k = 0; k < r; k++) yrow *= shape[k];
    }
    for (int64_t k = 0; k < b; k++) {
        int64_t r = rows ? rows[k] : k;
        memcpy(m->input->value.data + k * xrow, x + r * xrow, sizeof(float) * (size_t)xrow);
        memcpy(m->target->value.data + k * yrow, y + r * yrow, sizeof(float) * (size_t)yrow);
    }
    return NB_OK;
}

/* steps minibatch steps of size batch on (x, y) of n rows: forward, loss,
 * nb_backward, optimiser step (inference mode: the page's networks have no
 * dropout or batchnorm). Returns the last step's loss (NaN on error). */
NBW_EXPORT(nbw_net_train)
double nbw_net_train(nbw_net *h, const float *x, const float *y, int n, int batch, int steps)
{
    if (!h || !h->opt || !x || !y || n < 1 || batch < 1 || steps < 0) {
        nb_set_error(NB_ERR_ARG, "train: need a network with an optimiser (nbw_net_optim), data and batch >= 1");
        return NAN;
    }
    int64_t b = batch < n ? batch : n;
    int64_t *rows = malloc(sizeof(int64_t) * (size_t)b);
    nb_status s = rows ? NB_OK : nb_set_error(NB_ERR_NOMEM, "train: out of memory");
    double loss = NAN;
    for (int t = 0; !s && t < steps; t++) {
        if (!(s = next_batch_rows(h, n, b, rows)) && !(s = load_rows(h, x, y, rows, b)) &&
            !(s = nb_forward(h->m->g)) && !(s = nb_backward(h->m->loss)))
            s = nb_optim_step(h->opt);
        if (!s) loss = nb_value(h->m->loss)->data[0];
    }
    free(rows);
    return s ? NAN : loss;
}

/* The mean loss over all n rows (inference mode; NaN on error). */
NBW_EXPORT(nbw_net_loss)
double nbw_net_loss(nbw_net *h, const float *x, const float *y, int n)
{
    if (!h || !x || !y || n < 1) {
        nb_set_error(NB_ERR_ARG, "loss: need a network and n >= 1 rows");
        return NAN;
    }
    if (load_rows(h, x, y, NULL, n) || nb_forward(h->m->g)) return NAN;
    return nb_value(h->m->loss)->data[0];
}

/* Runs the model on n rows of x (inference mode) and returns its output
 * (n, out...): probabilities after a softmax or sigmoid. The values of every
 * layer stay readable through nbw_net_layer_value until the next call. */
NBW_EXPORT(nbw_net_predict)
float *nbw_net_predict(nbw_net *h, const float *x, int n)
{
    if (!h || !x || n < 1) {
        nb_set_error(NB_ERR_ARG, "predict: need a network and n >= 1 rows");
        return NULL;
    }
    nb_status s = nb_model_set_batch(h->m, n);
    int64_t xrow = 1;
    for (int k = 0; k < h->m->in_rank; k++) xrow *= h->m->in_shape[k];
    if (!s) memcpy(h->m->input->value.data, x, sizeof(float) * (size_t)(xrow * n));
    if (!s) s = nb_forward_upto(h->m->output);
    return s ? NULL : nb_value(h->m->output)->data;
}

/* Layer i's output (batch, shape...) of the last nbw_net_predict. */
NBW_EXPORT(nbw_net_layer_value) float *nbw_net_layer_value(nbw_net *h, int i)
{
    if (!h || i < 0 || i >= h->m->nlayers) return NULL;
    return nb_value(h->m->layer_out[i])->data;
}

/* The per-example Jacobian of the output w.r.t. the input over n rows:
 * shape (n, out..., in...), e.g. (n, 1, 2) for the playground: the field
 * d y_hat / d (x1, x2) over the plane. */
NBW_EXPORT(nbw_net_input_jacobian)
float *nbw_net_input_jacobian(nbw_net *h, const float *x, int n)
{
    if (!nbw_net_predict(h, x, n)) return NULL;
    nb_tensor_free(h->result);
    h->result = NULL;
    nb_jacobian_opts o = {.mode = NB_JAC_AUTO, .per_example = 1};
    if (nb_jacobian(h->m->output, h->m->input, &o, &h->result)) return NULL;
    return h->result->data;
}

/* The Jacobian of layer i's output w.r.t. its input (layer i - 1's output, or
 * the network's input for i = 0) at one example x: shape out.shape +
 * in.shape with the batch of 1 kept, e.g. (1, 8, 1, 2) for "dense 8" on 2
 * inputs. shape gets the 2 * NB_MAX_RANK dims at most; returns the rank. */
NBW_EXPORT(nbw_net_layer_jacobian)
float *nbw_net_layer_jacobian(nbw_net *h, int i, const float *x, int *shape, int *rank)
{
    if (!h || i < 0 || i >= h->m->nlayers || !shape || !rank) {
        nb_set_error(NB_ERR_ARG, "layer jacobian: no layer %d", i);
        return NULL;
    }
    if (!nbw_net_predict(h, x, 1)) return NULL;
    nb_tensor_free(h->result);
    h->result = NULL;
    nb_node *in = i == 0 ? h->m->input : h->m->layer_out[i - 1];
    nb_jacobian_opts o = {.mode = NB_JAC_AUTO};
    if (nb_jacobian(h->m->layer_out[i], in, &o, &h->result)) return NULL;
    *rank = h->result->rank;
    for (int k = 0; k < h->result->rank; k++) shape[k] = (int)h->result->shape[k];
    return h->result->data;
}

/* Saliency for one example: the row of the input-Jacobian of the logits for
 * class c, d logit_c / d x (the input's shape), as one VJP with the seed
 * e_c: the same row nb_jacobian would give, without the other rows. */
NBW_EXPORT(nbw_net_saliency)
float *nbw_net_saliency(nbw_net *h, const float *x, int c)
{
    if (!nbw_net_predict(h, x, 1)) return NULL;
    nb_node *logits = nb_model_logits(h->m);
    nb_tensor *lv = nb_value(logits);
    if (c < 0 || c >= lv->size) {
        nb_set_error(NB_ERR_ARG, "saliency: class %d is not 0..%lld", c, (long long)lv->size - 1);
        return NULL;
    }
    int64_t sshape[NB_MAX_RANK + 1] = {1};
    memcpy(sshape + 1, lv->shape, sizeof(int64_t) * (size_t)lv->rank);
    nb_tensor *seed = nb_tensor_new(lv->rank + 1, sshape);
    if (!seed) return NULL;
    seed->data[c] = 1;
    nb_tensor_free(h->result);
    h->result = NULL;
    nb_node *wrt = h->m->input;
    nb_status s = nb_vjp(logits, seed, 1, &wrt, &h->result);
    nb_tensor_free(seed);
    return s ? NULL : h->result->data;
}

/* lambda_max, the largest eigenvalue of the Hessian of the mean loss over
 * the n rows of (x, y) w.r.t. all parameters (nb_hessian_eigs: subspace
 * iteration on exact Hessian-vector products, seed 1, relative tolerance
 * tol, at most max_iter iterations), for panel 1's border alpha =
 * 2 / lambda_max of plain gradient descent on a network. iters and products
 * (may be NULL) get what it used. NaN on error. */
NBW_EXPORT(nbw_net_lambda_max)
double nbw_net_lambda_max(nbw_net *h, const float *x, const float *y, int n, double tol, int max_iter, int *iters,
                          int *products)
{
    if (!h || !x || !y || n < 1 || !(tol > 0) || max_iter < 1) {
        nb_set_error(NB_ERR_ARG, "lambda_max: need a network, n >= 1 rows, tol > 0 and max_iter >= 1");
        return NAN;
    }
    const int np = nb_model_param_count(h->m);
    nb_node **params = np > 0 ? malloc(sizeof *params * (size_t)np) : NULL;
    if (!params) {
        nb_set_error(np > 0 ? NB_ERR_NOMEM : NB_ERR_ARG, "lambda_max: %d parameter tensors", np);
        return NAN;
    }
    for (int i = 0; i < np; i++) params[i] = nb_model_param(h->m, i);
    nb_eigs_result e = {0};
    nb_eigs_opts o = {.k = 1, .max_iter = max_iter, .tol = tol, .seed = 1};
    const bool failed =
        load_rows(h, x, y, NULL, n) || nb_forward(h->m->g) || nb_hessian_eigs(h->m->loss, np, params, &o, &e);
    free(params);
    if (failed) return NAN;
    nb_tensor_free(e.vectors);
    if (iters) *iters = e.iterations;
    if (products) *products = (int)e.products;
    return e.values[0];
}
