/* nabla train: train a model on a data set, checkpointing every epoch. */
#include "../dist/cli_dist.h"
#include "cli.h"
#include "cli_args.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *data, *model, *input, *out, *plot;
    int loss, optimizer, schedule, init;
    long long epochs, batch, limit, threads, seed, step_size;
    cli_csv_opts csv;
    double lr, momentum, weight_decay, clip_norm, val_split, gamma, min_lr;
    int resume, no_test, quiet, check_numerics, allow_nonfinite, nesterov, reproducible;
    long long shard;
    /* issue 14: early stopping, the best epoch's weights, diagnostics */
    long long patience;
    double min_delta;
    int monitor, keep_best, diagnose;
    long long sharpness, sharpness_batch; /* --sharpness EVERY, --sharpness-batch N */
    const char *augment_text;             /* --augment SPEC, parsed into augment */
    nb_augment augment;
} train_args;

static const cli_choice monitors[] = {
    {"val_loss", NB_MONITOR_VAL_LOSS}, {"val_accuracy", NB_MONITOR_VAL_ACCURACY}, {0, 0}};

#define F(field) offsetof(train_args, field)
static const cli_opt train_opts[] = {
    {"--data", NULL, CLI_STR, F(data), "D", NULL,
     "fashion-mnist (Debian's dataset-fashion-mnist), mnist, a directory of\n"
     "IDX files, a CSV file with a header (the label in --label-col), or a toy\n"
     "2-D data set: circles, xor, spiral, gaussians",
     CLI_REQUIRED, 0, 0, NULL},
    {"--model", NULL, CLI_STR, F(model), "M", NULL,
     "a spec ('conv2d 32 3 relu; maxpool 2; flatten; dense 10'), a spec file,\n"
     "or a .safetensors model to continue training from its weights (required\n"
     "unless --resume)",
     0, 0, 0, NULL},
    {"--input", NULL, CLI_STR, F(input), "SHAPE", NULL,
     "input shape without the batch, e.g. 28,28,1 (default: from the data)", 0, 0, 0, NULL},
    {"--epochs", NULL, CLI_INT, F(epochs), "E", "1", "epochs (with --resume: in all, those done included)", 0, 1,
     1000000, NULL},
    {"--batch", NULL, CLI_INT, F(batch), "B", "128", "batch size", 0, 1, 1 << 20, NULL},
    {"--optimizer", NULL, CLI_CHOICE, F(optimizer), NULL, "adam", "the optimiser", 0, 0, 0, cli_optimizers},
    {"--lr", NULL, CLI_REAL, F(lr), "A", NULL, "learning rate (default 1e-3; 0.01 for sgd)", CLI_GT_LO, 0, HUGE_VAL,
     NULL},
    {"--momentum", NULL, CLI_REAL, F(momentum), "M", "0", "sgd/rmsprop momentum", 0, 0, 0, NULL},
    {"--nesterov", NULL, CLI_FLAG, F(nesterov), NULL, NULL, "Nesterov momentum (sgd)", 0, 0, 0, NULL},
    {"--weight-decay", NULL, CLI_REAL, F(weight_decay), "W", NULL,
     "L2 (decoupled for adamw; default 0, 0.01 for adamw)", 0, 0, HUGE_VAL, NULL},
    {"--clip-norm", NULL, CLI_REAL, F(clip_norm), "C", "0", "clip the gradient's norm to C (0: no clipping)", 0, 0,
     HUGE_VAL, NULL},
    {"--schedule", NULL, CLI_CHOICE, F(schedule), NULL, "constant", "learning-rate schedule, per epoch", 0, 0, 0,
     cli_schedules},
    {"--gamma", NULL, CLI_REAL, F(gamma), "G", "0.1", "step/exp schedules: the factor", 0, 0, 0, NULL},
    {"--step-size", NULL, CLI_INT, F(step_size), "K", "1", "step schedule: epochs per step", 0, 1, 1 << 30, NULL},
    {"--min-lr", NULL, CLI_REAL, F(min_lr), "A", "0", "cosine schedule: the last learning rate", 0, 0, HUGE_VAL, NULL},
    {"--loss", NULL, CLI_CHOICE, F(loss), NULL, "cce", "the loss", 0, 0, 0, cli_losses},
    CLI_CSV_OPTS(train_args, csv),
    {"--init", NULL, CLI_CHOICE, F(init), NULL, "glorot", "weight initialiser (glorot as Keras)", 0, 0, 0, cli_inits},
    {"--seed", NULL, CLI_INT, F(seed), "S", "1", "seed of weights, shuffling and dropout", 0, 0, 4611686018427387904.0,
     NULL},
    {"--augment", NULL, CLI_STR, F(augment_text), "SPEC", NULL,
     "augment image inputs while training: shift=N (random shifts of up to N\n"
     "pixels each way, zero fill), flip (random left-right mirror), or both\n"
     "as shift=2,flip; drawn anew every step from the seed",
     0, 0, 0, NULL},
    {"--val-split", NULL, CLI_REAL, F(val_split), "F", "0.1",
     "fraction of training data held out for validation, in [0, 1)", 0, 0, 1, NULL},
    {"--limit", NULL, CLI_INT, F(limit), "N", NULL, "use only the first N training examples", 0, 1, 1099511627776.0,
     NULL},
    {"--threads", NULL, CLI_INT, F(threads), "T", NULL, "compute threads (default: all cores)", 0, 1, 1024, NULL},
    {"--out", NULL, CLI_STR, F(out), "FILE", "model.safetensors", "model file, written atomically after every epoch", 0,
     0, 0, NULL},
    {"--resume", NULL, CLI_FLAG, F(resume), NULL, NULL,
     "continue from the checkpoint in --out (its model and optimizer state;\n"
     "--model is then not needed; --optimizer must be the checkpoint's)",
     0, 0, 0, NULL},
    {"--no-test", NULL, CLI_FLAG, F(no_test), NULL, NULL, "skip the final test-set evaluation", 0, 0, 0, NULL},
    {"--check-numerics", NULL, CLI_FLAG, F(check_numerics), NULL, NULL,
     "stop at the first op that produces NaN/Inf, naming it", 0, 0, 0, NULL},
    {"--allow-nonfinite", NULL, CLI_FLAG, F(allow_nonfinite), NULL, NULL,
     "load a model (or --resume a checkpoint) whose weights hold NaN or Inf\n"
     "(refused otherwise), e.g. to see --check-numerics name the tensor",
     0, 0, 0, NULL},
    {"--reproducible", NULL, CLI_FLAG, F(reproducible), NULL, NULL,
     "the same weights for any --threads and any number of MPI processes: the\n"
     "batch's gradient is summed over shards of --shard examples in a fixed order\n"
     "(without it, under mpirun each process takes its share of the batch in one\n"
     "pass and MPI_Allreduce sums the gradients: faster, bits depending on P)",
     0, 0, 0, NULL},
    {"--shard", NULL, CLI_INT, F(shard), "K", NULL,
     "examples per shard with --reproducible (16 when not given; part of what\nfixes the bits)", 0, 1, 1 << 20, NULL},
    {"--quiet", NULL, CLI_FLAG, F(quiet), NULL, NULL, "no per-epoch output", 0, 0, 0, NULL},
    {"--plot", NULL, CLI_STR, F(plot), "F.svg", NULL,
     "draw loss and accuracy per epoch (training and validation) as SVG", 0, 0, 0, NULL},
    CLI_TOY_COUNT_OPT(train_args, csv),
    {"--patience", NULL, CLI_INT, F(patience), "N", NULL,
     "stop when --monitor has not improved for N epochs (Keras's EarlyStopping;\n"
     "needs --val-split > 0)",
     0, 1, 1000000, NULL},
    {"--monitor", NULL, CLI_CHOICE, F(monitor), NULL, "val_loss", "what --patience and --keep-best watch", 0, 0, 0,
     monitors},
    {"--min-delta", NULL, CLI_REAL, F(min_delta), "D", "0", "the smallest change that counts as an improvement", 0, 0,
     HUGE_VAL, NULL},
    {"--keep-best", NULL, CLI_FLAG, F(keep_best), NULL, NULL,
     "at the end, --out holds the weights of the epoch with the best --monitor\n"
     "(also when training did not stop early), and the test split is evaluated on them",
     0, 0, 0, NULL},
    {"--diagnose", NULL, CLI_FLAG, F(diagnose), NULL, NULL,
     "after every epoch, per layer: gradient norm, update/weight ratio, dead\n"
     "ReLU channels and saturated sigmoid/tanh outputs (on the epoch's last batch)",
     0, 0, 0, NULL},
    {"--sharpness", NULL, CLI_INT, F(sharpness), "EVERY", NULL,
     "every EVERY steps (and before the first), lambda_max of the loss's Hessian\n"
     "w.r.t. all parameters on a fixed batch, printed with 2/lr (below the edge:\n"
     "lambda_max < 0.9 x 2/lr, above: > 1.1 x, else at) and drawn in --plot",
     0, 1, 1LL << 40, NULL},
    {"--sharpness-batch", NULL, CLI_INT, F(sharpness_batch), "N", NULL,
     "--sharpness's fixed batch: the first N training examples, before any\n"
     "shuffling (default: --batch; at most all)",
     0, 1, 1 << 30, NULL},
};
#undef F

