/* nabla saliency: test images beside the gradient of the predicted class's
 * logit with respect to each input pixel (one row of the per-example input
 * Jacobian, computed by reverse mode), as a labelled PNG grid. */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_text =
    "usage: nabla saliency --model M.safetensors [--data fashion-mnist] [-o saliency.png] [options]\n"
    "\n"
    "For each of the first COUNT test images, draws the image (gray) beside the map of\n"
    "d z_pred / d x: how the logit of the predicted class changes with each input pixel\n"
    "(the predicted class's row of the input Jacobian, by reverse mode). Red: brightening\n"
    "the pixel raises the logit; blue: lowers it; white: no effect. Each map is scaled to\n"
    "its own largest |gradient|. Under each pair: the true and predicted class.\n"
    "\n"
    "  --model M     a model file written by 'nabla train'\n"
    "  --data D      fashion-mnist (default), mnist or a directory of IDX files (test split)\n"
    "  --count N     number of images (default 16)\n"
    "  --start K     index of the first test image (default 0)\n"
    "  --cols C      pairs per row (default 4)\n"
    "  --scale S     pixels per input pixel (default 4)\n"
    "  -o, --out F   the PNG file (default saliency.png)\n";

static void class_name(const char *data, int64_t k, char *buf, size_t n)
{
    const char *const *names = cli_class_names(data, 10);
    if (names && k >= 0 && k < 10) snprintf(buf, n, "%s", names[k]);
    else snprintf(buf, n, "%lld", (long long)k);
}

