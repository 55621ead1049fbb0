/* K stacked seeds and tangents in one pass (issue 12, the Hessian's speed):
 * matmul's products w.r.t. its right input as one GEMM of K n columns, the
 * flat VJPs and JVPs of add and sub over all K, and nb_hessian's passes of
 * several hundred tangents. Each must equal K passes of one (and the
 * hand-written product), also when an input is used twice (accumulating),
 * at batch 0 after a larger batch left values in every buffer, and when a
 * Hessian's columns do not divide into equal passes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "nabla.h"
#include "nb_test_f64.h"

static const double TIGHT = 1e-12;

static void assert_ok(nb_status s)
{
    if (s != NB_OK) print_error("%s: %s\n", nb_status_name(s), nb_last_error());
    assert_int_equal(s, NB_OK);
}

static nb_tensor *random_stack(int64_t K, const nb_node *n, nb_rng *r)
{
    const nb_tensor *v = nb_value((nb_node *)n);
    int64_t shape[NB_MAX_RANK + 1] = {K};
    memcpy(shape + 1, v->shape, sizeof(int64_t) * (size_t)v->rank);
    nb_tensor *t = nb_tensor_new(v->rank + 1, shape);
    assert_non_null(t);
    nb_tensor_fill_normal(t, r, 0, 1);
    return t;
}

/* Row k of a stack as a stack of one. */
static nb_tensor *row_of(const nb_tensor *t, int64_t k)
{
    int64_t shape[NB_MAX_RANK + 1];
    memcpy(shape, t->shape, sizeof(int64_t) * (size_t)t->rank);
    shape[0] = 1;
    nb_tensor *r = nb_tensor_new(t->rank, shape);
    assert_non_null(r);
    memcpy(r->data, t->data + k * r->size, (size_t)r->size * sizeof(nb_real));
    return r;
}

/* nb_jvp of K stacked tangents against K calls of one. */
static void jvp_stacked_vs_single(nb_node *out, int nwrt, nb_node **wrt, nb_tensor **tan, int64_t K)
{
    nb_tensor *all = NULL;
    assert_ok(nb_jvp(out, nwrt, wrt, (const nb_tensor *const *)tan, &all));
    const int64_t m = nb_value(out)->size;
    for (int64_t k = 0; k < K; k++) {
        nb_tensor *one[4], *res = NULL;
        for (int i = 0; i < nwrt; i++) one[i] = row_of(tan[i], k);
        assert_ok(nb_jvp(out, nwrt, wrt, (const nb_tensor *const *)one, &res));
        for (int64_t e = 0; e < m; e++) NEAR(all->data[k * m + e], res->data[e], TIGHT);
        for (int i = 0; i < nwrt; i++) nb_tensor_free(one[i]);
        nb_tensor_free(res);
    }
    nb_tensor_free(all);
}

/* nb_vjp of K stacked seeds w.r.t. w against K calls of one. */
static void vjp_stacked_vs_single(nb_node *out, nb_node *w, const nb_tensor *seeds, int64_t K)
{
    nb_tensor *all = NULL;
    assert_ok(nb_vjp(out, seeds, 1, &w, &all));
    const int64_t m = nb_value(w)->size;
    for (int64_t k = 0; k < K; k++) {
        nb_tensor *one = row_of(seeds, k), *res = NULL;
        assert_ok(nb_vjp(out, one, 1, &w, &res));
        for (int64_t e = 0; e < m; e++) NEAR(all->data[k * m + e], res->data[e], TIGHT);
        nb_tensor_free(one);
        nb_tensor_free(res);
    }
    nb_tensor_free(all);
}

/* y = x W (4 x 5 . 5 x 3): the VJP w.r.t. W for 6 seeds is x^T seed_k
 * (written out here), and the JVPs along W alone and along both inputs
 * equal single passes. */
