/* The sequential model: layers as graph builders. Each layer appends its
 * parameters and ops to the model's graph as soon as it is added, so a layer
 * that does not fit is refused at once with the shapes in the message. */
#include "layers/layers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

nb_model *nb_model_new(int input_rank, const int64_t *input_shape)
{
    if (input_rank < 1 || input_rank > NB_MAX_RANK - 1 || !input_shape) {
        nb_fail(NB_ERR_ARG, "model: input rank must be 1..%d (e.g. 28,28,1 or 784)", NB_MAX_RANK - 1);
        return NULL;
    }
    for (int d = 0; d < input_rank; d++)
        if (input_shape[d] < 1 || input_shape[d] > (1 << 24)) {
            nb_fail(NB_ERR_ARG, "model: input dimension %d is %lld, must be 1..%d", d, (long long)input_shape[d],
                    1 << 24);
            return NULL;
        }
    nb_model *m = calloc(1, sizeof *m);
    if (!m) {
        nb_fail(NB_ERR_NOMEM, "model: out of memory");
        return NULL;
    }
    m->in_rank = input_rank;
    memcpy(m->in_shape, input_shape, sizeof(int64_t) * (size_t)input_rank);
    m->batch = 1;
    m->g = nb_graph_new();
    int64_t shape[NB_MAX_RANK] = {1};
    memcpy(shape + 1, input_shape, sizeof(int64_t) * (size_t)input_rank);
    m->input = m->g ? nb_input(m->g, "input", input_rank + 1, shape) : NULL;
    if (!m->input) {
        nb_model_free(m);
        return NULL;
    }
    m->output = m->logits = m->input;
    return m;
}

void nb_model_free(nb_model *m)
{
    if (!m) return;
    nb_graph_free(m->g);
    free(m->layers);
    free(m->spec);
    free(m->classes);
    free(m);
}

nb_status nb_model_set_class_names(nb_model *m, const char *names)
{
    if (!m) return nb_fail(NB_ERR_ARG, "class names: model is NULL");
    for (const char *p = names; p && *p; p++)
        if ((unsigned char)*p < 32 && *p != '\n')
            return nb_fail(NB_ERR_ARG, "class names: control character 0x%02x in the names", (unsigned char)*p);
    char *copy = NULL;
    if (names && !(copy = malloc(strlen(names) + 1))) return nb_fail(NB_ERR_NOMEM, "class names: out of memory");
    if (copy) memcpy(copy, names, strlen(names) + 1);
    free(m->classes);
    m->classes = copy;
    return NB_OK;
}

const char *nb_model_class_names(const nb_model *m) { return m ? m->classes : NULL; }

/* Layer idx on input x through its kind's entry: the nodes it adds; *pre
 * gets the value before the layer's activation (the logits of a final
 * softmax). A failure of an op is wrapped with the layer and its input. */
static nb_node *build_layer(nb_model *m, int idx, const nb_layer_spec *l, nb_node *x, nb_node **pre)
{
    char lb[400];
    nb_layer_ctx c = {
        .m = m, .index = idx, .line = nb_layer_spec_str(l, lb, sizeof lb), .type = nb_layer_type_of(l->kind)};
    nb_node *y = c.type->build(&c, l, x, pre);
    if (!y && !c.reported) {
        char s[96];
        nb_fail(NB_ERR_SHAPE, "layer %d (%s) on input %s: %s", idx, lb, NB_SHAPE_STR(nb_value(x), s), nb_last_error());
    }
    /* cppcheck-suppress returnDanglingLifetime ; y is a graph node, c only lent to build */
    return y;
}

