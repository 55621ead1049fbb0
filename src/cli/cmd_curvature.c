/* nabla curvature: the top eigenvalues and the trace of the Hessian of the
 * training loss, over a whole data set (Hessian-vector products summed over
 * batches), and what they say about the learning rate: plain gradient
 * descent x := x - lr g is stable along an eigenvector of eigenvalue l
 * exactly when |1 - lr l| < 1, i.e. lr < 2 / l. Also the second-order part
 * of 'nabla demo gd' (f'' = 4 and the critical rate 0.5). */
#include "cli.h"
#include "cli_args.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    nb_model *m;
    nb_node *loss, *target, *params[64];
    int nparams;
    int64_t n, batch;
    const nb_dataset *d;
} data_hessian;

/* Rows [r0, r0 + b) of the data set into the model's input and target. */
static nb_status load_rows(data_hessian *h, int64_t r0, int64_t b)
{
    nb_status s = nb_model_set_batch(h->m, b);
    if (s) return s;
    const nb_tensor *x = h->d->x, *y = h->d->y;
    const int64_t xr = x->size / x->shape[0], yr = y->size / y->shape[0];
    if (nb_value(h->target)->size != b * yr)
        return nb_set_error(NB_ERR_SHAPE, "the data set's labels (%lld per example) do not fit the loss's target",
                            (long long)yr);
    memcpy(nb_value(nb_model_input(h->m))->data, x->data + r0 * xr, (size_t)(b * xr) * sizeof(nb_real));
    memcpy(nb_value(h->target)->data, y->data + r0 * yr, (size_t)(b * yr) * sizeof(nb_real));
    return NB_OK;
}

/* y = H x for K flat vectors: the mean loss's Hessian, batch by batch, each
 * batch's products weighted by its share of the examples. */
static nb_status data_hvp(void *user, int64_t K, const nb_real *x, nb_real *y)
{
    data_hessian *h = user;
    nb_tensor *vs[64] = {NULL}, *hv[64] = {NULL};
    nb_status s = NB_OK;
    int64_t off = 0;
    for (int i = 0; i < h->nparams && !s; i++) { /* (K, n) -> per parameter (K,) + shape */
        const nb_tensor *p = nb_value(h->params[i]);
        int64_t shape[NB_MAX_RANK + 1] = {K};
        memcpy(shape + 1, p->shape, sizeof(int64_t) * (size_t)p->rank);
        if (!(vs[i] = nb_tensor_new(p->rank + 1, shape))) s = NB_ERR_NOMEM;
        for (int64_t k = 0; !s && k < K; k++)
            memcpy(vs[i]->data + k * p->size, x + k * h->n + off, (size_t)p->size * sizeof(nb_real));
        off += p->size;
    }
    memset(y, 0, (size_t)(K * h->n) * sizeof(nb_real));
    for (int64_t r0 = 0; r0 < h->d->x->shape[0] && !s; r0 += h->batch) {
        const int64_t b = h->d->x->shape[0] - r0 < h->batch ? h->d->x->shape[0] - r0 : h->batch;
        if ((s = load_rows(h, r0, b)) || (s = nb_hvp(h->loss, h->nparams, h->params, (const nb_tensor *const *)vs, hv)))
            break;
        const double w = (double)b / (double)h->d->x->shape[0];
        off = 0;
        for (int i = 0; i < h->nparams; i++) {
            const int64_t m = nb_value(h->params[i])->size;
            for (int64_t k = 0; k < K; k++)
                for (int64_t e = 0; e < m; e++) y[k * h->n + off + e] += (nb_real)(w * hv[i]->data[k * m + e]);
            off += m;
            nb_tensor_free(hv[i]), hv[i] = NULL;
        }
    }
    for (int i = 0; i < h->nparams; i++) nb_tensor_free(vs[i]), nb_tensor_free(hv[i]);
    return s;
}

/* What lambda_max says about plain gradient descent (and about lr). */
static void print_verdict(double lmax, double lr)
{
    if (!(lmax > 0)) {
        printf("no positive curvature found (lambda_max %.4g): gradient descent has no step-size limit along the\n"
               "top direction here\n", lmax);
        return;
    }
    printf("largest stable step of plain gradient descent: 2 / lambda_max = %.6g\n", 2 / lmax);
    if (lr > 0) {
        const double f = fabs(1 - lr * lmax);
        printf("--lr %g is %.3g x 2 / lambda_max: a plain gradient step multiplies the error along the top\n"
               "eigenvector by |1 - lr lambda_max| = %.4g, so plain gradient descent %s there%s\n",
               lr, lr * lmax / 2, f, f < 1 ? "is stable" : f == 1 ? "oscillates" : "diverges",
               f < 1 ? "" : " (Adam and momentum change the effective step; lower lr for plain SGD)");
    }
}