static const cli_spec train_spec = {"train",
                                    "--data fashion-mnist|mnist|DIR|FILE.csv --model SPEC|FILE [options]",
                                    "Trains a model by minibatch gradient descent, writing a checkpoint after every\n"
                                    "epoch, then evaluates it on the test split.\n",
                                    train_opts,
                                    CLI_NOPTS(train_opts),
                                    NULL};

typedef struct {
    const train_args *a;
    nb_model *m;
    int tty;
    double last_draw;
    int failed;
    cli_curves *curves;       /* for --plot */
    nb_early_stopping *early; /* --patience, --keep-best: NULL without */
    nb_real *best;            /* --keep-best: the best epoch's weights (NULL before one) */
    int last_epoch;           /* of the last on_epoch */
    int64_t last_step;
} train_ctx;

/* --augment SPEC: comma-separated shift=N and flip; -1 if valid, else 2. */
static int parse_augment(const char *text, nb_augment *a)
{
    *a = (nb_augment){0};
    if (!text) return -1;
    char buf[128];
    if (!*text || strlen(text) >= sizeof buf)
        return cli_usage_error("train", "--augment takes shift=N, flip or shift=N,flip (e.g. shift=2,flip), got '%s'",
                               text);
    strcpy(buf, text);
    for (char *save = NULL, *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        long long n;
        if (!strcmp(item, "flip"))
            a->flip = 1;
        else if (!strncmp(item, "shift=", 6) && cli_parse_int(item + 6, 0, 1 << 20, &n))
            a->shift = (int)n;
        else
            return cli_usage_error(
                "train", "--augment: '%s' is not shift=N (N >= 0 pixels) or flip; e.g. --augment shift=2,flip", item);
    }
    return -1;
}

