/* Helpers shared by the CLI commands: argument parsing, data sets, models. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cli_fail(const char *cmd, const char *what)
{
    fprintf(stderr, "nabla %s: %s%s%s\n", cmd, what ? what : "", what && *nb_last_error() ? ": " : "",
            nb_last_error());
    return 1;
}

int cli_usage_error(const char *cmd, const char *fmt, const char *arg)
{
    fprintf(stderr, "nabla %s: ", cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see 'nabla %s --help')\n", cmd);
    return 2;
}

int cli_parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno) return 0;
    *out = v;
    return 1;
}

int cli_parse_int(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int cli_is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

int cli_is_svg_name(const char *path)
{
    return ends_with(path, ".svg") || ends_with(path, ".SVG");
}

int cli_check_output(const char *cmd, const char *option, const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (!is_dir(dir)) {
        fprintf(stderr, "nabla %s: %s '%s': the directory '%s' does not exist (create it first)\n", cmd, option, path,
                dir);
        return 0;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        fprintf(stderr, "nabla %s: %s '%s': the directory '%s' is not writable\n", cmd, option, path, dir);
        return 0;
    }
    return 1;
}

static const char *const fashion_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                              "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

const char *const *cli_class_names(const char *data, int64_t classes)
{
    char low[512];
    size_t i = 0;
    for (; data && data[i] && i + 1 < sizeof low; i++) low[i] = (char)tolower((unsigned char)data[i]);
    low[i] = '\0';
    return classes == 10 && strstr(low, "fashion") ? fashion_names : NULL;
}

/* The lines of text (split in place; a last empty line dropped). */
static nb_status split_lines(char *text, const char ***lines, int64_t *n)
{
    int64_t cap = 1;
    for (const char *p = text; *p; p++) cap += *p == '\n';
    *lines = malloc((size_t)cap * sizeof **lines);
    if (!*lines) return nb_set_error(NB_ERR_NOMEM, "out of memory");
    *n = 0;
    for (char *p = text; *p;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        size_t len = strlen(p);
        if (len && p[len - 1] == '\r') p[len - 1] = '\0';
        (*lines)[(*n)++] = p;
        if (!nl) break;
        p = nl + 1;
    }
    return NB_OK;
}

nb_status cli_names_load(const char *classes, const char *data, int64_t C, cli_names *out)
{
    *out = (cli_names){0};
    if (!classes) {
        const char *const *names = data ? cli_class_names(data, C) : NULL;
        if (names) out->n = C, out->name = names;
        return NB_OK;
    }
    if (!strcmp(classes, "fashion-mnist")) {
        if (C != 10) return nb_set_error(NB_ERR_ARG, "Fashion-MNIST has 10 classes, the model %lld", (long long)C);
        out->n = 10, out->name = fashion_names;
        return NB_OK;
    }
    void *buf;
    size_t len;
    if (!cli_is_file(classes)) return nb_set_error(NB_ERR_IO, "'%s': no such file (one class name per line)", classes);
    nb_status s = nb_read_file(classes, 1 << 20, &buf, &len);
    if (s) return s;
    out->text = malloc(len + 1);
    if (!out->text) {
        free(buf);
        return nb_set_error(NB_ERR_NOMEM, "out of memory");
    }
    memcpy(out->text, buf, len);
    out->text[len] = '\0';
    free(buf);
    int64_t n = 0;
    if ((s = split_lines(out->text, &out->lines, &n))) return s;
    if (n < C)
        return nb_set_error(NB_ERR_ARG, "'%s' has %lld class names (one per line), the model has %lld classes", classes,
                            (long long)n, (long long)C);
    out->n = C, out->name = out->lines;
    return NB_OK;
}

