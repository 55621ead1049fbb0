/* nabla show FILE: what a .npy, IDX (raw or .gz), safetensors, nabla model
 * or ONNX file holds, read by the library's readers (src/io): each tensor's
 * name, shape, dtype, min / max / mean of its finite values, its NaN and
 * infinity counts, and small tensors in full, with the digits that matter
 * (nb_format_real). */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *file;
    long long max;
} show_args;

#define F(field) offsetof(show_args, field)
static const cli_opt show_opts[] = {
    {"--file", NULL, CLI_STR, F(file), "FILE", NULL, "the file (or as the first argument: nabla show FILE)",
     CLI_REQUIRED, 0, 0, NULL},
    {"--max", NULL, CLI_INT, F(max), "N", "16", "print a tensor's values in full when it holds at most N", 0, 0,
     1000000, NULL},
};
#undef F

static const cli_spec show_spec = {"show",
                                   "FILE [--max N]",
                                   "Prints what FILE holds: a .npy or IDX file (raw or .gz) is one tensor; a\n"
                                   "safetensors file holds named tensors and metadata (a nabla model file: its spec\n"
                                   "and input shape); an ONNX file is read as a model, and its weights are shown.\n"
                                   "For each tensor: shape, dtype, min, max and mean of the finite values, how many\n"
                                   "are NaN or infinite, and its values when it is small.\n",
                                   show_opts,
                                   CLI_NOPTS(show_opts),
                                   NULL};

/* `nabla show FILE`: the first argument, when no option, is --file's value. */
static int parse(int argc, char **argv, show_args *a)
{
    char *args[64];
    if (argc < 2 || argv[1][0] == '-' || argc + 1 > 64) return cli_parse(&show_spec, argc, argv, a);
    args[0] = argv[0], args[1] = "--file";
    for (int i = 1; i < argc; i++)
        args[i + 1] = argv[i];
    return cli_parse(&show_spec, argc + 1, args, a);
}

int cmd_show_check_args(int argc, char **argv)
{
    show_args a = {0};
    return parse(argc, argv, &a);
}

/* "  min -1, max 2.5, mean 0.4" over the finite values, then the counts of
 * NaN and infinite ones (when there are any). */
static void print_stats(const nb_tensor *t)
{
    int64_t nan = 0, inf = 0, finite = 0;
    double lo = 0, hi = 0, sum = 0;
    for (int64_t i = 0; i < t->size; i++) {
        double v = (double)t->data[i];
        if (isnan(v))
            nan++;
        else if (isinf(v))
            inf++;
        else {
            if (!finite || v < lo) lo = v;
            if (!finite || v > hi) hi = v;
            sum += v, finite++;
        }
    }
    char a[32], b[32], c[32];
    if (t->size == 0)
        printf("  empty (no values)\n");
    else if (finite)
        printf("  min %s, max %s, mean %s", nb_format_real((nb_real)lo, a, sizeof a),
               nb_format_real((nb_real)hi, b, sizeof b), nb_format_real((nb_real)(sum / (double)finite), c, sizeof c));
    else
        printf("  no finite values");
    if (nan || inf)
        printf("; non-finite: %lld NaN, %lld infinite (of %lld)", (long long)nan, (long long)inf, (long long)t->size);
    if (t->size) printf("\n");
}

/* The values, one line per row of the last axis, when there are at most max. */
static void print_values(const nb_tensor *t, long long max)
{
    if (t->size == 0 || t->size > max) return;
    const int64_t row = t->rank ? t->shape[t->rank - 1] : 1;
    char v[32];
    for (int64_t i = 0; i < t->size; i++) {
        if (i % row == 0) printf("  [");
        printf("%s%s", i % row ? ", " : "", nb_format_real(t->data[i], v, sizeof v));
        if (i % row == row - 1) printf("]\n");
    }
}

