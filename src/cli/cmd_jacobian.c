/* nabla jacobian: the Jacobian of a model's output with respect to its input
 * or one of its parameters, written as .npy. */
#include "cli.h"
#include "nonfinite.h"

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
    "  --eps E          numeric mode's step (default 1e-3 in float)\n"
    "  -o, --out J      the output .npy file\n"
    "  --png P          also (or instead of -o) draw J as a PNG heatmap: rows = output elements,\n"
    "                   columns = wrt elements, blue < 0 < red, white = 0, with a colour bar\n"
    "\n"
    "The shape, mode and time taken go to stderr.\n"
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

int cmd_jacobian(int argc, char **argv)
{
    const char *model = NULL, *input = NULL, *out = NULL, *png = NULL, *wrt_name = "input", *mode_name = "auto", *of = "logits";
    int per_example = 0;
    double eps = 0;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (!strcmp(k, "--per-example")) {
            per_example = 1;
            continue;
        }
        int known = !strcmp(k, "--model") || !strcmp(k, "--input") || !strcmp(k, "-o") || !strcmp(k, "--out") ||
                    !strcmp(k, "--wrt") || !strcmp(k, "--mode") || !strcmp(k, "--of") || !strcmp(k, "--eps") || !strcmp(k, "--png");
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
        else if (!cli_parse_double(v, &eps) || !(eps > 0))
            return cli_usage_error("jacobian", "--eps must be a number > 0, got '%s'", v);
    }
    if (!model || !input || (!out && !png))
        return cli_usage_error("jacobian", "%s", "--model, --input and -o (or --png) are required");
    nb_jacobian_opts jo = {0};
    jo.eps = eps;
    jo.per_example = per_example;
    const char *modes[] = {"auto", "rev", "fwd", "numeric"};
    int mode = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(mode_name, modes[i])) mode = i;
    if (mode < 0) return cli_usage_error("jacobian", "unknown --mode '%s' (auto, rev, fwd, numeric)", mode_name);
    jo.mode = (nb_jac_mode)mode;
    if (strcmp(of, "logits") && strcmp(of, "output"))
        return cli_usage_error("jacobian", "--of must be logits or output, got '%s'", of);
    if (per_example && strcmp(wrt_name, "input"))
        return cli_usage_error("jacobian", "--per-example needs --wrt input (a parameter is shared by all examples, "
                                           "got --wrt %s)", wrt_name);

    nb_model *m = NULL;
    nb_tensor *x = NULL, *J = NULL;
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
    if (nb_model_set_batch(m, x->shape[0])) {
        cli_fail("jacobian", NULL);
        goto done;
    }
    memcpy(nb_value(nb_model_input(m))->data, x->data, (size_t)x->size * sizeof(nb_real));
    nb_node *y = !strcmp(of, "logits") ? nb_model_logits(m) : nb_model_output(m);
    nb_graph_set_training(nb_model_graph(m), 0, 0);
    double t0 = now_s();
    if (nb_jacobian(y, wrt, &jo, &J)) {
        cli_fail("jacobian", NULL);
        goto done;
    }
    double dt = now_s() - t0;
    /* The mode auto chose, by the library's rule (per example when asked). */
    const nb_tensor *yv = nb_value(y), *wv = nb_value(wrt);
    int64_t O = yv->size, I = wv->size;
    if (per_example) O /= yv->shape[0], I /= wv->shape[0];
    const char *used = jo.mode != NB_JAC_AUTO ? nb_jac_mode_name(jo.mode) : O <= I ? "auto -> rev" : "auto -> fwd";
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
    char s1[96], s2[96], s3[96];
    fprintf(stderr, "jacobian d %s %s / d %s %s%s: shape %s, mode %s, %.3f s; wrote %s\n",
            !strcmp(of, "logits") ? "logits" : "output", nb_shape_str(yv->rank, yv->shape, s1, sizeof s1),
            wrt_name, nb_shape_str(wv->rank, wv->shape, s2, sizeof s2), per_example ? " per example" : "",
            nb_shape_str(J->rank, J->shape, s3, sizeof s3), used, dt, out ? out : png);
    rc = 0;
    /* Examples whose input, output (the differentiated node's value at x) or
     * rows of J are not finite; J's leading axis is the output's batch. */
    const cli_rows rows[3] = {{"input", x, 0},
                              {!strcmp(of, "logits") ? "logits" : "output", yv, 1},
                              {"Jacobian", J, 1}};
    if (cli_report_nonfinite("jacobian", x->shape[0], 3, rows)) {
        fprintf(stderr, "nabla jacobian: wrote %s all the same; the blocks of J of those examples mean nothing where "
                        "their %s are not finite (exit status 3)\n",
                out ? out : png, rows[1].name);
        rc = CLI_EXIT_NONFINITE;
    }
done:
    nb_tensor_free(J);
    nb_tensor_free(x);
    nb_model_free(m);
    return rc;
}
