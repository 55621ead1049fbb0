/* Toy 2-D data sets for classifiers (circles, xor, spiral, gaussians), as in
 * scikit-learn's make_circles/make_blobs and the TensorFlow playground. No
 * file I/O, so the browser build can compile it as it is.
 *
 * Example i has class k = i % K and is drawn from the stream after example
 * i - 1, so a draw of n examples is the prefix of any larger draw with the
 * same seed (the CLI's --count picks a prefix, never another data set). */
#include "nn_internal.h"

#include <math.h>

static const char *const toy_names[] = {"circles", "xor", "spiral", "gaussians"};
enum { TOY_KINDS = 4, TOY_MAX_CLASSES = 16, TOY_MAX_COUNT = 1 << 24 };

const char *nb_toy_name(nb_toy_kind k)
{
    return (unsigned)k < TOY_KINDS ? toy_names[k] : NULL;
}

int nb_toy_parse(const char *text, nb_toy_kind *out)
{
    for (int k = 0; text && k < TOY_KINDS; k++)
        if (!strcmp(text, toy_names[k])) {
            if (out) *out = (nb_toy_kind)k;
            return 1;
        }
    return 0;
}

/* One point of class k of K into p[0..1], before the noise. */
static void toy_point(const nb_toy_opts *o, int k, int K, nb_rng *r, double *p)
{
    const double two_pi = 6.283185307179586;
    switch (o->kind) {
    case NB_TOY_CIRCLES: {
        /* class 0 outside (radius 1), class 1 inside (radius 0.5) */
        double a = two_pi * nb_rng_uniform(r), rad = k == 0 ? 1.0 : 0.5;
        p[0] = rad * cos(a), p[1] = rad * sin(a);
        break;
    }
    case NB_TOY_XOR:
        /* uniform over the quadrants of class k: same signs for class 0 */
        p[0] = nb_rng_uniform(r), p[1] = nb_rng_uniform(r);
        if (nb_rng_uniform(r) < 0.5) p[0] = -p[0], p[1] = -p[1];
        if (k == 1) p[1] = -p[1];
        break;
    case NB_TOY_SPIRAL: {
        double t = 0.05 + 0.95 * nb_rng_uniform(r), a = 1.5 * two_pi * t + two_pi * k / K;
        p[0] = t * cos(a), p[1] = t * sin(a);
        break;
    }
    case NB_TOY_GAUSSIANS: {
        double a = two_pi * k / K, sd = 4 * o->noise;
        p[0] = cos(a) + sd * nb_rng_normal(r), p[1] = sin(a) + sd * nb_rng_normal(r);
        break;
    }
    }
}

static nb_status toy_check(const nb_toy_opts *o, int *K)
{
    if (!o) return nb_fail(NB_ERR_ARG, "toy data: NULL options");
    if (!nb_toy_name(o->kind)) return nb_fail(NB_ERR_ARG, "toy data: unknown kind %d", (int)o->kind);
    if (o->count < 1 || o->count > TOY_MAX_COUNT)
        return nb_fail(NB_ERR_ARG, "toy data %s: count must be 1..%d, got %lld", toy_names[o->kind], TOY_MAX_COUNT,
                       (long long)o->count);
    if (!(o->noise >= 0 && o->noise <= 10))
        return nb_fail(NB_ERR_ARG, "toy data %s: noise must be in [0, 10], got %g", toy_names[o->kind], o->noise);
    *K = o->classes ? o->classes : 2;
    const int fixed = o->kind == NB_TOY_CIRCLES || o->kind == NB_TOY_XOR;
    if (fixed && *K != 2)
        return nb_fail(NB_ERR_ARG, "toy data %s has 2 classes, not %d (spiral and gaussians take 2..%d)",
                       toy_names[o->kind], *K, TOY_MAX_CLASSES);
    if (*K < 2 || *K > TOY_MAX_CLASSES)
        return nb_fail(NB_ERR_ARG, "toy data %s: classes must be 2..%d, got %d", toy_names[o->kind], TOY_MAX_CLASSES,
                       *K);
    return NB_OK;
}

nb_status nb_dataset_toy(const nb_toy_opts *o, nb_dataset *out)
{
    if (!out) return nb_fail(NB_ERR_ARG, "toy data: NULL output");
    *out = (nb_dataset){0};
    int K = 2;
    nb_status s = toy_check(o, &K);
    if (s) return s;
    int64_t xs[2] = {o->count, 2}, ys[1] = {o->count};
    out->x = nb_tensor_new(2, xs);
    out->y = nb_tensor_new(1, ys);
    if (!out->x || !out->y) {
        nb_tensor_free(out->x), nb_tensor_free(out->y); /* not nb_dataset_free: dataset.c is not in the web build */
        out->x = out->y = NULL;
        return nb_fail(NB_ERR_NOMEM, "toy data: out of memory for %lld points", (long long)o->count);
    }
    nb_rng r;
    /* the kind is part of the stream: circles and xor of one seed differ */
    nb_rng_seed(&r, o->seed * 0x9E3779B97F4A7C15ull + (uint64_t)o->kind + 1);
    const double noise = o->kind == NB_TOY_GAUSSIANS ? 0 : o->noise;
    for (int64_t i = 0; i < o->count; i++) {
        const int k = (int)(i % K);
        double p[2] = {0, 0};
        toy_point(o, k, K, &r, p);
        p[0] += noise * nb_rng_normal(&r), p[1] += noise * nb_rng_normal(&r);
        out->x->data[2 * i] = (nb_real)p[0], out->x->data[2 * i + 1] = (nb_real)p[1];
        out->y->data[i] = (nb_real)k;
    }
    return NB_OK;
}
