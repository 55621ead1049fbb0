/* nabla model -> ONNX (opset 13; 17, whose first operator set has
 * LayerNormalization, for a model with a layernorm). One table entry per layer kind writes that
 * layer's nodes and initializers; a new layer kind adds one entry.
 *
 * Layout. nabla's tensors are NHWC; ONNX's Conv and pooling operators take
 * NCHW. The exporter tracks the layout of the current rank-4 tensor in the
 * ONNX graph and inserts a Transpose only where an operator needs the other
 * one: perm (0,3,1,2) before the first Conv or pool, (0,2,3,1) before a
 * Flatten (so the flattened order is nabla's (h, w, c) and the dense kernel
 * after it is written as it is) and, for a rank-4 output, back to the
 * layout asked for. Elementwise layers take either layout.
 *
 * Graph models: every entry's output is kept (name, shape, layout), so
 * `from NAME` writes no node (the named tensor becomes current), `add` is
 * Add (Sum for several names) and `concat` is Concat on the channel axis
 * (1 in NCHW), each named input brought to the current tensor's layout by
 * a Transpose of its own; `globalavgpool` is GlobalAveragePool + Flatten. A
 * tensor read by several entries is one graph tensor with several
 * consumers.
 *
 * Weights: dense kernel (in, out) is Gemm's B as it is (transB = 0), conv
 * kernel k[p,q,c,o] (f, f, C_in, C_out) becomes ONNX's W[o,c,p,q]; biases as
 * they are. Node and tensor names are "<layer>.<op>", initializers keep the
 * parameters' names ("0.kernel"). */
#include "onnx.h"

#include "../kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>

/* Opset 13 (IR 7) unless the model has a layernorm: then opset 17, the
 * first with LayerNormalization, and IR 8, the first that allows opset 17.
 * (Rather than opset 13's ReduceMean/Sub/Pow/... decomposition: one node
 * that ONNX Runtime runs fused and the importer reads back as one layer;
 * models without a layernorm keep opset 13 for older runtimes.) */
enum { OPSET = 13, OPSET_LAYERNORM = 17, IR_VERSION = 7, IR_VERSION_17 = 8 };

int nb_onnx_opset(const nb_model *m)
{
    if (!m) return 0;
    for (int i = 0; i < nb_model_num_layers(m); i++)
        if (nb_model_layer(m, i)->kind == NB_LAYER_LAYERNORM) return OPSET_LAYERNORM;
    return OPSET;
}

/* A tensor of the graph: its name, nabla (NHWC) shape with the batch, and
 * whether a rank-4 one lies as NCHW. */
typedef struct exp_val {
    char name[64];
    int rank;
    int64_t shape[NB_MAX_RANK];
    int nchw;
} exp_val;

typedef struct exp_ctx {
    nb_model *m;
    nb_pb_writer graph;
    int layer;
    char cur[64];                /* the current tensor's name in the graph */
    int rank;                    /* its rank, batch included */
    int64_t shape[NB_MAX_RANK];  /* its nabla (NHWC) shape, batch included */
    int nchw;                    /* a rank-4 current tensor lies as NCHW in the graph */
    exp_val input;               /* the model's input (`from input`) */
    exp_val *named;              /* per layer: its output, kept for the names `as` gives */
} exp_ctx;

static void save_val(const exp_ctx *c, exp_val *v)
{
    snprintf(v->name, sizeof v->name, "%s", c->cur);
    v->rank = c->rank, v->nchw = c->nchw;
    memcpy(v->shape, c->shape, sizeof v->shape);
}

static void load_val(exp_ctx *c, const exp_val *v)
{
    snprintf(c->cur, sizeof c->cur, "%s", v->name);
    c->rank = v->rank, c->nchw = v->nchw;
    memcpy(c->shape, v->shape, sizeof c->shape);
}

/* The output called name (`input` or an earlier entry's `as NAME`). */
static const exp_val *find_val(const exp_ctx *c, const char *name)
{
    if (!strcmp(name, "input")) return &c->input;
    for (int i = c->layer - 1; i >= 0; i--)
        if (!strcmp(nb_model_layer(c->m, i)->name, name)) return &c->named[i];
    nb_fail(NB_ERR_ARG, "onnx export: layer %d: no earlier output is named '%s'", c->layer, name);
    return NULL;
}

