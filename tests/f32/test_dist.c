/* Reproducible and data-parallel training through nb_train_opts.comm,
 * without MPI: "ranks" are pthreads of this process exchanging through a
 * shared table (the two collectives of nb_comm), so the library's side of
 * issue 16 is tested in every build. The sharded step gives the same bits
 * for 1 or 2 threads and for 1, 2, 3 or 4 ranks (a conv net with dropout
 * and a last batch shorter than the others); the plain data-parallel step
 * (reproducible 0: one pass per rank, gradients allreduced) leaves every
 * rank with the same bits within float rounding of one process; ranks
 * whose weights differ stop training; bad communicators and shard sizes
 * are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
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

static nb_model *new_model_of(const char *spec)
{
    int64_t in[3] = {8, 8, 1};
    nb_model *m = NULL;
    assert_int_equal(nb_model_from_spec(spec, 3, in, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 7), NB_OK);
    return m;
}

static nb_model *new_model(void)
{
    return new_model_of(SPEC);
}

static nb_train_opts train_opts(void)
{
    return (nb_train_opts){
        .epochs = 3, .batch = BATCH, .loss = NB_LOSS_CCE, .seed = 11, .shuffle = 1, .reproducible = 1};
}

/* Trains a fresh model of spec and returns it (the caller frees). */
static nb_model *train_spec(const char *spec, const nb_dataset *d, const nb_train_opts *to, nb_status *st)
{
    nb_model *m = new_model_of(spec);
    nb_optim *o = NULL;
    nb_optim_opts oo = {.kind = NB_OPT_ADAM, .lr = 1e-2};
    assert_int_equal(nb_optim_new(m, &oo, &o), NB_OK);
    *st = nb_train(m, o, d, NULL, to);
    nb_optim_free(o);
    return m;
}

static nb_model *train(const nb_dataset *d, const nb_train_opts *to, nb_status *st)
{
    return train_spec(SPEC, d, to, st);
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
/* Linked with -Wl,--wrap=malloc,--wrap=calloc (tests/CMakeLists.txt): a
 * thread (a rank) that sets out_of_memory sees every later allocation fail. */
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t s);
static _Thread_local int out_of_memory;
void *__wrap_malloc(size_t n) { return out_of_memory ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t s) { return out_of_memory ? NULL : __real_calloc(n, s); }

typedef struct {
    int size;
    pthread_barrier_t bar;
    const unsigned char *slot[MAX_RANKS];
    int corrupt_hash;    /* rank 1 reports another weight hash (any 8-byte value over 255) */
    int use_gather;      /* give the ranks nb_comm.gather (else NULL: allgather) */
    int jac_case, batch; /* job 2 */
    int nan_rank;        /* job 2: this rank (if > 0) fails its forward pass */
    int plain;           /* job 0: plain data-parallel training (reproducible 0) */
    int use_allreduce;   /* give the ranks nb_comm.allreduce (else NULL: allgather and a sum) */
    int skew_allreduce;  /* the allreduce hands rank 1 a sum one bit off at the first call */
    int oom_after;       /* rank 1's allocations fail after its oom_after-th allgather (0: never) */
    const char *spec;    /* job 0: the model (NULL: SPEC) */
    int64_t batch_size;  /* job 0: the global batch (0: BATCH) */
    int epochs;          /* job 0: 0: train_opts()'s */
    nb_real *sum;        /* the allreduce's result */
    int64_t sum_len;
} world;

typedef struct {
    world *w;
    int rank;
    nb_comm comm;
    const nb_dataset *d;
    nb_model *m;
    nb_status st;
    char msg[512];
    int job;             /* 0: train; 1: the data-set curvature (eigs and trace); 2: a Jacobian */
    nb_eigs_result eigs; /* job 1 */
    nb_trace_result trace;
    int jac_case, batch; /* job 2: a Jacobian (jac_cases[jac_case]) at this batch */
    int nan_here;        /* job 2: a NaN input with the numerics check on */
    nb_tensor *J;
    int allgathers;      /* made so far */
} rank_ctx;

static nb_status fake_allgather(const void *send, size_t bytes, void *recv, void *user)
{
    rank_ctx *c = user;
    world *w = c->w;
    w->slot[c->rank] = send;
    pthread_barrier_wait(&w->bar);
    for (int r = 0; r < w->size; r++)
        memcpy((unsigned char *)recv + r * bytes, w->slot[r], bytes);
    /* a hash, not the ranks' statuses (small numbers: nb_comm_any_failed) */
    uint64_t theirs;
    if (w->corrupt_hash && bytes == 8 && w->size > 1 && (memcpy(&theirs, (unsigned char *)recv + 8, 8), theirs > 255))
        ((unsigned char *)recv)[8] ^= 1;
    pthread_barrier_wait(&w->bar);
    if (c->rank == 1 && ++c->allgathers == w->oom_after) out_of_memory = 1;
    return NB_OK;
}

static nb_status fake_gather(const void *send, size_t bytes, void *recv, void *user)
{
    rank_ctx *c = user;
    world *w = c->w;
    w->slot[c->rank] = send;
    pthread_barrier_wait(&w->bar);
    nb_status s = NB_OK;
    if (c->rank == 0)
        for (int r = 0; r < w->size; r++)
            memcpy((unsigned char *)recv + r * bytes, w->slot[r], bytes);
    else if (recv) /* MPI_Gather ignores it; the library passes NULL */
        s = nb_set_error(NB_ERR_ARG, "gather: recv is not NULL on rank %d", c->rank);
    pthread_barrier_wait(&w->bar);
    return s;
}