static int run_curvature(data_hessian *h, const nb_eigs_opts *eo, int trace, long long samples, double lr)
{
    for (int i = 0; i < nb_model_param_count(h->m) && h->nparams < 64; i++) {
        if (!nb_node_requires_grad(nb_model_param(h->m, i))) continue; /* batchnorm's moving statistics */
        h->params[h->nparams++] = nb_model_param(h->m, i);
        h->n += nb_value(h->params[h->nparams - 1])->size;
    }
    printf("Hessian of the mean loss over %lld training examples (batches of %lld) w.r.t. %lld parameters\n",
           (long long)h->d->x->shape[0], (long long)h->batch, (long long)h->n);
    nb_eigs_result e;
    if (nb_linop_eigs(h->n, data_hvp, h, eo, &e)) return cli_fail("curvature", "eigenvalues");
    for (int i = 0; i < e.k; i++) printf("lambda_%d = %.6g   (residual %.2g)\n", i + 1, e.values[i], e.residuals[i]);
    printf("%s after %d iterations (last relative change %.2g), %lld Hessian-vector products\n",
           e.converged ? "converged" : "NOT converged", e.iterations, e.rel_change, (long long)e.products);
    double lmax = e.values[0];
    for (int i = 1; i < e.k; i++) lmax = fmax(lmax, e.values[i]);
    nb_tensor_free(e.vectors);
    if (trace) {
        nb_trace_result t;
        if (nb_linop_trace(h->n, data_hvp, h, (int)samples, eo->seed, &t)) return cli_fail("curvature", "trace");
        printf("trace (Hutchinson, %d samples) = %.6g +- %.2g\n", t.samples, t.trace, t.std_error);
    }
    print_verdict(lmax, lr);
    return 0;
}

typedef struct {
    long long count, batch, top, samples, iters, seed;
    double lr, tol;
    int loss, trace;
    const char *model, *data;
} curvature_args;

#define F(field) offsetof(curvature_args, field)
static const cli_opt curvature_opts[] = {
    {"--model", NULL, CLI_STR, F(model), "M", NULL, "a model file written by 'nabla train'", CLI_REQUIRED, 0, 0, NULL},
    {"--data", NULL, CLI_STR, F(data), "D", NULL, "the data set (fashion-mnist, mnist, a directory of IDX files)",
     CLI_REQUIRED, 0, 0, NULL},
    {"--count", NULL, CLI_INT, F(count), "N", "1000", "training examples", 0, 1, 1 << 30, NULL},
    {"--batch", NULL, CLI_INT, F(batch), "B", "250", "examples per Hessian-vector product pass", 0, 1, 1 << 20, NULL},
    {"--top", NULL, CLI_INT, F(top), "K", "1", "eigenvalues", 0, 1, NB_EIGS_MAX, NULL},
    {"--trace", NULL, CLI_FLAG, F(trace), NULL, NULL, "also estimate the trace (Hutchinson)", 0, 0, 0, NULL},
    {"--samples", NULL, CLI_INT, F(samples), "S", "20", "sign vectors of the trace estimate", 0, 2, 100000, NULL},
    {"--loss", NULL, CLI_CHOICE, F(loss), NULL, "cce", "the loss averaged over the examples", 0, 0, 0, cli_losses},
    {"--lr", NULL, CLI_REAL, F(lr), "LR", "0", "a learning rate to compare with 2 / lambda_max (0: none)", 0, 0,
     HUGE_VAL, NULL},
    {"--iters", NULL, CLI_INT, F(iters), "I", "100", "iterations at most", 0, 1, 100000, NULL},
    {"--tol", NULL, CLI_REAL, F(tol), "T", "1e-3", "relative change of the eigenvalues to stop at", CLI_GT_LO, 0,
     HUGE_VAL, NULL},
    {"--seed", NULL, CLI_INT, F(seed), "S", "1", "of the random start", 0, 0, 9.2e18, NULL},
};
#undef F