/* Appends node op on the current tensor (plus extra inputs) and makes its
 * output current; attributes through *n before onnx_w_node_end. */
static void node_begin(exp_ctx *c, onnx_w_node *n, const char *op, const char *what, int nextra,
                       const char *const *extra)
{
    char name[64];
    snprintf(name, sizeof name, "%d.%s", c->layer, what);
    const char *in[5] = {c->cur}; /* BatchNormalization's 4 extra inputs at most */
    if (nextra > 4) nextra = 4;
    for (int i = 0; i < nextra; i++) in[1 + i] = extra[i];
    onnx_w_node_begin(n, op, name, 1 + nextra, in, name);
    snprintf(c->cur, sizeof c->cur, "%s", name);
}

static void put_transpose(exp_ctx *c, int to_nchw)
{
    static const int64_t to_c[4] = {0, 3, 1, 2}, to_l[4] = {0, 2, 3, 1};
    onnx_w_node n;
    node_begin(c, &n, "Transpose", to_nchw ? "to_nchw" : "to_nhwc", 0, NULL);
    onnx_w_attr_ints(&n, "perm", 4, to_nchw ? to_c : to_l);
    onnx_w_node_end(&n, &c->graph);
    c->nchw = to_nchw;
}

/* GELU, which opset 13 has no operator for, as torch.onnx.export writes
 * it: y = (x * (erf(x / sqrt 2) + 1)) * 0.5 (Div, Erf, Add, Mul, Mul with
 * scalar initializers); the importer reads the pattern back. */
static nb_status put_gelu(exp_ctx *c)
{
    static const struct {
        const char *op, *what;
        float k;
    } steps[] = {{"Div", "gelu_div", 1.41421356f}, {"Erf", "gelu_erf", 0}, {"Add", "gelu_add", 1.0f},
                 {"Mul", "gelu_mul", 0}, {"Mul", "gelu", 0.5f}};
    char x[64], k[64];
    snprintf(x, sizeof x, "%s", c->cur);
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        const char *in[1] = {k};
        int nin = 0;
        if (steps[i].k != 0) {
            snprintf(k, sizeof k, "%d.%s.k", c->layer, steps[i].what);
            const nb_real v = (nb_real)steps[i].k;
            onnx_w_initializer(&c->graph, k, 0, NULL, &v);
            nin = 1;
        } else if (i == 3) { /* x * (erf + 1): the input again */
            in[0] = x;
            nin = 1;
        }
        onnx_w_node n;
        node_begin(c, &n, steps[i].op, steps[i].what, nin, in);
        onnx_w_node_end(&n, &c->graph);
    }
    return NB_OK;
}

/* The activation after a layer (or as one): Relu, Softmax(axis), ... */
static nb_status put_activation(exp_ctx *c, nb_activation a)
{
    static const char *ops[] = {[NB_ACT_RELU] = "Relu", [NB_ACT_SIGMOID] = "Sigmoid", [NB_ACT_TANH] = "Tanh",
                                [NB_ACT_SOFTMAX] = "Softmax", [NB_ACT_LOG_SOFTMAX] = "LogSoftmax",
                                [NB_ACT_LEAKY_RELU] = "LeakyRelu", [NB_ACT_ELU] = "Elu", [NB_ACT_SOFTPLUS] = "Softplus"};
    if (a == NB_ACT_NONE) return NB_OK;
    if (a == NB_ACT_GELU) return put_gelu(c);
    if ((unsigned)a >= sizeof ops / sizeof ops[0] || !ops[a])
        return nb_fail(NB_ERR_ARG, "onnx export: layer %d: activation %s has no operator in ONNX opset %d", c->layer,
                       nb_activation_name(a), OPSET);
    onnx_w_node n;
    node_begin(c, &n, ops[a], nb_activation_name(a), 0, NULL);
    if (a == NB_ACT_SOFTMAX || a == NB_ACT_LOG_SOFTMAX) /* nabla's: over the last nabla axis (channels) */
        onnx_w_attr_int(&n, "axis", c->rank == 4 && c->nchw ? 1 : c->rank - 1);
    if (a == NB_ACT_LEAKY_RELU) onnx_w_attr_float(&n, "alpha", 0.01f); /* nb_leaky_relu(x, 0.01) */
    if (a == NB_ACT_ELU) onnx_w_attr_float(&n, "alpha", 1.0f);
    onnx_w_node_end(&n, &c->graph);
    return NB_OK;
}