static nb_status fake_alltoall(const void *send, size_t bytes, void *recv, void *user)
{
    rank_ctx *c = user;
    world *w = c->w;
    w->slot[c->rank] = send;
    pthread_barrier_wait(&w->bar);
    for (int r = 0; r < w->size; r++)
        memcpy((unsigned char *)recv + r * bytes, w->slot[r] + c->rank * bytes, bytes);
    pthread_barrier_wait(&w->bar);
    return NB_OK;
}

/* Sums buf over the ranks in rank order into w->sum (grown by rank 0),
 * then every rank copies it. */
static nb_status fake_allreduce(nb_real *buf, size_t count, void *user)
{
    rank_ctx *c = user;
    world *w = c->w;
    w->slot[c->rank] = (const unsigned char *)buf;
    pthread_barrier_wait(&w->bar);
    if (c->rank == 0) {
        if ((int64_t)count > w->sum_len) {
            free(w->sum);
            w->sum = malloc(count * sizeof(nb_real));
            w->sum_len = w->sum ? (int64_t)count : 0;
        }
        for (size_t k = 0; w->sum && k < count; k++) {
            nb_real v = 0;
            for (int r = 0; r < w->size; r++)
                v += ((const nb_real *)w->slot[r])[k];
            w->sum[k] = v;
        }
    }
    pthread_barrier_wait(&w->bar);
    if (!w->sum) return nb_set_error(NB_ERR_NOMEM, "fake allreduce: out of memory");
    memcpy(buf, w->sum, count * sizeof(nb_real));
    if (c->rank == 1 && w->skew_allreduce) { /* read and written by rank 1 alone */
        buf[count / 2] += 1;
        w->skew_allreduce = 0;
    }
    pthread_barrier_wait(&w->bar);
    return NB_OK;
}

static nb_data_hessian_opts curv_opts(const nb_comm *comm)
{
    return (nb_data_hessian_opts){.loss = NB_LOSS_CCE, .shard = 16, .comm = comm};
}

static const nb_eigs_opts curv_eigs = {.k = 2, .max_iter = 30, .tol = 1e-4, .seed = 5};

/* The data-set Hessian's top 2 eigenvalues and its trace on c's model. */
static void curvature_job(rank_ctx *c, const nb_comm *comm)
{
    c->m = new_model();
    nb_graph_set_training(nb_model_graph(c->m), 0, 0);
    const nb_data_hessian_opts o = curv_opts(comm);
    c->st = nb_model_hessian_eigs(c->m, c->d, &o, &curv_eigs, &c->eigs);
    if (!c->st) c->st = nb_model_hessian_trace(c->m, c->d, &o, 6, 9, &c->trace);
    snprintf(c->msg, sizeof c->msg, "%s", c->st ? nb_last_error() : "");
}

/* The Jacobians split over ranks: per example, full by reverse mode (9
 * rows of logits, w.r.t. the input), full by forward mode (w.r.t. the
 * 36 weights of the conv kernel). */
static const struct {
    const char *wrt;
    nb_jacobian_opts o;
} jac_cases[] = {
    {"input", {.mode = NB_JAC_REV, .per_example = 1}},
    {"input", {.mode = NB_JAC_REV}},
    {"0.kernel", {.mode = NB_JAC_FWD}},
};

/* A fresh model at `batch` examples of d (rank-independent values) and
 * its Jacobian by jac_cases[c->jac_case] with comm. */
static void jacobian_job(rank_ctx *c, const nb_comm *comm)
{
    c->m = new_model();
    assert_int_equal(nb_model_set_batch(c->m, c->batch), NB_OK);
    memcpy(nb_value(nb_model_input(c->m))->data, c->d->x->data, (size_t)(c->batch * 64) * sizeof(nb_real));
    nb_node *wrt = !strcmp(jac_cases[c->jac_case].wrt, "input") ? nb_model_input(c->m)
                                                                : nb_model_find_param(c->m, jac_cases[c->jac_case].wrt);
    nb_jacobian_opts o = jac_cases[c->jac_case].o;
    o.comm = comm;
    if (c->nan_here) { /* this rank's forward pass fails */
        nb_graph_set_check_numerics(nb_model_graph(c->m), 1);
        nb_value(nb_model_input(c->m))->data[0] = NAN;
    }
    c->st = nb_jacobian(nb_model_logits(c->m), wrt, &o, &c->J);
    snprintf(c->msg, sizeof c->msg, "%s", c->st ? nb_last_error() : "");
}

static void *rank_main(void *arg)
{
    rank_ctx *c = arg;
    if (c->job == 2) {
        jacobian_job(c, &c->comm);
        return NULL;
    }
    if (c->job == 1) {
        curvature_job(c, &c->comm);
        return NULL;
    }
    nb_train_opts to = train_opts();
    to.reproducible = !c->w->plain;
    to.comm = &c->comm;
    if (c->w->batch_size) to.batch = c->w->batch_size;
    if (c->w->epochs) to.epochs = c->w->epochs;
    c->m = train_spec(c->w->spec ? c->w->spec : SPEC, c->d, &to, &c->st);
    snprintf(c->msg, sizeof c->msg, "%s", c->st ? nb_last_error() : "");
    return NULL;
}

