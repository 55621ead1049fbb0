/* nabla grad: the gradient of the mean loss over a batch with respect to
 * every parameter, saved as safetensors under the parameters' names. */
#include "cli.h"
#include "nonfinite.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *model, *labels, *out;
    cli_source src;
    int loss;
    int eval; /* --eval: inference mode */
} grad_args;

#define F(field) offsetof(grad_args, field)
static const cli_opt grad_opts[] = {
    {"--model", NULL, CLI_STR, F(model), "M", NULL, "a model file written by 'nabla train'", CLI_REQUIRED, 0, 0, NULL},
    CLI_SOURCE_OPTS(grad_args, src, "how many examples (default: all of --input, 100 of --data)"),
    {"--labels", NULL, CLI_STR, F(labels), "Y", NULL,
     "a .npy or IDX file (needed with --input; --data brings its own):\n"
     "cce: integer class indices, shape (N) (or (N, 1));\n"
     "mse, bce: targets of the output's shape (N, outputs...)", 0, 0, 0, NULL},
    {"--loss", NULL, CLI_CHOICE, F(loss), NULL, "cce",
     "cce: softmax cross-entropy on the logits; bce on the logits when\n"
     "the model ends in sigmoid", 0, 0, 0, cli_losses},
    {"--out", "-o", CLI_STR, F(out), "G", NULL, "the output .safetensors file", CLI_REQUIRED, 0, 0, NULL},
    {"--eval", NULL, CLI_FLAG, F(eval), NULL, NULL,
     "inference mode: batchnorm's moving statistics (default: the batch's)", 0, 0, 0, NULL},
};
#undef F

static const cli_spec grad_spec = {
    "grad", "--model M.safetensors (--input X.npy --labels Y.npy | --data D) --loss cce|mse|bce -o GRADS.safetensors",
    "One forward and one backward pass over all N examples: dJ/dW for every parameter W,\n"
    "where J is the loss averaged over the batch (as in training), written under the\n"
    "parameter's own name (0.kernel, 0.bias, ...) with the parameter's shape.\n",
    grad_opts, CLI_NOPTS(grad_opts),
    "NaN and Inf: inputs holding them are not refused. When an example's input, labels or\n"
    "the output the loss reads hold NaN or Inf, a warning on stderr names it (from 0, with\n"
    "the counts); non-finite gradients are named too. The file is written all the same and\n"
    "the exit status is 3 instead of 0 (1: an error, nothing written; 2: a usage error).\n"};

static int parse_args(int argc, char **argv, grad_args *a)
{
    *a = (grad_args){0};
    int r = cli_parse(&grad_spec, argc, argv, a);
    if (r >= 0) return r;
    if ((r = cli_source_check("grad", &a->src)) >= 0) return r;
    if (a->src.input && !a->labels) return cli_usage_error("grad", "%s", "--labels is required with --input");
    return -1;
}

int cmd_grad_check_args(int argc, char **argv)
{
    grad_args a;
    return parse_args(argc, argv, &a);
}

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
        if (!g) continue; /* not trained (batchnorm's moving statistics) */
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

/* Whether labels y fit the loss on N examples of m (cce: N class indices;
 * mse, bce: the output's shape); else sets a message naming the shapes. */
static int labels_fit(const grad_args *a, const char *labels, nb_model *m, const nb_tensor *y, int64_t N)
{
    char s1[96], s2[96];
    const char *loss_name = cli_choice_name(cli_losses, a->loss);
    if (a->loss == NB_LOSS_CCE) {
        int64_t C = nb_value(nb_model_logits(m))->shape[1];
        if (!(y->rank >= 1 && y->shape[0] == N && y->size == N && y->rank <= 2)) {
            nb_set_error(NB_ERR_SHAPE, "%s have shape %s; cce needs %lld class indices, shape (%lld)", labels,
                         nb_shape_str(y->rank, y->shape, s1, sizeof s1), (long long)N, (long long)N);
            return 0;
        }
        if (nb_check_class_labels(labels, y->data, N, C)) return 0;
        return 1;
    }
    /* The target has the output's shape (N, outputs...). */
    const nb_tensor *o = nb_value(nb_model_output(m));
    int fits = y->rank == o->rank && y->shape[0] == N;
    for (int d = 1; fits && d < o->rank; d++) fits = y->shape[d] == o->shape[d];
    if (fits) return 1;
    int64_t want[NB_MAX_RANK];
    memcpy(want, o->shape, sizeof want);
    want[0] = N;
    nb_set_error(NB_ERR_SHAPE, "%s have shape %s; %s needs targets of the output's shape %s%s", labels,
                 nb_shape_str(y->rank, y->shape, s1, sizeof s1), loss_name, nb_shape_str(o->rank, want, s2, sizeof s2),
                 y->size == N && o->rank == 2 && o->shape[1] > 1
                     ? " (these look like class indices: use --loss cce, or one-hot targets for mse)"
                     : "");
    return 0;
}