/* The checks beyond the table's: -1 if the arguments are valid, else the
 * exit code (0 after --help, 2 after a usage error). */
static int parse_args(int argc, char **argv, train_args *a)
{
    *a = (train_args){.lr = NAN, .weight_decay = NAN};
    int r = cli_parse(&train_spec, argc, argv, a);
    if (r >= 0) return r;
    if (!a->model && !a->resume)
        return cli_usage_error("train", "%s", "--model is required (or --resume, to continue the checkpoint in --out)");
    if ((r = cli_csv_check("train", &a->csv)) >= 0) return r;
    if (a->val_split >= 1) return cli_usage_error("train", "%s", "--val-split must be in [0, 1)");
    if (a->sharpness_batch && !a->sharpness)
        return cli_usage_error("train", "%s", "--sharpness-batch needs --sharpness EVERY (how often to measure)");
    if (a->plot && !cli_is_svg_name(a->plot))
        return cli_usage_error("train", "--plot writes SVG: give a file name ending in .svg, got '%s'", a->plot);
    if ((r = cli_toy_check("train", a->data, &a->csv)) >= 0) return r;
    if ((a->patience || a->keep_best) && a->val_split <= 0)
        return cli_usage_error("train", "%s needs validation data to watch: pass --val-split F with F > 0 (e.g. 0.1)",
                               a->patience ? "--patience" : "--keep-best");
    if (a->diagnose && a->reproducible)
        return cli_usage_error("train", "%s", "--diagnose measures the default path: leave out --reproducible");
    if (a->shard && !a->reproducible)
        return cli_usage_error("train", "%s", "--shard K cuts the batch for --reproducible: add --reproducible "
                                              "(without it the batch is not cut into shards)");
    return parse_augment(a->augment_text, &a->augment);
}

static void optim_opts(const train_args *a, nb_optim_opts *o)
{
    memset(o, 0, sizeof *o);
    o->kind = (nb_optimizer)a->optimizer;
    o->lr = isnan(a->lr) ? (o->kind == NB_OPT_SGD ? 0.01 : 1e-3) : a->lr;
    o->momentum = a->momentum, o->nesterov = a->nesterov, o->clip_norm = a->clip_norm;
    /* adamw without --weight-decay: -1 asks for PyTorch's default 0.01 */
    o->weight_decay = !isnan(a->weight_decay) ? a->weight_decay : o->kind == NB_OPT_ADAMW ? -1 : 0;
    o->schedule = (nb_schedule)a->schedule;
    o->gamma = a->gamma, o->step_size = (int)a->step_size, o->total_epochs = (int)a->epochs, o->min_lr = a->min_lr;
}

static void fmt_eta(double s, char *buf, size_t n)
{
    if (s >= 3600)
        snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60)
        snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else
        snprintf(buf, n, "%.0fs", s);
}

static int on_batch(const nb_epoch_stats *s, void *user)
{
    train_ctx *c = user;
    if (!c->tty || c->a->quiet) return 0;
    if (s->batches_done != s->batches_total && s->seconds - c->last_draw < 0.1) return 0;
    c->last_draw = s->seconds;
    int width = 24, done = (int)(width * s->batches_done / s->batches_total);
    char bar[32], eta[32];
    for (int i = 0; i < width; i++)
        bar[i] = i < done ? '=' : i == done ? '>' : ' ';
    bar[width] = '\0';
    double left =
        s->batches_done ? s->seconds * (double)(s->batches_total - s->batches_done) / (double)s->batches_done : 0;
    fmt_eta(left, eta, sizeof eta);
    fprintf(stderr, "\repoch %d/%d [%s] %lld/%lld loss %.4f acc %.4f %.0f img/s ETA %s   ", s->epoch + 1,
            (int)c->a->epochs, bar, (long long)s->batches_done, (long long)s->batches_total, s->loss, s->accuracy,
            s->images_per_second, eta);
    fflush(stderr);
    return 0;
}

/* The parameters into (or, back from) w, in parameter order. */
static void copy_weights(nb_model *m, nb_real *w, int back)
{
    for (int i = 0; i < nb_model_param_count(m); i++) {
        nb_tensor *v = nb_value(nb_model_param(m, i));
        if (back)
            memcpy(v->data, w, (size_t)v->size * sizeof(nb_real));
        else
            memcpy(w, v->data, (size_t)v->size * sizeof(nb_real));
        w += v->size;
    }
}

/* Early stopping's state (nabla.best, nabla.best_epoch, nabla.wait) and the
 * best epoch's weights (optim.best.<param>: read as training state by
 * every nabla) in a checkpoint, so --resume continues both. */
