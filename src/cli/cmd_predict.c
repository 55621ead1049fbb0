/* nabla predict: run a model on inputs from a file, write its outputs as
 * probabilities to a .npy file. */
#include "cli.h"
#include "../dist/cli_dist.h"
#include "nonfinite.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *model, *out, *classes;
    cli_source src;
    long long batch, top, show;
    int raw, allow_nonfinite, fold_bn;
} predict_args;

#define F(field) offsetof(predict_args, field)
static const cli_opt predict_opts[] = {
    {"--model", NULL, CLI_STR, F(model), "M", NULL, "a model file written by 'nabla train'", CLI_REQUIRED, 0, 0, NULL},
    CLI_SOURCE_OPTS(predict_args, src, "how many examples (default: all)"),
    {"--out", "-o", CLI_STR, F(out), "P", NULL, "write the outputs (N, outputs...) as float .npy (optional)", 0, 0, 0,
     NULL},
    {"--top", NULL, CLI_INT, F(top), "K", "3", "classes printed per example, most probable first", 0, 1, 1000, NULL},
    {"--show", NULL, CLI_INT, F(show), "N", "10", "examples whose top classes are printed (0: none)", 0, 0,
     1099511627776.0, NULL},
    {"--classes", NULL, CLI_STR, F(classes), "FILE", NULL,
     "class names, one per line (default: Fashion-MNIST's with --data\n"
     "fashion-mnist, or a model of 10 classes read with --classes fashion-mnist)", 0, 0, 0, NULL},
    {"--batch", NULL, CLI_INT, F(batch), "B", "256", "examples per forward pass", 0, 1, 1 << 20, NULL},
    {"--fold-bn", NULL, CLI_FLAG, F(fold_bn), NULL, NULL,
     "fold each batchnorm into the conv2d/dense before it (inference arithmetic; outputs equal\n"
     "within float rounding)", 0, 0, 0, NULL},
    {"--raw", NULL, CLI_FLAG, F(raw), NULL, NULL, "write the model's output without the softmax", 0, 0, 0, NULL},
    {"--allow-nonfinite", NULL, CLI_FLAG, F(allow_nonfinite), NULL, NULL,
     "load a model whose weights hold NaN or Inf (refused otherwise), e.g.\n"
     "to see what a diverged model outputs", 0, 0, 0, NULL},
};
#undef F

static const cli_spec predict_spec = {
    "predict", "--model M.safetensors (--input X.npy|IDX-FILE | --data D) [-o PROBS.npy] [options]",
    "Runs the model on every example and prints the most probable classes of the first\n"
    "ones (--top, --show); -o writes all outputs, shape (N, outputs...), as float .npy.\n"
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
    "(H, W, 1), or one example without N; or --data, the examples of a data set (scaled as\n"
    "for training). Scaling rule for files: when the file's dtype is an integer type (uint8\n"
    "images, ...) and some value is > 1, all values are divided by 255, since models are\n"
    "trained on [0, 1] pixels; float files are used exactly as stored.\n",
    predict_opts, CLI_NOPTS(predict_opts),
    "NaN and Inf: inputs holding them are not refused; they go through the model as in\n"
    "PyTorch (NaN stays NaN, through relu too) and every example keeps its row in the file.\n"
    "When an example's input or output holds NaN or Inf, a warning on stderr names it (from\n"
    "0, with the counts in its input and output), and the exit status is 3 instead of 0\n"
    "(1: an error, nothing written; 2: a usage error).\n"};

static int parse_args(int argc, char **argv, predict_args *a)
{
    *a = (predict_args){0};
    int r = cli_parse(&predict_spec, argc, argv, a);
    if (r >= 0) return r;
    return cli_source_check("predict", &a->src);
}

int cmd_predict_check_args(int argc, char **argv)
{
    predict_args a;
    return parse_args(argc, argv, &a);
}

/* The model's outputs y as probabilities where it is a classifier (see the
 * help); returns what y holds, for the message. */
