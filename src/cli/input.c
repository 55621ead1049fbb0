/* Model inputs from files, shared by predict, jacobian and grad: a .npy or an
 * IDX file (raw or gzip), fitted to the model's input shape.
 *
 * Shapes accepted, for a model taking (N, d1, ..., dk):
 *   (N, d1, ..., dk)            as is;
 *   (N, H, W)                   when the model takes (N, H, W, 1): one channel added;
 *   (N, d1 * ... * dk)          flat rows (a CSV file's), reshaped;
 *   (d1, ..., dk)               one example, taken as N = 1.
 * Scaling rule: when the file's element type is an integer type (npy u1 i1 i4
 * i8 b1, IDX ubyte/sbyte/short/int) and some value is > 1, every value is
 * divided by 255 (raw 0..255 pixels, as the model was trained on [0, 1]).
 * Floating-point files are never scaled. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static const char *const idx_types[] = {"u8", "i8", "?", "i16", "i32", "f32", "f64"}; /* 0x08..0x0E */

int cli_file_dtype(const char *path, char *dtype, size_t n, int *is_npy)
{
    unsigned char head[1024];
    if (n) dtype[0] = '\0';
    *is_npy = 0;
    gzFile f = gzopen(path, "rb"); /* reads gzip and plain files alike */
    if (!f) return -1;
    int got = gzread(f, head, (unsigned)sizeof head - 1);
    gzclose(f);
    if (got < 4) return -1;
    head[got] = '\0';
    *is_npy = got >= 10 && !memcmp(head, "\x93NUMPY", 6);
    if (*is_npy) {
        const char *d = strstr((const char *)head + 10, "descr");
        if (!d) return -1;
        d = strchr(d + 5, ':');
        if (!d) return -1;
        d = strpbrk(d, "'\"");
        if (!d || !d[1] || !d[2]) return -1;
        size_t len = strcspn(d + 1, "'\"");
        snprintf(dtype, n, "%.*s", (int)(len < 15 ? len : 15), d + 1);
        char kind = d[1] == '<' || d[1] == '>' || d[1] == '|' || d[1] == '=' ? d[2] : d[1];
        return kind == 'u' || kind == 'i' || kind == 'b';
    }
    /* IDX: 0 0 type rank; 0x08 ubyte, 0x09 sbyte, 0x0B short, 0x0C int, 0x0D float, 0x0E double. */
    if (head[0] || head[1]) return -1;
    if (head[2] >= 0x08 && head[2] <= 0x0E && head[2] != 0x0A) snprintf(dtype, n, "%s", idx_types[head[2] - 0x08]);
    return head[2] >= 0x08 && head[2] <= 0x0C;
}

/* Whether the file's element type is an integer type; -1 if unknown. */
static int file_is_integer(const char *path, int *is_npy)
{
    char dtype[16];
    return cli_file_dtype(path, dtype, sizeof dtype, is_npy);
}

static const char *model_shape_str(const nb_model *m, char *buf, size_t n)
{
    int64_t s[NB_MAX_RANK] = {-1};
    int r = nb_model_input_shape(m, s + 1);
    nb_shape_str(r + 1, s, buf, n);
    char *p = strstr(buf, "(-1");
    if (p) memcpy(p, "(N ", 3), memmove(p + 2, p + 3, strlen(p + 3) + 1);
    return buf;
}

/* The shape (*rank, shape) that t takes as m's input, by the rules above;
 * 0 if it fits none (then a message naming both shapes is set). */
