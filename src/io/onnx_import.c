/* ONNX -> nabla model. Nodes are lowered in the file's (topological)
 * order, each to nabla entries on the model's current tensor; constants
 * (initializers, Constant nodes) become weights. One table entry per ONNX
 * operator lowers it (ops[] below; a new operator adds one entry); an
 * operator, attribute or attribute value outside the table is refused,
 * naming the node and what is supported.
 *
 * Graphs. Every lowered tensor is recorded with the entry whose output it
 * is (imp_val). A node whose input is not the last entry's output gets a
 * `from NAME` entry first; Add/Sum become `add NAME...` on whichever input
 * is current, Concat `concat NAME...` on its first input. Which entries need
 * a name (`ENTRY as NAME`) is known only once a later node reads them, and a
 * name changes what the model builder may fuse, so the import runs twice:
 * pass 1 names every entry and notes the ones read by name, pass 2 builds
 * the model naming only those (the metadata's names for a nabla export,
 * else t<entry>). A tensor read by several nodes is never fused away (an
 * activation into its Conv, an Add into its MatMul). The graph's output
 * must be the last entry's; a branch nobody reads is refused.
 *
 * Layout. A rank-4 tensor lies as NCHW or NHWC in the ONNX graph (the graph
 * input is NHWC when its first node is Transpose(0,3,1,2), else NCHW); nabla
 * computes in NHWC. So: conv weights W[o,c,p,q] -> k[p,q,c,o]; a Transpose
 * that changes the layout adds no layer; a Flatten of an NCHW tensor
 * flattens in (c, h, w) order where nabla's flatten gives (h, w, c), so the
 * rows of the next dense kernel are permuted: nabla row r = (h*W + w)*C + c
 * takes ONNX row (c*H + h)*W + w (elementwise layers in between commute with
 * the permutation; a BatchNormalization or LayerNormalization in between
 * takes its per-feature values through it). Softmax must run over the
 * channel axis (nabla's last).
 *
 * An activation right after a Conv, Gemm or MatMul(+Add) becomes that
 * layer's activation ("conv2d 32 3 relu") unless the spec in the file's
 * metadata (a nabla export) has it as a layer of its own; a layer equal to
 * the metadata's in effect takes the metadata's spelling, so nabla -> ONNX
 * -> nabla gives back the same spec. */
#include "onnx.h"

#include "../kernels/kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { L_PLAIN = 0, L_NCHW, L_NHWC };
enum { NB_MODEL_MAX_LAYERS_IMPORT = 1024 + 1 }; /* nb_model's limit (src/nn), one to spare */

/* What an ONNX tensor is in the model being built: the output of entry
 * `layer` (-1: the model's input) seen with this rank, dims and layout (a
 * Transpose gives the same output another layout). */
typedef struct imp_val {
    const char *name;
    int layer;
    int rank, layout;
    int permuted; /* a Flatten of an NCHW tensor: (c, h, w) in ONNX, (h, w, c) in nabla */
    int64_t dims[NB_MAX_RANK];
} imp_val;

typedef struct imp_ctx {
    const onnx_model *om;
    const onnx_graph *g;
    nb_model *m;
    const char *cur;            /* the tensor being lowered (a node's input, then its output) */
    int cur_layer;              /* the entry whose output it is (-1: the input) */
    int rank;                   /* its ONNX rank (batch included) */
    int64_t dims[NB_MAX_RANK];  /* its ONNX dims, dims[0] = 1 */
    int layout;                 /* of a rank-4 current tensor */
    imp_val *vals;              /* every tensor lowered so far (one per node, and the input) */
    int nvals;
    int pass;                   /* 1: every entry named; 2: only those referenced in pass 1 */
    char *referenced;           /* per entry: read by name (from pass 1) */
    int64_t *perm;              /* pending row permutation of the next dense kernel, or NULL */
    int64_t nperm;
    int node;                   /* the node being lowered */
    char *done;                 /* per node: lowered (fused into an earlier one or a Constant) */
    nb_layer_spec *hint;        /* the metadata's spec, or NULL */
    int nhint;
} imp_ctx;

/* How a node's first input becomes the tensor it is lowered on. */
typedef enum {
    IN_CURRENT = 0, /* the model's current tensor: a `from NAME` entry first if it is another entry's output */
    IN_VIEW,        /* only viewed (a layout change, an identity): no entry, no `from` */
    IN_SELF,        /* the lowering picks among its inputs (Add, Sum, Concat) */
} onnx_inputs;

typedef struct onnx_op {
    const char *type;
    nb_status (*lower)(imp_ctx *c, const onnx_node *n);
    const char *attrs[8]; /* the attributes it reads; any other is refused */
    onnx_inputs inputs;
} onnx_op;

static const onnx_op *find_op(const char *type);
static nb_status lower_gelu(imp_ctx *c, const onnx_node *n);

/* "onnx import: node 3 'Conv_0' (Conv): <fmt>". */
static nb_status node_fail(const imp_ctx *c, const onnx_node *n, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char name[108], op[68]; /* as messages quote a file's text (nb_escape_text) */
    return nb_fail(NB_ERR_FORMAT, "onnx import: node %d '%s' (%s): %s", c->node, nb_escape_text(name, sizeof name, n->name, 100),
                   nb_escape_text(op, sizeof op, n->op_type, 60), msg);
}

/* A constant by name: an initializer or a Constant node's value. */
static const onnx_tensor *find_const(const imp_ctx *c, const char *name)
{
    for (int i = c->g->ninits - 1; i >= 0; i--)
        if (!strcmp(c->g->inits[i].name, name)) return &c->g->inits[i];
    for (int i = 0; i < c->g->nnodes; i++) {
        const onnx_node *n = &c->g->nodes[i];
        if (n->nout == 1 && !strcmp(n->out[0], name) && !strcmp(n->op_type, "Constant")) {
            const onnx_attr *a = onnx_node_attr(n, "value");
            return a && a->type == ONNX_ATTR_TENSOR ? a->t : NULL;
        }
    }
    return NULL;
}

static int64_t attr_int(const onnx_node *n, const char *name, int64_t dflt)
{
    const onnx_attr *a = onnx_node_attr(n, name);
    return a && a->type == ONNX_ATTR_INT ? a->i : dflt;
}

/* A 2-element ints attribute with equal values (square windows), into *v;
 * dflt when absent. */
static nb_status attr_square(const imp_ctx *c, const onnx_node *n, const char *name, int64_t dflt, int64_t lo,
                             int64_t *v)
{
    const onnx_attr *a = onnx_node_attr(n, name);
    *v = dflt;
    if (!a) return NB_OK;
    if (a->type != ONNX_ATTR_INTS || a->nints != 2 || a->ints[0] != a->ints[1] || a->ints[0] < lo || a->ints[0] > 1024)
        return node_fail(c, n, "%s must be two equal numbers in %lld..1024 (nabla's windows are square)", name,
                         (long long)lo);
    *v = a->ints[0];
    return NB_OK;
}

/* The node's output becomes the current tensor. */
static nb_status advance(imp_ctx *c, const onnx_node *n)
{
    if (n->nout < 1 || !n->out[0][0]) return node_fail(c, n, "the node has no output");
    c->cur = n->out[0];
    return NB_OK;
}

/* ------------------------------------------------------- tensors, names */

/* The lowered tensor called name, or NULL. */
static const imp_val *find_val(const imp_ctx *c, const char *name)
{
    for (int i = c->nvals - 1; i >= 0; i--)
        if (!strcmp(c->vals[i].name, name)) return &c->vals[i];
    return NULL;
}

/* How many node inputs and graph outputs read tensor name. */
static int uses(const imp_ctx *c, const char *name)
{
    int k = 0;
    for (int i = 0; i < c->g->nnodes; i++)
        for (int j = 0; j < c->g->nodes[i].nin; j++)
            k += !strcmp(c->g->nodes[i].in[j], name);
    for (int i = 0; i < c->g->noutputs; i++)
        k += !strcmp(c->g->outputs[i].name, name);
    return k;
}

static void set_view(imp_ctx *c, const imp_val *v)
{
    c->cur = v->name;
    c->cur_layer = v->layer;
    c->rank = v->rank, c->layout = v->layout;
    memcpy(c->dims, v->dims, sizeof c->dims);
}

/* Records the current tensor (c->cur) as the output of c->cur_layer. */
static void record_current(imp_ctx *c)
{
    imp_val *v = &c->vals[c->nvals++];
    v->name = c->cur;
    v->layer = c->cur_layer;
    v->rank = c->rank, v->layout = c->layout;
    v->permuted = c->perm != NULL;
    memcpy(v->dims, c->dims, sizeof v->dims);
}

/* A Flatten of an NCHW tensor may be read only by the Gemm or MatMul that
 * applies its row permutation (through activations), nothing else. */
static nb_status check_permuted(const imp_ctx *c, const onnx_node *n, const imp_val *v)
{
    if (!v->permuted || (c->perm && v->layer == nb_model_num_layers(c->m) - 1)) return NB_OK;
    return node_fail(c, n,
                     "reads '%s', a Flatten of an NCHW tensor, after the Gemm or MatMul it feeds: nabla "
                     "flattens in (h, w, c) order, ONNX in (c, h, w); only that Gemm or MatMul may read it",
                     NB_QUOTED(v->name));
}