static nb_status save_early(const train_ctx *c, nb_safetensors *st)
{
    const nb_early_stopping *e = c->early;
    char buf[64];
    nb_status r = NB_OK;
    snprintf(buf, sizeof buf, "%.17g", e->best);
    if (!r) r = nb_safetensors_set_meta(st, "nabla.best", buf);
    if (!r) r = nb_safetensors_set_meta(st, "nabla.monitor", cli_choice_name(monitors, c->a->monitor));
    snprintf(buf, sizeof buf, "%d", e->best_epoch);
    if (!r) r = nb_safetensors_set_meta(st, "nabla.best_epoch", buf);
    snprintf(buf, sizeof buf, "%d", e->wait);
    if (!r) r = nb_safetensors_set_meta(st, "nabla.wait", buf);
    const nb_real *w = c->best;
    for (int i = 0; w && !r && i < nb_model_param_count(c->m); i++) {
        const nb_tensor *v = nb_value(nb_model_param(c->m, i));
        nb_tensor *t = nb_tensor_from(v->rank, v->shape, w);
        char name[160];
        snprintf(name, sizeof name, "optim.best.%s", nb_node_name(nb_model_param(c->m, i)));
        r = t ? nb_safetensors_add(st, name, t) : NB_ERR_NOMEM;
        nb_tensor_free(t);
        w += v->size;
    }
    return r;
}

static nb_status save_checkpoint(train_ctx *c, nb_optim *o, const nb_epoch_stats *s)
{
    nb_safetensors *st = nb_safetensors_new();
    if (!st) return NB_ERR_NOMEM;
    char buf[64];
    nb_status r = nb_model_export(c->m, st);
    if (!r) r = nb_optim_export(o, st);
    if (!r && c->early) r = save_early(c, st);
    snprintf(buf, sizeof buf, "%d", s->epoch + 1);
    if (!r) r = nb_safetensors_set_meta(st, "nabla.epoch", buf);
    snprintf(buf, sizeof buf, "%lld", (long long)s->step);
    if (!r) r = nb_safetensors_set_meta(st, "nabla.step", buf);
    char gemm[4096]; /* the GEMM kernels so far: a resume follows them (same bits) */
    if (!r && nb_gemm_choices_spec(gemm, sizeof gemm) < sizeof gemm)
        r = nb_safetensors_set_meta(st, "nabla.gemm", gemm);
    if (!r) r = nb_safetensors_write(c->a->out, st, 0);
    nb_safetensors_free(st);
    return r;
}

static void fmt_num(char *buf, size_t n, double v, const char *fmt)
{
    if (isnan(v))
        snprintf(buf, n, "-");
    else
        snprintf(buf, n, fmt, v);
}

/* --diagnose: one row per layer with parameters or a relu/sigmoid/tanh. */
static void print_diagnostics(nb_model *m, const nb_epoch_stats *s)
{
    if (!s->diag) return;
    printf("  %-5s %-24s %9s %10s %13s %9s %9s\n", "layer", "", "params", "grad norm", "update/weight", "dead relu",
           "saturated");
    for (int i = 0; i < s->ndiag; i++) {
        const nb_layer_diag *d = &s->diag[i];
        if (!d->params && isnan(d->dead_fraction) && isnan(d->saturated_fraction)) continue;
        char line[96], g[32], u[32], dead[32], sat[32];
        nb_layer_spec_str(nb_model_layer(m, d->layer), line, sizeof line);
        fmt_num(g, sizeof g, d->grad_norm, "%.3g");
        fmt_num(u, sizeof u, d->update_ratio, "%.3g");
        fmt_num(dead, sizeof dead, 100 * d->dead_fraction, "%.1f%%");
        fmt_num(sat, sizeof sat, 100 * d->saturated_fraction, "%.1f%%");
        printf("  %-5d %-24.24s %9lld %10s %13s %9s %9s\n", d->layer, line, (long long)d->params, g, u, dead, sat);
    }
}

/* --patience / --keep-best after an epoch: the best weights kept, and why
 * training stops. 0, or 1 when the weights could not be kept. */
static int after_epoch_early(train_ctx *c, const nb_epoch_stats *s)
{
    const char *what = cli_choice_name(monitors, c->a->monitor);
    if (s->improved && c->a->keep_best) {
        if (!c->best && !(c->best = malloc((size_t)nb_model_num_params(c->m) * sizeof(nb_real) + 1))) return 1;
        copy_weights(c->m, c->best, 0);
    }
    if (s->stopping && !c->a->quiet)
        printf("early stopping: %s has not improved for %d epoch%s (best %.4f at epoch %d); stopping after epoch %d of "
               "%lld\n",
               what, c->early->wait, c->early->wait == 1 ? "" : "s", c->early->best, c->early->best_epoch + 1,
               s->epoch + 1, c->a->epochs);
    return 0;
}

static int on_epoch(const nb_epoch_stats *s, nb_optim *o, void *user)
{
    train_ctx *c = user;
    if (c->a->plot && cli_curves_add(c->curves, s)) {
        nb_set_error(NB_ERR_NOMEM, "--plot: out of memory");
        c->failed = 1;
        return 1;
    }
    if (!c->a->quiet) {
        if (c->tty) fprintf(stderr, "\r%*s\r", 110, "");
        printf("epoch %d/%d: loss %.4f acc %.4f", s->epoch + 1, (int)c->a->epochs, s->loss, s->accuracy);
        if (!isnan(s->val_loss)) printf(" | val_loss %.4f val_acc %.4f", s->val_loss, s->val_accuracy);
        printf(" | %.1f s, %.0f img/s, lr %.3g%s\n", s->seconds, s->images_per_second, s->lr,
               c->early && s->improved ? " (best)" : "");
        print_diagnostics(c->m, s);
        if (cli_dist_size() > 1 && s->batches_done > 0)
            printf("  gradient exchange (rank 0): %.2f s, %.1f%% of the epoch, %.2f MB sent per step\n",
                   s->comm_seconds, 100 * s->comm_seconds / (s->seconds > 0 ? s->seconds : 1),
                   1e-6 * (double)s->comm_bytes / (double)s->batches_done);
        fflush(stdout);
    }
    c->last_epoch = s->epoch, c->last_step = s->step;
    if (c->early && after_epoch_early(c, s)) {
        nb_set_error(NB_ERR_NOMEM, "--keep-best: out of memory");
        c->failed = 1;
        return 1;
    }
    if (cli_dist_rank() == 0 && save_checkpoint(c, o, s)) {
        c->failed = 1;
        return 1;
    }
    return 0;
}

