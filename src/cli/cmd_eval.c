/* nabla eval: a classifier's loss, accuracy, per-class accuracy and confusion
 * matrix on a data set. */
#include "cli.h"
#include "../dist/cli_dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *model, *data;
    int split;
    long long batch, limit;
    cli_csv_opts csv;
    int fold_bn;
} eval_args;

#define F(field) offsetof(eval_args, field)
static const cli_opt eval_opts[] = {
    {"--model", NULL, CLI_STR, F(model), "M", NULL, "a model file written by 'nabla train'", CLI_REQUIRED, 0, 0, NULL},
    {"--data", NULL, CLI_STR, F(data), "D", NULL, "fashion-mnist, mnist, a directory of IDX files, a CSV file, or circles|xor|spiral|gaussians",
     CLI_REQUIRED, 0, 0, NULL},
    {"--split", NULL, CLI_CHOICE, F(split), NULL, "test", "the split (a CSV file is one split: all its rows)", 0, 0, 0, cli_splits},
    {"--batch", NULL, CLI_INT, F(batch), "B", "256", "examples per forward pass", 0, 1, 1 << 20, NULL},
    {"--limit", NULL, CLI_INT, F(limit), "N", NULL, "evaluate only the first N examples", 0, 1, 1099511627776.0, NULL},
    CLI_CSV_OPTS(eval_args, csv),
    CLI_TOY_COUNT_OPT(eval_args, csv),
    {"--fold-bn", NULL, CLI_FLAG, F(fold_bn), NULL, NULL,
     "fold each batchnorm into the conv2d/dense before it (inference arithmetic; outputs equal\n"
     "within float rounding)", 0, 0, 0, NULL},
};
#undef F

static const cli_spec eval_spec = {
    "eval", "--model M.safetensors --data fashion-mnist|mnist|DIR|FILE.csv [options]",
    "Evaluates a trained classifier (categorical cross-entropy on integer labels): the mean\n"
    "loss, the accuracy, the accuracy of every class and the confusion matrix (rows: the\n"
    "true class, columns: the predicted class, i.e. the argmax of the output).\n",
    eval_opts, CLI_NOPTS(eval_opts), NULL};

static int parse_args(int argc, char **argv, eval_args *a)
{
    *a = (eval_args){0};
    int r = cli_parse(&eval_spec, argc, argv, a);
    if (r >= 0 || (r = cli_csv_check("eval", &a->csv)) >= 0) return r;
    return cli_toy_check("eval", a->data, &a->csv);
}

int cmd_eval_check_args(int argc, char **argv)
{
    eval_args a;
    return parse_args(argc, argv, &a);
}

/* "3 Dress" (with class names) or "3", into buf. */
static const char *class_label(char *buf, size_t n, int64_t c, const char *const *names)
{
    if (names) snprintf(buf, n, "%lld %s", (long long)c, names[c]);
    else snprintf(buf, n, "%lld", (long long)c);
    return buf;
}
static int digits(long long v)
{
    int d = 1;
    while (v >= 10) v /= 10, d++;
    return d;
}

/* Under mpirun each rank evaluates its contiguous share of d; the sums of
 * loss, correct predictions and confusion counts are then added over the
 * ranks (the loss's last digits may depend on the number of ranks). */
static nb_status eval_shared(nb_model *m, const nb_dataset *d, int64_t batch, int64_t C, double *loss, double *acc,
                             int64_t *conf)
{
    int64_t n = d->x->shape[0], lo, hi;
    cli_dist_range(n, &lo, &hi);
    nb_dataset part = {0};
    nb_status s = NB_OK;
    double *sums = calloc((size_t)(2 + C * C), sizeof *sums);
    if (!sums) return nb_set_error(NB_ERR_NOMEM, "out of memory");
    if (hi > lo) {
        const nb_dataset *use = d;
        if (cli_dist_size() > 1 && !(s = nb_dataset_subset(d, lo, hi - lo, &part))) use = &part;
        if (!s) s = nb_evaluate(m, use, NB_LOSS_CCE, batch, loss, acc, conf);
        sums[0] = *loss * (double)(hi - lo), sums[1] = *acc * (double)(hi - lo);
        for (int64_t i = 0; i < C * C && !s; i++) sums[2 + i] = (double)conf[i];
    }
    nb_dataset_free(&part);
    /* A rank that failed aborts the job at its exit, so the others never
     * wait for it here. */
    if (!s && cli_dist_size() > 1) {
        if (cli_dist_sum(sums, (int)(2 + C * C))) s = nb_set_error(NB_ERR_IO, "adding the ranks' results (MPI) failed");
        *loss = sums[0] / (double)n, *acc = sums[1] / (double)n;
        for (int64_t i = 0; i < C * C; i++) conf[i] = (int64_t)sums[2 + i];
    }
    free(sums);
    return s;
}