static const char *to_probabilities(const nb_model *m, nb_tensor *y, int raw, int *probs)
{
    /* The last layer's activation, through dropout and linear layers (the
     * identity here): 'dense 3 softmax; dropout 0.1' ends in softmax. */
    nb_activation last = nb_model_output_activation(m);
    int64_t C = y->rank >= 2 ? y->shape[y->rank - 1] : 1;
    *probs = !raw && C >= 2 && (last == NB_ACT_SOFTMAX || last == NB_ACT_LOG_SOFTMAX || last == NB_ACT_NONE);
    if (raw) return "the model's output (unchanged)";
    if (last == NB_ACT_SOFTMAX) return "probabilities (the model ends in softmax)";
    if (last == NB_ACT_SIGMOID) return "probabilities (the model ends in sigmoid)";
    if (last != NB_ACT_LOG_SOFTMAX && !(last == NB_ACT_NONE && C >= 2)) return "the model's output (unchanged)";
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
    return last == NB_ACT_LOG_SOFTMAX ? "probabilities (exp of the model's log_softmax)"
                                      : "probabilities (softmax of the model's logits)";
}

/* "3 Dress" from the names, or "3". */
static const char *class_str(char *buf, size_t n, int64_t c, const cli_names *names)
{
    if (names && c < names->n) snprintf(buf, n, "%s", names->name[c]);
    else snprintf(buf, n, "class %lld", (long long)c);
    return buf;
}

/* The top classes of the first examples of probabilities y (N, C), with
 * their labels when known, and how many of those are right. */
/* Rank order of the classes of one example: larger probability first, ties
 * by index, NaN after every number (a total order, so the k-th class
 * always exists: with NaN outputs the plain comparisons find none). */
static int ranks_before(const nb_real *p, int64_t a, int64_t b)
{
    if (isnan(p[a]) != isnan(p[b])) return !isnan(p[a]);
    if (!isnan(p[a]) && p[a] != p[b]) return p[a] > p[b];
    return a < b;
}

static void print_top(const predict_args *a, const nb_tensor *y, const nb_tensor *labels, const cli_names *names)
{
    const int64_t N = y->shape[0], C = y->size / N, K = a->top < C ? a->top : C;
    const int64_t show = a->show < N ? a->show : N;
    int64_t right = 0;
    char name[128];
    for (int64_t n = 0; n < show; n++) {
        const nb_real *p = y->data + n * C;
        printf("example %lld:", (long long)(a->src.start + n));
        int64_t prev = -1;
        for (int64_t k = 0; k < K; k++) {
            /* the k-th in rank order: the first of those ranked after the previous */
            int64_t best = -1;
            for (int64_t c = 0; c < C; c++)
                if ((prev < 0 || ranks_before(p, prev, c)) && (best < 0 || ranks_before(p, c, best))) best = c;
            prev = best;
            const double v = p[best]; /* printed "nan", never "-nan" */
            printf("%s %s %.3f", k ? "," : "", class_str(name, sizeof name, best, names), isnan(v) ? fabs(v) : v);
        }
        if (labels) {
            int64_t want = (int64_t)labels->data[n], top1 = 0;
            for (int64_t c = 1; c < C; c++)
                if (p[c] > p[top1]) top1 = c;
            right += top1 == want;
            printf("   (label: %s%s)", class_str(name, sizeof name, want, names), top1 == want ? "" : ", wrong");
        }
        printf("\n");
    }
    if (labels && show) printf("%lld of %lld right\n", (long long)right, (long long)show);
    if (N > show) printf("... %lld more examples%s\n", (long long)(N - show), a->out ? "" : " (-o FILE writes them all)");
}

/* The labels printed beside the top classes: class indices of the model's
 * outputs, or a refusal in the words of every other command (a label of 12,
 * -1 or 1e30 would be printed as a class, and -1 read names[-1]). */
