/* nabla jacobian: the Jacobian of a model's output with respect to its input
 * or one of its parameters, written as .npy. */
#include "../dist/cli_dist.h"
#include "cli.h"
#include "nonfinite.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { NB_MODEL_NAMES_MAX = 4096 }; /* what an unknown name's message lists */

typedef struct {
    const char *model, *out, *png, *wrt, *of, *kinks;
    cli_source src;
    int mode, per_example, compare;
    double eps, tol;
} jacobian_args;

#define F(field) offsetof(jacobian_args, field)
static const cli_opt jacobian_opts[] = {
    {"--model", NULL, CLI_STR, F(model), "M", NULL, "a model file written by 'nabla train'", CLI_REQUIRED, 0, 0, NULL},
    CLI_SOURCE_OPTS(jacobian_args, src, "how many examples (default: all of --input, 1 of --data)"),
    {"--wrt", NULL, CLI_STR, F(wrt), "W", "input",
     "input, a parameter name such as 0.kernel or 4.bias, or an earlier\n"
     "layer's output by its index or `as` name (--of 3 --wrt 1: dA3/dA1)", 0, 0, 0, NULL},
    {"--mode", NULL, CLI_CHOICE, F(mode), NULL, "auto",
     "auto: reverse mode, one VJP per output element, when the output has\n"
     "no more elements than wrt, else forward mode, one JVP per wrt element;\n"
     "numeric: central differences",
     0, 0, 0, cli_jac_modes},
    {"--per-example", NULL, CLI_FLAG, F(per_example), NULL, NULL,
     "J (N, out..., in...) with J[n] = d out[n] / d input[n]: the diagonal\n"
     "blocks of the full Jacobian, in one pass per output (only --wrt input)", 0, 0, 0, NULL},
    {"--of", NULL, CLI_STR, F(of), "O", "logits",
     "logits | output | a layer's output by its index or `as` name (see\n"
     "'nabla summary'; a conv2d fused with its maxpool is exposed for it)", 0, 0, 0, NULL},
    {"--eps", NULL, CLI_REAL, F(eps), "E", NULL, "the numeric step (default 1e-3: nb_gradcheck_defaults in float)",
     CLI_GT_LO, 0, HUGE_VAL, NULL},
    {"--compare", NULL, CLI_FLAG, F(compare), NULL, NULL,
     "compute the Jacobian by --mode (auto, rev or fwd) and by central\n"
     "differences, and report their relative difference (below)",
     0, 0, 0, NULL},
    {"--tol", NULL, CLI_REAL, F(tol), "T", NULL,
     "--compare: the largest relative difference away from kinks that\n"
     "counts as agreement (default 0.05: 5 times float's gradcheck rtol)",
     CLI_GT_LO, 0, HUGE_VAL, NULL},
    {"--kinks", NULL, CLI_STR, F(kinks), "K", NULL,
     "numeric or --compare: write a .npy of wrt's shape, 1 where that element\n"
     "sits at a kink or tie for this eps, else 0",
     0, 0, 0, NULL},
    {"--out", "-o", CLI_STR, F(out), "J", NULL, "the output .npy file (--compare: the --mode Jacobian; optional)", 0, 0,
     0, NULL},
    {"--png", NULL, CLI_STR, F(png), "P", NULL,
     "also (or instead of -o) draw J as a PNG heatmap: rows = output elements,\n"
     "columns = wrt elements, blue < 0 < red, white = 0, with a colour bar",
     0, 0, 0, NULL},
};
#undef F

