/* ONNX export and import (src/io/onnx*.c): the round trip nabla -> ONNX ->
 * nabla is exact (spec, every weight bit, every output bit); the exported
 * file holds what ONNX means (kernel layouts, operator sequence); graphs
 * written the way torch.onnx.export writes them (NCHW, Flatten before a
 * transposed Gemm, MatMul + Add, Reshape) compute what a direct NCHW
 * reference computes; and the bad inputs of docs/bad-inputs.md (section
 * "ONNX files") are refused with their messages. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "f32/nb_test_util.h"
#include "io/onnx.h"

static nb_model *model_of(const char *spec, const char *input, uint64_t seed)
{
    int rank;
    int64_t shape[8];
    assert_int_equal(nb_shape_parse(input, &rank, shape), NB_OK);
    nb_model *m = NULL;
    assert_int_equal(nb_model_from_spec(spec, rank, shape, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_TORCH_DEFAULT, seed), NB_OK);
    return m;
}

static nb_tensor *random_input(nb_model *m, int64_t n, uint64_t seed)
{
    int64_t shape[8] = {n};
    const int r = nb_model_input_shape(m, shape + 1);
    nb_tensor *x = nb_tensor_new(r + 1, shape);
    nb_rng g;
    nb_rng_seed(&g, seed);
    nb_tensor_fill_uniform(x, &g, 0, 1);
    return x;
}

/* Random gamma, beta, moving_mean and moving_variance (in [0.5, 2]) for
 * every batchnorm and layernorm layer, so that a swapped or dropped
 * parameter changes the outputs. */
