/* The op registry (src/ops/op_list.h, registry.c): every op has a complete
 * descriptor and gradient-check cases that really exercise it, and the
 * gradient check really compares both modes with central differences (a
 * wrong VJP or a wrong JVP is caught). Double build. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nabla.h"
#include "nb_test_f64.h"
#include "ops/ops_internal.h"

static const nb_gradcheck_opts TIGHT = {1e-6, 1e-5, 1e-3}; /* PyTorch's gradcheck defaults */

/* Each descriptor is complete, its name unique and found by nb_op_find,
 * and it has at least one gradient-check case: an op added without one
 * fails here. */
static void test_every_op_is_complete(void **state)
{
    (void)state;
    const int count = nb_op_count();
    assert_true(count >= 34);
    assert_null(nb_op_at(-1));
    assert_null(nb_op_at(count));
    assert_null(nb_op_find("no such op"));
    for (int i = 0; i < count; i++) {
        const nb_op *op = nb_op_at(i);
        assert_non_null(op);
        assert_non_null(op->name);
        if (op->ncases < 1 || !op->cases) fail_msg("op %s has no gradient-check case (nb_op.cases)", op->name);
        assert_true(op->ninputs >= 1 && op->ninputs <= NB_NODE_MAX_INPUTS);
        assert_true(op->attrs_size <= NB_ATTRS_BYTES);
        assert_non_null(op->infer);
        assert_non_null(op->forward);
        assert_non_null(op->vjp);
        assert_non_null(op->jvp);
        assert_ptr_equal(nb_op_find(op->name), op);
        for (int j = 0; j < i; j++) assert_string_not_equal(nb_op_at(j)->name, op->name);
        for (int c = 0; c < op->ncases; c++) {
            assert_non_null(op->cases[c].name);
            assert_non_null(op->cases[c].build);
        }
    }
}

/* Every case's graph contains its op, and every leaf's reverse- and
 * forward-mode Jacobians match central differences and are not all zero. */
static void test_every_case_checks_its_op(void **state)
{
    (void)state;
    nb_rng r;
    nb_rng_seed(&r, 7);
    int cases = 0;
    for (int i = 0; i < nb_op_count(); i++) {
        const nb_op *op = nb_op_at(i);
        for (int c = 0; c < op->ncases; c++, cases++) {
            nb_graph *g = nb_graph_new();
            assert_non_null(g);
            nb_node *out = op->cases[c].build(g, &r);
            if (!out) fail_msg("%s, case %s: %s", op->name, op->cases[c].name, nb_last_error());
            bool has_op = false;
            int leaves = 0;
            for (int k = 0; k < nb_graph_size(g); k++) {
                nb_node *x = nb_graph_node(g, k);
                has_op |= x->op == op;
                if (x->kind == NB_KIND_OP || x->name[0] == '~') continue;
                nb_gradcheck_result res;
                assert_int_equal(nb_gradcheck(out, x, &TIGHT, &res), NB_OK);
                if (!res.ok || !(res.max_abs_jacobian > 0))
                    fail_msg("%s, case %s, wrt %s: ok %d, max |J| %g", op->name, op->cases[c].name, x->name, res.ok,
                             res.max_abs_jacobian);
                leaves++;
            }
            if (!has_op) fail_msg("%s: case %s does not use the op", op->name, op->cases[c].name);
            assert_true(leaves >= 1);
            nb_graph_free(g);
        }
    }
    assert_true(cases >= 60);
}

/* nb_opcheck_all (what `nabla gradcheck` runs) reports every op. */
typedef struct {
    int rows[64];
    int failures;
} per_op;

static void count_row(const nb_opcheck_row *row, void *user)
{
    per_op *p = user;
    const nb_op *op = nb_op_find(row->op);
    assert_non_null(op);
    for (int i = 0; i < nb_op_count(); i++)
        if (nb_op_at(i) == op) p->rows[i]++;
    p->failures += !row->r.ok;
}

static void test_opcheck_all_reports_every_op(void **state)
{
    (void)state;
    per_op p = {{0}, 0};
    assert_true(nb_op_count() <= 64);
    assert_int_equal(nb_opcheck_all(3, &TIGHT, count_row, &p), 0);
    assert_int_equal(p.failures, 0);
    for (int i = 0; i < nb_op_count(); i++)
        if (p.rows[i] < 1) fail_msg("nb_opcheck_all reported no row for %s", nb_op_at(i)->name);
}

/* y = x^2 with a VJP or a JVP that is wrong (3x instead of 2x): the
 * gradient check must catch each, in its own mode. */