/* A name for entry idx's output: the metadata's (a nabla export) when the
 * entry is the metadata's, else "t<idx>" (with '_' appended while the
 * metadata uses it). */
static void entry_default_name(const imp_ctx *c, int idx, char out[NB_SPEC_NAME_MAX])
{
    snprintf(out, NB_SPEC_NAME_MAX, "t%d", idx);
    for (int again = 1; again;) {
        again = 0;
        for (int i = 0; i < c->nhint && !again; i++)
            again = !strcmp(c->hint[i].name, out);
        if (again && strlen(out) + 1 < NB_SPEC_NAME_MAX)
            strcat(out, "_");
        else
            again = 0;
    }
}

/* The name by which a later entry reads entry idx's output ("input" for
 * -1); pass 1 marks the entry as referenced. */
static nb_status entry_name(imp_ctx *c, const onnx_node *n, int idx, char out[NB_SPEC_NAME_MAX])
{
    if (idx < 0) return snprintf(out, NB_SPEC_NAME_MAX, "input"), NB_OK;
    const char *name = nb_model_layer(c->m, idx)->name;
    if (!name[0]) return node_fail(c, n, "internal: entry %d was not named in the second pass", idx);
    if (c->pass == 1) c->referenced[idx] = 1;
    snprintf(out, NB_SPEC_NAME_MAX, "%s", name);
    return NB_OK;
}

/* Whether two eps or momentum values (0: dflt) are equal within float
 * rounding (ONNX stores them as floats). */
static int same_real(double a, double b, double dflt)
{
    a = a ? a : dflt, b = b ? b : dflt;
    return fabs(a - b) <= 1e-6 * fabs(b);
}

/* Appends layer l to the model (the metadata's spelling when it means the
 * same), fails with nabla's message on a shape mismatch, and updates the
 * current ONNX dims from nabla's output shape. */

static int same_layer(const nb_layer_spec *a, const nb_layer_spec *b)
{
    const int conv = a->kind == NB_LAYER_CONV2D, pool = a->kind == NB_LAYER_MAXPOOL || a->kind == NB_LAYER_AVGPOOL;
    const int sa = a->stride ? a->stride : conv ? 1 : a->size, sb = b->stride ? b->stride : conv ? 1 : b->size;
    int refs = a->nrefs == b->nrefs;
    for (int i = 0; refs && i < a->nrefs; i++)
        refs = !strcmp(a->refs[i], b->refs[i]);
    return a->kind == b->kind && a->units == b->units && a->size == b->size && a->act == b->act &&
           a->padding == b->padding && a->pad == b->pad && (!(conv || pool) || sa == sb) &&
           (a->dilation ? a->dilation : 1) == (b->dilation ? b->dilation : 1) && fabs(a->rate - b->rate) < 1e-7 && refs &&
           same_real(a->eps, b->eps, 1e-5) && same_real(a->momentum, b->momentum, 0.1);
}

/* The entry's name: the metadata's when it is the metadata's entry, else
 * in pass 1 always (so any may be read) and in pass 2 only if read. */
static void name_entry(const imp_ctx *c, int idx, int from_hint, nb_layer_spec *l)
{
    if (from_hint && l->name[0]) return;
    l->name[0] = 0;
    if (c->pass == 1 || c->referenced[idx]) entry_default_name(c, idx, l->name);
}

static nb_status add_layer(imp_ctx *c, const onnx_node *n, nb_layer_spec l)
{
    const int idx = nb_model_num_layers(c->m);
    const int from_hint = c->hint && idx < c->nhint && same_layer(&l, &c->hint[idx]);
    if (from_hint) l = c->hint[idx];
    name_entry(c, idx, from_hint, &l);
    if (nb_model_add(c->m, &l)) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", nb_last_error());
        return node_fail(c, n, "%s", msg);
    }
    int64_t shape[NB_MAX_RANK];
    const int r = nb_model_layer_shape(c->m, idx, shape);
    c->cur_layer = idx;
    c->rank = r + 1;
    c->dims[0] = 1;
    if (c->rank == 4 && c->layout == L_NCHW) c->dims[1] = shape[2], c->dims[2] = shape[0], c->dims[3] = shape[1];
    else memcpy(c->dims + 1, shape, sizeof(int64_t) * (size_t)r);
    return NB_OK;
}

/* Makes tensor v the model's current one: a `from NAME` entry when v is
 * not the last entry's output (the last one must then be read by name
 * later, or it would be a dead branch). */
static nb_status make_current(imp_ctx *c, const onnx_node *n, const imp_val *v)
{
    const int last = nb_model_num_layers(c->m) - 1;
    if (v->layer != last) {
        if (c->perm)
            return node_fail(c, n,
                             "reads '%s' while a Flatten of an NCHW tensor waits for the Gemm or MatMul "
                             "after it; nabla needs the Flatten's consumer right after it",
                             NB_QUOTED(v->name));
        if (last >= 0 && c->pass == 2 && !c->referenced[last]) {
            const char *t = "";
            for (int i = c->nvals - 1; i >= 0 && !t[0]; i--)
                if (c->vals[i].layer == last) t = c->vals[i].name;
            return node_fail(c, n,
                             "the tensor '%s' before it (entry %d, %s) is read by no later node and is not "
                             "the graph's output: remove the dead branch",
                             NB_QUOTED(t), last, nb_layer_kind_name(nb_model_layer(c->m, last)->kind));
        }
        nb_layer_spec f = {.kind = NB_LAYER_FROM, .nrefs = 1};
        nb_status s = entry_name(c, n, v->layer, f.refs[0]);
        c->layout = v->layout;
        if (!s) s = add_layer(c, n, f);
        if (s) return s;
    }
    const int at = nb_model_num_layers(c->m) - 1;
    set_view(c, v);
    c->cur_layer = at;
    return NB_OK;
}

/* Copies constant t (count values) into parameter "<layer>.<what>",
 * through map (nabla index -> ONNX index) when given. */
static nb_status set_param(imp_ctx *c, const onnx_node *n, const char *what, const nb_real *src)
{
    char name[64];
    snprintf(name, sizeof name, "%d.%s", nb_model_num_layers(c->m) - 1, what);
    nb_node *p = nb_model_find_param(c->m, name);
    if (!p) return node_fail(c, n, "the layer has no parameter %s", name);
    nb_tensor *v = nb_value(p);
    memcpy(v->data, src, sizeof(nb_real) * (size_t)v->size);
    return NB_OK;
}

/* The values of constant input i of n (expected count values), malloc'ed. */
static nb_status const_values(imp_ctx *c, const onnx_node *n, int i, int64_t count, nb_real **out)
{
    *out = NULL;
    const onnx_tensor *t = i < n->nin && n->in[i][0] ? find_const(c, n->in[i]) : NULL;
    if (!t)
        return node_fail(c, n, "input %d ('%s') must be a constant (an initializer)", i,
                         NB_QUOTED(i < n->nin ? n->in[i] : ""));
    if (t->count != count)
        return node_fail(c, n, "input %d ('%s') has %lld values, expected %lld", i, NB_QUOTED(n->in[i]), (long long)t->count,
                         (long long)count);
    nb_status s = onnx_tensor_check_reals(t);
    nb_real *v = s ? NULL : malloc(sizeof(nb_real) * (size_t)(count ? count : 1));
    if (!s && !v) return nb_fail(NB_ERR_NOMEM, "onnx import: out of memory");
    if (!s) s = onnx_tensor_reals(t, v);
    if (s) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", nb_last_error());
        free(v);
        return node_fail(c, n, "%s", msg);
    }
    *out = v;
    return NB_OK;
}

/* ------------------------------------------------------------ activations */

/* The nabla activation of an activation node, checking its attributes
 * (LeakyRelu's slope 0.01, Elu's alpha 1, Softmax over the channels). */
static nb_status activation_of(imp_ctx *c, const onnx_node *n, nb_activation *a)
{
    static const struct {
        const char *type;
        nb_activation act;
    } acts[] = {{"Relu", NB_ACT_RELU},       {"Sigmoid", NB_ACT_SIGMOID},         {"Tanh", NB_ACT_TANH},
                {"Softmax", NB_ACT_SOFTMAX}, {"LogSoftmax", NB_ACT_LOG_SOFTMAX}, {"LeakyRelu", NB_ACT_LEAKY_RELU},
                {"Elu", NB_ACT_ELU},         {"Softplus", NB_ACT_SOFTPLUS}};
    *a = NB_ACT_NONE;
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        if (!strcmp(n->op_type, acts[i].type)) *a = acts[i].act;
    const onnx_attr *alpha = onnx_node_attr(n, "alpha");
    if (*a == NB_ACT_LEAKY_RELU && alpha && fabsf(alpha->f - 0.01f) > 1e-7f)
        return node_fail(c, n, "alpha %g is not supported: nabla's leaky_relu has slope 0.01", alpha->f);
    if (*a == NB_ACT_ELU && alpha && alpha->f != 1.0f)
        return node_fail(c, n, "alpha %g is not supported: nabla's elu has alpha 1", alpha->f);
    if (*a == NB_ACT_SOFTMAX || *a == NB_ACT_LOG_SOFTMAX) {
        int64_t axis = attr_int(n, "axis", c->om->opset >= 13 ? -1 : 1);
        if (axis < 0) axis += c->rank;
        const int64_t want = c->rank == 4 && c->layout == L_NCHW ? 1 : c->rank - 1;
        if (axis != want || (c->om->opset < 13 && axis != c->rank - 1))
            return node_fail(c, n, "axis %lld of a rank-%d tensor: nabla's softmax runs over the channels (axis %lld)",
                             (long long)axis, c->rank, (long long)want);
    }
    return NB_OK;
}

