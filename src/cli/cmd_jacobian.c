/* nabla jacobian: the Jacobian of a model's output with respect to its input
 * or one of its parameters, written as .npy. */
#include "cli.h"
#include "nonfinite.h"
#include "../dist/cli_dist.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *usage_text =
    "usage: nabla jacobian --model M.safetensors --input X.npy -o J.npy [options]\n"
    "\n"
    "Writes J = d out / d wrt with shape out.shape + wrt.shape, both with their batch\n"
    "dimension: for a (28,28,1) -> 10 classifier and N inputs, d logits / d input has shape\n"
    "(N, 10, N, 28, 28, 1) (the blocks J[n, :, m] with n != m are zero: examples do not\n"
    "interact); d logits / d 0.kernel has shape (N, 10, 3, 3, 1, 32).\n"
    "\n"
    "What is differentiated: the model's logits, i.e. its output before a final softmax or\n"
    "sigmoid; when the model does not end in softmax/sigmoid (e.g. '... dense 10', trained on\n"
    "logits), that is the model's output itself. --of output differentiates the output after\n"
    "the final softmax/sigmoid (the probabilities) instead.\n"
    "\n"
    "  --model M        a model file written by 'nabla train'\n"
    "  --input X        inputs (.npy or IDX; same shapes and scaling rule as 'nabla predict')\n"
    "  --wrt W          input (default), or a parameter name such as 0.kernel or 4.bias\n"
    "  --mode M         auto | rev | fwd | numeric (default auto: reverse mode, one VJP per\n"
    "                   output element, when the output has no more elements than wrt, else\n"
    "                   forward mode, one JVP per wrt element; numeric: central differences)\n"
    "  --per-example    J (N, out..., in...) with J[n] = d out[n] / d input[n]: the diagonal\n"
    "                   blocks of the full Jacobian, in one pass per output (only --wrt input)\n"
    "  --of O           logits (default) | output\n"
    "  --eps E          the numeric step (default 1e-3: nb_gradcheck_defaults in float)\n"
    "  --compare        compute the Jacobian by --mode (auto, rev or fwd) and by central\n"
    "                   differences, and report their relative difference (below)\n"
    "  --tol T          --compare: the largest relative difference away from kinks that\n"
    "                   counts as agreement (default 0.05: 5 times float's gradcheck rtol)\n"
    "  --kinks K        numeric or --compare: write a .npy of wrt's shape, 1 where that element\n"
    "                   sits at a kink or tie for this eps, else 0\n"
    "  -o, --out J      the output .npy file (--compare: the --mode Jacobian; optional)\n"
    "  --png P          also (or instead of -o) draw J as a PNG heatmap: rows = output elements,\n"
    "                   columns = wrt elements, blue < 0 < red, white = 0, with a colour bar\n"
    "\n"
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
    "as 0, so paths through a NaN contribute 0.\n";

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
    for (int d = Ja->rank - 1; d >= 0; d--) idx[d] = flat % Ja->shape[d], flat /= Ja->shape[d];
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
    printf("DIFFER: %.3g > %g away from kinks: the %s-mode Jacobian does not match central differences\n", r_off,
           tol, mode);
    return 1;
}

