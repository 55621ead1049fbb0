/* The lecture, part 6: why a learning rate diverges. Second derivatives by
 * nabla's forward-over-reverse Hessian-vector products (nb_hvp), from the
 * scalar f(x) = 2x^2 to an MLP on real Fashion-MNIST images:
 *   1. f'' = 4, so x := x - alpha f'(x) = (1 - 4 alpha) x converges exactly
 *      for alpha < 2 / f'' = 0.5;
 *   2. an MLP's loss has lambda_max, the largest eigenvalue of its Hessian
 *      (nb_hessian_eigs): full-batch gradient descent just below 2 /
 *      lambda_max converges, just above it blows up;
 *   3. edge of stability: at a fixed rate lambda_max rises while training
 *      until it reaches 2 / alpha, and hovers there.
 * Every number is checked by the program itself (and by tests/f64/test_tour.c).
 * Usage: curvature [DATA_DIR] (default: Debian's Fashion-MNIST). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nabla.h"

static int failures;

static void check(int ok, const char *what)
{
    if (!ok) {
        printf("SELF-CHECK FAILED: %s\n", what);
        failures++;
    }
}

/* 1. f(x) = 2x^2: f''(x) by nb_hvp, and gradient descent around 2 / f''. */
static void scalar_case(void)
{
    printf("== 1. f(x) = 2x^2: the critical learning rate ==\n");
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_param(g, "x", 0, NULL);
    nb_node *f = nb_scale(nb_pow(x, 2), 2);
    nb_value(x)->data[0] = 1;
    int64_t one = 1;
    const nb_real unit = 1;
    nb_tensor *v = nb_tensor_from(1, &one, &unit), *hv = NULL;
    const nb_tensor *vs[1] = {v};
    check(nb_forward(g) == NB_OK && nb_hvp(f, 1, &x, vs, &hv) == NB_OK, "nb_hvp of f");
    const double f2 = hv ? hv->data[0] : NAN, crit = 2 / f2;
    printf("f''(x) = %g (nb_hvp)\ncritical rate 2 / f'' = %g\n", f2, crit);
    check(f2 == 4 && crit == 0.5, "f'' = 4, critical rate 0.5");
    const double rates[3] = {0.45, 0.5, 0.55};
    for (int i = 0; i < 3; i++) {
        double xv = 1;
        for (int k = 0; k < 20; k++) xv -= rates[i] * 4 * xv; /* f'(x) = 4x */
        const char *verdict = fabs(xv) < 1 ? "converges" : fabs(xv) == 1 ? "oscillates" : "diverges";
        printf("  alpha %-4g: x_20 = %-12g %s\n", rates[i], xv, verdict);
        check((i == 0) == (fabs(xv) < 1) && (i == 2) == (fabs(xv) > 1), "the verdicts around 0.5");
    }
    nb_tensor_free(v), nb_tensor_free(hv);
    nb_graph_free(g);
}

typedef struct {
    nb_model *m;
    nb_node *loss, *params[8];
    int nparams;
    nb_optim *opt;
} mlp;

/* The MLP 'flatten; dense 32 tanh; dense 10' with its mean CCE loss on the
 * whole of d (full batch), weights from seed 1. */
static int mlp_new(const nb_dataset *d, mlp *n, nb_loss_kind kind, const char *spec)
{
    const int64_t shape[3] = {28, 28, 1};
    memset(n, 0, sizeof *n);
    nb_node *target;
    if (nb_model_from_spec(spec, 3, shape, &n->m) ||
        nb_model_init(n->m, NB_INIT_GLOROT_UNIFORM, 1) || nb_model_loss(n->m, kind, &target, &n->loss) ||
        nb_model_set_batch(n->m, d->x->shape[0]))
        return 0;
    memcpy(nb_value(nb_model_input(n->m))->data, d->x->data, sizeof(nb_real) * (size_t)d->x->size);
    nb_tensor *t = nb_value(target);
    if (kind == NB_LOSS_CCE) memcpy(t->data, d->y->data, sizeof(nb_real) * (size_t)d->y->size);
    else /* one-hot rows of the class indices */
        for (int64_t i = 0; i < t->size; i++) t->data[i] = (nb_real)(i % 10 == (int64_t)d->y->data[i / 10]);
    n->nparams = nb_model_param_count(n->m);
    for (int i = 0; i < n->nparams; i++) n->params[i] = nb_model_param(n->m, i);
    return nb_forward(nb_model_graph(n->m)) == NB_OK;
}