static void randomize_norms(nb_model *m, uint64_t seed)
{
    static const char *names[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
    nb_rng g;
    nb_rng_seed(&g, seed);
    for (int i = 0; i < nb_model_num_layers(m); i++)
        for (int k = 0; k < 4; k++) {
            char name[64];
            snprintf(name, sizeof name, "%d.%s", i, names[k]);
            nb_node *p = nb_model_find_param(m, name);
            if (p) nb_tensor_fill_uniform(nb_value(p), &g, k == 3 ? 0.5 : -1, k == 3 ? 2 : 1);
        }
}

static void assert_same_bits(const nb_tensor *a, const nb_tensor *b)
{
    assert_int_equal(a->rank, b->rank);
    for (int d = 0; d < a->rank; d++) assert_int_equal(a->shape[d], b->shape[d]);
    assert_memory_equal(a->data, b->data, sizeof(nb_real) * (size_t)a->size);
}

/* Export (both layouts) and import give back the same spec, weights and
 * outputs, bit for bit. */
static void test_round_trip_exact(void **state)
{
    static const struct {
        const char *spec, *input;
    } cases[] = {
        {"conv2d 32 3 relu; conv2d 64 3 relu; maxpool 2; flatten; dense 128 relu; dense 10", "28,28,1"},
        {"conv2d 4 3 stride=2 padding=same; relu; conv2d 5 3 tanh dilation=2 padding=same; avgpool 2 stride=1 "
         "padding=same; maxpool 3 stride=2; flatten; dense 7 leaky_relu; dropout 0.25; dense 3 softmax",
         "13,11,2"},
        {"conv2d 3 1 elu; softmax; conv2d 2 2 stride=1; sigmoid; flatten; softplus; dense 4 log_softmax", "5,6,3"},
        {"flatten; dense 16 tanh; neuron sigmoid", "28,28"},
        {"dense 8 relu; linear; dense 2", "5"},
        {"conv2d 2 3 relu", "6,6,2"},
        {"dense 4 gelu; gelu; dense 3; gelu", "5"},
        {"conv2d 3 2 gelu padding=same; flatten; dense 2", "4,4,2"},
        /* graph models (issue 15): a residual block with a strided projection shortcut and PyTorch's padding=1 */
        {"conv2d 4 3 padding=same; relu as a; conv2d 6 3 stride=2 padding=1; relu; conv2d 6 3 padding=same as main; "
         "from a; conv2d 6 1 stride=2 as short; add main; relu; globalavgpool; dense 3",
         "8,8,2"},
        {"conv2d 3 3 relu padding=same as a; conv2d 2 1 as b; from a; conv2d 4 3 padding=same; concat b a; maxpool 2; "
         "flatten; dense 3",
         "6,6,1"},
        {"dense 4 as a; dense 4 tanh as b; dense 4; add a b; dense 2", "5"},
        {"conv2d 2 3 padding=same; concat input; flatten; dense 2", "4,4,1"},
        {"conv2d 2 3 padding=1; conv2d 2 3 stride=2 padding=1; conv2d 2 3 padding=2 as p; add p p; flatten; dense 2",
         "6,6,1"},
        /* batchnorm and layernorm: after a Conv (NCHW), on the NHWC input, on (N, C), on rank 3, in a residual block */
        {"conv2d 4 3 padding=same; batchnorm; relu as a; conv2d 4 3 padding=same; batchnorm momentum=0.01 eps=0.001 "
         "as main; from a; conv2d 4 1; batchnorm eps=2e-5; add main; relu; globalavgpool; dense 3",
         "8,8,2"},
        {"batchnorm momentum=0.3; conv2d 3 3; layernorm eps=0.001; flatten; dense 4; batchnorm eps=1e-4; layernorm; "
         "dense 2",
         "6,6,2"},
        {"dense 5; layernorm; tanh; dense 3; batchnorm", "4"},
        {"layernorm eps=2e-5; flatten; dense 2", "4,5"},
        {"conv2d 3 3 relu; layernorm; conv2d 2 1; batchnorm; maxpool 2; flatten; dense 2", "6,6,1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (unsigned flags = 0; flags <= NB_ONNX_NCHW; flags++) {
            nb_model *m = model_of(cases[i].spec, cases[i].input, 7 + i), *back = NULL;
            randomize_norms(m, 70 + i);
            void *data = NULL;
            size_t len = 0;
            assert_int_equal(nb_onnx_serialize(m, flags, &data, &len), NB_OK);
            if (nb_onnx_parse(data, len, 0, &back)) fprintf(stderr, "case %zu: %s\n", i, nb_last_error());
            assert_non_null(back);
            assert_string_equal(nb_model_spec(back), nb_model_spec(m));
            int64_t s1[8], s2[8];
            assert_int_equal(nb_model_input_shape(back, s2), nb_model_input_shape(m, s1));
            assert_memory_equal(s1, s2, sizeof(int64_t) * (size_t)nb_model_input_shape(m, s1));
            assert_int_equal(nb_model_param_count(back), nb_model_param_count(m));
            for (int p = 0; p < nb_model_param_count(m); p++) {
                assert_string_equal(nb_node_name(nb_model_param(back, p)), nb_node_name(nb_model_param(m, p)));
                assert_same_bits(nb_value(nb_model_param(back, p)), nb_value(nb_model_param(m, p)));
            }
            nb_tensor *x = random_input(m, 3, 99), *y1 = NULL, *y2 = NULL;
            assert_int_equal(nb_model_predict(m, x, 3, &y1), NB_OK);
            assert_int_equal(nb_model_predict(back, x, 3, &y2), NB_OK);
            assert_same_bits(y1, y2);
            nb_tensor_free(x), nb_tensor_free(y1), nb_tensor_free(y2);
            free(data);
            nb_model_free(m), nb_model_free(back);
        }
    }
}

/* The file itself: operators in order, the conv weight as W[o,c,p,q] =
 * k[p,q,c,o], the dense kernel as Gemm's B (in, out), the metadata. */
static void test_export_contents(void **state)
{
    nb_model *m = model_of("conv2d 3 2 relu; flatten; dense 4", "3,3,2", 5);
    void *data;
    size_t len;
    assert_int_equal(nb_onnx_serialize(m, 0, &data, &len), NB_OK);
    onnx_model *om = NULL;
    assert_int_equal(onnx_model_parse(data, len, &om), NB_OK);
    assert_int_equal(om->opset, 13);
    assert_string_equal(onnx_meta(om, "nabla.spec"), "conv2d 3 2 relu; flatten; dense 4");
    assert_string_equal(onnx_meta(om, "nabla.input"), "3,3,2");
    static const char *want[] = {"Transpose", "Conv", "Relu", "Transpose", "Flatten", "Gemm", "Identity"};
    assert_int_equal(om->graph.nnodes, 7);
    for (int i = 0; i < 7; i++) assert_string_equal(om->graph.nodes[i].op_type, want[i]);
    assert_int_equal(om->graph.ninputs, 1);
    const int64_t in_dims[4] = {-1, 3, 3, 2};
    assert_memory_equal(om->graph.inputs[0].dims, in_dims, sizeof in_dims);
    const nb_tensor *k = nb_value(nb_model_find_param(m, "0.kernel")), *d = nb_value(nb_model_find_param(m, "2.kernel"));
    for (int t = 0; t < om->graph.ninits; t++) {
        const onnx_tensor *w = &om->graph.inits[t];
        nb_real v[64];
        assert_true(w->count <= 64);
        assert_int_equal(onnx_tensor_reals(w, v), NB_OK);
        if (!strcmp(w->name, "0.kernel")) {
            const int64_t dims[4] = {3, 2, 2, 2}; /* (O, C, kh, kw) */
            assert_memory_equal(w->dims, dims, sizeof dims);
            for (int o = 0; o < 3; o++)
                for (int c = 0; c < 2; c++)
                    for (int p = 0; p < 2; p++)
                        for (int q = 0; q < 2; q++)
                            assert_true(v[((o * 2 + c) * 2 + p) * 2 + q] == k->data[((p * 2 + q) * 2 + c) * 3 + o]);
        }
        if (!strcmp(w->name, "2.kernel")) {
            assert_int_equal(w->dims[0], 12), assert_int_equal(w->dims[1], 4);
            assert_memory_equal(v, d->data, sizeof(nb_real) * 48);
        }
    }
    onnx_model_free(om);
    free(data);
    nb_model_free(m);
}

/* ---- graphs written by hand, as torch.onnx.export writes them */

typedef struct {
    nb_pb_writer g;
} gb;

static void node(gb *b, const char *op, const char *name, int nin, const char *const *in, const char *out)
{
    onnx_w_node n;
    onnx_w_node_begin(&n, op, name, nin, in, out);
    onnx_w_node_end(&n, &b->g);
}

/* The model bytes of graph b (ir 7, the given opset); b is consumed. */
static void *finish(gb *b, int opset, size_t *len)
{
    nb_pb_writer w = {0}, o = {0};
    nb_pb_put_varint(&w, 1, 7);
    nb_pb_put_message(&w, 7, &b->g);
    nb_pb_put_string(&o, 1, "");
    nb_pb_put_varint(&o, 2, (uint64_t)opset);
    nb_pb_put_message(&w, 8, &o);
    assert_false(w.failed);
    *len = w.len;
    return w.data;
}

static void fill(nb_real *v, int64_t n, uint64_t seed)
{
    nb_rng g;
    nb_rng_seed(&g, seed);
    for (int64_t i = 0; i < n; i++) v[i] = (nb_real)(nb_rng_uniform(&g) - 0.5);
}

enum { N = 2, C = 2, H = 5, W = 5, O = 3, U = 4 };

/* Conv(pads 1, 3x3) -> Relu -> Flatten -> Gemm(transB = 1) on NCHW input:
 * the flatten in (c, h, w) order, the Gemm weight (out, in). */
static void *torch_like_cnn(const nb_real *w, const nb_real *b, const nb_real *fw, const nb_real *fb, size_t *len)
{
    gb g = {{0}};
    const int64_t in[4] = {1, C, H, W}, wd[4] = {O, C, 3, 3}, bd[1] = {O}, fwd[2] = {U, O * H * W}, fbd[1] = {U};
    const int64_t out[2] = {1, U};
    onnx_w_value(&g.g, 11, "x", 4, in);
    onnx_w_initializer(&g.g, "conv.weight", 4, wd, w);
    onnx_w_initializer(&g.g, "conv.bias", 1, bd, b);
    onnx_w_initializer(&g.g, "fc.weight", 2, fwd, fw);
    onnx_w_initializer(&g.g, "fc.bias", 1, fbd, fb);
    onnx_w_node n;
    const char *ci[3] = {"x", "conv.weight", "conv.bias"};
    onnx_w_node_begin(&n, "Conv", "Conv_0", 3, ci, "c");
    const int64_t pads[4] = {1, 1, 1, 1}, ks[2] = {3, 3}, ones[2] = {1, 1};
    onnx_w_attr_ints(&n, "pads", 4, pads);
    onnx_w_attr_ints(&n, "kernel_shape", 2, ks);
    onnx_w_attr_ints(&n, "strides", 2, ones);
    onnx_w_attr_ints(&n, "dilations", 2, ones);
    onnx_w_attr_int(&n, "group", 1);
    onnx_w_node_end(&n, &g.g);
    const char *ri[1] = {"c"}, *fi[1] = {"r"}, *gi[3] = {"f", "fc.weight", "fc.bias"};
    node(&g, "Relu", "Relu_1", 1, ri, "r");
    onnx_w_node_begin(&n, "Flatten", "Flatten_2", 1, fi, "f");
    onnx_w_attr_int(&n, "axis", 1);
    onnx_w_node_end(&n, &g.g);
    onnx_w_node_begin(&n, "Gemm", "Gemm_3", 3, gi, "y");
    onnx_w_attr_float(&n, "alpha", 1), onnx_w_attr_float(&n, "beta", 1), onnx_w_attr_int(&n, "transB", 1);
    onnx_w_node_end(&n, &g.g);
    onnx_w_value(&g.g, 12, "y", 2, out);
    return finish(&g, 13, len);
}

/* The same network computed directly on NCHW x, in double. */
static void reference_cnn(const nb_real *x, const nb_real *w, const nb_real *b, const nb_real *fw, const nb_real *fb,
                          double *y)
{
    for (int n = 0; n < N; n++) {
        double f[O * H * W];
        for (int o = 0; o < O; o++)
            for (int i = 0; i < H; i++)
                for (int j = 0; j < W; j++) {
                    double acc = b[o];
                    for (int c = 0; c < C; c++)
                        for (int p = 0; p < 3; p++)
                            for (int q = 0; q < 3; q++) {
                                const int h = i + p - 1, v = j + q - 1;
                                if (h >= 0 && h < H && v >= 0 && v < W)
                                    acc += (double)x[((n * C + c) * H + h) * W + v] * w[((o * C + c) * 3 + p) * 3 + q];
                            }
                    f[(o * H + i) * W + j] = acc > 0 ? acc : 0;
                }
        for (int u = 0; u < U; u++) {
            double acc = fb[u];
            for (int k = 0; k < O * H * W; k++) acc += (double)fw[u * O * H * W + k] * f[k];
            y[n * U + u] = acc;
        }
    }
}

static void test_import_nchw_like_torch(void **state)
{
    nb_real w[O * C * 9], b[O], fw[U * O * H * W], fb[U], x[N * C * H * W];
    fill(w, O * C * 9, 1), fill(b, O, 2), fill(fw, U * O * H * W, 3), fill(fb, U, 4), fill(x, N * C * H * W, 5);
    size_t len;
    void *data = torch_like_cnn(w, b, fw, fb, &len);
    nb_model *m = NULL;
    if (nb_onnx_parse(data, len, 0, &m)) fprintf(stderr, "%s\n", nb_last_error());
    assert_non_null(m);
    assert_string_equal(nb_model_spec(m), "conv2d 3 3 relu padding=same; flatten; dense 4");
    int64_t shape[8];
    assert_int_equal(nb_model_input_shape(m, shape), 3);
    assert_int_equal(shape[0], H), assert_int_equal(shape[1], W), assert_int_equal(shape[2], C);
    const int64_t xs[4] = {N, H, W, C};
    nb_tensor *xt = nb_tensor_new(4, xs), *y = NULL;
    for (int n = 0; n < N; n++) /* NCHW -> NHWC */
        for (int c = 0; c < C; c++)
            for (int h = 0; h < H; h++)
                for (int v = 0; v < W; v++) xt->data[((n * H + h) * W + v) * C + c] = x[((n * C + c) * H + h) * W + v];
    assert_int_equal(nb_model_predict(m, xt, N, &y), NB_OK);
    double want[N * U];
    reference_cnn(x, w, b, fw, fb, want);
    double maxdiff = 0;
    for (int i = 0; i < N * U; i++) maxdiff = fmax(maxdiff, fabs(y->data[i] - want[i]));
    assert_true(maxdiff < 1e-5);
    assert_true(fabs(want[0]) > 1e-3); /* not a trivially zero network */
    nb_tensor_free(xt), nb_tensor_free(y);
    nb_model_free(m);
    free(data);
}

/* MatMul + Add (bias first), Reshape to (-1, F), LogSoftmax, Identity and
 * Dropout (opset 11: ratio as an attribute) on a rank-2 input. */
static void test_import_matmul_reshape(void **state)
{
    enum { F = 6, K = 3 };
    nb_real w[F * K], b[K], x[2 * F];
    fill(w, F * K, 11), fill(b, K, 12), fill(x, 2 * F, 13);
    gb g = {{0}};
    const int64_t in[2] = {1, F}, wd[2] = {F, K}, bd[1] = {K}, sd[1] = {2}, shape[2] = {-1, F}, out[2] = {1, K};
    onnx_w_value(&g.g, 11, "x", 2, in);
    onnx_w_initializer(&g.g, "W", 2, wd, w);
    onnx_w_initializer(&g.g, "b", 1, bd, b);
    onnx_w_initializer_int64(&g.g, "shape", 1, sd, shape);
    const char *r[2] = {"x", "shape"}, *i1[1] = {"r"}, *mm[2] = {"i", "W"}, *ad[2] = {"b", "m"}, *ls[1] = {"a"},
               *dr[1] = {"l"};
    node(&g, "Reshape", "reshape", 2, r, "r");
    node(&g, "Identity", "id", 1, i1, "i");
    node(&g, "MatMul", "mm", 2, mm, "m");
    node(&g, "Add", "add", 2, ad, "a");
    onnx_w_node n;
    onnx_w_node_begin(&n, "LogSoftmax", "ls", 1, ls, "l");
    onnx_w_attr_int(&n, "axis", 1);
    onnx_w_node_end(&n, &g.g);
    onnx_w_node_begin(&n, "Dropout", "drop", 1, dr, "y");
    onnx_w_attr_float(&n, "ratio", 0.5f);
    onnx_w_node_end(&n, &g.g);
    onnx_w_value(&g.g, 12, "y", 2, out);
    size_t len;
    void *data = finish(&g, 11, &len);
    nb_model *m = NULL;
    if (nb_onnx_parse(data, len, 0, &m)) fprintf(stderr, "%s\n", nb_last_error());
    assert_non_null(m);
    assert_string_equal(nb_model_spec(m), "flatten; dense 3 log_softmax; dropout 0.5");
    const int64_t xs[2] = {2, F};
    nb_tensor *xt = nb_tensor_new(2, xs), *y = NULL;
    memcpy(xt->data, x, sizeof x);
    assert_int_equal(nb_model_predict(m, xt, 2, &y), NB_OK);
    for (int e = 0; e < 2; e++) { /* log-probabilities */
        double z[K], mx = -1e30, sum = 0;
        for (int k = 0; k < K; k++) {
            z[k] = b[k];
            for (int f = 0; f < F; f++) z[k] += (double)x[e * F + f] * w[f * K + k];
            mx = fmax(mx, z[k]);
        }
        for (int k = 0; k < K; k++) sum += exp(z[k] - mx);
        for (int k = 0; k < K; k++) assert_true(fabs(y->data[e * K + k] - (z[k] - mx - log(sum))) < 1e-6);
    }
    nb_tensor_free(xt), nb_tensor_free(y);
    nb_model_free(m);
    free(data);
}

/* A direct NCHW convolution in double: (n, c, h, w) x, weight (o, c, f, f),
 * stride st, pads p on every side, then ReLU if relu. */
static void ref_conv(const double *x, int n, int c, int h, int w, const nb_real *wt, const nb_real *b, int o, int f,
                     int st, int p, int relu, double *y, int *oh, int *ow)
{
    *oh = (h + 2 * p - f) / st + 1, *ow = (w + 2 * p - f) / st + 1;
    for (int e = 0; e < n; e++)
        for (int k = 0; k < o; k++)
            for (int i = 0; i < *oh; i++)
                for (int j = 0; j < *ow; j++) {
                    double acc = b ? b[k] : 0;
                    for (int ch = 0; ch < c; ch++)
                        for (int u = 0; u < f; u++)
                            for (int v = 0; v < f; v++) {
                                const int hh = i * st + u - p, ww = j * st + v - p;
                                if (hh >= 0 && hh < h && ww >= 0 && ww < w)
                                    acc += x[((e * c + ch) * h + hh) * w + ww] * wt[((k * c + ch) * f + u) * f + v];
                            }
                    y[((e * o + k) * *oh + i) * *ow + j] = relu && acc < 0 ? 0 : acc;
                }
}

/* As torch.onnx.export writes a small ResNet-like module (NCHW):
 *   r = relu(conv3x3(x, stride 2, padding 1)); s = conv1x1(r); a = s + r;
 *   k = cat([r, a], 1); y = fc(flatten(avgpool(k)))
 * A tensor read by three nodes (r), an Add whose current input is its
 * first, a Concat whose first input is not current, pads [1, 1, 1, 1] at
 * stride 2 on an even input (not TensorFlow's same), GlobalAveragePool +
 * Flatten. Imported into `as`/`from`/`add`/`concat` entries, it computes
 * what the direct reference does. */
static void test_import_resnet_like(void **state)
{
    enum { RC = 2, RH = 6, RO = 3, RU = 4 };
    nb_real w1[RO * RC * 9], b1[RO], w2[RO * RO], b2[RO], fw[RU * 2 * RO], fb[RU], x[N * RC * RH * RH];
    fill(w1, RO * RC * 9, 21), fill(b1, RO, 22), fill(w2, RO * RO, 23), fill(b2, RO, 24), fill(fw, RU * 2 * RO, 25);
    fill(fb, RU, 26), fill(x, N * RC * RH * RH, 27);
    gb g = {{0}};
    const int64_t in[4] = {1, RC, RH, RH}, w1d[4] = {RO, RC, 3, 3}, bd[1] = {RO}, w2d[4] = {RO, RO, 1, 1};
    const int64_t fwd[2] = {RU, 2 * RO}, fbd[1] = {RU}, out[2] = {1, RU};
    onnx_w_value(&g.g, 11, "x", 4, in);
    onnx_w_initializer(&g.g, "c1.weight", 4, w1d, w1), onnx_w_initializer(&g.g, "c1.bias", 1, bd, b1);
    onnx_w_initializer(&g.g, "c2.weight", 4, w2d, w2), onnx_w_initializer(&g.g, "c2.bias", 1, bd, b2);
    onnx_w_initializer(&g.g, "fc.weight", 2, fwd, fw), onnx_w_initializer(&g.g, "fc.bias", 1, fbd, fb);
    onnx_w_node n;
    const char *c1[3] = {"x", "c1.weight", "c1.bias"}, *re[1] = {"c"}, *c2[3] = {"r", "c2.weight", "c2.bias"};
    const char *ad[2] = {"s", "r"}, *ct[2] = {"r", "a"}, *gp[1] = {"k"}, *fl[1] = {"p"},
               *fc[3] = {"f", "fc.weight", "fc.bias"};
    const int64_t pads[4] = {1, 1, 1, 1}, two[2] = {2, 2};
    onnx_w_node_begin(&n, "Conv", "/c1/Conv", 3, c1, "c");
    onnx_w_attr_ints(&n, "pads", 4, pads), onnx_w_attr_ints(&n, "strides", 2, two);
    onnx_w_node_end(&n, &g.g);
    node(&g, "Relu", "/relu/Relu", 1, re, "r");
    node(&g, "Conv", "/c2/Conv", 3, c2, "s");
    node(&g, "Add", "/Add", 2, ad, "a");
    onnx_w_node_begin(&n, "Concat", "/Concat", 2, ct, "k");
    onnx_w_attr_int(&n, "axis", 1);
    onnx_w_node_end(&n, &g.g);
    node(&g, "GlobalAveragePool", "/pool/GlobalAveragePool", 1, gp, "p");
    onnx_w_node_begin(&n, "Flatten", "/Flatten", 1, fl, "f");
    onnx_w_attr_int(&n, "axis", 1);
    onnx_w_node_end(&n, &g.g);
    onnx_w_node_begin(&n, "Gemm", "/fc/Gemm", 3, fc, "y");
    onnx_w_attr_int(&n, "transB", 1);
    onnx_w_node_end(&n, &g.g);
    onnx_w_value(&g.g, 12, "y", 2, out);
    size_t len;
    void *data = finish(&g, 13, &len);
    nb_model *m = NULL;
    if (nb_onnx_parse(data, len, 0, &m)) fprintf(stderr, "%s\n", nb_last_error());
    assert_non_null(m);
    assert_string_equal(nb_model_spec(m),
                        "conv2d 3 3 relu stride=2 padding=1 as t0; conv2d 3 1; add t0 as t2; from t0; "
                        "concat t2; globalavgpool; dense 4");
    /* The reference, in double. */
    double xd[N * RC * RH * RH], r[N * RO * 9], sd[N * RO * 9], want[N * RU];
    for (int i = 0; i < N * RC * RH * RH; i++)
        xd[i] = x[i];
    int oh, ow, oh2, ow2;
    ref_conv(xd, N, RC, RH, RH, w1, b1, RO, 3, 2, 1, 1, r, &oh, &ow);
    assert_int_equal(oh, 3), assert_int_equal(ow, 3);
    ref_conv(r, N, RO, oh, ow, w2, b2, RO, 1, 1, 0, 0, sd, &oh2, &ow2);
    for (int e = 0; e < N; e++) {
        double k[2 * RO];
        for (int ch = 0; ch < RO; ch++) {
            double mr = 0, ma = 0;
            for (int i = 0; i < 9; i++) {
                mr += r[(e * RO + ch) * 9 + i];
                ma += sd[(e * RO + ch) * 9 + i] + r[(e * RO + ch) * 9 + i];
            }
            k[ch] = mr / 9, k[RO + ch] = ma / 9;
        }
        for (int u = 0; u < RU; u++) {
            want[e * RU + u] = fb[u];
            for (int j = 0; j < 2 * RO; j++)
                want[e * RU + u] += (double)fw[u * 2 * RO + j] * k[j];
        }
    }
    const int64_t xs[4] = {N, RH, RH, RC};
    nb_tensor *xt = nb_tensor_new(4, xs), *y = NULL;
    for (int e = 0; e < N; e++) /* NCHW -> NHWC */
        for (int ch = 0; ch < RC; ch++)
            for (int h = 0; h < RH; h++)
                for (int v = 0; v < RH; v++)
                    xt->data[((e * RH + h) * RH + v) * RC + ch] = x[((e * RC + ch) * RH + h) * RH + v];
    assert_int_equal(nb_model_predict(m, xt, N, &y), NB_OK);
    double maxdiff = 0, mag = 0;
    for (int i = 0; i < N * RU; i++)
        maxdiff = fmax(maxdiff, fabs(y->data[i] - want[i])), mag = fmax(mag, fabs(want[i]));
    assert_true(maxdiff < 1e-5);
    assert_true(mag > 1e-2);
    /* Exported again, it imports as the same spec (the names kept). */
    void *again;
    size_t alen;
    nb_model *back = NULL;
    assert_int_equal(nb_onnx_serialize(m, 0, &again, &alen), NB_OK);
    assert_int_equal(nb_onnx_parse(again, alen, 0, &back), NB_OK);
    assert_string_equal(nb_model_spec(back), nb_model_spec(m));
    nb_model_free(back);
    free(again);
    nb_tensor_free(xt), nb_tensor_free(y);
    nb_model_free(m);
    free(data);
}

/* The nodes of an exported graph model: Add for one name, Sum for two,
 * Concat on axis 1 of NCHW tensors, a Transpose of a named NHWC tensor
 * (the input) into NCHW, GlobalAveragePool + Flatten, explicit pads. */
static void test_export_graph_nodes(void **state)
{
    nb_model *m = model_of("conv2d 2 3 stride=2 padding=1 as a; conv2d 2 1 as b; add a; add a b; concat a; "
                           "globalavgpool; dense 2",
                           "4,4,2", 3);
    void *data;
    size_t len;
    assert_int_equal(nb_onnx_serialize(m, 0, &data, &len), NB_OK);
    onnx_model *om = NULL;
    assert_int_equal(onnx_model_parse(data, len, &om), NB_OK);
    static const char *want[] = {"Transpose",         "Conv",    "Conv", "Add",     "Sum", "Concat",
                                 "GlobalAveragePool", "Flatten", "Gemm", "Identity"};
    assert_int_equal(om->graph.nnodes, 10);
    for (int i = 0; i < 10; i++)
        assert_string_equal(om->graph.nodes[i].op_type, want[i]);
    const onnx_node *sum = &om->graph.nodes[4], *cat = &om->graph.nodes[5], *conv = &om->graph.nodes[1];
    assert_int_equal(sum->nin, 3);
    assert_string_equal(sum->in[0], "2.add"), assert_string_equal(sum->in[1], om->graph.nodes[1].out[0]);
    assert_string_equal(sum->in[2], "1.conv");
    assert_int_equal(onnx_node_attr(cat, "axis")->i, 1);
    const onnx_attr *pads = onnx_node_attr(conv, "pads");
    for (int i = 0; i < 4; i++)
        assert_int_equal(pads->ints[i], 1);
    onnx_model_free(om);
    free(data);
    nb_model_free(m);
    /* A named NHWC tensor joined to an NCHW one gets a Transpose of its own. */
    m = model_of("conv2d 2 3 padding=same; concat input; flatten; dense 2", "4,4,1", 4);
    assert_int_equal(nb_onnx_serialize(m, 0, &data, &len), NB_OK);
    assert_int_equal(onnx_model_parse(data, len, &om), NB_OK);
    const onnx_node *t = &om->graph.nodes[2];
    assert_string_equal(t->op_type, "Transpose");
    assert_string_equal(t->in[0], "input");
    assert_string_equal(om->graph.nodes[3].op_type, "Concat");
    assert_string_equal(om->graph.nodes[3].in[1], t->out[0]);
    onnx_model_free(om);
    free(data);
    nb_model_free(m);
}

/* The nodes of batchnorm and layernorm: BatchNormalization in NCHW (a
 * Transpose before it on the NHWC input) with ONNX's momentum 1 - nabla's,
 * LayerNormalization over axis -1 in NHWC (a Transpose back first), opset
 * 17 and IR 8 for it, opset 13 without a layernorm; a rank-3 batchnorm is
 * refused (ONNX's axis 1 is not nabla's channels there). */
static void test_export_norm_nodes(void **state)
{
    nb_model *m = model_of("batchnorm momentum=0.01 eps=0.001; layernorm eps=1e-4; flatten; dense 2", "4,4,2", 3);
    void *data;
    size_t len;
    assert_int_equal(nb_onnx_opset(m), 17);
    assert_int_equal(nb_onnx_serialize(m, 0, &data, &len), NB_OK);
    onnx_model *om = NULL;
    assert_int_equal(onnx_model_parse(data, len, &om), NB_OK);
    assert_int_equal(om->opset, 17);
    assert_int_equal(om->ir_version, 8);
    static const char *want[] = {"Transpose", "BatchNormalization", "Transpose", "LayerNormalization",
                                 "Flatten",   "Gemm",               "Identity"};
    assert_int_equal(om->graph.nnodes, 7);
    for (int i = 0; i < 7; i++)
        assert_string_equal(om->graph.nodes[i].op_type, want[i]);
    const onnx_node *bn = &om->graph.nodes[1], *ln = &om->graph.nodes[3];
    assert_int_equal(bn->nin, 5);
    static const char *bn_in[4] = {"0.gamma", "0.beta", "0.moving_mean", "0.moving_variance"};
    for (int i = 0; i < 4; i++)
        assert_string_equal(bn->in[1 + i], bn_in[i]);
    assert_true(onnx_node_attr(bn, "momentum")->f == 0.99f);
    assert_true(onnx_node_attr(bn, "epsilon")->f == 0.001f);
    assert_int_equal(onnx_node_attr(ln, "axis")->i, -1);
    assert_true(onnx_node_attr(ln, "epsilon")->f == 1e-4f);
    assert_string_equal(ln->in[1], "1.gamma"), assert_string_equal(ln->in[2], "1.beta");
    onnx_model_free(om);
    free(data);
    nb_model_free(m);
    m = model_of("conv2d 2 3; batchnorm; flatten; dense 2", "5,5,1", 3);
    assert_int_equal(nb_onnx_opset(m), 13);
    assert_int_equal(nb_onnx_serialize(m, 0, &data, &len), NB_OK);
    assert_int_equal(onnx_model_parse(data, len, &om), NB_OK);
    assert_int_equal(om->opset, 13);
    assert_string_equal(om->graph.nodes[2].op_type, "BatchNormalization"); /* right after the Conv: no Transpose */
    assert_string_equal(om->graph.nodes[2].in[0], om->graph.nodes[1].out[0]);
    onnx_model_free(om);
    free(data);
    nb_model_free(m);
    assert_int_equal(nb_onnx_opset(NULL), 0);
    m = model_of("batchnorm; flatten; dense 2", "4,5", 3);
    data = (void *)1;
    assert_int_equal(nb_onnx_serialize(m, 0, &data, &len), NB_ERR_ARG);
    assert_null(data);
    assert_has(nb_last_error(), "onnx export: layer 0: batchnorm of a rank-3 tensor: ONNX's BatchNormalization "
                                "normalises axis 1, nabla the last one; they agree only for (N, C) and image tensors "
                                "(flatten first)");
    nb_model_free(m);
}

enum { BC = 3, BH = 4, BU = 2 };

/* As torch.onnx.export writes Conv2d + BatchNorm2d + ReLU, then Flatten,
 * Linear and LayerNorm (opset 17, eval mode, TrainingMode.PRESERVE so the
 * BatchNormalization is not folded): x (N, 1, 4, 4) -> Conv(3 filters, 3x3,
 * pads 1) -> BN(eps, momentum) -> Relu -> Flatten -> Gemm(transB) -> LN. */
static void *torch_like_bn(const nb_real *w, const nb_real *bn, const nb_real *fw, const nb_real *ln, float eps,
                           float momentum, size_t *len)
{
    gb g = {{0}};
    const int64_t in[4] = {1, 1, BH, BH}, wd[4] = {BC, 1, 3, 3}, cd[1] = {BC}, fwd[2] = {BU, BC * BH * BH};
    const int64_t ud[1] = {BU}, out[2] = {1, BU};
    onnx_w_value(&g.g, 11, "x", 4, in);
    onnx_w_initializer(&g.g, "conv.weight", 4, wd, w);
    static const char *bn_names[4] = {"bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"};
    for (int i = 0; i < 4; i++)
        onnx_w_initializer(&g.g, bn_names[i], 1, cd, bn + i * BC);
    onnx_w_initializer(&g.g, "fc.weight", 2, fwd, fw);
    onnx_w_initializer(&g.g, "ln.weight", 1, ud, ln), onnx_w_initializer(&g.g, "ln.bias", 1, ud, ln + BU);
    onnx_w_node n;
    const char *ci[2] = {"x", "conv.weight"};
    const int64_t pads[4] = {1, 1, 1, 1};
    onnx_w_node_begin(&n, "Conv", "/conv/Conv", 2, ci, "c");
    onnx_w_attr_ints(&n, "pads", 4, pads);
    onnx_w_node_end(&n, &g.g);
    const char *bi[5] = {"c", bn_names[0], bn_names[1], bn_names[2], bn_names[3]};
    onnx_w_node_begin(&n, "BatchNormalization", "/bn/BatchNormalization", 5, bi, "b");
    onnx_w_attr_float(&n, "epsilon", eps), onnx_w_attr_float(&n, "momentum", momentum);
    onnx_w_attr_int(&n, "training_mode", 0);
    onnx_w_node_end(&n, &g.g);
    const char *ri[1] = {"b"}, *fi[1] = {"r"}, *gi[2] = {"f", "fc.weight"}, *li[3] = {"m", "ln.weight", "ln.bias"};
    node(&g, "Relu", "/relu/Relu", 1, ri, "r");
    node(&g, "Flatten", "/Flatten", 1, fi, "f");
    onnx_w_node_begin(&n, "Gemm", "/fc/Gemm", 2, gi, "m");
    onnx_w_attr_int(&n, "transB", 1);
    onnx_w_node_end(&n, &g.g);
    onnx_w_node_begin(&n, "LayerNormalization", "/ln/LayerNormalization", 3, li, "y");
    onnx_w_attr_int(&n, "axis", -1), onnx_w_attr_float(&n, "epsilon", eps);
    onnx_w_node_end(&n, &g.g);
    onnx_w_value(&g.g, 12, "y", 2, out);
    return finish(&g, 17, len);
}

/* The same network directly on NCHW x, in double. */
static void reference_bn(const nb_real *x, const nb_real *w, const nb_real *bn, const nb_real *fw, const nb_real *ln,
                         double eps, double *y)
{
    for (int e = 0; e < N; e++) {
        double xd[BH * BH], f[BC * BH * BH], z[BU];
        int oh, ow;
        for (int i = 0; i < BH * BH; i++)
            xd[i] = x[e * BH * BH + i];
        ref_conv(xd, 1, 1, BH, BH, w, NULL, BC, 3, 1, 1, 0, f, &oh, &ow);
        for (int ch = 0; ch < BC; ch++)
            for (int i = 0; i < BH * BH; i++) {
                const double v = (f[ch * BH * BH + i] - bn[2 * BC + ch]) / sqrt((double)bn[3 * BC + ch] + eps) *
                                     bn[ch] + bn[BC + ch];
                f[ch * BH * BH + i] = v > 0 ? v : 0;
            }
        double mean = 0, var = 0;
        for (int u = 0; u < BU; u++) {
            z[u] = 0;
            for (int k = 0; k < BC * BH * BH; k++)
                z[u] += (double)fw[u * BC * BH * BH + k] * f[k];
            mean += z[u] / BU;
        }
        for (int u = 0; u < BU; u++)
            var += (z[u] - mean) * (z[u] - mean) / BU;
        for (int u = 0; u < BU; u++)
            y[e * BU + u] = (z[u] - mean) / sqrt(var + eps) * ln[u] + ln[BU + u];
    }
}

/* Imported: conv2d, batchnorm, relu, flatten, dense, layernorm (nothing
 * folded), computing what the reference computes; momentum 1 - ONNX's and
 * eps as written (the shortest decimals of the floats); exported again,
 * the same spec. */
static void test_import_batchnorm_like_torch(void **state)
{
    nb_real w[BC * 9], bn[4 * BC], fw[BU * BC * BH * BH], ln[2 * BU], x[N * BH * BH];
    fill(w, BC * 9, 41), fill(bn, 4 * BC, 42), fill(fw, BU * BC * BH * BH, 43), fill(ln, 2 * BU, 44);
    fill(x, N * BH * BH, 45);
    for (int ch = 0; ch < BC; ch++)
        bn[3 * BC + ch] += 1.0f, bn[2 * BC + ch] *= 4; /* variances in [0.5, 1.5], means that matter */
    static const struct {
        float eps, momentum;
        const char *spec;
    } cases[] = {{1e-5f, 0.9f, "conv2d 3 3 padding=same; batchnorm; relu; flatten; dense 2; layernorm"},
                 {1e-3f, 0.99f, "conv2d 3 3 padding=same; batchnorm momentum=0.01 eps=0.001; relu; flatten; dense 2; "
                                "layernorm eps=0.001"}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t len;
        void *data = torch_like_bn(w, bn, fw, ln, cases[k].eps, cases[k].momentum, &len);
        nb_model *m = NULL;
        if (nb_onnx_parse(data, len, 0, &m)) fprintf(stderr, "%s\n", nb_last_error());
        assert_non_null(m);
        assert_string_equal(nb_model_spec(m), cases[k].spec);
        const int64_t xs[4] = {N, BH, BH, 1};
        nb_tensor *xt = nb_tensor_new(4, xs), *y = NULL;
        memcpy(xt->data, x, sizeof x); /* C = 1: NCHW and NHWC are one order */
        assert_int_equal(nb_model_predict(m, xt, N, &y), NB_OK);
        double want[N * BU], maxdiff = 0, mag = 0;
        reference_bn(x, w, bn, fw, ln, cases[k].eps, want);
        for (int i = 0; i < N * BU; i++)
            maxdiff = fmax(maxdiff, fabs(y->data[i] - want[i])), mag = fmax(mag, fabs(want[i]));
        assert_true(maxdiff < 1e-5);
        assert_true(mag > 1e-2);
        void *again;
        size_t alen;
        nb_model *back = NULL;
        assert_int_equal(nb_onnx_serialize(m, 0, &again, &alen), NB_OK);
        assert_int_equal(nb_onnx_parse(again, alen, 0, &back), NB_OK);
        assert_string_equal(nb_model_spec(back), cases[k].spec);
        nb_model_free(back);
        free(again);
        nb_tensor_free(xt), nb_tensor_free(y);
        nb_model_free(m);
        free(data);
    }
}

/* Flatten of an NCHW tensor, then BatchNormalization (BatchNorm1d) and
 * LayerNormalization of its 18 features, then Gemm: nabla's features are in
 * (h, w, c) order, so their per-feature values are permuted like the Gemm's
 * rows; compared with the direct computation in ONNX's (c, h, w) order. */
static void test_import_norms_after_flatten(void **state)
{
    enum { F = 18, K = 3 };
    nb_real bn[4 * F], ln[2 * F], w[K * F], x[N * F];
    fill(bn, 4 * F, 51), fill(ln, 2 * F, 52), fill(w, K * F, 53), fill(x, N * F, 54);
    for (int i = 0; i < F; i++)
        bn[3 * F + i] += 1.0f;
    gb g = {{0}};
    const int64_t in[4] = {1, 2, 3, 3}, fd[1] = {F}, wd[2] = {K, F}, out[2] = {1, K};
    onnx_w_value(&g.g, 11, "x", 4, in);
    static const char *names[6] = {"s", "b", "m", "v", "lg", "lb"};
    for (int i = 0; i < 6; i++)
        onnx_w_initializer(&g.g, names[i], 1, fd, i < 4 ? bn + i * F : ln + (i - 4) * F);
    onnx_w_initializer(&g.g, "W", 2, wd, w);
    const char *fi[1] = {"x"}, *bi[5] = {"f", "s", "b", "m", "v"}, *li[3] = {"n", "lg", "lb"}, *gi[2] = {"l", "W"};
    node(&g, "Flatten", "flat", 1, fi, "f");
    node(&g, "BatchNormalization", "bn", 5, bi, "n");
    node(&g, "LayerNormalization", "ln", 3, li, "l");
    onnx_w_node n;
    onnx_w_node_begin(&n, "Gemm", "fc", 2, gi, "y");
    onnx_w_attr_int(&n, "transB", 1);
    onnx_w_node_end(&n, &g.g);
    onnx_w_value(&g.g, 12, "y", 2, out);
    size_t len;
    void *data = finish(&g, 17, &len);
    nb_model *m = NULL;
    if (nb_onnx_parse(data, len, 0, &m)) fprintf(stderr, "%s\n", nb_last_error());
    assert_non_null(m);
    assert_string_equal(nb_model_spec(m), "flatten; batchnorm; layernorm; dense 3");
    const int64_t xs[4] = {N, 3, 3, 2};
    nb_tensor *xt = nb_tensor_new(4, xs), *y = NULL;
    for (int e = 0; e < N; e++) /* NCHW -> NHWC */
        for (int ch = 0; ch < 2; ch++)
            for (int p = 0; p < 9; p++)
                xt->data[(e * 9 + p) * 2 + ch] = x[(e * 2 + ch) * 9 + p];
    assert_int_equal(nb_model_predict(m, xt, N, &y), NB_OK);
    double maxdiff = 0, mag = 0;
    for (int e = 0; e < N; e++) {
        double z[F], mean = 0, var = 0;
        for (int i = 0; i < F; i++) {
            z[i] = (x[e * F + i] - bn[2 * F + i]) / sqrt((double)bn[3 * F + i] + 1e-5) * bn[i] + bn[F + i];
            mean += z[i] / F;
        }
        for (int i = 0; i < F; i++)
            var += (z[i] - mean) * (z[i] - mean) / F;
        for (int i = 0; i < F; i++)
            z[i] = (z[i] - mean) / sqrt(var + 1e-5) * ln[i] + ln[F + i];
        for (int k = 0; k < K; k++) {
            double acc = 0;
            for (int i = 0; i < F; i++)
                acc += (double)w[k * F + i] * z[i];
            maxdiff = fmax(maxdiff, fabs(y->data[e * K + k] - acc)), mag = fmax(mag, fabs(acc));
        }
    }
    assert_true(maxdiff < 1e-5);
    assert_true(mag > 1e-2);
    nb_tensor_free(xt), nb_tensor_free(y);
    nb_model_free(m);
    free(data);
}

/* ---- bad inputs (docs/bad-inputs.md, "ONNX files") */

static void expect_refused(const void *data, size_t len, nb_status want_status, const char *want)
{
    nb_model *m = (nb_model *)1;
    nb_status s = nb_onnx_parse(data, len, 0, &m);
    assert_int_equal(s, want_status);
    assert_null(m);
    assert_has(nb_last_error(), want);
}

/* A one-node graph x -> op -> y on input dims in[4] (rank 4 NCHW), with one
 * attribute of ints when aname is given. */
static void *one_node(const char *op, const char *aname, int na, const int64_t *av, size_t *len)
{
    gb g = {{0}};
    const int64_t in[4] = {1, 2, 6, 6}, out[4] = {1, 2, 3, 3};
    onnx_w_value(&g.g, 11, "x", 4, in);
    const char *xi[1] = {"x"};
    onnx_w_node n;
    onnx_w_node_begin(&n, op, "the_node", 1, xi, "y");
    if (aname) onnx_w_attr_ints(&n, aname, na, av);
    onnx_w_node_end(&n, &g.g);
    onnx_w_value(&g.g, 12, "y", 4, out);
    return finish(&g, 13, len);
}

static void test_bad_wire_format(void **state)
{
    const unsigned char truncated_varint[] = {0x08, 0x80};             /* ir_version, varint cut */
    const unsigned char past_end[] = {0x3a, 0x7f, 0x0a};               /* graph of 127 bytes, 1 there */
    const unsigned char overlong[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    const unsigned char group[] = {0x0b, 0x0c};                        /* field 1, wire type 3 */
    const unsigned char field0[] = {0x00, 0x01};
    const unsigned char no_graph[] = {0x08, 0x07};
    expect_refused(truncated_varint, sizeof truncated_varint, NB_ERR_FORMAT, "onnx: model: field 1: truncated varint");
    expect_refused(past_end, sizeof past_end, NB_ERR_FORMAT,
                   "onnx: model: field 7: length 127 is past the end (1 bytes left)");
    expect_refused(overlong, sizeof overlong, NB_ERR_FORMAT, "onnx: model: field 1: varint longer than 64 bits");
    expect_refused(group, sizeof group, NB_ERR_FORMAT,
                   "onnx: model: field 1 has wire type 3 (groups and unknown types are not supported)");
    expect_refused(field0, sizeof field0, NB_ERR_FORMAT, "onnx: model: field number 0 is out of range 1..2^29-1");
    expect_refused(no_graph, sizeof no_graph, NB_ERR_FORMAT, "onnx: the file has no graph (is it an ONNX model?)");
    expect_refused("", 0, NB_ERR_FORMAT, "onnx: the file has no graph");
    /* A tensor claiming 2^40 elements with 4 bytes of data: refused before any allocation. */
    gb g = {{0}};
    nb_pb_writer t = {0};
    const int64_t big[2] = {1 << 20, 1 << 20};
    nb_pb_put_packed_int64(&t, 1, big, 2);
    nb_pb_put_varint(&t, 2, ONNX_FLOAT);
    nb_pb_put_string(&t, 8, "W");
    nb_pb_put_bytes(&t, 9, "abcd", 4);
    nb_pb_put_message(&g.g, 5, &t);
    const int64_t in[2] = {1, 1 << 20}, out[2] = {1, 1 << 20};
    onnx_w_value(&g.g, 11, "x", 2, in);
    onnx_w_value(&g.g, 12, "y", 2, out);
    const char *mi[2] = {"x", "W"};
    node(&g, "MatMul", "mm", 2, mi, "y");
    size_t len;
    void *data = finish(&g, 13, &len);
    expect_refused(data, len, NB_ERR_FORMAT,
                   "onnx import: node 0 'mm' (MatMul): onnx: tensor 'W' has 4 bytes of raw_data, its 1099511627776 "
                   "elements need 4398046511104");
    free(data);
}

/* A node's name and operator are the file's text: quoted through
 * nb_escape_text (a newline as \x0a, an ANSI escape as \x1b), never raw. */
static void test_node_names_escaped(void **state)
{
    (void)state;
    gb g = {{0}};
    const int64_t in[4] = {1, 2, 6, 6};
    onnx_w_value(&g.g, 11, "x", 4, in);
    const char *xi[1] = {"x"};
    node(&g, "LRN\x1b[2J", "bad\nname\x1b[31m", 1, xi, "y");
    onnx_w_value(&g.g, 12, "y", 4, in);
    size_t len;
    void *data = finish(&g, 13, &len);
    expect_refused(data, len, NB_ERR_FORMAT,
                   "onnx import: node 0 'bad\\x0aname\\x1b[31m' (LRN\\x1b[2J): operator LRN\\x1b[2J is not supported");
    assert_null(strchr(nb_last_error(), '\x1b'));
    assert_null(strchr(nb_last_error(), '\n'));
    free(data);
}

static void test_bad_operators(void **state)
{
    size_t len;
    void *data = one_node("LRN", NULL, 0, NULL, &len);
    expect_refused(data, len, NB_ERR_FORMAT,
                   "onnx import: node 0 'the_node' (LRN): operator LRN is not supported; nabla imports Conv, Gemm, "
                   "MatMul (+ Add of a bias), MaxPool");
    free(data);
    const int64_t ks[2] = {2, 2};
    data = one_node("MaxPool", "kernel_shapes", 2, ks, &len);
    expect_refused(data, len, NB_ERR_FORMAT,
                   "onnx import: node 0 'the_node' (MaxPool): attribute 'kernel_shapes' is not supported (MaxPool "
                   "takes: kernel_shape, strides, pads, dilations, ceil_mode, storage_order, auto_pad)");
    free(data);
    const int64_t rect[2] = {2, 3};
    data = one_node("MaxPool", "kernel_shape", 2, rect, &len);
    expect_refused(data, len, NB_ERR_FORMAT,
                   "onnx import: node 0 'the_node' (MaxPool): kernel_shape must be two equal numbers in 1..1024 "
                   "(nabla's windows are square)");
    free(data);
    const int64_t perm[4] = {0, 1, 3, 2};
    data = one_node("Transpose", "perm", 4, perm, &len);
    expect_refused(data, len, NB_ERR_FORMAT,
                   "onnx import: node 0 'the_node' (Transpose): only a layout change of an image tensor (perm "
                   "[0, 3, 1, 2] from NHWC or [0, 2, 3, 1] from NCHW) is supported");
    free(data);
}

/* A Conv whose pads are neither valid nor TensorFlow's same (PyTorch's
 * padding=1 with stride 2 on an even input), and a grouped Conv. */
static void test_bad_conv(void **state)
{
    for (int variant = 0; variant < 2; variant++) {
        gb g = {{0}};
        const int64_t in[4] = {1, 2, 6, 6}, out[4] = {1, 2, 3, 3}, wd[4] = {2, variant ? 1 : 2, 3, 3};
        nb_real w[36] = {0};
        onnx_w_value(&g.g, 11, "x", 4, in);
        onnx_w_initializer(&g.g, "W", 4, wd, w);
        const char *ci[2] = {"x", "W"};
        onnx_w_node n;
        onnx_w_node_begin(&n, "Conv", "Conv_7", 2, ci, "y");
        const int64_t pads[4] = {1, 1, 0, 0}, st[2] = {2, 2}; /* [1, 1, 1, 1] is padding=1 */
        onnx_w_attr_ints(&n, "pads", 4, pads);
        onnx_w_attr_ints(&n, "strides", 2, st);
        if (variant) onnx_w_attr_int(&n, "group", 2);
        onnx_w_node_end(&n, &g.g);
        onnx_w_value(&g.g, 12, "y", 4, out);
        size_t len;
        void *data = finish(&g, 13, &len);
        expect_refused(data, len, NB_ERR_FORMAT,
                       variant ? "onnx import: node 0 'Conv_7' (Conv): group 2: only group = 1 is supported"
                               : "onnx import: node 0 'Conv_7' (Conv): pads [1, 1, 0, 0] on a 6x6 input are neither "
                                 "valid ([0, 0, 0, 0]), TensorFlow's same ([0, 0, 1, 1]) nor the same number 1..1024 "
                                 "on every side, the paddings nabla computes");
        free(data);
    }
}

/* Two inputs, a branch (a node not on the previous node's output), an
 * output that is not the last node's. */
static void test_bad_graphs(void **state)
{
    gb g = {{0}};
    const int64_t in[2] = {1, 4};
    onnx_w_value(&g.g, 11, "x", 2, in);
    onnx_w_value(&g.g, 11, "z", 2, in);
    size_t len;
    void *data = finish(&g, 13, &len);
    expect_refused(data, len, NB_ERR_FORMAT,
                   "onnx import: the graph has more than one input ('x', 'z'); nabla models take one");
    free(data);
    gb b = {{0}};
    onnx_w_value(&b.g, 11, "x", 2, in);
    const char *x[1] = {"x"}, *r[1] = {"r"};
    node(&b, "Relu", "a", 1, x, "r");
    node(&b, "Tanh", "b", 1, x, "t"); /* a second branch off x */
    node(&b, "Sigmoid", "c", 1, r, "y");
    onnx_w_value(&b.g, 12, "y", 2, in);
    data = finish(&b, 13, &len);
    expect_refused(data, len, NB_ERR_FORMAT,
                   "onnx import: node 2 'c' (Sigmoid): the tensor 't' before it (entry 2, activation) is read by no "
                   "later node and is not the graph's output: remove the dead branch");
    free(data);
    gb q = {{0}};
    onnx_w_value(&q.g, 11, "x", 2, in);
    const char *qi[1] = {"q"};
    node(&q, "Relu", "n", 1, qi, "y");
    onnx_w_value(&q.g, 12, "y", 2, in);
    data = finish(&q, 13, &len);
    expect_refused(data, len, NB_ERR_FORMAT,
                   "onnx import: node 0 'n' (Relu): reads 'q', which is neither the graph's input nor computed by an "
                   "earlier node (nodes must be in topological order; constants are initializers)");
    free(data);
    gb o = {{0}};
    onnx_w_value(&o.g, 11, "x", 2, in);
    node(&o, "Relu", "a", 1, x, "r");
    onnx_w_value(&o.g, 12, "x", 2, in);
    data = finish(&o, 13, &len);
    expect_refused(data, len, NB_ERR_FORMAT,
                   "onnx import: the graph's output must be the last node's ('r') and the only one; it has 1 ('x')");
    free(data);
}

/* Joins nabla cannot express: an Add of a constant (not a MatMul's bias),
 * an Add that broadcasts, a Concat off the channel axis, a
 * GlobalAveragePool without the Flatten to (N, C). */
static void test_bad_joins(void **state)
{
    const int64_t in[2] = {1, 4}, kd[1] = {4}, wd[2] = {4, 3}, im[4] = {1, 2, 6, 6};
    const nb_real k[12] = {0.5f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    size_t len;
    gb a = {{0}};
    onnx_w_value(&a.g, 11, "x", 2, in);
    onnx_w_initializer(&a.g, "K", 1, kd, k);
    const char *ak[2] = {"x", "K"};
    node(&a, "Add", "add", 2, ak, "y");
    onnx_w_value(&a.g, 12, "y", 2, in);
    void *data = finish(&a, 13, &len);
    expect_refused(data, len, NB_ERR_FORMAT,
                   "onnx import: node 0 'add' (Add): input 1 ('K') is a constant: nabla's add joins computed tensors "
                   "only (a bias is an Add right after a MatMul)");
    free(data);
    gb b = {{0}};
    onnx_w_value(&b.g, 11, "x", 2, in);
    onnx_w_initializer(&b.g, "W", 2, wd, k);
    const char *mm[2] = {"x", "W"}, *ab[2] = {"m", "x"};
    node(&b, "MatMul", "mm", 2, mm, "m");
    node(&b, "Add", "add", 2, ab, "y");
    onnx_w_value(&b.g, 12, "y", 2, in);
    data = finish(&b, 13, &len);
    expect_refused(data, len, NB_ERR_FORMAT,
                   "onnx import: node 1 'add' (Add): inputs 0 and 1 differ in shape: nabla's add takes equal shapes "
                   "(no broadcasting)");
    free(data);
    gb c = {{0}};
    onnx_w_value(&c.g, 11, "x", 4, im);
    const char *xr[1] = {"x"}, *ct[2] = {"r", "x"};
    node(&c, "Relu", "relu", 1, xr, "r");
    onnx_w_node n;
    onnx_w_node_begin(&n, "Concat", "cat", 2, ct, "y");
    onnx_w_attr_int(&n, "axis", 2);
    onnx_w_node_end(&n, &c.g);
    onnx_w_value(&c.g, 12, "y", 4, im);
    data = finish(&c, 13, &len);
    expect_refused(data, len, NB_ERR_FORMAT,
                   "onnx import: node 1 'cat' (Concat): axis 2: nabla concatenates on the channel axis (1 of this "
                   "rank-4 NCHW tensor)");
    free(data);
    /* A Flatten of an NCHW tensor read again after its Gemm: its (c, h, w) order is not nabla's. */
    gb f = {{0}};
    const int64_t x4[4] = {1, 2, 3, 3}, w18[2] = {18, 18}, o18[2] = {1, 18};
    nb_real w[18 * 18];
    fill(w, 18 * 18, 31);
    onnx_w_value(&f.g, 11, "x", 4, x4);
    onnx_w_initializer(&f.g, "W", 2, w18, w);
    const char *fx[1] = {"x"}, *gf[2] = {"f", "W"}, *af[2] = {"g", "f"};
    node(&f, "Flatten", "flat", 1, fx, "f");
    node(&f, "Gemm", "fc", 2, gf, "g");
    node(&f, "Add", "add", 2, af, "y");
    onnx_w_value(&f.g, 12, "y", 2, o18);
    data = finish(&f, 13, &len);
    expect_refused(data, len, NB_ERR_FORMAT,
                   "onnx import: node 2 'add' (Add): reads 'f', a Flatten of an NCHW tensor, after the Gemm or "
                   "MatMul it feeds: nabla flattens in (h, w, c) order, ONNX in (c, h, w); only that Gemm or MatMul "
                   "may read it");
    free(data);
    data = one_node("GlobalAveragePool", NULL, 0, NULL, &len);
    expect_refused(data, len, NB_ERR_FORMAT,
                   "onnx import: node 0 'the_node' (GlobalAveragePool): must be followed by a Flatten (axis 1) or a "
                   "Reshape to (N, 2), its only reader: nabla's globalavgpool gives (N, C)");
    free(data);
}

/* One BatchNormalization or LayerNormalization node on x of the given
 * rank (2 channels or features last; a rank-4 x is NCHW (1, 2, 3, 3), or
 * NHWC read through Transpose(0,3,1,2) and back when nhwc), with nin
 * inputs of count values each (input 1 computed, not a constant, when
 * scale_computed), an int attribute and a float one when named, and nout
 * outputs. */
typedef struct {
    const char *op;
    int rank, nhwc, nin;
    int64_t count;
    const char *iname, *fname;
    int64_t ival;
    float fval, var0;
    int nout, scale_computed;
} norm_case;

static void *norm_graph(const norm_case *k, size_t *len)
{
    gb g = {{0}};
    const int64_t x4[4] = {1, 2, 3, 3}, h4[4] = {1, 3, 3, 2}, x3[3] = {1, 3, 2}, x2[2] = {1, 2}, cd[1] = {k->count};
    const int64_t *in = k->rank == 4 ? (k->nhwc ? h4 : x4) : k->rank == 3 ? x3 : x2;
    onnx_w_value(&g.g, 11, "x", k->rank, in);
    static const char *names[4] = {"s", "b", "m", "v"};
    nb_real v[8] = {1, 0.5f, 2, 1, 1, 1, 1, 1};
    for (int i = k->scale_computed; i < 4 && 1 + i < k->nin; i++) {
        v[0] = i == 3 ? k->var0 : 1;
        onnx_w_initializer(&g.g, names[i], 1, cd, v);
    }
    const char *t1[1] = {"x"}, *t2[1] = {"t"}, *cur = "x";
    if (k->nhwc) {
        static const int64_t to_nchw[4] = {0, 3, 1, 2}, to_nhwc[4] = {0, 2, 3, 1};
        onnx_w_node t;
        onnx_w_node_begin(&t, "Transpose", "t_in", 1, t1, "t");
        onnx_w_attr_ints(&t, "perm", 4, to_nchw);
        onnx_w_node_end(&t, &g.g);
        onnx_w_node_begin(&t, "Transpose", "t_out", 1, t2, "u");
        onnx_w_attr_ints(&t, "perm", 4, to_nhwc);
        onnx_w_node_end(&t, &g.g);
        cur = "u";
    }
    if (k->scale_computed) {
        const char *ri[1] = {"x"};
        node(&g, "Relu", "r", 1, ri, "s"); /* a computed tensor called s */
    }
    const char *ni[5] = {cur, "s", "b", "m", "v"};
    onnx_w_node n;
    onnx_w_node_begin(&n, k->op, "norm", k->nin, ni, "y");
    if (k->iname) onnx_w_attr_int(&n, k->iname, k->ival);
    if (k->fname) onnx_w_attr_float(&n, k->fname, k->fval);
    for (int i = 1; i < k->nout; i++) nb_pb_put_string(&n.w, 2, i == 1 ? "saved_mean" : "saved_var"); /* NodeProto.output */
    onnx_w_node_end(&n, &g.g);
    onnx_w_value(&g.g, 12, "y", k->rank, in);
    return finish(&g, 17, len);
}

/* Every refusal of BatchNormalization and LayerNormalization. */
static void test_bad_norms(void **state)
{
    static const struct {
        norm_case k;
        const char *want;
    } cases[] = {
        {{"BatchNormalization", 4, 0, 5, 2, "training_mode", NULL, 1, 0, 1, 1, 0},
         "onnx import: node 0 'norm' (BatchNormalization): training_mode 1 (batch statistics) is not supported: export "
         "the model in eval mode (model.eval()), which uses the moving statistics"},
        {{"BatchNormalization", 4, 0, 5, 2, NULL, NULL, 0, 0, 1, 3, 0},
         "onnx import: node 0 'norm' (BatchNormalization): output 1 ('saved_mean', a training statistic) is not "
         "supported: export in eval mode"},
        {{"BatchNormalization", 4, 1, 5, 2, NULL, NULL, 0, 0, 1, 1, 0},
         "onnx import: node 2 'norm' (BatchNormalization): normalises axis 1 of a rank-4 NHWC tensor; nabla's "
         "batchnorm normalises the channels, axis 1 only of an NCHW image or an (N, C) tensor"},
        {{"BatchNormalization", 3, 0, 5, 2, NULL, NULL, 0, 0, 1, 1, 0},
         "onnx import: node 0 'norm' (BatchNormalization): normalises axis 1 of a rank-3 tensor; nabla's batchnorm"},
        {{"BatchNormalization", 4, 0, 3, 2, NULL, NULL, 0, 0, 1, 1, 0},
         "onnx import: node 0 'norm' (BatchNormalization): needs 5 inputs (X, scale, B, input_mean, input_var), got "
         "3"},
        {{"BatchNormalization", 4, 0, 5, 3, NULL, NULL, 0, 0, 1, 1, 0},
         "onnx import: node 0 'norm' (BatchNormalization): input 1 ('s') has 3 values, expected 2"},
        {{"BatchNormalization", 4, 0, 5, 2, NULL, NULL, 0, 0, 1, 1, 1},
         "onnx import: node 1 'norm' (BatchNormalization): input 1 ('s') must be a constant (an initializer)"},
        {{"BatchNormalization", 4, 0, 5, 2, NULL, NULL, 0, 0, -0.5f, 1, 0},
         "onnx import: node 0 'norm' (BatchNormalization): input_var holds -0.5 (channel 0): a variance is not "
         "negative"},
        {{"BatchNormalization", 2, 0, 5, 2, NULL, "momentum", 0, 1.0f, 1, 1, 0},
         "onnx import: node 0 'norm' (BatchNormalization): momentum 1 is outside [0, 0.999999]: nabla's momentum, 1 - "
         "ONNX's, is at least 1e-6"},
        {{"BatchNormalization", 2, 0, 5, 2, NULL, "momentum", 0, 0.0f, 1, 1, 0},
         "onnx import: node 0 'norm' (BatchNormalization): momentum 0 (each batch replaces the moving statistics) is "
         "not supported: nabla's momentum, 1 - ONNX's, is below 1"},
        {{"BatchNormalization", 2, 0, 5, 2, NULL, "epsilon", 0, 0, 1, 1, 0},
         "onnx import: node 0 'norm' (BatchNormalization): epsilon 0 is outside [1e-12, 1]: nabla's batchnorm eps"},
        {{"BatchNormalization", 2, 0, 5, 2, NULL, "epsilon", 0, 1.0f, 1, 1, 0},
         "onnx import: node 0 'norm' (BatchNormalization): epsilon 1 is outside [1e-12, 1): nabla's batchnorm eps"},
        {{"LayerNormalization", 2, 0, 3, 2, NULL, "epsilon", 0, 1.0f, 1, 1, 0},
         "onnx import: node 0 'norm' (LayerNormalization): epsilon 1 is outside [1e-12, 1): nabla's layernorm eps"},
        {{"BatchNormalization", 2, 0, 5, 2, NULL, "epsilon", 0, NAN, 1, 1, 0},
         "onnx import: node 0 'norm' (BatchNormalization): epsilon nan is outside [1e-12, 1]"},
        {{"LayerNormalization", 4, 0, 3, 2, NULL, NULL, 0, 0, 1, 1, 0},
         "onnx import: node 0 'norm' (LayerNormalization): axis -1 of a rank-4 NCHW tensor: nabla's layernorm "
         "normalises the channels, the last axis of an NHWC or flat tensor (axis -1)"},
        {{"LayerNormalization", 3, 0, 3, 2, "axis", NULL, 1, 0, 1, 1, 0},
         "onnx import: node 0 'norm' (LayerNormalization): axis 1 of a rank-3 tensor: nabla's layernorm"},
        {{"LayerNormalization", 2, 0, 3, 3, NULL, NULL, 0, 0, 1, 1, 0},
         "onnx import: node 0 'norm' (LayerNormalization): input 1 ('s') has 3 values, expected 2"},
        {{"LayerNormalization", 2, 0, 1, 2, NULL, NULL, 0, 0, 1, 1, 0},
         "onnx import: node 0 'norm' (LayerNormalization): needs 2 or 3 inputs (X, Scale[, B]), got 1"},
        {{"LayerNormalization", 2, 0, 3, 2, NULL, NULL, 0, 0, 1, 2, 0},
         "onnx import: node 0 'norm' (LayerNormalization): output 1 ('saved_mean', Mean or InvStdDev) is not "
         "supported"},
        {{"LayerNormalization", 2, 0, 3, 2, NULL, "epsilon", 0, -1, 1, 1, 0},
         "onnx import: node 0 'norm' (LayerNormalization): epsilon -1 is outside [1e-12, 1]: nabla's layernorm eps"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        void *data = norm_graph(&cases[i].k, &len);
        if (getenv("NB_SHOW")) fprintf(stderr, "case %zu\n", i);
        expect_refused(data, len, NB_ERR_FORMAT, cases[i].want);
        free(data);
    }
    /* The same graphs with what they lacked import: the builder is not what is refused. */
    static const norm_case good[] = {{"BatchNormalization", 4, 0, 5, 2, "training_mode", NULL, 0, 0, 1, 1, 0},
                                     {"BatchNormalization", 2, 0, 5, 2, NULL, "momentum", 0, 0.25f, 1, 1, 0},
                                     {"LayerNormalization", 4, 1, 3, 2, NULL, NULL, 0, 0, 1, 1, 0},
                                     {"LayerNormalization", 3, 0, 2, 2, "axis", NULL, 2, 0, 1, 1, 0}};
    static const char *good_spec[] = {"batchnorm", "batchnorm momentum=0.75", "layernorm", "layernorm"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        size_t len;
        void *data = norm_graph(&good[i], &len);
        nb_model *m = NULL;
        if (nb_onnx_parse(data, len, 0, &m)) fprintf(stderr, "good %zu: %s\n", i, nb_last_error());
        assert_non_null(m);
        assert_string_equal(nb_model_spec(m), good_spec[i]);
        nb_model_free(m);
        free(data);
    }
}

/* Weights holding NaN are refused unless NB_LOAD_ALLOW_NONFINITE; a
 * symbolic input dimension is refused. */
static void test_bad_values(void **state)
{
    nb_model *m = model_of("dense 2", "3", 1), *back = NULL;
    nb_value(nb_model_find_param(m, "0.kernel"))->data[4] = NAN;
    void *data;
    size_t len;
    assert_int_equal(nb_onnx_serialize(m, 0, &data, &len), NB_OK);
    expect_refused(data, len, NB_ERR_NUMERIC,
                   "onnx import: weight '0.kernel' holds NaN or Inf (element 4): the model would compute NaN");
    assert_int_equal(nb_onnx_parse(data, len, NB_LOAD_ALLOW_NONFINITE, &back), NB_OK);
    assert_true(isnan(nb_value(nb_model_find_param(back, "0.kernel"))->data[4]));
    nb_model_free(back), nb_model_free(m);
    free(data);
    gb g = {{0}};
    const int64_t in[3] = {1, 4, 4};
    onnx_w_value(&g.g, 11, "x", 3, in); /* dims[0] is written symbolic; make dims[2] symbolic too */
    nb_pb_writer_free(&g.g);
    nb_pb_writer shape = {0}, tensor = {0}, type = {0}, value = {0}, d1 = {0}, d2 = {0};
    nb_pb_put_string(&d1, 2, "N"), nb_pb_put_string(&d2, 2, "width");
    nb_pb_put_message(&shape, 1, &d1), nb_pb_put_message(&shape, 1, &d2);
    nb_pb_put_varint(&tensor, 1, ONNX_FLOAT), nb_pb_put_message(&tensor, 2, &shape);
    nb_pb_put_message(&type, 1, &tensor);
    nb_pb_put_string(&value, 1, "x"), nb_pb_put_message(&value, 2, &type);
    nb_pb_put_message(&g.g, 11, &value);
    data = finish(&g, 13, &len);
    expect_refused(data, len, NB_ERR_FORMAT,
                   "onnx import: input 'x' dimension 1 is unknown or out of range 1..2^24: export with a fixed input "
                   "size");
    free(data);
}

/* The CLI: export, import, and --model M.onnx for predict, summary. */
static void test_cli(void **state)
{
    char dir[1024], cmd[4096];
    tu_mkdtemp(dir, sizeof dir, "onnx");
    nb_model *m = model_of("conv2d 2 3 relu; maxpool 2; flatten; dense 3", "8,8,1", 3);
    tu_fmt(cmd, sizeof cmd, "%s/m.safetensors", dir);
    assert_int_equal(nb_model_save(m, cmd), NB_OK);
    tu_fmt(cmd, sizeof cmd,
           "cd '%s' && %s export --model m.safetensors -o m.onnx >out.txt && %s import m.onnx -o back.safetensors "
           ">>out.txt && %s summary --model m.onnx >>out.txt",
           dir, NB_CLI, NB_CLI, NB_CLI);
    assert_int_equal(system(cmd), 0);
    tu_fmt(cmd, sizeof cmd, "%s/out.txt", dir);
    size_t n;
    char *out = tu_read(cmd, &n);
    assert_has(out, "wrote m.onnx (ONNX opset 13): input 'input' (N, 8, 8, 1) NHWC, output 'output'; spec: conv2d 2 3 "
                    "relu; maxpool 2; flatten; dense 3");
    assert_has(out, "wrote back.safetensors: conv2d 2 3 relu; maxpool 2; flatten; dense 3 (77 parameters)");
    assert_has(out, "Total params: 77");
    free(out);
    tu_fmt(cmd, sizeof cmd, "%s/back.safetensors", dir);
    nb_model *back = NULL;
    assert_int_equal(nb_model_load(cmd, &back), NB_OK);
    for (int p = 0; p < nb_model_param_count(m); p++)
        assert_same_bits(nb_value(nb_model_param(back, p)), nb_value(nb_model_param(m, p)));
    tu_fmt(cmd, sizeof cmd, "cd '%s' && %s import nothere.onnx -o x.safetensors 2>err.txt; echo $? >>err.txt", dir,
           NB_CLI);
    assert_int_equal(system(cmd), 0);
    tu_fmt(cmd, sizeof cmd, "%s/err.txt", dir);
    out = tu_read(cmd, &n);
    assert_has(out, "nabla import: 'nothere.onnx': no such file\n1\n");
    free(out);
    nb_model_free(back), nb_model_free(m);
    /* A layernorm makes the file opset 17, and the CLI says so. */
    m = model_of("dense 4; layernorm; batchnorm; dense 2", "3", 4);
    tu_fmt(cmd, sizeof cmd, "%s/ln.safetensors", dir);
    assert_int_equal(nb_model_save(m, cmd), NB_OK);
    tu_fmt(cmd, sizeof cmd, "cd '%s' && %s export --model ln.safetensors -o ln.onnx >ln.txt", dir, NB_CLI);
    assert_int_equal(system(cmd), 0);
    tu_fmt(cmd, sizeof cmd, "%s/ln.txt", dir);
    out = tu_read(cmd, &n);
    assert_has(out, "wrote ln.onnx (ONNX opset 17): input 'input' (N, 3), output 'output'; spec: dense 4; layernorm; "
                    "batchnorm; dense 2");
    free(out);
    tu_fmt(cmd, sizeof cmd, "%s/ln.onnx", dir);
    assert_int_equal(nb_onnx_load(cmd, 0, &back), NB_OK);
    assert_string_equal(nb_model_spec(back), "dense 4; layernorm; batchnorm; dense 2");
    nb_model_free(back), nb_model_free(m);
    tu_rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_exact),
        cmocka_unit_test(test_export_contents),
        cmocka_unit_test(test_import_nchw_like_torch),
        cmocka_unit_test(test_import_matmul_reshape),
        cmocka_unit_test(test_bad_wire_format),
        cmocka_unit_test(test_bad_operators),
        cmocka_unit_test(test_node_names_escaped),
        cmocka_unit_test(test_bad_conv),
        cmocka_unit_test(test_bad_graphs),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_import_resnet_like),
        cmocka_unit_test(test_export_graph_nodes),
        cmocka_unit_test(test_bad_joins),
        cmocka_unit_test(test_export_norm_nodes),
        cmocka_unit_test(test_import_batchnorm_like_torch),
        cmocka_unit_test(test_bad_norms),
        cmocka_unit_test(test_import_norms_after_flatten),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