/* "below" / "at" / "above" the edge of stability 2 / lr (within 10%: at). */
static const char *edge_verdict(double lambda_max, double lr)
{
    const double ratio = lambda_max * lr / 2;
    return isnan(ratio) ? "unknown" : ratio < 0.9 ? "below" : ratio > 1.1 ? "above" : "at";
}

static int on_sharpness(const nb_sharpness *s, void *user)
{
    train_ctx *c = user;
    if (c->a->plot && cli_curves_add_sharpness(c->curves, s)) {
        nb_set_error(NB_ERR_NOMEM, "--plot: out of memory");
        c->failed = 1;
        return 1;
    }
    if (c->a->quiet) return 0;
    if (c->tty) fprintf(stderr, "\r%*s\r", 110, "");
    printf("sharpness at step %lld: lambda_max %.6g, 2/lr %.6g: %s the edge (lambda_max = %.3g x 2/lr); loss %.4f on "
           "%lld examples, %lld HVPs%s\n",
           (long long)s->step, s->lambda_max, 2 / s->lr, edge_verdict(s->lambda_max, s->lr), s->lambda_max * s->lr / 2,
           s->loss, (long long)s->batch, (long long)s->products, s->converged ? "" : " (not converged)");
    fflush(stdout);
    return 0;
}

int cmd_train_check_args(int argc, char **argv)
{
    train_args a;
    return parse_args(argc, argv, &a);
}

/* The training data (--limit applied) and the validation part split off. */
static int load_train_data(const train_args *a, nb_dataset *train, nb_dataset *val, char **classes)
{
    if (cli_load_data_classes(a->data, "train", &a->csv, train, classes))
        return cli_fail("train", "loading the training data");
    if (a->limit && a->limit < train->x->shape[0]) {
        nb_dataset sub;
        if (nb_dataset_subset(train, 0, a->limit, &sub)) return cli_fail("train", "--limit");
        nb_dataset_free(train);
        *train = sub;
    }
    if (a->input && cli_reshape_rows(&train->x, a->input)) return cli_fail("train", "--input");
    if (nb_dataset_split(train, a->val_split, val)) return cli_fail("train", "--val-split");
    return 0;
}

/* The number of names in a '\n'-joined list. */
static int64_t count_names(const char *list)
{
    int64_t n = 1;
    for (; *list; list++)
        n += *list == '\n';
    return n;
}

/* The index of the name p..p+len in the '\n'-joined list, or -1. */
static int64_t name_index(const char *list, const char *p, size_t len)
{
    for (int64_t i = 0; list; i++) {
        const size_t n = strcspn(list, "\n");
        if (n == len && !memcmp(list, p, len)) return i;
        list = list[n] ? list + n + 1 : NULL;
    }
    return -1;
}

/* A '\n'-joined list as "a, b, c" (shortened to cap). */
static const char *names_shown(const char *list, char *buf, size_t cap)
{
    size_t u = 0;
    for (const char *p = list; *p && u + 3 < cap; p++) {
        if (*p == '\n')
            buf[u++] = ',', buf[u++] = ' ';
        else
            buf[u++] = *p;
    }
    buf[u] = '\0';
    return buf;
}

/* The labels of d (indices into the data's names, '\n'-joined) through
 * to[] (-1: a name the model does not have, refused). */
static nb_status renumber_labels(const char *data, const char *known, const char *names, const int64_t *to, int64_t n,
                                 nb_dataset *d)
{
    for (int64_t i = 0; d->y && i < d->y->size; i++) {
        const int64_t k = (int64_t)d->y->data[i];
        if (k < 0 || k >= n) continue; /* no name: the class-label check of nb_train names it */
        if (to[k] >= 0) {
            d->y->data[i] = (nb_real)to[k];
            continue;
        }
        const char *p = names;
        for (int64_t j = 0; j < k; j++)
            p += strcspn(p, "\n") + 1;
        char shown[256], label[132];
        return nb_set_error(NB_ERR_ARG,
                            "'%s': label '%s' is not one of the model's %lld classes (%s: the model file names "
                            "them); train a new model (--model SPEC) for other classes",
                            data, nb_escape_text(label, sizeof label, p, strcspn(p, "\n")),
                            (long long)count_names(known), names_shown(known, shown, sizeof shown));
    }
    return NB_OK;
}

/* Training on from a model file that names its classes (--resume, --model
 * M.safetensors): the data's names, numbered in their own sorted order
 * (classes), are renumbered as the model's, which it keeps (else a file
 * with some of the classes would shift them). A model without names takes
 * the data's. 0 or 1 (said). */
