/* nabla grad: the gradient of the mean loss over a batch with respect to
 * every parameter, saved as safetensors under the parameters' names. */
#include "cli.h"
#include "nonfinite.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *usage_text =
    "usage: nabla grad --model M.safetensors --input X.npy --labels Y.npy --loss cce|mse|bce\n"
    "                  -o GRADS.safetensors\n"
    "\n"
    "One forward and one backward pass over all N examples: dJ/dW for every parameter W,\n"
    "where J is the loss averaged over the batch (as in training), written under the\n"
    "parameter's own name (0.kernel, 0.bias, ...) with the parameter's shape.\n"
    "\n"
    "  --model M     a model file written by 'nabla train'\n"
    "  --input X     inputs (.npy or IDX; same shapes and scaling rule as 'nabla predict')\n"
    "  --labels Y    cce: integer class indices, shape (N) (or (N, 1));\n"
    "                mse, bce: targets of the output's shape (N, outputs...)\n"
    "  --loss L      cce (softmax cross-entropy on the logits, default) | mse | bce\n"
    "                (bce on the logits when the model ends in sigmoid)\n"
    "  -o, --out G   the output .safetensors file\n"
    "\n"
    "NaN and Inf: inputs holding them are not refused. When an example's input, labels or\n"
    "the output the loss reads hold NaN or Inf, a warning on stderr names it (from 0, with\n"
    "the counts); non-finite gradients are named too. The file is written all the same and\n"
    "the exit status is 3 instead of 0 (1: an error, nothing written; 2: a usage error).\n";

/* The examples whose input, labels or loss input (the logits for cce, and for
 * bce after a final sigmoid; else the output) hold NaN or Inf, then the
 * parameters with non-finite gradients, on stderr. 1 if anything was
 * reported (a NaN loss with all of these finite is reported too). */
static int report_nonfinite(nb_model *m, nb_loss_kind kind, const nb_tensor *x, const nb_tensor *y, nb_node *loss)
{
    const int L = nb_model_num_layers(m);
    const nb_activation last = L ? nb_model_layer(m, L - 1)->act : NB_ACT_NONE;
    const int on_logits = kind == NB_LOSS_CCE || (kind == NB_LOSS_BCE && last == NB_ACT_SIGMOID);
    const cli_rows rows[3] = {{"input", x, 0},
                              {"labels", y, 0},
                              {on_logits ? "logits" : "output",
                               nb_value(on_logits ? nb_model_logits(m) : nb_model_output(m)), 1}};
    fflush(stdout); /* the table first, where both go to one file */
    int reported = cli_report_nonfinite("grad", x->shape[0], 3, rows) > 0;
    char line[512];
    size_t u = 0;
    for (int i = 0; i < nb_model_param_count(m); i++) {
        nb_node *p = nb_model_param(m, i);
        const nb_tensor *g = nb_grad(p);
        char c[64];
        if (!cli_nonfinite_str(g->data, g->size, c, sizeof c) || u >= sizeof line) continue;
        u += (size_t)snprintf(line + u, sizeof line - u, "%s%s (%s)", u ? ", " : "", nb_node_name(p), c);
    }
    if (u) {
        fprintf(stderr, "nabla grad: warning: non-finite gradients: %s\n", line);
        reported = 1;
    }
    const double lv = nb_value(loss)->data[0];
    if (!reported && !isfinite(lv)) {
        fprintf(stderr, "nabla grad: warning: the loss is %s\n", isnan(lv) ? "nan" : lv > 0 ? "inf" : "-inf");
        reported = 1;
    }
    return reported;
}