static void test_matmul_right_input_stacked(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_rng r;
    nb_rng_seed(&r, 3);
    int64_t xs[2] = {4, 5}, ws[2] = {5, 3};
    nb_node *x = leaf(g, 1, "x", 2, xs, NULL), *w = leaf(g, 1, "w", 2, ws, NULL);
    nb_tensor_fill_normal(nb_value(x), &r, 0, 1);
    nb_tensor_fill_normal(nb_value(w), &r, 0, 1);
    nb_node *y = nb_matmul(x, w);
    assert_non_null(y);
    assert_ok(nb_forward(g));
    const int64_t K = 6;
    nb_tensor *seeds = random_stack(K, y, &r), *res = NULL;
    assert_ok(nb_vjp(y, seeds, 1, &w, &res));
    const double *X = nb_value(x)->data;
    for (int64_t k = 0; k < K; k++)
        for (int p = 0; p < 5; p++)
            for (int j = 0; j < 3; j++) {
                double want = 0;
                for (int i = 0; i < 4; i++) want += X[i * 5 + p] * seeds->data[k * 12 + i * 3 + j];
                NEAR(res->data[k * 15 + p * 3 + j], want, TIGHT);
            }
    nb_tensor_free(res);
    vjp_stacked_vs_single(y, w, seeds, K);
    nb_tensor *tw = random_stack(K, w, &r), *tx = random_stack(K, x, &r);
    nb_node *only_w[1] = {w}, *both[2] = {x, w};
    nb_tensor *tan_w[1] = {tw}, *tan_both[2] = {tx, tw};
    jvp_stacked_vs_single(y, 1, only_w, tan_w, K);
    jvp_stacked_vs_single(y, 2, both, tan_both, K);
    nb_tensor_free(seeds), nb_tensor_free(tw), nb_tensor_free(tx);
    nb_graph_free(g);
}

/* W read by two products, x W + z W: its adjoint accumulates the second
 * stacked product onto the first, its tangent flows into both. */
static void test_matmul_shared_kernel_accumulates(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_rng r;
    nb_rng_seed(&r, 4);
    int64_t xs[2] = {3, 4}, ws[2] = {4, 2};
    nb_node *x = leaf(g, 1, "x", 2, xs, NULL), *z = leaf(g, 1, "z", 2, xs, NULL), *w = leaf(g, 1, "w", 2, ws, NULL);
    nb_tensor_fill_normal(nb_value(x), &r, 0, 1);
    nb_tensor_fill_normal(nb_value(z), &r, 0, 1);
    nb_tensor_fill_normal(nb_value(w), &r, 0, 1);
    nb_node *y = nb_add(nb_matmul(x, w), nb_matmul(z, w));
    assert_non_null(y);
    assert_ok(nb_forward(g));
    const int64_t K = 5;
    nb_tensor *seeds = random_stack(K, y, &r), *res = NULL;
    assert_ok(nb_vjp(y, seeds, 1, &w, &res));
    const double *X = nb_value(x)->data, *Z = nb_value(z)->data;
    for (int64_t k = 0; k < K; k++)
        for (int p = 0; p < 4; p++)
            for (int j = 0; j < 2; j++) {
                double want = 0;
                for (int i = 0; i < 3; i++) want += (X[i * 4 + p] + Z[i * 4 + p]) * seeds->data[k * 6 + i * 2 + j];
                NEAR(res->data[k * 8 + p * 2 + j], want, TIGHT);
            }
    nb_tensor_free(res);
    nb_tensor *tw = random_stack(K, w, &r);
    nb_node *only_w[1] = {w};
    nb_tensor *tan_w[1] = {tw};
    jvp_stacked_vs_single(y, 1, only_w, tan_w, K);
    nb_tensor_free(seeds), nb_tensor_free(tw);
    nb_graph_free(g);
}

/* Batch 0 after batch 4 (every buffer holds that pass's numbers): the
 * stacked VJP w.r.t. W is exactly zero, the JVP empty, the HVP zero. */