nb_status nb_model_add(nb_model *m, const nb_layer_spec *l)
{
    if (!m || !l) return nb_fail(NB_ERR_ARG, "model_add: NULL argument");
    if (m->loss) return nb_fail(NB_ERR_ARG, "model_add: the model's loss is already built; add layers first");
    if (m->nlayers == NB_MODEL_MAX_LAYERS) return nb_fail(NB_ERR_ARG, "model: more than %d layers", NB_MODEL_MAX_LAYERS);
    char why[160];
    if (!nb_layer_spec_check(l, why, sizeof why)) /* its spec line must read back as it (model files) */
        return nb_fail(NB_ERR_ARG, "layer %d: %s", m->nlayers, why);
    for (int i = 0; l->name[0] && i < m->nlayers; i++)
        if (!strcmp(m->layers[i].name, l->name))
            return nb_fail(NB_ERR_ARG, "layer %d: the name '%s' is already layer %d's; give each output its own name",
                           m->nlayers, l->name, i);
    if (m->nlayers == m->cap) { /* room first, so that nothing fails after the layer is built */
        int cap = m->cap ? m->cap * 2 : 8;
        nb_layer_spec *q = realloc(m->layers, (size_t)cap * sizeof *q);
        if (!q) return nb_fail(NB_ERR_NOMEM, "model: out of memory");
        m->layers = q, m->cap = cap;
    }
    nb_clear_error();
    int idx = m->nlayers;
    int graph_n = nb_graph_size(m->g), nparams = m->nparams;
    nb_node *pre = NULL, *y = build_layer(m, idx, l, m->output, &pre);
    if (!y) {
        /* Drop what the failed layer added, so the model stays usable. */
        while (nb_graph_size(m->g) > graph_n) nb_graph_pop(m->g);
        m->nparams = nparams;
        return NB_ERR_SHAPE;
    }
    /* Op nodes are named "<layer>.<op>" (e.g. "4.matmul", "4.relu"), so a
     * NaN guard or a gradient names the layer it comes from. */
    for (int i = graph_n; i < nb_graph_size(m->g); i++) {
        nb_node *node = nb_graph_node(m->g, i);
        if (node->kind != NB_KIND_OP) continue;
        char name[64];
        snprintf(name, sizeof name, "%d.%s", idx, node->op->name);
        nb_node_set_name(node, name);
    }
    m->layers[m->nlayers] = *l;
    m->layer_out[m->nlayers] = y;
    m->nlayers++;
    /* The output activation is the last layer's, looking through layers
     * that are identities in inference (dropout, linear). A final softmax or
     * sigmoid has its input as the logits, log_softmax its output; the
     * losses read those, so a dropout after them (on probabilities) leaves
     * the losses as they are. Anywhere else they are ordinary layers. */
    const nb_layer_type *type = nb_layer_type_of(l->kind);
    const bool identity = type->identity && type->identity(l);
    if (!identity) {
        m->out_act = l->act;
        m->logits = (l->act == NB_ACT_SOFTMAX || l->act == NB_ACT_SIGMOID) ? pre : y;
    } else if (m->out_act != NB_ACT_SOFTMAX && m->out_act != NB_ACT_SIGMOID && m->out_act != NB_ACT_LOG_SOFTMAX) {
        m->logits = y; /* a dropout on logits is part of them */
    }
    m->output = y;
    free(m->spec);
    m->spec = NULL;
    return NB_OK;
}

nb_status nb_model_dense(nb_model *m, int units, nb_activation act)
{
    nb_layer_spec l = {.kind = NB_LAYER_DENSE, .units = units, .act = act};
    if (units < 1) return nb_fail(NB_ERR_ARG, "dense: units must be >= 1, got %d", units);
    return nb_model_add(m, &l);
}
nb_status nb_model_neuron(nb_model *m, nb_activation act) { return nb_model_dense(m, 1, act); }
nb_status nb_model_conv2d(nb_model *m, int filters, int size, nb_activation act, int stride, nb_padding pad)
{
    nb_layer_spec l = {.kind = NB_LAYER_CONV2D, .units = filters, .size = size, .stride = stride, .act = act,
                       .padding = pad};
    if (filters < 1 || size < 1 || stride < 0)
        return nb_fail(NB_ERR_ARG, "conv2d: filters and size must be >= 1, stride >= 0");
    return nb_model_add(m, &l);
}
nb_status nb_model_maxpool(nb_model *m, int size, int stride)
{
    nb_layer_spec l = {.kind = NB_LAYER_MAXPOOL, .size = size, .stride = stride};
    return nb_model_add(m, &l);
}
nb_status nb_model_avgpool(nb_model *m, int size, int stride)
{
    nb_layer_spec l = {.kind = NB_LAYER_AVGPOOL, .size = size, .stride = stride};
    return nb_model_add(m, &l);
}
nb_status nb_model_flatten(nb_model *m)
{
    nb_layer_spec l = {.kind = NB_LAYER_FLATTEN};
    return nb_model_add(m, &l);
}
nb_status nb_model_dropout(nb_model *m, double rate)
{
    nb_layer_spec l = {.kind = NB_LAYER_DROPOUT, .rate = rate};
    if (!(rate >= 0 && rate < 1)) return nb_fail(NB_ERR_ARG, "dropout: rate must be in [0, 1), got %g", rate);
    return nb_model_add(m, &l);
}
nb_status nb_model_activation(nb_model *m, nb_activation act)
{
    nb_layer_spec l = {.kind = NB_LAYER_ACTIVATION, .act = act};
    return nb_model_add(m, &l);
}

