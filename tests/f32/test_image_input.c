/* Images as model inputs (src/io/image_read.c, src/cli/image_input.c): PNG
 * and JPEG decoding, the box-filter resize and channel conversion against
 * values computed by hand, hostile files refused (docs/bad-inputs.md,
 * "Image files"), and `nabla predict` on a folder of PNGs. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <stdio.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <jpeglib.h>
#include <zlib.h>

#include "f32/nb_test_util.h"

static char dir[1024];

static const char *path_in(const char *name)
{
    return tu_path_in(dir, name);
}

static void test_png_decode_exact(void **state)
{
    unsigned char gray[12], rgb[18];
    for (int i = 0; i < 12; i++) gray[i] = (unsigned char)(i * 20 + 3);
    for (int i = 0; i < 18; i++) rgb[i] = (unsigned char)(255 - i * 13);
    assert_int_equal(nb_png_write(path_in("g.png"), 4, 3, 1, gray), NB_OK);
    assert_int_equal(nb_png_write(path_in("c.png"), 2, 3, 3, rgb), NB_OK);
    nb_image *g = NULL, *c = NULL;
    assert_int_equal(nb_image_read(path_in("g.png"), &g), NB_OK);
    assert_int_equal(nb_image_read(path_in("c.png"), &c), NB_OK);
    assert_int_equal(g->width, 4), assert_int_equal(g->height, 3), assert_int_equal(g->channels, 1);
    assert_memory_equal(g->pixels, gray, sizeof gray);
    assert_int_equal(c->width, 2), assert_int_equal(c->height, 3), assert_int_equal(c->channels, 3);
    assert_memory_equal(c->pixels, rgb, sizeof rgb);
    nb_image_free(g), nb_image_free(c);
}

/* A JPEG written by libjpeg's encoder (quality 100): values within 2 levels. */
static void write_jpeg(const char *path, int w, int h, int channels, const unsigned char *px)
{
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr err;
    ci.err = jpeg_std_error(&err);
    jpeg_create_compress(&ci);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    jpeg_stdio_dest(&ci, f);
    ci.image_width = (JDIMENSION)w, ci.image_height = (JDIMENSION)h, ci.input_components = channels;
    ci.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, 100, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)ci.next_scanline * (size_t)(w * channels));
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    fclose(f);
}

static void test_jpeg_decode(void **state)
{
    unsigned char px[16 * 16 * 3];
    for (int i = 0; i < 16 * 16; i++) px[3 * i] = 200, px[3 * i + 1] = 40, px[3 * i + 2] = 90;
    write_jpeg(path_in("c.jpg"), 16, 16, 3, px);
    nb_image *im = NULL;
    assert_int_equal(nb_image_read(path_in("c.jpg"), &im), NB_OK);
    assert_int_equal(im->width, 16), assert_int_equal(im->height, 16), assert_int_equal(im->channels, 3);
    for (int i = 0; i < 16 * 16 * 3; i++) assert_true(abs((int)im->pixels[i] - (int)px[i]) <= 3);
    /* Its gray: 0.299*200 + 0.587*40 + 0.114*90 = 93.54, over 255. */
    nb_real t[4];
    assert_int_equal(nb_image_to_tensor(im, 2, 2, 1, t), NB_OK);
    for (int i = 0; i < 4; i++) assert_true(fabs(t[i] - 93.54 / 255) < 3.0 / 255);
    nb_image_free(im);
}

/* Box filter: 4x4 -> 2x2 means 2x2 blocks; 3 -> 2 weighs the middle pixel
 * half into each side; 2x2 -> 4x4 repeats pixels; gray -> RGB replicates. */
