/* nabla train: train a model on a data set, checkpointing every epoch. */
#include "cli.h"
#include "cli_args.h"
#include "../dist/cli_dist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *usage_text =
    "usage: nabla train --data fashion-mnist|mnist|DIR|FILE.csv --model SPEC|FILE [options]\n"
    "\n"
    "  --data D          fashion-mnist (Debian's dataset-fashion-mnist), mnist, a directory of\n"
    "                    IDX files, or a CSV file with a header (the label in --label-col)\n"
    "  --model M         a spec ('conv2d 32 3 relu; maxpool 2; flatten; dense 10'), a spec file,\n"
    "                    or a .safetensors model to continue training\n"
    "  --input SHAPE     input shape without the batch, e.g. 28,28,1 (default: from the data)\n"
    "  --epochs E        epochs (default 1)            --batch B     batch size (default 128)\n"
    "  --optimizer O     sgd | adam | adamw | rmsprop (default adam)\n"
    "  --lr A            learning rate (default 1e-3; 0.01 for sgd)\n"
    "  --momentum M      sgd/rmsprop momentum           --nesterov     Nesterov momentum\n"
    "  --weight-decay W  L2 (decoupled for adamw)       --clip-norm C  clip the gradient norm\n"
    "  --schedule S      constant | step | exp | cosine (per epoch; --gamma, --step-size, --min-lr)\n"
    "  --loss L          cce | mse | bce (default cce)  --label-col K  CSV label column (default -1)\n"
    "  --init I          glorot | he | he-normal | torch (default glorot, as Keras)\n"
    "  --seed S          seed of weights, shuffling and dropout (default 1)\n"
    "  --val-split F     fraction of training data held out for validation (default 0.1)\n"
    "  --limit N         use only the first N training examples\n"
    "  --threads T       compute threads (default: all cores)\n"
    "  --reproducible    the same weights for any --threads and any number of MPI processes:\n"
    "                    the batch's gradient is summed over shards of --shard examples in a\n"
    "                    fixed order (always on under mpirun -np P > 1)\n"
    "  --shard K         examples per shard (default 16; part of what fixes the bits)\n"
    "  --out FILE        model file, written atomically after every epoch (default model.safetensors)\n"
    "  --resume          continue from the checkpoint in --out (its model and optimizer state;\n"
    "                    --model is then not read; --optimizer must be the checkpoint's)\n"
    "  --no-test         skip the final test-set evaluation\n"
    "  --check-numerics  stop at the first op that produces NaN/Inf, naming it\n"
    "  --allow-nonfinite load a model (or --resume a checkpoint) whose weights hold NaN or Inf\n"
    "                    (refused otherwise), e.g. to see --check-numerics name the tensor\n"
    "  --quiet           no per-epoch output\n"
    "  --plot F.svg      draw loss and accuracy per epoch (training and validation) as SVG\n";

typedef struct {
    const char *data, *model, *input, *out, *plot, *loss_name, *optimizer, *schedule, *init;
    int epochs, resume, no_test, quiet, check_numerics, label_col, allow_nonfinite, reproducible;
    long long batch, limit, threads, seed, step_size, shard;
    double lr, momentum, weight_decay, clip_norm, val_split, gamma, min_lr;
    int nesterov;
} train_args;

typedef struct {
    const train_args *a;
    nb_model *m;
    int tty;
    double last_draw;
    int failed;
    cli_curves *curves; /* for --plot */
} train_ctx;