/* The entry of layers[0 .. n) named name, -1 if none. */
static int entry_named(const nb_layer_spec *layers, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(layers[i].name, name)) return i;
    return -1;
}

/* What only the whole spec shows: a reference to a name given later (the
 * layer would only say "unknown"), and a branch nobody uses (an entry
 * before `from` whose output is neither named nor read by a later entry:
 * its layers would be computed for nothing, almost always a forgotten
 * `add`). */
static nb_status check_graph(const nb_layer_spec *layers, int n)
{
    for (int i = 0; i < n; i++)
        for (int r = 0; r < layers[i].nrefs; r++) {
            int at = entry_named(layers, n, layers[i].refs[r]);
            if (at >= i)
                return nb_fail(NB_ERR_FORMAT, "layer %d ('%s'): '%s' is the output of layer %d, %s; an entry can use "
                               "only earlier outputs (a model has no cycles)", i, layers[i].refs[r],
                               layers[i].refs[r], at, at == i ? "itself" : "a later one");
        }
    for (int i = 1; i < n; i++) {
        if (layers[i].kind != NB_LAYER_FROM) continue;
        const char *name = layers[i - 1].name;
        int used = 0;
        for (int j = i; j < n && name[0] && !used; j++)
            for (int r = 0; r < layers[j].nrefs && !used; r++) used = !strcmp(layers[j].refs[r], name);
        if (!used)
            return nb_fail(NB_ERR_FORMAT, "layer %d (from %s): the output of layer %d%s%s%s is never used (an unused "
                           "branch); name it with 'as NAME' and use it in an 'add' or 'concat', or remove it", i,
                           layers[i].refs[0], i - 1, name[0] ? " ('" : "", name, name[0] ? "')" : "");
    }
    return NB_OK;
}

nb_status nb_model_from_spec(const char *spec, int input_rank, const int64_t *input_shape, nb_model **out)
{
    if (!out) return nb_fail(NB_ERR_ARG, "model_from_spec: out is NULL");
    *out = NULL;
    nb_layer_spec *layers;
    int n;
    nb_status s = nb_spec_parse(spec, &layers, &n);
    if (s) return s;
    if ((s = check_graph(layers, n))) {
        free(layers);
        return s;
    }
    nb_model *m = nb_model_new(input_rank, input_shape);
    if (!m) {
        free(layers);
        return NB_ERR_ARG;
    }
    for (int i = 0; i < n && !s; i++) s = nb_model_add(m, &layers[i]);
    free(layers);
    if (s) {
        nb_model_free(m);
        return s;
    }
    *out = m;
    return NB_OK;
}

const char *nb_model_spec(const nb_model *cm)
{
    nb_model *m = (nb_model *)cm;
    if (!m) return "";
    if (!m->spec) {
        size_t cap = (size_t)m->nlayers * 400 + 1, u = 0;
        m->spec = malloc(cap);
        if (!m->spec) return "";
        m->spec[0] = '\0';
        for (int i = 0; i < m->nlayers; i++) {
            char b[400];
            nb_layer_spec_str(&m->layers[i], b, sizeof b);
            u += (size_t)snprintf(m->spec + u, cap - u, "%s%s", i ? "; " : "", b);
        }
    }
    return m->spec;
}