nb_status cli_names_for_model(const char *classes, const char *data, const nb_model *m, int64_t C, cli_names *out)
{
    const char *known = nb_model_class_names(m);
    if (classes || !known) return cli_names_load(classes, data, C, out);
    *out = (cli_names){0};
    const size_t len = strlen(known);
    if (!(out->text = malloc(len + 1))) return nb_set_error(NB_ERR_NOMEM, "out of memory");
    memcpy(out->text, known, len + 1);
    int64_t n = 0;
    nb_status s = split_lines(out->text, &out->lines, &n);
    if (s) return s;
    if (n == C) out->n = C, out->name = out->lines; /* else the model file's names do not fit: none */
    return NB_OK;
}

void cli_names_free(cli_names *n)
{
    free(n->text);
    free(n->lines);
    *n = (cli_names){0};
}

const char *cli_data_dir(const char *name)
{
    if (!strcmp(name, "fashion-mnist")) return "/usr/share/datasets/fashion-mnist";
    if (!strcmp(name, "mnist")) return "/usr/share/datasets/mnist";
    return name;
}

int cli_csv_check(const char *cmd, const cli_csv_opts *o)
{
    if (o->header && o->no_header) return cli_usage_error(cmd, "%s", "--header and --no-header contradict each other");
    return -1;
}

int cli_toy_check(const char *cmd, const char *data, const cli_csv_opts *o)
{
    if (o->toy_count && data && !nb_toy_parse(data, NULL))
        return cli_usage_error(cmd, "--count is the number of points of a toy data set (circles, xor, spiral, "
                                    "gaussians), not of '%s': use --limit N for the first N examples", data);
    return -1;
}

nb_status cli_load_data(const char *name, const char *split, const cli_csv_opts *csv, nb_dataset *out)
{
    return cli_load_data_classes(name, split, csv, out, NULL);
}

nb_status cli_load_data_for_model(const char *name, const char *split, const cli_csv_opts *csv, const nb_model *m,
                                  nb_dataset *out)
{
    cli_csv_opts o = csv ? *csv : (cli_csv_opts){.label_col = "-1", .noise = 0.1, .data_seed = 1, .toy_classes = 2};
    o.classes = nb_model_class_names(m);
    return cli_load_data_classes(name, split, &o, out, NULL);
}

nb_status cli_load_data_classes(const char *name, const char *split, const cli_csv_opts *csv, nb_dataset *out,
                                char **classes)
{
    if (classes) *classes = NULL;
    nb_toy_kind toy;
    if (nb_toy_parse(name, &toy)) return cli_load_toy(toy, split, csv, out);
    if (ends_with(name, ".csv") || ends_with(name, ".CSV"))
        return cli_load_csv_classes(name, csv, out, classes); /* one split: all rows */
    const char *dir = cli_data_dir(name);
    if (!is_dir(dir))
        return nb_set_error(NB_ERR_IO,
                       "data '%s': not a directory of IDX files or a .csv file (for Fashion-MNIST use "
                       "--data fashion-mnist after apt-get install dataset-fashion-mnist)",
                       name);
    return nb_dataset_load_mnist(dir, split, out);
}

nb_status cli_dataset_limit(nb_dataset *d, int64_t start, int64_t count)
{
    nb_dataset sub;
    nb_status s = nb_dataset_subset(d, start, count, &sub);
    if (s) return s;
    nb_dataset_free(d);
    *d = sub;
    return NB_OK;
}

nb_status cli_fit_rows(nb_tensor **x, const nb_model *m)
{
    int64_t want[NB_MAX_RANK];
    const int r = nb_model_input_shape(m, want);
    const nb_tensor *t = *x;
    if (r < 2 || t->rank != 2 || t->shape[1] != nb_shape_size(r, want)) return NB_OK;
    int64_t shape[NB_MAX_RANK];
    shape[0] = t->shape[0];
    memcpy(shape + 1, want, sizeof(int64_t) * (size_t)r);
    nb_tensor *n = nb_tensor_from(r + 1, shape, t->data);
    if (!n) return nb_set_error(NB_ERR_NOMEM, "out of memory");
    nb_tensor_free(*x);
    *x = n;
    return NB_OK;
}

