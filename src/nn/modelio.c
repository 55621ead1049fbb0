/* Model files: safetensors with Keras-layout weights named
 * "<layer>.kernel" / "<layer>.bias" and the metadata nabla.spec, nabla.input
 * and nabla.format (DESIGN.md). */
#include "nn_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Largest dimension a parsed shape takes. */
#define NB_SHAPE_DIM_MAX (1 << 24)

nb_status nb_shape_parse(const char *text, int *rank, int64_t *shape)
{
    if (!text || !rank || !shape) return nb_fail(NB_ERR_ARG, "shape: NULL argument");
    int r = 0;
    const char *p = text;
    while (*p) {
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || (errno && errno != ERANGE) || v < 1)
            return nb_fail(NB_ERR_FORMAT, "shape '%s': expected positive integers separated by commas, e.g. 28,28,1",
                           text);
        if (errno == ERANGE || v > NB_SHAPE_DIM_MAX)
            return nb_fail(NB_ERR_FORMAT, "shape '%s': dimension %.*s is larger than the limit of %d (2^24)", text,
                           (int)(end - p > 40 ? 40 : end - p), p, NB_SHAPE_DIM_MAX);
        if (r == NB_MAX_RANK - 1) return nb_fail(NB_ERR_FORMAT, "shape '%s': at most %d dimensions", text, NB_MAX_RANK - 1);
        shape[r++] = v;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',' || *p == 'x') p++;
        else if (*p) return nb_fail(NB_ERR_FORMAT, "shape '%s': unexpected '%c'", text, *p);
    }
    if (r == 0) return nb_fail(NB_ERR_FORMAT, "shape '%s' is empty", text);
    *rank = r;
    return NB_OK;
}

nb_status nb_model_export(nb_model *m, nb_safetensors *st)
{
    if (!m || !st) return nb_fail(NB_ERR_ARG, "model export: NULL argument");
    nb_status s = NB_OK;
    for (int i = 0; i < m->nparams && !s; i++) s = nb_safetensors_add(st, m->params[i]->name, &m->params[i]->value);
    char input[256];
    size_t u = 0;
    for (int d = 0; d < m->in_rank; d++)
        u += (size_t)snprintf(input + u, sizeof input - u, d ? ",%lld" : "%lld", (long long)m->in_shape[d]);
    if (!s) s = nb_safetensors_set_meta(st, "nabla.spec", nb_model_spec(m));
    if (!s) s = nb_safetensors_set_meta(st, "nabla.input", input);
    if (!s) s = nb_safetensors_set_meta(st, "nabla.format", "1");
    if (!s && m->classes) s = nb_safetensors_set_meta(st, "nabla.classes", m->classes);
    return s;
}

nb_status nb_model_save(nb_model *m, const char *path)
{
    nb_safetensors *st = nb_safetensors_new();
    if (!st) return NB_ERR_NOMEM;
    nb_status s = nb_model_export(m, st);
    if (!s) s = nb_safetensors_write(path, st, 0);
    nb_safetensors_free(st);
    return s;
}

/* The index of the layer that parameter i belongs to and that layer's spec
 * line, for messages. */
static void param_layer(const nb_model *m, int i, int *idx, char *line, size_t n)
{
    *idx = m->param_layer[i];
    nb_layer_spec_str(&m->layers[*idx], line, n);
}

#define NOT_TOGETHER "the weights and the spec do not belong together"

/* Every tensor of st is a parameter of m or optimiser state ("optim.*",
 * which nb_optim_import checks itself). */
static nb_status check_no_extra_tensors(const nb_model *m, const nb_safetensors *st)
{
    const char *first = NULL;
    int extra = 0;
    for (int i = 0; i < nb_safetensors_count(st); i++) {
        const char *name = nb_safetensors_name(st, i);
        if (!strncmp(name, "optim.", 6)) continue;
        bool known = false;
        for (int j = 0; j < m->nparams && !known; j++) known = !strcmp(m->params[j]->name, name);
        if (known) continue;
        if (!first) first = name;
        extra++;
    }
    if (!extra) return NB_OK;
    char more[48] = "", params[160], shown[108];
    if (extra > 1) snprintf(more, sizeof more, " (and %d more)", extra - 1);
    if (m->nparams)
        snprintf(params, sizeof params, "parameters %.60s to %.60s", m->params[0]->name,
                 m->params[m->nparams - 1]->name);
    else
        snprintf(params, sizeof params, "no parameters");
    return nb_fail(NB_ERR_FORMAT,
                   "model file: tensor '%s'%s is not a parameter of nabla.spec (%d layer%s, %s): " NOT_TOGETHER,
                   nb_escape_text(shown, sizeof shown, first, 100), more, m->nlayers, m->nlayers == 1 ? "" : "s", params);
}

/* Refuses a parameter holding NaN or Inf (unless allowed): such weights
 * make every output NaN, silently. */
