/* --augment (nb_train_opts.augment): each augmented image is exactly one of
 * the allowed shifts/mirrors of its original (zero fill), the draws depend
 * on (seed, step, row) and not on the example's place in the batch, every
 * allowed transform occurs, reproducible training with augmentation gives
 * the same bits on 1 and 2 threads, and the refusals (rows T17-T19 of
 * docs/bad-inputs.md). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dist/dist_internal.h"
#include "f32/nb_test_util.h"

enum { H = 5, W = 6, C = 2, PIX = H * W * C };

/* Pixel value of the original image of data set row r: distinct and non-zero. */
static nb_real pixel(int64_t r, int64_t i, int64_t j, int64_t c)
{
    return (nb_real)(1 + r * 1000 + i * 100 + j * 10 + c);
}

/* out == transform(dy, dx, mirror) of row r's image? (the formula of augment.c) */
static int is_transform(const nb_real *out, int64_t r, int dy, int dx, int mirror)
{
    for (int64_t i = 0; i < H; i++)
        for (int64_t j = 0; j < W; j++)
            for (int64_t c = 0; c < C; c++) {
                const int64_t si = i - dy, sj = (mirror ? W - 1 - j : j) - dx;
                const nb_real want = si < 0 || si >= H || sj < 0 || sj >= W ? 0 : pixel(r, si, sj, c);
                if (out[(i * W + j) * C + c] != want) return 0;
            }
    return 1;
}

/* Which allowed transform out is (index into the (2s+1)^2 x 2 list), or -1. */
static int which_transform(const nb_real *out, int64_t r, int s)
{
    for (int dy = -s; dy <= s; dy++)
        for (int dx = -s; dx <= s; dx++)
            for (int m = 0; m < 2; m++)
                if (is_transform(out, r, dy, dx, m)) return ((dy + s) * (2 * s + 1) + dx + s) * 2 + m;
    return -1;
}

static nb_model *image_model(int64_t batch)
{
    static const int64_t in[3] = {H, W, C};
    nb_model *m;
    assert_int_equal(nb_model_from_spec("flatten; dense 3", 3, in, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 1), NB_OK);
    assert_int_equal(nb_model_set_batch(m, batch), NB_OK);
    return m;
}

/* Rows idx[start..start+b) loaded into m's input by hand. */
static void load(nb_model *m, const int64_t *idx, int64_t start, int64_t b)
{
    nb_real *x = nb_value(nb_model_input(m))->data;
    for (int64_t e = 0; e < b; e++)
        for (int64_t i = 0; i < H; i++)
            for (int64_t j = 0; j < W; j++)
                for (int64_t c = 0; c < C; c++)
                    x[e * PIX + (i * W + j) * C + c] = pixel(idx[start + e], i, j, c);
}

static void test_each_image_is_an_allowed_transform(void **state)
{
    (void)state;
    enum { B = 200, S = 1 };
    int64_t idx[B];
    for (int64_t e = 0; e < B; e++)
        idx[e] = 3 * e + 7;
    nb_model *m = image_model(B);
    load(m, idx, 0, B);
    const nb_augment a = {.shift = S, .flip = 1};
    assert_int_equal(nb_augment_batch(&a, 5, 11, idx, 0, B, m), NB_OK);
    int seen[(2 * S + 1) * (2 * S + 1) * 2] = {0};
    const nb_real *x = nb_value(nb_model_input(m))->data;
    for (int64_t e = 0; e < B; e++) {
        const int t = which_transform(x + e * PIX, idx[e], S);
        assert_true(t >= 0);
        seen[t]++;
    }
    for (int t = 0; t < (2 * S + 1) * (2 * S + 1) * 2; t++)
        assert_true(seen[t] > 0); /* 18 kinds in 200 */
    /* shift only: never mirrored (a mirror of these images differs from any shift) */
    load(m, idx, 0, B);
    assert_int_equal(nb_augment_batch(&(nb_augment){.shift = 2}, 5, 11, idx, 0, B, m), NB_OK);
    for (int64_t e = 0; e < B; e++)
        assert_true(which_transform(x + e * PIX, idx[e], 2) % 2 == 0);
    /* flip only: the image or its mirror */
    load(m, idx, 0, B);
    assert_int_equal(nb_augment_batch(&(nb_augment){.flip = 1}, 5, 11, idx, 0, B, m), NB_OK);
    int mirrored = 0;
    for (int64_t e = 0; e < B; e++) {
        const int t = which_transform(x + e * PIX, idx[e], 0);
        assert_true(t == 0 || t == 1);
        mirrored += t;
    }
    assert_true(mirrored > 60 && mirrored < 140);
    nb_model_free(m);
}