static int follow_model_classes(const train_args *a, nb_model *m, const char *classes, nb_dataset *train,
                                nb_dataset *val)
{
    const char *known = nb_model_class_names(m);
    if (!classes) return 0;
    if (!known) return nb_model_set_class_names(m, classes) ? cli_fail("train", "the class names") : 0;
    const int64_t n = count_names(classes);
    int64_t *to = malloc((size_t)n * sizeof *to);
    if (!to) return nb_set_error(NB_ERR_NOMEM, "out of memory"), cli_fail("train", NULL);
    const char *p = classes;
    for (int64_t i = 0; i < n; i++) {
        const size_t len = strcspn(p, "\n");
        to[i] = name_index(known, p, len);
        p += len + (p[len] == '\n');
    }
    nb_status s = renumber_labels(a->data, known, classes, to, n, train);
    if (!s) s = renumber_labels(a->data, known, classes, to, n, val);
    free(to);
    if (s) return cli_fail("train", NULL);
    fprintf(stderr, "nabla train: '%s': the labels are numbered as the model's %lld classes (from its file)\n", a->data,
            (long long)count_names(known));
    return 0;
}

/* --resume under NB_GEMM=auto (or unset): the GEMM kernels of the run that
 * wrote the checkpoint, so that the resumed epochs give its bits. */
static void follow_gemm(const nb_safetensors *ckpt, int quiet)
{
    const char *gemm = nb_safetensors_meta(ckpt, "nabla.gemm");
    if (!gemm) return; /* a checkpoint of an older nabla: this process measures */
    if (nb_gemm_follow(gemm) < 0 && !quiet)
        fprintf(stderr,
                "nabla train: --resume: %s; measuring here instead (the last bits may differ from an "
                "uninterrupted run)\n",
                nb_last_error());
}

/* --resume: the model and the epochs and steps done, from the checkpoint. */
static int resume_model(const train_args *a, nb_safetensors **ckpt, nb_model **m, int *start_epoch,
                        long long *start_step)
{
    nb_status s = nb_safetensors_read(a->out, ckpt);
    if (!s) s = nb_model_import_flags(*ckpt, a->allow_nonfinite ? NB_LOAD_ALLOW_NONFINITE : 0, m);
    if (s) {
        cli_hint_nonfinite(s);
        return cli_fail("train", "--resume: reading the checkpoint");
    }
    const char *e = nb_safetensors_meta(*ckpt, "nabla.epoch"), *st = nb_safetensors_meta(*ckpt, "nabla.step");
    long long ev = 0;
    if (!e || !st || !cli_parse_int(e, 0, 1000000, &ev) || !cli_parse_int(st, 0, 1LL << 62, start_step)) {
        fprintf(stderr, "nabla train: --resume: '%s' has no epoch/step metadata (not a training checkpoint)\n", a->out);
        return 1;
    }
    *start_epoch = (int)ev;
    follow_gemm(*ckpt, a->quiet);
    return 0;
}

/* A new model from --model (initialised), or a model file's weights. */
static int build_model(const train_args *a, const nb_dataset *train, nb_model **m)
{
    if (cli_load_model_flags(a->model, a->input, train, a->allow_nonfinite ? NB_LOAD_ALLOW_NONFINITE : 0, m))
        return cli_fail("train", "building the model");
    if (cli_is_file(a->model) && strstr(a->model, ".safetensors")) {
        if (!a->quiet) printf("continuing from the weights in %s (a new optimizer state)\n", a->model);
        return 0;
    }
    if (nb_model_init(*m, (nb_init)a->init, (uint64_t)a->seed)) return cli_fail("train", NULL);
    return 0;
}

static void print_header(const train_args *a, const nb_model *m, const nb_optim_opts *oo, const nb_dataset *train,
                         const nb_dataset *val, int start_epoch, long long start_step)
{
    if (cli_dist_size() > 1)
        printf("%d processes x %d thread%s, %s\n", cli_dist_size(), nb_get_num_threads(),
               nb_get_num_threads() > 1 ? "s" : "",
               a->reproducible ? "reproducible" : "allreduce (bits depend on P; --reproducible: the same on any P)");
    if (a->quiet) return;
    printf("training %s on %s: %lld examples (%lld validation), %lld parameters, %s lr %g, batch %lld, %d threads\n",
           nb_model_spec(m), a->data, (long long)train->x->shape[0], (long long)(val->x ? val->x->shape[0] : 0),
           (long long)nb_model_num_params(m), nb_optimizer_name(oo->kind), oo->lr, a->batch, nb_get_num_threads());
    const nb_augment *au = &a->augment;
    if (au->shift)
        printf("augmenting: each training image shifted anew every step by up to %d pixels each way (zero fill)%s\n",
               au->shift, au->flip ? " and mirrored left-right with probability 1/2" : "");
    else if (au->flip)
        printf("augmenting: each training image mirrored left-right with probability 1/2, anew every step\n");
    if (start_epoch) printf("resuming after epoch %d (step %lld)\n", start_epoch, start_step);
    fflush(stdout);
}

/* Under mpirun: every rank must train the same thing, so start-up compares
 * the options (all but --threads), the model, the data and the initial
 * weights, and names the first that differs. 0 if they agree. */