static nb_node *param(exp_ctx *c, const char *what)
{
    char name[64];
    snprintf(name, sizeof name, "%d.%s", c->layer, what);
    return nb_model_find_param(c->m, name);
}

static nb_status put_dense(exp_ctx *c, const nb_layer_spec *l)
{
    nb_node *k = param(c, "kernel"), *b = param(c, "bias");
    if (!k || !b) return nb_fail(NB_ERR_ARG, "onnx export: layer %d: dense without kernel and bias", c->layer);
    const nb_tensor *kv = nb_value(k), *bv = nb_value(b);
    onnx_w_initializer(&c->graph, nb_node_name(k), 2, kv->shape, kv->data); /* Gemm's B: (in, out) */
    onnx_w_initializer(&c->graph, nb_node_name(b), 1, bv->shape, bv->data);
    const char *in[2] = {nb_node_name(k), nb_node_name(b)};
    onnx_w_node n;
    node_begin(c, &n, "Gemm", "gemm", 2, in);
    onnx_w_node_end(&n, &c->graph);
    return put_activation(c, l->act);
}

/* ONNX pads [top, left, bottom, right] of a conv or pool window by
 * TensorFlow's rule (what nabla computes), for the current input; explicit
 * padding P is [P, P, P, P]. */
static void window_pads(const exp_ctx *c, int f, int s, int d, nb_padding pad, int explicit_pad, int64_t pads[4])
{
    for (int ax = 0; ax < 2 && pad == NB_PAD_EXPLICIT; ax++)
        pads[ax] = pads[2 + ax] = explicit_pad;
    for (int ax = 0; ax < 2 && pad != NB_PAD_EXPLICIT; ax++) {
        const int64_t in = c->shape[1 + ax];
        int before = 0;
        const int64_t out = nb_window_dim(in, f, s, d, pad, &before);
        int64_t total = (out - 1) * s + (int64_t)(f - 1) * d + 1 - in;
        if (pad == NB_PAD_VALID || total < 0) total = 0, before = 0;
        pads[ax] = before;
        pads[2 + ax] = total - before;
    }
}

static nb_status put_conv(exp_ctx *c, const nb_layer_spec *l)
{
    nb_node *k = param(c, "kernel"), *b = param(c, "bias");
    if (!k || !b) return nb_fail(NB_ERR_ARG, "onnx export: layer %d: conv2d without kernel and bias", c->layer);
    const nb_tensor *kv = nb_value(k), *bv = nb_value(b);
    const int64_t F = kv->shape[0], C = kv->shape[2], O = kv->shape[3];
    const int64_t dims[4] = {O, C, F, F};
    nb_real *w = malloc(sizeof(nb_real) * (size_t)kv->size);
    if (!w) return nb_fail(NB_ERR_NOMEM, "onnx export: out of memory");
    for (int64_t p = 0; p < F; p++) /* W[o,c,p,q] = k[p,q,c,o] */
        for (int64_t q = 0; q < F; q++)
            for (int64_t ch = 0; ch < C; ch++)
                for (int64_t o = 0; o < O; o++)
                    w[((o * C + ch) * F + p) * F + q] = kv->data[((p * F + q) * C + ch) * O + o];
    onnx_w_initializer(&c->graph, nb_node_name(k), 4, dims, w);
    free(w);
    onnx_w_initializer(&c->graph, nb_node_name(b), 1, bv->shape, bv->data);
    if (!c->nchw) put_transpose(c, 1);
    const int s = l->stride ? l->stride : 1, d = l->dilation ? l->dilation : 1;
    int64_t pads[4], ks[2] = {F, F}, ss[2] = {s, s}, ds[2] = {d, d};
    window_pads(c, l->size, s, d, l->padding, l->pad, pads);
    const char *in[2] = {nb_node_name(k), nb_node_name(b)};
    onnx_w_node n;
    node_begin(c, &n, "Conv", "conv", 2, in);
    onnx_w_attr_ints(&n, "kernel_shape", 2, ks);
    onnx_w_attr_ints(&n, "strides", 2, ss);
    onnx_w_attr_ints(&n, "dilations", 2, ds);
    onnx_w_attr_ints(&n, "pads", 4, pads);
    onnx_w_node_end(&n, &c->graph);
    return put_activation(c, l->act);
}