static int parse_args(int argc, char **argv, train_args *a)
{
    *a = (train_args){.out = "model.safetensors", .optimizer = "adam", .loss_name = "cce", .schedule = "constant",
                      .init = "glorot", .epochs = 1, .batch = 128, .seed = 1, .lr = NAN, .val_split = 0.1,
                      .label_col = -1, .gamma = 0.1, .step_size = 1};
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n;
        double d;
        if (!strcmp(k, "--lr") && v && cli_parse_double(v, &d) && !(d > 0 && isfinite(d)))
            return cli_usage_error("train", "--lr must be a positive finite number, got '%s'", v);
#define STR(name, field) if (!strcmp(k, name)) { if (!v) goto missing; a->field = v; i++; continue; }
#define NUM(name, field) if (!strcmp(k, name)) { if (!v || !cli_parse_double(v, &d)) goto bad; a->field = d; i++; continue; }
#define INT(name, field, lo, hi) if (!strcmp(k, name)) { if (!v || !cli_parse_int(v, lo, hi, &n)) goto bad; a->field = n; i++; continue; }
#define FLAG(name, field) if (!strcmp(k, name)) { a->field = 1; continue; }
        STR("--data", data) STR("--model", model) STR("--input", input) STR("--out", out)
        STR("--loss", loss_name) STR("--optimizer", optimizer) STR("--schedule", schedule) STR("--init", init) STR("--plot", plot)
        INT("--epochs", epochs, 1, 1000000) INT("--batch", batch, 1, 1 << 20) INT("--limit", limit, 1, 1LL << 40)
        INT("--threads", threads, 1, 1024) INT("--seed", seed, 0, 1LL << 62) INT("--step-size", step_size, 1, 1 << 30)
        INT("--label-col", label_col, -1000000, 1000000) INT("--shard", shard, 1, 1 << 20)
        NUM("--lr", lr) NUM("--momentum", momentum) NUM("--weight-decay", weight_decay) NUM("--clip-norm", clip_norm)
        NUM("--val-split", val_split) NUM("--gamma", gamma) NUM("--min-lr", min_lr)
        FLAG("--resume", resume) FLAG("--no-test", no_test) FLAG("--quiet", quiet) FLAG("--nesterov", nesterov)
        FLAG("--check-numerics", check_numerics) FLAG("--allow-nonfinite", allow_nonfinite)
        FLAG("--reproducible", reproducible)
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            fputs(usage_text, stdout);
            return 0;
        }
        return cli_usage_error("train", "unknown option '%s'", k);
    missing:
        return cli_usage_error("train", "option '%s' needs a value", k);
    bad:
        if (!strcmp(k, "--batch") && v && !strcmp(v, "0"))
            return cli_usage_error("train", "--batch must be at least 1, got '%s'", v);
        return cli_usage_error("train", "bad value for %s", k);
    }
    if (!a->data || !a->model) return cli_usage_error("train", "%s", "--data and --model are required");
    if (!(a->val_split >= 0 && a->val_split < 1)) return cli_usage_error("train", "%s", "--val-split must be in [0, 1)");
    return -1;
}

static int parse_optim(const train_args *a, nb_optim_opts *o)
{
    memset(o, 0, sizeof *o);
    const char *names[] = {"sgd", "adam", "adamw", "rmsprop"};
    int k = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(a->optimizer, names[i])) k = i;
    if (k < 0) return cli_usage_error("train", "unknown optimizer '%s' (sgd, adam, adamw, rmsprop)", a->optimizer);
    o->kind = (nb_optimizer)k;
    o->lr = isnan(a->lr) ? (k == NB_OPT_SGD ? 0.01 : 1e-3) : a->lr;
    o->momentum = a->momentum, o->nesterov = a->nesterov, o->clip_norm = a->clip_norm;
    o->weight_decay = a->weight_decay;
    if (k == NB_OPT_ADAMW && a->weight_decay == 0) o->weight_decay = -1; /* PyTorch's default 0.01 */
    const char *sn[] = {"constant", "step", "exp", "cosine"};
    int sk = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(a->schedule, sn[i])) sk = i;
    if (sk < 0) return cli_usage_error("train", "unknown schedule '%s' (constant, step, exp, cosine)", a->schedule);
    o->schedule = (nb_schedule)sk;
    o->gamma = a->gamma, o->step_size = (int)a->step_size, o->total_epochs = a->epochs, o->min_lr = a->min_lr;
    return -1;
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
            c->a->epochs, bar, (long long)s->batches_done, (long long)s->batches_total, s->loss, s->accuracy,
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
        printf("epoch %d/%d: loss %.4f acc %.4f", s->epoch + 1, c->a->epochs, s->loss, s->accuracy);
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