static void test_box_filter(void **state)
{
    nb_image *im = nb_image_new(4, 4, 1, NULL);
    for (int i = 0; i < 16; i++) im->pixels[i] = (unsigned char)(i * 10);
    nb_real t[48];
    assert_int_equal(nb_image_to_tensor(im, 2, 2, 1, t), NB_OK);
    const double want[4] = {(0 + 10 + 40 + 50) / 4.0, (20 + 30 + 60 + 70) / 4.0, (80 + 90 + 120 + 130) / 4.0,
                            (100 + 110 + 140 + 150) / 4.0};
    for (int i = 0; i < 4; i++) assert_true(fabs(t[i] - want[i] / 255) < 1e-6);
    assert_int_equal(nb_image_to_tensor(im, 4, 4, 3, t), NB_OK); /* same size, gray -> RGB */
    for (int i = 0; i < 48; i++) assert_true(fabs(t[i] - im->pixels[i / 3] / 255.0) < 1e-6);
    nb_image_free(im);
    nb_image *row = nb_image_new(3, 1, 1, NULL);
    row->pixels[0] = 30, row->pixels[1] = 90, row->pixels[2] = 150;
    assert_int_equal(nb_image_to_tensor(row, 1, 2, 1, t), NB_OK);
    assert_true(fabs(t[0] - (30 + 0.5 * 90) / 1.5 / 255) < 1e-6);
    assert_true(fabs(t[1] - (0.5 * 90 + 150) / 1.5 / 255) < 1e-6);
    assert_int_equal(nb_image_to_tensor(row, 2, 6, 1, t), NB_OK); /* upscale: each pixel twice, each row twice */
    for (int i = 0; i < 12; i++) assert_true(fabs(t[i] - row->pixels[(i % 6) / 2] / 255.0) < 1e-6);
    nb_image_free(row);
}

/* PNG bytes: signature, IHDR (w, h, 8-bit gray) and an empty IDAT. */
static size_t png_header(unsigned char *b, uint32_t w, uint32_t h)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    size_t n = 0;
    memcpy(b, sig, 8), n = 8;
    const unsigned char ihdr[17] = {'I', 'H', 'D', 'R', w >> 24, w >> 16, w >> 8, w, h >> 24, h >> 16, h >> 8, h,
                                    8, 0, 0, 0, 0};
    const unsigned char len13[4] = {0, 0, 0, 13}, len0[4] = {0};
    memcpy(b + n, len13, 4), n += 4;
    memcpy(b + n, ihdr, 17), n += 17;
    uLong crc = crc32(0, ihdr, 17);
    for (int i = 3; i >= 0; i--) b[n++] = (unsigned char)(crc >> (8 * i));
    memcpy(b + n, len0, 4), n += 4;
    memcpy(b + n, "IDAT", 4), n += 4;
    crc = crc32(0, (const unsigned char *)"IDAT", 4);
    for (int i = 3; i >= 0; i--) b[n++] = (unsigned char)(crc >> (8 * i));
    return n;
}

static void expect_image_error(const void *data, size_t len, const char *want)
{
    nb_image *im = (nb_image *)1;
    assert_int_equal(nb_image_decode(data, len, &im), NB_ERR_FORMAT);
    assert_null(im);
    assert_has(nb_last_error(), want);
}

static void test_hostile_images(void **state)
{
    unsigned char b[128];
    size_t n = png_header(b, 10000, 10000); /* a bomb: 10^8 pixels claimed in 45 bytes */
    expect_image_error(b, n, "png: 10000x10000 pixels is outside the limits (1..16384 a side, 33554432 pixels in all)");
    n = png_header(b, 100000, 1);
    expect_image_error(b, n, "png: 100000x1 pixels is outside the limits (1..16384 a side, 33554432 pixels in all)");
    n = png_header(b, 4, 4); /* no pixel data */
    expect_image_error(b, n, "png: the file is truncated");
    unsigned char gray[64];
    memset(gray, 77, sizeof gray);
    assert_int_equal(nb_png_write(path_in("t.png"), 8, 8, 1, gray), NB_OK);
    size_t len = 0;
    char *png = tu_read(path_in("t.png"), &len);
    expect_image_error(png, len - 20, "png: the file is truncated");
    free(png);
    write_jpeg(path_in("t.jpg"), 8, 8, 1, gray);
    char *jpg = tu_read(path_in("t.jpg"), &len);
    expect_image_error(jpg, len / 2, "jpeg: Premature end of JPEG file");
    free(jpg);
    expect_image_error("GIF89a", 6, "image: not a PNG or JPEG file (it starts with neither's signature)");
}

