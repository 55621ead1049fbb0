/* nabla hvp: Hessian-vector products of the mean loss over a batch, with
 * respect to the parameters, for vectors given as safetensors under the
 * parameters' names. */
#include "cli.h"
#include "cli_args.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static double dot(const nb_real *a, const nb_real *b, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

/* The parameters named in v, with v's tensors as (1,) + shape vectors;
 * NB_ERR_ARG naming a tensor that is no parameter or has another shape. */
static nb_status vectors_of(nb_model *m, const nb_safetensors *v, const char *path, nb_node **wrt, nb_tensor **vs,
                            int *n)
{
    *n = 0;
    for (int i = 0; i < nb_safetensors_count(v) && i < 64; i++) {
        const char *name = nb_safetensors_name(v, i);
        const nb_tensor *t = nb_safetensors_get(v, name);
        nb_node *p = nb_model_find_param(m, name);
        char s1[96], s2[96], shown[132];
        if (!p)
            return nb_set_error(NB_ERR_ARG, "%s: tensor '%s' is not a parameter of the model (see 'nabla summary')",
                                path, nb_escape_text(shown, sizeof shown, name, SIZE_MAX));
        if (!nb_node_requires_grad(p))
            return nb_set_error(NB_ERR_ARG,
                                "%s: tensor '%s' is batchnorm state (a moving statistic), not a trained parameter: "
                                "it has no derivative; use a gamma, beta, kernel or bias",
                                path, name);
        const nb_tensor *pv = nb_value(p);
        if (t->size != pv->size)
            return nb_set_error(NB_ERR_SHAPE, "%s: tensor '%s' has shape %s, the parameter %s", path, name,
                                nb_shape_str(t->rank, t->shape, s1, sizeof s1),
                                nb_shape_str(pv->rank, pv->shape, s2, sizeof s2));
        int64_t shape[NB_MAX_RANK + 1] = {1};
        memcpy(shape + 1, pv->shape, sizeof(int64_t) * (size_t)pv->rank);
        if (!(vs[*n] = nb_tensor_from(pv->rank + 1, shape, t->data))) return NB_ERR_NOMEM;
        wrt[(*n)++] = p;
    }
    if (*n == 0) return nb_set_error(NB_ERR_ARG, "%s holds no tensors; give v under the parameters' names", path);
    return NB_OK;
}

/* Prints the table and writes hv under the parameters' names. */
static nb_status write_products(const char *out, int n, nb_node **wrt, nb_tensor **vs, nb_tensor **hv)
{
    nb_safetensors *st = nb_safetensors_new();
    if (!st) return NB_ERR_NOMEM;
    printf("%-12s %-18s %12s %12s %14s\n", "parameter", "shape", "|v|", "|Hv|", "v.Hv / v.v");
    nb_status s = NB_OK;
    double vv = 0, vhv = 0;
    for (int i = 0; i < n && !s; i++) {
        const nb_tensor *p = nb_value(wrt[i]);
        char sh[96];
        const double a = dot(vs[i]->data, vs[i]->data, p->size), b = dot(vs[i]->data, hv[i]->data, p->size);
        printf("%-12s %-18s %12.4g %12.4g %14.6g\n", nb_node_name(wrt[i]), nb_shape_str(p->rank, p->shape, sh, sizeof sh),
               sqrt(a), sqrt(dot(hv[i]->data, hv[i]->data, p->size)), a > 0 ? b / a : 0);
        vv += a, vhv += b;
        nb_tensor view = *p; /* hv[i] is (1,) + shape: written with the parameter's shape */
        view.data = hv[i]->data;
        view.owns_data = 0;
        s = nb_safetensors_add(st, nb_node_name(wrt[i]), &view);
    }
    if (!s) printf("curvature along v: v.Hv / v.v = %.6g\n", vv > 0 ? vhv / vv : 0);
    if (!s) s = nb_safetensors_write(out, st, 0);
    nb_safetensors_free(st);
    return s;
}

typedef struct {
    cli_second_args batch;
    const char *out, *vector;
} hvp_args;

#define F(field) offsetof(hvp_args, field)
static const cli_opt hvp_opts[] = {
    CLI_SECOND_OPTS(hvp_args, batch),
    {"--vector", NULL, CLI_STR, F(vector), "V", NULL, "the direction v (.safetensors, tensors named like parameters)",
     CLI_REQUIRED, 0, 0, NULL},
    {"--out", "-o", CLI_STR, F(out), "HV", NULL, "the output .safetensors file", CLI_REQUIRED, 0, 0, NULL},
};
#undef F

static const cli_spec hvp_spec = {
    "hvp", "--model M.safetensors --input X.npy --labels Y.npy --loss cce|mse|bce --vector V.safetensors "
    "-o HV.safetensors",
    "Exact Hessian-vector products H v of J, the loss averaged over the N examples (as in\n"
    "training, dropout off), with respect to the parameters: forward-over-reverse (the\n"
    "derivative of the backward pass along v), never finite differences. V holds tensors\n"
    "named like the model's parameters (0.kernel, 4.bias, ...), any subset: the others'\n"
    "parts of v are zero. The output has the same names and shapes: (H v) restricted to\n"
    "each. Prints, for each, |v|, |H v| and the curvature v.Hv / v.v along it.\n",
    hvp_opts, CLI_NOPTS(hvp_opts), NULL};

/* -1 when the arguments are valid, else the exit status (0 after --help). */
static int parse_hvp(int argc, char **argv, hvp_args *a)
{
    *a = (hvp_args){0};
    return cli_parse(&hvp_spec, argc, argv, a);
}

int cmd_hvp_check_args(int argc, char **argv)
{
    hvp_args a;
    return parse_hvp(argc, argv, &a);
}

int cmd_hvp(int argc, char **argv)
{
    hvp_args a;
    const int pr = parse_hvp(argc, argv, &a);
    if (pr >= 0) return pr;
    const char *out = a.out, *vector = a.vector;
    if (!cli_check_output("hvp", "-o", out)) return 1;
    cli_second c;
    nb_safetensors *v = NULL;
    nb_node *wrt[64];
    nb_tensor *vs[64] = {NULL}, *hv[64] = {NULL};
    int n = 0, rc = 1;
    if (cli_second_setup(&a.batch, &c)) {
        cli_fail("hvp", NULL);
        goto done;
    }
    if (nb_safetensors_read(vector, &v) || vectors_of(c.m, v, vector, wrt, vs, &n)) {
        cli_fail("hvp", "reading --vector");
        goto done;
    }
    if (nb_hvp(c.loss, n, wrt, (const nb_tensor *const *)vs, hv)) {
        cli_fail("hvp", NULL);
        goto done;
    }
    cli_second_print_loss(&a.batch, &c);
    if (write_products(out, n, wrt, vs, hv)) {
        cli_fail("hvp", "writing the products");
        goto done;
    }
    printf("wrote %s: %d products\n", out, n);
    rc = 0;
done:
    for (int i = 0; i < n; i++) nb_tensor_free(vs[i]), nb_tensor_free(hv[i]);
    nb_safetensors_free(v);
    cli_second_free(&c);
    return rc;
}