static const cli_spec curvature_spec = {
    "curvature", "--model M.safetensors --data fashion-mnist [--count N] [--top K] [--trace] [--lr LR]",
    "lambda_1..lambda_K, the eigenvalues of largest magnitude of the Hessian of the training\n"
    "loss (the mean over the first N training examples, dropout off) w.r.t. all parameters,\n"
    "by subspace iteration on exact Hessian-vector products summed over batches of B; with\n"
    "--trace, Hutchinson's estimate of its trace. Then the largest stable step of plain\n"
    "gradient descent, 2 / lambda_max: along the top eigenvector a step lr multiplies the\n"
    "error by |1 - lr lambda_max|, which exceeds 1 (divergence) when lr > 2 / lambda_max.\n",
    curvature_opts, CLI_NOPTS(curvature_opts), NULL};

/* -1 when the arguments are valid, else the exit status (0 after --help). */
static int parse_curvature(int argc, char **argv, curvature_args *a)
{
    *a = (curvature_args){0};
    return cli_parse(&curvature_spec, argc, argv, a);
}

int cmd_curvature_check_args(int argc, char **argv)
{
    curvature_args a;
    return parse_curvature(argc, argv, &a);
}

int cmd_curvature(int argc, char **argv)
{
    curvature_args a;
    const int pr = parse_curvature(argc, argv, &a);
    if (pr >= 0) return pr;
    const long long count = a.count, batch = a.batch, top = a.top, samples = a.samples, iters = a.iters,
                    seed = a.seed;
    const double lr = a.lr, tol = a.tol;
    const nb_loss_kind kind = (nb_loss_kind)a.loss;
    const int trace = a.trace;
        nb_dataset all = {0}, d = {0};
    data_hessian h = {0};
    int rc = 1;
    if (cli_load_data(a.data, "train", NULL, &all) ||
        nb_dataset_subset(&all, 0, count < all.x->shape[0] ? count : all.x->shape[0], &d)) {
        cli_fail("curvature", "loading --data");
        goto done;
    }
    if (cli_load_trained_model(a.model, &h.m) || nb_model_loss(h.m, kind, &h.target, &h.loss)) {
        cli_fail("curvature", "loading the model");
        goto done;
    }
    nb_graph_set_training(nb_model_graph(h.m), 0, 0);
    h.d = &d, h.batch = batch;
    rc = run_curvature(&h, &(nb_eigs_opts){(int)top, (int)iters, tol, (uint64_t)seed}, trace, samples, lr);
done:
    nb_model_free(h.m);
    nb_dataset_free(&d);
    nb_dataset_free(&all);
    return rc;
}

/* ----------------------------------------------------- demo gd, part 2 */

int cli_demo_gd_second_order(double alpha, double x0)
{
    /* f(x) = 2x^2 again, and its second derivative by nb_hvp (v = 1). */
    nb_graph *g = nb_graph_new();
    nb_node *x = g ? nb_param(g, "x", 0, NULL) : NULL;
    nb_node *f = nb_scale(nb_pow(x, 2), 2);
    int64_t one = 1;
    const nb_real unit = 1;
    nb_tensor *v = nb_tensor_from(1, &one, &unit), *hv = NULL;
    if (f) nb_value(x)->data[0] = (nb_real)x0;
    const nb_tensor *vs[1] = {v};
    if (!f || !v || nb_forward(g) || nb_hvp(f, 1, &x, vs, &hv)) {
        nb_tensor_free(v);
        nb_graph_free(g);
        return cli_fail("demo", "f''(x) by nb_hvp");
    }
    const double f2 = hv->data[0], crit = 2 / f2;
    nb_tensor_free(v), nb_tensor_free(hv);
    nb_graph_free(g);
    printf("\nsecond order: f''(x) = %g everywhere (nb_hvp: the derivative of the backward pass), so one step is\n"
           "x := x - alpha f'(x) = (1 - alpha f'') x, stable exactly when |1 - alpha f''| < 1:\n"
           "the critical learning rate is 2 / f'' = %g (for a network: 2 / lambda_max of the loss Hessian,\n"
           "see 'nabla curvature')\n",
           f2, crit);
    const double rates[3] = {0.9 * crit, crit, 1.1 * crit};
    for (int i = 0; i < 3; i++) {
        const double r = 1 - rates[i] * f2;
        const double x10 = pow(r, 10) * (x0 != 0 ? x0 : 1);
        printf("  alpha %-5g factor %-6g %s (x_10 = %g from x0 = %g)\n", rates[i], r,
               fabs(r) < 1 ? "converges, flipping sign every step" : fabs(r) == 1 ? "oscillates between +x0 and -x0 forever"
                                                                       : "diverges, flipping sign and growing",
               x10, x0 != 0 ? x0 : 1);
    }
    printf("alpha = %g is %s the critical rate %g\n", alpha,
           alpha < crit ? "below" : alpha == crit ? "exactly at" : "above", crit);
    return 0;
}
