/* nabla saliency: test images (or PNG/JPEG files, --image) beside the
 * gradient of the predicted class's logit with respect to each input pixel
 * (one row of the per-example input Jacobian, computed by reverse mode), as
 * a labelled PNG grid. */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *model, *data, *image, *out;
    long long count, start, cols, scale;
} saliency_args;

#define F(field) offsetof(saliency_args, field)
static const cli_opt saliency_opts[] = {
    {"--model", NULL, CLI_STR, F(model), "M", NULL, "a model file written by 'nabla train'", CLI_REQUIRED, 0, 0, NULL},
    {"--data", NULL, CLI_STR, F(data), "D", NULL,
     "fashion-mnist (the default), mnist or a directory of IDX files (test split)", 0, 0, 0, NULL},
    {"--image", NULL, CLI_STR, F(image), "F", NULL,
     "or a PNG or JPEG file, or a folder of them, fitted to the model's input\n"
     "as predict does (no true class to show)",
     0, 0, 0, NULL},
    {"--count", NULL, CLI_INT, F(count), "N", "16", "number of images", 0, 1, 256, NULL},
    {"--start", NULL, CLI_INT, F(start), "K", "0", "index of the first test image", 0, 0, 1099511627776.0, NULL},
    {"--cols", NULL, CLI_INT, F(cols), "C", "4", "pairs per row", 0, 1, 64, NULL},
    {"--scale", NULL, CLI_INT, F(scale), "S", "4", "pixels per input pixel", 0, 1, 16, NULL},
    {"--out", "-o", CLI_STR, F(out), "F", "saliency.png", "the PNG file", 0, 0, 0, NULL},
};
#undef F

static const cli_spec saliency_spec = {
    "saliency",
    "--model M.safetensors [--data fashion-mnist | --image F] [-o saliency.png] [options]",
    "For each of the first COUNT test images, draws the image (gray) beside the map of\n"
    "d z_pred / d x: how the logit of the predicted class changes with each input pixel\n"
    "(the predicted class's row of the input Jacobian, by reverse mode). Red: brightening\n"
    "the pixel raises the logit; blue: lowers it; white: no effect. Each map is scaled to\n"
    "its own largest |gradient|. Under each pair: the true and predicted class.\n",
    saliency_opts,
    CLI_NOPTS(saliency_opts),
    NULL};

static int parse_args(int argc, char **argv, saliency_args *a)
{
    int rc = cli_parse(&saliency_spec, argc, argv, a);
    if (rc >= 0) return rc;
    if (a->image && a->data) return cli_usage_error("saliency", "%s", "give --data or --image, not both");
    return -1;
}

int cmd_saliency_check_args(int argc, char **argv)
{
    saliency_args a;
    return parse_args(argc, argv, &a);
}

/* Class k by the data set's names (numbers for --image). */
static void class_name(const char *data, int64_t k, char *buf, size_t n)
{
    const char *const *names = data ? cli_class_names(data, 10) : NULL;
    if (names && k >= 0 && k < 10) snprintf(buf, n, "%s", names[k]);
    else snprintf(buf, n, "%lld", (long long)k);
}

typedef struct {
    nb_model *m;
    nb_dataset d, sub;
    nb_tensor *images;  /* --image: the decoded images (N, H, W, C) */
    const nb_tensor *x; /* the images shown: sub.x or images */
    const nb_tensor *y; /* their true classes, or NULL (--image) */
    nb_tensor *J;   /* per-example input Jacobian (N, K, H, W, C) */
    int64_t *pred;  /* the predicted class of each image */
    int64_t N, H, W, C, K;
} saliency_run;

/* --image: the first COUNT images of the file or folder. */
static int load_image_files(const saliency_args *a, saliency_run *r)
{
    if (a->start > 0) {
        fprintf(stderr, "nabla saliency: --start is for --data; with --image the files are shown from the first\n");
        return 2;
    }
    if (cli_load_images(a->image, r->m, &r->images)) return cli_fail("saliency", "loading the images");
    const int64_t N = r->images->shape[0] < a->count ? r->images->shape[0] : a->count;
    const int64_t per = r->images->shape[0] ? r->images->size / r->images->shape[0] : 0;
    r->images->shape[0] = N; /* the first N, in place */
    r->images->size = N * per;
    r->x = r->images;
    r->N = N;
    return 0;
}

/* --data: test examples start..start+count-1 with their labels. */
static int load_test_set(const saliency_args *a, saliency_run *r)
{
    if (cli_load_data(a->data ? a->data : "fashion-mnist", "test", NULL, &r->d))
        return cli_fail("saliency", "loading the test data");
    if (a->start >= r->d.x->shape[0]) {
        fprintf(stderr, "nabla saliency: --start %lld: the test set has %lld images\n", a->start,
                (long long)r->d.x->shape[0]);
        return 1;
    }
    r->N = a->count < r->d.x->shape[0] - a->start ? a->count : r->d.x->shape[0] - a->start;
    if (nb_dataset_subset(&r->d, a->start, r->N, &r->sub)) return cli_fail("saliency", NULL);
    r->x = r->sub.x, r->y = r->sub.y;
    return 0;
}