/* Runs job on P thread-ranks; ctx[r].m are their models. */
static void run_ranks_job(world *w, rank_ctx *ctx, int P, const nb_dataset *const *d, int job)
{
    pthread_t th[MAX_RANKS];
    w->size = P;
    assert_int_equal(pthread_barrier_init(&w->bar, NULL, (unsigned)P), 0);
    for (int r = 0; r < P; r++) {
        ctx[r] = (rank_ctx){.w = w,
                            .rank = r,
                            .d = d[r],
                            .job = job,
                            .jac_case = w->jac_case,
                            .batch = w->batch,
                            .nan_here = w->nan_rank > 0 && r == w->nan_rank};
        ctx[r].comm = (nb_comm){r, P, fake_allgather, fake_alltoall, &ctx[r], w->use_gather ? fake_gather : NULL,
                                w->use_allreduce ? fake_allreduce : NULL};
        assert_int_equal(pthread_create(&th[r], NULL, rank_main, &ctx[r]), 0);
    }
    for (int r = 0; r < P; r++)
        pthread_join(th[r], NULL);
    pthread_barrier_destroy(&w->bar);
    free(w->sum);
    w->sum = NULL, w->sum_len = 0;
}

/* Trains on P thread-ranks; ctx[r].m are their models. */
static void run_ranks(world *w, rank_ctx *ctx, int P, const nb_dataset *d)
{
    const nb_dataset *ds[MAX_RANKS] = {d, d, d, d};
    run_ranks_job(w, ctx, P, ds, 0);
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

/* The largest |a - b| over all parameters, relative to max(1, |b|). */
static double max_rel_diff(nb_model *a, nb_model *b)
{
    double worst = 0;
    for (int i = 0; i < nb_model_param_count(a); i++) {
        const nb_tensor *x = nb_value(nb_model_param(a, i)), *y = nb_value(nb_model_param(b, i));
        assert_int_equal(x->size, y->size);
        for (int64_t k = 0; k < x->size; k++) {
            double d = fabs((double)x->data[k] - (double)y->data[k]) / fmax(1, fabs((double)y->data[k]));
            if (!(d <= worst)) worst = d; /* NaN wins */
        }
    }
    return worst;
}

/* Plain data-parallel training (PyTorch DDP's: each rank's share of the
 * batch in one pass, gradients summed by the allreduce or by an allgather):
 * every rank ends with rank 0's bits, and within float rounding of one
 * process on the default path (no dropout here: its masks follow the rank).
 * Tolerance 1e-6 relative to max(1, |w|) after 3 epochs of Adam (15 steps);
 * the differences seen are 3e-8 to 6e-8 (printed). Batch 3 on 4 ranks leaves
 * one rank without examples at every step. */
static void test_plain_ranks_match_one_process(void **state)
{
    (void)state;
    nb_dataset d = {0};
    make_data(&d);
    const char *spec = "conv2d 4 3 relu; maxpool 2; flatten; dense 3";
    static const struct {
        int P, use_allreduce;
        int64_t batch;
    } cases[] = {{2, 1, BATCH}, {3, 1, BATCH}, {4, 1, BATCH}, {2, 0, BATCH}, {3, 0, BATCH}, {4, 1, 3}};
    nb_set_num_threads(1);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nb_train_opts to = train_opts();
        to.reproducible = 0, to.batch = cases[i].batch, to.epochs = cases[i].batch == 3 ? 1 : to.epochs;
        nb_status st;
        nb_model *ref = train_spec(spec, &d, &to, &st);
        assert_int_equal(st, NB_OK);
        world w = {.plain = 1, .use_allreduce = cases[i].use_allreduce, .spec = spec, .batch_size = to.batch,
                   .epochs = to.epochs};
        rank_ctx ctx[MAX_RANKS];
        run_ranks(&w, ctx, cases[i].P, &d);
        for (int r = 0; r < cases[i].P; r++)
            assert_int_equal(ctx[r].st, NB_OK);
        const double diff = max_rel_diff(ctx[0].m, ref);
        print_message("P = %d, %s, batch %lld: max relative difference to one process %.3g\n", cases[i].P,
                      cases[i].use_allreduce ? "allreduce" : "allgather", (long long)to.batch, diff);
        assert_true(diff <= 1e-6);
        nb_model *init = new_model_of(spec); /* training moved the weights: the match is not vacuous */
        assert_true(max_rel_diff(ctx[0].m, init) > 1e-3);
        nb_model_free(init);
        for (int r = 1; r < cases[i].P; r++)
            assert_true(same_weights(ctx[0].m, ctx[r].m));
        for (int r = 0; r < cases[i].P; r++)
            nb_model_free(ctx[r].m);
        nb_model_free(ref);
    }
    nb_set_num_threads(0);
    nb_dataset_free(&d);
}

/* With dropout (masks keyed by step and rank) the ranks still end with the
 * same bits, and the net learns; an allreduce that hands rank 1 another sum
 * once is caught by the epoch's weight check on every rank; a rank whose
 * loss is NaN stops every rank at the first step; batchnorm is refused. */