static nb_status lower_activation(imp_ctx *c, const onnx_node *n)
{
    nb_layer_spec l = {.kind = NB_LAYER_ACTIVATION};
    nb_status s = activation_of(c, n, &l.act);
    if (!s) s = add_layer(c, n, l);
    return s ? s : advance(c, n);
}

/* The next node to lower after node i, if it reads tensor name. */
static int next_reader(const imp_ctx *c, int i, const char *name)
{
    for (int j = i + 1; j < c->g->nnodes; j++) {
        if (c->done[j]) continue;
        const onnx_node *n = &c->g->nodes[j];
        return n->nin >= 1 && !strcmp(n->in[0], name) ? j : -1;
    }
    return -1;
}

/* The next node to lower after node i, or -1. */
static int next_node(const imp_ctx *c, int i)
{
    for (int j = i + 1; j < c->g->nnodes; j++)
        if (!c->done[j]) return j;
    return -1;
}

/* Whether name is a scalar constant equal to v (within float rounding). */
static int scalar_is(const imp_ctx *c, const char *name, double v)
{
    const onnx_tensor *t = find_const(c, name);
    nb_real r;
    if (!t || t->count != 1 || onnx_tensor_check_reals(t) || onnx_tensor_reals(t, &r)) return 0;
    return fabs((double)r - v) <= 1e-6 * fabs(v);
}

/* Whether node j and the four after it compute GELU of x the way
 * torch.onnx.export writes it for opsets without Gelu:
 *   d = Div(x, sqrt 2); e = Erf(d); a = Add(e, 1); m = Mul(x, a); y = Mul(m, 0.5)
 * (either operand order of Add and Mul); nodes[] gets their indices. */
static int match_gelu(const imp_ctx *c, int j, const char *x, int nodes[5])
{
    static const char *ops[5] = {"Div", "Erf", "Add", "Mul", "Mul"};
    static const double k[5] = {1.4142135623730951, 0, 1, 0, 0.5};
    const char *prev = x;
    for (int i = 0; i < 5; i++, j = next_node(c, j)) {
        if (j < 0) return 0;
        const onnx_node *n = &c->g->nodes[j];
        if (strcmp(n->op_type, ops[i]) || n->nattrs || n->nout < 1 || !n->out[0][0] || n->nin != (i == 1 ? 1 : 2))
            return 0;
        const int at = !strcmp(n->in[0], prev) ? 0 : i != 0 && n->nin == 2 && !strcmp(n->in[1], prev) ? 1 : -1;
        if (at < 0) return 0;
        if (i == 3 && strcmp(n->in[1 - at], x)) return 0; /* x * (erf(.) + 1) */
        if (k[i] != 0 && !scalar_is(c, n->in[1 - at], k[i])) return 0;
        if (i < 4 && uses(c, n->out[0]) != 1) return 0; /* an intermediate read elsewhere too */
        nodes[i] = j;
        prev = n->out[0];
    }
    return 1;
}

/* Fuses an activation node reading the current tensor into layer l, unless
 * the metadata's spec has it as a layer of its own. */
static nb_status fuse_activation(imp_ctx *c, nb_layer_spec *l)
{
    const int j = next_reader(c, c->node, c->cur);
    const int once = uses(c, c->cur); /* 1, or 2 for GELU's Div and Mul: no other reader of the layer's own output */
    if (j < 0 || once > 2) return NB_OK;
    const onnx_node *n = &c->g->nodes[j];
    const onnx_op *op = find_op(n->op_type);
    int gelu[5];
    const int is_gelu = op && op->lower == lower_gelu && once == 2 && match_gelu(c, j, c->cur, gelu);
    if (!is_gelu && once != 1) return NB_OK;
    if (!is_gelu && (!op || op->lower != lower_activation || n->nout < 1 || !n->out[0][0])) return NB_OK;
    const int idx = nb_model_num_layers(c->m);
    if (c->hint && idx + 1 < c->nhint && c->hint[idx].kind == l->kind && c->hint[idx].act == NB_ACT_NONE &&
        c->hint[idx + 1].kind == NB_LAYER_ACTIVATION)
        return NB_OK;
    if (is_gelu) {
        for (int i = 0; i < 5; i++) c->done[gelu[i]] = 1;
        l->act = NB_ACT_GELU;
        c->cur = c->g->nodes[gelu[4]].out[0];
        return NB_OK;
    }
    const int saved = c->node;
    c->node = j;
    nb_status s = activation_of(c, n, &l->act);
    c->node = saved;
    if (s) return s;
    c->done[j] = 1;
    c->cur = n->out[0];
    return NB_OK;
}

/* A Div: only as the start of GELU's pattern (match_gelu), a gelu layer. */
static nb_status lower_gelu(imp_ctx *c, const onnx_node *n)
{
    int nodes[5];
    if (!match_gelu(c, c->node, c->cur, nodes))
        return node_fail(c, n, "Div is supported only as the start of GELU as torch.onnx.export writes it: "
                               "Mul(Mul(x, Add(Erf(Div(x, sqrt 2)), 1)), 0.5)");
    nb_layer_spec l = {.kind = NB_LAYER_ACTIVATION, .act = NB_ACT_GELU};
    nb_status s = add_layer(c, n, l);
    if (s) return s;
    for (int i = 1; i < 5; i++) c->done[nodes[i]] = 1;
    c->cur = c->g->nodes[nodes[4]].out[0];
    return NB_OK;
}

/* ----------------------------------------------------------------- layers */

/* A dense layer from a (in, out) or, transposed, (out, in) matrix B and a
 * bias (NULL: zeros); rows permuted by a pending flatten permutation. */
static nb_status dense_from(imp_ctx *c, const onnx_node *n, const nb_real *B, int trans, int64_t in, int64_t out,
                            const nb_real *bias)
{
    nb_layer_spec l = {.kind = NB_LAYER_DENSE, .units = (int)out};
    nb_status s = fuse_activation(c, &l);
    if (!s) s = add_layer(c, n, l);
    nb_real *k = s ? NULL : malloc(sizeof(nb_real) * (size_t)(in * out)), *b = NULL;
    if (!s && !k) s = nb_fail(NB_ERR_NOMEM, "onnx import: out of memory");
    if (!s && !bias && !(bias = b = calloc((size_t)out, sizeof(nb_real))))
        s = nb_fail(NB_ERR_NOMEM, "onnx import: out of memory");
    for (int64_t r = 0; !s && r < in; r++) {
        const int64_t src = c->perm ? c->perm[r] : r;
        for (int64_t o = 0; o < out; o++) k[r * out + o] = trans ? B[o * in + src] : B[src * out + o];
    }
    if (!s) s = set_param(c, n, "kernel", k);
    if (!s) s = set_param(c, n, "bias", bias);
    free(k);
    free(b);
    free(c->perm);
    c->perm = NULL;
    return s;
}

static nb_status dense_shape_check(imp_ctx *c, const onnx_node *n, const onnx_tensor *B, int trans, int64_t *in,
                                   int64_t *out)
{
    if (c->rank != 2) return node_fail(c, n, "needs a flat input (N, features), got rank %d; flatten first", c->rank);
    if (!B || B->rank != 2) return node_fail(c, n, "the weight must be a constant matrix");
    *in = B->dims[trans ? 1 : 0], *out = B->dims[trans ? 0 : 1];
    if (*in != c->dims[1])
        return node_fail(c, n, "the weight has %lld inputs, the tensor %lld features", (long long)*in,
                         (long long)c->dims[1]);
    if (*out < 1 || *out > (1 << 20)) return node_fail(c, n, "%lld outputs: nabla's dense takes 1..2^20", (long long)*out);
    return NB_OK;
}

/* Gemm: Y = A B + C (or A B^T + C with transB = 1), alpha = beta = 1. */
static nb_status lower_gemm(imp_ctx *c, const onnx_node *n)
{
    const onnx_attr *alpha = onnx_node_attr(n, "alpha"), *beta = onnx_node_attr(n, "beta");
    if (attr_int(n, "transA", 0) || (alpha && alpha->f != 1.0f) || (beta && beta->f != 1.0f && n->nin > 2))
        return node_fail(c, n, "only transA = 0, alpha = 1 and beta = 1 are supported (a dense layer)");
    const int trans = attr_int(n, "transB", 0) != 0;
    int64_t in = 0, out = 0; /* set by dense_shape_check; gcc cannot see it */
    nb_status s = dense_shape_check(c, n, n->nin > 1 ? find_const(c, n->in[1]) : NULL, trans, &in, &out);
    nb_real *B = NULL, *bias = NULL;
    if (!s) s = const_values(c, n, 1, in * out, &B);
    if (!s && n->nin > 2 && n->in[2][0]) s = const_values(c, n, 2, out, &bias);
    if (!s) s = advance(c, n);
    if (!s) s = dense_from(c, n, B, trans, in, out, bias);
    free(B);
    free(bias);
    return s;
}

