/* The gradient check of every op (`nabla gradcheck`, and the test suite in
 * double): each case builds a small graph on random inputs away from kinks
 * (relu at 0, max-pool ties) and checks the reverse- and forward-mode
 * Jacobians of its output against central differences, for every leaf whose
 * name does not start with '~' (labels and other constants). */
#include "../core/internal.h"

#include <stdio.h>

typedef nb_node *(*case_builder)(nb_graph *g, nb_rng *r);
typedef struct {
    const char *op, *name;
    case_builder build;
} op_case;

static nb_node *leaf(nb_graph *g, nb_rng *r, const char *name, int rank, const int64_t *shape, double lo, double hi)
{
    nb_node *x = nb_input(g, name, rank, shape);
    if (x) nb_tensor_fill_uniform(nb_value(x), r, lo, hi);
    return x;
}
#define SHAPE(...) (sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}
#define X(name, lo, hi, ...) leaf(g, r, name, SHAPE(__VA_ARGS__), lo, hi)

/* Unary elementwise ops on (3, 4), inputs in their smooth domain. */
#define UNARY_CASE(fn, call, lo, hi) \
    static nb_node *case_##fn(nb_graph *g, nb_rng *r) { nb_node *x = X("x", lo, hi, 3, 4); return call; }
UNARY_CASE(neg, nb_neg(x), -2, 2)
UNARY_CASE(exp, nb_exp(x), -2, 2)
UNARY_CASE(log, nb_log(x), 0.5, 3)
UNARY_CASE(sqrt, nb_sqrt(x), 0.5, 3)
UNARY_CASE(abs, nb_abs(x), -2, 2)
UNARY_CASE(pow, nb_pow(x, 3.0), -2, 2)
UNARY_CASE(powfrac, nb_pow(x, 0.5), 0.5, 3)
UNARY_CASE(scale, nb_scale(x, -1.5), -2, 2)
UNARY_CASE(sigmoid, nb_sigmoid(x), -4, 4)
UNARY_CASE(tanh, nb_tanh(x), -3, 3)
UNARY_CASE(relu, nb_relu(x), -2, 2)
UNARY_CASE(leaky_relu, nb_leaky_relu(x, 0.1), -2, 2)
UNARY_CASE(elu, nb_elu(x, 1.0), -2, 2)
UNARY_CASE(softplus, nb_softplus(x), -4, 4)
UNARY_CASE(gelu, nb_gelu(x), -3, 3)

/* Binary ops: equal shapes and broadcasting both ways. */
#define BINARY_CASE(fn, call, sa, sb)                                                  \
    static nb_node *case_##fn(nb_graph *g, nb_rng *r)                                  \
    {                                                                                  \
        nb_node *a = X("a", 0.5, 2, sa), *b = X("b", 0.5, 2, sb);                      \
        return call(a, b);                                                             \
    }
#define P(...) __VA_ARGS__
BINARY_CASE(add, nb_add, P(2, 3), P(2, 3))
BINARY_CASE(add_bias, nb_add, P(4, 3), P(3))
BINARY_CASE(sub_bcast, nb_sub, P(2, 1, 3), P(4, 1))
BINARY_CASE(mul, nb_mul, P(2, 3), P(2, 3))
BINARY_CASE(mul_bcast, nb_mul, P(3, 1), P(1, 4))
BINARY_CASE(div, nb_div, P(2, 3), P(2, 3))
BINARY_CASE(div_scalar, nb_div, P(2, 3), P(1))

static nb_node *case_matmul(nb_graph *g, nb_rng *r) { return nb_matmul(X("a", -1, 1, 3, 4), X("b", -1, 1, 4, 2)); }
static nb_node *case_matmul_batched(nb_graph *g, nb_rng *r)
{
    return nb_matmul(X("a", -1, 1, 2, 3, 4), X("b", -1, 1, 4, 2));
}
static nb_node *case_matmul_bcast(nb_graph *g, nb_rng *r)
{
    return nb_matmul(X("a", -1, 1, 2, 1, 2, 3), X("b", -1, 1, 3, 3, 2));
}
static nb_node *case_dense(nb_graph *g, nb_rng *r)
{
    nb_node *a = X("a", -1, 1, 5, 4), *w = X("w", -1, 1, 4, 3), *b = X("b", -1, 1, 3);
    return nb_tanh(nb_add(nb_matmul(a, w), b));
}
static nb_node *case_reuse(nb_graph *g, nb_rng *r)
{
    /* x used three times: its gradients must accumulate. */
    nb_node *x = X("x", 0.5, 2, 2, 3);
    return nb_add(nb_mul(x, x), nb_exp(x));
}

/* ---- more ops append their cases here ---- */

static const op_case cases[] = {
    {"neg", "3x4", case_neg},
    {"exp", "3x4", case_exp},
    {"log", "3x4", case_log},
    {"sqrt", "3x4", case_sqrt},
    {"abs", "3x4", case_abs},
    {"pow", "x^3", case_pow},
    {"pow", "x^0.5", case_powfrac},
    {"scale", "-1.5x", case_scale},
    {"sigmoid", "3x4", case_sigmoid},
    {"tanh", "3x4", case_tanh},
    {"relu", "3x4", case_relu},
    {"leaky_relu", "slope 0.1", case_leaky_relu},
    {"elu", "alpha 1", case_elu},
    {"softplus", "3x4", case_softplus},
    {"gelu", "3x4", case_gelu},
    {"add", "same shape", case_add},
    {"add", "bias (4,3)+(3)", case_add_bias},
    {"sub", "(2,1,3)-(4,1)", case_sub_bcast},
    {"mul", "same shape", case_mul},
    {"mul", "(3,1)*(1,4)", case_mul_bcast},
    {"div", "same shape", case_div},
    {"div", "by (1,)", case_div_scalar},
    {"matmul", "(3,4)@(4,2)", case_matmul},
    {"matmul", "batched (2,3,4)@(4,2)", case_matmul_batched},
    {"matmul", "bcast (2,1,2,3)@(3,3,2)", case_matmul_bcast},
    {"dense", "tanh(AW+b)", case_dense},
    {"graph", "x reused: x*x+exp(x)", case_reuse},
    /* ---- more ops append their table rows here ---- */
};

int nb_opcheck_all(uint64_t seed, const nb_gradcheck_opts *opts,
                   void (*report)(const nb_opcheck_row *row, void *user), void *user)
{
    int failures = 0;
    nb_rng r;
    nb_rng_seed(&r, seed);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        nb_graph *g = nb_graph_new();
        if (!g) return -1;
        nb_node *out = cases[c].build(g, &r);
        if (!out) {
            nb_graph_free(g);
            return -1;
        }
        for (int i = 0; i < nb_graph_size(g); i++) {
            nb_node *x = nb_graph_node(g, i);
            if (x->kind == NB_KIND_OP || x->name[0] == '~') continue;
            nb_opcheck_row row = {cases[c].op, cases[c].name, x->name, {0}, {0}};
            nb_shape_str(x->value.rank, x->value.shape, row.shape, sizeof row.shape);
            if (nb_gradcheck(out, x, opts, &row.r) != NB_OK) {
                nb_graph_free(g);
                return -1;
            }
            if (!row.r.ok) failures++;
            if (report) report(&row, user);
        }
        nb_graph_free(g);
    }
    return failures;
}
