/* Images in memory, colour maps, heatmaps, grids and colour bars. */
#include "../core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Largest side of an image made here: keeps width * height * 3 far from
 * overflow and pictures viewable. */
#define NB_IMAGE_MAX_SIDE 16384
/* Largest coordinate, size or scale nb_colorbar takes (2^24). */
#define NB_COLORBAR_MAX (1 << 24)

nb_image *nb_image_new(int width, int height, int channels, const unsigned char rgb[3])
{
    if (width < 1 || height < 1 || width > NB_IMAGE_MAX_SIDE || height > NB_IMAGE_MAX_SIDE) {
        nb_fail(NB_ERR_TOO_LARGE, "image: size %dx%d out of range 1..%d per side", width, height, NB_IMAGE_MAX_SIDE);
        return NULL;
    }
    if (channels != 1 && channels != 3) {
        nb_fail(NB_ERR_ARG, "image: channels must be 1 (gray) or 3 (RGB), got %d", channels);
        return NULL;
    }
    nb_image *im = calloc(1, sizeof *im);
    size_t n = (size_t)width * (size_t)height * (size_t)channels;
    if (im) im->pixels = malloc(n);
    if (!im || !im->pixels) {
        free(im);
        nb_fail(NB_ERR_NOMEM, "image: out of memory for %dx%d", width, height);
        return NULL;
    }
    im->width = width, im->height = height, im->channels = channels;
    static const unsigned char white[3] = {255, 255, 255};
    if (!rgb) rgb = white;
    if (channels == 1) memset(im->pixels, rgb[0], n);
    else
        for (size_t i = 0; i < n; i += 3) im->pixels[i] = rgb[0], im->pixels[i + 1] = rgb[1], im->pixels[i + 2] = rgb[2];
    return im;
}

void nb_image_free(nb_image *im)
{
    if (!im) return;
    free(im->pixels);
    free(im);
}

/* Piecewise-linear colour maps: anchors at evenly spaced t. The diverging
 * one runs through light tints to pure white at its centre so that zero
 * reads as "nothing" and small values stay visible but faint. */
static const unsigned char diverging[5][3] = {
    {30, 90, 180}, {140, 185, 230}, {255, 255, 255}, {240, 150, 120}, {180, 30, 40}};
static const unsigned char sequential[5][3] = {
    {45, 20, 85}, {50, 85, 160}, {30, 150, 150}, {115, 195, 85}, {250, 230, 60}};

void nb_colormap_rgb(nb_colormap map, double t, unsigned char rgb[3])
{
    if (isnan(t)) {
        rgb[0] = rgb[1] = rgb[2] = 128;
        return;
    }
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    if (map == NB_CMAP_GRAY) {
        rgb[0] = rgb[1] = rgb[2] = (unsigned char)lround(255 * t);
        return;
    }
    const unsigned char(*a)[3] = map == NB_CMAP_SEQUENTIAL ? sequential : diverging;
    double p = t * 4;
    int k = p >= 4 ? 3 : (int)p;
    double f = p - k;
    for (int c = 0; c < 3; c++) rgb[c] = (unsigned char)lround(a[k][c] + f * (a[k + 1][c] - a[k][c]));
}

/* Value v to t in [0, 1] for a map over [lo, hi] (see nabla.h). */
static double value_to_t(nb_colormap map, double v, double lo, double hi)
{
    if (map == NB_CMAP_DIVERGING) {
        double L = fmax(fabs(lo), fabs(hi));
        return L > 0 ? 0.5 + 0.5 * v / L : 0.5;
    }
    return hi > lo ? (v - lo) / (hi - lo) : 0.5;
}