int cmd_grad(int argc, char **argv)
{
    const char *model = NULL, *input = NULL, *labels = NULL, *out = NULL, *loss_name = "cce";
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            fputs(usage_text, stdout);
            return 0;
        }
        int known = !strcmp(k, "--model") || !strcmp(k, "--input") || !strcmp(k, "--labels") || !strcmp(k, "-o") ||
                    !strcmp(k, "--out") || !strcmp(k, "--loss");
        if (!known) return cli_usage_error("grad", "unknown option '%s'", k);
        if (!v) return cli_usage_error("grad", "option '%s' needs a value", k);
        i++;
        if (!strcmp(k, "--model")) model = v;
        else if (!strcmp(k, "--input")) input = v;
        else if (!strcmp(k, "--labels")) labels = v;
        else if (!strcmp(k, "--loss")) loss_name = v;
        else out = v;
    }
    if (!model || !input || !labels || !out)
        return cli_usage_error("grad", "%s", "--model, --input, --labels and -o are required");
    nb_loss_kind kind = !strcmp(loss_name, "cce") ? NB_LOSS_CCE : !strcmp(loss_name, "mse") ? NB_LOSS_MSE
                        : !strcmp(loss_name, "bce") ? NB_LOSS_BCE : (nb_loss_kind)-1;
    if ((int)kind < 0) return cli_usage_error("grad", "unknown --loss '%s' (cce, mse, bce)", loss_name);

    nb_model *m = NULL;
    nb_tensor *x = NULL, *y = NULL;
    nb_safetensors *st = NULL;
    int rc = 1;
    char s1[96], s2[96];
    nb_node *target, *loss;
    if (cli_load_trained_model(model, &m)) {
        cli_fail("grad", "loading the model");
        goto done;
    }
    /* The loss (and its target) first, at the model's current batch; then the batch size. */
    if (nb_model_loss(m, kind, &target, &loss)) {
        cli_fail("grad", "building the loss");
        goto done;
    }
    if (cli_load_input(input, m, &x, NULL)) {
        cli_fail("grad", "reading the input");
        goto done;
    }
    if (!cli_is_file(labels)) {
        nb_set_error(NB_ERR_IO, "labels '%s': no such file", labels);
        cli_fail("grad", NULL);
        goto done;
    }
    if (nb_npy_read(labels, &y)) {
        cli_fail("grad", "reading the labels");
        goto done;
    }
    int64_t N = x->shape[0];
    if (nb_model_set_batch(m, N)) {
        cli_fail("grad", NULL);
        goto done;
    }
    if (kind == NB_LOSS_CCE) {
        int64_t C = nb_value(nb_model_logits(m))->shape[1];
        int fits = y->rank >= 1 && y->shape[0] == N && y->size == N && y->rank <= 2;
        if (!fits) {
            nb_set_error(NB_ERR_SHAPE, "labels '%s' have shape %s; cce needs %lld class indices, shape (%lld)",
                         labels, nb_shape_str(y->rank, y->shape, s1, sizeof s1), (long long)N, (long long)N);
            cli_fail("grad", NULL);
            goto done;
        }
        for (int64_t i = 0; i < N; i++) {
            double v = y->data[i];
            if (!(v >= 0 && v < (double)C) || v != floor(v)) {
                nb_set_error(NB_ERR_ARG, "labels '%s': label %g at row %lld is not a class index 0..%lld", labels, v,
                             (long long)i, (long long)C - 1);
                cli_fail("grad", NULL);
                goto done;
            }
        }
    } else {
        /* The target has the output's shape (N, outputs...). */
        const nb_tensor *o = nb_value(nb_model_output(m));
        int fits = y->rank == o->rank && y->shape[0] == N;
        for (int d = 1; fits && d < o->rank; d++) fits = y->shape[d] == o->shape[d];
        if (!fits) {
            int64_t want[NB_MAX_RANK];
            memcpy(want, o->shape, sizeof want);
            want[0] = N;
            nb_set_error(NB_ERR_SHAPE, "labels '%s' have shape %s; %s needs targets of the output's shape %s", labels,
                         nb_shape_str(y->rank, y->shape, s1, sizeof s1), loss_name,
                         nb_shape_str(o->rank, want, s2, sizeof s2));
            cli_fail("grad", NULL);
            goto done;
        }
    }
    memcpy(nb_value(nb_model_input(m))->data, x->data, (size_t)x->size * sizeof(nb_real));
    memcpy(nb_value(target)->data, y->data, (size_t)y->size * sizeof(nb_real));
    nb_graph_set_training(nb_model_graph(m), 0, 0);
    if (nb_forward(nb_model_graph(m)) || nb_backward(loss)) {
        cli_fail("grad", NULL);
        goto done;
    }
    st = nb_safetensors_new();
    if (!st) {
        cli_fail("grad", "out of memory");
        goto done;
    }
    char lv[64];
    const double loss_v = nb_value(loss)->data[0];
    snprintf(lv, sizeof lv, "%.9g", isnan(loss_v) ? NAN : loss_v); /* "nan", never "-nan" */
    printf("loss (%s, mean over %lld examples): %s\n", loss_name, (long long)N, lv);
    printf("%-12s %-18s %12s %12s\n", "parameter", "shape", "max |grad|", "L2 norm");
    for (int i = 0; i < nb_model_param_count(m); i++) {
        nb_node *p = nb_model_param(m, i);
        const nb_tensor *g = nb_grad(p);
        if (!g) {
            nb_set_error(NB_ERR_ARG, "no gradient was computed for '%s'", nb_node_name(p));
            cli_fail("grad", NULL);
            goto done;
        }
        double mx = 0, ss = 0;
        for (int64_t j = 0; j < g->size; j++) {
            double a = fabs((double)g->data[j]);
            if (a > mx || a != a) mx = a; /* a NaN sticks: NaN > mx is false */
            ss += a * a;
        }
        printf("%-12s %-18s %12.4g %12.4g\n", nb_node_name(p), nb_shape_str(g->rank, g->shape, s1, sizeof s1), mx,
               sqrt(ss));
        if (nb_safetensors_add(st, nb_node_name(p), g)) {
            cli_fail("grad", NULL);
            goto done;
        }
    }
    if (nb_safetensors_set_meta(st, "nabla.grad.loss", loss_name) || nb_safetensors_set_meta(st, "nabla.grad.value", lv) ||
        nb_safetensors_set_meta(st, "nabla.spec", nb_model_spec(m)) || nb_safetensors_write(out, st, 0)) {
        cli_fail("grad", "writing the gradients");
        goto done;
    }
    printf("wrote %s: %d gradients\n", out, nb_model_param_count(m));
    rc = 0;
    if (report_nonfinite(m, kind, x, y, loss)) {
        fprintf(stderr, "nabla grad: wrote %s all the same (exit status 3)\n", out);
        rc = CLI_EXIT_NONFINITE;
    }
done:
    nb_safetensors_free(st);
    nb_tensor_free(x);
    nb_tensor_free(y);
    nb_model_free(m);
    return rc;
}