/* MaxPool / AveragePool: padded positions take no part in either, as in
 * nabla (AveragePool's count_include_pad = 0, its default). */
static nb_status put_pool(exp_ctx *c, const nb_layer_spec *l)
{
    if (!c->nchw) put_transpose(c, 1);
    const int s = l->stride ? l->stride : l->size;
    int64_t pads[4], ks[2] = {l->size, l->size}, ss[2] = {s, s};
    window_pads(c, l->size, s, 1, l->padding, 0, pads);
    onnx_w_node n;
    const int max = l->kind == NB_LAYER_MAXPOOL;
    node_begin(c, &n, max ? "MaxPool" : "AveragePool", max ? "maxpool" : "avgpool", 0, NULL);
    onnx_w_attr_ints(&n, "kernel_shape", 2, ks);
    onnx_w_attr_ints(&n, "strides", 2, ss);
    onnx_w_attr_ints(&n, "pads", 4, pads);
    onnx_w_node_end(&n, &c->graph);
    return NB_OK;
}

/* `from NAME`: the named output becomes the current tensor (no node). */
static nb_status put_from(exp_ctx *c, const nb_layer_spec *l)
{
    const exp_val *v = find_val(c, l->refs[0]);
    if (!v) return NB_ERR_ARG;
    load_val(c, v);
    return NB_OK;
}

/* Node op on the current tensor and the named outputs of l, each brought
 * to the current tensor's layout first (a Transpose of its own). */
static nb_status put_joined(exp_ctx *c, const nb_layer_spec *l, const char *op, const char *what, int axis)
{
    char names[1 + NB_SPEC_MAX_REFS][64];
    const char *in[1 + NB_SPEC_MAX_REFS];
    snprintf(names[0], sizeof names[0], "%s", c->cur);
    for (int i = 0; i < l->nrefs; i++) {
        const exp_val *v = find_val(c, l->refs[i]);
        if (!v) return NB_ERR_ARG;
        snprintf(names[1 + i], sizeof names[1 + i], "%s", v->name);
        int again = -1; /* the same name twice: one Transpose */
        for (int j = 0; j < i; j++)
            if (!strcmp(l->refs[j], l->refs[i])) again = j;
        if (again >= 0) {
            memcpy(names[1 + i], names[1 + again], sizeof names[0]); /* again < i: other rows */
        } else if (v->rank == 4 && v->nchw != c->nchw) {
            static const int64_t to_c[4] = {0, 3, 1, 2}, to_l[4] = {0, 2, 3, 1};
            const char *src[1] = {v->name};
            snprintf(names[1 + i], sizeof names[1 + i], "%d.%s.%s", c->layer, l->refs[i],
                     c->nchw ? "to_nchw" : "to_nhwc");
            onnx_w_node t;
            onnx_w_node_begin(&t, "Transpose", names[1 + i], 1, src, names[1 + i]);
            onnx_w_attr_ints(&t, "perm", 4, c->nchw ? to_c : to_l);
            onnx_w_node_end(&t, &c->graph);
        }
    }
    for (int i = 0; i <= l->nrefs; i++)
        in[i] = names[i];
    char name[64];
    snprintf(name, sizeof name, "%d.%s", c->layer, what);
    onnx_w_node n;
    onnx_w_node_begin(&n, op, name, 1 + l->nrefs, in, name);
    if (axis >= 0) onnx_w_attr_int(&n, "axis", axis);
    onnx_w_node_end(&n, &c->graph);
    snprintf(c->cur, sizeof c->cur, "%s", name);
    return NB_OK;
}