static int fit_shape(const nb_tensor *t, const nb_model *m, const char *path, int *rank, int64_t *shape)
{
    int64_t want[NB_MAX_RANK];
    const int r = nb_model_input_shape(m, want);
    int ok = t->rank == r + 1;
    for (int d = 0; ok && d < r; d++) ok = t->shape[d + 1] == want[d];
    if (ok) {
        *rank = t->rank;
        memcpy(shape, t->shape, sizeof(int64_t) * (size_t)t->rank);
        return 1;
    }
    if (r == 3 && want[2] == 1 && t->rank == 3 && t->shape[1] == want[0] && t->shape[2] == want[1]) {
        *rank = 4;
        shape[0] = t->shape[0], shape[1] = want[0], shape[2] = want[1], shape[3] = 1;
        return 1;
    }
    if (r > 1 && t->rank == 2 && t->shape[1] == nb_shape_size(r, want)) {
        /* flat rows (a CSV file's, (N, 784)) for a model of (28, 28, 1) */
        *rank = r + 1;
        shape[0] = t->shape[0];
        memcpy(shape + 1, want, sizeof(int64_t) * (size_t)r);
        return 1;
    }
    ok = t->rank == r;
    for (int d = 0; ok && d < r; d++) ok = t->shape[d] == want[d];
    if (ok) {
        *rank = r + 1;
        shape[0] = 1;
        memcpy(shape + 1, want, sizeof(int64_t) * (size_t)r);
        return 1;
    }
    char s1[96], s2[96];
    nb_shape_str(t->rank, t->shape, s1, sizeof s1);
    model_shape_str(m, s2, sizeof s2);
    /* (N, C, H, W) where the model takes (N, H, W, C): PyTorch's layout. */
    const int nchw = r == 3 && t->rank == 4 && t->shape[1] == want[2] && t->shape[2] == want[0] &&
                     t->shape[3] == want[1] && want[2] != want[0];
    nb_set_error(NB_ERR_SHAPE, "input '%s' has shape %s, the model takes %s%s%s", path, s1, s2,
                 r == 3 && want[2] == 1 ? " (or (N, H, W) for its one channel)" : "",
                 nchw ? "; this looks like channels-first (N, C, H, W) as in PyTorch, but nabla is channels-last "
                        "(N, H, W, C): transpose it (NumPy: x.transpose(0, 2, 3, 1))"
                      : "");
    return 0;
}

/* Integer pixels 0..255 become 0..1 (the scaling rule above). */
static void scale_integer_pixels(nb_tensor *x, int *scaled)
{
    nb_real mx = 0;
    for (int64_t i = 0; i < x->size; i++)
        if (x->data[i] > mx) mx = x->data[i];
    if (mx <= 1) return;
    for (int64_t i = 0; i < x->size; i++) x->data[i] = (nb_real)(x->data[i] / 255.0);
    if (scaled) *scaled = 1;
}

nb_status cli_read_tensor(const char *path, nb_tensor **out)
{
    *out = NULL;
    if (!cli_is_file(path)) return nb_set_error(NB_ERR_IO, "'%s': no such file", path);
    int is_npy = 0;
    file_is_integer(path, &is_npy);
    return is_npy ? nb_npy_read(path, out) : nb_idx_read(path, out);
}

nb_status cli_load_input(const char *path, const nb_model *m, nb_tensor **out, int *scaled)
{
    *out = NULL;
    if (scaled) *scaled = 0;
    if (cli_is_image_input(path)) return cli_load_images(path, m, out); /* PNG, JPEG or a folder of them */
    if (!cli_is_file(path)) return nb_set_error(NB_ERR_IO, "input '%s': no such file", path);
    int is_npy = 0, integer = file_is_integer(path, &is_npy);
    nb_tensor *t = NULL;
    nb_status s = is_npy ? nb_npy_read(path, &t) : nb_idx_read(path, &t);
    if (s) return s;
    int64_t shape[NB_MAX_RANK];
    int rank = 0;
    if (!fit_shape(t, m, path, &rank, shape)) {
        nb_tensor_free(t);
        return NB_ERR_SHAPE;
    }
    if (t->rank < 1 || shape[0] < 1) {
        nb_tensor_free(t);
        return nb_set_error(NB_ERR_SHAPE, "input '%s' holds no examples", path);
    }
    nb_tensor *x = nb_tensor_from(rank, shape, t->data);
    nb_tensor_free(t);
    if (!x) return NB_ERR_NOMEM;
    if (integer == 1) scale_integer_pixels(x, scaled);
    *out = x;
    return NB_OK;
}

int cli_source_check(const char *cmd, const cli_source *src)
{
    int r = cli_csv_check(cmd, &src->csv);
    if (r >= 0) return r;
    if (!src->input == !src->data)
        return cli_usage_error(cmd, "%s", src->input ? "give --input or --data, not both"
                                                     : "--input FILE or --data D is required (e.g. --data fashion-mnist)");
    return -1;
}

/* Rows start..start+count-1 of the leading axis of *t (count 0: all from
 * start); *t is replaced. n_what names the rows in messages. */