nb_status nb_heatmap(const nb_real *data, int64_t rows, int64_t cols, nb_colormap map, double lo, double hi,
                     int sx, int sy, nb_image **out)
{
    if (!out) return nb_fail(NB_ERR_ARG, "heatmap: NULL output");
    *out = NULL;
    if (!data) return nb_fail(NB_ERR_ARG, "heatmap: NULL data");
    if (sx < 1) sx = 1;
    if (sy < 1) sy = 1;
    if (rows < 1 || cols < 1)
        return nb_fail(NB_ERR_ARG,
                       "heatmap: %lld rows x %lld columns: nothing to draw (pass at least 1 row and 1 column)",
                       (long long)rows, (long long)cols);
    if (cols > NB_IMAGE_MAX_SIDE / sx || rows > NB_IMAGE_MAX_SIDE / sy)
        return nb_fail(NB_ERR_TOO_LARGE, "heatmap: %lldx%lld values at %dx%d pixels each exceed the %d-pixel limit",
                       (long long)rows, (long long)cols, sx, sy, NB_IMAGE_MAX_SIDE);
    if (!(lo < hi)) {
        lo = INFINITY, hi = -INFINITY;
        for (int64_t i = 0; i < rows * cols; i++)
            if (isfinite(data[i])) lo = fmin(lo, data[i]), hi = fmax(hi, data[i]);
        if (!(lo <= hi)) lo = hi = 0;
    }
    nb_image *im = nb_image_new((int)(cols * sx), (int)(rows * sy), 3, NULL);
    if (!im) return NB_ERR_NOMEM;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            unsigned char rgb[3];
            nb_colormap_rgb(map, value_to_t(map, data[r * cols + c], lo, hi), rgb);
            for (int y = 0; y < sy; y++) {
                unsigned char *p = im->pixels + (((size_t)(r * sy + y) * (size_t)im->width) + (size_t)(c * sx)) * 3;
                for (int x = 0; x < sx; x++, p += 3) p[0] = rgb[0], p[1] = rgb[1], p[2] = rgb[2];
            }
        }
    *out = im;
    return NB_OK;
}

/* The half-open range [lo, hi) of 0..limit covered by a span of len starting
 * at start, in 64 bits so that no int sum can overflow; empty when lo >= hi. */
static void clip_span(int start, int64_t len, int limit, int *lo, int *hi)
{
    int64_t a = start, b = (int64_t)start + len;
    *lo = (int)(a < 0 ? 0 : a > limit ? limit : a);
    *hi = (int)(b < 0 ? 0 : b > limit ? limit : b);
}

void nb_image_paste(nb_image *dst, const nb_image *src, int x, int y)
{
    if (!dst || !src) return;
    int x0, x1, y0, y1;
    clip_span(x, src->width, dst->width, &x0, &x1);
    clip_span(y, src->height, dst->height, &y0, &y1);
    for (int dy = y0; dy < y1; dy++) {
        int64_t r = (int64_t)dy - y;
        for (int dx = x0; dx < x1; dx++) {
            int64_t c = (int64_t)dx - x;
            const unsigned char *s = src->pixels + ((size_t)r * (size_t)src->width + (size_t)c) * (size_t)src->channels;
            unsigned char *d = dst->pixels + ((size_t)dy * (size_t)dst->width + (size_t)dx) * (size_t)dst->channels;
            if (dst->channels == src->channels) memcpy(d, s, (size_t)src->channels);
            else if (dst->channels == 3) d[0] = d[1] = d[2] = s[0];
            else d[0] = (unsigned char)((s[0] * 30 + s[1] * 59 + s[2] * 11) / 100);
        }
    }
}

void nb_image_fill_rect(nb_image *im, int x, int y, int w, int h, const unsigned char rgb[3])
{
    if (!im || !rgb || w <= 0 || h <= 0) return;
    int x0, x1, y0, y1;
    clip_span(x, w, im->width, &x0, &x1);
    clip_span(y, h, im->height, &y0, &y1);
    for (int r = y0; r < y1; r++)
        for (int c = x0; c < x1; c++) {
            unsigned char *d = im->pixels + ((size_t)r * (size_t)im->width + (size_t)c) * (size_t)im->channels;
            if (im->channels == 3) d[0] = rgb[0], d[1] = rgb[1], d[2] = rgb[2];
            else d[0] = rgb[0];
        }
}