int nb_model_num_layers(const nb_model *m) { return m ? m->nlayers : 0; }
const nb_layer_spec *nb_model_layer(const nb_model *m, int i)
{
    return m && i >= 0 && i < m->nlayers ? &m->layers[i] : NULL;
}
int nb_model_layer_shape(const nb_model *m, int i, int64_t *shape)
{
    if (!m || i < 0 || i >= m->nlayers) return -1;
    const nb_tensor *v = &m->layer_out[i]->value;
    for (int d = 1; d < v->rank; d++) shape[d - 1] = v->shape[d];
    return v->rank - 1;
}
nb_node *nb_model_layer_output(nb_model *m, int i)
{
    if (!m || i < 0 || i >= m->nlayers) {
        nb_fail(NB_ERR_ARG, "layer output: no layer %d (the model has %d)", i, m ? m->nlayers : 0);
        return NULL;
    }
    if (m->layer_out[i]->fused_into) {
        char b[400];
        nb_fail(NB_ERR_ARG,
                "layer %d (%s) is fused with the pool after it: its output is never computed; name it in the spec "
                "(ENTRY as NAME) to keep it",
                i, nb_layer_spec_str(&m->layers[i], b, sizeof b));
        return NULL;
    }
    return m->layer_out[i];
}
int nb_model_input_shape(const nb_model *m, int64_t *shape)
{
    if (!m) return -1;
    memcpy(shape, m->in_shape, sizeof(int64_t) * (size_t)m->in_rank);
    return m->in_rank;
}
int64_t nb_model_num_params(const nb_model *m)
{
    int64_t n = 0;
    for (int i = 0; m && i < m->nparams; i++) n += m->params[i]->value.size;
    return n;
}
int nb_model_param_count(const nb_model *m) { return m ? m->nparams : 0; }
int nb_model_trainable_count(const nb_model *m)
{
    int k = 0;
    for (int i = 0; m && i < m->nparams; i++) k += m->params[i]->requires_grad;
    return k;
}
nb_node *nb_model_param(nb_model *m, int i) { return m && i >= 0 && i < m->nparams ? m->params[i] : NULL; }
nb_node *nb_model_find_param(nb_model *m, const char *name)
{
    for (int i = 0; m && name && i < m->nparams; i++)
        if (!strcmp(m->params[i]->name, name)) return m->params[i];
    return NULL;
}
nb_graph *nb_model_graph(nb_model *m) { return m ? m->g : NULL; }
nb_node *nb_model_input(nb_model *m) { return m ? m->input : NULL; }
nb_node *nb_model_output(nb_model *m) { return m ? m->output : NULL; }
nb_node *nb_model_logits(nb_model *m) { return m ? m->logits : NULL; }
nb_activation nb_model_output_activation(const nb_model *m) { return m ? m->out_act : NB_ACT_NONE; }

/* What layer i reads, for summary's Inputs column: the current tensor
 * (the entry before it by name, or its index; `input` first; what a `from`
 * made current) and the names it references. */
static void layer_inputs(const nb_model *m, int i, char *buf, size_t n)
{
    const nb_layer_spec *l = &m->layers[i];
    size_t u = 0;
    if (l->kind != NB_LAYER_FROM) {
        const nb_layer_spec *p = i ? &m->layers[i - 1] : NULL;
        if (!p) u += (size_t)snprintf(buf, n, "input");
        else if (p->name[0]) u += (size_t)snprintf(buf, n, "%s", p->name);
        else if (p->kind == NB_LAYER_FROM) u += (size_t)snprintf(buf, n, "%s", p->refs[0]);
        else u += (size_t)snprintf(buf, n, "%d", i - 1);
    }
    for (int r = 0; r < l->nrefs && u < n; r++) u += (size_t)snprintf(buf + u, n - u, "%s%s", u ? ", " : "", l->refs[r]);
    if (!u && n) buf[0] = '\0';
}

/* 1 if some entry has a name or references one (a graph, not a stack). */
static int is_graph(const nb_model *m)
{
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i].name[0] || m->layers[i].nrefs) return 1;
    return 0;
}

/* A layer's output shape with the batch as N, "(N, 26, 26, 32)". */
static const char *batch_shape_str(int rank, const int64_t *shape, char *buf, size_t n)
{
    int64_t s[NB_MAX_RANK];
    memcpy(s, shape, sizeof(int64_t) * (size_t)rank);
    s[0] = -1;
    nb_shape_str(rank, s, buf, n);
    if (!strncmp(buf, "(-1", 3)) memmove(buf + 1, buf + 2, strlen(buf + 2) + 1), buf[1] = 'N';
    return buf;
}

/* The widths of summary's Layer and Output shape columns: the longest
 * entry's spec line and shape (at least Keras's 34 and 22). */