/* MatMul with a constant (in, out) matrix, and the Add of a bias after it
 * when there is one. */
static nb_status lower_matmul(imp_ctx *c, const onnx_node *n)
{
    int64_t in = 0, out = 0;
    nb_status s = dense_shape_check(c, n, n->nin == 2 ? find_const(c, n->in[1]) : NULL, 0, &in, &out);
    nb_real *B = NULL, *bias = NULL;
    if (!s) s = const_values(c, n, 1, in * out, &B);
    if (!s) s = advance(c, n);
    for (int j = c->node + 1; !s && j < c->g->nnodes; j++) {
        const onnx_node *a = &c->g->nodes[j];
        if (c->done[j]) continue;
        if (strcmp(a->op_type, "Add") || a->nin != 2 || a->nattrs || uses(c, c->cur) != 1) break;
        const int other = !strcmp(a->in[0], c->cur) ? 1 : !strcmp(a->in[1], c->cur) ? 0 : -1;
        if (other < 0 || !find_const(c, a->in[other])) break;
        const int saved = c->node;
        c->node = j;
        s = const_values(c, a, other, out, &bias);
        if (!s) s = advance(c, a);
        c->node = saved;
        c->done[j] = 1;
        break;
    }
    if (!s) s = dense_from(c, n, B, 0, in, out, bias);
    free(B);
    free(bias);
    return s;
}

/* nabla's padding for ONNX pads [top, left, bottom, right] (or auto_pad) of
 * a window on the current tensor: valid for zeros, same for TensorFlow's
 * pads, and where explicit_pad is given (convolutions) P for [P, P, P, P]
 * (PyTorch's padding=P); anything else is refused. */
static nb_status window_padding(imp_ctx *c, const onnx_node *n, int f, int s, int d, nb_padding *pad, int *explicit_pad)
{
    const onnx_attr *ap = onnx_node_attr(n, "auto_pad"), *pa = onnx_node_attr(n, "pads");
    const char *mode = ap && ap->s ? ap->s : "NOTSET";
    *pad = NB_PAD_VALID;
    if (!strcmp(mode, "VALID")) return NB_OK;
    if (!strcmp(mode, "SAME_UPPER")) return *pad = NB_PAD_SAME, NB_OK; /* TensorFlow's rule */
    if (strcmp(mode, "NOTSET")) return node_fail(c, n, "auto_pad %.40s is not supported (NOTSET, VALID, SAME_UPPER)", mode);
    if (!pa) return NB_OK;
    if (pa->type != ONNX_ATTR_INTS || pa->nints != 4) return node_fail(c, n, "pads must be 4 numbers");
    int64_t same[4], any = 0;
    for (int ax = 0; ax < 2; ax++) {
        const int64_t in = c->dims[2 + ax];
        int before = 0;
        const int64_t out = nb_window_dim(in, f, s, d, NB_PAD_SAME, &before);
        int64_t total = (out - 1) * s + (int64_t)(f - 1) * d + 1 - in;
        if (total < 0) total = 0, before = 0;
        same[ax] = before, same[2 + ax] = total - before;
    }
    for (int i = 0; i < 4; i++) any |= pa->ints[i];
    if (!any) return NB_OK;
    if (!memcmp(same, pa->ints, sizeof same)) return *pad = NB_PAD_SAME, NB_OK;
    const int64_t p0 = pa->ints[0];
    if (explicit_pad && p0 > 0 && p0 <= 1024 && pa->ints[1] == p0 && pa->ints[2] == p0 && pa->ints[3] == p0) {
        *explicit_pad = (int)p0;
        return *pad = NB_PAD_EXPLICIT, NB_OK;
    }
    return node_fail(c, n,
                     "pads [%lld, %lld, %lld, %lld] on a %lldx%lld input are neither valid ([0, 0, 0, 0]), "
                     "TensorFlow's same ([%lld, %lld, %lld, %lld]) nor%s the same number 1..1024 on every side, "
                     "the paddings nabla computes",
                     (long long)pa->ints[0], (long long)pa->ints[1], (long long)pa->ints[2], (long long)pa->ints[3],
                     (long long)c->dims[2], (long long)c->dims[3], (long long)same[0], (long long)same[1],
                     (long long)same[2], (long long)same[3], explicit_pad ? "" : " (for a convolution)");
}

/* Where TensorFlow's same pads equal [P, P, P, P] (odd windows at stride
 * 1), the metadata's spelling decides: a nabla `padding=P` stays P. */
static void conv_padding_as_hint(const imp_ctx *c, const onnx_node *n, nb_layer_spec *l)
{
    const int idx = nb_model_num_layers(c->m);
    const onnx_attr *pa = onnx_node_attr(n, "pads");
    if (l->padding != NB_PAD_SAME || !c->hint || idx >= c->nhint || !pa || pa->type != ONNX_ATTR_INTS || pa->nints != 4)
        return;
    const nb_layer_spec *h = &c->hint[idx];
    if (h->kind != NB_LAYER_CONV2D || h->padding != NB_PAD_EXPLICIT) return;
    for (int i = 0; i < 4; i++)
        if (pa->ints[i] != h->pad) return;
    l->padding = NB_PAD_EXPLICIT, l->pad = h->pad;
}

static nb_status lower_conv(imp_ctx *c, const onnx_node *n)
{
    if (c->rank != 4 || c->layout != L_NCHW) return node_fail(c, n, "needs an NCHW image tensor (rank 4)");
    const onnx_tensor *W = n->nin > 1 ? find_const(c, n->in[1]) : NULL;
    if (!W || W->rank != 4) return node_fail(c, n, "the weight must be a constant (O, C, kh, kw)");
    const int64_t O = W->dims[0], C = W->dims[1], F = W->dims[2];
    if (attr_int(n, "group", 1) != 1) return node_fail(c, n, "group %lld: only group = 1 is supported", (long long)attr_int(n, "group", 1));
    if (W->dims[3] != F || F < 1 || F > 1024) return node_fail(c, n, "kernel %lldx%lld: nabla's kernels are square, 1..1024", (long long)F, (long long)W->dims[3]);
    if (C != c->dims[1]) return node_fail(c, n, "the weight takes %lld channels, the tensor has %lld", (long long)C, (long long)c->dims[1]);
    if (O < 1 || O > (1 << 20)) return node_fail(c, n, "%lld filters: nabla takes 1..2^20", (long long)O);
    int64_t ks = 0, st = 1, dl = 1;
    nb_status s = attr_square(c, n, "kernel_shape", F, 1, &ks);
    if (!s && ks != F) s = node_fail(c, n, "kernel_shape %lld differs from the weight's %lld", (long long)ks, (long long)F);
    if (!s) s = attr_square(c, n, "strides", 1, 1, &st);
    if (!s) s = attr_square(c, n, "dilations", 1, 1, &dl);
    nb_layer_spec l = {.kind = NB_LAYER_CONV2D, .units = (int)O, .size = (int)F};
    l.stride = st == 1 ? 0 : (int)st, l.dilation = dl == 1 ? 0 : (int)dl;
    if (!s) s = window_padding(c, n, (int)F, (int)st, (int)dl, &l.padding, &l.pad);
    if (!s) conv_padding_as_hint(c, n, &l);
    nb_real *w = NULL, *b = NULL, *k = NULL;
    if (!s) s = const_values(c, n, 1, O * C * F * F, &w);
    if (!s && n->nin > 2 && n->in[2][0]) s = const_values(c, n, 2, O, &b);
    if (!s) s = advance(c, n);
    if (!s) s = fuse_activation(c, &l);
    if (!s) s = add_layer(c, n, l);
    if (!s && !(k = malloc(sizeof(nb_real) * (size_t)(O * C * F * F)))) s = nb_fail(NB_ERR_NOMEM, "onnx import: out of memory");
    if (!s && !b && !(b = calloc((size_t)O, sizeof(nb_real)))) s = nb_fail(NB_ERR_NOMEM, "onnx import: out of memory");
    for (int64_t p = 0; !s && p < F; p++) /* k[p,q,c,o] = W[o,c,p,q] */
        for (int64_t q = 0; q < F; q++)
            for (int64_t ch = 0; ch < C; ch++)
                for (int64_t o = 0; o < O; o++) k[((p * F + q) * C + ch) * O + o] = w[((o * C + ch) * F + p) * F + q];
    if (!s) s = set_param(c, n, "kernel", k);
    if (!s) s = set_param(c, n, "bias", b);
    free(w);
    free(b);
    free(k);
    return s;
}

/* MaxPool / AveragePool: square windows, floor rounding (or ceil_mode where
 * it changes nothing), padded positions excluded as in nabla. */
