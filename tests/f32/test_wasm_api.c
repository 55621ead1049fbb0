/* The web page's C API (src/wasm), compiled natively against the float
 * library: the numbers the page shows are asserted here against the
 * lecture's values and closed forms. (The browser test, tests/web/test.mjs,
 * checks the same API compiled to WebAssembly, in Chromium.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The API's sources, as scripts/web.sh compiles them into nabla.wasm (the
 * native library leaves src/wasm out). */
#include "wasm/nb_wasm.c"
#include "wasm/nb_wasm_net.c"

/* The lecture's slides: alpha 0.1 on f = 2x^2 gives x := 0.6x, alpha 1 gives
 * x := -3x; f' = 4x comes from the reverse pass. */
static void test_gd_lecture_values(void **state)
{
    (void)state;
    float xs[4], fs[4], gr[3];
    assert_int_equal(nbw_gd(NBW_GD_QUADRATIC, 1, 0.1, 3, xs, fs, gr), NB_OK);
    const float want[4] = {1, 0.6f, 0.36f, 0.216f};
    for (int t = 0; t < 4; t++) {
        assert_float_equal(xs[t], want[t], 1e-6);
        assert_float_equal(fs[t], 2 * want[t] * want[t], 1e-6);
    }
    for (int t = 0; t < 3; t++) assert_float_equal(gr[t], 4 * want[t], 1e-6);
    assert_int_equal(nbw_gd(NBW_GD_QUADRATIC, 1, 1, 3, xs, fs, gr), NB_OK);
    assert_true(xs[1] == -3 && xs[2] == 9 && xs[3] == -27);
    assert_true(fs[3] == 2 * 27 * 27);
}

/* The other functions: f and f' against their closed forms. */
static void test_gd_functions(void **state)
{
    (void)state;
    float xs[2], fs[2], gr[1];
    /* x^4 - 3x^2 + x at 1.5: f = 5.0625 - 6.75 + 1.5, f' = 13.5 - 9 + 1 */
    assert_int_equal(nbw_gd(NBW_GD_DOUBLE_WELL, 1.5, 0.01, 1, xs, fs, gr), NB_OK);
    assert_float_equal(fs[0], -0.1875, 1e-5);
    assert_float_equal(gr[0], 5.5, 1e-5);
    assert_float_equal(xs[1], 1.5 - 0.055, 1e-6);
    /* log(1 + e^(2x)) - x: f' = tanh x */
    assert_int_equal(nbw_gd(NBW_GD_SOFTPLUS, 0.7, 0.5, 1, xs, fs, gr), NB_OK);
    assert_float_equal(fs[0], log1p(exp(1.4)) - 0.7, 1e-5);
    assert_float_equal(gr[0], tanh(0.7), 1e-6);
    const float x[3] = {-1, 0.5f, 2};
    float y[3];
    assert_int_equal(nbw_gd_curve(NBW_GD_QUADRATIC, x, 3, y), NB_OK);
    assert_float_equal(y[0], 2, 1e-6);
    assert_float_equal(y[1], 0.5, 1e-6);
    assert_float_equal(y[2], 8, 1e-6);
    assert_int_equal(nbw_gd(7, 1, 0.1, 1, xs, fs, gr), NB_ERR_ARG);
    assert_string_equal(nbw_error(), "gradient descent: unknown function 7 (0..2)");
}

/* examples/chain_rule.c's chain at x = 0.4: f1 = x^2, f2 = 3u + 1,
 * f3 = tanh, f4 = exp; dy/dx = 6x (1 - tanh^2(3x^2 + 1)) exp(tanh(3x^2 + 1)). */
static void test_chain_rule(void **state)
{
    (void)state;
    const int fs[4] = {0, 1, 2, 3};
    float o[12];
    assert_int_equal(nbw_chain(fs, 0.4, o), NB_OK);
    const double x = 0.4, u1 = x * x, u2 = 3 * u1 + 1, u3 = tanh(u2), y = exp(u3);
    const double want_u[4] = {u1, u2, u3, y};
    const double local[4] = {2 * x, 3, 1 - u3 * u3, y};
    const double prod[4] = {y, y * (1 - u3 * u3), 3 * y * (1 - u3 * u3), 6 * x * y * (1 - u3 * u3)};
    for (int i = 0; i < 4; i++) {
        assert_float_equal(o[i], want_u[i], 1e-5);
        assert_float_equal(o[4 + i], local[i], 1e-5);
        assert_float_equal(o[8 + i], prod[i], 1e-5);
    }
    /* sigmoid, softplus, sqrt(1 + u^2), relu: dy/dx at x = 0.3 */
    const int gs[4] = {4, 5, 6, 7};
    assert_int_equal(nbw_chain(gs, 0.3, o), NB_OK);
    const double s = 1 / (1 + exp(-0.3)), sp = log1p(exp(s)), r = sqrt(1 + sp * sp);
    const double dydx = 1.0 * (sp / r) * (1 / (1 + exp(-s))) * s * (1 - s);
    assert_float_equal(o[3], r, 1e-5);
    assert_float_equal(o[11], dydx, 1e-5);
    const int bad[4] = {0, 1, 2, 8};
    assert_int_equal(nbw_chain(bad, 0.3, o), NB_ERR_ARG);
    assert_string_equal(nbw_error(), "chain rule: unknown function 8 (0..7)");
}