nb_status cli_reshape_rows(nb_tensor **xp, const char *input)
{
    const nb_tensor *x = *xp;
    int rank = 0;
    int64_t shape[NB_MAX_RANK + 1];
    nb_status s = nb_shape_parse(input, &rank, shape + 1);
    if (s) return s;
    if (rank + 1 > NB_MAX_RANK)
        return nb_set_error(NB_ERR_SHAPE, "--input %s: with the batch that is more than %d dimensions", input,
                            NB_MAX_RANK);
    const int64_t N = x->shape[0], per = N ? x->size / N : 0, want = nb_shape_size(rank, shape + 1);
    if (per == want) {
        shape[0] = N;
        nb_tensor *r = nb_tensor_from(rank + 1, shape, x->data);
        if (!r) return nb_set_error(NB_ERR_NOMEM, "out of memory");
        nb_tensor_free(*xp);
        *xp = r;
        return NB_OK;
    }
    return nb_set_error(NB_ERR_SHAPE, "--input %s holds %lld values per example, the data's examples hold %lld", input,
                        (long long)want, (long long)per);
}

void cli_hint_nonfinite(nb_status s)
{
    if (s != NB_ERR_NUMERIC) return;
    nb_set_error(s, "%s; to load it anyway (to inspect it), pass --allow-nonfinite to nabla summary, predict or train",
                 nb_last_error()); /* (nb_set_error formats apart: it may wrap its own message) */
}

nb_status cli_fold_bn(const char *cmd, nb_model *m)
{
    int k = 0;
    nb_status s = nb_model_fold_batchnorm(m, &k);
    if (!s) fprintf(stderr, "nabla %s: --fold-bn: folded %d batchnorm layer%s into the layer before\n", cmd, k,
                    k == 1 ? "" : "s");
    return s;
}

nb_status cli_load_model(const char *model, const char *input, const nb_dataset *data, nb_model **out)
{
    return cli_load_model_flags(model, input, data, 0, out);
}

nb_status cli_load_model_flags(const char *model, const char *input, const nb_dataset *data, unsigned flags,
                               nb_model **out)
{
    /* A file name that names no file is a typo, not a spec with an unknown layer. */
    if (!cli_is_file(model) && !strchr(model, ' ') && !strchr(model, ';') &&
        (ends_with(model, ".safetensors") || ends_with(model, ".onnx") || ends_with(model, ".txt") ||
         ends_with(model, ".spec") || strchr(model, '/')))
        return nb_set_error(NB_ERR_IO, "model '%s': no such file", model);
    if (cli_is_file(model) && (ends_with(model, ".safetensors") || ends_with(model, ".onnx"))) {
        nb_status s = nb_model_load_flags(model, flags, out);
        cli_hint_nonfinite(s);
        return s;
    }
    char *spec = NULL;
    if (cli_is_file(model)) {
        void *buf;
        size_t len;
        nb_status s = nb_read_file(model, 1 << 20, &buf, &len);
        if (s) return s;
        spec = malloc(len + 1);
        if (!spec) {
            free(buf);
            return nb_set_error(NB_ERR_NOMEM, "out of memory");
        }
        memcpy(spec, buf, len);
        spec[len] = '\0';
        free(buf);
    }
    int rank = 0;
    int64_t shape[NB_MAX_RANK];
    nb_status s = NB_OK;
    if (input) s = nb_shape_parse(input, &rank, shape);
    else if (data && data->x) {
        rank = data->x->rank - 1;
        memcpy(shape, data->x->shape + 1, sizeof(int64_t) * (size_t)rank);
    } else
        s = nb_set_error(NB_ERR_ARG, "the input shape is unknown: pass --input, e.g. --input 28,28,1");
    if (!s) s = nb_model_from_spec(spec ? spec : model, rank, shape, out);
    free(spec);
    return s;
}