static nb_status lower_pool(imp_ctx *c, const onnx_node *n)
{
    if (c->rank != 4 || c->layout != L_NCHW) return node_fail(c, n, "needs an NCHW image tensor (rank 4)");
    const int max = !strcmp(n->op_type, "MaxPool");
    int64_t k = 1, st = 1, dl = 1;
    if (!onnx_node_attr(n, "kernel_shape")) return node_fail(c, n, "kernel_shape is required");
    nb_status s = attr_square(c, n, "kernel_shape", 1, 1, &k);
    if (!s) s = attr_square(c, n, "strides", 1, 1, &st);
    if (!s) s = attr_square(c, n, "dilations", 1, 1, &dl);
    if (!s && dl != 1) s = node_fail(c, n, "dilations %lld: nabla's pools take 1", (long long)dl);
    if (!s && attr_int(n, "storage_order", 0)) s = node_fail(c, n, "storage_order 1 is not supported");
    if (!s && n->nout > 1) s = node_fail(c, n, "the Indices output is not supported");
    nb_layer_spec l = {.kind = max ? NB_LAYER_MAXPOOL : NB_LAYER_AVGPOOL, .size = (int)k};
    l.stride = st == k ? 0 : (int)st;
    if (!s) s = window_padding(c, n, (int)k, (int)st, 1, &l.padding, NULL);
    if (!s && !max && attr_int(n, "count_include_pad", 0) && l.padding == NB_PAD_SAME)
        s = node_fail(c, n, "count_include_pad = 1 with padding: nabla's average excludes padded pixels");
    if (!s && attr_int(n, "ceil_mode", 0) && l.padding == NB_PAD_VALID)
        for (int ax = 0; ax < 2 && !s; ax++)
            if (c->dims[2 + ax] >= k && (c->dims[2 + ax] - k) % st)
                s = node_fail(c, n, "ceil_mode = 1 rounds the output size up here; nabla rounds down");
    if (!s) s = add_layer(c, n, l);
    return s ? s : advance(c, n);
}

/* The pending permutation of a Flatten of the current NCHW tensor. */
static nb_status flatten_perm(imp_ctx *c)
{
    const int64_t C = c->dims[1], H = c->dims[2], W = c->dims[3];
    if (c->rank != 4 || c->layout != L_NCHW || C == 1 || H * W == 1) return NB_OK;
    if (!(c->perm = malloc(sizeof(int64_t) * (size_t)(C * H * W)))) return nb_fail(NB_ERR_NOMEM, "onnx import: out of memory");
    c->nperm = C * H * W;
    for (int64_t h = 0; h < H; h++)
        for (int64_t w = 0; w < W; w++)
            for (int64_t ch = 0; ch < C; ch++) c->perm[(h * W + w) * C + ch] = (ch * H + h) * W + w;
    return NB_OK;
}

static nb_status lower_flatten(imp_ctx *c, const onnx_node *n)
{
    if (attr_int(n, "axis", 1) != 1) return node_fail(c, n, "axis %lld: only axis 1 (keep the batch) is supported", (long long)attr_int(n, "axis", 1));
    if (c->perm) return node_fail(c, n, "a second flatten of an NCHW tensor is not supported");
    nb_status s = flatten_perm(c);
    nb_layer_spec l = {.kind = NB_LAYER_FLATTEN};
    if (!s) s = add_layer(c, n, l);
    return s ? s : advance(c, n);
}

/* Reshape to (N, features) with a constant shape: a flatten. */
static nb_status lower_reshape(imp_ctx *c, const onnx_node *n)
{
    const onnx_tensor *t = n->nin == 2 ? find_const(c, n->in[1]) : NULL;
    int64_t shape[NB_MAX_RANK], features = 1;
    for (int d = 1; d < c->rank; d++) features *= c->dims[d];
    if (!t || onnx_tensor_ints(t, shape, NB_MAX_RANK))
        return node_fail(c, n, "the shape must be a constant INT64 tensor (export with a fixed shape, or use Flatten)");
    if (t->count != 2 || !(shape[0] == 0 || shape[0] == -1 || shape[0] == 1) ||
        !(shape[1] == -1 || shape[1] == features) || attr_int(n, "allowzero", 0))
        return node_fail(c, n, "only a reshape to (N, %lld) (a flatten) is supported", (long long)features);
    return lower_flatten(c, n);
}

/* Transpose: a layout change of a rank-4 tensor only. */
static nb_status lower_transpose(imp_ctx *c, const onnx_node *n)
{
    const onnx_attr *p = onnx_node_attr(n, "perm");
    static const int64_t to_nchw[4] = {0, 3, 1, 2}, to_nhwc[4] = {0, 2, 3, 1};
    const int ok4 = p && p->type == ONNX_ATTR_INTS && p->nints == 4 && c->rank == 4;
    if (ok4 && c->layout == L_NHWC && !memcmp(p->ints, to_nchw, sizeof to_nchw)) {
        c->layout = L_NCHW;
        const int64_t H = c->dims[1], W = c->dims[2];
        c->dims[1] = c->dims[3], c->dims[2] = H, c->dims[3] = W;
        return advance(c, n);
    }
    if (ok4 && c->layout == L_NCHW && !memcmp(p->ints, to_nhwc, sizeof to_nhwc)) {
        c->layout = L_NHWC;
        const int64_t C = c->dims[1];
        c->dims[1] = c->dims[2], c->dims[2] = c->dims[3], c->dims[3] = C;
        return advance(c, n);
    }
    return node_fail(c, n, "only a layout change of an image tensor (perm [0, 3, 1, 2] from NHWC or [0, 2, 3, 1] "
                           "from NCHW) is supported");
}

/* Dropout (inference: an identity) keeps its ratio as a nabla layer. */
static nb_status lower_dropout(imp_ctx *c, const onnx_node *n)
{
    double rate = 0.5;
    const onnx_attr *ra = onnx_node_attr(n, "ratio"); /* before opset 12 */
    if (ra) rate = ra->f;
    nb_real *v = NULL;
    if (n->nin > 1 && n->in[1][0]) {
        nb_status s = const_values(c, n, 1, 1, &v);
        if (s) return s;
        rate = v[0];
        free(v);
    }
    const onnx_tensor *mode = n->nin > 2 && n->in[2][0] ? find_const(c, n->in[2]) : NULL;
    const int on = mode && mode->count == 1 && mode->raw_len >= 1 ? mode->raw[0] != 0
                   : mode && mode->count == 1 && mode->nvalues == 1 && mode->ints ? mode->ints[0] != 0 : 1;
    if (n->nin > 2 && n->in[2][0] && on)
        return node_fail(c, n, "training_mode must be a constant false");
    if (!(rate >= 0 && rate < 1)) return node_fail(c, n, "ratio %g is outside [0, 1)", rate);
    nb_layer_spec l = {.kind = NB_LAYER_DROPOUT, .rate = rate};
    nb_status s = add_layer(c, n, l);
    return s ? s : advance(c, n);
}

/* Identity adds no layer, unless the metadata's spec has a linear layer
 * here (nabla exports one as Identity). */
static nb_status lower_identity(imp_ctx *c, const onnx_node *n)
{
    const int idx = nb_model_num_layers(c->m);
    if (c->hint && idx < c->nhint && c->hint[idx].kind == NB_LAYER_ACTIVATION && c->hint[idx].act == NB_ACT_NONE) {
        nb_layer_spec l = {.kind = NB_LAYER_ACTIVATION};
        const imp_val *v = find_val(c, n->in[0]);
        nb_status s = v ? make_current(c, n, v) : NB_OK;
        if (!s) s = add_layer(c, n, l);
        if (s) return s;
    }
    return advance(c, n);
}

/* ------------------------------------------------------------ graphs */

/* The tensors a node joins (Add, Sum, Concat): each lowered before it, none
 * a constant, all of the first one's rank and layout; v[] gets them. */
static nb_status joined_inputs(imp_ctx *c, const onnx_node *n, const imp_val **v)
{
    if (n->nin < 2) return node_fail(c, n, "needs at least two inputs, got %d", n->nin);
    if (c->perm) return node_fail(c, n, "reads a Flatten of an NCHW tensor before a Gemm or MatMul; not supported");
    for (int i = 0; i < n->nin; i++) {
        if (find_const(c, n->in[i]))
            return node_fail(c, n,
                             "input %d ('%s') is a constant: nabla's %s joins computed tensors only (a "
                             "bias is an Add right after a MatMul)",
                             i, NB_QUOTED(n->in[i]), strcmp(n->op_type, "Concat") ? "add" : "concat");
        if (!(v[i] = find_val(c, n->in[i])))
            return node_fail(c, n, "input %d ('%s') is computed by no earlier node", i, NB_QUOTED(n->in[i]));
        nb_status s = check_permuted(c, n, v[i]);
        if (s) return s;
        if (v[i]->rank != v[0]->rank || (v[0]->rank == 4 && v[i]->layout != v[0]->layout))
            return node_fail(c, n,
                             "input %d ('%s') is of rank %d%s, input 0 of rank %d%s: nabla joins tensors "
                             "of one rank and layout",
                             i, NB_QUOTED(n->in[i]), v[i]->rank, v[i]->layout == L_NHWC ? " (NHWC)" : "", v[0]->rank,
                             v[0]->layout == L_NHWC ? " (NHWC)" : "");
    }
    return NB_OK;
}

