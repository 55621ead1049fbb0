/* nabla filters: the kernels of a convolution layer as a labelled PNG, one
 * tile per (output channel, input channel) pair, in a diverging colour map
 * shared by all tiles (white = 0, red = positive, blue = negative). */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *model, *out;
    long long layer, cols, scale;
} filters_args;

#define F(field) offsetof(filters_args, field)
static const cli_opt filters_opts[] = {
    {"--model", NULL, CLI_STR, F(model), "M", NULL, "a model file written by 'nabla train'", CLI_REQUIRED, 0, 0, NULL},
    {"--layer", NULL, CLI_INT, F(layer), "I", NULL, "the layer index (as in 'nabla summary'; default: the first conv2d)", 0,
     0, 1 << 20, NULL},
    {"--cols", NULL, CLI_INT, F(cols), "C", "8", "tiles per row (a one-channel input; else one column per input channel)",
     0, 1, 256, NULL},
    {"--scale", NULL, CLI_INT, F(scale), "S", NULL, "pixels per kernel weight (default: tiles about 64 pixels wide)", 0, 1,
     64, NULL},
    {"--out", "-o", CLI_STR, F(out), "F", "filters.png", "the PNG file", 0, 0, 0, NULL},
};
#undef F

static const cli_spec filters_spec = {
    "filters", "--model M.safetensors [-o filters.png] [--layer I] [--scale S]",
    "Draws the kernel K (f, f, C_in, C_out) of the first convolution layer (or of layer I)\n"
    "as C_out x C_in small images, one per output channel (row) and input channel (column),\n"
    "sized to fit (--scale to choose), all on one\n"
    "colour scale: red weights are positive, blue negative, white zero. A filter responds\n"
    "most to input patches that look like its red pixels and unlike its blue ones.\n",
    filters_opts, CLI_NOPTS(filters_opts), NULL};

static int parse_args(int argc, char **argv, filters_args *a)
{
    *a = (filters_args){.layer = -1};
    return cli_parse(&filters_spec, argc, argv, a);
}

int cmd_filters_check_args(int argc, char **argv)
{
    filters_args a;
    return parse_args(argc, argv, &a);
}

static const unsigned char white[3] = {255, 255, 255}, ink[3] = {30, 30, 30};

/* The kernel of --layer (or of the first conv2d); its layer index in *layer. */
static const nb_tensor *find_kernel(const filters_args *a, nb_model *m, long long *layer)
{
    *layer = a->layer;
    if (*layer < 0) {
        for (int i = 0; i < nb_model_num_layers(m) && *layer < 0; i++)
            if (nb_model_layer(m, i)->kind == NB_LAYER_CONV2D) *layer = i;
        if (*layer < 0) {
            fprintf(stderr, "nabla filters: the model '%s' has no conv2d layer (spec: %s)\n", a->model,
                    nb_model_spec(m));
            return NULL;
        }
    } else if (*layer >= nb_model_num_layers(m) || nb_model_layer(m, (int)*layer)->kind != NB_LAYER_CONV2D) {
        fprintf(stderr, "nabla filters: --layer %lld is not a conv2d layer of '%s' (spec: %s)\n", *layer, a->model,
                nb_model_spec(m));
        return NULL;
    }
    char pname[32];
    snprintf(pname, sizeof pname, "%lld.kernel", *layer);
    nb_node *kn = nb_model_find_param(m, pname);
    if (!kn) fprintf(stderr, "nabla filters: the model has no parameter %s\n", pname);
    return kn ? nb_value(kn) : NULL;
}

/* Kernel o of K (fh, fw, 1, Co) as a framed, labelled heatmap tile on [-L, L]. */
static nb_status draw_tile(const nb_tensor *K, int64_t o, double L, int S, nb_real *w, nb_image **tile)
{
    static const unsigned char frame[3] = {170, 170, 170};
    const int64_t fh = K->shape[0], fw = K->shape[1], Co = K->shape[3];
    const int ts = 2, lh = 9 * ts + 2;
    for (int64_t p = 0; p < fh * fw; p++) w[p] = K->data[p * Co + o];
    nb_image *h = NULL;
    nb_status st = nb_heatmap(w, fh, fw, NB_CMAP_DIVERGING, -L, L, S, S, &h);
    if (st) return st;
    char label[24];
    snprintf(label, sizeof label, "%lld", (long long)o);
    int tw = nb_text_width(label, ts), cw = h->width + 2 > tw ? h->width + 2 : tw;
    nb_image *t = nb_image_new(cw, lh + h->height + 2, 3, white);
    if (t) {
        nb_image_text(t, (cw - tw) / 2, 0, label, ts, ink);
        nb_image_fill_rect(t, (cw - h->width - 2) / 2, lh, h->width + 2, h->height + 2, frame);
        nb_image_paste(t, h, (cw - h->width - 2) / 2 + 1, lh + 1);
    }
    nb_image_free(h);
    *tile = t;
    return t ? NB_OK : nb_set_error(NB_ERR_NOMEM, "out of memory");
}

