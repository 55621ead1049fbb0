/* PNG writing through libpng: 8-bit gray or RGB. libpng reports errors by
 * longjmp out of its calls; the jump lands here and becomes an nb_status, so
 * the library still never aborts or prints. */
#include "io_internal.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    jmp_buf jmp;
    char msg[200];
} png_err_ctx;

static void on_png_error(png_structp png, png_const_charp msg)
{
    png_err_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "unknown libpng error");
    longjmp(c->jmp, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg)
{
    (void)png, (void)msg; /* warnings are not errors; the library does not print */
}

nb_status nb_png_write(const char *path, int width, int height, int channels, const unsigned char *pixels)
{
    if (!path || !pixels) return nb_fail(NB_ERR_ARG, "png_write: NULL argument");
    if (width < 1 || height < 1 || width > (1 << 20) || height > (1 << 20))
        return nb_fail(NB_ERR_ARG, "png_write: '%s': size %dx%d out of range 1..%d", path, width, height, 1 << 20);
    if (channels != 1 && channels != 3)
        return nb_fail(NB_ERR_ARG, "png_write: '%s': channels must be 1 (gray) or 3 (RGB), got %d", path, channels);
    FILE *f = fopen(path, "wb");
    if (!f) return nb_fail(NB_ERR_IO, "png_write: cannot open '%s' for writing: %s", path, strerror(errno));
    /* volatile: modified between setjmp and a possible longjmp. */
    png_err_ctx *volatile ctx = calloc(1, sizeof *ctx);
    png_structp volatile png = NULL;
    png_infop volatile info = NULL;
    nb_status s = NB_OK;
    if (!ctx) {
        fclose(f);
        return nb_fail(NB_ERR_NOMEM, "png_write: out of memory");
    }
    png = png_create_write_struct(PNG_LIBPNG_VER_STRING, ctx, on_png_error, on_png_warning);
    if (png) info = png_create_info_struct(png);
    if (!png || !info) {
        s = nb_fail(NB_ERR_NOMEM, "png_write: '%s': libpng could not allocate its structures", path);
        goto done;
    }
    if (setjmp(ctx->jmp)) {
        s = nb_fail(NB_ERR_IO, "png_write: '%s': libpng: %s", path, ctx->msg);
        goto done;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8,
                 channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t stride = (size_t)width * (size_t)channels;
    for (int r = 0; r < height; r++)
        png_write_row(png, (png_const_bytep)(pixels + (size_t)r * stride));
    png_write_end(png, NULL);
done:;
    png_structp p = png;
    png_infop i = info;
    if (p) png_destroy_write_struct(&p, i ? &i : NULL);
    free(ctx);
    if (fclose(f) != 0 && s == NB_OK)
        s = nb_fail(NB_ERR_IO, "png_write: writing '%s' failed: %s", path, strerror(errno));
    if (s != NB_OK) remove(path);
    return s;
}

nb_status nb_image_write_png(const char *path, const nb_image *im)
{
    if (!im || !im->pixels) return nb_fail(NB_ERR_ARG, "png_write: NULL image");
    return nb_png_write(path, im->width, im->height, im->channels, im->pixels);
}