/* Entries of `kind` (add or concat) reading the tensors v[i] for i !=
 * skip, at most NB_SPEC_MAX_REFS names per entry, on the current tensor. */
static nb_status join_entries(imp_ctx *c, const onnx_node *n, nb_layer_kind kind, const imp_val **v, int skip)
{
    nb_status s = NB_OK;
    for (int i = 0; i < n->nin && !s;) {
        nb_layer_spec l = {.kind = kind};
        for (; i < n->nin && l.nrefs < NB_SPEC_MAX_REFS && !s; i++)
            if (i != skip) s = entry_name(c, n, v[i]->layer, l.refs[l.nrefs++]);
        if (!s && l.nrefs) s = add_layer(c, n, l);
    }
    return s;
}

/* Add and Sum of computed tensors of one shape: `add NAME ...` on the one
 * that is current (else on the first, after `from`). No broadcasting. */
static nb_status lower_add(imp_ctx *c, const onnx_node *n)
{
    const imp_val *v[ONNX_MAX_IO];
    nb_status s = joined_inputs(c, n, v);
    if (s) return s;
    for (int i = 1; i < n->nin; i++)
        if (memcmp(v[i]->dims, v[0]->dims, sizeof(int64_t) * (size_t)v[0]->rank))
            return node_fail(c, n,
                             "inputs 0 and %d differ in shape: nabla's add takes equal shapes (no "
                             "broadcasting)",
                             i);
    int first = 0;
    for (int i = 0; i < n->nin; i++)
        if (v[i]->layer == nb_model_num_layers(c->m) - 1) first = i;
    s = make_current(c, n, v[first]);
    if (!s) s = join_entries(c, n, NB_LAYER_ADD, v, first);
    return s ? s : advance(c, n);
}

/* Concat on the channel axis (1 of NCHW, the last of NHWC or a flat
 * tensor): `concat NAME ...` on the first input, in order. */
static nb_status lower_concat(imp_ctx *c, const onnx_node *n)
{
    const imp_val *v[ONNX_MAX_IO];
    nb_status s = joined_inputs(c, n, v);
    if (s) return s;
    const onnx_attr *a = onnx_node_attr(n, "axis");
    const int r = v[0]->rank;
    const int64_t want = r == 4 && v[0]->layout == L_NCHW ? 1 : r - 1;
    int64_t axis = a && a->type == ONNX_ATTR_INT ? a->i : INT64_MIN;
    if (axis >= -r && axis < 0) axis += r;
    if (!a) return node_fail(c, n, "the axis attribute is required");
    if (axis != want)
        return node_fail(c, n, "axis %lld: nabla concatenates on the channel axis (%lld of this rank-%d%s tensor)",
                         (long long)(a->type == ONNX_ATTR_INT ? a->i : 0), (long long)want, r,
                         r == 4 ? v[0]->layout == L_NCHW ? " NCHW" : " NHWC" : "");
    for (int i = 1; i < n->nin; i++)
        for (int d = 1; d < r; d++)
            if (d != want && v[i]->dims[d] != v[0]->dims[d])
                return node_fail(c, n,
                                 "inputs 0 and %d differ in dimension %d (%lld, %lld): only the channels may "
                                 "differ",
                                 i, d, (long long)v[0]->dims[d], (long long)v[i]->dims[d]);
    s = make_current(c, n, v[0]);
    if (!s) s = join_entries(c, n, NB_LAYER_CONCAT, v, 0);
    return s ? s : advance(c, n);
}

/* Whether node j turns (N, C, 1, 1) into (N, C): Flatten(axis 1) or a
 * Reshape to (N, C) with a constant shape. */
static int is_flatten_nc(const imp_ctx *c, const onnx_node *f, int64_t C)
{
    if (f->nout < 1 || !f->out[0][0]) return 0;
    if (!strcmp(f->op_type, "Flatten"))
        return f->nattrs == 0 || (f->nattrs == 1 && !strcmp(f->attrs[0].name, "axis") && f->attrs[0].i == 1);
    if (strcmp(f->op_type, "Reshape") || f->nin != 2 || attr_int(f, "allowzero", 0)) return 0;
    const onnx_tensor *t = find_const(c, f->in[1]);
    int64_t shape[NB_MAX_RANK];
    if (!t || t->count != 2 || onnx_tensor_ints(t, shape, NB_MAX_RANK)) return 0;
    return (shape[0] == 0 || shape[0] == -1 || shape[0] == 1) && (shape[1] == -1 || shape[1] == C);
}

/* GlobalAveragePool (NCHW -> (N, C, 1, 1)) and the Flatten or Reshape to
 * (N, C) after it: nabla's globalavgpool, (N, H, W, C) -> (N, C). */
static nb_status lower_gap(imp_ctx *c, const onnx_node *n)
{
    if (c->rank != 4 || c->layout != L_NCHW) return node_fail(c, n, "needs an NCHW image tensor (rank 4)");
    const int j = n->nout >= 1 ? next_reader(c, c->node, n->out[0]) : -1;
    if (j < 0 || uses(c, n->out[0]) != 1 || !is_flatten_nc(c, &c->g->nodes[j], c->dims[1]))
        return node_fail(c, n,
                         "must be followed by a Flatten (axis 1) or a Reshape to (N, %lld), its only reader: "
                         "nabla's globalavgpool gives (N, C)",
                         (long long)c->dims[1]);
    nb_layer_spec l = {.kind = NB_LAYER_GLOBALAVGPOOL};
    nb_status s = add_layer(c, n, l);
    if (s) return s;
    c->done[j] = 1;
    c->layout = L_PLAIN;
    c->cur = c->g->nodes[j].out[0];
    return NB_OK;
}

/* ------------------------------------------------------------ normalisation */

/* The shortest decimal whose float is f (an epsilon or momentum stored as
 * a float): 1e-05 for 1e-5f, so a spec reads as it was written. With
 * one_minus, the shortest d with (float)(1 - d) == f (nabla's momentum
 * from ONNX's). */
static double shortest_decimal(float f, int one_minus)
{
    const double want = one_minus ? 1 - (double)f : (double)f;
    for (int digits = 1; digits <= 17; digits++) {
        char buf[40];
        snprintf(buf, sizeof buf, "%.*g", digits, want);
        const double d = strtod(buf, NULL);
        if ((float)(one_minus ? 1 - d : d) == f) return d;
    }
    return want;
}

/* Per-feature values v (count) of a flat tensor with a pending Flatten
 * permutation: nabla's feature r is ONNX's perm[r] (batchnorm and layernorm
 * are not elementwise, but their statistics do not depend on the order). */
static nb_status permute_features(imp_ctx *c, nb_real *v, int64_t count)
{
    if (!c->perm || count != c->nperm) return NB_OK;
    nb_real *t = malloc(sizeof(nb_real) * (size_t)count);
    if (!t) return nb_fail(NB_ERR_NOMEM, "onnx import: out of memory");
    for (int64_t r = 0; r < count; r++)
        t[r] = v[c->perm[r]];
    memcpy(v, t, sizeof(nb_real) * (size_t)count);
    free(t);
    return NB_OK;
}

/* A float attribute (dflt when absent) in [lo, hi], else refused with
 * what it means to nabla. */
static nb_status attr_real(const imp_ctx *c, const onnx_node *n, const char *name, float dflt, float lo, float hi,
                           const char *why, float *v)
{
    const onnx_attr *a = onnx_node_attr(n, name);
    *v = a ? a->f : dflt;
    if (a && a->type != ONNX_ATTR_FLOAT) return node_fail(c, n, "%s must be a float", name);
    if (!(*v >= lo && *v <= hi)) return node_fail(c, n, "%s %g is outside [%g, %g]: %s", name, *v, lo, hi, why);
    return NB_OK;
}

/* BatchNormalization in inference form (training_mode 0, the output Y
 * only): `batchnorm eps=E momentum=1-M` (ONNX's momentum weighs the old
 * statistic, nabla's the new one) on an NCHW image or an (N, C) tensor,
 * whose axis 1 is nabla's channel axis; its constant inputs scale, B,
 * input_mean, input_var (C values each) become gamma, beta, moving_mean,
 * moving_variance (after a Flatten of an NCHW tensor, in nabla's feature
 * order). A Conv before it stays a conv2d: nothing is folded. */