int cmd_jacobian(int argc, char **argv)
{
    const char *model = NULL, *input = NULL, *out = NULL, *png = NULL, *wrt_name = "input", *mode_name = "auto", *of = "logits";
    const char *kinks_path = NULL;
    int per_example = 0, compare = 0;
    double eps = 0, tol = 0;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (!strcmp(k, "--per-example") || !strcmp(k, "--compare")) {
            *(k[2] == 'p' ? &per_example : &compare) = 1;
            continue;
        }
        int known = !strcmp(k, "--model") || !strcmp(k, "--input") || !strcmp(k, "-o") || !strcmp(k, "--out") ||
                    !strcmp(k, "--wrt") || !strcmp(k, "--mode") || !strcmp(k, "--of") || !strcmp(k, "--eps") ||
                    !strcmp(k, "--png") || !strcmp(k, "--tol") || !strcmp(k, "--kinks");
        if (!known) return cli_usage_error("jacobian", "unknown option '%s'", k);
        if (!v) return cli_usage_error("jacobian", "option '%s' needs a value", k);
        i++;
        if (!strcmp(k, "--model")) model = v;
        else if (!strcmp(k, "--input")) input = v;
        else if (!strcmp(k, "-o") || !strcmp(k, "--out")) out = v;
        else if (!strcmp(k, "--wrt")) wrt_name = v;
        else if (!strcmp(k, "--mode")) mode_name = v;
        else if (!strcmp(k, "--of")) of = v;
        else if (!strcmp(k, "--png")) png = v;
        else if (!strcmp(k, "--kinks")) kinks_path = v;
        else if (!strcmp(k, "--tol")) {
            if (!cli_parse_double(v, &tol) || !(tol > 0))
                return cli_usage_error("jacobian", "--tol must be a number > 0, got '%s'", v);
        } else if (!cli_parse_double(v, &eps) || !(eps > 0))
            return cli_usage_error("jacobian", "--eps must be a number > 0, got '%s'", v);
    }
    if (!model || !input || (!out && !png && !compare))
        return cli_usage_error("jacobian", "%s", "--model, --input and -o (or --png, or --compare) are required");
    nb_jacobian_opts jo = {0};
    jo.eps = eps;
    jo.per_example = per_example;
    const char *modes[] = {"auto", "rev", "fwd", "numeric"};
    int mode = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(mode_name, modes[i])) mode = i;
    if (mode < 0) return cli_usage_error("jacobian", "unknown --mode '%s' (auto, rev, fwd, numeric)", mode_name);
    jo.mode = (nb_jac_mode)mode;
    if (compare && jo.mode == NB_JAC_NUMERIC)
        return cli_usage_error("jacobian", "%s", "--compare compares --mode auto, rev or fwd with numeric; got --mode "
                                                 "numeric");
    if (kinks_path && !compare && jo.mode != NB_JAC_NUMERIC)
        return cli_usage_error("jacobian", "%s", "--kinks needs --mode numeric or --compare");
    if (tol > 0 && !compare) return cli_usage_error("jacobian", "%s", "--tol needs --compare");
    nb_gradcheck_opts defaults;
    nb_gradcheck_defaults(&defaults);
    if (!(eps > 0)) eps = defaults.eps;
    jo.eps = eps;
    if (!(tol > 0)) tol = 5 * defaults.rtol;
    if (strcmp(of, "logits") && strcmp(of, "output"))
        return cli_usage_error("jacobian", "--of must be logits or output, got '%s'", of);
    if (per_example && strcmp(wrt_name, "input"))
        return cli_usage_error("jacobian", "--per-example needs --wrt input (a parameter is shared by all examples, "
                                           "got --wrt %s)", wrt_name);

    if (cli_dist_start("jacobian")) return 1;
    if (cli_dist_size() > 1 && (compare || kinks_path))
        return cli_dist_end(cli_dist_refuse("jacobian", "--compare and --kinks run in one process (without mpirun)"));
    if (cli_dist_size() > 1 && !per_example && !strcmp(wrt_name, "input"))
        return cli_dist_end(cli_dist_refuse("jacobian", "under mpirun the Jacobian w.r.t. the input is computed per "
                                                        "example: add --per-example (the full one is block diagonal)"));
    nb_model *m = NULL;
    nb_tensor *x = NULL, *J = NULL, *Jn = NULL, *K = NULL, *all_x = NULL, *yg = NULL;
    int64_t nkinks = 0;
    int rc = 1;
    if (cli_load_trained_model(model, &m)) {
        cli_fail("jacobian", "loading the model");
        goto done;
    }
    nb_node *wrt = !strcmp(wrt_name, "input") ? nb_model_input(m) : nb_model_find_param(m, wrt_name);
    if (!wrt) {
        char names[512] = "";
        size_t u = 0;
        for (int i = 0; i < nb_model_param_count(m) && u < sizeof names; i++)
            u += (size_t)snprintf(names + u, sizeof names - u, "%s%s", i ? ", " : "",
                                  nb_node_name(nb_model_param(m, i)));
        fprintf(stderr, "nabla jacobian: --wrt '%s': no such parameter; the model has input and: %s\n", wrt_name,
                names);
        rc = 1;
        goto done;
    }
    if (cli_load_input(input, m, &x, NULL)) {
        cli_fail("jacobian", "reading the input");
        goto done;
    }
    /* Under mpirun each rank takes a contiguous share of the examples (J's
     * leading axis); rank 0 gathers the rows of J and writes. */
    if (cli_dist_size() > 1) {
        int64_t lo, hi;
        if (cli_dist_check_rows("jacobian", x->shape[0])) goto done;
        cli_dist_range(x->shape[0], &lo, &hi);
        all_x = x;
        if (!(x = cli_dist_rows(all_x, lo, hi))) {
            cli_fail("jacobian", "splitting the input");
            goto done;
        }
    }
    if (nb_model_set_batch(m, x->shape[0])) {
        cli_fail("jacobian", NULL);
        goto done;
    }
    memcpy(nb_value(nb_model_input(m))->data, x->data, (size_t)x->size * sizeof(nb_real));
    nb_node *y = !strcmp(of, "logits") ? nb_model_logits(m) : nb_model_output(m);
    nb_graph_set_training(nb_model_graph(m), 0, 0);
    double t0 = now_s();
    /* The numeric mode through nb_jacobian_kinks: the same Jacobian, and
     * where central differences straddle a kink. */
    nb_status st = jo.mode == NB_JAC_NUMERIC ? nb_jacobian_kinks(y, wrt, &jo, 0, 0, &J, &K, &nkinks)
                                             : nb_jacobian(y, wrt, &jo, &J);
    if (!st && compare) st = nb_jacobian_kinks(y, wrt, &jo, 0, 0, &Jn, &K, &nkinks);
    if (st) {
        cli_fail("jacobian", NULL);
        goto done;
    }
    double dt = now_s() - t0;
    if (all_x) {
        /* J's and the output's rows of every rank, on rank 0 */
        if ((yg = nb_tensor_clone(nb_value(y))) == NULL || cli_dist_gather_rows(&J, all_x->shape[0]) ||
            cli_dist_gather_rows(&yg, all_x->shape[0])) {
            cli_fail("jacobian", "gathering the ranks' rows");
            goto done;
        }
        if (cli_dist_rank() != 0) {
            rc = 0;
            goto done;
        }
        nb_tensor_free(x);
        x = all_x, all_x = NULL;
    }
    /* The mode auto chose, by the library's rule (per example when asked). */
    const nb_tensor *yv = yg ? yg : nb_value(y), *wv = yg && wrt == nb_model_input(m) ? x : nb_value(wrt);
    int64_t O = yv->size, I = wv->size;
    if (per_example) O /= yv->shape[0], I /= wv->shape[0];
    const char *used = jo.mode != NB_JAC_AUTO ? nb_jac_mode_name(jo.mode) : O <= I ? "auto -> rev" : "auto -> fwd";
    const char *used_short = jo.mode != NB_JAC_AUTO ? nb_jac_mode_name(jo.mode) : O <= I ? "rev" : "fwd";
    if (png) {
        char t[160], sub[160], a[64], b[64];
        int64_t cols = per_example ? I : wv->size, rows = J->size / cols;
        snprintf(t, sizeof t, "d %s %s / d %s %s%s", of, nb_shape_str(yv->rank, yv->shape, a, sizeof a), wrt_name,
                 nb_shape_str(wv->rank, wv->shape, b, sizeof b), per_example ? " per example" : "");
        snprintf(sub, sizeof sub, "rows: %lld output elements, columns: %lld %s elements", (long long)rows,
                 (long long)cols, wrt_name);
        if (cli_matrix_png(png, J->data, rows, cols, t, sub)) {
            cli_fail("jacobian", "drawing --png");
            goto done;
        }
    }
    if (out && nb_npy_write(out, J)) {
        cli_fail("jacobian", "writing the Jacobian");
        goto done;
    }
    if (kinks_path && nb_npy_write(kinks_path, K)) {
        cli_fail("jacobian", "writing --kinks");
        goto done;
    }
    char s1[96], s2[96], s3[96];
    fprintf(stderr, "jacobian d %s %s / d %s %s%s: shape %s, mode %s%s, %.3f s%s%s\n",
            !strcmp(of, "logits") ? "logits" : "output", nb_shape_str(yv->rank, yv->shape, s1, sizeof s1),
            wrt_name, nb_shape_str(wv->rank, wv->shape, s2, sizeof s2), per_example ? " per example" : "",
            nb_shape_str(J->rank, J->shape, s3, sizeof s3), used, compare ? " and numeric" : "", dt,
            out || png ? "; wrote " : "", out ? out : png ? png : "");
    rc = 0;
    if (compare) {
        rc = report_compare(J, Jn, K, nkinks, used_short, eps, tol, per_example, O, I, wrt_name);
    } else if (jo.mode == NB_JAC_NUMERIC) {
        if (nkinks)
            fprintf(stderr,
                    "numeric: %lld of %lld %s elements (%.1f%%) sit at a kink or tie for eps %g (relu at 0, equal\n"
                    "  values in a max pool's window): their one-sided differences disagree, so their columns of J\n"
                    "  are no derivative and will not match backprop; 'nabla jacobian --compare' reports the\n"
                    "  difference on the other elements (--kinks K.npy: which ones)\n",
                    (long long)nkinks, (long long)K->size, wrt_name, 100.0 * (double)nkinks / (double)K->size, eps);
        else fprintf(stderr, "numeric: no %s element at a kink or tie for eps %g\n", wrt_name, eps);
    }
    /* Examples whose input, output (the differentiated node's value at x) or
     * rows of J are not finite; J's leading axis is the output's batch. */
    const cli_rows rows[3] = {{"input", x, 0},
                              {!strcmp(of, "logits") ? "logits" : "output", yv, 1},
                              {"Jacobian", J, 1}};
    if (cli_report_nonfinite("jacobian", x->shape[0], 3, rows)) {
        fprintf(stderr, "nabla jacobian: wrote %s all the same; the blocks of J of those examples mean nothing where "
                        "their %s are not finite (exit status 3)\n",
                out ? out : png ? png : "nothing", rows[1].name);
        if (rc == 0) rc = CLI_EXIT_NONFINITE;
    }
done:
    nb_tensor_free(J);
    nb_tensor_free(Jn);
    nb_tensor_free(K);
    nb_tensor_free(x);
    nb_tensor_free(all_x);
    nb_tensor_free(yg);
    nb_model_free(m);
    return cli_dist_end(rc);
}
