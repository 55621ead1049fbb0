/* Images as model inputs: PNG (libpng) and JPEG (libjpeg) decoded from
 * memory into 8-bit gray or RGB, and fitted to a model's input (box-filter
 * resize, channel conversion, scaling to [0, 1]).
 *
 * Both libraries report errors by longjmp out of their calls (our handlers);
 * the jump lands here and becomes an nb_status, so the library still never
 * aborts or prints. Hostile files: the size in the header is checked against
 * NB_IMAGE_MAX_SIDE and NB_IMAGE_MAX_PIXELS before any pixel is allocated
 * (a decompression bomb claims a huge size in a few bytes); a truncated or
 * corrupt file is refused (libjpeg's warnings, which it would otherwise
 * paper over with gray, count as errors). */
#include "io_internal.h"

#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <stdlib.h>

#include <jpeglib.h>
#include <png.h>
#include <setjmp.h>

enum { NB_IMAGE_MAX_SIDE = 16384, NB_IMAGE_MAX_PIXELS = 1 << 25 };

typedef struct {
    jmp_buf jmp;
    char msg[200];
} img_err;

static nb_status check_size(const char *kind, uint64_t w, uint64_t h)
{
    if (w < 1 || h < 1 || w > NB_IMAGE_MAX_SIDE || h > NB_IMAGE_MAX_SIDE || w * h > NB_IMAGE_MAX_PIXELS)
        return nb_fail(NB_ERR_FORMAT, "%s: %llux%llu pixels is outside the limits (1..%d a side, %d pixels in all)",
                       kind, (unsigned long long)w, (unsigned long long)h, NB_IMAGE_MAX_SIDE, NB_IMAGE_MAX_PIXELS);
    return NB_OK;
}

/* ---------------------------------------------------------------- PNG */

typedef struct {
    img_err err;
    const unsigned char *p;
    size_t left;
} png_src;

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_src *s = png_get_error_ptr(png);
    snprintf(s->err.msg, sizeof s->err.msg, "%s", msg ? msg : "unknown libpng error");
    longjmp(s->err.jmp, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static void png_read_mem(png_structp png, png_bytep out, png_size_t n)
{
    png_src *s = png_get_io_ptr(png);
    if (n > s->left) png_error(png, "the file is truncated");
    memcpy(out, s->p, n);
    s->p += n, s->left -= n;
}

/* The decoded image into *out; libpng's transforms give 8-bit gray or RGB
 * (palette expanded, 16 bits stripped, alpha dropped). */
static nb_status png_decode(const unsigned char *data, size_t len, nb_image **out)
{
    /* The size from IHDR (right after the signature) first, for our message. */
    if (len >= 24 && !memcmp(data + 12, "IHDR", 4)) {
        nb_status s0 = check_size("png", nb_ld_be32(data + 16), nb_ld_be32(data + 20));
        if (s0) return s0;
    }
    png_src *volatile src = calloc(1, sizeof *src);
    png_structp volatile png = NULL;
    png_infop volatile info = NULL;
    nb_image *volatile im = NULL;
    png_bytep *volatile rows = NULL;
    nb_status s = NB_OK;
    if (!src) return nb_fail(NB_ERR_NOMEM, "png: out of memory");
    src->p = data, src->left = len;
    if (setjmp(src->err.jmp)) {
        s = nb_fail(NB_ERR_FORMAT, "png: %s", src->err.msg);
        goto done;
    }
    png = png_create_read_struct(PNG_LIBPNG_VER_STRING, src, png_on_error, png_on_warning);
    info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        s = nb_fail(NB_ERR_NOMEM, "png: out of memory");
        goto done;
    }
    png_set_read_fn(png, src, png_read_mem);
    png_set_user_limits(png, NB_IMAGE_MAX_SIDE, NB_IMAGE_MAX_SIDE);
    png_set_chunk_malloc_max(png, (png_alloc_size_t)8 << 20); /* text, ICC profiles: no huge side chunks */
    png_read_info(png, info);
    const png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if ((s = check_size("png", w, h))) goto done;
    png_set_strip_16(png);
    png_set_palette_to_rgb(png);
    png_set_expand_gray_1_2_4_to_8(png);
    png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    const int channels = png_get_channels(png, info);
    if (channels != 1 && channels != 3) {
        s = nb_fail(NB_ERR_FORMAT, "png: %d channels after conversion (expected gray or RGB)", channels);
        goto done;
    }
    im = nb_image_new((int)w, (int)h, channels, NULL);
    rows = malloc(sizeof *rows * h);
    if (!im || !rows) {
        s = nb_fail(NB_ERR_NOMEM, "png: out of memory for %ux%u pixels", (unsigned)w, (unsigned)h);
        goto done;
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = im->pixels + (size_t)y * w * (size_t)channels;
    png_read_image(png, rows);
    png_read_end(png, NULL);
done:;
    png_structp pp = png;
    png_infop pi = info;
    if (pp) png_destroy_read_struct(&pp, pi ? &pi : NULL, NULL);
    free(rows);
    free(src);
    if (s) nb_image_free(im);
    else *out = im;
    return s;
}

/* ---------------------------------------------------------------- JPEG */

typedef struct {
    struct jpeg_error_mgr mgr; /* first: libjpeg passes it as the common pointer */
    img_err err;
} jpeg_err;

static void jpeg_on_error(j_common_ptr cinfo)
{
    jpeg_err *e = (jpeg_err *)cinfo->err;
    char msg[JMSG_LENGTH_MAX];
    e->mgr.format_message(cinfo, msg);
    snprintf(e->err.msg, sizeof e->err.msg, "%s", msg);
    longjmp(e->err.jmp, 1);
}

/* Warnings (level -1: corrupt data, a premature end) are errors here:
 * libjpeg would fill what is missing with gray. Trace messages are ignored. */
static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    if (level < 0) jpeg_on_error(cinfo);
}

