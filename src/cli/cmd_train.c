/* nabla train: train a model on a data set, checkpointing every epoch. */
#include "cli.h"
#include "cli_args.h"
#include "../dist/cli_dist.h"

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
} train_args;

#define F(field) offsetof(train_args, field)
static const cli_opt train_opts[] = {
    {"--data", NULL, CLI_STR, F(data), "D", NULL,
     "fashion-mnist (Debian's dataset-fashion-mnist), mnist, a directory of\n"
     "IDX files, or a CSV file with a header (the label in --label-col)", CLI_REQUIRED, 0, 0, NULL},
    {"--model", NULL, CLI_STR, F(model), "M", NULL,
     "a spec ('conv2d 32 3 relu; maxpool 2; flatten; dense 10'), a spec file,\n"
     "or a .safetensors model to continue training from its weights (required\n"
     "unless --resume)", 0, 0, 0, NULL},
    {"--input", NULL, CLI_STR, F(input), "SHAPE", NULL, "input shape without the batch, e.g. 28,28,1 (default: from the data)",
     0, 0, 0, NULL},
    {"--epochs", NULL, CLI_INT, F(epochs), "E", "1", "epochs (with --resume: in all, those done included)", 0, 1, 1000000,
     NULL},
    {"--batch", NULL, CLI_INT, F(batch), "B", "128", "batch size", 0, 1, 1 << 20, NULL},
    {"--optimizer", NULL, CLI_CHOICE, F(optimizer), NULL, "adam", "the optimiser", 0, 0, 0, cli_optimizers},
    {"--lr", NULL, CLI_REAL, F(lr), "A", NULL, "learning rate (default 1e-3; 0.01 for sgd)", CLI_GT_LO, 0, HUGE_VAL, NULL},
    {"--momentum", NULL, CLI_REAL, F(momentum), "M", "0", "sgd/rmsprop momentum", 0, 0, 0, NULL},
    {"--nesterov", NULL, CLI_FLAG, F(nesterov), NULL, NULL, "Nesterov momentum (sgd)", 0, 0, 0, NULL},
    {"--weight-decay", NULL, CLI_REAL, F(weight_decay), "W", NULL, "L2 (decoupled for adamw; default 0, 0.01 for adamw)", 0,
     0, HUGE_VAL, NULL},
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
    {"--val-split", NULL, CLI_REAL, F(val_split), "F", "0.1", "fraction of training data held out for validation, in [0, 1)",
     0, 0, 1, NULL},
    {"--limit", NULL, CLI_INT, F(limit), "N", NULL, "use only the first N training examples", 0, 1, 1099511627776.0, NULL},
    {"--threads", NULL, CLI_INT, F(threads), "T", NULL, "compute threads (default: all cores)", 0, 1, 1024, NULL},
    {"--out", NULL, CLI_STR, F(out), "FILE", "model.safetensors", "model file, written atomically after every epoch", 0,
     0, 0, NULL},
    {"--resume", NULL, CLI_FLAG, F(resume), NULL, NULL,
     "continue from the checkpoint in --out (its model and optimizer state;\n"
     "--model is then not needed; --optimizer must be the checkpoint's)", 0, 0, 0, NULL},
    {"--no-test", NULL, CLI_FLAG, F(no_test), NULL, NULL, "skip the final test-set evaluation", 0, 0, 0, NULL},
    {"--check-numerics", NULL, CLI_FLAG, F(check_numerics), NULL, NULL, "stop at the first op that produces NaN/Inf, naming it",
     0, 0, 0, NULL},
    {"--allow-nonfinite", NULL, CLI_FLAG, F(allow_nonfinite), NULL, NULL,
     "load a model (or --resume a checkpoint) whose weights hold NaN or Inf\n"
     "(refused otherwise), e.g. to see --check-numerics name the tensor", 0, 0, 0, NULL},
    {"--reproducible", NULL, CLI_FLAG, F(reproducible), NULL, NULL,
     "the same weights for any --threads and any number of MPI processes: the\n"
     "batch's gradient is summed over shards of --shard examples in a fixed order\n"
     "(always on under mpirun -np P > 1)", 0, 0, 0, NULL},
    {"--shard", NULL, CLI_INT, F(shard), "K", "16", "examples per shard (part of what fixes the bits)", 0, 1, 1 << 20,
     NULL},
    {"--quiet", NULL, CLI_FLAG, F(quiet), NULL, NULL, "no per-epoch output", 0, 0, 0, NULL},
    {"--plot", NULL, CLI_STR, F(plot), "F.svg", NULL, "draw loss and accuracy per epoch (training and validation) as SVG", 0,
     0, 0, NULL},
};
#undef F

static const cli_spec train_spec = {"train", "--data fashion-mnist|mnist|DIR|FILE.csv --model SPEC|FILE [options]",
                                    "Trains a model by minibatch gradient descent, writing a checkpoint after every\n"
                                    "epoch, then evaluates it on the test split.\n",
                                    train_opts, CLI_NOPTS(train_opts), NULL};