/* add: Add of two tensors, Sum of more (one node, so the importer gives
 * back one entry). */
static nb_status put_add(exp_ctx *c, const nb_layer_spec *l)
{
    return put_joined(c, l, l->nrefs == 1 ? "Add" : "Sum", "add", -1);
}

/* concat: Concat on the channel axis, 1 in NCHW, the last one otherwise. */
static nb_status put_concat(exp_ctx *c, const nb_layer_spec *l)
{
    return put_joined(c, l, "Concat", "concat", c->rank == 4 && c->nchw ? 1 : c->rank - 1);
}

/* globalavgpool: GlobalAveragePool (NCHW, to (N, C, 1, 1)), then Flatten
 * to nabla's (N, C). */
static nb_status put_gap(exp_ctx *c, const nb_layer_spec *l)
{
    if (c->rank != 4)
        return nb_fail(NB_ERR_ARG, "onnx export: layer %d: globalavgpool of a rank-%d tensor", c->layer, c->rank);
    if (!c->nchw) put_transpose(c, 1);
    onnx_w_node n;
    node_begin(c, &n, "GlobalAveragePool", "globalavgpool_nc11", 0, NULL);
    onnx_w_node_end(&n, &c->graph);
    node_begin(c, &n, "Flatten", "globalavgpool", 0, NULL);
    onnx_w_attr_int(&n, "axis", 1);
    onnx_w_node_end(&n, &c->graph);
    c->nchw = 0;
    return NB_OK;
}

static nb_status put_flatten(exp_ctx *c, const nb_layer_spec *l)
{
    if (c->rank == 4 && c->nchw) put_transpose(c, 0); /* flatten in nabla's (h, w, c) order */
    onnx_w_node n;
    node_begin(c, &n, "Flatten", "flatten", 0, NULL);
    onnx_w_attr_int(&n, "axis", 1);
    onnx_w_node_end(&n, &c->graph);
    return NB_OK;
}

/* Dropout (an identity in inference): its ratio as the optional input. */
static nb_status put_dropout(exp_ctx *c, const nb_layer_spec *l)
{
    char ratio[64];
    snprintf(ratio, sizeof ratio, "%d.ratio", c->layer);
    const nb_real r = (nb_real)l->rate;
    onnx_w_initializer(&c->graph, ratio, 0, NULL, &r);
    const char *in[1] = {ratio};
    onnx_w_node n;
    node_begin(c, &n, "Dropout", "dropout", 1, in);
    onnx_w_node_end(&n, &c->graph);
    return NB_OK;
}

/* An activation layer; a linear one (the identity) as an Identity node, so
 * that importing gives the layer back. */
static nb_status put_act_layer(exp_ctx *c, const nb_layer_spec *l)
{
    if (l->act != NB_ACT_NONE) return put_activation(c, l->act);
    onnx_w_node n;
    node_begin(c, &n, "Identity", "linear", 0, NULL);
    onnx_w_node_end(&n, &c->graph);
    return NB_OK;
}

/* batchnorm (inference form): ONNX BatchNormalization, inputs X, scale,
 * B, input_mean, input_var (gamma, beta, moving_mean, moving_variance),
 *   y = scale (x - mean) / sqrt(var + epsilon) + B   per channel of axis 1.
 * nabla normalises the last axis, so a rank-4 tensor goes in as NCHW (a
 * Transpose first if it lies as NHWC) and a (N, C) one as it is; ONNX has
 * no form for a rank-3 one. ONNX's momentum weighs the old statistic,
 * nabla's (PyTorch's) the new one: momentum = 1 - nabla's. */