/* The loss, accuracy and confusion matrix (C x C, *conf) of m on d. */
static int evaluate(const eval_args *a, nb_model *m, const nb_dataset *d, double *loss, double *acc, int64_t **conf,
                    int64_t *classes)
{
    const nb_tensor *z = nb_value(nb_model_logits(m));
    if (z->rank != 2 || z->shape[1] < 2) {
        char s[96];
        nb_set_error(NB_ERR_SHAPE, "the model's output has shape %s; eval needs a classifier with output (N, classes)",
                     nb_shape_str(z->rank, z->shape, s, sizeof s));
        return cli_fail("eval", NULL);
    }
    const int64_t C = z->shape[1];
    *classes = C;
    *conf = calloc((size_t)(C * C), sizeof **conf);
    if (!*conf) {
        nb_set_error(NB_ERR_NOMEM, "out of memory");
        return cli_fail("eval", NULL);
    }
    if (eval_shared(m, d, a->batch, C, loss, acc, *conf)) return cli_fail("eval", "evaluating");
    return 0;
}

/* The per-class table and the confusion matrix, rows labelled "3 Dress" or "3". */
static void print_tables(const int64_t *conf, int64_t C, const char *const *names)
{
    size_t longest = 0; /* Fashion-MNIST's 11, or a CSV's class names */
    for (int64_t c = 0; names && c < C; c++) longest = strlen(names[c]) > longest ? strlen(names[c]) : longest;
    int lw = digits((long long)C - 1) + (names ? 1 + (int)(longest < 64 ? longest : 64) : 0);
    if (lw < 11) lw = 11; /* "true \\ pred" */
    char label[64];
#define LABEL(c) class_label(label, sizeof label, (c), names)
    printf("%-*s %8s %8s %9s\n", lw, "class", "examples", "correct", "accuracy");
    for (int64_t c = 0; c < C; c++) {
        int64_t tot = 0;
        for (int64_t p = 0; p < C; p++) tot += conf[c * C + p];
        if (tot) printf("%-*s %8lld %8lld %9.4f\n", lw, LABEL(c), (long long)tot, (long long)conf[c * C + c],
                        (double)conf[c * C + c] / (double)tot);
        else printf("%-*s %8lld %8lld %9s\n", lw, LABEL(c), 0LL, 0LL, "-");
    }
    int64_t mx = 0;
    for (int64_t i = 0; i < C * C; i++)
        if (conf[i] > mx) mx = conf[i];
    int cw = digits((long long)mx) > digits((long long)C - 1) ? digits((long long)mx) : digits((long long)C - 1);
    printf("\nconfusion matrix (rows: true class, columns: predicted class)\n");
    printf("%-*s", lw, "true \\ pred");
    for (int64_t p = 0; p < C; p++) printf(" %*lld", cw, (long long)p);
    printf("\n");
    for (int64_t c = 0; c < C; c++) {
        printf("%-*s", lw, LABEL(c));
        for (int64_t p = 0; p < C; p++) printf(" %*lld", cw, (long long)conf[c * C + p]);
        printf("\n");
    }
#undef LABEL
}

int cmd_eval(int argc, char **argv)
{
    eval_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;
    const char *split = cli_choice_name(cli_splits, a.split);
    nb_model *m = NULL;
    nb_dataset d = {0};
    int64_t *conf = NULL, C = 0;
    double loss = 0, acc = 0;
    if (cli_dist_start("eval")) return 1;
    if (cli_dist_rank() != 0 && !freopen("/dev/null", "w", stdout)) return cli_dist_end(1);
    cli_names names = {0};
    if (cli_load_trained_model(a.model, &m)) rc = cli_fail("eval", "loading the model");
    else if (a.fold_bn && cli_fold_bn("eval", m)) rc = cli_fail("eval", "--fold-bn");
    else if (cli_load_data_for_model(a.data, split, &a.csv, m, &d)) rc = cli_fail("eval", "loading the data");
    else if (a.limit && a.limit < d.x->shape[0] && cli_dataset_limit(&d, 0, a.limit)) rc = cli_fail("eval", "--limit");
    else if (cli_fit_rows(&d.x, m)) rc = cli_fail("eval", NULL);
    else rc = evaluate(&a, m, &d, &loss, &acc, &conf, &C);
    if (!rc) {
        int64_t n = d.x->shape[0];
        printf("model %s: %s\n", a.model, nb_model_spec(m));
        printf("data %s (%s split): %lld examples\n", a.data, split, (long long)n);
        printf("loss %.4f  accuracy %.4f (%lld/%lld correct)\n\n", loss, acc, (long long)(acc * (double)n + 0.5),
               (long long)n);
        if (cli_names_for_model(NULL, a.data, m, C, &names)) names = (cli_names){0};
        print_tables(conf, C, names.n ? names.name : NULL);
    }
    cli_names_free(&names);
    free(conf);
    nb_dataset_free(&d);
    nb_model_free(m);
    return cli_dist_end(rc);
}