static nb_status jpeg_decode(const unsigned char *data, size_t len, nb_image **out)
{
    struct jpeg_decompress_struct *volatile ci = calloc(1, sizeof *ci);
    jpeg_err *volatile e = calloc(1, sizeof *e);
    nb_image *volatile im = NULL;
    nb_status s = NB_OK;
    if (!ci || !e) {
        free(ci), free(e);
        return nb_fail(NB_ERR_NOMEM, "jpeg: out of memory");
    }
    ci->err = jpeg_std_error(&e->mgr);
    e->mgr.error_exit = jpeg_on_error;
    e->mgr.emit_message = jpeg_on_message;
    if (setjmp(e->err.jmp)) {
        s = nb_fail(NB_ERR_FORMAT, "jpeg: %s", e->err.msg);
        goto done;
    }
    jpeg_create_decompress(ci);
    jpeg_mem_src(ci, data, (unsigned long)len);
    jpeg_read_header(ci, TRUE);
    if ((s = check_size("jpeg", ci->image_width, ci->image_height))) goto done;
    if (ci->jpeg_color_space == JCS_CMYK || ci->jpeg_color_space == JCS_YCCK) {
        s = nb_fail(NB_ERR_FORMAT, "jpeg: CMYK images are not supported (convert it to RGB first)");
        goto done;
    }
    ci->out_color_space = ci->num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(ci);
    im = nb_image_new((int)ci->output_width, (int)ci->output_height, ci->output_components, NULL);
    if (!im) {
        s = nb_fail(NB_ERR_NOMEM, "jpeg: out of memory");
        goto done;
    }
    while (ci->output_scanline < ci->output_height) {
        JSAMPROW row = im->pixels + (size_t)ci->output_scanline * (size_t)im->width * (size_t)im->channels;
        jpeg_read_scanlines(ci, &row, 1);
    }
    jpeg_finish_decompress(ci);
done:
    jpeg_destroy_decompress(ci);
    free(ci), free(e);
    if (s) nb_image_free(im);
    else *out = im;
    return s;
}