/* The model with its loss, the examples and their labels, at batch N. */
static int load(const grad_args *a, nb_model **m, nb_node **target, nb_node **loss, nb_tensor **x, nb_tensor **y)
{
    char what[1024];
    if (cli_load_trained_model(a->model, m)) return cli_fail("grad", "loading the model");
    /* The loss (and its target) first, at the model's current batch; then the batch size. */
    if (nb_model_loss(*m, (nb_loss_kind)a->loss, target, loss)) return cli_fail("grad", "building the loss");
    if (cli_load_examples(&a->src, 100, *m, x, y, NULL, what, sizeof what)) return cli_fail("grad", "reading the input");
    char lname[1100];
    if (a->labels) snprintf(lname, sizeof lname, "labels '%s'", a->labels);
    else snprintf(lname, sizeof lname, "the labels of '%s'", a->src.data);
    if (a->labels) {
        nb_tensor_free(*y);
        if (cli_read_tensor(a->labels, y)) return cli_fail("grad", "reading the labels");
    }
    const int64_t N = (*x)->shape[0];
    if (a->labels && (a->src.start || a->src.count) && (*y)->rank >= 1 && (*y)->shape[0] > N) {
        /* the rows of the labels that go with --start/--count's inputs */
        nb_tensor *t = *y;
        int64_t sh[NB_MAX_RANK], row = t->size / t->shape[0];
        memcpy(sh, t->shape, sizeof sh);
        sh[0] = N;
        if (a->src.start + N > t->shape[0] || !(*y = nb_tensor_from(t->rank, sh, t->data + a->src.start * row))) *y = t;
        else nb_tensor_free(t);
    }
    if (nb_model_set_batch(*m, N)) return cli_fail("grad", NULL);
    if (!labels_fit(a, lname, *m, *y, N)) return cli_fail("grad", NULL);
    return 0;
}

/* The loss and the table of gradients; the gradients into st under their names. */
static int render(const grad_args *a, nb_model *m, nb_node *loss, int64_t N, nb_safetensors *st, char *lv, size_t lvn)
{
    char s1[96];
    nb_format_real(nb_value(loss)->data[0], lv, lvn); /* the digits that matter; "nan", never "-nan" */
    printf("loss (%s, mean over %lld examples): %s\n", cli_choice_name(cli_losses, a->loss), (long long)N, lv);
    printf("%-12s %-18s %12s %12s\n", "parameter", "shape", "max |grad|", "L2 norm");
    for (int i = 0; i < nb_model_param_count(m); i++) {
        nb_node *p = nb_model_param(m, i);
        const nb_tensor *g = nb_grad(p);
        if (!nb_node_requires_grad(p)) continue; /* batchnorm's moving statistics: state, not trained */
        if (!g) {
            nb_set_error(NB_ERR_ARG, "no gradient was computed for '%s'", nb_node_name(p));
            return cli_fail("grad", NULL);
        }
        double mx = 0, ss = 0;
        for (int64_t j = 0; j < g->size; j++) {
            double v = fabs((double)g->data[j]);
            if (v > mx || v != v) mx = v; /* a NaN sticks: NaN > mx is false */
            ss += v * v;
        }
        printf("%-12s %-18s %12.4g %12.4g\n", nb_node_name(p), nb_shape_str(g->rank, g->shape, s1, sizeof s1), mx,
               sqrt(ss));
        if (nb_safetensors_add(st, nb_node_name(p), g)) return cli_fail("grad", NULL);
    }
    return 0;
}

int cmd_grad(int argc, char **argv)
{
    grad_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;
    if (!cli_check_output("grad", "-o", a.out)) return 1;
    nb_model *m = NULL;
    nb_tensor *x = NULL, *y = NULL;
    nb_safetensors *st = NULL;
    nb_node *target = NULL, *loss = NULL;
    char lv[64];
    rc = load(&a, &m, &target, &loss, &x, &y);
    if (!rc) {
        memcpy(nb_value(nb_model_input(m))->data, x->data, (size_t)x->size * sizeof(nb_real));
        memcpy(nb_value(target)->data, y->data, (size_t)y->size * sizeof(nb_real));
        nb_graph_set_training(nb_model_graph(m), a.eval ? NB_INFERENCE : NB_TRAINING_NO_DROPOUT, 0);
        if (nb_forward(nb_model_graph(m)) || nb_backward(loss)) rc = cli_fail("grad", NULL);
        else if (!(st = nb_safetensors_new())) rc = cli_fail("grad", "out of memory");
    }
    if (!rc) rc = render(&a, m, loss, x->shape[0], st, lv, sizeof lv);
    if (!rc && (nb_safetensors_set_meta(st, "nabla.grad.loss", cli_choice_name(cli_losses, a.loss)) ||
                nb_safetensors_set_meta(st, "nabla.grad.value", lv) ||
                nb_safetensors_set_meta(st, "nabla.spec", nb_model_spec(m)) || nb_safetensors_write(a.out, st, 0)))
        rc = cli_fail("grad", "writing the gradients");
    if (!rc) {
        printf("wrote %s: %d gradients\n", a.out, nb_model_trainable_count(m));
        if (report_nonfinite(m, (nb_loss_kind)a.loss, x, y, loss)) {
            fprintf(stderr, "nabla grad: wrote %s all the same (exit status 3)\n", a.out);
            rc = CLI_EXIT_NONFINITE;
        }
    }
    nb_safetensors_free(st);
    nb_tensor_free(x);
    nb_tensor_free(y);
    nb_model_free(m);
    return rc;
}