static void test_plain_ranks_faults(void **state)
{
    (void)state;
    nb_dataset d = {0}, bad = {0};
    make_data(&d);
    make_data(&bad);
    nb_set_num_threads(1);
    world w = {.plain = 1, .use_allreduce = 1};
    rank_ctx ctx[MAX_RANKS];
    run_ranks(&w, ctx, 2, &d);
    double loss, acc;
    assert_int_equal(ctx[0].st, NB_OK);
    assert_int_equal(ctx[1].st, NB_OK);
    assert_true(same_weights(ctx[0].m, ctx[1].m));
    assert_int_equal(nb_evaluate(ctx[0].m, &d, NB_LOSS_CCE, 64, &loss, &acc, NULL), NB_OK);
    assert_true(acc > 0.6);
    nb_model_free(ctx[0].m), nb_model_free(ctx[1].m);

    w = (world){.plain = 1, .use_allreduce = 1, .skew_allreduce = 1};
    run_ranks(&w, ctx, 2, &d);
    for (int r = 0; r < 2; r++) {
        assert_int_equal(ctx[r].st, NB_ERR_NUMERIC);
        assert_non_null(strstr(ctx[r].msg, "after epoch 1 the weights of rank 1 differ from rank 0's"));
        nb_model_free(ctx[r].m);
    }

    for (int64_t k = 0; k < bad.x->size; k++)
        bad.x->data[k] = NAN;
    const nb_dataset *ds[MAX_RANKS] = {&d, &bad};
    w = (world){.plain = 1, .use_allreduce = 1};
    run_ranks_job(&w, ctx, 2, ds, 0);
    for (int r = 0; r < 2; r++) {
        assert_int_equal(ctx[r].st, NB_ERR_NUMERIC);
        assert_non_null(strstr(ctx[r].msg, "training diverged: the loss is NaN at step 1"));
        nb_model_free(ctx[r].m);
    }

    /* Only rank 1's data is bad (fewer labels than images): it fails its
     * own check, and rank 0 learns of it in the agreement before the first
     * collective instead of waiting there for ever (both modes). */
    nb_dataset short_y = {0};
    make_data(&short_y);
    nb_tensor_free(short_y.y);
    short_y.y = nb_tensor_new(1, (const int64_t[]){N - 1});
    assert_non_null(short_y.y);
    const nb_dataset *uneven[MAX_RANKS] = {&d, &short_y};
    for (int plain = 0; plain < 2; plain++) {
        w = (world){.plain = plain, .use_allreduce = plain};
        run_ranks_job(&w, ctx, 2, uneven, 0);
        assert_int_equal(ctx[0].st, NB_ERR_ARG);
        assert_string_equal(ctx[0].msg, "train: rank 1 failed (its own message says why)");
        assert_int_equal(ctx[1].st, NB_ERR_SHAPE);
        assert_non_null(strstr(ctx[1].msg, "training data: "));
        assert_non_null(strstr(ctx[1].msg, " targets"));
        nb_model_free(ctx[0].m), nb_model_free(ctx[1].m);
    }
    nb_dataset_free(&short_y);

    /* Rank 1 runs out of memory right after the agreement before the first
     * collective (its allocations for training: the permutation, the
     * gradient exchange, the shards): it says so in the second agreement,
     * after those allocations, and rank 0 stops there instead of waiting in
     * the first step's exchange for ever (bad-inputs N11, both modes). */
    for (int plain = 0; plain < 2; plain++) {
        w = (world){.plain = plain, .use_allreduce = plain};
        run_ranks(&w, ctx, 2, &d); /* the allgathers of a run up to its agreement */
        const int before = ctx[1].allgathers;
        nb_model_free(ctx[0].m), nb_model_free(ctx[1].m);
        w = (world){.plain = plain, .use_allreduce = plain, .oom_after = 1};
        run_ranks(&w, ctx, 2, &d);
        assert_true(before > 2);
        assert_int_equal(ctx[0].st, NB_ERR_ARG);
        assert_string_equal(ctx[0].msg, "train: rank 1 failed (its own message says why)");
        assert_int_equal(ctx[1].st, NB_ERR_NOMEM);
        assert_non_null(strstr(ctx[1].msg, "out of memory"));
        assert_int_equal(ctx[1].allgathers, 2); /* the two agreements, nothing after */
        nb_model_free(ctx[0].m), nb_model_free(ctx[1].m);
    }

    /* Batchnorm under several ranks: refused on every rank before any
     * collective (bad-inputs N9). */
    w = (world){.plain = 1, .use_allreduce = 1, .spec = "conv2d 4 3; batchnorm; relu; maxpool 2; flatten; dense 3"};
    run_ranks(&w, ctx, 2, &d);
    for (int r = 0; r < 2; r++) {
        assert_int_equal(ctx[r].st, NB_ERR_ARG);
        assert_string_equal(ctx[r].msg, "train: under MPI each rank would normalise its share of the batch with "
                                        "batchnorm statistics of its own, and the ranks' moving statistics would "
                                        "drift apart; train a batchnorm model on one process");
        nb_model_free(ctx[r].m);
    }
    nb_set_num_threads(0);
    nb_dataset_free(&bad);
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
    nb_comm bad = {2, 2, fake_allgather, fake_alltoall, NULL, NULL, NULL};
    to = train_opts();
    to.comm = &bad;
    m = train(&d, &to, &st);
    assert_int_equal(st, NB_ERR_ARG);
    assert_string_equal(nb_last_error(), "train: communicator with rank 2 of 2 processes or without its collectives");
    nb_model_free(m);
    nb_dataset_free(&d);
}