static void summary_widths(const nb_model *m, int *wl, int *ws)
{
    *wl = 34, *ws = 22;
    char s[96], lb[400];
    int64_t in_shape[NB_MAX_RANK + 1] = {-1};
    memcpy(in_shape + 1, m->in_shape, sizeof(int64_t) * (size_t)m->in_rank);
    int len = (int)strlen(batch_shape_str(m->in_rank + 1, in_shape, s, sizeof s));
    if (len > *ws) *ws = len;
    for (int i = 0; i < m->nlayers; i++) {
        len = (int)strlen(nb_layer_spec_str(&m->layers[i], lb, sizeof lb));
        if (len > *wl) *wl = len;
        const nb_tensor *v = &m->layer_out[i]->value;
        len = (int)strlen(batch_shape_str(v->rank, v->shape, s, sizeof s));
        if (len > *ws) *ws = len;
    }
}

/* Every parameter's name, shape and size ("0.kernel  (3, 3, 1, 32)  288"),
 * the names padded to the longest; returns the bytes it wanted (snprintf's). */
static size_t summary_params(const nb_model *m, char *buf, size_t n)
{
    size_t u = 0;
    int wn = 0, wsh = 0;
    char s[96];
    for (int p = 0; p < m->nparams; p++) {
        int len = (int)strlen(m->params[p]->name);
        if (len > wn) wn = len;
        len = (int)strlen(NB_SHAPE_STR(&m->params[p]->value, s));
        if (len > wsh) wsh = len;
    }
    if (m->nparams) u += (size_t)snprintf(buf, n, "Parameters:\n");
    for (int p = 0; p < m->nparams; p++) {
        const nb_tensor *t = &m->params[p]->value;
        u += (size_t)snprintf(buf + (u < n ? u : n), u < n ? n - u : 0, "  %-*s %-*s %12lld\n", wn, m->params[p]->name,
                              wsh, NB_SHAPE_STR(t, s), (long long)t->size);
    }
    return u;
}

nb_status nb_model_summary(const nb_model *m, char *buf, size_t n)
{
    if (!m || !buf || n == 0) return nb_fail(NB_ERR_ARG, "summary: NULL argument or empty buffer");
    size_t u = 0;
#define PUT(...) (u += (size_t)snprintf(buf + (u < n ? u : n), u < n ? n - u : 0, __VA_ARGS__))
    char s[96];
    const int graph = is_graph(m); /* then an Inputs column, as Keras's "Connected to" */
    int wl, ws;
    summary_widths(m, &wl, &ws);
    const int rule = 4 + 1 + wl + 1 + ws + 1 + 12;
    PUT("%-4s %-*s %-*s %12s%s\n", "#", wl, "Layer", ws, "Output shape", "Param #", graph ? "  Inputs" : "");
    for (int k = 0; k < rule; k++)
        PUT("=");
    PUT("\n");
    int64_t in_shape[NB_MAX_RANK + 1] = {-1};
    memcpy(in_shape + 1, m->in_shape, sizeof(int64_t) * (size_t)m->in_rank);
    PUT("%-4s %-*s %-*s %12d\n", "", wl, "input", ws, batch_shape_str(m->in_rank + 1, in_shape, s, sizeof s), 0);
    int p = 0;
    for (int i = 0; i < m->nlayers; i++) {
        char lb[400];
        int64_t count = 0;
        for (; p < m->nparams && m->param_layer[p] == i; p++)
            count += m->params[p]->value.size;
        const nb_tensor *v = &m->layer_out[i]->value;
        PUT("%-4d %-*s %-*s %12lld", i, wl, nb_layer_spec_str(&m->layers[i], lb, sizeof lb), ws,
            batch_shape_str(v->rank, v->shape, s, sizeof s), (long long)count);
        if (graph) layer_inputs(m, i, lb, sizeof lb), PUT("  %s", lb);
        PUT("\n");
    }
    for (int k = 0; k < rule; k++)
        PUT("=");
    PUT("\n");
    int64_t total = nb_model_num_params(m);
    PUT("Total params: %lld (%.2f KiB as float32)\n", (long long)total, (double)total * 4 / 1024);
    int64_t frozen = 0; /* batchnorm's moving statistics: state, not trained (Keras's split) */
    for (int q = 0; q < m->nparams; q++)
        if (!m->params[q]->requires_grad) frozen += m->params[q]->value.size;
    if (frozen)
        PUT("Trainable params: %lld\nNon-trainable params: %lld\n", (long long)(total - frozen), (long long)frozen);
    u += summary_params(m, buf + (u < n ? u : n), u < n ? n - u : 0);
#undef PUT
    if (u >= n) return nb_fail(NB_ERR_ARG, "summary: the table needs %zu bytes, the buffer holds %zu", u + 1, n);
    /* -1 prints as the batch dimension; make it read "N". */
    for (char *q = buf; (q = strstr(q, "(-1")) != NULL;)
        memcpy(q, "(N ", 3), memmove(q + 2, q + 3, strlen(q + 3) + 1);
    return NB_OK;
}