/* The grid of tiles under a title and over a colour bar. */
static nb_status frame_picture(const nb_image *grid, const nb_tensor *K, long long layer, double L, nb_image **pic)
{
    char title[128], sub[160];
    snprintf(title, sizeof title, "Layer %lld kernels: %lldx%lldx%lldx%lld", layer, (long long)K->shape[0],
             (long long)K->shape[1], (long long)K->shape[2], (long long)K->shape[3]);
    snprintf(sub, sizeof sub, K->shape[2] > 1 ? "row o: output channel o, column c: input channel c"
                                              : "tile o: output channel o");
    int width = grid->width, tw = nb_text_width(title, 3) + 32, sw = nb_text_width(sub, 2) + 32;
    if (width < tw) width = tw;
    if (width < sw) width = sw; /* nothing cut off at the right */
    if (width < 360) width = 360;
    const int head = 14 + 21 + 10 + 18 + 6, foot = 56;
    if (!(*pic = nb_image_new(width, head + grid->height + foot, 3, white))) return NB_ERR_NOMEM;
    nb_image_text(*pic, 16, 14, title, 3, ink);
    nb_image_text(*pic, 16, 14 + 21 + 10, sub, 2, ink);
    nb_image_paste(*pic, grid, 0, head);
    int by = head + grid->height + 6;
    nb_image_text(*pic, 16, by + 1, "weight", 2, ink);
    return nb_colorbar(*pic, 16 + nb_text_width("weight", 2) + 16, by, 220, 14, NB_CMAP_DIVERGING, -L, L, 2);
}

/* Pixels per weight: --scale, else tiles about 64 pixels wide, shrunk so a
 * matrix of rows x cols tiles (plus labels) fits 4096 pixels a side. */
static int tile_scale(const filters_args *a, int64_t fh, int64_t fw, int64_t rows, int64_t cols)
{
    if (a->scale) return (int)a->scale;
    const int64_t f = fw > fh ? fw : fh;
    int64_t S = 64 / f, by_w = ((4000 - 64) / cols - 6) / fw, by_h = ((4000 - 64) / rows - 6) / fh;
    if (by_w < S) S = by_w;
    if (by_h < S) S = by_h;
    return S < 1 ? 1 : (int)S;
}

/* C_in == 1: one labelled tile per output channel, --cols per row. */
static nb_status tiles_grid(const filters_args *a, const nb_tensor *K, double L, nb_image **grid)
{
    const int64_t fh = K->shape[0], fw = K->shape[1], Co = K->shape[3];
    const int S = tile_scale(a, fh, fw, (Co + a->cols - 1) / a->cols, a->cols);
    nb_image **tiles = calloc((size_t)Co, sizeof *tiles);
    nb_real *w = malloc((size_t)(fh * fw) * sizeof *w);
    nb_status st = tiles && w ? NB_OK : nb_set_error(NB_ERR_NOMEM, "out of memory");
    for (int64_t o = 0; o < Co && !st; o++) st = draw_tile(K, o, L, S, w, &tiles[o]);
    if (!st) st = nb_image_grid(tiles, (int)Co, (int)a->cols, 12, white, grid);
    for (int64_t o = 0; tiles && o < Co; o++) nb_image_free(tiles[o]);
    free(tiles);
    free(w);
    return st;
}

/* Labels along one axis of the matrix: index i at offset first + i * cell,
 * every step-th one so that neighbours do not overlap. */
static void axis_labels(nb_image *im, int64_t n, int first, int cell, int fixed, int horizontal)
{
    char t[24];
    snprintf(t, sizeof t, "%lld", (long long)(n - 1));
    const int need = (horizontal ? nb_text_width(t, 2) : 20) + 4;
    const int64_t step = cell >= need ? 1 : (need + cell - 1) / cell;
    for (int64_t i = 0; i < n; i += step) {
        snprintf(t, sizeof t, "%lld", (long long)i);
        const int tw = nb_text_width(t, 2);
        if (horizontal) nb_image_text(im, first + (int)i * cell + (cell - tw) / 2, fixed, t, 2, ink);
        else nb_image_text(im, fixed - tw, first + (int)i * cell + (cell - 18) / 2, t, 2, ink);
    }
}