/* The circle data set of the playground, deterministic: label 1 inside. */
static void circle(float *x, float *y, int n)
{
    nb_rng r;
    nb_rng_seed(&r, 3);
    for (int i = 0; i < n; i++) {
        double a = 6.283185307179586 * nb_rng_uniform(&r), rad = (i % 2) ? 0.4 * nb_rng_uniform(&r) : 0.6 + 0.3 * nb_rng_uniform(&r);
        x[2 * i] = (float)(rad * cos(a));
        x[2 * i + 1] = (float)(rad * sin(a));
        y[i] = (float)(i % 2);
    }
}

/* The 2-8-8-1 network learns the circle; the gradients it shows on its edges
 * are those of the last step, not zero. */
static void test_playground_trains(void **state)
{
    (void)state;
    enum { N = 200 };
    static float x[2 * N], y[N];
    circle(x, y, N);
    const int in[1] = {2};
    nbw_net *h = nbw_net_new("dense 8 tanh; dense 8 tanh; dense 1 sigmoid", 1, in, NB_LOSS_BCE, 1);
    assert_non_null(h);
    assert_int_equal(nbw_net_optim(h, NB_OPT_ADAM, 0.03), NB_OK);
    const double before = nbw_net_loss(h, x, y, N);
    assert_true(before > 0.5);
    for (int k = 0; k < 10; k++) assert_false(isnan(nbw_net_train(h, x, y, N, 10, 100)));
    const double after = nbw_net_loss(h, x, y, N);
    assert_true(after < 0.1);
    assert_int_equal(nbw_net_param_count(h), 6);
    assert_string_equal(nbw_net_param_name(h, 2), "1.kernel");
    assert_int_equal(nbw_net_param_size(h, 2), 64);
    for (int i = 0; i < 6; i++) {
        const float *g = nbw_net_param_grad(h, i);
        assert_non_null(g);
        double m = 0;
        for (int k = 0; k < nbw_net_param_size(h, i); k++) m = fmax(m, fabs(g[k]));
        assert_true(m > 0 && isfinite(m));
    }
    int shape[8] = {0};
    assert_int_equal(nbw_net_layer_shape(h, 1, shape), 1);
    assert_int_equal(shape[0], 8);
    nbw_net_free(h);
}

/* Layer 0's Jacobian at one point against its closed form: A = tanh(x W + b),
 * dA_j/dx_i = (1 - A_j^2) W_ij, shape (1, 8, 1, 2). */
static void test_layer_jacobian(void **state)
{
    (void)state;
    const int in[1] = {2};
    nbw_net *h = nbw_net_new("dense 8 tanh; dense 8 tanh; dense 1 sigmoid", 1, in, NB_LOSS_BCE, 5);
    assert_non_null(h);
    const float pt[2] = {0.3f, -0.7f};
    int shape[16] = {0}, rank = 0;
    const float *J = nbw_net_layer_jacobian(h, 0, pt, shape, &rank);
    assert_non_null(J);
    assert_int_equal(rank, 4);
    assert_true(shape[0] == 1 && shape[1] == 8 && shape[2] == 1 && shape[3] == 2);
    const float *W = nbw_net_param_data(h, 0), *b = nbw_net_param_data(h, 1);
    for (int j = 0; j < 8; j++) {
        double a = tanh(pt[0] * W[j] + pt[1] * W[8 + j] + b[j]);
        for (int i = 0; i < 2; i++) assert_float_equal(J[j * 2 + i], (1 - a * a) * W[i * 8 + j], 1e-5);
    }
    assert_null(nbw_net_layer_jacobian(h, 3, pt, shape, &rank));
    assert_string_equal(nbw_error(), "layer jacobian: no layer 3");
    nbw_net_free(h);
}