static void test_matmul_stacked_at_batch_zero(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_rng r;
    nb_rng_seed(&r, 5);
    int64_t xs[2] = {4, 5}, ws[2] = {5, 3};
    nb_node *x = leaf(g, 0, "x", 2, xs, NULL), *w = leaf(g, 1, "w", 2, ws, NULL);
    nb_tensor_fill_normal(nb_value(x), &r, 0, 1);
    nb_tensor_fill_normal(nb_value(w), &r, 0, 1);
    nb_node *y = nb_matmul(x, w), *L = nb_sum(nb_mul(y, y), 0, NULL, 0);
    assert_non_null(L);
    assert_ok(nb_forward(g));
    const int64_t K = 4;
    nb_tensor *seeds = random_stack(K, y, &r), *res = NULL, *tw = random_stack(K, w, &r), *hv = NULL;
    assert_ok(nb_vjp(y, seeds, 1, &w, &res));
    nb_tensor_free(res), nb_tensor_free(seeds);
    assert_ok(nb_hvp(L, 1, &w, (const nb_tensor *const *)&tw, &hv));
    nb_tensor_free(hv);
    int64_t zero[2] = {0, 5};
    assert_ok(nb_input_reshape(x, 2, zero));
    assert_ok(nb_forward(g));
    seeds = random_stack(K, y, &r);
    assert_int_equal(seeds->size, 0);
    assert_ok(nb_vjp(y, seeds, 1, &w, &res));
    assert_int_equal(res->size, K * 15);
    for (int64_t i = 0; i < res->size; i++) assert_true(res->data[i] == 0);
    nb_tensor *tj = NULL;
    assert_ok(nb_jvp(y, 1, &w, (const nb_tensor *const *)&tw, &tj));
    assert_int_equal(tj->size, 0);
    assert_ok(nb_hvp(L, 1, &w, (const nb_tensor *const *)&tw, &hv));
    for (int64_t i = 0; i < hv->size; i++) assert_true(hv->data[i] == 0);
    nb_tensor *H = NULL;
    assert_ok(nb_hessian(L, w, NULL, NULL, &H));
    for (int64_t i = 0; i < H->size; i++) assert_true(H->data[i] == 0);
    nb_tensor_free(H), nb_tensor_free(hv), nb_tensor_free(tj), nb_tensor_free(res);
    nb_tensor_free(seeds), nb_tensor_free(tw);
    nb_graph_free(g);
}

/* y = a - b with a (2,1,3) broadcast and b (2,4,3) of y's shape: the VJP
 * w.r.t. b is -seed, exactly, for every stacked seed; w.r.t. a it sums over
 * the stretched axis; the JVPs (b alone, both) equal single passes. And a
 * bias add read twice, (x + c) + x: x's adjoint is 2 seed. */
static void test_add_sub_stacked(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_rng r;
    nb_rng_seed(&r, 6);
    int64_t as[3] = {2, 1, 3}, bs[3] = {2, 4, 3}, xs[2] = {4, 3}, cs[1] = {3};
    nb_node *a = leaf(g, 1, "a", 3, as, NULL), *b = leaf(g, 1, "b", 3, bs, NULL);
    nb_node *x = leaf(g, 1, "x", 2, xs, NULL), *c = leaf(g, 1, "c", 1, cs, NULL);
    nb_tensor_fill_normal(nb_value(a), &r, 0, 1);
    nb_tensor_fill_normal(nb_value(b), &r, 0, 1);
    nb_tensor_fill_normal(nb_value(x), &r, 0, 1);
    nb_tensor_fill_normal(nb_value(c), &r, 0, 1);
    nb_node *y = nb_sub(a, b), *u = nb_add(nb_add(x, c), x);
    assert_non_null(y);
    assert_non_null(u);
    assert_ok(nb_forward(g));
    const int64_t K = 5;
    nb_tensor *seeds = random_stack(K, y, &r), *res = NULL;
    assert_ok(nb_vjp(y, seeds, 1, &b, &res));
    for (int64_t i = 0; i < seeds->size; i++) assert_true(res->data[i] == -seeds->data[i]);
    nb_tensor_free(res);
    assert_ok(nb_vjp(y, seeds, 1, &a, &res));
    for (int64_t k = 0; k < K; k++)
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++) {
                double want = 0;
                for (int t = 0; t < 4; t++) want += seeds->data[k * 24 + i * 12 + t * 3 + j];
                NEAR(res->data[k * 6 + i * 3 + j], want, TIGHT);
            }
    nb_tensor_free(res);
    nb_tensor *ta = random_stack(K, a, &r), *tb = random_stack(K, b, &r), *tj = NULL;
    assert_ok(nb_jvp(y, 1, &b, (const nb_tensor *const *)&tb, &tj));
    for (int64_t i = 0; i < tb->size; i++) assert_true(tj->data[i] == -tb->data[i]);
    nb_tensor_free(tj);
    nb_node *both[2] = {a, b};
    nb_tensor *tan_both[2] = {ta, tb};
    jvp_stacked_vs_single(y, 2, both, tan_both, K);
    nb_tensor *su = random_stack(K, u, &r);
    assert_ok(nb_vjp(u, su, 1, &x, &res));
    for (int64_t i = 0; i < su->size; i++) NEAR(res->data[i], 2 * su->data[i], TIGHT);
    nb_tensor_free(res);
    nb_tensor *tx = random_stack(K, x, &r);
    assert_ok(nb_jvp(u, 1, &x, (const nb_tensor *const *)&tx, &tj));
    for (int64_t i = 0; i < tx->size; i++) NEAR(tj->data[i], 2 * tx->data[i], TIGHT);
    nb_tensor_free(tj), nb_tensor_free(tx), nb_tensor_free(su);
    nb_tensor_free(seeds), nb_tensor_free(ta), nb_tensor_free(tb);
    nb_graph_free(g);
}