static int check_labels(const predict_args *a, const nb_tensor *labels, int64_t classes, const char *what)
{
    char which[64] = "labels";
    if (a->src.start > 0) snprintf(which, sizeof which, "labels (example 0 is example %lld)", a->src.start);
    if (!labels || !nb_check_class_labels(which, labels->data, labels->size, classes)) return 0;
    fprintf(stderr, "nabla predict: %s: %s\n", what, nb_last_error());
    return 1;
}

/* y = m(x); under mpirun each rank predicts its contiguous share of the
 * rows, and rank 0 gathers them (y: all rows there). 0 or the exit code. */
static int predict_shared(nb_model *m, const nb_tensor *x, long long batch, nb_tensor **y)
{
    int64_t lo = 0, hi = x->shape[0];
    nb_tensor *mine = NULL;
    if (cli_dist_check_rows("predict", x->shape[0])) return 1;
    cli_dist_range(x->shape[0], &lo, &hi);
    if (cli_dist_size() > 1 && !(mine = cli_dist_rows(x, lo, hi))) return cli_fail("predict", "splitting the input");
    int rc = 0;
    if (nb_model_predict(m, mine ? mine : x, batch, y)) rc = cli_fail("predict", "running the model");
    else if (cli_dist_gather_rows(y, x->shape[0])) rc = cli_fail("predict", NULL);
    nb_tensor_free(mine);
    return rc;
}

int cmd_predict(int argc, char **argv)
{
    predict_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;
    if (a.out && !cli_check_output("predict", "-o", a.out)) return 1;
    nb_model *m = NULL;
    nb_tensor *x = NULL, *y = NULL, *labels = NULL;
    cli_names names = {0};
    int scaled = 0, probs = 0;
    char what[1024] = "";
    rc = 1;
    if (cli_dist_start("predict")) return 1;
    if (cli_load_trained_model_flags(a.model, a.allow_nonfinite ? NB_LOAD_ALLOW_NONFINITE : 0, &m))
        cli_fail("predict", "loading the model");
    else if (a.fold_bn && cli_fold_bn("predict", m))
        cli_fail("predict", "--fold-bn");
    else if (cli_load_examples(&a.src, 0, m, &x, &labels, &scaled, what, sizeof what))
        cli_fail("predict", "reading the input");
    else rc = predict_shared(m, x, a.batch, &y);
    if (!rc && cli_dist_rank() != 0) { /* rank 0 has this rank's rows now */
        nb_tensor_free(x), nb_tensor_free(y), nb_tensor_free(labels), nb_model_free(m);
        return cli_dist_end(0);
    }
    const char *holds = rc ? NULL : to_probabilities(m, y, a.raw, &probs);
    if (!rc && probs && cli_names_for_model(a.classes, a.src.data, m, y->size / y->shape[0], &names))
        rc = cli_fail("predict", "--classes");
    if (!rc && probs && y->shape[0] > 0 && check_labels(&a, labels, y->size / y->shape[0], what)) rc = 1;
    if (!rc && a.out && nb_npy_write(a.out, y)) rc = cli_fail("predict", "writing the output");
    if (!rc) {
        char sh[96];
        printf("%s: %lld examples, output shape %s, %s%s\n", what, (long long)x->shape[0],
               nb_shape_str(y->rank, y->shape, sh, sizeof sh), holds, scaled ? "; integer input scaled by 1/255" : "");
        if (probs) print_top(&a, y, labels, names.n ? &names : NULL);
        if (a.out) printf("wrote %s\n", a.out);
        const cli_rows rows[2] = {{"input", x, 0}, {"output", y, 1}};
        if (cli_report_nonfinite("predict", x->shape[0], 2, rows)) {
            fprintf(stderr, "nabla predict: %s%s: those examples' rows hold NaN or Inf (exit status 3)\n",
                    a.out ? "wrote all the same " : "", a.out ? a.out : "");
            rc = CLI_EXIT_NONFINITE;
        }
    }
    cli_names_free(&names);
    nb_tensor_free(x);
    nb_tensor_free(y);
    nb_tensor_free(labels);
    nb_model_free(m);
    return cli_dist_end(rc);
}