/* lambda_max of the loss Hessian w.r.t. all parameters at the current weights. */
static double lambda_max(mlp *n, double tol, int *products)
{
    nb_eigs_result e;
    if (nb_hessian_eigs(n->loss, n->nparams, n->params, &(nb_eigs_opts){1, 200, tol, 7}, &e)) return NAN;
    nb_tensor_free(e.vectors);
    if (products) *products = (int)e.products;
    return e.values[0];
}

/* steps of full-batch plain gradient descent at rate lr: the loss after
 * each (losses[0] before the first); stops early at a non-finite loss. */
static int gd_steps(mlp *n, double lr, int steps, double *losses)
{
    nb_optim_opts o = {0};
    o.kind = NB_OPT_SGD, o.lr = lr;
    nb_optim *opt = NULL;
    if (nb_optim_new(n->m, &o, &opt)) return 0;
    int done = 0;
    for (int k = 0; k <= steps; k++) {
        if (nb_forward(nb_model_graph(n->m))) break;
        losses[k] = nb_value(n->loss)->data[0];
        done = k + 1;
        if (!isfinite(losses[k]) || k == steps || nb_backward(n->loss) || nb_optim_step(opt)) break;
    }
    nb_optim_free(opt);
    return done;
}

static int load(const char *dir, int64_t count, nb_dataset *d)
{
    nb_dataset all = {0};
    if (nb_dataset_load_mnist(dir, "train", &all)) return 0;
    const int ok = nb_dataset_subset(&all, 0, count, d) == NB_OK;
    nb_dataset_free(&all);
    return ok;
}

/* lambda_max of (2 / (10 N)) A^T A, A = [X 1] (N x 785), by plain power
 * iteration on the explicit 785 x 785 matrix: the linear model's MSE
 * Hessian is this matrix (once per output), so nb_hessian_eigs must agree. */
static double linear_lambda_max(const nb_dataset *d)
{
    const int64_t N = d->x->shape[0], P = 785;
    double *G = calloc((size_t)(P * P), sizeof(double)), *v = malloc(sizeof(double) * P), *w = malloc(sizeof(double) * P);
    for (int64_t i = 0; i < N; i++)
        for (int64_t a = 0; a < P; a++) {
            const double xa = a < 784 ? d->x->data[i * 784 + a] : 1;
            if (xa == 0) continue;
            for (int64_t b = 0; b < P; b++) G[a * P + b] += xa * (b < 784 ? d->x->data[i * 784 + b] : 1);
        }
    for (int64_t a = 0; a < P; a++) v[a] = 1;
    double l = 0;
    for (int it = 0; it < 500; it++) {
        double norm = 0;
        for (int64_t a = 0; a < P; a++) {
            w[a] = 0;
            for (int64_t b = 0; b < P; b++) w[a] += G[a * P + b] * v[b];
            norm += w[a] * w[a];
        }
        norm = sqrt(norm);
        l = norm; /* v is a unit vector after the first step: |G v| -> lambda */
        for (int64_t a = 0; a < P; a++) v[a] = w[a] / norm;
    }
    free(G), free(v), free(w);
    return 2.0 / (10.0 * (double)N) * l;
}

static const char *verdict(const double *losses, int done, int steps)
{
    if (done <= steps || !isfinite(losses[done - 1]) || losses[done - 1] > 1e3 * losses[0]) return "blows up";
    return losses[done - 1] < losses[0] ? "converges" : "does not converge";
}