typedef struct {
    const train_args *a;
    nb_model *m;
    int tty;
    double last_draw;
    int failed;
    cli_curves *curves; /* for --plot */
} train_ctx;

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
    if (a->plot && !cli_is_svg_name(a->plot))
        return cli_usage_error("train", "--plot writes SVG: give a file name ending in .svg, got '%s'", a->plot);
    return -1;
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
    if (s >= 3600) snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, n, "%.0fs", s);
}

static int on_batch(const nb_epoch_stats *s, void *user)
{
    train_ctx *c = user;
    if (!c->tty || c->a->quiet) return 0;
    if (s->batches_done != s->batches_total && s->seconds - c->last_draw < 0.1) return 0;
    c->last_draw = s->seconds;
    int width = 24, done = (int)(width * s->batches_done / s->batches_total);
    char bar[32], eta[32];
    for (int i = 0; i < width; i++) bar[i] = i < done ? '=' : i == done ? '>' : ' ';
    bar[width] = '\0';
    double left = s->batches_done ? s->seconds * (double)(s->batches_total - s->batches_done) / (double)s->batches_done : 0;
    fmt_eta(left, eta, sizeof eta);
    fprintf(stderr, "\repoch %d/%d [%s] %lld/%lld loss %.4f acc %.4f %.0f img/s ETA %s   ", s->epoch + 1,
            (int)c->a->epochs, bar, (long long)s->batches_done, (long long)s->batches_total, s->loss, s->accuracy,
            s->images_per_second, eta);
    fflush(stderr);
    return 0;
}

static nb_status save_checkpoint(train_ctx *c, nb_optim *o, const nb_epoch_stats *s)
{
    nb_safetensors *st = nb_safetensors_new();
    if (!st) return NB_ERR_NOMEM;
    char buf[64];
    nb_status r = nb_model_export(c->m, st);
    if (!r) r = nb_optim_export(o, st);
    snprintf(buf, sizeof buf, "%d", s->epoch + 1);
    if (!r) r = nb_safetensors_set_meta(st, "nabla.epoch", buf);
    snprintf(buf, sizeof buf, "%lld", (long long)s->step);
    if (!r) r = nb_safetensors_set_meta(st, "nabla.step", buf);
    if (!r) r = nb_safetensors_write(c->a->out, st, 0);
    nb_safetensors_free(st);
    return r;
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
        printf(" | %.1f s, %.0f img/s, lr %.3g\n", s->seconds, s->images_per_second, s->lr);
        if (cli_dist_size() > 1 && s->batches_done > 0)
            printf("  gradient exchange (rank 0): %.2f s, %.1f%% of the epoch, %.2f MB sent per step\n",
                   s->comm_seconds, 100 * s->comm_seconds / (s->seconds > 0 ? s->seconds : 1),
                   1e-6 * (double)s->comm_bytes / (double)s->batches_done);
        fflush(stdout);
    }
    if (cli_dist_rank() == 0 && save_checkpoint(c, o, s)) {
        c->failed = 1;
        return 1;
    }
    return 0;
}

int cmd_train_check_args(int argc, char **argv)
{
    train_args a;
    return parse_args(argc, argv, &a);
}

/* The training data (--limit applied) and the validation part split off. */
static int load_train_data(const train_args *a, nb_dataset *train, nb_dataset *val)
{
    if (cli_load_data(a->data, "train", &a->csv, train)) return cli_fail("train", "loading the training data");
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
        printf("%d processes x %d thread%s\n", cli_dist_size(), nb_get_num_threads(), nb_get_num_threads() > 1 ? "s" : "");
    if (a->quiet) return;
    printf("training %s on %s: %lld examples (%lld validation), %lld parameters, %s lr %g, batch %lld, %d threads\n",
           nb_model_spec(m), a->data, (long long)train->x->shape[0], (long long)(val->x ? val->x->shape[0] : 0),
           (long long)nb_model_num_params(m), nb_optimizer_name(oo->kind), oo->lr, a->batch, nb_get_num_threads());
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
    train_ctx ctx = {a, m, cli_dist_rank() == 0 && isatty(2) && !getenv("NB_NO_PROGRESS"), 0, 0, curves};
    nb_train_opts to = {.epochs = (int)a->epochs, .batch = a->batch, .loss = (nb_loss_kind)a->loss,
                        .seed = (uint64_t)a->seed, .shuffle = 1, .start_epoch = start_epoch,
                        .start_step = start_step, .on_batch = on_batch, .on_epoch = on_epoch, .user = &ctx,
                        .reproducible = a->reproducible, .shard = a->shard, .comm = cli_dist_comm()};
    print_header(a, m, &oo, train, val, start_epoch, start_step);
    nb_status s = nb_train(m, o, train, val->x ? val : NULL, &to);
    nb_optim_free(o);
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
    rc = load_train_data(&a, &train, &val);
    if (!rc) rc = a.resume ? resume_model(&a, &ckpt, &m, &start_epoch, &start_step) : build_model(&a, &train, &m);
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
