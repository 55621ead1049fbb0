/* Data sets: MNIST-format IDX directories (Fashion-MNIST from Debian's
 * dataset-fashion-mnist), CSV tables, splits and subsets. */
#include "nn_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

void nb_dataset_free(nb_dataset *d)
{
    if (!d) return;
    nb_tensor_free(d->x);
    nb_tensor_free(d->y);
    d->x = d->y = NULL;
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* dir/base or dir/base.gz, whichever exists. */
static nb_status find_idx(const char *dir, const char *base, char *path, size_t n)
{
    snprintf(path, n, "%s/%s.gz", dir, base);
    if (file_exists(path)) return NB_OK;
    snprintf(path, n, "%s/%s", dir, base);
    if (file_exists(path)) return NB_OK;
    return nb_fail(NB_ERR_IO, "data: '%s/%s[.gz]' not found (for Fashion-MNIST: apt-get install dataset-fashion-mnist)",
                   dir, base);
}

nb_status nb_dataset_load_mnist(const char *dir, const char *split, nb_dataset *out)
{
    if (!dir || !split || !out) return nb_fail(NB_ERR_ARG, "load_mnist: NULL argument");
    memset(out, 0, sizeof *out);
    const char *prefix = !strcmp(split, "train") ? "train" : !strcmp(split, "test") ? "t10k" : NULL;
    if (!prefix) return nb_fail(NB_ERR_ARG, "load_mnist: split must be 'train' or 'test', not '%s'", split);
    char ipath[1024], lpath[1024], base[64];
    snprintf(base, sizeof base, "%s-images-idx3-ubyte", prefix);
    nb_status s = find_idx(dir, base, ipath, sizeof ipath);
    if (s) return s;
    snprintf(base, sizeof base, "%s-labels-idx1-ubyte", prefix);
    if ((s = find_idx(dir, base, lpath, sizeof lpath))) return s;
    nb_tensor *x = NULL, *y = NULL;
    if ((s = nb_idx_read(ipath, &x)) || (s = nb_idx_read(lpath, &y))) goto fail;
    if (x->rank != 3 || y->rank != 1) {
        s = nb_fail(NB_ERR_FORMAT, "data: '%s' should hold (N, H, W) images and '%s' (N) labels", ipath, lpath);
        goto fail;
    }
    if (x->shape[0] != y->shape[0]) {
        s = nb_fail(NB_ERR_FORMAT, "data: %lld images in '%s' but %lld labels in '%s'", (long long)x->shape[0], ipath,
                    (long long)y->shape[0], lpath);
        goto fail;
    }
    for (int64_t i = 0; i < y->size; i++)
        if (!(y->data[i] >= 0 && y->data[i] <= 255)) {
            s = nb_fail(NB_ERR_FORMAT, "data: label %lld in '%s' is %g", (long long)i, lpath, (double)y->data[i]);
            goto fail;
        }
    /* (N, H, W) bytes -> (N, H, W, 1) in [0, 1]. */
    x->rank = 4;
    x->shape[3] = 1;
    for (int64_t i = 0; i < x->size; i++) x->data[i] /= 255;
    out->x = x, out->y = y;
    return NB_OK;
fail:
    nb_tensor_free(x);
    nb_tensor_free(y);
    return s;
}

nb_status nb_dataset_load_csv(const char *path, int label_col, nb_dataset *out)
{
    if (!path || !out) return nb_fail(NB_ERR_ARG, "load_csv: NULL argument");
    memset(out, 0, sizeof *out);
    nb_tensor *t = NULL;
    char **names = NULL;
    nb_status s = nb_csv_read(path, 1, &t, &names);
    if (s) return s;
    int64_t rows = t->shape[0], cols = t->shape[1];
    nb_csv_free_names(names, cols);
    int lc = label_col < 0 ? (int)(cols + label_col) : label_col;
    if (cols < 2 || lc < 0 || lc >= cols) {
        nb_tensor_free(t);
        return nb_fail(NB_ERR_ARG, "'%s': label column %d does not exist (%lld columns)", path, label_col,
                       (long long)cols);
    }
    int64_t xs[2] = {rows, cols - 1}, ys[1] = {rows};
    out->x = nb_tensor_new(2, xs);
    out->y = nb_tensor_new(1, ys);
    if (!out->x || !out->y) {
        nb_tensor_free(t);
        nb_dataset_free(out);
        return NB_ERR_NOMEM;
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0, k = 0; c < cols; c++) {
            nb_real v = t->data[r * cols + c];
            if (c == lc) out->y->data[r] = v;
            else out->x->data[r * (cols - 1) + k++] = v;
        }
    nb_tensor_free(t);
    return NB_OK;
}

static nb_tensor *rows_of(const nb_tensor *t, int64_t start, int64_t count)
{
    int64_t shape[NB_MAX_RANK];
    memcpy(shape, t->shape, sizeof shape);
    int64_t row = t->shape[0] ? t->size / t->shape[0] : 0;
    shape[0] = count;
    return nb_tensor_from(t->rank, shape, t->data + start * row);
}

nb_status nb_dataset_subset(const nb_dataset *d, int64_t start, int64_t count, nb_dataset *out)
{
    if (!d || !d->x || !d->y || !out) return nb_fail(NB_ERR_ARG, "subset: NULL argument");
    int64_t n = d->x->rank ? d->x->shape[0] : 0;
    if (d->y->rank < 1 || d->y->shape[0] != n)
        return nb_fail(NB_ERR_SHAPE, "subset: %lld inputs but %lld targets", (long long)n,
                       (long long)(d->y->rank ? d->y->shape[0] : 0));
    if (start < 0 || count < 0 || start > n || count > n - start)
        return nb_fail(NB_ERR_ARG, "subset: rows %lld..%lld out of 0..%lld", (long long)start,
                       (long long)(start + count), (long long)n);
    out->x = rows_of(d->x, start, count);
    out->y = rows_of(d->y, start, count);
    if (!out->x || !out->y) {
        nb_dataset_free(out);
        return NB_ERR_NOMEM;
    }
    return NB_OK;
}

nb_status nb_dataset_split(nb_dataset *d, double fraction, nb_dataset *val)
{
    if (!d || !d->x || !val) return nb_fail(NB_ERR_ARG, "split: NULL argument");
    memset(val, 0, sizeof *val);
    if (!(fraction >= 0 && fraction < 1)) return nb_fail(NB_ERR_ARG, "split: fraction must be in [0, 1), got %g", fraction);
    int64_t n = d->x->shape[0], nv = (int64_t)((double)n * fraction);
    if (nv == 0) return NB_OK;
    nb_dataset train = {0};
    nb_status s = nb_dataset_subset(d, n - nv, nv, val);
    if (!s) s = nb_dataset_subset(d, 0, n - nv, &train);
    if (s) {
        nb_dataset_free(val);
        return s;
    }
    nb_dataset_free(d);
    *d = train;
    return NB_OK;
}