/* The input-Jacobian field of a neuron y = sigmoid(x w + b) over points:
 * dy/dx_i = y (1 - y) w_i, shape (n, 1, 2). */
static void test_input_jacobian(void **state)
{
    (void)state;
    const int in[1] = {2};
    nbw_net *h = nbw_net_new("dense 1 sigmoid", 1, in, NB_LOSS_BCE, 2);
    assert_non_null(h);
    float *w = nbw_net_param_data(h, 0), *b = nbw_net_param_data(h, 1);
    w[0] = 1.5f;
    w[1] = -0.5f;
    b[0] = 0.25f;
    const float pts[6] = {0, 0, 1, 2, -1, 0.5f};
    const float *J = nbw_net_input_jacobian(h, pts, 3);
    assert_non_null(J);
    for (int n = 0; n < 3; n++) {
        double y = 1 / (1 + exp(-(1.5 * pts[2 * n] - 0.5 * pts[2 * n + 1] + 0.25)));
        assert_float_equal(J[2 * n], y * (1 - y) * 1.5, 1e-6);
        assert_float_equal(J[2 * n + 1], y * (1 - y) * -0.5, 1e-6);
    }
    const float *p = nbw_net_predict(h, pts, 3);
    assert_non_null(p);
    assert_float_equal(p[0], 1 / (1 + exp(-0.25)), 1e-6);
    nbw_net_free(h);
}

/* Panel 4: the saliency row of class c is row c of the full input-Jacobian
 * of the logits (nb_jacobian), for a small CNN. */
static void test_saliency_is_jacobian_row(void **state)
{
    (void)state;
    const int in[3] = {8, 8, 1};
    nbw_net *h = nbw_net_new("conv2d 3 3 relu; maxpool 2; flatten; dense 4", 3, in, NB_LOSS_CCE, 9);
    assert_non_null(h);
    float img[64];
    for (int i = 0; i < 64; i++) img[i] = (float)((i * 37 % 64) / 64.0);
    const float *S = nbw_net_saliency(h, img, 2);
    assert_non_null(S);
    float row[64];
    memcpy(row, S, sizeof row);
    nb_model *m = h->m;
    nb_jacobian_opts o = {.mode = NB_JAC_REV};
    nb_tensor *J = NULL;
    assert_int_equal(nb_jacobian(nb_model_logits(m), nb_model_input(m), &o, &J), NB_OK);
    assert_int_equal(J->size, 4 * 64); /* (1, 4, 1, 8, 8, 1) */
    double m_abs = 0;
    for (int i = 0; i < 64; i++) {
        assert_float_equal(row[i], J->data[2 * 64 + i], 1e-6);
        m_abs = fmax(m_abs, fabs(row[i]));
    }
    assert_true(m_abs > 0);
    nb_tensor_free(J);
    assert_null(nbw_net_saliency(h, img, 4));
    assert_string_equal(nbw_error(), "saliency: class 4 is not 0..3");
    nbw_net_free(h);
}

/* Panel 1's network border: for a linear model under MSE the Hessian is
 * (2/N) A^T A with A = [X 1] (constant), so nbw_net_lambda_max must equal its
 * top eigenvalue (power iteration on the explicit 3 x 3 matrix here), and
 * full-batch gradient descent converges at 0.9 x 2 / lambda_max and grows at
 * 1.1 x. Bad arguments give NaN with a message. */
