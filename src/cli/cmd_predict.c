/* nabla predict: run a model on inputs from a file, write its outputs as
 * probabilities to a .npy file. */
#include "cli.h"
#include "../dist/cli_dist.h"
#include "nonfinite.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *usage_text =
    "usage: nabla predict --model M.safetensors --input X.npy|IDX-FILE -o PROBS.npy [--batch B]\n"
    "\n"
    "Runs the model on every example of the input file and writes its outputs, shape\n"
    "(N, outputs...), as float .npy.\n"
    "\n"
    "Probabilities: a classifier whose last layer has no softmax (e.g. '... dense 10', trained\n"
    "with the cce loss on logits) gets a softmax over its last axis applied here; a model that\n"
    "ends in softmax or sigmoid already outputs probabilities and is written as is; log_softmax\n"
    "is exponentiated. The last layer is the last one that is not dropout or linear (both are\n"
    "the identity here), so '... dense 10 softmax; dropout 0.2' ends in softmax. Any other\n"
    "output (one unit without sigmoid, relu, tanh, ...) is not a classifier's logits and is\n"
    "written unchanged. --raw writes the output unchanged always.\n"
    "\n"
    "Input: .npy (any dtype nabla reads) or an IDX file (raw or .gz), of shape\n"
    "(N, input...) as the model takes, or (N, H, W) for an image model with one channel\n"
    "(H, W, 1), or one example without N. Scaling rule: when the file's dtype is an integer\n"
    "type (uint8 images, ...) and some value is > 1, all values are divided by 255, since\n"
    "models are trained on [0, 1] pixels; float files are used exactly as stored.\n"
    "\n"
    "  --model M     a model file written by 'nabla train'\n"
    "  --input X     the inputs (.npy or IDX)\n"
    "  -o, --out P   the output .npy file\n"
    "  --batch B     examples per forward pass (default 256)\n"
    "  --raw         write the model's output without the softmax\n"
    "  --allow-nonfinite  load a model whose weights hold NaN or Inf (refused otherwise), e.g.\n"
    "                to see what a diverged model outputs\n"
    "\n"
    "NaN and Inf: inputs holding them are not refused; they go through the model as in\n"
    "PyTorch (NaN stays NaN, through relu too) and every example keeps its row in the file.\n"
    "When an example's input or output holds NaN or Inf, a warning on stderr names it (from\n"
    "0, with the counts in its input and output), and the exit status is 3 instead of 0\n"
    "(1: an error, nothing written; 2: a usage error).\n";

int cmd_predict(int argc, char **argv)
{
    const char *model = NULL, *input = NULL, *out = NULL;
    long long batch = 256;
    int raw = 0;
    unsigned flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (!strcmp(k, "--raw")) {
            raw = 1;
            continue;
        }
        if (!strcmp(k, "--allow-nonfinite")) {
            flags |= NB_LOAD_ALLOW_NONFINITE;
            continue;
        }
        int known = !strcmp(k, "--model") || !strcmp(k, "--input") || !strcmp(k, "-o") || !strcmp(k, "--out") ||
                    !strcmp(k, "--batch");
        if (!known) return cli_usage_error("predict", "unknown option '%s'", k);
        if (!v) return cli_usage_error("predict", "option '%s' needs a value", k);
        i++;
        if (!strcmp(k, "--model")) model = v;
        else if (!strcmp(k, "--input")) input = v;
        else if (!strcmp(k, "-o") || !strcmp(k, "--out")) out = v;
        else if (!cli_parse_int(v, 1, 1 << 20, &batch))
            return cli_usage_error("predict", "--batch must be an integer >= 1, got '%s'", v);
    }
    if (!model || !input || !out) return cli_usage_error("predict", "%s", "--model, --input and -o are required");

    nb_model *m = NULL;
    nb_tensor *x = NULL, *y = NULL, *mine = NULL;
    int rc = 1, scaled = 0;
    if (cli_dist_start("predict")) return 1;
    if (cli_load_trained_model_flags(model, flags, &m)) {
        cli_fail("predict", "loading the model");
        goto done;
    }
    if (cli_load_input(input, m, &x, &scaled)) {
        cli_fail("predict", "reading the input");
        goto done;
    }
    /* Under mpirun each rank predicts its contiguous share of the rows,
     * and rank 0 gathers them and writes the file. */
    int64_t lo = 0, hi = x->shape[0];
    if (cli_dist_check_rows("predict", x->shape[0])) goto done;
    cli_dist_range(x->shape[0], &lo, &hi);
    if (cli_dist_size() > 1 && !(mine = cli_dist_rows(x, lo, hi))) {
        cli_fail("predict", "splitting the input");
        goto done;
    }
    if (nb_model_predict(m, mine ? mine : x, batch, &y)) {
        cli_fail("predict", "running the model");
        goto done;
    }
    if (cli_dist_gather_rows(&y, x->shape[0])) {
        cli_fail("predict", NULL);
        goto done;
    }
    if (cli_dist_rank() != 0) {
        rc = 0;
        goto done;
    }
    /* The last layer's activation, through dropout and linear layers (the
     * identity here): 'dense 3 softmax; dropout 0.1' ends in softmax. */
    nb_activation last = nb_model_output_activation(m);
    int64_t C = y->rank >= 2 ? y->shape[y->rank - 1] : 1;
    const char *what = "the model's output (unchanged)";
    if (!raw && last == NB_ACT_SOFTMAX) what = "probabilities (the model ends in softmax)";
    else if (!raw && last == NB_ACT_SIGMOID) what = "probabilities (the model ends in sigmoid)";
    else if (!raw && (last == NB_ACT_LOG_SOFTMAX || (last == NB_ACT_NONE && C >= 2))) {
        /* Softmax over the last axis, in double, shifted by the row's max. */
        for (int64_t r = 0; r < y->size / C; r++) {
            nb_real *z = y->data + r * C;
            if (last == NB_ACT_LOG_SOFTMAX) {
                for (int64_t c = 0; c < C; c++) z[c] = (nb_real)exp((double)z[c]);
                continue;
            }
            double mx = z[0], sum = 0;
            for (int64_t c = 1; c < C; c++)
                if (z[c] > mx) mx = z[c];
            for (int64_t c = 0; c < C; c++) sum += exp((double)z[c] - mx);
            for (int64_t c = 0; c < C; c++) z[c] = (nb_real)(exp((double)z[c] - mx) / sum);
        }
        what = last == NB_ACT_LOG_SOFTMAX ? "probabilities (exp of the model's log_softmax)"
                                          : "probabilities (softmax of the model's logits)";
    }
    if (nb_npy_write(out, y)) {
        cli_fail("predict", "writing the output");
        goto done;
    }
    char s[96];
    printf("wrote %s: shape %s, %s%s\n", out, nb_shape_str(y->rank, y->shape, s, sizeof s), what,
           scaled ? "; integer input scaled by 1/255" : "");
    rc = 0;
    const cli_rows rows[2] = {{"input", x, 0}, {"output", y, 1}};
    if (cli_report_nonfinite("predict", x->shape[0], 2, rows)) {
        fprintf(stderr, "nabla predict: wrote %s all the same: those examples' rows hold NaN or Inf (exit status 3)\n",
                out);
        rc = CLI_EXIT_NONFINITE;
    }
done:
    nb_tensor_free(mine);
    nb_tensor_free(x);
    nb_tensor_free(y);
    nb_model_free(m);
    return cli_dist_end(rc);
}