static nb_status take_rows(nb_tensor **t, int64_t start, int64_t count, const char *n_what)
{
    const int64_t N = (*t)->shape[0], row = N ? (*t)->size / N : 0;
    if (start >= N)
        return nb_set_error(NB_ERR_ARG, "--start %lld: %s has %lld examples (0..%lld)", (long long)start, n_what,
                            (long long)N, (long long)N - 1);
    if (!count || count > N - start) count = N - start;
    int64_t shape[NB_MAX_RANK];
    memcpy(shape, (*t)->shape, sizeof(int64_t) * (size_t)(*t)->rank);
    shape[0] = count;
    nb_tensor *r = nb_tensor_from((*t)->rank, shape, (*t)->data + start * row);
    if (!r) return nb_set_error(NB_ERR_NOMEM, "out of memory");
    nb_tensor_free(*t);
    *t = r;
    return NB_OK;
}

/* --data: the data set's rows, fitted to m's input, and their labels. */
static nb_status load_data_rows(const cli_source *src, int64_t data_count, const nb_model *m, nb_tensor **x,
                                nb_tensor **labels, char *what, size_t what_len)
{
    const char *split = cli_choice_name(cli_splits, src->split);
    nb_dataset d = {0};
    cli_csv_opts csv = src->csv;
    if (nb_toy_parse(src->data, NULL) && src->count) csv.toy_count = src->start + src->count; /* a prefix */
    nb_status s = cli_load_data_for_model(src->data, split, &csv, m, &d); /* string labels: the model's classes */
    char n_what[600];
    snprintf(n_what, sizeof n_what, "the %s split of '%s'", split, src->data);
    int64_t count = src->count ? src->count : data_count;
    if (!s) s = take_rows(&d.x, src->start, count, n_what);
    if (!s) s = take_rows(&d.y, src->start, count, n_what);
    int rank = 0;
    int64_t shape[NB_MAX_RANK];
    if (!s && !fit_shape(d.x, m, src->data, &rank, shape)) s = NB_ERR_SHAPE;
    if (!s && !(*x = nb_tensor_from(rank, shape, d.x->data))) s = nb_set_error(NB_ERR_NOMEM, "out of memory");
    if (!s && labels) *labels = d.y, d.y = NULL;
    if (!s)
        snprintf(what, what_len, "%s examples %lld..%lld", n_what, src->start, src->start + (*x)->shape[0] - 1);
    nb_dataset_free(&d);
    return s;
}

nb_status cli_load_examples(const cli_source *src, int64_t data_count, const nb_model *m, nb_tensor **x,
                            nb_tensor **labels, int *scaled, char *what, size_t what_len)
{
    *x = NULL;
    if (labels) *labels = NULL;
    if (scaled) *scaled = 0;
    if (src->data) return load_data_rows(src, data_count, m, x, labels, what, what_len);
    nb_status s = cli_load_input(src->input, m, x, scaled);
    if (!s && (src->start || src->count)) {
        char n_what[600];
        snprintf(n_what, sizeof n_what, "input '%s'", src->input);
        s = take_rows(x, src->start, src->count, n_what);
    }
    if (s) {
        nb_tensor_free(*x);
        *x = NULL;
        return s;
    }
    if (src->start || src->count)
        snprintf(what, what_len, "'%s' examples %lld..%lld", src->input, src->start,
                 src->start + (*x)->shape[0] - 1);
    else snprintf(what, what_len, "'%s'", src->input);
    return NB_OK;
}

nb_status cli_load_trained_model(const char *path, nb_model **out)
{
    return cli_load_trained_model_flags(path, 0, out);
}

nb_status cli_load_trained_model_flags(const char *path, unsigned flags, nb_model **out)
{
    *out = NULL;
    if (!cli_is_file(path)) return nb_set_error(NB_ERR_IO, "model '%s': no such file", path);
    nb_status s = nb_model_load_flags(path, flags, out);
    if (s == NB_ERR_NUMERIC) { /* a model file, with unusable weights */
        cli_hint_nonfinite(s);
    } else if (s) {
        nb_set_error(s,
                     "model '%s' is not a model file written by 'nabla train' (.safetensors) or an ONNX model "
                     "(.onnx): %s",
                     path, nb_last_error());
    }
    return s;
}