/* Everything cmd_train checks before touching a file: -1 if the arguments
 * are valid, else the exit code (0 after --help, 2 after a usage error). */
static int check_args(int argc, char **argv, train_args *a, nb_optim_opts *oo, nb_loss_kind *loss_out,
                      nb_init *init_out)
{
    int r = parse_args(argc, argv, a);
    if (r >= 0) return r;
    if ((r = parse_optim(a, oo)) >= 0) return r;
    nb_loss_kind loss = !strcmp(a->loss_name, "cce") ? NB_LOSS_CCE : !strcmp(a->loss_name, "mse") ? NB_LOSS_MSE
                        : !strcmp(a->loss_name, "bce") ? NB_LOSS_BCE : (nb_loss_kind)-1;
    if ((int)loss < 0) return cli_usage_error("train", "unknown loss '%s' (cce, mse, bce)", a->loss_name);
    nb_init init = !strcmp(a->init, "glorot") ? NB_INIT_GLOROT_UNIFORM : !strcmp(a->init, "he") ? NB_INIT_HE_UNIFORM
                   : !strcmp(a->init, "he-normal") ? NB_INIT_HE_NORMAL : !strcmp(a->init, "torch") ? NB_INIT_TORCH_DEFAULT
                   : (nb_init)-1;
    if ((int)init < 0) return cli_usage_error("train", "unknown init '%s' (glorot, he, he-normal, torch)", a->init);
    *loss_out = loss;
    *init_out = init;
    return -1;
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

int cmd_train_check_args(int argc, char **argv)
{
    train_args a;
    nb_optim_opts oo;
    nb_loss_kind loss;
    nb_init init;
    return check_args(argc, argv, &a, &oo, &loss, &init);
}

int cmd_train(int argc, char **argv)
{
    train_args a;
    nb_optim_opts oo;
    nb_loss_kind loss;
    nb_init init;
    int r = check_args(argc, argv, &a, &oo, &loss, &init);
    if (r >= 0) return r;
    if (!cli_check_output("train", "--out", a.out) || (a.plot && !cli_check_output("train", "--plot", a.plot)))
        return 1;
    if (a.threads) nb_set_num_threads((int)a.threads);
    if (cli_dist_start("train")) return 1;
    /* One rank prints and writes (checkpoints, --plot); all train. */
    const int root = cli_dist_rank() == 0;
    if (!root && !freopen("/dev/null", "w", stdout)) return cli_dist_end(1);

    nb_dataset train = {0}, val = {0}, test = {0};
    nb_model *m = NULL;
    nb_optim *o = NULL;
    nb_safetensors *ckpt = NULL;
    cli_curves curves = {0};
    int rc = 1;
    if (cli_load_data(a.data, "train", a.label_col, &train)) {
        cli_fail("train", "loading the training data");
        goto done;
    }
    if (a.limit && a.limit < train.x->shape[0]) {
        nb_dataset sub;
        if (nb_dataset_subset(&train, 0, a.limit, &sub)) goto fail;
        nb_dataset_free(&train);
        train = sub;
    }
    if (nb_dataset_split(&train, a.val_split, &val)) goto fail;
    int start_epoch = 0;
    long long start_step = 0;
    if (a.resume) {
        nb_status s = nb_safetensors_read(a.out, &ckpt);
        if (!s) s = nb_model_import_flags(ckpt, a.allow_nonfinite ? NB_LOAD_ALLOW_NONFINITE : 0, &m);
        if (s) {
            cli_hint_nonfinite(s);
            cli_fail("train", "--resume: reading the checkpoint");
            goto done;
        }
        const char *e = nb_safetensors_meta(ckpt, "nabla.epoch"), *st = nb_safetensors_meta(ckpt, "nabla.step");
        long long ev = 0;
        if (!e || !st || !cli_parse_int(e, 0, 1000000, &ev) || !cli_parse_int(st, 0, 1LL << 62, &start_step)) {
            fprintf(stderr, "nabla train: --resume: '%s' has no epoch/step metadata (not a training checkpoint)\n",
                    a.out);
            goto done;
        }
        start_epoch = (int)ev;
    } else {
        if (cli_load_model_flags(a.model, a.input, &train, a.allow_nonfinite ? NB_LOAD_ALLOW_NONFINITE : 0, &m)) {
            cli_fail("train", "building the model");
            goto done;
        }
        if (!(cli_is_file(a.model) && strstr(a.model, ".safetensors")) && nb_model_init(m, init, (uint64_t)a.seed))
            goto fail;
    }
    nb_graph_set_check_numerics(nb_model_graph(m), a.check_numerics);
    if (nb_optim_new(m, &oo, &o)) {
        cli_fail("train", "optimizer");
        goto done;
    }
    if (ckpt && nb_optim_import(o, ckpt)) {
        cli_fail("train", "--resume");
        goto done;
    }
    if (dist_checks(argc, argv, m, &train, &val)) goto done;
    train_ctx ctx = {&a, m, root && isatty(2) && !getenv("NB_NO_PROGRESS"), 0, 0, &curves};
    nb_train_opts to = {.epochs = a.epochs, .batch = a.batch, .loss = loss, .seed = (uint64_t)a.seed, .shuffle = 1,
                        .start_epoch = start_epoch, .start_step = start_step, .on_batch = on_batch,
                        .on_epoch = on_epoch, .user = &ctx,
                        .reproducible = a.reproducible, .shard = a.shard, .comm = cli_dist_comm()};
    if (cli_dist_size() > 1)
        printf("%d processes x %d thread%s\n", cli_dist_size(), nb_get_num_threads(), nb_get_num_threads() > 1 ? "s" : "");
    if (!a.quiet) {
        printf("training %s on %s: %lld examples (%lld validation), %lld parameters, %s lr %g, batch %lld, %d "
               "threads\n",
               nb_model_spec(m), a.data, (long long)train.x->shape[0], (long long)(val.x ? val.x->shape[0] : 0),
               (long long)nb_model_num_params(m), nb_optimizer_name(oo.kind), oo.lr, a.batch, nb_get_num_threads());
        if (start_epoch) printf("resuming after epoch %d (step %lld)\n", start_epoch, start_step);
        fflush(stdout);
    }
    nb_status s = nb_train(m, o, &train, val.x ? &val : NULL, &to);
    if (ctx.failed) {
        cli_fail("train", "writing the checkpoint");
        goto done;
    }
    if (s) {
        if (ctx.tty) fprintf(stderr, "\n");
        cli_fail("train", NULL);
        goto done;
    }
    if (root && !a.no_test && strstr(a.data, ".csv") == NULL) {
        double tl, ta;
        if (cli_load_data(a.data, "test", a.label_col, &test) ||
            nb_evaluate(m, &test, loss, 256, &tl, &ta, NULL)) {
            cli_fail("train", "test evaluation");
            goto done;
        }
        printf("test: loss %.4f accuracy %.4f (%lld images)\n", tl, ta, (long long)test.x->shape[0]);
    }
    if (!a.quiet) printf("saved %s\n", a.out);
    if (root && a.plot) {
        if (cli_curves_svg(a.plot, &curves)) {
            cli_fail("train", "writing --plot");
            goto done;
        }
        if (!a.quiet) printf("plotted %s\n", a.plot);
    }
    rc = 0;
    goto done;
fail:
    cli_fail("train", NULL);
done:
    cli_curves_free(&curves);
    nb_safetensors_free(ckpt);
    nb_optim_free(o);
    nb_model_free(m);
    nb_dataset_free(&train);
    nb_dataset_free(&val);
    nb_dataset_free(&test);
    return cli_dist_end(rc);
}