nb_status nb_image_grid(nb_image *const *tiles, int ntiles, int ncols, int gap, const unsigned char bg[3],
                        nb_image **out)
{
    if (!out) return nb_fail(NB_ERR_ARG, "image_grid: NULL output");
    *out = NULL;
    if (!tiles || ntiles < 1) return nb_fail(NB_ERR_ARG, "image_grid: no tiles");
    if (ncols < 1) ncols = ntiles;
    if (ncols > ntiles) ncols = ntiles;
    if (gap < 0) gap = 0;
    int cw = 1, ch = 1;
    for (int i = 0; i < ntiles; i++) {
        if (!tiles[i]) return nb_fail(NB_ERR_ARG, "image_grid: tile %d is NULL", i);
        if (tiles[i]->width > cw) cw = tiles[i]->width;
        if (tiles[i]->height > ch) ch = tiles[i]->height;
    }
    int64_t nrows = ((int64_t)ntiles + ncols - 1) / ncols;
    int64_t W = (int64_t)ncols * ((int64_t)cw + gap) + gap, H = nrows * ((int64_t)ch + gap) + gap;
    if (W > NB_IMAGE_MAX_SIDE || H > NB_IMAGE_MAX_SIDE)
        return nb_fail(NB_ERR_TOO_LARGE, "image_grid: %d tiles of %dx%d make a %lldx%lld image (limit %d per side)",
                       ntiles, cw, ch, (long long)W, (long long)H, NB_IMAGE_MAX_SIDE);
    nb_image *im = nb_image_new((int)W, (int)H, 3, bg);
    if (!im) return NB_ERR_NOMEM;
    for (int i = 0; i < ntiles; i++)
        nb_image_paste(im, tiles[i], gap + (i % ncols) * (cw + gap), gap + (i / ncols) * (ch + gap));
    *out = im;
    return NB_OK;
}

nb_status nb_colorbar(nb_image *im, int x, int y, int w, int h, nb_colormap map, double lo, double hi, int scale)
{
    if (!im) return nb_fail(NB_ERR_ARG, "colorbar: NULL image");
    if (w < 2 || h < 1) return nb_fail(NB_ERR_ARG, "colorbar: size %dx%d too small", w, h);
    if (scale < 1) scale = 1;
    /* Far beyond any image (NB_IMAGE_MAX_SIDE), and small enough that the
     * sums below, label widths included, stay within an int. */
    if (x < -NB_COLORBAR_MAX || x > NB_COLORBAR_MAX || y < -NB_COLORBAR_MAX || y > NB_COLORBAR_MAX ||
        w > NB_COLORBAR_MAX || h > NB_COLORBAR_MAX || scale > NB_COLORBAR_MAX)
        return nb_fail(NB_ERR_ARG,
                       "colorbar: at (%d, %d), %dx%d at scale %d is out of range: x, y (either sign), width, height "
                       "and scale must be at most %d",
                       x, y, w, h, scale, NB_COLORBAR_MAX);
    if (map == NB_CMAP_DIVERGING) {
        double L = fmax(fabs(lo), fabs(hi));
        lo = -L, hi = L;
    }
    for (int c = 0; c < w; c++) {
        unsigned char rgb[3];
        nb_colormap_rgb(map, (double)c / (w - 1), rgb);
        nb_image_fill_rect(im, x + c, y, 1, h, rgb);
    }
    static const unsigned char ink[3] = {40, 40, 40};
    /* a thin frame, then the labels under the ends (and the centre) */
    nb_image_fill_rect(im, x - 1, y - 1, w + 2, 1, ink);
    nb_image_fill_rect(im, x - 1, y + h, w + 2, 1, ink);
    nb_image_fill_rect(im, x - 1, y - 1, 1, h + 2, ink);
    nb_image_fill_rect(im, x + w, y - 1, 1, h + 2, ink);
    char a[32], b[32];
    snprintf(a, sizeof a, "%.3g", lo);
    snprintf(b, sizeof b, "%.3g", hi);
    int ty = y + h + 3 * scale;
    nb_image_text(im, x, ty, a, scale, ink);
    nb_image_text(im, x + w - nb_text_width(b, scale), ty, b, scale, ink);
    if (map == NB_CMAP_DIVERGING) {
        nb_image_fill_rect(im, x + w / 2, y + h, 1, 2 * scale, ink);
        nb_image_text(im, x + w / 2 - nb_text_width("0", scale) / 2, ty, "0", scale, ink);
    }
    return NB_OK;
}
