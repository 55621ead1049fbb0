/* A model from C, end to end: build it from a spec, save it, load it back,
 * predict, train, evaluate, save and load again; the same steps as
 * `nabla train` and `nabla predict`, without the command line.
 *
 * The data: 3 classes of 2-D points, 100 each, around the centres
 * (1, 0), (-0.5, 0.87) and (-0.5, -0.87) with a spread of 0.35 in each
 * coordinate (a fixed generator: the same points every run). The model:
 * `dense 16 tanh; dense 3 softmax` on inputs of shape (2), Glorot weights
 * from seed 1, Adam at 0.02, 20 epochs of batches of 30.
 *
 * Usage: train_from_c [MODEL.safetensors] (default train_from_c.safetensors,
 * overwritten). Lines read "<name> = <number>"; exits 1 on any failure, when
 * training did not lower the loss, or when the model reloaded from the file
 * predicts other probabilities than the one that wrote it. Model files hold
 * float32 weights (DESIGN.md), so with the float library the two agree to
 * the bit; this program is built with the double one, where the weights are
 * rounded to float on saving: they agree to within 1e-6. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nabla.h"

enum { PER_CLASS = 100, CLASSES = 3, N = PER_CLASS * CLASSES };

static int fail(const char *what)
{
    fprintf(stderr, "train_from_c: %s: %s\n", what, nb_last_error());
    return 1;
}

/* Uniform in [-1, 1) from a 32-bit LCG (Numerical Recipes' constants). */
static double uniform(unsigned *state)
{
    *state = *state * 1664525u + 1013904223u;
    return (double)(*state >> 8) / (double)(1u << 23) - 1;
}

/* The toy data set: x (N, 2), y (N) class indices, classes interleaved. */
static nb_status make_data(nb_dataset *d)
{
    const int64_t xs[2] = {N, 2}, ys[1] = {N};
    d->x = nb_tensor_new(2, xs), d->y = nb_tensor_new(1, ys);
    if (!d->x || !d->y) return NB_ERR_NOMEM;
    unsigned state = 7;
    for (int i = 0; i < N; i++) {
        const int c = i % CLASSES;
        const double angle = 2 * 3.14159265358979323846 * c / CLASSES;
        d->x->data[2 * i] = cos(angle) + 0.35 * uniform(&state);
        d->x->data[2 * i + 1] = sin(angle) + 0.35 * uniform(&state);
        d->y->data[i] = c;
    }
    return NB_OK;
}

/* Largest |a - b| over two tensors of one size. */
static double max_diff(const nb_tensor *a, const nb_tensor *b)
{
    double m = 0;
    for (int64_t i = 0; i < a->size; i++) m = fmax(m, fabs((double)a->data[i] - (double)b->data[i]));
    return m;
}

/* Loss and accuracy of m on d, printed under a name. */
static int report(nb_model *m, const nb_dataset *d, const char *when, double *loss)
{
    double acc;
    if (nb_evaluate(m, d, NB_LOSS_CCE, 100, loss, &acc, NULL)) return fail("evaluating");
    printf("loss %s = %.6f\naccuracy %s = %.4f\n", when, *loss, when, acc);
    return 0;
}

/* 20 epochs of Adam on d. */
static int train(nb_model *m, const nb_dataset *d)
{
    nb_optim *o;
    const nb_optim_opts oo = {.kind = NB_OPT_ADAM, .lr = 0.02};
    if (nb_optim_new(m, &oo, &o)) return fail("the optimiser");
    const nb_train_opts to = {.epochs = 20, .batch = 30, .loss = NB_LOSS_CCE, .seed = 1, .shuffle = 1};
    const nb_status s = nb_train(m, o, d, NULL, &to);
    nb_optim_free(o);
    return s ? fail("training") : 0;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "train_from_c.safetensors";
    const int64_t in[1] = {2};
    nb_dataset d = {0};
    nb_model *m = NULL, *again = NULL;
    nb_tensor *p = NULL, *q = NULL;
    double before, after;
    int rc = 1;
    if (make_data(&d)) goto out;
    /* Build, save and load: from here on, the model as the file holds it. */
    if (nb_model_from_spec("dense 16 tanh; dense 3 softmax", 1, in, &m) ||
        nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 1) || nb_model_save(m, path)) {
        fail("building and saving the model");
        goto out;
    }
    nb_model_free(m);
    if (nb_model_load(path, &m)) {
        fail("loading the model");
        goto out;
    }
    printf("model: %s\n", nb_model_spec(m));
    if (report(m, &d, "before", &before) || train(m, &d) || report(m, &d, "after", &after)) goto out;
    /* Predict the first examples, save, load into a second model, predict again. */
    if (nb_model_predict(m, d.x, 100, &p) || nb_model_save(m, path) || nb_model_load(path, &again) ||
        nb_model_predict(again, d.x, 100, &q)) {
        fail("predicting, saving and reloading");
        goto out;
    }
    for (int i = 0; i < 3; i++)
        printf("p[%d] = %.6f %.6f %.6f (label %d)\n", i, (double)p->data[3 * i], (double)p->data[3 * i + 1],
               (double)p->data[3 * i + 2], (int)d.y->data[i]);
    double worst_sum = 0;
    for (int i = 0; i < N; i++)
        worst_sum = fmax(worst_sum, fabs((double)p->data[3 * i] + p->data[3 * i + 1] + p->data[3 * i + 2] - 1));
    printf("max |sum of a row of p - 1| = %.3g\n", worst_sum);
    printf("reloaded max |p - q| = %.3g\n", max_diff(p, q));
    const double tol = strcmp(nb_precision(), "float32") ? 1e-6 : 0;
    rc = max_diff(p, q) <= tol && worst_sum < 1e-6 && after < before ? 0 : 1;
out:
    nb_tensor_free(p);
    nb_tensor_free(q);
    nb_model_free(m);
    nb_model_free(again);
    nb_dataset_free(&d);
    return rc;
}
