/* Reproducible and data-parallel training through nb_train_opts.comm,
 * without MPI: "ranks" are pthreads of this process exchanging through a
 * shared table (the two collectives of nb_comm), so the library's side of
 * issue 16 is tested in every build. The sharded step gives the same bits
 * for 1 or 2 threads and for 1, 2, 3 or 4 ranks (a conv net with dropout
 * and a last batch shorter than the others); ranks whose weights differ
 * stop training; bad communicators and shard sizes are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nabla.h"

#define SPEC "conv2d 4 3 relu; maxpool 2; flatten; dropout 0.25; dense 3"
enum { N = 90, BATCH = 20, MAX_RANKS = 4 };

/* 90 images 8x8x1 of three kinds (bright top, bright left, noise), so the
 * net has something to learn; fixed by a seeded generator. */
static void make_data(nb_dataset *d)
{
    int64_t xs[4] = {N, 8, 8, 1}, ys[1] = {N};
    d->x = nb_tensor_new(4, xs);
    d->y = nb_tensor_new(1, ys);
    assert_non_null(d->x);
    assert_non_null(d->y);
    nb_rng r;
    nb_rng_seed(&r, 42);
    for (int64_t i = 0; i < N; i++) {
        int c = (int)(i % 3);
        d->y->data[i] = (nb_real)c;
        for (int p = 0; p < 64; p++) {
            int row = p / 8, col = p % 8;
            double v = 0.3 * nb_rng_uniform(&r);
            if ((c == 0 && row < 3) || (c == 1 && col < 3)) v += 0.7;
            d->x->data[i * 64 + p] = (nb_real)v;
        }
    }
}

static nb_model *new_model(void)
{
    int64_t in[3] = {8, 8, 1};
    nb_model *m = NULL;
    assert_int_equal(nb_model_from_spec(SPEC, 3, in, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 7), NB_OK);
    return m;
}

static nb_train_opts train_opts(void)
{
    return (nb_train_opts){.epochs = 3, .batch = BATCH, .loss = NB_LOSS_CCE, .seed = 11, .shuffle = 1,
                           .reproducible = 1};
}

/* Trains a fresh model and returns it (the caller frees). */
static nb_model *train(const nb_dataset *d, const nb_train_opts *to, nb_status *st)
{
    nb_model *m = new_model();
    nb_optim *o = NULL;
    nb_optim_opts oo = {.kind = NB_OPT_ADAM, .lr = 1e-2};
    assert_int_equal(nb_optim_new(m, &oo, &o), NB_OK);
    *st = nb_train(m, o, d, NULL, to);
    nb_optim_free(o);
    return m;
}

/* 1 if every parameter holds the same bits. */
static int same_weights(nb_model *a, nb_model *b)
{
    for (int i = 0; i < nb_model_param_count(a); i++) {
        const nb_tensor *x = nb_value(nb_model_param(a, i)), *y = nb_value(nb_model_param(b, i));
        if (x->size != y->size || memcmp(x->data, y->data, (size_t)x->size * sizeof(nb_real))) return 0;
    }
    return 1;
}

/* ------------------------------------------------- ranks as threads */
typedef struct {
    int size;
    pthread_barrier_t bar;
    const unsigned char *slot[MAX_RANKS];
    int corrupt_hash; /* rank 1 reports another weight hash */
} world;

typedef struct {
    world *w;
    int rank;
    nb_comm comm;
    const nb_dataset *d;
    nb_model *m;
    nb_status st;
    char msg[512];
} rank_ctx;

static nb_status fake_allgather(const void *send, size_t bytes, void *recv, void *user)
{
    rank_ctx *c = user;
    world *w = c->w;
    w->slot[c->rank] = send;
    pthread_barrier_wait(&w->bar);
    for (int r = 0; r < w->size; r++) memcpy((unsigned char *)recv + r * bytes, w->slot[r], bytes);
    if (w->corrupt_hash && bytes == 8 && w->size > 1) ((unsigned char *)recv)[8] ^= 1;
    pthread_barrier_wait(&w->bar);
    return NB_OK;
}

static nb_status fake_alltoall(const void *send, size_t bytes, void *recv, void *user)
{
    rank_ctx *c = user;
    world *w = c->w;
    w->slot[c->rank] = send;
    pthread_barrier_wait(&w->bar);
    for (int r = 0; r < w->size; r++) memcpy((unsigned char *)recv + r * bytes, w->slot[r] + c->rank * bytes, bytes);
    pthread_barrier_wait(&w->bar);
    return NB_OK;
}

