/* Data augmentation of image batches during training (nb_train_opts.augment),
 * the transform of Keras's RandomFlip("horizontal") + RandomTranslation with
 * fill_mode="constant" (zeros), by whole pixels:
 *
 *   out(i, j, c) = in(i - dy, j' - dx, c), zero where that is outside,
 *   j' = W - 1 - j when the example is mirrored, else j,
 *
 * with dy, dx uniform in -shift..shift and the mirror taken with probability
 * 1/2. The draws of one example come from a generator seeded by (seed, step,
 * row): the data set row, not the example's place in the batch, so the same
 * batch is augmented alike by one process, by any number of threads or
 * ranks (reproducible training cuts batches into shards), and after a
 * resume. The training loss and accuracy an epoch reports are those of the
 * augmented examples; evaluation never augments. */
#include "nn_internal.h"

#include "../dist/dist_internal.h"

#include <string.h>

/* One example's draws. */
static void draw(const nb_augment *a, uint64_t seed, int64_t step, int64_t row, int *dy, int *dx, int *mirror)
{
    nb_rng r;
    nb_rng_seed(&r, (seed * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)step * 0xBF58476D1CE4E5B9ull) ^
                        ((uint64_t)row * 0x94D049BB133111EBull) ^ 0xA11A5EEDull);
    const uint64_t span = 2 * (uint64_t)a->shift + 1;
    *dy = a->shift ? (int)(nb_rng_next(&r) % span) - a->shift : 0;
    *dx = a->shift ? (int)(nb_rng_next(&r) % span) - a->shift : 0;
    *mirror = a->flip ? (int)(nb_rng_next(&r) >> 63) : 0;
}

/* One image (H, W, C) from src into dst (distinct buffers). */
static void transform(const nb_real *src, nb_real *dst, int64_t H, int64_t W, int64_t C, int dy, int dx, int mirror)
{
    for (int64_t i = 0; i < H; i++)
        for (int64_t j = 0; j < W; j++) {
            const int64_t si = i - dy, sj = (mirror ? W - 1 - j : j) - dx;
            nb_real *o = dst + (i * W + j) * C;
            if (si < 0 || si >= H || sj < 0 || sj >= W)
                memset(o, 0, (size_t)C * sizeof(nb_real));
            else
                memcpy(o, src + (si * W + sj) * C, (size_t)C * sizeof(nb_real));
        }
}

nb_status nb_augment_check(const nb_augment *a, int in_rank, const int64_t *in_shape)
{
    if (!a || (!a->shift && !a->flip)) return NB_OK;
    if (a->shift < 0 || a->flip < 0 || a->flip > 1)
        return nb_fail(NB_ERR_ARG, "augment: shift must be >= 0 and flip 0 or 1 (got shift %d, flip %d)", a->shift,
                       a->flip);
    if (in_rank != 3)
        return nb_fail(NB_ERR_ARG,
                       "augment: shifts and flips need image inputs (H, W, C); this model's input has rank %d "
                       "(leave out --augment, or give the model an image input such as --input 28,28,1)",
                       in_rank);
    if (a->shift >= in_shape[0] || a->shift >= in_shape[1])
        return nb_fail(NB_ERR_ARG, "augment: a shift of %d pixels is not smaller than the image (%lld x %lld)",
                       a->shift, (long long)in_shape[0], (long long)in_shape[1]);
    return NB_OK;
}

nb_status nb_augment_batch(const nb_augment *a, uint64_t seed, int64_t step, const int64_t *idx, int64_t start,
                           int64_t b, nb_model *m)
{
    if (!a || (!a->shift && !a->flip) || b == 0) return NB_OK;
    nb_status s = nb_augment_check(a, m->in_rank, m->in_shape);
    if (s) return s;
    const int64_t H = m->in_shape[0], W = m->in_shape[1], C = m->in_shape[2], n = H * W * C;
    nb_real *tmp = nb_alloc((size_t)n * sizeof(nb_real));
    if (!tmp) return NB_ERR_NOMEM;
    nb_real *x = m->input->value.data;
    for (int64_t e = 0; e < b; e++) {
        int dy, dx, mirror;
        draw(a, seed, step, idx ? idx[start + e] : start + e, &dy, &dx, &mirror);
        if (!dy && !dx && !mirror) continue;
        memcpy(tmp, x + e * n, (size_t)n * sizeof(nb_real));
        transform(tmp, x + e * n, H, W, C, dy, dx, mirror);
    }
    nb_free(tmp);
    return NB_OK;
}