static const cli_spec jacobian_spec = {
    "jacobian",
    "--model M.safetensors (--input X.npy | --data D) -o J.npy [options]",
    "Writes J = d out / d wrt with shape out.shape + wrt.shape, both with their batch\n"
    "dimension: for a (28,28,1) -> 10 classifier and N inputs, d logits / d input has shape\n"
    "(N, 10, N, 28, 28, 1) (the blocks J[n, :, m] with n != m are zero: examples do not\n"
    "interact); d logits / d 0.kernel has shape (N, 10, 3, 3, 1, 32).\n"
    "\n"
    "What is differentiated: the model's logits, i.e. its output before a final softmax or\n"
    "sigmoid; when the model does not end in softmax/sigmoid (e.g. '... dense 10', trained on\n"
    "logits), that is the model's output itself. --of output differentiates the output after\n"
    "the final softmax/sigmoid (the probabilities) instead.\n",
    jacobian_opts,
    CLI_NOPTS(jacobian_opts),
    "The shape, mode and time taken go to stderr.\n"
    "\n"
    "Kinks and ties: relu at 0, or equal values in a max pool's window (a flat black\n"
    "background of pixels exactly 0 gives many), have no derivative. Central differences\n"
    "there give the mean of the two one-sided slopes, which backprop (one of them) does not\n"
    "match, at any --eps. --mode numeric and --compare find them without knowing the ops: an\n"
    "input element is at a kink for this eps when (f(x + eps) - f(x)) / eps and\n"
    "(f(x) - f(x - eps)) / eps disagree by more than the gradient check's tolerance for some\n"
    "output (a step that straddles a relu's 0 counts too; in float an eps far below 1e-3\n"
    "makes rounding flag nearly everything). They say how many there are; --compare prints\n"
    "(to stdout) the relative difference ||J - J_num||_F / ||J||_F over all columns and over\n"
    "the columns of the other elements, and exits with 0 when the latter is within --tol, 1\n"
    "when it is not: then backprop and central differences disagree where both are defined.\n"
    "The numeric Jacobian costs two forward passes per wrt element: --per-example is cheaper\n"
    "for several inputs.\n"
    "\n"
    "NaN and Inf: inputs holding them are not refused. When an example's input, output or\n"
    "Jacobian rows hold NaN or Inf, a warning on stderr names it (from 0, with the counts),\n"
    "J is written all the same, and the exit status is 3 instead of 0. Such an example's\n"
    "block of J means nothing even where it is finite: relu's derivative at NaN is taken\n"
    "as 0, so paths through a NaN contribute 0.\n"};

/* The table's checks and those between options: -1, or the exit code. */
static int parse_args(int argc, char **argv, jacobian_args *a)
{
    *a = (jacobian_args){0};
    int r = cli_parse(&jacobian_spec, argc, argv, a);
    if (r >= 0) return r;
    if ((r = cli_source_check("jacobian", &a->src)) >= 0) return r;
    if (!a->out && !a->png && !a->compare)
        return cli_usage_error("jacobian", "%s", "-o J.npy (or --png, or --compare) is required");
    if (a->compare && a->mode == NB_JAC_NUMERIC)
        return cli_usage_error("jacobian", "%s",
                               "--compare compares --mode auto, rev or fwd with numeric; got --mode "
                               "numeric");
    if (a->kinks && !a->compare && a->mode != NB_JAC_NUMERIC)
        return cli_usage_error("jacobian", "%s", "--kinks needs --mode numeric or --compare");
    if (a->tol > 0 && !a->compare) return cli_usage_error("jacobian", "%s", "--tol needs --compare");
    if (a->per_example && strchr(a->wrt, '.')) /* a parameter: layer names hold no '.' */
        return cli_usage_error("jacobian", "--per-example needs --wrt input (a parameter is shared by all examples, "
                                           "got --wrt %s)", a->wrt);
    nb_gradcheck_opts defaults;
    nb_gradcheck_defaults(&defaults);
    if (!(a->eps > 0)) a->eps = defaults.eps;
    if (!(a->tol > 0)) a->tol = 5 * defaults.rtol;
    return -1;
}