static void *rank_main(void *arg)
{
    rank_ctx *c = arg;
    nb_train_opts to = train_opts();
    to.reproducible = 0; /* implied by a comm of size > 1 */
    to.comm = &c->comm;
    c->m = train(c->d, &to, &c->st);
    snprintf(c->msg, sizeof c->msg, "%s", c->st ? nb_last_error() : "");
    return NULL;
}

/* Trains on P thread-ranks; ctx[r].m are their models. */
static void run_ranks(world *w, rank_ctx *ctx, int P, const nb_dataset *d)
{
    pthread_t th[MAX_RANKS];
    w->size = P;
    assert_int_equal(pthread_barrier_init(&w->bar, NULL, (unsigned)P), 0);
    for (int r = 0; r < P; r++) {
        ctx[r] = (rank_ctx){.w = w, .rank = r, .d = d};
        ctx[r].comm = (nb_comm){r, P, fake_allgather, fake_alltoall, &ctx[r]};
        assert_int_equal(pthread_create(&th[r], NULL, rank_main, &ctx[r]), 0);
    }
    for (int r = 0; r < P; r++) pthread_join(th[r], NULL);
    pthread_barrier_destroy(&w->bar);
}

static void test_threads_and_ranks_same_bits(void **state)
{
    (void)state;
    nb_dataset d = {0};
    make_data(&d);
    nb_train_opts to = train_opts();
    nb_status st;
    nb_set_num_threads(1);
    nb_model *ref = train(&d, &to, &st);
    assert_int_equal(st, NB_OK);
    /* It learned (three classes: chance is 1/3). */
    double loss, acc;
    assert_int_equal(nb_evaluate(ref, &d, NB_LOSS_CCE, 64, &loss, &acc, NULL), NB_OK);
    assert_true(acc > 0.6);

    nb_set_num_threads(2);
    nb_model *two = train(&d, &to, &st);
    assert_int_equal(st, NB_OK);
    assert_true(same_weights(ref, two));
    nb_model_free(two);

    /* The default path differs from the sharded one (another order of
     * sums, other dropout keys): the test above is not vacuous. */
    to.reproducible = 0;
    nb_model *plain = train(&d, &to, &st);
    assert_int_equal(st, NB_OK);
    assert_false(same_weights(ref, plain));
    nb_model_free(plain);

    for (int P = 2; P <= MAX_RANKS; P++) {
        nb_set_num_threads(P == 2 ? 2 : 1);
        world w = {0};
        rank_ctx ctx[MAX_RANKS];
        run_ranks(&w, ctx, P, &d);
        for (int r = 0; r < P; r++) {
            assert_int_equal(ctx[r].st, NB_OK);
            assert_true(same_weights(ref, ctx[r].m));
            nb_model_free(ctx[r].m);
        }
    }
    nb_set_num_threads(0);
    nb_model_free(ref);
    nb_dataset_free(&d);
}

static void test_weights_differ_stops(void **state)
{
    (void)state;
    nb_dataset d = {0};
    make_data(&d);
    nb_set_num_threads(1);
    world w = {.corrupt_hash = 1};
    rank_ctx ctx[2];
    run_ranks(&w, ctx, 2, &d);
    for (int r = 0; r < 2; r++) {
        assert_int_equal(ctx[r].st, NB_ERR_NUMERIC);
        assert_non_null(strstr(ctx[r].msg, "after epoch 1 the weights of rank 1 differ from rank 0's"));
        nb_model_free(ctx[r].m);
    }
    nb_set_num_threads(0);
    nb_dataset_free(&d);
}

static void test_bad_options(void **state)
{
    (void)state;
    nb_dataset d = {0};
    make_data(&d);
    nb_status st;
    nb_train_opts to = train_opts();
    to.shard = -1;
    nb_model *m = train(&d, &to, &st);
    assert_int_equal(st, NB_ERR_ARG);
    assert_string_equal(nb_last_error(), "train: shard size must be >= 1 (0: 16), got -1");
    nb_model_free(m);
    nb_comm bad = {2, 2, fake_allgather, fake_alltoall, NULL};
    to = train_opts();
    to.comm = &bad;
    m = train(&d, &to, &st);
    assert_int_equal(st, NB_ERR_ARG);
    assert_string_equal(nb_last_error(), "train: communicator with rank 2 of 2 processes or without its collectives");
    nb_model_free(m);
    nb_dataset_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_and_ranks_same_bits),
        cmocka_unit_test(test_weights_differ_stops),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
