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

const char *cli_data_dir(const char *name)
{
    if (!strcmp(name, "fashion-mnist")) return "/usr/share/datasets/fashion-mnist";
    if (!strcmp(name, "mnist")) return "/usr/share/datasets/mnist";
    return name;
}

nb_status cli_load_data(const char *name, const char *split, int label_col, nb_dataset *out)
{
    if (ends_with(name, ".csv")) {
        if (strcmp(split, "train")) return nb_set_error(NB_ERR_ARG, "a CSV data set has no '%s' split", split);
        return nb_dataset_load_csv(name, label_col, out);
    }
    const char *dir = cli_data_dir(name);
    if (!is_dir(dir))
        return nb_set_error(NB_ERR_IO,
                       "data '%s': not a directory of IDX files or a .csv file (for Fashion-MNIST use "
                       "--data fashion-mnist after apt-get install dataset-fashion-mnist)",
                       name);
    return nb_dataset_load_mnist(dir, split, out);
}

void cli_hint_nonfinite(nb_status s)
{
    if (s != NB_ERR_NUMERIC) return;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", nb_last_error());
    nb_set_error(s, "%s; to load it anyway (to inspect it), pass --allow-nonfinite to nabla summary, predict or train",
                 msg);
}

nb_status cli_load_model(const char *model, const char *input, const nb_dataset *data, nb_model **out)
{
    return cli_load_model_flags(model, input, data, 0, out);
}

nb_status cli_load_model_flags(const char *model, const char *input, const nb_dataset *data, unsigned flags,
                               nb_model **out)
{
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