static int dist_checks(int argc, char **argv, nb_model *m, const nb_dataset *train, const nb_dataset *val)
{
    if (cli_dist_size() == 1) return 0;
    char opts[1024] = "";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads")) {
            i++;
            continue;
        }
        strncat(opts, argv[i], sizeof opts - strlen(opts) - 2);
        strncat(opts, " ", sizeof opts - strlen(opts) - 1);
    }
    const char *same_cmd = "start every rank with the same command line (only --threads may differ)";
    if (cli_dist_same_text("train", "options", opts, same_cmd)) return 1;
    if (cli_dist_same_text("train", "the model spec", nb_model_spec(m), same_cmd)) return 1;
    uint64_t h = 0xcbf29ce484222325ull;
    const nb_dataset *sets[2] = {train, val};
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 2 && sets[k]->x; j++) {
            const nb_tensor *t = j ? sets[k]->y : sets[k]->x;
            h = cli_dist_hash(t->shape, sizeof(int64_t) * (size_t)t->rank, h);
            h = cli_dist_hash(t->data, sizeof(nb_real) * (size_t)t->size, h);
        }
    if (cli_dist_same("train", "the training data", &h, sizeof h,
                      "give every rank the same --data files (a shared or copied directory) and --limit"))
        return 1;
    h = 0xcbf29ce484222325ull;
    for (int i = 0; i < nb_model_param_count(m); i++) {
        const nb_tensor *v = nb_value(nb_model_param(m, i));
        h = cli_dist_hash(v->data, sizeof(nb_real) * (size_t)v->size, h);
    }
    return cli_dist_same("train", "the initial weights", &h, sizeof h,
                         "the --model or --resume files differ between the ranks' machines; copy the same file");
}

/* --resume with --patience/--keep-best: early stopping's state and the best
 * weights from the checkpoint (absent in one made without them: a fresh
 * start). 0 or a failure. */
static nb_status resume_early(const train_args *a, nb_model *m, const nb_safetensors *ckpt, nb_early_stopping *e,
                              nb_real **best)
{
    const char *b = ckpt ? nb_safetensors_meta(ckpt, "nabla.best") : NULL;
    const char *be = ckpt ? nb_safetensors_meta(ckpt, "nabla.best_epoch") : NULL;
    const char *w = ckpt ? nb_safetensors_meta(ckpt, "nabla.wait") : NULL;
    const char *mon = ckpt ? nb_safetensors_meta(ckpt, "nabla.monitor") : NULL;
    long long bev = 0, wv = 0;
    if (!b || !be || !w) return NB_OK;
    if (mon && strcmp(mon, cli_choice_name(monitors, a->monitor))) {
        if (!a->quiet)
            printf("the checkpoint watched %s, this run --monitor %s: the best epoch is sought afresh\n", mon,
                   cli_choice_name(monitors, a->monitor));
        return NB_OK;
    }
    if (!cli_parse_double(b, &e->best) || !cli_parse_int(be, -1, 1000000, &bev) || !cli_parse_int(w, 0, 1000000, &wv))
        return nb_set_error(NB_ERR_FORMAT,
                            "the checkpoint's early-stopping state (nabla.best %s, nabla.best_epoch %s, "
                            "nabla.wait %s) is not numbers",
                            b, be, w);
    e->best_epoch = (int)bev, e->wait = (int)wv;
    if (!a->keep_best) return NB_OK;
    nb_real *buf = malloc((size_t)nb_model_num_params(m) * sizeof(nb_real) + 1), *p = buf;
    if (!buf) return nb_set_error(NB_ERR_NOMEM, "out of memory");
    for (int i = 0; i < nb_model_param_count(m); i++) {
        char name[160];
        snprintf(name, sizeof name, "optim.best.%s", nb_node_name(nb_model_param(m, i)));
        const nb_tensor *t = nb_safetensors_get(ckpt, name), *v = nb_value(nb_model_param(m, i));
        if (!t || t->size != v->size) {
            free(buf);
            return NB_OK; /* made without --keep-best: the best is found anew */
        }
        memcpy(p, t->data, (size_t)v->size * sizeof(nb_real));
        p += v->size;
    }
    *best = buf;
    return NB_OK;
}

/* --keep-best at the end: the best epoch's weights into the model (so the
 * test split is evaluated on them) and into --out, said on stdout. */
static void keep_best_weights(train_ctx *c, nb_optim *o)
{
    const nb_early_stopping *e = c->early;
    if (!c->best || e->best_epoch < 0) {
        if (!c->a->quiet && e->best_epoch < 0)
            printf("--keep-best: no epoch had a finite %s; --out holds the last epoch's weights\n",
                   cli_choice_name(monitors, c->a->monitor));
        else if (!c->a->quiet)
            printf("--keep-best: the best epoch (%d) was before the checkpoint kept weights (it was made without "
                   "--keep-best); --out holds the last epoch's weights\n",
                   e->best_epoch + 1);
        return;
    }
    copy_weights(c->m, c->best, 1);
    nb_epoch_stats last = {.epoch = c->last_epoch, .step = c->last_step};
    if (c->last_epoch >= 0 && cli_dist_rank() == 0 && save_checkpoint(c, o, &last)) c->failed = 1;
    if (!c->a->quiet)
        printf("kept the best weights: epoch %d (%s %.4f); the last epoch run was %d\n", e->best_epoch + 1,
               cli_choice_name(monitors, c->a->monitor), e->best, c->last_epoch + 1);
}