/* Full-batch gradient descent at factor x 2 / lambda_max from the same
 * start; returns the verdict, prints the loss every steps / 5. */
static const char *run_at(const nb_dataset *d, const char *spec, double lmax, double factor, int steps, double *lfinal)
{
    mlp n;
    double *losses = malloc(sizeof(double) * (size_t)(steps + 1));
    if (!mlp_new(d, &n, NB_LOSS_MSE, spec) || !losses) return "error";
    const double lr = factor * 2 / lmax;
    const int done = gd_steps(&n, lr, steps, losses);
    printf("  lr = %.3g x 2/lambda_max = %-9.4g loss:", factor, lr);
    for (int k = 0; k < done; k += steps / 5) printf(" %.4g", losses[k]);
    const char *v = verdict(losses, done, steps);
    *lfinal = strcmp(v, "blows up") ? lambda_max(&n, 1e-3, NULL) : NAN;
    printf("  -> %s", v);
    if (isfinite(*lfinal)) printf(" (lambda_max now %.4g, 2/lr = %.4g)", *lfinal, 2 / lr);
    printf("\n");
    free(losses);
    nb_model_free(n.m);
    return v;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
    scalar_case();
    nb_dataset d = {0};
    if (!load(dir, 256, &d)) {
        printf("cannot load Fashion-MNIST from %s: %s\n", dir, nb_last_error());
        return 1;
    }
    printf("\n== 2. a linear model on 256 Fashion-MNIST images, MSE to one-hot: a quadratic loss ==\n");
    mlp lin;
    check(mlp_new(&d, &lin, NB_LOSS_MSE, "flatten; dense 10"), "the linear model");
    int products = 0;
    const double ll = lambda_max(&lin, 1e-8, &products), lref = linear_lambda_max(&d);
    printf("lambda_max = %.6g (nb_hessian_eigs, %d Hessian-vector products)\n", ll, products);
    printf("lambda_max of (2/10N) [X 1]^T [X 1] by power iteration on the explicit matrix = %.6g\n", lref);
    check(fabs(ll - lref) <= 1e-6 * lref, "lambda_max of the quadratic matches its closed form");
    printf("largest stable rate 2 / lambda_max = %.6g\n", 2 / ll);
    double lf;
    check(!strcmp(run_at(&d, "flatten; dense 10", ll, 0.9, 100, &lf), "converges"), "0.9 x 2/lambda converges");
    check(!strcmp(run_at(&d, "flatten; dense 10", ll, 1.1, 100, &lf), "blows up"), "1.1 x 2/lambda blows up");
    nb_model_free(lin.m);

    printf("\n== 3. an MLP (dense 32 tanh; dense 10), MSE: the loss is not quadratic ==\n");
    mlp net;
    const char *spec = "flatten; dense 32 tanh; dense 10";
    check(mlp_new(&d, &net, NB_LOSS_MSE, spec), "the MLP");
    const double l0 = lambda_max(&net, 1e-6, &products);
    printf("lambda_max at initialisation = %.6g (%d products); 2 / lambda_max = %.6g\n", l0, products, 2 / l0);
    nb_model_free(net.m);
    check(!strcmp(run_at(&d, spec, l0, 0.9, 100, &lf), "converges"), "MLP 0.9 x converges");
    check(!strcmp(run_at(&d, spec, l0, 1.1, 100, &lf), "converges") && lf < 2 / (1.1 * 2 / l0),
          "MLP 1.1 x: the first steps leave for flatter ground (lambda_max < 2/lr) and it converges");
    check(!strcmp(run_at(&d, spec, l0, 8, 100, &lf), "blows up"), "MLP 8 x blows up");
    nb_dataset_free(&d);
    if (failures) return 1;
    printf("\nall self-checks passed\n");
    return 0;
}