int cmd_jacobian_check_args(int argc, char **argv)
{
    jacobian_args a;
    return parse_args(argc, argv, &a);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Element k of J (out..., wrt...) belongs to column (wrt element) col; per
 * example J is (N, o..., i...) and the column is (n, i). */
static int64_t column_of(int64_t k, int per_example, int64_t O, int64_t I, int64_t wrt_size)
{
    return per_example ? (k / (O * I)) * I + k % I : k % wrt_size;
}

/* --compare: prints the differences of Ja (by mode) and Jn (numeric) with
 * the kink columns K; returns 0 when the difference away from kinks is
 * within tol, 1 otherwise. */
static int report_compare(const nb_tensor *Ja, const nb_tensor *Jn, const nb_tensor *K, int64_t nkinks,
                          const char *mode, double eps, double tol, int per_example, int64_t O, int64_t I,
                          const char *wrt_name)
{
    double d_all = 0, a_all = 0, d_off = 0, a_off = 0, worst = 0;
    int64_t worst_k = -1;
    for (int64_t k = 0; k < Ja->size; k++) {
        double a = Ja->data[k], d = a - Jn->data[k];
        d_all += d * d, a_all += a * a;
        if (K->data[column_of(k, per_example, O, I, K->size)] != 0) continue;
        d_off += d * d, a_off += a * a;
        if (fabs(d) > worst || worst_k < 0) worst = fabs(d), worst_k = k;
    }
    double r_all = a_all > 0 ? sqrt(d_all / a_all) : sqrt(d_all), r_off = a_off > 0 ? sqrt(d_off / a_off) : sqrt(d_off);
    int64_t cols = K->size, off = cols - nkinks;
    printf("compare %s with central differences (eps %g)%s: relative difference ||J_%s - J_num||_F / ||J_%s||_F\n",
           mode, eps, per_example ? ", per example" : "", mode, mode);
    printf("  all %lld %s elements: %.3g\n", (long long)cols, wrt_name, r_all);
    printf("  %lld (%.1f%%) at a kink or tie for this eps (relu at 0, equal values in a max pool's window):\n"
           "    central differences are not a derivative there; left out below\n",
           (long long)nkinks, cols ? 100.0 * (double)nkinks / (double)cols : 0.0);
    if (!off || worst_k < 0) {
        printf("  no other %s elements: nothing to compare. At a small eps float's rounding makes the one-sided\n"
               "  differences disagree everywhere, at a large one the steps straddle kinks: try another --eps\n",
               wrt_name);
        return 1;
    }
    char at[160] = "";
    int64_t idx[2 * NB_MAX_RANK] = {0}, flat = worst_k;
    for (int d = Ja->rank - 1; d >= 0; d--)
        idx[d] = flat % Ja->shape[d], flat /= Ja->shape[d];
    size_t u = 0;
    for (int d = 0; d < Ja->rank && u < sizeof at; d++)
        u += (size_t)snprintf(at + u, sizeof at - u, "%s%lld", d ? "," : "[", (long long)idx[d]);
    if (u < sizeof at) snprintf(at + u, sizeof at - u, "]");
    printf("  the other %lld: %.3g (largest |difference| %.3g at J%s: %s %.6g, numeric %.6g)\n", (long long)off, r_off,
           worst, at, mode, (double)Ja->data[worst_k], (double)Jn->data[worst_k]);
    if (r_off <= tol) {
        printf("agree: %s mode matches central differences within %g away from kinks\n", mode, tol);
        return 0;
    }
    printf("DIFFER: %.3g > %g away from kinks: the %s-mode Jacobian does not match central differences\n", r_off, tol,
           mode);
    return 1;
}

/* The layer text names: its index ("3") or its `as` name; -1 if none. */
static int layer_index(const nb_model *m, const char *text)
{
    char *end;
    long k = strtol(text, &end, 10);
    if (text[0] >= '0' && text[0] <= '9' && !*end) return k < nb_model_num_layers(m) ? (int)k : -1;
    for (int i = 0; i < nb_model_num_layers(m); i++)
        if (nb_model_layer(m, i)->name[0] && !strcmp(nb_model_layer(m, i)->name, text)) return i;
    return -1;
}

/* The model rebuilt with layer i named, so that a conv2d fused with its
 * maxpool keeps its output; the weights are copied (a name takes no index:
 * the parameter names stay). */
static int expose_layer(nb_model **m, int i)
{
    const int n = nb_model_num_layers(*m);
    size_t cap = (size_t)n * 420 + 1, u = 0;
    char *spec = malloc(cap), b[400];
    if (!spec) return 1;
    spec[0] = '\0';
    for (int k = 0; k < n; k++) {
        nb_layer_spec l = *nb_model_layer(*m, k);
        if (k == i && !l.name[0]) snprintf(l.name, sizeof l.name, "nabla_exposed_%d", k);
        u += (size_t)snprintf(spec + u, cap - u, "%s%s", k ? "; " : "", nb_layer_spec_str(&l, b, sizeof b));
    }
    int64_t in[NB_MAX_RANK];
    const int rank = nb_model_input_shape(*m, in);
    nb_model *e = NULL;
    nb_status st = nb_model_from_spec(spec, rank, in, &e);
    free(spec);
    for (int p = 0; !st && p < nb_model_param_count(e); p++) {
        nb_tensor *to = nb_value(nb_model_param(e, p));
        const nb_node *from = nb_model_find_param(*m, nb_node_name(nb_model_param(e, p)));
        if (!from || nb_value((nb_node *)from)->size != to->size) st = NB_ERR_FORMAT;
        else memcpy(to->data, nb_value((nb_node *)from)->data, (size_t)to->size * sizeof(nb_real));
    }
    if (st) {
        nb_model_free(e);
        return 1;
    }
    nb_model_free(*m);
    *m = e;
    return 0;
}

/* The unknown name text of option opt: what there is, and a guess. --of
 * takes logits, output and layers; --wrt input, parameters and layers. */
static void unknown_name(nb_model *m, const char *opt, const char *text)
{
    const char *names[NB_MODEL_NAMES_MAX];
    char list[1024] = "";
    int k = 0;
    const int wrt = !strcmp(opt, "--wrt");
    if (wrt) names[k++] = "input";
    else names[k++] = "logits", names[k++] = "output";
    for (int i = 0; wrt && i < nb_model_param_count(m) && k < NB_MODEL_NAMES_MAX; i++)
        names[k++] = nb_node_name(nb_model_param(m, i));
    for (int i = 0; i < nb_model_num_layers(m) && k < NB_MODEL_NAMES_MAX; i++)
        if (nb_model_layer(m, i)->name[0]) names[k++] = nb_model_layer(m, i)->name;
    for (int i = 0, u = 0; i < k && u < (int)sizeof list; i++)
        u += snprintf(list + u, sizeof list - (size_t)u, "%s%s", i ? ", " : "", names[i]);
    const char *guess = cli_did_you_mean(text, names, k);
    fprintf(stderr, "nabla jacobian: %s '%s': no such %s%s%s%s; the model has layers 0..%d and: %s\n", opt, text,
            wrt ? "parameter or layer" : "layer", guess ? " (did you mean " : "", guess ? guess : "", guess ? "?)" : "",
            nb_model_num_layers(m) - 1, list);
}

/* Layer i's output node, exposing a fused one; NULL after a message. */
static nb_node *layer_node(nb_model **m, int i)
{
    nb_node *n = nb_model_layer_output(*m, i);
    if (n) return n;
    if (expose_layer(m, i)) {
        cli_fail("jacobian", "exposing a fused layer");
        return NULL;
    }
    if (!(n = nb_model_layer_output(*m, i))) cli_fail("jacobian", NULL);
    return n;
}

/* The nodes --of and --wrt name (r->y, r->wrt), or a message. */
static int resolve_nodes(const jacobian_args *a, nb_model **m, nb_node **y, nb_node **wrt)
{
    const int of_layer = strcmp(a->of, "logits") && strcmp(a->of, "output") ? layer_index(*m, a->of) : -2;
    const int wrt_is_named = !strcmp(a->wrt, "input") || nb_model_find_param(*m, a->wrt);
    const int wrt_layer = wrt_is_named ? -2 : layer_index(*m, a->wrt);
    if (of_layer == -1) return unknown_name(*m, "--of", a->of), 1;
    if (wrt_layer == -1) return unknown_name(*m, "--wrt", a->wrt), 1;
    const nb_node *param = wrt_layer == -2 && strcmp(a->wrt, "input") ? nb_model_find_param(*m, a->wrt) : NULL;
    if (param && !nb_node_requires_grad(param)) {
        fprintf(stderr, "nabla jacobian: --wrt '%s' is batchnorm state (a moving statistic), not a trained parameter: "
                        "it has no derivative; use a gamma, beta, kernel or bias\n", a->wrt);
        return 1;
    }
    if (wrt_layer >= 0 && of_layer >= 0 && wrt_layer >= of_layer) {
        fprintf(stderr, "nabla jacobian: --wrt %s (layer %d) is not before --of %s (layer %d): the Jacobian is of a "
                        "layer's output with respect to an earlier one's; swap them\n",
                a->wrt, wrt_layer, a->of, of_layer);
        return 1;
    }
    if (wrt_layer >= 0 && (a->compare || a->mode == NB_JAC_NUMERIC)) {
        fprintf(stderr, "nabla jacobian: --wrt %s is a layer's output, which central differences cannot perturb: "
                        "use --mode auto, rev or fwd, or --wrt input or a parameter for numeric and --compare\n",
                a->wrt);
        return 1;
    }
    /* Expose first: a rebuilt model has new nodes. */
    if (wrt_layer >= 0 && !layer_node(m, wrt_layer)) return 1;
    if (of_layer >= 0 && !layer_node(m, of_layer)) return 1;
    *wrt = !strcmp(a->wrt, "input") ? nb_model_input(*m)
           : wrt_layer >= 0         ? nb_model_layer_output(*m, wrt_layer)
                                    : nb_model_find_param(*m, a->wrt);
    *y = of_layer >= 0 ? nb_model_layer_output(*m, of_layer)
         : !strcmp(a->of, "logits") ? nb_model_logits(*m)
                                    : nb_model_output(*m);
    return 0;
}

typedef struct {
    nb_model *m;
    nb_node *y, *wrt;
    nb_tensor *x, *J, *Jn, *K; /* inputs, J, the numeric J (--compare), kinks */
    nb_tensor *yg;             /* under mpirun: the output's rows of every rank (rank 0), else NULL */
    int idle;                  /* under mpirun: a rank other than 0, whose rows rank 0 has now */
    int64_t nkinks, O, I;      /* kinks; out and wrt elements (per example) */
    double seconds;
} jac_run;

/* Under mpirun the full Jacobian w.r.t. the input couples all examples:
 * every rank holds them all and nb_jacobian splits the rows (or columns)
 * of J over the ranks (nb_jacobian_opts.comm). Otherwise J's leading axis
 * is the examples', which the ranks share out. */
static int replicated(const jacobian_args *a)
{
    return !a->per_example && !strcmp(a->wrt, "input");
}

/* The model, wrt, the examples, and J (and the numeric J with --compare). */
static int compute_share(const jacobian_args *a, jac_run *r);
static int gather_share(jac_run *r, const nb_tensor *all_x);
static int compute(const jacobian_args *a, jac_run *r)
{
    char what[1024];
    if (cli_load_trained_model(a->model, &r->m)) return cli_fail("jacobian", "loading the model");
    if (resolve_nodes(a, &r->m, &r->y, &r->wrt)) return 1;
    if (cli_load_examples(&a->src, 1, r->m, &r->x, NULL, NULL, what, sizeof what))
        return cli_fail("jacobian", "reading the input");
    /* Under mpirun each rank takes a contiguous share of the examples (J's
     * leading axis); rank 0 gathers the rows of J and writes. */
    nb_tensor *all_x = NULL;
    if (cli_dist_size() > 1 && replicated(a)) { /* the library splits J's rows over the ranks */
        int rc = compute_share(a, r);
        r->idle = cli_dist_rank() != 0;
        return rc;
    }
    if (cli_dist_size() > 1) {
        int64_t lo, hi;
        if (cli_dist_check_rows("jacobian", r->x->shape[0])) return 1;
        cli_dist_range(r->x->shape[0], &lo, &hi);
        all_x = r->x;
        if (!(r->x = cli_dist_rows(all_x, lo, hi))) {
            r->x = all_x;
            return cli_fail("jacobian", "splitting the input");
        }
    }
    int rc = compute_share(a, r);
    if (!rc && all_x) rc = gather_share(r, all_x);
    if (all_x) { /* r->x: the whole input again */
        nb_tensor_free(r->x);
        r->x = all_x;
    }
    return rc;
}

/* J of this rank's examples (all of them without mpirun). */
static int compute_share(const jacobian_args *a, jac_run *r)
{
    if (nb_model_set_batch(r->m, r->x->shape[0])) return cli_fail("jacobian", NULL);
    memcpy(nb_value(nb_model_input(r->m))->data, r->x->data, (size_t)r->x->size * sizeof(nb_real));
    nb_graph_set_training(nb_model_graph(r->m), 0, 0);
    nb_jacobian_opts jo = {.mode = (nb_jac_mode)a->mode, .per_example = a->per_example, .eps = a->eps};
    if (replicated(a)) jo.comm = cli_dist_comm(); /* NULL in one process */
    double t0 = now_s();
    /* The numeric mode through nb_jacobian_kinks: the same Jacobian, and
     * where central differences straddle a kink. */
    nb_status st = jo.mode == NB_JAC_NUMERIC ? nb_jacobian_kinks(r->y, r->wrt, &jo, 0, 0, &r->J, &r->K, &r->nkinks)
                                             : nb_jacobian(r->y, r->wrt, &jo, &r->J);
    if (!st && a->compare) st = nb_jacobian_kinks(r->y, r->wrt, &jo, 0, 0, &r->Jn, &r->K, &r->nkinks);
    if (st == NB_ERR_TOO_LARGE && !strcmp(a->wrt, "input") && !a->per_example) {
        /* The library's advice names its own options: give the flags instead. */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", nb_last_error());
        char *lib_advice = strstr(msg, "; raise max_bytes");
        if (lib_advice) *lib_advice = '\0';
        nb_set_error(st,
                     "%s; for %lld examples the full Jacobian holds every pair of them: pass --per-example (one "
                     "block per example) or --count N with fewer examples (--start K: the first)",
                     msg, (long long)r->x->shape[0]);
    }
    if (st) return cli_fail("jacobian", NULL);
    r->seconds = now_s() - t0;
    const nb_tensor *yv = nb_value(r->y), *wv = nb_value(r->wrt);
    r->O = yv->size, r->I = wv->size;
    if (a->per_example) r->O /= yv->shape[0], r->I /= wv->shape[0];
    return 0;
}

/* Under mpirun: the rows of J and of the output from every rank, on rank 0
 * (the others are idle after it). */
static int gather_share(jac_run *r, const nb_tensor *all_x)
{
    if ((r->yg = nb_tensor_clone(nb_value(r->y))) == NULL || cli_dist_gather_rows(&r->J, all_x->shape[0]) ||
        cli_dist_gather_rows(&r->yg, all_x->shape[0]))
        return cli_fail("jacobian", "gathering the ranks' rows");
    r->idle = cli_dist_rank() != 0;
    return 0;
}

/* The output's value and wrt's (the gathered ones under mpirun). */
static const nb_tensor *out_value(const jac_run *r)
{
    return r->yg ? r->yg : nb_value(r->y);
}
static const nb_tensor *wrt_value(const jac_run *r)
{
    return r->yg && r->wrt == nb_model_input(r->m) ? r->x : nb_value(r->wrt);
}

/* --png, -o and --kinks. */
static int write_outputs(const jacobian_args *a, const jac_run *r)
{
    const nb_tensor *yv = out_value(r), *wv = wrt_value(r);
    if (a->png) {
        char t[160], sub[160], s1[64], s2[64];
        int64_t cols = a->per_example ? r->I : wv->size, rows = r->J->size / cols;
        snprintf(t, sizeof t, "d %s %s / d %s %s%s", a->of, nb_shape_str(yv->rank, yv->shape, s1, sizeof s1), a->wrt,
                 nb_shape_str(wv->rank, wv->shape, s2, sizeof s2), a->per_example ? " per example" : "");
        snprintf(sub, sizeof sub, "rows: %lld output elements, columns: %lld %s elements", (long long)rows,
                 (long long)cols, a->wrt);
        if (cli_matrix_png(a->png, r->J->data, rows, cols, t, sub)) return cli_fail("jacobian", "drawing --png");
    }
    if (a->out && nb_npy_write(a->out, r->J)) return cli_fail("jacobian", "writing the Jacobian");
    if (a->kinks && nb_npy_write(a->kinks, r->K)) return cli_fail("jacobian", "writing --kinks");
    return 0;
}

/* What was computed (stderr), the comparison or the kinks, and the
 * examples that are not finite; the exit status. */
static int report(const jacobian_args *a, const jac_run *r)
{
    const nb_tensor *yv = out_value(r), *wv = wrt_value(r);
    /* The mode auto chose, by the library's rule (per example when asked). */
    const nb_jac_mode mode = (nb_jac_mode)a->mode;
    const char *used = mode != NB_JAC_AUTO ? nb_jac_mode_name(mode) : r->O <= r->I ? "auto -> rev" : "auto -> fwd";
    const char *used_short = mode != NB_JAC_AUTO ? nb_jac_mode_name(mode) : r->O <= r->I ? "rev" : "fwd";
    char s1[96], s2[96], s3[96];
    fprintf(stderr, "jacobian d %s %s / d %s %s%s: shape %s, mode %s%s, %.3f s%s%s\n", a->of,
            nb_shape_str(yv->rank, yv->shape, s1, sizeof s1), a->wrt, nb_shape_str(wv->rank, wv->shape, s2, sizeof s2),
            a->per_example ? " per example" : "", nb_shape_str(r->J->rank, r->J->shape, s3, sizeof s3), used,
            a->compare ? " and numeric" : "", r->seconds, a->out || a->png ? "; wrote " : "",
            a->out ? a->out : a->png ? a->png : "");
    int64_t zeros = 0;
    for (int64_t k = 0; k < r->J->size; k++) zeros += r->J->data[k] == 0;
    fprintf(stderr, "sparsity: %lld of the %lld entries of J are exactly 0 (%.1f%%)\n", (long long)zeros,
            (long long)r->J->size, r->J->size ? 100.0 * (double)zeros / (double)r->J->size : 0.0);
    int rc = 0;
    if (a->compare) {
        rc = report_compare(r->J, r->Jn, r->K, r->nkinks, used_short, a->eps, a->tol, a->per_example, r->O, r->I,
                            a->wrt);
    } else if (mode == NB_JAC_NUMERIC) {
        if (r->nkinks)
            fprintf(stderr,
                    "numeric: %lld of %lld %s elements (%.1f%%) sit at a kink or tie for eps %g (relu at 0, equal\n"
                    "  values in a max pool's window): their one-sided differences disagree, so their columns of J\n"
                    "  are no derivative and will not match backprop; 'nabla jacobian --compare' reports the\n"
                    "  difference on the other elements (--kinks K.npy: which ones)\n",
                    (long long)r->nkinks, (long long)r->K->size, a->wrt, 100.0 * (double)r->nkinks / (double)r->K->size,
                    a->eps);
        else
            fprintf(stderr, "numeric: no %s element at a kink or tie for eps %g\n", a->wrt, a->eps);
    }
    /* Examples whose input, output (the differentiated node's value at x) or
     * rows of J are not finite; J's leading axis is the output's batch. */
    const cli_rows rows[3] = {{"input", r->x, 0}, {a->of, yv, 1}, {"Jacobian", r->J, 1}};
    if (cli_report_nonfinite("jacobian", r->x->shape[0], 3, rows)) {
        fprintf(stderr,
                "nabla jacobian: wrote %s all the same; the blocks of J of those examples mean nothing where "
                "their %s are not finite (exit status 3)\n",
                a->out   ? a->out
                : a->png ? a->png
                         : "nothing",
                rows[1].name);
        if (rc == 0) rc = CLI_EXIT_NONFINITE;
    }
    return rc;
}

int cmd_jacobian(int argc, char **argv)
{
    jacobian_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;
    if (cli_dist_start("jacobian")) return 1;
    if (cli_dist_size() > 1 && (a.compare || a.kinks))
        return cli_dist_end(cli_dist_refuse("jacobian", "--compare and --kinks run in one process (without mpirun)"));
    if (cli_dist_size() > 1 && replicated(&a) && a.mode == NB_JAC_NUMERIC)
        return cli_dist_end(cli_dist_refuse("jacobian", "under mpirun the full Jacobian w.r.t. the input runs by "
                                                        "backprop (--mode auto, rev or fwd); --mode numeric: add "
                                                        "--per-example, or run one process"));
    const int layer_of = strcmp(a.of, "logits") && strcmp(a.of, "output");
    const int layer_wrt = strcmp(a.wrt, "input") && !strchr(a.wrt, '.'); /* parameter names hold a '.' */
    if (cli_dist_size() > 1 && (layer_of || layer_wrt))
        return cli_dist_end(cli_dist_refuse("jacobian", "--of LAYER and --wrt LAYER run in one process (without "
                                                        "mpirun)"));
    jac_run r = {0};
    rc = compute(&a, &r);
    if (!rc && !r.idle) rc = write_outputs(&a, &r);
    if (!rc && !r.idle) rc = report(&a, &r);
    nb_tensor_free(r.J);
    nb_tensor_free(r.Jn);
    nb_tensor_free(r.K);
    nb_tensor_free(r.x);
    nb_tensor_free(r.yg);
    nb_model_free(r.m);
    return cli_dist_end(rc);
}
