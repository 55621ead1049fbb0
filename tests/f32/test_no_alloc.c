/* The steady-state training loop allocates nothing: buffers are planned once
 * and only grow, so after the largest batch has run, forward, backward and
 * the optimiser step make no malloc/calloc/realloc/aligned_alloc call.
 * This program is linked with -Wl,--wrap for those functions (see
 * tests/CMakeLists.txt), which counts every call made by nabla's code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "nabla.h"

static long allocations;

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t s);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);
void *__wrap_malloc(size_t n) { __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED); return __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t s) { __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED); return __real_calloc(n, s); }
void *__wrap_realloc(void *p, size_t n) { __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED); return __real_realloc(p, n); }
void *__wrap_aligned_alloc(size_t a, size_t n)
{
    __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
    return __real_aligned_alloc(a, n);
}

static void step_with(nb_model *m, nb_node *loss, nb_optim *o, int64_t batch, nb_status (*backward)(nb_node *))
{
    assert_int_equal(nb_model_set_batch(m, batch), NB_OK);
    nb_tensor *x = nb_value(nb_model_input(m));
    for (int64_t i = 0; i < x->size; i++) x->data[i] = (nb_real)((i * 7919) % 255) / 255;
    nb_node *target;
    assert_int_equal(nb_model_loss(m, NB_LOSS_CCE, &target, NULL), NB_OK);
    for (int64_t i = 0; i < batch; i++) nb_value(target)->data[i] = (nb_real)(i % 10);
    assert_int_equal(nb_forward(nb_model_graph(m)), NB_OK);
    assert_int_equal(backward(loss), NB_OK);
    assert_int_equal(nb_optim_step(o), NB_OK);
}

static void step(nb_model *m, nb_node *loss, nb_optim *o, int64_t batch) { step_with(m, loss, o, batch, nb_backward); }

static void test_training_steps_allocate_nothing(void **state)
{
    (void)state;
    const int64_t in[3] = {28, 28, 1};
    nb_model *m;
    assert_int_equal(nb_model_from_spec("conv2d 8 3 relu; conv2d 16 3 relu; maxpool 2; flatten; dropout 0.25; "
                                        "dense 32 relu; dense 10",
                                        3, in, &m),
                     NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 1), NB_OK);
    nb_graph_set_training(nb_model_graph(m), 1, 7);
    nb_node *loss;
    assert_int_equal(nb_model_loss(m, NB_LOSS_CCE, NULL, &loss), NB_OK);
    nb_optim *o;
    nb_optim_opts oo = {.kind = NB_OPT_ADAM, .lr = 1e-3};
    assert_int_equal(nb_optim_new(m, &oo, &o), NB_OK);
    /* Warm-up: the largest batch, then a smaller last batch of an epoch. */
    step(m, loss, o, 32);
    step(m, loss, o, 20);
    long before = allocations;
    for (int i = 0; i < 6; i++) step(m, loss, o, i % 3 == 2 ? 20 : 32);
    assert_int_equal(allocations - before, 0);
    /* The counter does count: building anything allocates. */
    nb_tensor *t = nb_tensor_new(1, in);
    assert_true(allocations > before);
    nb_tensor_free(t);
    nb_optim_free(o);
    nb_model_free(m);
}

/* What nabla train runs: a graph model (residual add, batchnorm, a name read
 * twice) with nb_backward_leaves, whose lent adjoints settle into the pool's
 * buffers after the warm-up batches as the planned ones do. */
static void test_lent_adjoints_allocate_nothing(void **state)
{
    (void)state;
    const int64_t in[3] = {12, 12, 1};
    nb_model *m;
    assert_int_equal(nb_model_from_spec("conv2d 8 3 padding=same; batchnorm; relu as a; conv2d 8 3 padding=same; "
                                        "batchnorm; add a; relu; conv2d 16 3 stride=2 padding=same; batchnorm; "
                                        "relu; globalavgpool; dense 10",
                                        3, in, &m),
                     NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 1), NB_OK);
    nb_graph_set_training(nb_model_graph(m), 1, 7);
    nb_node *loss;
    assert_int_equal(nb_model_loss(m, NB_LOSS_CCE, NULL, &loss), NB_OK);
    nb_optim *o;
    nb_optim_opts oo = {.kind = NB_OPT_SGD, .lr = 1e-2, .momentum = 0.9};
    assert_int_equal(nb_optim_new(m, &oo, &o), NB_OK);
    step_with(m, loss, o, 32, nb_backward_leaves);
    step_with(m, loss, o, 20, nb_backward_leaves);
    long before = allocations;
    for (int i = 0; i < 6; i++) step_with(m, loss, o, i % 3 == 2 ? 20 : 32, nb_backward_leaves);
    assert_int_equal(allocations - before, 0);
    nb_optim_free(o);
    nb_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_training_steps_allocate_nothing),
                                       cmocka_unit_test(test_lent_adjoints_allocate_nothing)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
