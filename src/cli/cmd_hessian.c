/* nabla hessian: the full Hessian of the mean loss over a batch with
 * respect to one parameter or the input (or the cross block between two),
 * as .npy (shape wrt.shape + wrt2.shape) and optionally a PNG heatmap. */
#include "cli.h"
#include "cli_args.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* The node NAME names: 'input' or a parameter. */
static nb_node *wrt_node(nb_model *m, const char *name)
{
    if (!strcmp(name, "input")) return nb_model_input(m);
    nb_node *p = nb_model_find_param(m, name);
    if (!p) nb_set_error(NB_ERR_ARG, "--wrt '%s' is neither 'input' nor a parameter of the model (see 'nabla summary')",
                         name);
    if (p && !nb_node_requires_grad(p)) {
        nb_set_error(NB_ERR_ARG,
                     "--wrt '%s' is batchnorm state (a moving statistic), not a trained parameter: it has no "
                     "derivative; use a gamma, beta, kernel or bias",
                     name);
        return NULL;
    }
    return p;
}

/* Largest |entry|, trace and largest |H - H^T| (square blocks) of H (I x J). */
static void summarise(const nb_tensor *H, int64_t I, int64_t J, int square)
{
    double mx = 0, tr = 0, asym = 0;
    for (int64_t i = 0; i < I; i++)
        for (int64_t j = 0; j < J; j++) {
            const double h = H->data[i * J + j];
            mx = fmax(mx, fabs(h));
            if (square && i == j) tr += h;
            if (square && j > i) asym = fmax(asym, fabs(h - (double)H->data[j * J + i]));
        }
    char sh[160];
    printf("Hessian: shape %s, max |H| %.6g", nb_shape_str(H->rank, H->shape, sh, sizeof sh), mx);
    if (square) printf(", trace %.6g, max |H - H^T| %.3g", tr, asym);
    printf("\n");
}

typedef struct {
    cli_second_args batch;
    const char *out, *wrt, *wrt2, *png;
    long long max_mb;
} hessian_args;

#define F(field) offsetof(hessian_args, field)
static const cli_opt hessian_opts[] = {
    CLI_SECOND_OPTS(hessian_args, batch),
    {"--wrt", NULL, CLI_STR, F(wrt), "NAME", NULL, "a parameter (0.kernel, 4.bias, ...) or 'input'", CLI_REQUIRED, 0,
     0, NULL},
    {"--wrt2", NULL, CLI_STR, F(wrt2), "NAME", NULL, "the second tensor of a cross block (default: --wrt)", 0, 0, 0,
     NULL},
    {"--out", "-o", CLI_STR, F(out), "H", NULL, "the output .npy file", CLI_REQUIRED, 0, 0, NULL},
    {"--png", NULL, CLI_STR, F(png), "F", NULL, "the Hessian as a heatmap (rows: wrt, columns: wrt2; white = 0)", 0,
     0, 0, NULL},
    {"--max-mb", NULL, CLI_INT, F(max_mb), "MB", "2048", "refuse a Hessian larger than this many MiB", 0, 1,
     1 << 24, NULL},
};
#undef F

static const cli_spec hessian_spec = {
    "hessian", "--model M.safetensors --input X.npy --labels Y.npy --loss cce|mse|bce --wrt NAME [--wrt2 NAME] "
    "-o H.npy [--png H.png]",
    "The Hessian of J, the loss averaged over the N examples (dropout off), with respect\n"
    "to NAME: a parameter (see 'nabla summary') or 'input' (the whole batch). Shape\n"
    "wrt.shape + wrt.shape, H[i, j] = d2J / dw_i dw_j; with --wrt2, the cross block\n"
    "d2J / d wrt d wrt2 of shape wrt.shape + wrt2.shape. Exact, by Hessian-vector\n"
    "products with the unit vectors of wrt2. Prints the shape, the largest entry, the\n"
    "trace and (for a square block) how symmetric it came out.\n",
    hessian_opts, CLI_NOPTS(hessian_opts), NULL};

/* -1 when the arguments are valid, else the exit status (0 after --help). */
static int parse_hessian(int argc, char **argv, hessian_args *a, long long *mb)
{
    *a = (hessian_args){0};
    const int r = cli_parse(&hessian_spec, argc, argv, a);
    *mb = a->max_mb;
    return r;
}

int cmd_hessian_check_args(int argc, char **argv)
{
    hessian_args a;
    long long mb;
    return parse_hessian(argc, argv, &a, &mb);
}

int cmd_hessian(int argc, char **argv)
{
    hessian_args args;
    long long mb;
    const int pr = parse_hessian(argc, argv, &args, &mb);
    if (pr >= 0) return pr;
    const char *out = args.out, *loss_name = cli_choice_name(cli_losses, args.batch.loss), *wrt = args.wrt,
               *wrt2 = args.wrt2, *png = args.png;
    if (!cli_check_output("hessian", "-o", out) || (png && !cli_check_output("hessian", "--png", png))) return 1;
    cli_second c;
    nb_tensor *H = NULL;
    int rc = 1;
    nb_node *na, *b;
    if (cli_second_setup(&args.batch, &c) || !(na = wrt_node(c.m, wrt)) ||
        !(b = wrt2 ? wrt_node(c.m, wrt2) : na)) {
        cli_fail("hessian", NULL);
        goto done;
    }
    const nb_status hs = nb_hessian(c.loss, na, b, &(nb_hessian_opts){0, 0, 0, (size_t)mb << 20}, &H);
    if (hs) {
        cli_fail("hessian", NULL);
        if (hs == NB_ERR_TOO_LARGE) fprintf(stderr, "nabla hessian: --max-mb raises the limit; 'nabla hvp' gives products\n");
        goto done;
    }
    const int64_t I = nb_value(na)->size, J = nb_value(b)->size;
    cli_second_print_loss(&args.batch, &c);
    summarise(H, I, J, na == b);
    if (nb_npy_write(out, H)) {
        cli_fail("hessian", "writing -o");
        goto done;
    }
    printf("wrote %s\n", out);
    if (png) {
        char title[160], sub[160];
        snprintf(title, sizeof title, "d2J / d %s d %s", nb_node_name(na), nb_node_name(b));
        snprintf(sub, sizeof sub, "%lld x %lld, mean %s loss over %lld examples", (long long)I, (long long)J, loss_name,
                 (long long)c.x->shape[0]);
        if (cli_matrix_png(png, H->data, I, J, title, sub)) {
            cli_fail("hessian", "writing --png");
            goto done;
        }
        printf("wrote %s\n", png);
    }
    rc = 0;
done:
    nb_tensor_free(H);
    cli_second_free(&c);
    return rc;
}
