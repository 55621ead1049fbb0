/* Thread safety: two models trained at once, in two threads of one process,
 * end with exactly the parameters each gets when trained alone. Different
 * specs (one with dropout, whose masks use the model's own random state),
 * seeds and optimisers; every call also parses a spec, so any hidden
 * shared state (strtok, a global RNG, a shared buffer) would show. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nabla.h"

typedef struct job {
    const char *spec;
    uint64_t seed;
    nb_optimizer opt;
    double lr;
    const nb_dataset *data;
    nb_tensor **params; /* out: copies of the trained parameters */
    int nparams;
    double loss;        /* out: final training loss */
    nb_status status;
    char error[512];
} job;

static int on_epoch(const nb_epoch_stats *s, nb_optim *o, void *user)
{
    (void)o;
    ((job *)user)->loss = s->loss;
    return 0;
}

static void *run_job(void *arg)
{
    job *j = arg;
    const int64_t in[3] = {12, 12, 1};
    nb_model *m = NULL;
    nb_optim *o = NULL;
    nb_status s = nb_model_from_spec(j->spec, 3, in, &m);
    if (!s) s = nb_model_init(m, NB_INIT_HE_UNIFORM, j->seed);
    nb_optim_opts oo = {.kind = j->opt, .lr = j->lr, .momentum = j->opt == NB_OPT_SGD ? 0.9 : 0};
    if (!s) s = nb_optim_new(m, &oo, &o);
    nb_train_opts to = {.epochs = 3, .batch = 16, .loss = NB_LOSS_CCE, .seed = j->seed, .shuffle = 1,
                        .on_epoch = on_epoch, .user = j};
    if (!s) s = nb_train(m, o, j->data, NULL, &to);
    if (!s) {
        j->nparams = nb_model_param_count(m);
        j->params = calloc((size_t)j->nparams, sizeof *j->params);
        for (int i = 0; i < j->nparams; i++) j->params[i] = nb_tensor_clone(nb_value(nb_model_param(m, i)));
    }
    j->status = s;
    if (s) snprintf(j->error, sizeof j->error, "%s", nb_last_error());
    nb_optim_free(o);
    nb_model_free(m);
    return NULL;
}

static void free_job(job *j)
{
    for (int i = 0; i < j->nparams; i++) nb_tensor_free(j->params[i]);
    free(j->params);
    j->params = NULL;
    j->nparams = 0;
}

static void assert_same(const job *a, const job *b)
{
    assert_int_equal(a->nparams, b->nparams);
    assert_true(a->nparams >= 2);
    for (int i = 0; i < a->nparams; i++) {
        assert_int_equal(a->params[i]->size, b->params[i]->size);
        assert_memory_equal(a->params[i]->data, b->params[i]->data, (size_t)a->params[i]->size * sizeof(nb_real));
    }
    assert_true(a->loss == b->loss);
}

/* 256 images of 12x12 with class-dependent stripes plus noise. */
static void make_data(nb_dataset *d)
{
    const int64_t xs[4] = {256, 12, 12, 1}, ys[1] = {256};
    d->x = nb_tensor_new(4, xs);
    d->y = nb_tensor_new(1, ys);
    uint32_t r = 99;
    for (int64_t i = 0; i < 256; i++) {
        int c = (int)(i % 10);
        d->y->data[i] = (nb_real)c;
        for (int64_t p = 0; p < 144; p++) {
            r = r * 1664525u + 1013904223u;
            d->x->data[i * 144 + p] = (nb_real)((p % 10 == c ? 0.8 : 0.0) + 0.2 * (r >> 8) / 16777216.0);
        }
    }
}

static void test_two_models_two_threads(void **state)
{
    (void)state;
    nb_dataset d;
    make_data(&d);
    job a = {.spec = "conv2d 6 3 relu; maxpool 2; flatten; dense 10", .seed = 11, .opt = NB_OPT_ADAM, .lr = 1e-2,
             .data = &d};
    job b = {.spec = "flatten; dense 32 tanh; dropout 0.25; dense 10", .seed = 22, .opt = NB_OPT_SGD, .lr = 0.05,
             .data = &d};
    job a2 = a, b2 = b;

    /* Alone, one after the other. */
    run_job(&a);
    assert_int_equal(a.status, NB_OK);
    run_job(&b);
    assert_int_equal(b.status, NB_OK);

    /* Together, several times (interleavings differ from run to run). */
    for (int round = 0; round < 3; round++) {
        pthread_t ta, tb;
        assert_int_equal(pthread_create(&ta, NULL, run_job, &a2), 0);
        assert_int_equal(pthread_create(&tb, NULL, run_job, &b2), 0);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        if (a2.status) fprintf(stderr, "thread a: %s\n", a2.error);
        if (b2.status) fprintf(stderr, "thread b: %s\n", b2.error);
        assert_int_equal(a2.status, NB_OK);
        assert_int_equal(b2.status, NB_OK);
        assert_same(&a, &a2);
        assert_same(&b, &b2);
        free_job(&a2);
        free_job(&b2);
    }
    /* They learnt something (so the comparison is not of untouched weights). */
    assert_true(a.loss < 2.0);
    assert_true(b.loss < 2.2);
    free_job(&a);
    free_job(&b);
    nb_dataset_free(&d);
}

/* Errors are per thread: a failure in one thread does not change the
 * message another thread reads. */
static void *fail_spec(void *arg)
{
    nb_layer_spec *l = NULL;
    int n = 0;
    *(nb_status *)arg = nb_spec_parse("dense 0", &l, &n);
    return NULL;
}

static void test_errors_are_per_thread(void **state)
{
    (void)state;
    nb_layer_spec *l = NULL;
    int n = 0;
    assert_int_equal(nb_spec_parse("lstm 3", &l, &n), NB_ERR_FORMAT);
    char mine[512];
    snprintf(mine, sizeof mine, "%s", nb_last_error());
    nb_status other = NB_OK;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fail_spec, &other), 0);
    pthread_join(t, NULL);
    assert_int_equal(other, NB_ERR_FORMAT);
    assert_string_equal(nb_last_error(), mine);
    assert_non_null(strstr(mine, "unknown layer 'lstm'"));
}

int main(void)
{
    nb_set_num_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_models_two_threads),
        cmocka_unit_test(test_errors_are_per_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