/* ------------------------------------------------------------ init */

/* fan_in and fan_out as Keras's: the receptive field (every dimension but
 * the last two) times the input and output channels; 1 for rank < 2. */
static void fans(const nb_tensor *t, double *fan_in, double *fan_out)
{
    int64_t rf = 1;
    for (int d = 0; d + 2 < t->rank; d++) rf *= t->shape[d];
    *fan_in = t->rank >= 2 ? (double)(rf * t->shape[t->rank - 2]) : 1;
    *fan_out = t->rank >= 2 ? (double)(rf * t->shape[t->rank - 1]) : 1;
}

/* A weight by the model's initialiser. */
static void init_weight(nb_tensor *t, nb_init init, nb_rng *r)
{
    double fan_in, fan_out, limit;
    fans(t, &fan_in, &fan_out);
    switch (init) {
    case NB_INIT_HE_UNIFORM: limit = sqrt(6 / fan_in); nb_tensor_fill_uniform(t, r, -limit, limit); break;
    case NB_INIT_HE_NORMAL: nb_tensor_fill_normal(t, r, 0, sqrt(2 / fan_in)); break;
    case NB_INIT_TORCH_DEFAULT: /* kaiming_uniform(a = sqrt 5): bound 1/sqrt(fan_in) */
        limit = 1 / sqrt(fan_in);
        nb_tensor_fill_uniform(t, r, -limit, limit);
        break;
    default: limit = sqrt(6 / (fan_in + fan_out)); nb_tensor_fill_uniform(t, r, -limit, limit); break;
    }
}

/* A bias: zero (Keras), or PyTorch's U(+-1/sqrt(fan_in)) with the fan_in of
 * its layer's first weight. */
static void init_bias(const nb_model *m, int i, nb_init init, nb_rng *r)
{
    nb_tensor *t = &m->params[i]->value;
    if (init != NB_INIT_TORCH_DEFAULT) {
        memset(t->data, 0, (size_t)t->size * sizeof(nb_real));
        return;
    }
    double fan_in = 1, fan_out;
    for (int j = 0; j < m->nparams; j++)
        if (m->param_layer[j] == m->param_layer[i] && m->param_init[j] == NB_PARAM_WEIGHT) {
            fans(&m->params[j]->value, &fan_in, &fan_out);
            break;
        }
    double b = 1 / sqrt(fan_in);
    nb_tensor_fill_uniform(t, r, -b, b);
}

static void fill_constant(nb_tensor *t, nb_real v)
{
    for (int64_t i = 0; i < t->size; i++) t->data[i] = v;
}

nb_status nb_model_init(nb_model *m, nb_init init, uint64_t seed)
{
    if (!m) return nb_fail(NB_ERR_ARG, "init: model is NULL");
    nb_rng r;
    nb_rng_seed(&r, seed);
    /* One stream in parameter order: the same seed gives the same weights. */
    for (int i = 0; i < m->nparams; i++) {
        switch ((nb_param_init)m->param_init[i]) {
        case NB_PARAM_WEIGHT: init_weight(&m->params[i]->value, init, &r); break;
        case NB_PARAM_BIAS: init_bias(m, i, init, &r); break;
        case NB_PARAM_ONES:
        case NB_PARAM_STATE_ONES: fill_constant(&m->params[i]->value, 1); break;
        case NB_PARAM_ZEROS:
        case NB_PARAM_STATE_ZEROS: fill_constant(&m->params[i]->value, 0); break;
        }
    }
    return NB_OK;
}

/* ------------------------------------------------------------ running */

nb_status nb_model_set_batch(nb_model *m, int64_t batch)
{
    if (!m || batch < 1) return nb_fail(NB_ERR_ARG, "set_batch: batch must be >= 1, got %lld", (long long)batch);
    if (batch == m->batch) return NB_OK;
    nb_tensor *v = &m->input->value;
    int64_t shape[NB_MAX_RANK];
    memcpy(shape, v->shape, sizeof shape);
    shape[0] = batch;
    nb_status s = nb_input_reshape(m->input, v->rank, shape);
    if (!s && m->target) {
        v = &m->target->value;
        memcpy(shape, v->shape, sizeof shape);
        shape[0] = batch;
        s = nb_input_reshape(m->target, v->rank, shape);
    }
    if (!s) m->batch = batch;
    return s;
}