/* The images, the predicted classes and the per-example Jacobian. */
static int compute(const saliency_args *a, saliency_run *r)
{
    if (cli_load_trained_model(a->model, &r->m)) return cli_fail("saliency", "loading the model");
    int rc = a->image ? load_image_files(a, r) : load_test_set(a, r);
    if (rc) return rc;
    const nb_tensor *x = r->x;
    int64_t in_shape[NB_MAX_RANK];
    int in_rank = nb_model_input_shape(r->m, in_shape);
    if (x->rank != in_rank + 1 || nb_shape_size(in_rank, in_shape) != x->size / x->shape[0] || in_rank != 3) {
        char s1[96], s2[96];
        fprintf(stderr, "nabla saliency: the model takes images %s but the data has %s (saliency needs H,W,C images)\n",
                nb_shape_str(in_rank, in_shape, s1, sizeof s1), nb_shape_str(x->rank, x->shape, s2, sizeof s2));
        return 1;
    }
    r->H = in_shape[0], r->W = in_shape[1], r->C = in_shape[2];
    if (nb_model_set_batch(r->m, r->N)) return cli_fail("saliency", NULL);
    nb_graph_set_training(nb_model_graph(r->m), 0, 0);
    memcpy(nb_value(nb_model_input(r->m))->data, x->data, (size_t)x->size * sizeof(nb_real));
    nb_node *z = nb_model_logits(r->m);
    if (nb_forward(nb_model_graph(r->m))) return cli_fail("saliency", NULL);
    const nb_tensor *zv = nb_value(z);
    if (zv->rank != 2) {
        fprintf(stderr, "nabla saliency: the model's logits must be (N, classes)\n");
        return 1;
    }
    r->K = zv->shape[1];
    if (r->y && nb_check_class_labels("the test labels", r->y->data, r->N, r->K)) {
        fprintf(stderr, "nabla saliency: %s (the model's outputs are its classes)\n", nb_last_error());
        return 1; /* (a "true" class the model does not have would be drawn under its image) */
    }
    if (!(r->pred = calloc((size_t)r->N, sizeof *r->pred))) return cli_fail("saliency", NULL);
    for (int64_t n = 0; n < r->N; n++)
        for (int64_t k = 1; k < r->K; k++)
            if (zv->data[n * r->K + k] > zv->data[n * r->K + r->pred[n]]) r->pred[n] = k;
    /* Per-example input Jacobian (N, K, H, W, C): row pred[n] of block n. */
    nb_jacobian_opts jo = {.mode = NB_JAC_REV, .per_example = 1};
    if (nb_jacobian(z, nb_model_input(r->m), &jo, &r->J)) return cli_fail("saliency", NULL);
    return 0;
}

static const unsigned char white[3] = {255, 255, 255}, ink[3] = {30, 30, 30};

/* Image n beside its saliency map, with the true and predicted class. */
static nb_status draw_tile(const saliency_args *a, const saliency_run *r, int64_t n, nb_real *img, nb_real *sal,
                           nb_image **tile)
{
    static const unsigned char good[3] = {20, 120, 50}, bad[3] = {190, 30, 40};
    const int64_t H = r->H, W = r->W, C = r->C, P = H * W * C;
    const int S = (int)a->scale, gap = 4, ts = 2, lh = 10 * ts, pw = (int)W * S, ph = (int)H * S;
    int cellw = 2 * pw + gap, cellh = ph + 2 * lh + 6;
    if (cellw < 17 * 6 * ts) cellw = 17 * 6 * ts;
    const nb_real *xs = r->x->data + n * P, *js = r->J->data + (n * r->K + r->pred[n]) * P;
    double L = 0;
    for (int64_t p = 0; p < H * W; p++) {
        double v = 0, g = 0;
        for (int64_t c = 0; c < C; c++) v += xs[p * C + c], g += js[p * C + c];
        img[p] = (nb_real)(v / (double)C), sal[p] = (nb_real)g;
        L = fmax(L, fabs(g));
    }
    nb_image *left = NULL, *right = NULL;
    nb_status st = nb_heatmap(img, H, W, NB_CMAP_GRAY, 0, 1, S, S, &left);
    if (!st) st = nb_heatmap(sal, H, W, NB_CMAP_DIVERGING, -L, L > 0 ? L : 1, S, S, &right);
    if (!st && !(*tile = nb_image_new(cellw, cellh, 3, white))) st = NB_ERR_NOMEM;
    if (!st) {
        nb_image_paste(*tile, left, 0, 0);
        nb_image_paste(*tile, right, pw + gap, 0);
        char t[64], pn[32];
        const char *names = a->image ? NULL : a->data ? a->data : "fashion-mnist";
        const int64_t truth = r->y ? (int64_t)r->y->data[n] : -1;
        if (r->y) {
            class_name(names, truth, pn, sizeof pn);
            snprintf(t, sizeof t, "true %s", pn);
        } else {
            snprintf(t, sizeof t, "image %lld", (long long)n);
        }
        nb_image_text(*tile, 0, ph + 5, t, ts, ink);
        class_name(names, r->pred[n], pn, sizeof pn);
        snprintf(t, sizeof t, "pred %s", pn);
        nb_image_text(*tile, 0, ph + 5 + lh, t, ts, !r->y ? ink : r->pred[n] == truth ? good : bad);
    }
    nb_image_free(left);
    nb_image_free(right);
    return st;
}

