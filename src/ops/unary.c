/* Elementwise ops of one input, y_i = f(x_i).
 *
 * Jacobian: dy/dx = diag(f'(x)), a (shape + shape) tensor that is zero off
 * the diagonal. So the VJP is dx = dy * f'(x) and the JVP is dy = f'(x) * dx,
 * both elementwise. Each op below gives f (FWD, from x and attribute a) and
 * f' (DER, from x, y = f(x) and a); an op whose f' is 0 or 1 may instead give
 * the product itself (CHAIN, from x, y, a and the seed or tangent element g),
 * as a gate that selects g rather than multiplying it, so that a NaN or Inf
 * in g where f' = 0 gives 0 (relu, like its fused form in conv2d). */
#include "ops_internal.h"

#include <math.h>

/* The one real parameter of pow (exponent), scale (factor), leaky_relu
 * (slope) and elu (alpha); the other unary ops have no attributes, and read
 * a = 0 from their zeroed attribute bytes. */
typedef struct unary_param {
    double a;
} unary_param;
NB_ATTRS_FIT(unary_param);

static nb_real unary_a(const nb_node *n) { return (nb_real)((const unary_param *)nb_node_attrs_c(n))->a; }

nb_status nb_infer_same_shape(nb_node *n)
{
    nb_tensor_set_shape(&n->value, n->in[0]->value.rank, n->in[0]->value.shape);
    return NB_OK;
}

#define PAR_FOR _Pragma("omp parallel for simd schedule(static) if (count > NB_PAR_MAP)")