nb_status nb_model_loss(nb_model *m, nb_loss_kind kind, nb_node **target, nb_node **loss)
{
    if (!m) return nb_fail(NB_ERR_ARG, "loss: model is NULL");
    if (m->nlayers == 0) return nb_fail(NB_ERR_ARG, "loss: the model has no layers");
    if ((unsigned)kind > NB_LOSS_BCE)
        return nb_fail(NB_ERR_ARG, "loss: unknown loss kind %d (NB_LOSS_CCE, NB_LOSS_MSE or NB_LOSS_BCE)", (int)kind);
    if (!m->loss || m->loss_kind != kind) {
        if (m->loss)
            return nb_fail(NB_ERR_ARG,
                           "loss: this model already has a loss, %s, and cannot have a second (%s): build another "
                           "model (from the same spec or file) for it",
                           nb_loss_name(m->loss_kind), nb_loss_name(kind));
        nb_status ps = nb_graph_prepare(m->g); /* the output's shape at the current batch */
        if (ps) return ps;
        const nb_tensor *o = &m->output->value;
        char s[96];
        if (kind == NB_LOSS_CCE) {
            if (o->rank != 2)
                return nb_fail(NB_ERR_SHAPE, "loss cce: needs an output (N, classes), got %s", NB_SHAPE_STR(o, s));
            int64_t ts[1] = {m->batch};
            m->target = nb_input(m->g, "~labels", 1, ts);
            m->loss = nb_cce_logits_loss(m->logits, m->target);
        } else {
            m->target = nb_input(m->g, "~target", o->rank, o->shape);
            nb_node *z = m->output;
            if (kind == NB_LOSS_BCE) {
                /* From logits when the model's output activation is a sigmoid
                 * (stable), else its output is taken as logits. */
                z = m->out_act == NB_ACT_SIGMOID ? m->logits : m->output;
                m->loss = nb_bce_logits_loss(z, m->target);
            } else {
                m->loss = nb_mse_loss(z, m->target);
            }
        }
        if (!m->loss) return NB_ERR_SHAPE;
        m->loss_kind = kind;
    }
    if (target) *target = m->target;
    if (loss) *loss = m->loss;
    return NB_OK;
}

nb_status nb_model_predict(nb_model *m, const nb_tensor *x, int64_t batch, nb_tensor **out)
{
    if (!m || !x || !out) return nb_fail(NB_ERR_ARG, "predict: NULL argument");
    *out = NULL;
    char s1[96], s2[96];
    bool ok = x->rank == m->in_rank + 1;
    for (int d = 0; ok && d < m->in_rank; d++) ok = x->shape[d + 1] == m->in_shape[d];
    if (!ok) {
        int64_t want[NB_MAX_RANK] = {-1};
        memcpy(want + 1, m->in_shape, sizeof(int64_t) * (size_t)m->in_rank);
        return nb_fail(NB_ERR_SHAPE, "predict: input has shape %s, the model takes %s (N first)", NB_SHAPE_STR(x, s1),
                       nb_shape_str(m->in_rank + 1, want, s2, sizeof s2));
    }
    int64_t N = x->shape[0], row = N ? x->size / N : 0;
    if (batch < 1) batch = 256;
    nb_graph_set_training(m->g, 0, 0);
    const nb_tensor *o = &m->output->value;
    int64_t oshape[NB_MAX_RANK];
    memcpy(oshape, o->shape, sizeof oshape);
    oshape[0] = N;
    nb_tensor *res = nb_tensor_new(o->rank, oshape);
    if (!res) return NB_ERR_NOMEM;
    int64_t orow = N ? res->size / N : 0;
    nb_status s = NB_OK;
    for (int64_t i = 0; i < N && !s; i += batch) {
        int64_t b = N - i < batch ? N - i : batch;
        if ((s = nb_model_set_batch(m, b))) break;
        memcpy(m->input->value.data, x->data + i * row, (size_t)(b * row) * sizeof(nb_real));
        if ((s = nb_forward_upto(m->output))) break;
        memcpy(res->data + i * orow, m->output->value.data, (size_t)(b * orow) * sizeof(nb_real));
    }
    if (s) {
        nb_tensor_free(res);
        return s;
    }
    *out = res;
    return NB_OK;
}