static nb_status lower_batchnorm(imp_ctx *c, const onnx_node *n)
{
    static const char *params[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
    if (attr_int(n, "training_mode", 0))
        return node_fail(c, n, "training_mode 1 (batch statistics) is not supported: export the model in eval "
                               "mode (model.eval()), which uses the moving statistics");
    for (int i = 1; i < n->nout; i++)
        if (n->out[i][0])
            return node_fail(c, n, "output %d ('%.100s', a training statistic) is not supported: export in eval mode",
                             i, n->out[i]);
    if (!(c->rank == 2 || (c->rank == 4 && c->layout == L_NCHW)))
        return node_fail(c, n,
                         "normalises axis 1 of a rank-%d%s tensor; nabla's batchnorm normalises the channels, "
                         "axis 1 only of an NCHW image or an (N, C) tensor",
                         c->rank, c->rank == 4 ? " NHWC" : "");
    if (n->nin != 5) return node_fail(c, n, "needs 5 inputs (X, scale, B, input_mean, input_var), got %d", n->nin);
    float eps = 0, mom = 0; /* set by attr_real; gcc cannot see it */
    nb_status s = attr_real(c, n, "epsilon", 1e-5f, 1e-12f, 1, "nabla's batchnorm eps", &eps);
    if (!s && eps >= 1) /* nabla's eps excludes 1 (attr_real's range is closed) */
        s = node_fail(c, n, "epsilon %g is outside [1e-12, 1): nabla's batchnorm eps", eps);
    if (!s) s = attr_real(c, n, "momentum", 0.9f, 0, 0.999999f, "nabla's momentum, 1 - ONNX's, is at least 1e-6", &mom);
    if (!s && mom == 0)
        s = node_fail(c, n, "momentum 0 (each batch replaces the moving statistics) is not supported: nabla's "
                            "momentum, 1 - ONNX's, is below 1");
    const int64_t C = c->dims[1];
    nb_real *v[4] = {NULL};
    for (int i = 0; i < 4 && !s; i++)
        if (!(s = const_values(c, n, 1 + i, C, &v[i]))) s = permute_features(c, v[i], C);
    for (int64_t j = 0; !s && j < C; j++)
        if (v[3][j] < 0) s = node_fail(c, n, "input_var holds %g (channel %lld): a variance is not negative",
                                       (double)v[3][j], (long long)j);
    nb_layer_spec l = {.kind = NB_LAYER_BATCHNORM, .eps = shortest_decimal(eps, 0), .momentum = shortest_decimal(mom, 1)};
    if (!s) s = add_layer(c, n, l);
    for (int i = 0; i < 4 && !s; i++)
        s = set_param(c, n, params[i], v[i]);
    for (int i = 0; i < 4; i++)
        free(v[i]);
    return s ? s : advance(c, n);
}

/* LayerNormalization over the last axis only (axis -1, or rank - 1), which
 * must be nabla's channels (not W of an NCHW image): `layernorm eps=E`,
 * Scale and B (optional: zeros) into gamma and beta. stash_type is read
 * and allowed: nabla sums the statistics in double either way. */
static nb_status lower_layernorm(imp_ctx *c, const onnx_node *n)
{
    int64_t axis = attr_int(n, "axis", -1);
    if (axis < 0) axis += c->rank;
    if (axis != c->rank - 1 || (c->rank == 4 && c->layout == L_NCHW))
        return node_fail(c, n,
                         "axis %lld of a rank-%d%s tensor: nabla's layernorm normalises the channels, the last axis "
                         "of an NHWC or flat tensor (axis -1)",
                         (long long)attr_int(n, "axis", -1), c->rank,
                         c->rank == 4 ? c->layout == L_NCHW ? " NCHW" : " NHWC" : "");
    for (int i = 1; i < n->nout; i++)
        if (n->out[i][0])
            return node_fail(c, n, "output %d ('%.100s', Mean or InvStdDev) is not supported", i, n->out[i]);
    if (n->nin < 2 || n->nin > 3) return node_fail(c, n, "needs 2 or 3 inputs (X, Scale[, B]), got %d", n->nin);
    float eps = 0;
    nb_status s = attr_real(c, n, "epsilon", 1e-5f, 1e-12f, 1, "nabla's layernorm eps", &eps);
    if (!s && eps >= 1) /* nabla's eps excludes 1 (attr_real's range is closed) */
        s = node_fail(c, n, "epsilon %g is outside [1e-12, 1): nabla's layernorm eps", eps);
    const int64_t F = c->dims[c->rank - 1];
    nb_real *g = NULL, *b = NULL;
    if (!s) s = const_values(c, n, 1, F, &g);
    if (!s && n->nin > 2 && n->in[2][0]) s = const_values(c, n, 2, F, &b);
    if (!s) s = permute_features(c, g, F);
    if (!s && b) s = permute_features(c, b, F);
    if (!s && !b && !(b = calloc((size_t)F, sizeof(nb_real)))) s = nb_fail(NB_ERR_NOMEM, "onnx import: out of memory");
    nb_layer_spec l = {.kind = NB_LAYER_LAYERNORM, .eps = shortest_decimal(eps, 0)};
    if (!s) s = add_layer(c, n, l);
    if (!s) s = set_param(c, n, "gamma", g);
    if (!s) s = set_param(c, n, "beta", b);
    free(g);
    free(b);
    return s ? s : advance(c, n);
}

/* The operator table: every ONNX operator nabla imports. A new one is a
 * row and its lowering. */
static const onnx_op ops[] = {
    {"Conv", lower_conv, {"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"}, IN_CURRENT},
    {"Gemm", lower_gemm, {"alpha", "beta", "transA", "transB"}, IN_CURRENT},
    {"MatMul", lower_matmul, {0}, IN_CURRENT},
    {"MaxPool",
     lower_pool,
     {"kernel_shape", "strides", "pads", "dilations", "ceil_mode", "storage_order", "auto_pad"},
     IN_CURRENT},
    {"AveragePool",
     lower_pool,
     {"kernel_shape", "strides", "pads", "ceil_mode", "count_include_pad", "auto_pad"},
     IN_CURRENT},
    {"Flatten", lower_flatten, {"axis"}, IN_CURRENT},
    {"Reshape", lower_reshape, {"allowzero"}, IN_CURRENT},
    {"Transpose", lower_transpose, {"perm"}, IN_VIEW},
    {"Add", lower_add, {0}, IN_SELF},
    {"Sum", lower_add, {0}, IN_SELF},
    {"Concat", lower_concat, {"axis"}, IN_SELF},
    {"GlobalAveragePool", lower_gap, {0}, IN_CURRENT},
    {"BatchNormalization", lower_batchnorm, {"epsilon", "momentum", "training_mode"}, IN_CURRENT},
    {"LayerNormalization", lower_layernorm, {"axis", "epsilon", "stash_type"}, IN_CURRENT},
    {"Relu", lower_activation, {0}, IN_CURRENT},
    {"Sigmoid", lower_activation, {0}, IN_CURRENT},
    {"Tanh", lower_activation, {0}, IN_CURRENT},
    {"LeakyRelu", lower_activation, {"alpha"}, IN_CURRENT},
    {"Elu", lower_activation, {"alpha"}, IN_CURRENT},
    {"Softplus", lower_activation, {0}, IN_CURRENT},
    {"Softmax", lower_activation, {"axis"}, IN_CURRENT},
    {"LogSoftmax", lower_activation, {"axis"}, IN_CURRENT},
    {"Dropout", lower_dropout, {"ratio", "seed"}, IN_CURRENT},
    {"Identity", lower_identity, {0}, IN_VIEW},
    {"Div", lower_gelu, {0}, IN_CURRENT}, /* GELU's pattern (with Erf, Add, Mul, Mul) */
};

const char *nb_onnx_supported_ops(void)
{
    return "Conv, Gemm, MatMul (+ Add of a bias), MaxPool, AveragePool, GlobalAveragePool (+ Flatten), Flatten, "
           "Reshape (to a flatten), Transpose (layout changes), Add and Sum (of equal shapes), Concat (channels), "
           "BatchNormalization (inference), LayerNormalization (last axis), "
           "Relu, Sigmoid, Tanh, LeakyRelu, Elu, Softplus, Softmax, LogSoftmax, Dropout, Identity, Constant, and "
           "GELU as Div, Erf, Add, Mul, Mul (torch.onnx.export's form)";
}

static const onnx_op *find_op(const char *type)
{
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (!strcmp(ops[i].type, type)) return &ops[i];
    return NULL;
}

/* One node: its operator in the table, its attributes known, its first
 * input the current tensor. */
static nb_status lower_node(imp_ctx *c, const onnx_node *n)
{
    if (strcmp(n->domain, "") && strcmp(n->domain, "ai.onnx"))
        return node_fail(c, n, "operator domain '%s' is not supported (only the default ONNX domain)",
                         NB_QUOTED(n->domain));
    const onnx_op *op = find_op(n->op_type);
    if (!op)
        return node_fail(c, n, "operator %s is not supported; nabla imports %s", NB_QUOTED(n->op_type),
                         nb_onnx_supported_ops());
    for (int i = 0; i < n->nattrs; i++) {
        int known = 0;
        for (int j = 0; j < 8 && op->attrs[j] && !known; j++) known = !strcmp(op->attrs[j], n->attrs[i].name);
        if (!known) {
            char list[256] = "";
            for (int j = 0, u = 0; j < 8 && op->attrs[j]; j++)
                u += snprintf(list + u, sizeof list - (size_t)u, "%s%s", j ? ", " : "", op->attrs[j]);
            return node_fail(c, n, "attribute '%s' is not supported (%s takes: %s)", NB_QUOTED(n->attrs[i].name), op->type,
                             list[0] ? list : "none");
        }
    }
    const imp_val *v = n->nin >= 1 ? find_val(c, n->in[0]) : NULL;
    if (!v && op->inputs != IN_SELF)
        return node_fail(c, n,
                         "reads '%s', which is neither the graph's input nor computed by an earlier node "
                         "(nodes must be in topological order; constants are initializers)",
                         NB_QUOTED(n->nin ? n->in[0] : ""));
    nb_status s = v ? check_permuted(c, n, v) : NB_OK;
    if (s) return s;
    if (op->inputs == IN_CURRENT)
        s = make_current(c, n, v);
    else if (v)
        set_view(c, v);
    if (!s) s = op->lower(c, n);
    if (!s) record_current(c);
    return s;
}

/* The layout of a rank-4 graph input: the metadata's (a nabla export),
 * else NHWC when a node reads it through Transpose(0, 3, 1, 2), else NCHW. */
static int input_layout(const imp_ctx *c, const char *name)
{
    const char *meta = onnx_meta(c->om, "nabla.layout");
    if (meta && (!strcmp(meta, "nhwc") || !strcmp(meta, "nchw"))) return meta[1] == 'h' ? L_NHWC : L_NCHW;
    static const int64_t to_nchw[4] = {0, 3, 1, 2};
    for (int i = 0; i < c->g->nnodes; i++) {
        const onnx_node *n = &c->g->nodes[i];
        const onnx_attr *p = n->nin >= 1 && !strcmp(n->in[0], name) && !strcmp(n->op_type, "Transpose")
                                 ? onnx_node_attr(n, "perm")
                                 : NULL;
        if (p && p->type == ONNX_ATTR_INTS && p->nints == 4 && !memcmp(p->ints, to_nchw, sizeof to_nchw)) return L_NHWC;
    }
    return L_NCHW;
}

/* The graph's input (the one that is no initializer): the model's input
 * shape in NHWC, and its layout from its first node. */
static nb_status graph_input(imp_ctx *c, int64_t *shape, int *rank)
{
    const onnx_value *in = NULL;
    for (int i = 0; i < c->g->ninputs; i++) {
        if (find_const(c, c->g->inputs[i].name)) continue;
        if (in) return nb_fail(NB_ERR_FORMAT, "onnx import: the graph has more than one input ('%s', '%s'); nabla models take one",
                              NB_QUOTED(in->name), NB_QUOTED(c->g->inputs[i].name));
        in = &c->g->inputs[i];
    }
    if (!in) return nb_fail(NB_ERR_FORMAT, "onnx import: the graph has no input");
    if (in->elem_type != ONNX_FLOAT || !in->has_shape || in->rank < 2 || in->rank > 4)
        return nb_fail(NB_ERR_FORMAT, "onnx import: input '%s' must be a FLOAT tensor of rank 2 to 4 with a known shape (N, ...)",
                       NB_QUOTED(in->name));
    for (int d = 1; d < in->rank; d++)
        if (in->dims[d] < 1 || in->dims[d] > (1 << 24))
            return nb_fail(NB_ERR_FORMAT, "onnx import: input '%s' dimension %d is unknown or out of range 1..2^24: export with a fixed input size",
                           NB_QUOTED(in->name), d);
    c->cur = in->name;
    c->rank = in->rank;
    c->dims[0] = 1;
    memcpy(c->dims + 1, in->dims + 1, sizeof(int64_t) * (size_t)(in->rank - 1));
    c->layout = L_PLAIN;
    *rank = in->rank - 1;
    memcpy(shape, c->dims + 1, sizeof(int64_t) * (size_t)*rank);
    if (in->rank == 4) c->layout = input_layout(c, in->name);
    if (c->layout == L_NCHW) shape[0] = c->dims[2], shape[1] = c->dims[3], shape[2] = c->dims[1];
    c->cur_layer = -1;
    record_current(c);
    return NB_OK;
}

static nb_status check_finite(nb_model *m)
{
    for (int i = 0; i < nb_model_param_count(m); i++) {
        const nb_tensor *v = nb_value(nb_model_param(m, i));
        for (int64_t j = 0; j < v->size; j++)
            if (!isfinite(v->data[j]))
                return nb_fail(NB_ERR_NUMERIC, "onnx import: weight '%s' holds NaN or Inf (element %lld): the model "
                                               "would compute NaN", nb_node_name(nb_model_param(m, i)), (long long)j);
    }
    return NB_OK;
}

static nb_status import_graph(imp_ctx *c, unsigned flags)
{
    int rank = 0;
    int64_t shape[NB_MAX_RANK];
    nb_status s = graph_input(c, shape, &rank);
    if (s) return s;
    if (!(c->m = nb_model_new(rank, shape))) return NB_ERR_ARG;
    for (int i = 0; i < c->g->nnodes; i++) c->done[i] = !strcmp(c->g->nodes[i].op_type, "Constant");
    for (int i = 0; i < c->g->nnodes; i++) /* ONNX tensors are single-assignment */
        if (c->g->nodes[i].nout >= 1 && (!strcmp(c->g->nodes[i].out[0], c->vals[0].name)))
            return nb_fail(NB_ERR_FORMAT, "onnx import: node %d '%s' writes the graph's input '%s'", i,
                           NB_QUOTED(c->g->nodes[i].name), NB_QUOTED(c->vals[0].name));
    for (int i = 0; i < c->g->nnodes && !s; i++) {
        const onnx_node *n = &c->g->nodes[i];
        c->node = i;
        if (!c->done[i]) s = lower_node(c, n);
        c->done[i] = 1;
    }
    if (s) return s;
    const imp_val *out = c->g->noutputs == 1 ? find_val(c, c->g->outputs[0].name) : NULL;
    if (!out || out->layer != nb_model_num_layers(c->m) - 1)
        return nb_fail(
            NB_ERR_FORMAT,
            "onnx import: the graph's output must be the last node's ('%s') and the only one; it has %d%s%s%s",
            NB_QUOTED(c->cur), c->g->noutputs, c->g->noutputs ? " ('" : "", NB_QUOTED(c->g->noutputs ? c->g->outputs[0].name : ""),
            c->g->noutputs ? (c->g->noutputs > 1 ? "', ...)" : "')") : "");
    if (c->perm)
        return nb_fail(NB_ERR_FORMAT, "onnx import: the output is a flattened NCHW tensor in (c, h, w) order; nabla "
                                      "flattens in (h, w, c) order (add a Transpose to NHWC before the Flatten)");
    return flags & NB_LOAD_ALLOW_NONFINITE ? NB_OK : check_finite(c->m);
}

nb_status nb_onnx_parse(const void *data, size_t len, unsigned flags, nb_model **out)
{
    if (!out) return nb_fail(NB_ERR_ARG, "onnx import: NULL argument");
    *out = NULL;
    if (flags & ~(unsigned)NB_LOAD_ALLOW_NONFINITE) return nb_fail(NB_ERR_ARG, "onnx import: unknown flags 0x%x", flags);
    onnx_model *om;
    nb_status s = onnx_model_parse(data, len, &om);
    if (s) return s;
    imp_ctx c = {.om = om, .g = &om->graph};
    if (om->opset && (om->opset < 7 || om->opset > 21))
        s = nb_fail(NB_ERR_FORMAT, "onnx import: opset %lld is not supported (7..21)", (long long)om->opset);
    if (!s && !(c.done = calloc((size_t)om->graph.nnodes + 1, 1))) s = nb_fail(NB_ERR_NOMEM, "onnx import: out of memory");
    const char *spec = onnx_meta(om, "nabla.spec");
    if (!s && spec && nb_spec_parse(spec, &c.hint, &c.nhint)) c.hint = NULL, c.nhint = 0; /* only a hint */
    nb_clear_error();
    /* Pass 1 names every entry and notes which are read by name; pass 2
     * builds the model again naming only those (see entry_name). */
    if (!s && (!(c.vals = calloc((size_t)om->graph.nnodes + 1, sizeof *c.vals)) ||
               !(c.referenced = calloc(NB_MODEL_MAX_LAYERS_IMPORT, 1))))
        s = nb_fail(NB_ERR_NOMEM, "onnx import: out of memory");
    for (c.pass = 1; !s && c.pass <= 2; c.pass++) {
        if (c.pass == 2) {
            nb_model_free(c.m);
            free(c.perm);
            c.m = NULL, c.perm = NULL, c.nvals = 0;
        }
        s = import_graph(&c, flags);
    }
    free(c.vals);
    free(c.referenced);
    free(c.done);
    free(c.hint);
    free(c.perm);
    onnx_model_free(om);
    if (s) {
        nb_model_free(c.m);
        return s;
    }
    *out = c.m;
    return NB_OK;
}

nb_status nb_onnx_load(const char *path, unsigned flags, nb_model **out)
{
    if (!path || !out) return nb_fail(NB_ERR_ARG, "onnx import: NULL argument");
    *out = NULL;
    void *data;
    size_t len;
    nb_status s = nb_read_file(path, (size_t)1 << 31, &data, &len);
    if (s) return s;
    s = nb_onnx_parse(data, len, flags, out);
    free(data);
    if (s) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", nb_last_error());
        nb_fail(s, "'%s': %s", path, msg);
    }
    return s;
}