/* A row's draw follows (seed, step, row), not its place in the batch. */
static void test_draws_follow_seed_step_row(void **state)
{
    (void)state;
    enum { B = 16 };
    int64_t idx[2 * B];
    for (int64_t e = 0; e < 2 * B; e++)
        idx[e] = (e * 5) % (2 * B);
    const nb_augment a = {.shift = 2, .flip = 1};
    nb_model *whole = image_model(2 * B), *half = image_model(B);
    load(whole, idx, 0, 2 * B);
    assert_int_equal(nb_augment_batch(&a, 9, 4, idx, 0, 2 * B, whole), NB_OK);
    load(half, idx, B, B); /* the second half alone, at places 0.. */
    assert_int_equal(nb_augment_batch(&a, 9, 4, idx, B, B, half), NB_OK);
    assert_memory_equal(nb_value(nb_model_input(whole))->data + B * PIX, nb_value(nb_model_input(half))->data,
                        sizeof(nb_real) * B * PIX);
    /* another step or seed draws anew: most rows change */
    int same_step = 0, same_seed = 0;
    for (int k = 0; k < 2; k++) {
        load(half, idx, B, B);
        assert_int_equal(nb_augment_batch(&a, k ? 10 : 9, k ? 4 : 5, idx, B, B, half), NB_OK);
        const nb_real *x = nb_value(nb_model_input(half))->data, *w = nb_value(nb_model_input(whole))->data;
        for (int64_t e = 0; e < B; e++)
            if (!memcmp(x + e * PIX, w + (B + e) * PIX, sizeof(nb_real) * PIX)) *(k ? &same_seed : &same_step) += 1;
    }
    assert_true(same_step < B / 2 && same_seed < B / 2);
    /* batch 0 and the empty augmentation touch nothing */
    assert_int_equal(nb_augment_batch(&a, 9, 4, idx, 0, 0, half), NB_OK);
    load(half, idx, 0, B);
    assert_int_equal(nb_augment_batch(&(nb_augment){0}, 9, 4, idx, 0, B, half), NB_OK);
    for (int64_t e = 0; e < B; e++)
        assert_true(is_transform(nb_value(nb_model_input(half))->data + e * PIX, idx[e], 0, 0, 0));
    nb_model_free(whole), nb_model_free(half);
}

static nb_dataset images(int64_t n)
{
    const int64_t xs[4] = {n, H, W, C}, ys[1] = {n};
    nb_dataset d = {nb_tensor_new(4, xs), nb_tensor_new(1, ys)};
    for (int64_t r = 0; r < n; r++) {
        for (int64_t p = 0; p < PIX; p++)
            d.x->data[r * PIX + p] = (nb_real)(((r * 31 + p * 7) % 17) / 17.0);
        d.y->data[r] = (nb_real)(r % 3);
    }
    return d;
}

/* The weights after training: reproducible with augmentation, at t threads. */
static nb_real *train_weights(int threads, const nb_augment *a, int reproducible, int64_t *count)
{
    nb_set_num_threads(threads);
    nb_dataset d = images(48);
    nb_model *m = image_model(1);
    nb_optim *o;
    assert_int_equal(nb_optim_new(m, &(nb_optim_opts){.kind = NB_OPT_SGD, .lr = 0.1, .momentum = 0.9}, &o), NB_OK);
    nb_train_opts to = {.epochs = 2,
                        .batch = 16,
                        .loss = NB_LOSS_CCE,
                        .seed = 3,
                        .shuffle = 1,
                        .reproducible = reproducible,
                        .shard = 4,
                        .augment = *a};
    assert_int_equal(nb_train(m, o, &d, NULL, &to), NB_OK);
    const nb_tensor *k = nb_value(nb_model_param(m, 0));
    nb_real *w = malloc(sizeof(nb_real) * (size_t)k->size);
    memcpy(w, k->data, sizeof(nb_real) * (size_t)k->size);
    *count = k->size;
    nb_optim_free(o), nb_model_free(m);
    nb_tensor_free(d.x), nb_tensor_free(d.y);
    nb_set_num_threads(0);
    return w;
}