static void test_lambda_max_border(void **state)
{
    (void)state;
    enum { N = 64 };
    float x[2 * N], y[N];
    nb_rng r;
    nb_rng_seed(&r, 4);
    for (int i = 0; i < N; i++)
        x[2 * i] = (float)nb_rng_normal(&r), x[2 * i + 1] = 2 * (float)nb_rng_uniform(&r),
                y[i] = x[2 * i] - x[2 * i + 1] + 0.3f;
    double A[3][3] = {{0}};
    for (int i = 0; i < N; i++) {
        const double a[3] = {x[2 * i], x[2 * i + 1], 1};
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 3; k++) A[j][k] += 2.0 * a[j] * a[k] / N;
    }
    double v[3] = {1, 1, 1}, want = 0;
    for (int it = 0; it < 2000; it++) {
        double w[3] = {0}, nrm = 0;
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 3; k++) w[j] += A[j][k] * v[k];
        for (int j = 0; j < 3; j++) nrm += w[j] * w[j];
        want = sqrt(nrm);
        for (int j = 0; j < 3; j++) v[j] = w[j] / want;
    }
    const int in[1] = {2};
    nbw_net *h = nbw_net_new("dense 1", 1, in, NB_LOSS_MSE, 3);
    assert_non_null(h);
    int iters = 0, products = 0;
    const double lmax = nbw_net_lambda_max(h, x, y, N, 1e-7, 3000, &iters, &products);
    assert_true(fabs(lmax - want) <= 1e-4 * want);
    assert_true(iters > 1 && products == 3 * iters);
    float w0[3];
    for (int i = 0; i < 2; i++) memcpy(w0 + i * 2, nbw_net_param_data(h, i), sizeof(float) * (size_t)nbw_net_param_size(h, i));
    const double factors[2] = {0.9, 1.1};
    double last[2];
    for (int f = 0; f < 2; f++) {
        for (int i = 0; i < 2; i++)
            memcpy(nbw_net_param_data(h, i), w0 + i * 2, sizeof(float) * (size_t)nbw_net_param_size(h, i));
        assert_int_equal(nbw_net_optim(h, NB_OPT_SGD, factors[f] * 2 / lmax), NB_OK);
        const double first = nbw_net_loss(h, x, y, N);
        assert_false(isnan(nbw_net_train(h, x, y, N, N, 60)));
        last[f] = nbw_net_loss(h, x, y, N);
        assert_true(f == 0 ? last[f] < 0.01 * first : last[f] > 100 * first);
    }
    assert_true(isnan(nbw_net_lambda_max(NULL, x, y, N, 1e-7, 10, NULL, NULL)));
    assert_non_null(strstr(nbw_error(), "lambda_max: need a network, n >= 1 rows, tol > 0 and max_iter >= 1"));
    assert_true(isnan(nbw_net_lambda_max(h, x, y, 0, 1e-7, 10, NULL, NULL)));
    assert_true(isnan(nbw_net_lambda_max(h, x, y, N, 0, 10, NULL, NULL)));
    assert_true(isnan(nbw_net_lambda_max(h, NULL, y, N, 1e-7, 10, NULL, NULL)));
    nbw_net_free(h);
}

static void test_refusals(void **state)
{
    (void)state;
    const int in[1] = {2};
    assert_null(nbw_net_new("dense 8 tanhh", 1, in, NB_LOSS_BCE, 1));
    if (getenv("NB_SHOW")) fprintf(stderr, "%s\n", nbw_error());
    assert_string_equal(nbw_error(), "spec layer 0 (line 1, 'dense'): unknown activation 'tanhh'; did you mean 'tanh'? "
                        "(linear, relu, sigmoid, tanh, softmax, log_softmax, leaky_relu, elu, softplus, gelu)");
    assert_null(nbw_net_new("dense 8", 0, in, NB_LOSS_BCE, 1));
    assert_string_equal(nbw_error(), "net: need a spec and an input shape of rank 1..7");
    assert_null(nbw_net_new("dense 8", 1, in, 7, 1));
    assert_string_equal(nbw_error(), "net: loss kind 7 is not 0 (CCE), 1 (MSE) or 2 (BCE)");
    nbw_net *h = nbw_net_new("dense 1 sigmoid", 1, in, NB_LOSS_BCE, 1);
    float x[2] = {0, 0}, y[1] = {1};
    assert_true(isnan(nbw_net_train(h, x, y, 1, 1, 1))); /* no optimiser yet */
    assert_string_equal(nbw_error(), "train: need a network with an optimiser (nbw_net_optim), data and batch >= 1");
    assert_int_equal(nbw_net_optim(h, 9, 0.1), NB_ERR_ARG);
    assert_string_equal(nbw_error(), "optimiser: kind 9 is not 0..3 (sgd, adam, adamw, rmsprop)");
    assert_int_equal(nbw_net_optim(h, NB_OPT_SGD, 0), NB_ERR_ARG);
    assert_string_equal(nbw_error(), "optimizer: the learning rate must be a positive number, got 0 (try 1e-3)");
    assert_null(nbw_net_param_data(h, 2));
    nbw_net_free(h);
    nbw_net_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gd_lecture_values),
        cmocka_unit_test(test_gd_functions),
        cmocka_unit_test(test_chain_rule),
        cmocka_unit_test(test_playground_trains),
        cmocka_unit_test(test_layer_jacobian),
        cmocka_unit_test(test_input_jacobian),
        cmocka_unit_test(test_saliency_is_jacobian_row),
        cmocka_unit_test(test_lambda_max_border),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