/* The data-set Hessian: 90 examples in shards of 16 (the last has 10),
 * so P = 4 ranks own 1, 2, 1 and 2 shards; every rank's eigenvalues,
 * eigenvectors and trace have the bits of one process's, and they match
 * the Hessian of all 90 examples in one pass (nb_hvp), up to float
 * rounding. */
static void test_curvature_same_bits_any_P(void **state)
{
    (void)state;
    nb_dataset d = {0};
    make_data(&d);
    nb_set_num_threads(1);
    rank_ctx ref = {.d = &d};
    curvature_job(&ref, NULL);
    assert_int_equal(ref.st, NB_OK);
    assert_int_equal(ref.eigs.k, 2);
    assert_true(ref.eigs.values[0] > 1e-3); /* cross-entropy at the start: curvature */
    assert_true(ref.trace.trace > 0);

    /* One pass over all 90 examples: the same Hessian, another order of sums. */
    nb_model *m = new_model();
    nb_graph_set_training(nb_model_graph(m), 0, 0);
    nb_data_hessian_opts whole = curv_opts(NULL);
    whole.shard = N;
    nb_eigs_result e1;
    assert_int_equal(nb_model_hessian_eigs(m, &d, &whole, &curv_eigs, &e1), NB_OK);
    for (int i = 0; i < 2; i++)
        assert_true(fabs(e1.values[i] - ref.eigs.values[i]) <= 1e-3 * fabs(ref.eigs.values[0]));
    nb_tensor_free(e1.vectors);
    /* ... and nb_model_data_hvp is nb_hvp of the whole batch. */
    const int64_t n = nb_model_hessian_dim(m);
    assert_int_equal(n, nb_model_num_params(m));
    nb_real *y = calloc((size_t)n, sizeof(nb_real));
    const nb_data_hessian_opts sharded = curv_opts(NULL);
    assert_int_equal(nb_model_data_hvp(m, &d, &sharded, 1, ref.eigs.vectors->data, y), NB_OK);
    nb_node *loss = NULL, *target = NULL, *params[4];
    assert_int_equal(nb_model_loss(m, NB_LOSS_CCE, &target, &loss), NB_OK);
    assert_int_equal(nb_model_set_batch(m, N), NB_OK);
    memcpy(nb_value(nb_model_input(m))->data, d.x->data, (size_t)d.x->size * sizeof(nb_real));
    memcpy(nb_value(target)->data, d.y->data, (size_t)d.y->size * sizeof(nb_real));
    nb_tensor *vs[4], *hv[4];
    int64_t off = 0;
    assert_int_equal(nb_model_param_count(m), 4);
    for (int i = 0; i < 4; i++) {
        params[i] = nb_model_param(m, i);
        const nb_tensor *p = nb_value(params[i]);
        int64_t shape[NB_MAX_RANK + 1] = {1};
        memcpy(shape + 1, p->shape, sizeof(int64_t) * (size_t)p->rank);
        vs[i] = nb_tensor_from(p->rank + 1, shape, ref.eigs.vectors->data + off);
        off += p->size;
    }
    assert_int_equal(nb_forward(nb_model_graph(m)), NB_OK);
    assert_int_equal(nb_hvp(loss, 4, params, (const nb_tensor *const *)vs, hv), NB_OK);
    double diff = 0, norm = 0, dot = 0;
    off = 0;
    for (int i = 0; i < 4; i++) {
        for (int64_t e = 0; e < hv[i]->size; e++) {
            diff = fmax(diff, fabs((double)hv[i]->data[e] - (double)y[off + e]));
            norm = fmax(norm, fabs((double)y[off + e]));
            dot += (double)y[off + e] * (double)ref.eigs.vectors->data[off + e];
        }
        off += hv[i]->size;
        nb_tensor_free(vs[i]), nb_tensor_free(hv[i]);
    }
    assert_true(norm > 0);
    assert_true(diff <= 1e-4 * norm);
    /* u^T H u of the top unit eigenvector is its eigenvalue. */
    assert_true(fabs(dot - ref.eigs.values[0]) <= 1e-3 * fabs(ref.eigs.values[0]));
    free(y);
    nb_model_free(m);

    const nb_dataset *ds[MAX_RANKS] = {&d, &d, &d, &d};
    for (int P = 2; P <= MAX_RANKS; P++) {
        world w = {0};
        rank_ctx ctx[MAX_RANKS];
        run_ranks_job(&w, ctx, P, ds, 1);
        for (int r = 0; r < P; r++) {
            assert_int_equal(ctx[r].st, NB_OK);
            assert_int_equal(ctx[r].eigs.iterations, ref.eigs.iterations);
            assert_memory_equal(ctx[r].eigs.values, ref.eigs.values, sizeof ref.eigs.values);
            assert_memory_equal(ctx[r].eigs.vectors->data, ref.eigs.vectors->data,
                                (size_t)ref.eigs.vectors->size * sizeof(nb_real));
            assert_memory_equal(&ctx[r].trace.trace, &ref.trace.trace, sizeof(double));
            nb_tensor_free(ctx[r].eigs.vectors);
            nb_model_free(ctx[r].m);
        }
    }
    nb_tensor_free(ref.eigs.vectors);
    nb_model_free(ref.m);
    nb_set_num_threads(0);
    nb_dataset_free(&d);
}