static nb_status sq_forward(nb_node *n)
{
    for (int64_t i = 0; i < n->value.size; i++) n->value.data[i] = n->in[0]->value.data[i] * n->in[0]->value.data[i];
    return NB_OK;
}
static nb_status sq_vjp(nb_node *n, int in, int64_t K, const nb_real *dy, nb_real *dx, bool acc, double f)
{
    const int64_t m = n->value.size;
    for (int64_t k = 0; k < K; k++)
        for (int64_t i = 0; i < m; i++) NB_PUT(acc, dx[k * m + i], f * n->in[0]->value.data[i] * dy[k * m + i]);
    return NB_OK;
}
static nb_status sq_jvp(nb_node *n, int64_t K, nb_real *const *dxs, nb_real *dy, double f)
{
    const int64_t m = n->value.size;
    for (int64_t k = 0; k < K; k++)
        for (int64_t i = 0; i < m; i++) dy[k * m + i] = f * n->in[0]->value.data[i] * dxs[0][k * m + i];
    return NB_OK;
}
static nb_status vjp_right(nb_node *n, int i, int64_t K, const nb_real *dy, nb_real *dx, bool acc)
{
    return sq_vjp(n, i, K, dy, dx, acc, 2);
}
static nb_status vjp_wrong(nb_node *n, int i, int64_t K, const nb_real *dy, nb_real *dx, bool acc)
{
    return sq_vjp(n, i, K, dy, dx, acc, 3);
}
static nb_status jvp_right(nb_node *n, int64_t K, nb_real *const *dxs, nb_real *dy) { return sq_jvp(n, K, dxs, dy, 2); }
static nb_status jvp_wrong(nb_node *n, int64_t K, nb_real *const *dxs, nb_real *dy) { return sq_jvp(n, K, dxs, dy, 3); }

static void check_square(nb_status (*vjp)(nb_node *, int, int64_t, const nb_real *, nb_real *, bool),
                         nb_status (*jvp)(nb_node *, int64_t, nb_real *const *, nb_real *), bool rev_ok, bool fwd_ok)
{
    const nb_op op = {.name = "square", .ninputs = 1, .infer = nb_infer_same_shape, .forward = sq_forward,
                      .vjp = vjp, .jvp = jvp};
    nb_graph *g = nb_graph_new();
    nb_rng r;
    nb_rng_seed(&r, 1);
    nb_node *x = nb_check_leaf(g, &r, "x", NB_SHAPE(2, 3), 0.5, 2);
    nb_node *y = nb_node_op_new(&op, 1, &x, NULL);
    assert_non_null(y);
    nb_gradcheck_result res;
    assert_int_equal(nb_gradcheck(y, x, &TIGHT, &res), NB_OK);
    assert_int_equal(res.ok, rev_ok && fwd_ok);
    /* a wrong mode is off by |x| >= 0.5 somewhere; a right one by ~1e-9 */
    if (rev_ok) assert_true(res.max_err_rev < 1e-6);
    else assert_true(res.max_err_rev > 0.4);
    if (fwd_ok) assert_true(res.max_err_fwd < 1e-6);
    else assert_true(res.max_err_fwd > 0.4);
    nb_graph_free(g);
}

static void test_gradcheck_catches_a_wrong_vjp_or_jvp(void **state)
{
    (void)state;
    check_square(vjp_right, jvp_right, true, true);
    check_square(vjp_wrong, jvp_right, false, true);
    check_square(vjp_right, jvp_wrong, true, false);
}

/* Attributes are copied into the node, typed by the op: changing the
 * caller's struct afterwards changes nothing. */
static void test_attributes_are_the_nodes_own(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", NB_SHAPE(2, 2));
    nb_value(x)->data[0] = 1, nb_value(x)->data[1] = -2, nb_value(x)->data[2] = 3, nb_value(x)->data[3] = 0.5;
    nb_node *p = nb_pow(x, 2.0), *s = nb_scale(x, -3.0), *l = nb_leaky_relu(x, 0.25);
    assert_int_equal(nb_forward(g), NB_OK);
    NEAR(nb_value(p)->data[1], 4, 1e-15);
    NEAR(nb_value(s)->data[2], -9, 1e-15);
    NEAR(nb_value(l)->data[1], -0.5, 1e-15);
    assert_ptr_equal(p->op, &nb_op_pow);
    assert_ptr_equal(l->op, &nb_op_leaky_relu);
    nb_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_op_is_complete),
        cmocka_unit_test(test_every_case_checks_its_op),
        cmocka_unit_test(test_opcheck_all_reports_every_op),
        cmocka_unit_test(test_gradcheck_catches_a_wrong_vjp_or_jvp),
        cmocka_unit_test(test_attributes_are_the_nodes_own),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