static nb_status check_finite(const nb_node *p)
{
    const nb_tensor *v = &p->value;
    int64_t nan = 0, inf = 0;
    for (int64_t j = 0; j < v->size; j++) {
        nan += isnan(v->data[j]) != 0;
        inf += isinf(v->data[j]) != 0;
    }
    if (!nan && !inf) return NB_OK;
    return nb_fail(NB_ERR_NUMERIC,
                   "model file: '%s' holds %lld non-finite value%s (%lld NaN, %lld infinite) of its %lld: the model "
                   "would compute NaN; retrain it (e.g. with a smaller learning rate) or use an earlier checkpoint",
                   p->name, (long long)(nan + inf), nan + inf == 1 ? "" : "s", (long long)nan, (long long)inf,
                   (long long)v->size);
}

nb_status nb_model_import_flags(const nb_safetensors *st, unsigned flags, nb_model **out)
{
    if (!st || !out) return nb_fail(NB_ERR_ARG, "model import: NULL argument");
    *out = NULL;
    if (flags & ~(unsigned)NB_LOAD_ALLOW_NONFINITE)
        return nb_fail(NB_ERR_ARG, "model import: unknown flags 0x%x", flags & ~(unsigned)NB_LOAD_ALLOW_NONFINITE);
    const char *spec = nb_safetensors_meta(st, "nabla.spec"), *input = nb_safetensors_meta(st, "nabla.input");
    if (!spec || !input)
        return nb_fail(NB_ERR_FORMAT, "model file: no nabla.spec / nabla.input metadata (is it a nabla model? "
                                      "a plain safetensors file needs --model SPEC and --input to be read)");
    int rank;
    int64_t shape[NB_MAX_RANK];
    nb_status s = nb_shape_parse(input, &rank, shape);
    if (s) return s;
    nb_model *m;
    if ((s = nb_model_from_spec(spec, rank, shape, &m))) return s;
    /* The structure first (every parameter present with its shape, nothing
     * else), then the values. Messages are formatted before m is freed. */
    for (int i = 0; i < m->nparams && !s; i++) {
        const nb_node *p = m->params[i];
        const nb_tensor *v = &p->value, *t = nb_safetensors_get(st, p->name);
        char s1[96], s2[96], line[96];
        int layer;
        if (!t) {
            param_layer(m, i, &layer, line, sizeof line);
            s = nb_fail(NB_ERR_FORMAT,
                        "model file: nabla.spec (layer %d, %s) needs '%s' of shape %s, the file has no such tensor: "
                        NOT_TOGETHER, layer, line, p->name, NB_SHAPE_STR(v, s1));
            break;
        }
        bool same = t->rank == v->rank;
        for (int d = 0; same && d < v->rank; d++) same = t->shape[d] == v->shape[d];
        if (!same) {
            param_layer(m, i, &layer, line, sizeof line);
            s = nb_fail(NB_ERR_FORMAT,
                        "model file: '%s' has shape %s, but nabla.spec (layer %d, %s) needs %s: " NOT_TOGETHER, p->name,
                        NB_SHAPE_STR(t, s1), layer, line, NB_SHAPE_STR(v, s2));
        }
    }
    if (!s) s = check_no_extra_tensors(m, st);
    if (!s && nb_safetensors_meta(st, "nabla.classes"))
        s = nb_model_set_class_names(m, nb_safetensors_meta(st, "nabla.classes"));
    for (int i = 0; i < m->nparams && !s; i++) {
        nb_tensor *v = &m->params[i]->value;
        memcpy(v->data, nb_safetensors_get(st, m->params[i]->name)->data, (size_t)v->size * sizeof(nb_real));
        if (!(flags & NB_LOAD_ALLOW_NONFINITE)) s = check_finite(m->params[i]);
    }
    if (s) {
        nb_model_free(m);
        return s;
    }
    *out = m;
    return NB_OK;
}

nb_status nb_model_import(const nb_safetensors *st, nb_model **out) { return nb_model_import_flags(st, 0, out); }

nb_status nb_model_load_flags(const char *path, unsigned flags, nb_model **out)
{
    if (!out) return nb_fail(NB_ERR_ARG, "model load: NULL argument");
    *out = NULL;
    const size_t n = path ? strlen(path) : 0;
    if (n > 5 && !strcmp(path + n - 5, ".onnx")) return nb_onnx_load(path, flags, out); /* every --model takes ONNX */
    nb_safetensors *st;
    nb_status s = nb_safetensors_read(path, &st);
    if (s) return s;
    s = nb_model_import_flags(st, flags, out);
    nb_safetensors_free(st);
    if (s) {
        nb_fail(s, "'%s': %s", path, nb_last_error()); /* (nb_fail formats apart: it may wrap its own message) */
    }
    return s;
}

nb_status nb_model_load(const char *path, nb_model **out) { return nb_model_load_flags(path, 0, out); }