/* Ranks whose data differ are refused (every rank, naming rank 1); bad
 * arguments are refused before any pass. */
static void test_curvature_refusals(void **state)
{
    (void)state;
    nb_dataset d = {0}, other = {0}, empty = {0};
    make_data(&d);
    make_data(&other);
    other.x->data[17] += 0.5f;
    nb_set_num_threads(1);
    const nb_dataset *ds[2] = {&d, &other};
    world w = {0};
    rank_ctx ctx[2];
    run_ranks_job(&w, ctx, 2, ds, 1);
    for (int r = 0; r < 2; r++) {
        assert_int_equal(ctx[r].st, NB_ERR_ARG);
        assert_string_equal(ctx[r].msg, "curvature eigs: rank 1's data, weights or shard size differ from rank 0's: "
                                        "give every rank the same model, data set and options");
        nb_model_free(ctx[r].m);
    }
    /* Rank 1 alone refuses its data (a label out of range): rank 0 is told
     * and returns too, instead of waiting in a collective. */
    other.x->data[17] -= 0.5f;
    other.y->data[4] = 9;
    run_ranks_job(&w, ctx, 2, ds, 1);
    assert_int_equal(ctx[1].st, NB_ERR_ARG);
    assert_non_null(strstr(ctx[1].msg, "curvature data: example 4 has label 9"));
    assert_int_equal(ctx[0].st, NB_ERR_ARG);
    assert_string_equal(ctx[0].msg, "curvature eigs: rank 1 failed (its own message says why)");
    for (int r = 0; r < 2; r++)
        nb_model_free(ctx[r].m);
    nb_model *m = new_model();
    nb_eigs_result e;
    nb_trace_result t;
    nb_data_hessian_opts o = curv_opts(NULL);
    o.shard = -1;
    assert_int_equal(nb_model_hessian_eigs(m, &d, &o, &curv_eigs, &e), NB_ERR_ARG);
    assert_string_equal(nb_last_error(), "curvature: shard size must be >= 1 (0: 250), got -1");
    o = curv_opts(NULL);
    assert_int_equal(nb_model_hessian_eigs(NULL, &d, &o, &curv_eigs, &e), NB_ERR_ARG);
    assert_int_equal(nb_model_hessian_trace(m, NULL, &o, 4, 1, &t), NB_ERR_ARG);
    assert_string_equal(nb_last_error(), "curvature data: missing images or labels");
    int64_t xs[4] = {0, 8, 8, 1}, ys[1] = {0};
    empty.x = nb_tensor_new(4, xs), empty.y = nb_tensor_new(1, ys);
    assert_int_equal(nb_model_hessian_eigs(m, &empty, &o, &curv_eigs, &e), NB_ERR_ARG);
    assert_string_equal(nb_last_error(), "curvature data: no examples");
    d.y->data[3] = 7; /* not a class of the 3 */
    assert_int_equal(nb_model_hessian_eigs(m, &d, &o, &curv_eigs, &e), NB_ERR_ARG);
    assert_non_null(strstr(nb_last_error(), "example 3 has label 7"));
    d.y->data[3] = 0;
    nb_real x[1] = {0};
    assert_int_equal(nb_model_data_hvp(m, &d, &o, 0, x, x), NB_ERR_ARG);
    assert_string_equal(nb_last_error(), "curvature: 0 vectors; give at least 1");
    assert_int_equal(nb_model_data_hvp(m, &d, &o, 1, NULL, x), NB_ERR_ARG);
    nb_comm bad = {1, 1, fake_allgather, fake_alltoall, NULL, NULL, NULL};
    o.comm = &bad;
    assert_int_equal(nb_model_hessian_trace(m, &d, &o, 4, 1, &t), NB_ERR_ARG);
    assert_string_equal(nb_last_error(),
                        "curvature: communicator with rank 1 of 1 processes or without its collectives");
    /* A Hessian whose shard rows would not fit 1 GiB is refused up front. */
    o = curv_opts(NULL);
    o.shard = 1;
    nb_real *big = calloc((size_t)nb_model_hessian_dim(m) * 64, sizeof(nb_real));
    assert_non_null(big);
    nb_dataset many = {0};
    int64_t mx[4] = {40000, 8, 8, 1}, my[1] = {40000};
    many.x = nb_tensor_new(4, mx), many.y = nb_tensor_new(1, my);
    assert_int_equal(nb_model_data_hvp(m, &many, &o, 64, big, big), NB_ERR_TOO_LARGE);
    assert_non_null(strstr(nb_last_error(), "use larger shards, fewer examples or more processes"));
    free(big);
    nb_dataset_free(&many);
    nb_model_free(m);
    nb_dataset_free(&empty);
    nb_dataset_free(&other);
    nb_dataset_free(&d);
    nb_set_num_threads(0);
}