nb_status nb_image_decode(const void *data, size_t len, nb_image **out)
{
    if (!out || (!data && len)) return nb_fail(NB_ERR_ARG, "image: NULL argument");
    *out = NULL;
    const unsigned char *p = data;
    if (len >= 8 && !png_sig_cmp(p, 0, 8)) return png_decode(p, len, out);
    if (len >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return jpeg_decode(p, len, out);
    return nb_fail(NB_ERR_FORMAT, "image: not a PNG or JPEG file (it starts with neither's signature)");
}

nb_status nb_image_read(const char *path, nb_image **out)
{
    if (!path || !out) return nb_fail(NB_ERR_ARG, "image: NULL argument");
    *out = NULL;
    void *data;
    size_t len;
    nb_status s = nb_read_file(path, (size_t)256 << 20, &data, &len);
    if (s) return s;
    s = nb_image_decode(data, len, out);
    free(data);
    if (s) {
        nb_fail(s, "'%s': %s", path, nb_last_error()); /* (nb_fail formats apart: it may wrap its own message) */
    }
    return s;
}

/* ---------------------------------------------------------- to a tensor */

/* The box filter along one axis: output o of n covers [o*m/n, (o+1)*m/n)
 * of the m inputs; each input i it overlaps contributes the overlap length,
 * normalised. Writes v (in m values, stride sin) into u (n values, stride sout). */
static void box_axis(const double *v, int64_t m, int64_t sin, double *u, int64_t n, int64_t sout)
{
    for (int64_t o = 0; o < n; o++) {
        const double a = (double)o * (double)m / (double)n, b = (double)(o + 1) * (double)m / (double)n;
        double acc = 0;
        for (int64_t i = (int64_t)a; i < m && (double)i < b; i++) {
            const double lo = a > (double)i ? a : (double)i, hi = b < (double)(i + 1) ? b : (double)(i + 1);
            acc += v[i * sin] * (hi - lo);
        }
        u[o * sout] = acc / (b - a);
    }
}

nb_status nb_image_to_tensor(const nb_image *im, int H, int W, int C, nb_real *out)
{
    if (!im || !out || H < 1 || W < 1 || (C != 1 && C != 3))
        return nb_fail(NB_ERR_ARG, "image to tensor: bad arguments (%dx%d, %d channels; 1 or 3 channels)", H, W, C);
    const int64_t w = im->width, h = im->height;
    /* One source row at a time (the image may be large), rows w -> W into tmp (h, W, C). */
    double *src = malloc(sizeof(double) * (size_t)(w * C)), *tmp = malloc(sizeof(double) * (size_t)(h * W * C));
    double *dst = malloc(sizeof(double) * (size_t)(H * W * C));
    if (!src || !tmp || !dst) {
        free(src), free(tmp), free(dst);
        return nb_fail(NB_ERR_NOMEM, "image to tensor: out of memory");
    }
    for (int64_t y = 0; y < h; y++) {
        for (int64_t i = 0; i < w; i++) { /* channels, in [0, 1]: gray = ITU-R BT.601 luma */
            const unsigned char *p = im->pixels + (y * w + i) * im->channels;
            for (int c = 0; c < C; c++)
                src[i * C + c] = im->channels == C   ? p[c] / 255.0
                                 : C == 1            ? (0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]) / 255.0
                                                     : p[0] / 255.0;
        }
        for (int c = 0; c < C; c++) box_axis(src + c, w, C, tmp + y * W * C + c, W, C);
    }
    for (int64_t x = 0; x < W; x++) /* columns: h -> H */
        for (int c = 0; c < C; c++) box_axis(tmp + x * C + c, h, W * C, dst + x * C + c, H, W * C);
    for (int64_t i = 0; i < (int64_t)H * W * C; i++) out[i] = (nb_real)dst[i];
    free(src), free(tmp), free(dst);
    return NB_OK;
}