/* The mean CCE of a dense layer with a 30 x 20 kernel (600 columns: two
 * automatic passes of 300): the automatic passes, passes of 1 and of 7 (600
 * is no multiple of 7) give the same Hessian, the cross block with the bias
 * too, and a parameter the loss does not read has a zero Hessian. */
static void test_hessian_passes_agree(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_rng r;
    nb_rng_seed(&r, 7);
    int64_t xs[2] = {6, 30}, ws[2] = {30, 20}, bs[1] = {20}, ys[1] = {6};
    nb_node *x = leaf(g, 0, "x", 2, xs, NULL), *w = leaf(g, 1, "w", 2, ws, NULL), *b = leaf(g, 1, "b", 1, bs, NULL);
    nb_node *unused = leaf(g, 1, "unused", 1, bs, NULL), *lab = leaf(g, 0, "labels", 1, ys, NULL);
    nb_tensor_fill_normal(nb_value(x), &r, 0, 1);
    nb_tensor_fill_normal(nb_value(w), &r, 0, 0.3);
    nb_tensor_fill_normal(nb_value(b), &r, 0, 0.3);
    for (int i = 0; i < 6; i++) nb_value(lab)->data[i] = (double)((i * 7) % 20);
    nb_node *L = nb_cce_logits_loss(nb_add(nb_matmul(x, w), b), lab);
    assert_non_null(L);
    assert_ok(nb_forward(g));
    nb_tensor *Ha = NULL, *H1 = NULL, *H7 = NULL, *Ca = NULL, *C1 = NULL, *Z = NULL;
    assert_ok(nb_hessian(L, w, NULL, NULL, &Ha));
    assert_ok(nb_hessian(L, w, NULL, &(nb_hessian_opts){.chunk = 1}, &H1));
    assert_ok(nb_hessian(L, w, NULL, &(nb_hessian_opts){.chunk = 7}, &H7));
    assert_int_equal(Ha->size, 600 * 600);
    double big = 0;
    for (int64_t i = 0; i < Ha->size; i++) {
        NEAR(Ha->data[i], H1->data[i], TIGHT);
        NEAR(H7->data[i], H1->data[i], TIGHT);
        big = fmax(big, fabs(H1->data[i]));
    }
    assert_true(big > 1e-3); /* not a Hessian of zeros */
    for (int64_t i = 0; i < 600; i++)
        for (int64_t j = 0; j < i; j++) NEAR(Ha->data[i * 600 + j], Ha->data[j * 600 + i], TIGHT);
    assert_ok(nb_hessian(L, w, b, NULL, &Ca));
    assert_ok(nb_hessian(L, w, b, &(nb_hessian_opts){.chunk = 1}, &C1));
    for (int64_t i = 0; i < Ca->size; i++) NEAR(Ca->data[i], C1->data[i], TIGHT);
    assert_ok(nb_hessian(L, unused, NULL, NULL, &Z));
    for (int64_t i = 0; i < Z->size; i++) assert_true(Z->data[i] == 0);
    nb_tensor_free(Ha), nb_tensor_free(H1), nb_tensor_free(H7);
    nb_tensor_free(Ca), nb_tensor_free(C1), nb_tensor_free(Z);
    nb_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_right_input_stacked),
        cmocka_unit_test(test_matmul_shared_kernel_accumulates),
        cmocka_unit_test(test_matmul_stacked_at_batch_zero),
        cmocka_unit_test(test_add_sub_stacked),
        cmocka_unit_test(test_hessian_passes_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
