/* nabla filters: the kernels of a convolution layer as a labelled PNG, one
 * tile per (output channel, input channel) pair, in a diverging colour map
 * shared by all tiles (white = 0, red = positive, blue = negative). */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_text =
    "usage: nabla filters --model M.safetensors [-o filters.png] [--layer I] [--scale S]\n"
    "\n"
    "Draws the kernel K (f, f, C_in, C_out) of the first convolution layer (or of layer I)\n"
    "as C_out x C_in small images, one per output channel and input channel, all on one\n"
    "colour scale: red weights are positive, blue negative, white zero. A filter responds\n"
    "most to input patches that look like its red pixels and unlike its blue ones.\n"
    "\n"
    "  --model M     a model file written by 'nabla train'\n"
    "  --layer I     the layer index (as in 'nabla summary'; default: the first conv2d)\n"
    "  --cols C      tiles per row (default 8)\n"
    "  --scale S     pixels per kernel weight (default: tiles about 64 pixels wide)\n"
    "  -o, --out F   the PNG file (default filters.png)\n";

int cmd_filters(int argc, char **argv)
{
    const char *model = NULL, *out = "filters.png";
    long long layer = -1, cols = 8, scale = 0;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (!v) return cli_usage_error("filters", "option '%s' needs a value (see --help)", k);
        i++;
        if (!strcmp(k, "--model")) model = v;
        else if (!strcmp(k, "-o") || !strcmp(k, "--out")) out = v;
        else if (!strcmp(k, "--layer")) {
            if (!cli_parse_int(v, 0, 1 << 20, &layer)) return cli_usage_error("filters", "bad --layer '%s'", v);
        } else if (!strcmp(k, "--cols")) {
            if (!cli_parse_int(v, 1, 256, &cols)) return cli_usage_error("filters", "--cols must be 1..256, got '%s'", v);
        } else if (!strcmp(k, "--scale")) {
            if (!cli_parse_int(v, 1, 64, &scale)) return cli_usage_error("filters", "--scale must be 1..64, got '%s'", v);
        } else
            return cli_usage_error("filters", "unknown option '%s'", k);
    }
    if (!model) return cli_usage_error("filters", "%s", "--model is required");

    nb_model *m = NULL;
    nb_image **tiles = NULL, *grid = NULL, *pic = NULL;
    nb_real *w = NULL;
    int64_t ntiles = 0;
    int rc = 1;
    if (cli_load_trained_model(model, &m)) {
        cli_fail("filters", "loading the model");
        goto done;
    }
    if (layer < 0) {
        for (int i = 0; i < nb_model_num_layers(m) && layer < 0; i++)
            if (nb_model_layer(m, i)->kind == NB_LAYER_CONV2D) layer = i;
        if (layer < 0) {
            fprintf(stderr, "nabla filters: the model '%s' has no conv2d layer (spec: %s)\n", model, nb_model_spec(m));
            goto done;
        }
    } else if (layer >= nb_model_num_layers(m) || nb_model_layer(m, (int)layer)->kind != NB_LAYER_CONV2D) {
        fprintf(stderr, "nabla filters: --layer %lld is not a conv2d layer of '%s' (spec: %s)\n", layer, model,
                nb_model_spec(m));
        goto done;
    }
    char pname[32];
    snprintf(pname, sizeof pname, "%lld.kernel", layer);
    nb_node *kn = nb_model_find_param(m, pname);
    if (!kn) {
        fprintf(stderr, "nabla filters: the model has no parameter %s\n", pname);
        goto done;
    }
    const nb_tensor *K = nb_value(kn);
    const int64_t fh = K->shape[0], fw = K->shape[1], Ci = K->shape[2], Co = K->shape[3];
    double L = 0;
    for (int64_t i = 0; i < K->size; i++) L = fmax(L, fabs(K->data[i]));
    if (L == 0) L = 1;
    int S = scale ? (int)scale : (int)(64 / (fw > fh ? fw : fh));
    if (S < 1) S = 1;
    ntiles = Co * Ci;
    if (ntiles > 4096) {
        fprintf(stderr, "nabla filters: %lld kernels are too many to draw (at most 4096)\n", (long long)ntiles);
        goto done;
    }
    tiles = calloc((size_t)ntiles, sizeof *tiles);
    w = malloc((size_t)(fh * fw) * sizeof *w);
    if (!tiles || !w) goto fail;
    static const unsigned char white[3] = {255, 255, 255}, ink[3] = {30, 30, 30}, frame[3] = {170, 170, 170};
    const int ts = 2, lh = 9 * ts + 2;
    for (int64_t o = 0; o < Co; o++)
        for (int64_t c = 0; c < Ci; c++) {
            for (int64_t p = 0; p < fh * fw; p++) w[p] = K->data[(p * Ci + c) * Co + o];
            nb_image *h = NULL;
            if (nb_heatmap(w, fh, fw, NB_CMAP_DIVERGING, -L, L, S, S, &h)) goto fail;
            char label[48];
            if (Ci > 1) snprintf(label, sizeof label, "%lld/%lld", (long long)o, (long long)c);
            else snprintf(label, sizeof label, "%lld", (long long)o);
            int tw = nb_text_width(label, ts), cw = h->width + 2 > tw ? h->width + 2 : tw;
            nb_image *t = nb_image_new(cw, lh + h->height + 2, 3, white);
            if (!t) {
                nb_image_free(h);
                goto fail;
            }
            nb_image_text(t, (cw - tw) / 2, 0, label, ts, ink);
            nb_image_fill_rect(t, (cw - h->width - 2) / 2, lh, h->width + 2, h->height + 2, frame);
            nb_image_paste(t, h, (cw - h->width - 2) / 2 + 1, lh + 1);
            nb_image_free(h);
            tiles[o * Ci + c] = t;
        }
    if (nb_image_grid(tiles, (int)ntiles, (int)cols, 12, white, &grid)) goto fail;
    char title[128], sub[160];
    snprintf(title, sizeof title, "Layer %lld kernels: %lldx%lldx%lldx%lld", layer, (long long)fh, (long long)fw,
             (long long)Ci, (long long)Co);
    snprintf(sub, sizeof sub, Ci > 1 ? "tile o/c: output channel o, input channel c" : "tile o: output channel o");
    int width = grid->width, tw = nb_text_width(title, 3) + 32;
    if (width < tw) width = tw;
    if (width < 360) width = 360;
    const int head = 14 + 21 + 10 + 18 + 6, foot = 56;
    pic = nb_image_new(width, head + grid->height + foot, 3, white);
    if (!pic) goto fail;
    nb_image_text(pic, 16, 14, title, 3, ink);
    nb_image_text(pic, 16, 14 + 21 + 10, sub, 2, ink);
    nb_image_paste(pic, grid, 0, head);
    int by = head + grid->height + 6;
    nb_image_text(pic, 16, by + 1, "weight", 2, ink);
    if (nb_colorbar(pic, 16 + nb_text_width("weight", 2) + 16, by, 220, 14, NB_CMAP_DIVERGING, -L, L, 2)) goto fail;
    if (nb_image_write_png(out, pic)) {
        cli_fail("filters", "writing the picture");
        goto done;
    }
    printf("filters of layer %lld (%s, kernel %lldx%lldx%lldx%lld, max |w| %.4g): wrote %s (%dx%d)\n", layer,
           pname, (long long)fh, (long long)fw, (long long)Ci, (long long)Co, L, out, pic->width, pic->height);
    rc = 0;
    goto done;
fail:
    cli_fail("filters", NULL);
done:
    if (tiles)
        for (int64_t i = 0; i < ntiles; i++) nb_image_free(tiles[i]);
    free(tiles);
    free(w);
    nb_image_free(grid);
    nb_image_free(pic);
    nb_model_free(m);
    return rc;
}