/* A model of 66 trainable tensors (a deep net; a ResNet with BatchNorm has
 * more than 64), one example, a shard larger than the data set: the exact
 * trace from H e_i over every unit vector is the sum of the diagonal
 * blocks' traces that nb_hessian gives tensor by tensor. */
static void test_curvature_many_tensors_exact_trace(void **state)
{
    (void)state;
    char spec[1024] = "flatten";
    for (int i = 0; i < 32; i++)
        strcat(spec, "; dense 2 tanh");
    strcat(spec, "; dense 3");
    int64_t in[3] = {8, 8, 1};
    nb_model *m = NULL;
    assert_int_equal(nb_model_from_spec(spec, 3, in, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 3), NB_OK);
    assert_int_equal(nb_model_param_count(m), 66);
    nb_dataset all = {0}, one = {0};
    make_data(&all);
    int64_t xs[4] = {1, 8, 8, 1}, ys[1] = {1};
    one.x = nb_tensor_from(4, xs, all.x->data), one.y = nb_tensor_from(1, ys, all.y->data);
    nb_set_num_threads(1);
    const int64_t n = nb_model_hessian_dim(m);
    nb_real *e = calloc((size_t)(n * n), sizeof(nb_real)), *he = calloc((size_t)(n * n), sizeof(nb_real));
    assert_non_null(e), assert_non_null(he);
    for (int64_t i = 0; i < n; i++)
        e[i * n + i] = 1;
    nb_data_hessian_opts o = curv_opts(NULL);
    o.shard = 1000;
    assert_int_equal(nb_model_data_hvp(m, &one, &o, n, e, he), NB_OK);
    double tr = 0;
    for (int64_t i = 0; i < n; i++)
        tr += he[i * n + i];
    nb_trace_result t;
    assert_int_equal(nb_model_hessian_trace(m, &one, &o, 4, 1, &t), NB_OK);
    assert_true(isfinite(t.trace));

    nb_node *loss = NULL, *target = NULL;
    assert_int_equal(nb_model_loss(m, NB_LOSS_CCE, &target, &loss), NB_OK);
    assert_int_equal(nb_model_set_batch(m, 1), NB_OK);
    memcpy(nb_value(nb_model_input(m))->data, one.x->data, 64 * sizeof(nb_real));
    nb_value(target)->data[0] = one.y->data[0];
    assert_int_equal(nb_forward(nb_model_graph(m)), NB_OK);
    double dense = 0, scale = 0;
    for (int i = 0; i < 66; i++) {
        nb_node *p = nb_model_param(m, i);
        nb_tensor *H = NULL;
        assert_int_equal(nb_hessian(loss, p, p, NULL, &H), NB_OK);
        const int64_t s = nb_value(p)->size;
        for (int64_t k = 0; k < s; k++)
            dense += H->data[k * s + k], scale += fabs(H->data[k * s + k]);
        nb_tensor_free(H);
    }
    assert_true(scale > 0);
    assert_true(fabs(tr - dense) <= 1e-3 * scale);
    free(e), free(he);
    nb_tensor_free(one.x), nb_tensor_free(one.y);
    nb_dataset_free(&all);
    nb_model_free(m);
    nb_set_num_threads(0);
}

static void assert_same_tensor_bits(const nb_tensor *a, const nb_tensor *b)
{
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->rank, b->rank);
    assert_memory_equal(a->shape, b->shape, sizeof(int64_t) * (size_t)a->rank);
    assert_memory_equal(a->data, b->data, (size_t)a->size * sizeof(nb_real));
}

/* Every case on 1 to 4 thread-ranks, with and without nb_comm.gather:
 * rank 0's J has the bits of a communicator of one rank, the others get
 * NULL; and J matches the one-process path (comm NULL) up to rounding. */
static void test_jacobian_ranks_same_bits(void **state)
{
    (void)state;
    nb_dataset d = {0};
    make_data(&d);
    nb_set_num_threads(1);
    const nb_dataset *ds[MAX_RANKS] = {&d, &d, &d, &d};
    for (int jc = 0; jc < (int)(sizeof jac_cases / sizeof jac_cases[0]); jc++) {
        rank_ctx plain = {.d = &d, .jac_case = jc, .batch = 3};
        jacobian_job(&plain, NULL);
        assert_int_equal(plain.st, NB_OK);
        world w1 = {.jac_case = jc, .batch = 3};
        rank_ctx one[1];
        run_ranks_job(&w1, one, 1, ds, 2);
        assert_int_equal(one[0].st, NB_OK);
        const nb_tensor *ref = one[0].J;
        assert_non_null(ref);
        assert_int_equal(ref->size, plain.J->size);
        double diff = 0, mx = 0;
        for (int64_t i = 0; i < ref->size; i++) {
            diff = fmax(diff, fabs((double)ref->data[i] - (double)plain.J->data[i]));
            mx = fmax(mx, fabs((double)plain.J->data[i]));
        }
        assert_true(mx > 0); /* not an all-zero Jacobian */
        assert_true(diff <= 1e-5 * mx);
        for (int P = 2; P <= MAX_RANKS; P++) {
            world w = {.jac_case = jc, .batch = 3, .use_gather = P != 2};
            rank_ctx ctx[MAX_RANKS];
            run_ranks_job(&w, ctx, P, ds, 2);
            for (int r = 0; r < P; r++) {
                assert_int_equal(ctx[r].st, NB_OK);
                if (r == 0)
                    assert_same_tensor_bits(ctx[0].J, ref);
                else
                    assert_null(ctx[r].J);
                nb_tensor_free(ctx[r].J);
                nb_model_free(ctx[r].m);
            }
        }
        nb_tensor_free(one[0].J);
        nb_model_free(one[0].m);
        nb_tensor_free(plain.J);
        nb_model_free(plain.m);
    }
    nb_set_num_threads(0);
    nb_dataset_free(&d);
}