int cmd_saliency(int argc, char **argv)
{
    const char *model = NULL, *data = "fashion-mnist", *out = "saliency.png";
    long long count = 16, start = 0, cols = 4, scale = 4;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (!v) return cli_usage_error("saliency", "option '%s' needs a value (see --help)", k);
        i++;
        if (!strcmp(k, "--model")) model = v;
        else if (!strcmp(k, "--data")) data = v;
        else if (!strcmp(k, "-o") || !strcmp(k, "--out")) out = v;
        else if (!strcmp(k, "--count")) {
            if (!cli_parse_int(v, 1, 256, &count)) return cli_usage_error("saliency", "--count must be 1..256, got '%s'", v);
        } else if (!strcmp(k, "--start")) {
            if (!cli_parse_int(v, 0, 1LL << 40, &start)) return cli_usage_error("saliency", "bad --start '%s'", v);
        } else if (!strcmp(k, "--cols")) {
            if (!cli_parse_int(v, 1, 64, &cols)) return cli_usage_error("saliency", "--cols must be 1..64, got '%s'", v);
        } else if (!strcmp(k, "--scale")) {
            if (!cli_parse_int(v, 1, 16, &scale)) return cli_usage_error("saliency", "--scale must be 1..16, got '%s'", v);
        } else
            return cli_usage_error("saliency", "unknown option '%s'", k);
    }
    if (!model) return cli_usage_error("saliency", "%s", "--model is required");

    nb_model *m = NULL;
    nb_dataset d = {0}, sub = {0};
    nb_tensor *J = NULL;
    nb_image **tiles = NULL, *grid = NULL, *pic = NULL;
    int64_t *pred = NULL;
    int rc = 1;
    if (cli_load_trained_model(model, &m)) {
        cli_fail("saliency", "loading the model");
        goto done;
    }
    if (cli_load_data(data, "test", -1, &d)) {
        cli_fail("saliency", "loading the test data");
        goto done;
    }
    if (start >= d.x->shape[0]) {
        fprintf(stderr, "nabla saliency: --start %lld: the test set has %lld images\n", start,
                (long long)d.x->shape[0]);
        goto done;
    }
    if (count > d.x->shape[0] - start) count = d.x->shape[0] - start;
    if (nb_dataset_subset(&d, start, count, &sub)) goto fail;
    const nb_tensor *x = sub.x;
    int64_t in_shape[NB_MAX_RANK];
    int in_rank = nb_model_input_shape(m, in_shape);
    if (x->rank != in_rank + 1 || nb_shape_size(in_rank, in_shape) != x->size / x->shape[0] || in_rank != 3) {
        char s1[96], s2[96];
        fprintf(stderr, "nabla saliency: the model takes images %s but the data has %s (saliency needs H,W,C images)\n",
                nb_shape_str(in_rank, in_shape, s1, sizeof s1), nb_shape_str(x->rank, x->shape, s2, sizeof s2));
        goto done;
    }
    const int64_t H = in_shape[0], W = in_shape[1], C = in_shape[2], N = count, P = H * W * C;
    if (nb_model_set_batch(m, N)) goto fail;
    nb_graph_set_training(nb_model_graph(m), 0, 0);
    memcpy(nb_value(nb_model_input(m))->data, x->data, (size_t)x->size * sizeof(nb_real));
    nb_node *z = nb_model_logits(m);
    if (nb_forward(nb_model_graph(m))) goto fail;
    const nb_tensor *zv = nb_value(z);
    if (zv->rank != 2) {
        fprintf(stderr, "nabla saliency: the model's logits must be (N, classes)\n");
        goto done;
    }
    const int64_t K = zv->shape[1];
    pred = calloc((size_t)N, sizeof *pred);
    if (!pred) goto fail;
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 1; k < K; k++)
            if (zv->data[n * K + k] > zv->data[n * K + pred[n]]) pred[n] = k;
    /* Per-example input Jacobian (N, K, H, W, C): row pred[n] of block n. */
    nb_jacobian_opts jo = {.mode = NB_JAC_REV, .per_example = 1};
    if (nb_jacobian(z, nb_model_input(m), &jo, &J)) goto fail;

    const int S = (int)scale, gap = 4, ts = 2, lh = 10 * ts;
    const int pw = (int)W * S, ph = (int)H * S;
    int cellw = 2 * pw + gap, cellh = ph + 2 * lh + 6;
    if (cellw < 17 * 6 * ts) cellw = 17 * 6 * ts;
    tiles = calloc((size_t)N, sizeof *tiles);
    nb_real *img = malloc((size_t)(H * W) * sizeof *img), *sal = malloc((size_t)(H * W) * sizeof *sal);
    if (!tiles || !img || !sal) {
        free(img), free(sal);
        goto fail;
    }
    static const unsigned char white[3] = {255, 255, 255}, ink[3] = {30, 30, 30}, good[3] = {20, 120, 50},
                               bad[3] = {190, 30, 40};
    nb_status st = NB_OK;
    for (int64_t n = 0; n < N && !st; n++) {
        const nb_real *xs = x->data + n * P, *js = J->data + (n * K + pred[n]) * P;
        double L = 0;
        for (int64_t p = 0; p < H * W; p++) {
            double a = 0, g = 0;
            for (int64_t c = 0; c < C; c++) a += xs[p * C + c], g += js[p * C + c];
            img[p] = (nb_real)(a / (double)C), sal[p] = (nb_real)g;
            L = fmax(L, fabs(g));
        }
        nb_image *a = NULL, *b = NULL;
        st = nb_heatmap(img, H, W, NB_CMAP_GRAY, 0, 1, S, S, &a);
        if (!st) st = nb_heatmap(sal, H, W, NB_CMAP_DIVERGING, -L, L > 0 ? L : 1, S, S, &b);
        if (!st && !(tiles[n] = nb_image_new(cellw, cellh, 3, white))) st = NB_ERR_NOMEM;
        if (!st) {
            nb_image_paste(tiles[n], a, 0, 0);
            nb_image_paste(tiles[n], b, pw + gap, 0);
            char t[64], pn[32];
            class_name(data, (int64_t)sub.y->data[n], pn, sizeof pn);
            snprintf(t, sizeof t, "true %s", pn);
            nb_image_text(tiles[n], 0, ph + 5, t, ts, ink);
            class_name(data, pred[n], pn, sizeof pn);
            snprintf(t, sizeof t, "pred %s", pn);
            nb_image_text(tiles[n], 0, ph + 5 + lh, t, ts, pred[n] == (int64_t)sub.y->data[n] ? good : bad);
        }
        nb_image_free(a);
        nb_image_free(b);
    }
    free(img), free(sal);
    if (st) goto fail;
    static const unsigned char bg[3] = {255, 255, 255};
    if (nb_image_grid(tiles, (int)N, (int)cols, 16, bg, &grid)) goto fail;
    const char *title = "Saliency: d(predicted logit) / d(input pixel)";
    const char *sub1 = "left: the test image; right: the predicted class's row of the input Jacobian";
    const char *sub2 = "red: brightening the pixel raises the logit, blue: lowers it, white: no effect";
    int tw = nb_text_width(title, 3), head, foot = 50;
    int width = grid->width;
    if (width < tw + 32) width = tw + 32;
    if (width < nb_text_width(sub1, 2) + 32) width = nb_text_width(sub1, 2) + 32;
    if (width < nb_text_width(sub2, 2) + 32) width = nb_text_width(sub2, 2) + 32;
    head = 16 + 27 + 10 + 2 * 22;
    pic = nb_image_new(width, head + grid->height + foot, 3, white);
    if (!pic) goto fail;
    nb_image_text(pic, 16, 14, title, 3, ink);
    nb_image_text(pic, 16, 14 + 27 + 8, sub1, 2, ink);
    nb_image_text(pic, 16, 14 + 27 + 8 + 22, sub2, 2, ink);
    nb_image_paste(pic, grid, 0, head);
    int by = head + grid->height + 4;
    nb_image_text(pic, 16, by + 4, "g / max|g| (per map)", 2, ink);
    if (nb_colorbar(pic, 16 + nb_text_width("g / max|g| (per map)", 2) + 16, by, 200, 14, NB_CMAP_DIVERGING,
                    -1, 1, 2))
        goto fail;
    if (nb_image_write_png(out, pic)) {
        cli_fail("saliency", "writing the picture");
        goto done;
    }
    int correct = 0;
    for (int64_t n = 0; n < N; n++) correct += pred[n] == (int64_t)sub.y->data[n];
    printf("saliency of %lld test images (%d predicted correctly): wrote %s (%dx%d)\n", (long long)N, correct, out,
           pic->width, pic->height);
    rc = 0;
    goto done;
fail:
    cli_fail("saliency", NULL);
done:
    if (tiles)
        for (int64_t n = 0; n < count; n++) nb_image_free(tiles[n]);
    free(tiles);
    free(pred);
    nb_image_free(grid);
    nb_image_free(pic);
    nb_tensor_free(J);
    nb_model_free(m);
    nb_dataset_free(&sub);
    nb_dataset_free(&d);
    return rc;
}