static nb_status put_batchnorm(exp_ctx *c, const nb_layer_spec *l)
{
    static const char *names[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
    if (c->rank != 2 && c->rank != 4)
        return nb_fail(NB_ERR_ARG,
                       "onnx export: layer %d: batchnorm of a rank-%d tensor: ONNX's BatchNormalization normalises "
                       "axis 1, nabla the last one; they agree only for (N, C) and image tensors (flatten first)",
                       c->layer, c->rank);
    const char *in[4];
    for (int i = 0; i < 4; i++) {
        nb_node *p = param(c, names[i]);
        if (!p) return nb_fail(NB_ERR_ARG, "onnx export: layer %d: batchnorm without %s", c->layer, names[i]);
        onnx_w_initializer(&c->graph, nb_node_name(p), 1, nb_value(p)->shape, nb_value(p)->data);
        in[i] = nb_node_name(p);
    }
    if (c->rank == 4 && !c->nchw) put_transpose(c, 1);
    onnx_w_node n;
    node_begin(c, &n, "BatchNormalization", "batchnorm", 4, in);
    onnx_w_attr_float(&n, "epsilon", (float)(l->eps ? l->eps : 1e-5));
    onnx_w_attr_float(&n, "momentum", (float)(1 - (l->momentum ? l->momentum : 0.1)));
    onnx_w_node_end(&n, &c->graph);
    return NB_OK;
}

/* layernorm: ONNX LayerNormalization (opset 17) over axis -1, inputs X,
 * Scale, B (gamma, beta): y = scale (x - mean) / sqrt(var + epsilon) + B
 * over the last axis, which must be nabla's (the channels): an image
 * tensor lying as NCHW is brought to NHWC first. */
static nb_status put_layernorm(exp_ctx *c, const nb_layer_spec *l)
{
    nb_node *g = param(c, "gamma"), *b = param(c, "beta");
    if (!g || !b) return nb_fail(NB_ERR_ARG, "onnx export: layer %d: layernorm without gamma and beta", c->layer);
    onnx_w_initializer(&c->graph, nb_node_name(g), 1, nb_value(g)->shape, nb_value(g)->data);
    onnx_w_initializer(&c->graph, nb_node_name(b), 1, nb_value(b)->shape, nb_value(b)->data);
    if (c->rank == 4 && c->nchw) put_transpose(c, 0);
    const char *in[2] = {nb_node_name(g), nb_node_name(b)};
    onnx_w_node n;
    node_begin(c, &n, "LayerNormalization", "layernorm", 2, in);
    onnx_w_attr_int(&n, "axis", -1);
    onnx_w_attr_float(&n, "epsilon", (float)(l->eps ? l->eps : 1e-5));
    onnx_w_node_end(&n, &c->graph);
    return NB_OK;
}

/* One entry per nb_layer_kind. */
static nb_status (*const layer_writers[])(exp_ctx *, const nb_layer_spec *) = {
    [NB_LAYER_DENSE] = put_dense,
    [NB_LAYER_CONV2D] = put_conv,
    [NB_LAYER_MAXPOOL] = put_pool,
    [NB_LAYER_AVGPOOL] = put_pool,
    [NB_LAYER_FLATTEN] = put_flatten,
    [NB_LAYER_DROPOUT] = put_dropout,
    [NB_LAYER_ACTIVATION] = put_act_layer,
    [NB_LAYER_GLOBALAVGPOOL] = put_gap,
    [NB_LAYER_FROM] = put_from,
    [NB_LAYER_ADD] = put_add,
    [NB_LAYER_CONCAT] = put_concat,
    [NB_LAYER_BATCHNORM] = put_batchnorm,
    [NB_LAYER_LAYERNORM] = put_layernorm,
};

/* The graph's input, every layer, and the output "output". */
static nb_status put_graph(exp_ctx *c, int want_nchw)
{
    int64_t dims[NB_MAX_RANK];
    c->rank = 1 + nb_model_input_shape(c->m, c->shape + 1);
    c->shape[0] = 1;
    c->nchw = c->rank == 4 && want_nchw;
    memcpy(dims, c->shape, sizeof dims);
    if (c->nchw) dims[1] = c->shape[3], dims[2] = c->shape[1], dims[3] = c->shape[2];
    onnx_w_value(&c->graph, 11, "input", c->rank, dims);
    snprintf(c->cur, sizeof c->cur, "input");
    save_val(c, &c->input);
    const int nl = nb_model_num_layers(c->m);
    if (!(c->named = calloc((size_t)nl + 1, sizeof *c->named)))
        return nb_fail(NB_ERR_NOMEM, "onnx export: out of memory");
    nb_status s = NB_OK;
    for (int i = 0; i < nl && !s; i++) {
        const nb_layer_spec *l = nb_model_layer(c->m, i);
        c->layer = i;
        if ((unsigned)l->kind >= sizeof layer_writers / sizeof layer_writers[0] || !layer_writers[l->kind])
            return nb_fail(NB_ERR_ARG, "onnx export: layer %d: no ONNX writer for layer kind %s", i,
                           nb_layer_kind_name(l->kind));
        s = layer_writers[l->kind](c, l);
        c->rank = 1 + nb_model_layer_shape(c->m, i, c->shape + 1);
        save_val(c, &c->named[i]);
    }
    if (s) return s;
    c->layer = nb_model_num_layers(c->m);
    if (c->rank == 4 && c->nchw != want_nchw) put_transpose(c, want_nchw);
    const char *in[1] = {c->cur};
    onnx_w_node n;
    onnx_w_node_begin(&n, "Identity", "output", 1, in, "output");
    onnx_w_node_end(&n, &c->graph);
    memcpy(dims, c->shape, sizeof dims);
    if (c->rank == 4 && want_nchw) dims[1] = c->shape[3], dims[2] = c->shape[1], dims[3] = c->shape[2];
    onnx_w_value(&c->graph, 12, "output", c->rank, dims);
    nb_pb_put_string(&c->graph, 2, "nabla");
    return NB_OK;
}

static void put_meta(nb_pb_writer *w, const char *key, const char *value)
{
    nb_pb_writer e = {0};
    nb_pb_put_string(&e, 1, key);
    nb_pb_put_string(&e, 2, value);
    nb_pb_put_message(w, 14, &e);
}

nb_status nb_onnx_serialize(nb_model *m, unsigned flags, void **data, size_t *len)
{
    if (!m || !data || !len) return nb_fail(NB_ERR_ARG, "onnx export: NULL argument");
    if (flags & ~(unsigned)NB_ONNX_NCHW) return nb_fail(NB_ERR_ARG, "onnx export: unknown flags 0x%x", flags);
    *data = NULL, *len = 0;
    exp_ctx c = {.m = m};
    nb_status s = put_graph(&c, (flags & NB_ONNX_NCHW) != 0);
    free(c.named);
    if (s) {
        nb_pb_writer_free(&c.graph);
        return s;
    }
    nb_pb_writer w = {0}, opset = {0};
    const int opset_version = nb_onnx_opset(m);
    nb_pb_put_varint(&w, 1, opset_version == OPSET ? IR_VERSION : IR_VERSION_17);
    nb_pb_put_string(&w, 2, "nabla");
    nb_pb_put_string(&w, 3, nb_version());
    nb_pb_put_message(&w, 7, &c.graph);
    nb_pb_put_string(&opset, 1, "");
    nb_pb_put_varint(&opset, 2, (uint64_t)opset_version);
    nb_pb_put_message(&w, 8, &opset);
    char input[256];
    int64_t shape[NB_MAX_RANK];
    const int rank = nb_model_input_shape(m, shape);
    size_t u = 0;
    for (int d = 0; d < rank && u < sizeof input; d++)
        u += (size_t)snprintf(input + u, sizeof input - u, d ? ",%lld" : "%lld", (long long)shape[d]);
    put_meta(&w, "nabla.spec", nb_model_spec(m));
    put_meta(&w, "nabla.input", input);
    put_meta(&w, "nabla.format", "1");
    put_meta(&w, "nabla.layout", flags & NB_ONNX_NCHW ? "nchw" : "nhwc");
    if (w.failed) {
        nb_pb_writer_free(&w);
        return nb_fail(NB_ERR_NOMEM, "onnx export: out of memory");
    }
    *data = w.data, *len = w.len;
    return NB_OK;
}

nb_status nb_onnx_save(nb_model *m, const char *path, unsigned flags)
{
    if (!path) return nb_fail(NB_ERR_ARG, "onnx export: NULL path");
    void *data;
    size_t len;
    nb_status s = nb_onnx_serialize(m, flags, &data, &len);
    if (!s) s = nb_write_file_atomic(path, data, len);
    free(data);
    return s;
}