static void test_reproducible_training_with_augmentation(void **state)
{
    (void)state;
    const nb_augment a = {.shift = 1, .flip = 1}, none = {0};
    int64_t n1, n2, n3;
    nb_real *w1 = train_weights(1, &a, 1, &n1), *w2 = train_weights(2, &a, 1, &n2),
            *w0 = train_weights(1, &none, 1, &n3);
    assert_int_equal(n1, n2);
    assert_memory_equal(w1, w2, sizeof(nb_real) * (size_t)n1);      /* same bits for 1 and 2 threads */
    assert_true(memcmp(w1, w0, sizeof(nb_real) * (size_t)n1) != 0); /* and augmentation did something */
    free(w1), free(w2), free(w0);
    /* the plain path runs it too */
    nb_real *wp = train_weights(1, &a, 0, &n1);
    for (int64_t i = 0; i < n1; i++)
        assert_true(isfinite(wp[i]));
    free(wp);
}

static void test_refusals(void **state)
{
    (void)state;
    static const int64_t flat[1] = {4}, img[3] = {H, W, C};
    assert_int_equal(nb_augment_check(&(nb_augment){.flip = 1}, 1, flat), NB_ERR_ARG);
    assert_has(nb_last_error(), "need image inputs (H, W, C)");
    assert_int_equal(nb_augment_check(&(nb_augment){.shift = H}, 3, img), NB_ERR_ARG);
    assert_has(nb_last_error(), "not smaller than the image (5 x 6)");
    assert_int_equal(nb_augment_check(&(nb_augment){.shift = -1}, 3, img), NB_ERR_ARG);
    assert_int_equal(nb_augment_check(&(nb_augment){.flip = 2}, 3, img), NB_ERR_ARG);
    assert_int_equal(nb_augment_check(&(nb_augment){0}, 1, flat), NB_OK);
    assert_int_equal(nb_augment_check(NULL, 1, flat), NB_OK);
    /* nb_train refuses before any step */
    nb_dataset d = images(8);
    nb_model *m = image_model(1);
    nb_optim *o;
    assert_int_equal(nb_optim_new(m, &(nb_optim_opts){.kind = NB_OPT_SGD, .lr = 0.1}, &o), NB_OK);
    nb_train_opts to = {.epochs = 1, .batch = 4, .loss = NB_LOSS_CCE, .augment = {.shift = 6}};
    assert_int_equal(nb_train(m, o, &d, NULL, &to), NB_ERR_ARG);
    assert_has(nb_last_error(), "augment: a shift of 6 pixels");
    nb_optim_free(o), nb_model_free(m);
    nb_tensor_free(d.x), nb_tensor_free(d.y);
}

static void test_cli(void **state)
{
    (void)state;
    char dir[1024];
    tu_mkdtemp(dir, sizeof dir, "augment");
    tu_write_dataset(dir, "train", 64, 64, 8, 8, 3, 0);
    tu_write_dataset(dir, "t10k", 16, 16, 8, 8, 3, 0);
    const char *out = tu_path_in(dir, "m.safetensors");
    char *o;
    const char *ok[] = {"train",        "--data", dir,       "--model", "flatten; dense 3",
                        "--epochs",     "1",      "--batch", "16",      "--augment",
                        "shift=2,flip", "--out",  out,       "--quiet", NULL};
    const int r0 = tu_run_cli(ok, &o, NULL);
    if (r0) fprintf(stderr, "%s\n", o);
    assert_int_equal(r0, 0);
    free(o);
    const char *bad[][16] = {
        {"train", "--data", dir, "--model", "flatten; dense 3", "--augment", "shift=2,mirror", "--out", out, NULL},
        {"train", "--data", dir, "--model", "flatten; dense 3", "--augment", "shift=x", "--out", out, NULL},
        {"train", "--data", dir, "--model", "flatten; dense 3", "--augment", "", "--out", out, NULL},
        {"train", "--data", "circles", "--model", "dense 2", "--augment", "flip", "--out", out, NULL},
        {"train", "--data", dir, "--model", "flatten; dense 3", "--augment", "shift=8", "--out", out, NULL}};
    const char *want[] = {"'mirror' is not shift=N", "'shift=x' is not shift=N", "--augment takes shift=N",
                          "need image inputs", "a shift of 8 pixels is not smaller than the image (8 x 8)"};
    const int rc[] = {2, 2, 2, 1, 1};
    for (int k = 0; k < 5; k++) {
        const int r = tu_run_cli(bad[k], &o, NULL);
        assert_has(o, want[k]);
        assert_int_equal(r, rc[k]);
        free(o);
    }
    tu_rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_image_is_an_allowed_transform),
        cmocka_unit_test(test_draws_follow_seed_step_row),
        cmocka_unit_test(test_reproducible_training_with_augmentation),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