/* The optimiser (with the checkpoint's state) and the epochs themselves. */
static int run_epochs(const train_args *a, nb_model *m, const nb_safetensors *ckpt, const nb_dataset *train,
                      const nb_dataset *val, int start_epoch, long long start_step, cli_curves *curves, int argc,
                      char **argv)
{
    nb_optim_opts oo;
    nb_optim *o = NULL;
    optim_opts(a, &oo);
    nb_graph_set_check_numerics(nb_model_graph(m), a->check_numerics);
    if (nb_optim_new(m, &oo, &o)) return cli_fail("train", "optimizer");
    if (ckpt && nb_optim_import(o, ckpt)) {
        nb_optim_free(o);
        return cli_fail("train", "--resume");
    }
    if (dist_checks(argc, argv, m, train, val)) {
        nb_optim_free(o);
        return 1;
    }
    train_ctx ctx = {a,  m, cli_dist_rank() == 0 && isatty(2) && !getenv("NB_NO_PROGRESS"), 0, 0, curves, NULL, NULL,
                     -1, 0};
    nb_early_stopping es = {.patience = a->patience ? (int)a->patience : INT_MAX,
                            .monitor = (nb_monitor)a->monitor,
                            .min_delta = a->min_delta,
                            .best = NAN,
                            .best_epoch = -1};
    if ((a->patience || a->keep_best) && resume_early(a, m, ckpt, &es, &ctx.best)) {
        nb_optim_free(o);
        return cli_fail("train", "--resume");
    }
    ctx.early = a->patience || a->keep_best ? &es : NULL;
    nb_train_opts to = {.epochs = (int)a->epochs,
                        .batch = a->batch,
                        .loss = (nb_loss_kind)a->loss,
                        .seed = (uint64_t)a->seed,
                        .shuffle = 1,
                        .start_epoch = start_epoch,
                        .start_step = start_step,
                        .on_batch = on_batch,
                        .on_epoch = on_epoch,
                        .user = &ctx,
                        .reproducible = a->reproducible,
                        .shard = a->shard,
                        .comm = cli_dist_comm(),
                        .early = ctx.early,
                        .diagnose = a->diagnose,
                        .sharpness_every = a->sharpness,
                        .sharpness_batch = a->sharpness_batch,
                        .sharpness_eigs = {.k = 1, .seed = (uint64_t)a->seed},
                        .on_sharpness = a->sharpness ? on_sharpness : NULL,
                        .augment = a->augment};
    print_header(a, m, &oo, train, val, start_epoch, start_step);
    nb_status s = nb_train(m, o, train, val->x ? val : NULL, &to);
    if (!s && !ctx.failed && a->keep_best) keep_best_weights(&ctx, o);
    nb_optim_free(o);
    free(ctx.best);
    if (ctx.failed) return cli_fail("train", "writing the checkpoint");
    if (s) {
        if (ctx.tty) fprintf(stderr, "\n");
        return cli_fail("train", NULL);
    }
    return 0;
}

/* After training: the test split's loss and accuracy, and --plot. */
static int finish(const train_args *a, nb_model *m, const cli_curves *curves)
{
    if (cli_dist_rank() != 0) return 0; /* one rank evaluates and plots */
    if (!a->no_test && strstr(a->data, ".csv") == NULL) {
        nb_dataset test = {0};
        double tl, ta;
        if (cli_load_data(a->data, "test", &a->csv, &test) ||
            nb_evaluate(m, &test, (nb_loss_kind)a->loss, 256, &tl, &ta, NULL)) {
            nb_dataset_free(&test);
            return cli_fail("train", "test evaluation");
        }
        printf("test: loss %.4f accuracy %.4f (%lld images)\n", tl, ta, (long long)test.x->shape[0]);
        nb_dataset_free(&test);
    }
    if (!a->quiet) printf("saved %s\n", a->out);
    if (a->plot) {
        if (cli_curves_svg(a->plot, curves)) return cli_fail("train", "writing --plot");
        if (!a->quiet) printf("plotted %s\n", a->plot);
    }
    return 0;
}

int cmd_train(int argc, char **argv)
{
    train_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;
    if (!cli_check_output("train", "--out", a.out) || (a.plot && !cli_check_output("train", "--plot", a.plot)))
        return 1;
    if (a.threads) nb_set_num_threads((int)a.threads);
    if (cli_dist_start("train")) return 1;
    /* One rank prints and writes (checkpoints, --plot); all train. */
    if (cli_dist_rank() != 0 && !freopen("/dev/null", "w", stdout)) return cli_dist_end(1);
    nb_dataset train = {0}, val = {0};
    nb_model *m = NULL;
    nb_safetensors *ckpt = NULL;
    cli_curves curves = {0};
    int start_epoch = 0;
    long long start_step = 0;
    char *classes = NULL; /* a CSV's string labels: kept in the model file */
    rc = load_train_data(&a, &train, &val, &classes);
    if (!rc) rc = a.resume ? resume_model(&a, &ckpt, &m, &start_epoch, &start_step) : build_model(&a, &train, &m);
    if (!rc) rc = follow_model_classes(&a, m, classes, &train, &val);
    free(classes);
    /* CSV rows for a model of images (from a file, or --resume) */
    if (!rc && (cli_fit_rows(&train.x, m) || (val.x && cli_fit_rows(&val.x, m)))) rc = cli_fail("train", NULL);
    if (!rc && a.resume && start_epoch >= a.epochs) {
        printf("nothing to train: the checkpoint '%s' already holds %d epoch%s and --epochs is %lld (--epochs counts "
               "all epochs, those done included: pass --epochs %d or more to continue)\n",
               a.out, start_epoch, start_epoch == 1 ? "" : "s", a.epochs, start_epoch + 1);
    } else if (!rc) {
        rc = run_epochs(&a, m, ckpt, &train, &val, start_epoch, start_step, &curves, argc, argv);
        if (!rc) rc = finish(&a, m, &curves);
    }
    cli_curves_free(&curves);
    nb_safetensors_free(ckpt);
    nb_model_free(m);
    nb_dataset_free(&train);
    nb_dataset_free(&val);
    return cli_dist_end(rc);
}