#define UNARY_OP_CHAIN(NAME, FWD, CHAIN)                                                          \
    static nb_status NAME##_forward(nb_node *n)                                                   \
    {                                                                                             \
        const nb_real *xs = n->in[0]->value.data;                                                 \
        nb_real *ys = n->value.data;                                                              \
        const nb_real a = unary_a(n);                                                          \
        const int64_t count = n->value.size;                                                      \
        (void)a;                                                                                  \
        PAR_FOR for (int64_t i = 0; i < count; i++)                                               \
        {                                                                                         \
            const nb_real x = xs[i];                                                              \
            ys[i] = (FWD);                                                                        \
        }                                                                                         \
        return NB_OK;                                                                             \
    }                                                                                             \
    static nb_status NAME##_vjp(nb_node *n, int in, int64_t K, const nb_real *dy, nb_real *dx,    \
                                bool acc)                                                         \
    {                                                                                             \
        const nb_real *xs = n->in[0]->value.data, *ys = n->value.data;                            \
        const nb_real a = unary_a(n);                                                             \
        const int64_t m = n->value.size;                                                          \
        (void)a;                                                                                  \
        for (int64_t k = 0; k < K; k++) {                                                         \
            const nb_real *gs = dy + k * m;                                                       \
            nb_real *r = dx + k * m;                                                              \
            const int64_t count = m;                                                              \
            /* acc decided outside the loops, so both vectorise */                                \
            if (acc) {                                                                            \
                PAR_FOR for (int64_t i = 0; i < count; i++)                                       \
                {                                                                                 \
                    const nb_real x = xs[i], y = ys[i], g = gs[i];                                \
                    (void)x, (void)y;                                                             \
                    r[i] += (CHAIN);                                                              \
                }                                                                                 \
            } else {                                                                              \
                PAR_FOR for (int64_t i = 0; i < count; i++)                                       \
                {                                                                                 \
                    const nb_real x = xs[i], y = ys[i], g = gs[i];                                \
                    (void)x, (void)y;                                                             \
                    r[i] = (CHAIN);                                                               \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
        return NB_OK;                                                                             \
    }                                                                                             \
    static nb_status NAME##_jvp(nb_node *n, int64_t K, nb_real *const *dxs, nb_real *dy)          \
    {                                                                                             \
        const nb_real *xs = n->in[0]->value.data, *ys = n->value.data;                            \
        const nb_real a = unary_a(n);                                                          \
        const int64_t m = n->value.size;                                                          \
        (void)a;                                                                                  \
        for (int64_t k = 0; k < K; k++) {                                                         \
            const nb_real *ts = dxs[0] + k * m;                                                   \
            nb_real *r = dy + k * m;                                                              \
            const int64_t count = m;                                                              \
            PAR_FOR for (int64_t i = 0; i < count; i++)                                           \
            {                                                                                     \
                const nb_real x = xs[i], y = ys[i], g = ts[i];                                    \
                (void)x, (void)y;                                                                 \
                r[i] = (CHAIN);                                                                   \
            }                                                                                     \
        }                                                                                         \
        return NB_OK;                                                                             \
    }

#define UNARY_OP(NAME, FWD, DER) UNARY_OP_CHAIN(NAME, FWD, g * (DER))

static nb_node *unary_new(const nb_op *op, nb_node *x, double a)
{
    const unary_param at = {a};
    return nb_node_op_new(op, 1, &x, &at);
}

#define ONE ((nb_real)1)
#define HALF ((nb_real)0.5)

/* neg: f = -x, f' = -1 */
UNARY_OP(neg, -x, -ONE)
/* exp: f' = e^x = y */
UNARY_OP(exp, RE(exp)(x), y)
/* log: f' = 1/x */
UNARY_OP(log, RE(log)(x), ONE / x)
/* sqrt: f' = 1/(2 sqrt x) = 1/(2y) */
UNARY_OP(sqrt, RE(sqrt)(x), HALF / y)
/* abs: f' = sign(x) (0 at the kink x = 0, as PyTorch) */
UNARY_OP(abs, RE(fabs)(x), (nb_real)((x > 0) - (x < 0)))
/* pow by a scalar a: f' = a x^(a-1) */
UNARY_OP(pow, RE(pow)(x, a), a == 0 ? 0 : a * RE(pow)(x, a - ONE))
/* scale by a: f' = a */
UNARY_OP(scale, a * x, a)
/* sigmoid: f' = s (1 - s); computed without overflow for large |x| */
UNARY_OP(sigmoid, nb_sigmoid_stable(x), y * (ONE - y))
/* tanh: f' = 1 - y^2 */
UNARY_OP(tanh, RE(tanh)(x), ONE - y * y)
/* relu: f = max(x, 0) with NaN kept: x <= 0 is false for NaN, so NaN stays NaN
 * (as in leaky_relu, max pool and PyTorch; mapping it to 0 would hide a bad
 * input), and -0 gives +0. One compare, vectorised as a mask.
 * f' = [x > 0]: 0 at the kink, as PyTorch, and 0 at NaN; applied as a gate,
 * dx = x > 0 ? dy : 0, the same as conv2d's fused ReLU. */
UNARY_OP_CHAIN(relu, x <= 0 ? 0 : x, x > 0 ? g : 0)
/* leaky_relu with slope a: f' = 1 if x > 0 else a */
UNARY_OP(leaky_relu, x > 0 ? x : a * x, x > 0 ? ONE : a)
/* elu with alpha a: f = a (e^x - 1) for x <= 0, f' = y + a there */
UNARY_OP(elu, x > 0 ? x : a * RE(expm1)(x), x > 0 ? ONE : y + a)
/* softplus: f = log(1 + e^x) = max(x,0) + log1p(e^-|x|), f' = sigmoid(x) */
UNARY_OP(softplus, (x > 0 ? x : 0) + RE(log1p)(RE(exp)(-RE(fabs)(x))), nb_sigmoid_stable(x))
/* gelu (exact): f = x Phi(x), f' = Phi(x) + x phi(x) */
UNARY_OP(gelu, HALF * x * (ONE + RE(erf)(x * (nb_real)0.70710678118654752440)),
         HALF * (ONE + RE(erf)(x * (nb_real)0.70710678118654752440)) +
             x * (nb_real)0.39894228040143267794 * RE(exp)(-HALF * x * x))

/* Gradient-check cases: (3, 4) inputs in each function's smooth domain. */
#define UNARY_CASE(fn, call, lo, hi)                                                                            \
    static nb_node *case_##fn(nb_graph *g, nb_rng *r)                                                          \
    {                                                                                                          \
        nb_node *x = NB_CHECK_X("x", lo, hi, 3, 4);                                                            \
        return call;                                                                                           \
    }
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

static const nb_op_case neg_cases[] = {{"3x4", case_neg}};
static const nb_op_case exp_cases[] = {{"3x4", case_exp}};
static const nb_op_case log_cases[] = {{"3x4", case_log}};
static const nb_op_case sqrt_cases[] = {{"3x4", case_sqrt}};
static const nb_op_case abs_cases[] = {{"3x4", case_abs}};
static const nb_op_case pow_cases[] = {{"x^3", case_pow}, {"x^0.5", case_powfrac}};
static const nb_op_case scale_cases[] = {{"-1.5x", case_scale}};
static const nb_op_case sigmoid_cases[] = {{"3x4", case_sigmoid}};
static const nb_op_case tanh_cases[] = {{"3x4", case_tanh}};
static const nb_op_case relu_cases[] = {{"3x4", case_relu}};
static const nb_op_case leaky_relu_cases[] = {{"slope 0.1", case_leaky_relu}};
static const nb_op_case elu_cases[] = {{"alpha 1", case_elu}};
static const nb_op_case softplus_cases[] = {{"3x4", case_softplus}};
static const nb_op_case gelu_cases[] = {{"3x4", case_gelu}};

/* The descriptors; PARAM: whether the op has the attribute a. */
/* ------------------------------------------------------------ second order
 * The VJP is xbar = ybar f'(x), so its tangent along xdot is
 *   d(xbar) = ybar f''(x) xdot   (elementwise; K tangents, one seed ybar).
 * Each op below gives f'' (D2, from x, y = f(x) and a). Where f' is
 * piecewise constant (relu, leaky_relu, abs) f'' = 0 away from the kink,
 * the point itself being one finite differences cannot see either. */
#define UNARY_SECOND(NAME, D2)                                                                    \
    static nb_status NAME##_vjp_tangent(nb_node *n, int in, int64_t K, const nb_real *ybar,       \
                                        nb_real *const *xdots, nb_real *out, bool acc)            \
    {                                                                                             \
        const nb_real *xs = n->in[0]->value.data, *ys = n->value.data;                            \
        const nb_real a = unary_a(n);                                                  \
        const int64_t m = n->value.size;                                                          \
        (void)a;                                                                                  \
        if (!xdots[0]) return nb_vjp_tangent_zero(n, in, K, ybar, xdots, out, acc);               \
        for (int64_t k = 0; k < K; k++) {                                                         \
            const nb_real *ts = xdots[0] + k * m;                                                 \
            nb_real *r = out + k * m;                                                             \
            const int64_t count = m;                                                              \
            PAR_FOR for (int64_t i = 0; i < count; i++)                                           \
            {                                                                                     \
                const nb_real x = xs[i], y = ys[i];                                               \
                (void)x, (void)y;                                                                 \
                NB_PUT(acc, r[i], ybar[i] * (D2) * ts[i]);                                        \
            }                                                                                     \
        }                                                                                         \
        return NB_OK;                                                                             \
    }

/* neg, scale: linear, f'' = 0 */
UNARY_SECOND(neg, 0)
UNARY_SECOND(scale, 0)
/* exp: f'' = e^x = y */
UNARY_SECOND(exp, y)
/* log: f' = 1/x, f'' = -1/x^2 */
UNARY_SECOND(log, -ONE / (x * x))
/* sqrt: f' = 1/(2y), f'' = -1/(4 y^3) */
UNARY_SECOND(sqrt, -(nb_real)0.25 / (y * y * y))
/* abs: f'' = 0 for x != 0 */
UNARY_SECOND(abs, 0)
/* pow by a: f'' = a (a-1) x^(a-2) */
UNARY_SECOND(pow, a == 0 || a == 1 ? 0 : a * (a - ONE) * RE(pow)(x, a - 2 * ONE))
/* sigmoid: f' = s (1 - s), f'' = s (1 - s) (1 - 2s) */
UNARY_SECOND(sigmoid, y * (ONE - y) * (ONE - 2 * y))
/* tanh: f' = 1 - y^2, f'' = -2 y (1 - y^2) */
UNARY_SECOND(tanh, -2 * y * (ONE - y * y))
/* relu, leaky_relu: f' piecewise constant, f'' = 0 off the kink */
UNARY_SECOND(relu, 0)
UNARY_SECOND(leaky_relu, 0)
/* elu: f'' = a e^x = y + a for x <= 0, 0 for x > 0 */
UNARY_SECOND(elu, x > 0 ? 0 : y + a)
/* softplus: f' = sigmoid(x) = s, f'' = s (1 - s) */
UNARY_SECOND(softplus, (x >= 0 ? ONE / (ONE + RE(exp)(-x)) : RE(exp)(x) / (ONE + RE(exp)(x))) *
                           (x >= 0 ? RE(exp)(-x) / (ONE + RE(exp)(-x)) : ONE / (ONE + RE(exp)(x))))
/* gelu: f' = Phi + x phi, f'' = 2 phi + x phi' = phi (2 - x^2) */
UNARY_SECOND(gelu, (nb_real)0.39894228040143267794 * RE(exp)(-HALF * x * x) * (2 * ONE - x * x))

#define UNARY_DESC(NAME, PARAM)                                                                                  \
    const nb_op nb_op_##NAME = {                                                                                \
        .name = #NAME,                                                                                          \
        .ninputs = 1,                                                                                           \
        .attrs_size = (PARAM) ? sizeof(unary_param) : 0,                                                        \
        .infer = nb_infer_same_shape,                                                                           \
        .forward = NAME##_forward,                                                                              \
        .vjp = NAME##_vjp,                                                                                      \
        .jvp = NAME##_jvp,                                                                                      \
        .vjp_tangent = NAME##_vjp_tangent,                                                                      \
        .cases = NAME##_cases,                                                                                  \
        .ncases = NB_COUNT(NAME##_cases),                                                                       \
    };
UNARY_DESC(neg, 0)
UNARY_DESC(exp, 0)
UNARY_DESC(log, 0)
UNARY_DESC(sqrt, 0)
UNARY_DESC(abs, 0)
UNARY_DESC(pow, 1)
UNARY_DESC(scale, 1)
UNARY_DESC(sigmoid, 0)
UNARY_DESC(tanh, 0)
UNARY_DESC(relu, 0)
UNARY_DESC(leaky_relu, 1)
UNARY_DESC(elu, 1)
UNARY_DESC(softplus, 0)
UNARY_DESC(gelu, 0)

nb_node *nb_neg(nb_node *x) { return unary_new(&nb_op_neg, x, 0); }
nb_node *nb_exp(nb_node *x) { return unary_new(&nb_op_exp, x, 0); }
nb_node *nb_log(nb_node *x) { return unary_new(&nb_op_log, x, 0); }
nb_node *nb_sqrt(nb_node *x) { return unary_new(&nb_op_sqrt, x, 0); }
nb_node *nb_abs(nb_node *x) { return unary_new(&nb_op_abs, x, 0); }
nb_node *nb_pow(nb_node *x, double p) { return unary_new(&nb_op_pow, x, p); }
nb_node *nb_scale(nb_node *x, double s) { return unary_new(&nb_op_scale, x, s); }
nb_node *nb_sigmoid(nb_node *x) { return unary_new(&nb_op_sigmoid, x, 0); }
nb_node *nb_tanh(nb_node *x) { return unary_new(&nb_op_tanh, x, 0); }
nb_node *nb_relu(nb_node *x) { return unary_new(&nb_op_relu, x, 0); }
nb_node *nb_leaky_relu(nb_node *x, double slope) { return unary_new(&nb_op_leaky_relu, x, slope); }
nb_node *nb_elu(nb_node *x, double alpha) { return unary_new(&nb_op_elu, x, alpha); }
nb_node *nb_softplus(nb_node *x) { return unary_new(&nb_op_softplus, x, 0); }
nb_node *nb_gelu(nb_node *x) { return unary_new(&nb_op_gelu, x, 0); }