/* One tensor: "NAME  (2, 3)  DTYPE  6 values", its statistics and values. */
static void print_tensor(const char *name, const nb_tensor *t, const char *dtype, long long max)
{
    char s[128], shown[1100]; /* a hostile file's name cannot reach the terminal raw */
    printf("%s  %s  %s  %lld value%s\n", nb_escape_text(shown, sizeof shown, name, SIZE_MAX),
           nb_shape_str(t->rank, t->shape, s, sizeof s),
           dtype && *dtype ? dtype : "?", (long long)t->size, t->size == 1 ? "" : "s");
    print_stats(t);
    print_values(t, max);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* A .npy or IDX file: one tensor. */
static int show_array(const show_args *a)
{
    char dtype[16];
    int is_npy = 0;
    cli_file_dtype(a->file, dtype, sizeof dtype, &is_npy);
    is_npy |= ends_with(a->file, ".npy"); /* then its reader says what is wrong with it */
    nb_tensor *t = NULL;
    if ((is_npy ? nb_npy_read(a->file, &t) : nb_idx_read(a->file, &t))) return cli_fail("show", NULL);
    printf("%s: %s file\n", a->file, is_npy ? ".npy" : ends_with(a->file, ".gz") ? "IDX (gzip)" : "IDX");
    print_tensor(is_npy ? "array" : "data", t, dtype, a->max);
    nb_tensor_free(t);
    return 0;
}

/* A safetensors file: its metadata (a nabla model's spec and input), then
 * its tensors in the file's order. */
static int show_safetensors(const show_args *a)
{
    nb_safetensors *st = NULL;
    if (nb_safetensors_read(a->file, &st)) return cli_fail("show", NULL);
    const char *spec = nb_safetensors_meta(st, "nabla.spec"), *input = nb_safetensors_meta(st, "nabla.input");
    const int n = nb_safetensors_count(st);
    printf("%s: safetensors file, %d tensor%s\n", a->file, n, n == 1 ? "" : "s");
    if (spec) printf("nabla model: %s\ninput: %s\n", spec, input ? input : "(not recorded)");
    for (int i = 0; i < n; i++) {
        const char *name = nb_safetensors_name(st, i);
        print_tensor(name, nb_safetensors_get(st, name), nb_safetensors_dtype(st, i), a->max);
    }
    nb_safetensors_free(st);
    return 0;
}

/* An ONNX file, read as a model: its spec and its weights. */
static int show_onnx(const show_args *a)
{
    nb_model *m = NULL;
    if (nb_onnx_load(a->file, NB_LOAD_ALLOW_NONFINITE, &m)) return cli_fail("show", NULL);
    int64_t shape[NB_MAX_RANK];
    char s[128];
    const int n = nb_model_param_count(m);
    printf("%s: ONNX model, %d weight%s\nas a nabla model: %s\ninput: %s\n", a->file, n, n == 1 ? "" : "s",
           nb_model_spec(m), nb_shape_str(nb_model_input_shape(m, shape), shape, s, sizeof s));
    for (int i = 0; i < n; i++) {
        nb_node *p = nb_model_param(m, i);
        print_tensor(nb_node_name(p), nb_value(p), "float32", a->max);
    }
    nb_model_free(m);
    return 0;
}

/* Whether the file starts as a safetensors file does: an 8-byte length,
 * then the JSON header's '{'. */
static int looks_like_safetensors(const char *path)
{
    unsigned char head[9];
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    return n == sizeof head && head[8] == '{' && !head[6] && !head[7];
}

int cmd_show(int argc, char **argv)
{
    show_args a = {0};
    int rc = parse(argc, argv, &a);
    if (rc >= 0) return rc;
    if (!cli_is_file(a.file)) {
        nb_set_error(NB_ERR_IO, "'%s': no such file", a.file);
        return cli_fail("show", NULL);
    }
    if (ends_with(a.file, ".onnx")) return show_onnx(&a);
    if (ends_with(a.file, ".safetensors")) return show_safetensors(&a);
    char dtype[16];
    int is_npy = 0;
    cli_file_dtype(a.file, dtype, sizeof dtype, &is_npy);
    if (is_npy || dtype[0] || ends_with(a.file, ".npy") || ends_with(a.file, ".idx") || ends_with(a.file, ".gz") ||
        strstr(a.file, "-ubyte"))
        return show_array(&a);
    if (looks_like_safetensors(a.file)) return show_safetensors(&a);
    nb_set_error(NB_ERR_FORMAT,
                 "'%s': not a .npy, IDX (raw or .gz), safetensors or ONNX file (by its first bytes and its name); "
                 "show reads those",
                 a.file);
    return cli_fail("show", NULL);
}