/* C_in > 1: a matrix, row o = output channel, column c = input channel,
 * labelled once along each side (no label per tile). */
static nb_status matrix_grid(const filters_args *a, const nb_tensor *K, double L, nb_image **grid)
{
    static const unsigned char frame[3] = {170, 170, 170};
    const int64_t fh = K->shape[0], fw = K->shape[1], Ci = K->shape[2], Co = K->shape[3];
    const int S = tile_scale(a, fh, fw, Co, Ci), gap = S >= 4 ? 4 : 2;
    const int cw = (int)fw * S + 2 + gap, ch = (int)fh * S + 2 + gap, left = 48, top = 26;
    if ((int64_t)cw * Ci + left > 16000 || (int64_t)ch * Co + top > 16000)
        return nb_set_error(NB_ERR_TOO_LARGE, "%lld x %lld kernels at --scale %d do not fit 16000 pixels a side: "
                                              "give a smaller --scale", (long long)Co, (long long)Ci, S);
    nb_image *g = nb_image_new(left + cw * (int)Ci + gap, top + ch * (int)Co + gap, 3, white);
    nb_real *w = malloc((size_t)(fh * fw) * sizeof *w);
    nb_status st = g && w ? NB_OK : nb_set_error(NB_ERR_NOMEM, "out of memory");
    for (int64_t o = 0; o < Co && !st; o++)
        for (int64_t c = 0; c < Ci && !st; c++) {
            for (int64_t p = 0; p < fh * fw; p++) w[p] = K->data[(p * Ci + c) * Co + o];
            nb_image *h = NULL;
            if ((st = nb_heatmap(w, fh, fw, NB_CMAP_DIVERGING, -L, L, S, S, &h))) break;
            const int x = left + (int)c * cw + gap, y = top + (int)o * ch + gap;
            nb_image_fill_rect(g, x, y, h->width + 2, h->height + 2, frame);
            nb_image_paste(g, h, x + 1, y + 1);
            nb_image_free(h);
        }
    free(w);
    if (!st) {
        axis_labels(g, Ci, left + gap, cw, 4, 1);
        axis_labels(g, Co, top + gap, ch, left - 6, 0);
    }
    if (st) nb_image_free(g), g = NULL;
    *grid = g;
    return st;
}

/* All C_out x C_in kernels on one scale, the picture, written as PNG. */
static int render(const filters_args *a, const nb_tensor *K, long long layer)
{
    const int64_t fh = K->shape[0], fw = K->shape[1], Ci = K->shape[2], Co = K->shape[3];
    if (Co * Ci > 65536) {
        fprintf(stderr, "nabla filters: %lld kernels are too many to draw (at most 65536)\n", (long long)(Co * Ci));
        return 1;
    }
    double L = 0;
    for (int64_t i = 0; i < K->size; i++) L = fmax(L, fabs(K->data[i]));
    if (L == 0) L = 1;
    nb_image *grid = NULL, *pic = NULL;
    nb_status st = Ci > 1 ? matrix_grid(a, K, L, &grid) : tiles_grid(a, K, L, &grid);
    if (!st) st = frame_picture(grid, K, layer, L, &pic);
    int rc = st ? cli_fail("filters", NULL) : 0;
    if (!rc && nb_image_write_png(a->out, pic)) rc = cli_fail("filters", "writing the picture");
    if (!rc)
        printf("filters of layer %lld (%lld.kernel, kernel %lldx%lldx%lldx%lld, max |w| %.4g): wrote %s (%dx%d)\n",
               layer, layer, (long long)fh, (long long)fw, (long long)Ci, (long long)Co, L, a->out, pic->width,
               pic->height);
    nb_image_free(grid);
    nb_image_free(pic);
    return rc;
}

int cmd_filters(int argc, char **argv)
{
    filters_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;
    nb_model *m = NULL;
    long long layer = -1;
    const nb_tensor *K = NULL;
    if (cli_load_trained_model(a.model, &m)) rc = cli_fail("filters", "loading the model");
    else if (!(K = find_kernel(&a, m, &layer))) rc = 1;
    else rc = render(&a, K, layer);
    nb_model_free(m);
    return rc;
}