/* The grid of tiles under a title and over a colour bar. */
static nb_status frame_picture(const nb_image *grid, nb_image **pic)
{
    const char *title = "Saliency: d(predicted logit) / d(input pixel)";
    const char *sub1 = "left: the test image; right: the predicted class's row of the input Jacobian";
    const char *sub2 = "red: brightening the pixel raises the logit, blue: lowers it, white: no effect";
    const char *bar = "g / max|g| (per map)";
    int width = grid->width, head = 16 + 27 + 10 + 2 * 22, foot = 50;
    if (width < nb_text_width(title, 3) + 32) width = nb_text_width(title, 3) + 32;
    if (width < nb_text_width(sub1, 2) + 32) width = nb_text_width(sub1, 2) + 32;
    if (width < nb_text_width(sub2, 2) + 32) width = nb_text_width(sub2, 2) + 32;
    if (!(*pic = nb_image_new(width, head + grid->height + foot, 3, white))) return NB_ERR_NOMEM;
    nb_image_text(*pic, 16, 14, title, 3, ink);
    nb_image_text(*pic, 16, 14 + 27 + 8, sub1, 2, ink);
    nb_image_text(*pic, 16, 14 + 27 + 8 + 22, sub2, 2, ink);
    nb_image_paste(*pic, grid, 0, head);
    int by = head + grid->height + 4;
    nb_image_text(*pic, 16, by + 4, bar, 2, ink);
    return nb_colorbar(*pic, 16 + nb_text_width(bar, 2) + 16, by, 200, 14, NB_CMAP_DIVERGING, -1, 1, 2);
}

/* The tiles, the grid and the framed picture, written as PNG. */
static int render(const saliency_args *a, const saliency_run *r)
{
    nb_image **tiles = calloc((size_t)r->N, sizeof *tiles), *grid = NULL, *pic = NULL;
    nb_real *img = malloc((size_t)(r->H * r->W) * sizeof *img), *sal = malloc((size_t)(r->H * r->W) * sizeof *sal);
    nb_status st = tiles && img && sal ? NB_OK : nb_set_error(NB_ERR_NOMEM, "out of memory");
    for (int64_t n = 0; n < r->N && !st; n++) st = draw_tile(a, r, n, img, sal, &tiles[n]);
    if (!st) st = nb_image_grid(tiles, (int)r->N, (int)a->cols, 16, white, &grid);
    if (!st) st = frame_picture(grid, &pic);
    int rc = st ? cli_fail("saliency", NULL) : 0;
    if (!rc && nb_image_write_png(a->out, pic)) rc = cli_fail("saliency", "writing the picture");
    if (!rc && r->y) {
        int correct = 0;
        for (int64_t n = 0; n < r->N; n++)
            correct += r->pred[n] == (int64_t)r->y->data[n];
        printf("saliency of %lld test images (%d predicted correctly): wrote %s (%dx%d)\n", (long long)r->N, correct,
               a->out, pic->width, pic->height);
    } else if (!rc) {
        printf("saliency of %lld images from %s (predicted", (long long)r->N, a->image);
        for (int64_t n = 0; n < r->N && n < 16; n++)
            printf(" %lld", (long long)r->pred[n]);
        printf("%s): wrote %s (%dx%d)\n", r->N > 16 ? " ..." : "", a->out, pic->width, pic->height);
    }
    for (int64_t n = 0; tiles && n < r->N; n++) nb_image_free(tiles[n]);
    free(tiles), free(img), free(sal);
    nb_image_free(grid);
    nb_image_free(pic);
    return rc;
}

int cmd_saliency(int argc, char **argv)
{
    saliency_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;
    saliency_run r = {0};
    rc = compute(&a, &r);
    if (!rc) rc = render(&a, &r);
    free(r.pred);
    nb_tensor_free(r.J);
    nb_tensor_free(r.images);
    nb_model_free(r.m);
    nb_dataset_free(&r.sub);
    nb_dataset_free(&r.d);
    return rc;
}
