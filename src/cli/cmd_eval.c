/* nabla eval: a classifier's loss, accuracy, per-class accuracy and confusion
 * matrix on a data set. */
#include "cli.h"
#include "../dist/cli_dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_text =
    "usage: nabla eval --model M.safetensors --data fashion-mnist|mnist|DIR|FILE.csv [options]\n"
    "\n"
    "Evaluates a trained classifier (categorical cross-entropy on integer labels): the mean\n"
    "loss, the accuracy, the accuracy of every class and the confusion matrix (rows: the\n"
    "true class, columns: the predicted class, i.e. the argmax of the output).\n"
    "\n"
    "  --model M      a model file written by 'nabla train'\n"
    "  --data D       fashion-mnist, mnist, a directory of IDX files, or a CSV file\n"
    "  --split S      test | train (default test; a CSV file has only train)\n"
    "  --batch B      examples per forward pass (default 256)\n"
    "  --limit N      evaluate only the first N examples\n"
    "  --label-col K  CSV label column (default -1, the last)\n";



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

int cmd_eval(int argc, char **argv)
{
    const char *model = NULL, *data = NULL, *split = "test";
    long long batch = 256, limit = 0, label_col = -1;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            fputs(usage_text, stdout);
            return 0;
        }
        int known = !strcmp(k, "--model") || !strcmp(k, "--data") || !strcmp(k, "--split") || !strcmp(k, "--batch") ||
                    !strcmp(k, "--limit") || !strcmp(k, "--label-col");
        if (!known) return cli_usage_error("eval", "unknown option '%s'", k);
        if (!v) return cli_usage_error("eval", "option '%s' needs a value", k);
        i++;
        if (!strcmp(k, "--model")) model = v;
        else if (!strcmp(k, "--data")) data = v;
        else if (!strcmp(k, "--split")) split = v;
        else if (!strcmp(k, "--batch") && !cli_parse_int(v, 1, 1 << 20, &batch))
            return cli_usage_error("eval", "--batch must be an integer >= 1, got '%s'", v);
        else if (!strcmp(k, "--limit") && !cli_parse_int(v, 1, 1LL << 40, &limit))
            return cli_usage_error("eval", "--limit must be an integer >= 1, got '%s'", v);
        else if (!strcmp(k, "--label-col") && !cli_parse_int(v, -1000000, 1000000, &label_col))
            return cli_usage_error("eval", "bad value for --label-col: '%s'", v);
    }
    if (!model || !data) return cli_usage_error("eval", "%s", "--model and --data are required");
    if (strcmp(split, "test") && strcmp(split, "train"))
        return cli_usage_error("eval", "--split must be test or train, got '%s'", split);

    nb_model *m = NULL;
    nb_dataset d = {0};
    int64_t *conf = NULL;
    int rc = 1;
    if (cli_dist_start("eval")) return 1;
    if (cli_dist_rank() != 0 && !freopen("/dev/null", "w", stdout)) return cli_dist_end(1);
    if (cli_load_trained_model(model, &m)) {
        cli_fail("eval", "loading the model");
        goto done;
    }
    if (cli_load_data(data, split, (int)label_col, &d)) {
        cli_fail("eval", "loading the data");
        goto done;
    }
    if (limit && limit < d.x->shape[0]) {
        nb_dataset sub;
        if (nb_dataset_subset(&d, 0, limit, &sub)) {
            cli_fail("eval", "--limit");
            goto done;
        }
        nb_dataset_free(&d);
        d = sub;
    }
    const nb_tensor *z = nb_value(nb_model_logits(m));
    if (z->rank != 2 || z->shape[1] < 2) {
        char s[96];
        nb_set_error(NB_ERR_SHAPE, "the model's output has shape %s; eval needs a classifier with output (N, classes)",
                     nb_shape_str(z->rank, z->shape, s, sizeof s));
        cli_fail("eval", NULL);
        goto done;
    }
    int64_t C = z->shape[1];
    conf = calloc((size_t)(C * C), sizeof *conf);
    if (!conf) {
        nb_set_error(NB_ERR_NOMEM, "out of memory");
        cli_fail("eval", NULL);
        goto done;
    }
    double loss, acc;
    if (eval_shared(m, &d, batch, C, &loss, &acc, conf)) {
        cli_fail("eval", "evaluating");
        goto done;
    }
    int64_t n = d.x->shape[0];
    const char *const *names = cli_class_names(data, C);
    printf("model %s: %s\n", model, nb_model_spec(m));
    printf("data %s (%s split): %lld examples\n", data, split, (long long)n);
    printf("loss %.4f  accuracy %.4f (%lld/%lld correct)\n\n", loss, acc, (long long)(acc * (double)n + 0.5),
           (long long)n);

    /* Label column: "3 Dress" or "3". */
    int lw = digits((long long)C - 1) + (names ? 1 + 11 : 0);
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
    rc = 0;
done:
    free(conf);
    nb_dataset_free(&d);
    nb_model_free(m);
    return cli_dist_end(rc);
}