/* Ranks with other values, the numeric mode, kinks, a bad communicator,
 * a J over the size limit and an empty batch. */
static void test_jacobian_refusals(void **state)
{
    (void)state;
    nb_dataset d = {0}, other = {0};
    make_data(&d);
    make_data(&other);
    other.x->data[5] += 0.25f;
    nb_set_num_threads(1);
    const nb_dataset *ds[2] = {&d, &other};
    world w = {.jac_case = 0, .batch = 3, .use_gather = 1};
    rank_ctx ctx[2];
    run_ranks_job(&w, ctx, 2, ds, 2);
    for (int r = 0; r < 2; r++) {
        assert_int_equal(ctx[r].st, NB_ERR_ARG);
        assert_null(ctx[r].J);
        assert_string_equal(ctx[r].msg, "jacobian: rank 1's shapes, options or values of out and wrt differ from rank "
                                        "0's: every rank must call nb_jacobian on the same graph, values and options");
        nb_model_free(ctx[r].m);
    }
    /* Rank 1's forward pass fails: rank 0 learns it and returns too. */
    world wn = {.jac_case = 1, .batch = 3, .use_gather = 1, .nan_rank = 1};
    const nb_dataset *same[2] = {&d, &d};
    run_ranks_job(&wn, ctx, 2, same, 2);
    assert_int_equal(ctx[1].st, NB_ERR_NUMERIC);
    assert_int_equal(ctx[0].st, NB_ERR_ARG);
    assert_string_equal(ctx[0].msg, "jacobian: rank 1 failed (its own message says why)");
    for (int r = 0; r < 2; r++) {
        assert_null(ctx[r].J);
        nb_model_free(ctx[r].m);
    }
    nb_model *m = new_model();
    assert_int_equal(nb_model_set_batch(m, 2), NB_OK);
    memcpy(nb_value(nb_model_input(m))->data, d.x->data, 128 * sizeof(nb_real));
    nb_node *y = nb_model_logits(m), *x = nb_model_input(m);
    world w1 = {.size = 1};
    rank_ctx c1 = {.w = &w1};
    assert_int_equal(pthread_barrier_init(&w1.bar, NULL, 1), 0);
    const nb_comm one = {0, 1, fake_allgather, fake_alltoall, &c1, fake_gather, NULL};
    nb_tensor *J = NULL, *K = NULL;
    nb_jacobian_opts o = {.mode = NB_JAC_NUMERIC, .comm = &one};
    assert_int_equal(nb_jacobian(y, x, &o, &J), NB_ERR_UNSUPPORTED);
    assert_string_equal(nb_last_error(), "jacobian: the numeric mode runs in one process (comm NULL)");
    assert_null(J);
    assert_int_equal(nb_jacobian_kinks(y, x, &o, 0, 0, &J, &K, NULL), NB_ERR_UNSUPPORTED);
    assert_null(J);
    assert_null(K);
    const nb_comm bad = {1, 1, fake_allgather, fake_alltoall, &c1, NULL, NULL};
    o = (nb_jacobian_opts){.comm = &bad};
    assert_int_equal(nb_jacobian(y, x, &o, &J), NB_ERR_ARG);
    assert_string_equal(nb_last_error(),
                        "jacobian: communicator with rank 1 of 1 processes or without its collectives");
    o = (nb_jacobian_opts){.comm = &one, .max_bytes = 64};
    assert_int_equal(nb_jacobian(y, x, &o, &J), NB_ERR_TOO_LARGE);
    assert_null(J);
    /* After a reshape to 1 example, per example: (1, 3, 8, 8, 1). */
    assert_int_equal(nb_model_set_batch(m, 1), NB_OK);
    o = (nb_jacobian_opts){.per_example = 1, .comm = &one};
    assert_int_equal(nb_jacobian(y, x, &o, &J), NB_OK);
    assert_int_equal(J->rank, 5);
    assert_int_equal(J->shape[0], 1);
    assert_int_equal(J->shape[1], 3);
    nb_tensor_free(J);
    pthread_barrier_destroy(&w1.bar);
    nb_model_free(m);
    nb_dataset_free(&other);
    nb_dataset_free(&d);
    nb_set_num_threads(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_and_ranks_same_bits),
        cmocka_unit_test(test_weights_differ_stops),
        cmocka_unit_test(test_plain_ranks_match_one_process),
        cmocka_unit_test(test_plain_ranks_faults),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_curvature_same_bits_any_P),
        cmocka_unit_test(test_curvature_refusals),
        cmocka_unit_test(test_curvature_many_tensors_exact_trace),
        cmocka_unit_test(test_jacobian_ranks_same_bits),
        cmocka_unit_test(test_jacobian_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