/* nabla predict on a folder: images in name order, resized and converted,
 * with the note on stderr. */
static void test_predict_folder(void **state)
{
    char sub[1300], cmd[4096];
    tu_fmt(sub, sizeof sub, "%s/imgs", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    unsigned char big[16 * 16 * 3], small[8 * 8];
    for (int i = 0; i < 16 * 16 * 3; i++) big[i] = (unsigned char)(i % 251);
    for (int i = 0; i < 64; i++) small[i] = (unsigned char)(i * 4);
    assert_int_equal(nb_png_write(path_in("imgs/b.png"), 16, 16, 3, big), NB_OK);
    assert_int_equal(nb_png_write(path_in("imgs/a.png"), 8, 8, 1, small), NB_OK);
    int64_t in[3] = {8, 8, 1};
    nb_model *m = NULL;
    assert_int_equal(nb_model_from_spec("flatten; dense 3", 3, in, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_TORCH_DEFAULT, 1), NB_OK);
    assert_int_equal(nb_model_save(m, path_in("m.safetensors")), NB_OK);
    tu_fmt(cmd, sizeof cmd, "%s predict --model '%s' --input '%s' -o '%s' --raw 2>'%s'", NB_CLI, path_in("m.safetensors"),
           sub, path_in("p.npy"), path_in("err.txt"));
    assert_int_equal(system(cmd), 0);
    size_t len = 0;
    char *err = tu_read(path_in("err.txt"), &len);
    assert_has(err, "2 images from");
    assert_has(err, "(the first 8x8; 1 gray, 1 RGB) as (2, 8, 8, 1): 1 resized to 8x8 with a box filter, RGB to gray "
                    "(luma 0.299 R + 0.587 G + 0.114 B), pixels 0..255 scaled to [0, 1] as the training data was");
    free(err);
    nb_tensor *y = NULL;
    assert_int_equal(nb_npy_read(path_in("p.npy"), &y), NB_OK);
    assert_int_equal(y->shape[0], 2), assert_int_equal(y->shape[1], 3);
    /* Row 0 is a.png (name order), exactly the model on its pixels / 255. */
    const int64_t xs[4] = {1, 8, 8, 1};
    nb_tensor *x = nb_tensor_new(4, xs), *want = NULL;
    for (int i = 0; i < 64; i++) x->data[i] = (nb_real)(small[i] / 255.0);
    assert_int_equal(nb_model_predict(m, x, 1, &want), NB_OK);
    for (int k = 0; k < 3; k++) assert_true(fabs(y->data[k] - want->data[k]) < 1e-6);
    nb_tensor_free(x), nb_tensor_free(want), nb_tensor_free(y);
    nb_model_free(m);
}

/* The class the model predicts for one 8x8 gray image given as pixels. */
static int64_t predicted(nb_model *m, const unsigned char *px)
{
    const int64_t xs[4] = {1, 8, 8, 1};
    nb_tensor *x = nb_tensor_new(4, xs), *y = NULL;
    for (int i = 0; i < 64; i++)
        x->data[i] = (nb_real)(px[i] / 255.0);
    assert_int_equal(nb_model_predict(m, x, 1, &y), NB_OK);
    int64_t best = 0;
    for (int64_t k = 1; k < y->shape[1]; k++)
        if (y->data[k] > y->data[best]) best = k;
    assert_true(y->data[best] > y->data[best == 0 ? 1 : 0]); /* no tie */
    nb_tensor_free(x), nb_tensor_free(y);
    return best;
}

/* nabla saliency --image on a PNG and on a JPEG: the predicted class is the
 * model's on the decoded pixels, the picture reads back at the size
 * printed; --image with --data, or with --start, is a usage error. */
static void test_saliency_image(void **state)
{
    unsigned char px[64], jp[64];
    for (int i = 0; i < 64; i++)
        px[i] = (unsigned char)((i * 37) % 256), jp[i] = (unsigned char)(i < 32 ? 40 : 220);
    assert_int_equal(nb_png_write(path_in("s.png"), 8, 8, 1, px), NB_OK);
    write_jpeg(path_in("s.jpg"), 8, 8, 1, jp);
    int64_t in[3] = {8, 8, 1};
    nb_model *m = NULL;
    assert_int_equal(nb_model_from_spec("conv2d 2 3 tanh; flatten; dense 4", 3, in, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_TORCH_DEFAULT, 3), NB_OK);
    assert_int_equal(nb_model_save(m, path_in("sal.safetensors")), NB_OK);
    nb_image *dec = NULL;
    assert_int_equal(nb_image_read(path_in("s.jpg"), &dec), NB_OK);
    const int64_t want[2] = {predicted(m, px), predicted(m, dec->pixels)};
    nb_image_free(dec);
    const char *files[2] = {"s.png", "s.jpg"};
    for (int f = 0; f < 2; f++) {
        char cmd[4096], line[256];
        tu_fmt(cmd, sizeof cmd, "%s saliency --model '%s' --image '%s' -o '%s' >'%s' 2>&1", NB_CLI,
               path_in("sal.safetensors"), path_in(files[f]), path_in("sal.png"), path_in("out.txt"));
        assert_int_equal(system(cmd), 0);
        size_t len = 0;
        char *out = tu_read(path_in("out.txt"), &len);
        tu_fmt(line, sizeof line, "saliency of 1 images from %s (predicted %lld): wrote %s (", path_in(files[f]),
               (long long)want[f], path_in("sal.png"));
        assert_has(out, line);
        int w = 0, h = 0;
        assert_int_equal(sscanf(strstr(out, line) + strlen(line), "%dx%d", &w, &h), 2);
        free(out);
        nb_image *pic = NULL;
        assert_int_equal(nb_image_read(path_in("sal.png"), &pic), NB_OK);
        assert_int_equal(pic->width, w), assert_int_equal(pic->height, h);
        assert_true(w > 100 && h > 100);
        nb_image_free(pic);
    }
    char cmd[4096];
    tu_fmt(cmd, sizeof cmd, "%s saliency --model '%s' --image '%s' --data mnist >/dev/null 2>'%s'", NB_CLI,
           path_in("sal.safetensors"), path_in("s.png"), path_in("err.txt"));
    assert_int_equal(WEXITSTATUS(system(cmd)), 2);
    size_t len = 0;
    char *err = tu_read(path_in("err.txt"), &len);
    assert_has(err, "nabla saliency: give --data or --image, not both");
    free(err);
    tu_fmt(cmd, sizeof cmd, "%s saliency --model '%s' --image '%s' --start 3 >/dev/null 2>'%s'", NB_CLI,
           path_in("sal.safetensors"), path_in("s.png"), path_in("err.txt"));
    assert_int_equal(WEXITSTATUS(system(cmd)), 2);
    err = tu_read(path_in("err.txt"), &len);
    assert_has(err, "nabla saliency: --start is for --data; with --image the files are shown from the first");
    free(err);
    tu_fmt(cmd, sizeof cmd, "%s saliency --model '%s' --image '%s' >/dev/null 2>'%s'", NB_CLI,
           path_in("sal.safetensors"), path_in("none.png"), path_in("err.txt"));
    assert_int_equal(WEXITSTATUS(system(cmd)), 1);
    err = tu_read(path_in("err.txt"), &len);
    assert_has(err, "nabla saliency: loading the images");
    free(err);
    nb_model_free(m);
}

static int setup(void **state)
{
    tu_mkdtemp(dir, sizeof dir, "image");
    return 0;
}

static int teardown(void **state)
{
    tu_rm_rf(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png_decode_exact), cmocka_unit_test(test_jpeg_decode),
        cmocka_unit_test(test_box_filter),       cmocka_unit_test(test_hostile_images),
        cmocka_unit_test(test_predict_folder),   cmocka_unit_test(test_saliency_image),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
