/* Model inputs from PNG and JPEG files, or a folder of them (predict,
 * jacobian and grad through cli_load_input): each image decoded, resized to
 * the model's input with a box filter, converted to its channels and scaled
 * to [0, 1] (nb_image_to_tensor), with a note on stderr saying what was done. */
#include "cli.h"

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { MAX_IMAGES = 100000 };

static int has_image_ext(const char *p)
{
    const char *dot = strrchr(p, '.');
    if (!dot) return 0;
    char e[8] = {0};
    for (int i = 0; i < 7 && dot[1 + i]; i++) e[i] = (char)tolower((unsigned char)dot[1 + i]);
    return !strcmp(e, "png") || !strcmp(e, "jpg") || !strcmp(e, "jpeg");
}

int cli_is_image_input(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) return has_image_ext(path);
    return S_ISDIR(st.st_mode) || has_image_ext(path);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The image files of path (itself, or a folder's, sorted by name). */
static nb_status list_images(const char *path, char ***names, int *n)
{
    *names = NULL, *n = 0;
    struct stat st;
    if (stat(path, &st) != 0) return nb_set_error(NB_ERR_IO, "input '%s': no such file or folder", path);
    if (!S_ISDIR(st.st_mode)) {
        char **v = malloc(sizeof *v);
        if (!v || !(v[0] = strdup(path))) return free(v), nb_set_error(NB_ERR_NOMEM, "out of memory");
        *names = v, *n = 1;
        return NB_OK;
    }
    DIR *d = opendir(path);
    if (!d) return nb_set_error(NB_ERR_IO, "input '%s': cannot open the folder", path);
    char **v = NULL;
    int cnt = 0, cap = 0;
    nb_status s = NB_OK;
    for (struct dirent *e; !s && (e = readdir(d));) {
        if (e->d_name[0] == '.' || !has_image_ext(e->d_name)) continue;
        if (cnt == MAX_IMAGES) s = nb_set_error(NB_ERR_ARG, "input '%s': more than %d images", path, MAX_IMAGES);
        if (!s && cnt == cap) {
            char **q = realloc(v, sizeof *v * (size_t)(cap = cap ? 2 * cap : 64));
            if (!q) s = nb_set_error(NB_ERR_NOMEM, "out of memory");
            else v = q;
        }
        size_t len = strlen(path) + strlen(e->d_name) + 2;
        if (!s && !(v[cnt] = malloc(len))) s = nb_set_error(NB_ERR_NOMEM, "out of memory");
        if (!s) snprintf(v[cnt++], len, "%s/%s", path, e->d_name);
    }
    closedir(d);
    if (!s && !cnt) s = nb_set_error(NB_ERR_IO, "input '%s': the folder holds no .png, .jpg or .jpeg file", path);
    if (s) {
        for (int i = 0; i < cnt; i++) free(v[i]);
        free(v);
        return s;
    }
    qsort(v, (size_t)cnt, sizeof *v, by_name);
    *names = v, *n = cnt;
    return NB_OK;
}

/* The model's input as H x W x C: (H, W, C), (H, W) with C = 1, or (F) with
 * F a square (H = W = sqrt F, C = 1). */
static nb_status image_shape(const nb_model *m, int *H, int *W, int *C)
{
    int64_t s[8];
    const int r = nb_model_input_shape(m, s);
    int64_t side = 1;
    while (r == 1 && side * side < s[0]) side++;
    if (r == 3 && (s[2] == 1 || s[2] == 3)) *H = (int)s[0], *W = (int)s[1], *C = (int)s[2];
    else if (r == 2) *H = (int)s[0], *W = (int)s[1], *C = 1;
    else if (r == 1 && side * side == s[0]) *H = *W = (int)side, *C = 1;
    else return nb_set_error(NB_ERR_SHAPE, "image inputs need a model taking (H, W, 1), (H, W, 3), (H, W) or a square "
                                           "number of features");
    return NB_OK;
}

nb_status cli_load_images(const char *path, const nb_model *m, nb_tensor **out)
{
    *out = NULL;
    int H = 0, W = 0, C = 0, n = 0;
    char **names = NULL;
    nb_status s = image_shape(m, &H, &W, &C);
    if (!s) s = list_images(path, &names, &n);
    if (s) return s;
    int64_t shape[8] = {n};
    const int r = nb_model_input_shape(m, shape + 1);
    nb_tensor *x = nb_tensor_new(r + 1, shape);
    if (!x) s = NB_ERR_NOMEM;
    int gray = 0, rgb = 0, resized = 0, w0 = 0, h0 = 0;
    for (int i = 0; i < n && !s; i++) {
        nb_image *im = NULL;
        s = nb_image_read(names[i], &im);
        if (!s) s = nb_image_to_tensor(im, H, W, C, x->data + (int64_t)i * H * W * C);
        if (!s) {
            gray += im->channels == 1, rgb += im->channels == 3;
            resized += im->width != W || im->height != H;
            if (!i) w0 = im->width, h0 = im->height;
        }
        nb_image_free(im);
    }
    if (!s) {
        fprintf(stderr, "nabla: input: %d image%s from '%s' (the first %dx%d; %d gray, %d RGB) as (%d, %d, %d, %d): ", n,
                n == 1 ? "" : "s", path, w0, h0, gray, rgb, n, H, W, C);
        if (resized) fprintf(stderr, "%d resized to %dx%d with a box filter, ", resized, W, H);
        if (C == 1 && rgb) fprintf(stderr, "RGB to gray (luma 0.299 R + 0.587 G + 0.114 B), ");
        if (C == 3 && gray) fprintf(stderr, "gray to RGB, ");
        fprintf(stderr, "pixels 0..255 scaled to [0, 1] as the training data was\n");
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    if (s) {
        nb_tensor_free(x);
        return s;
    }
    *out = x;
    return NB_OK;
}
