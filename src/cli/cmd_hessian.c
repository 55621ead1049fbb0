/* nabla hessian: the full Hessian of the mean loss over a batch with
 * respect to one parameter or the input (or the cross block between two),
 * as .npy (shape wrt.shape + wrt2.shape) and optionally a PNG heatmap. */
#include "cli.h"
#include "cli_args.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *usage_text =
    "usage: nabla hessian --model M.safetensors --input X.npy --labels Y.npy --loss cce|mse|bce\n"
    "                     --wrt NAME [--wrt2 NAME] -o H.npy [--png H.png] [--max-mb MB]\n"
    "\n"
    "The Hessian of J, the loss averaged over the N examples (dropout off), with respect\n"
    "to NAME: a parameter (0.kernel, 4.bias, ...; see 'nabla summary') or 'input' (the\n"
    "whole batch). Shape wrt.shape + wrt.shape, H[i, j] = d2J / dw_i dw_j; with --wrt2,\n"
    "the cross block d2J / d wrt d wrt2 of shape wrt.shape + wrt2.shape. Exact, by\n"
    "Hessian-vector products with the unit vectors of wrt2. Prints the shape, the largest\n"
    "entry, the trace and (for a square block) how symmetric it came out.\n"
    "\n"
    "  --wrt NAME    a parameter or 'input'\n"
    "  --wrt2 NAME   the second tensor of a cross block (default: --wrt)\n"
    "  -o, --out H   the output .npy file\n"
    "  --png F       the Hessian as a heatmap (rows: wrt, columns: wrt2; white = 0)\n"
    "  --max-mb MB   refuse a Hessian larger than this many MiB (default 2048)\n";

/* The node NAME names: 'input' or a parameter. */
static nb_node *wrt_node(nb_model *m, const char *name)
{
    if (!strcmp(name, "input")) return nb_model_input(m);
    nb_node *p = nb_model_find_param(m, name);
    if (!p) nb_set_error(NB_ERR_ARG, "--wrt '%s' is neither 'input' nor a parameter of the model (see 'nabla summary')",
                         name);
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
    const char *model, *input, *labels, *out, *loss_name, *wrt, *wrt2, *png, *max_mb;
} hessian_args;

/* -1 when the arguments are valid, else the exit status (0 after --help). */
static int parse_hessian(int argc, char **argv, hessian_args *a, long long *mb)
{
    *a = (hessian_args){NULL, NULL, NULL, NULL, "cce", NULL, NULL, NULL, NULL};
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) return fputs(usage_text, stdout), 0;
        const char **dst = !strcmp(k, "--model") ? &a->model : !strcmp(k, "--input") ? &a->input
                           : !strcmp(k, "--labels") ? &a->labels : !strcmp(k, "--loss") ? &a->loss_name
                           : !strcmp(k, "--wrt") ? &a->wrt : !strcmp(k, "--wrt2") ? &a->wrt2
                           : !strcmp(k, "--png") ? &a->png : !strcmp(k, "--max-mb") ? &a->max_mb
                           : !strcmp(k, "-o") || !strcmp(k, "--out") ? &a->out : NULL;
        if (!dst) return cli_usage_error("hessian", "unknown option '%s'", k);
        if (!v) return cli_usage_error("hessian", "option '%s' needs a value", k);
        *dst = v, i++;
    }
    if (!a->model || !a->input || !a->labels || !a->wrt || !a->out)
        return cli_usage_error("hessian", "%s", "--model, --input, --labels, --wrt and -o are required");
    *mb = 2048;
    if (a->max_mb && !cli_parse_int(a->max_mb, 1, 1 << 24, mb))
        return cli_usage_error("hessian", "bad value for --max-mb '%s' (an integer 1..16777216)", a->max_mb);
    if (strcmp(a->loss_name, "cce") && strcmp(a->loss_name, "mse") && strcmp(a->loss_name, "bce"))
        return cli_usage_error("hessian", "unknown --loss '%s' (cce, mse, bce)", a->loss_name);
    return -1;
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
    const char *model = args.model, *input = args.input, *labels = args.labels, *out = args.out,
               *loss_name = args.loss_name, *wrt = args.wrt, *wrt2 = args.wrt2, *png = args.png;
    if (!cli_check_output("hessian", "-o", out) || (png && !cli_check_output("hessian", "--png", png))) return 1;
    cli_second c;
    nb_tensor *H = NULL;
    int rc = 1;
    nb_node *a, *b;
    if (cli_second_setup("hessian", model, input, labels, loss_name, &c) || !(a = wrt_node(c.m, wrt)) ||
        !(b = wrt2 ? wrt_node(c.m, wrt2) : a)) {
        cli_fail("hessian", NULL);
        goto done;
    }
    const nb_status hs = nb_hessian(c.loss, a, b, &(nb_hessian_opts){0, 0, 0, (size_t)mb << 20}, &H);
    if (hs) {
        cli_fail("hessian", NULL);
        if (hs == NB_ERR_TOO_LARGE) fprintf(stderr, "nabla hessian: --max-mb raises the limit; 'nabla hvp' gives products\n");
        goto done;
    }
    const int64_t I = nb_value(a)->size, J = nb_value(b)->size;
    printf("loss (%s, mean over %lld examples): %.9g\n", loss_name, (long long)c.x->shape[0],
           (double)nb_value(c.loss)->data[0]);
    summarise(H, I, J, a == b);
    if (nb_npy_write(out, H)) {
        cli_fail("hessian", "writing -o");
        goto done;
    }
    printf("wrote %s\n", out);
    if (png) {
        char title[160], sub[160];
        snprintf(title, sizeof title, "d2J / d %s d %s", nb_node_name(a), nb_node_name(b));
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
