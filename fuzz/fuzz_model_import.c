/* libFuzzer target: nb_model_import on combinations of a spec, an input
 * shape and tensors that fit it, almost fit it or do not.
 *
 * Input: byte 0 holds flags, byte 1 a selector.
 *   flags & 1    raw: the rest is a safetensors file (nb_safetensors_parse)
 *   otherwise the rest is SPEC '\0' INPUT '\0' NEXTRA, NEXTRA records
 *   NAME '\0' RANK DIMS..., then value bytes (cycled; none: all 0.5):
 *   flags & 2    import with NB_LOAD_ALLOW_NONFINITE
 *   flags & 4    add every parameter the spec needs, with its shape
 *   flags & 8    ... but leave out parameter (selector % count)
 *   flags & 16   ... and give parameter (selector / 8 % count) one more
 *                element in its last dimension
 *   flags & 32   add optimiser state "optim.<first parameter>.m"
 *   flags & 64   leave out the nabla.input metadata
 * A value byte is 255: NaN, 254: +Inf, 253: -Inf, else (b - 128) / 16.
 *
 * Checks: import succeeds exactly when it returns a model, with a message
 * when not; a spec that does not build is refused; an imported model holds
 * the file's tensors bit for bit, every tensor of the file is one of its
 * parameters or optim.*, its weights are finite unless allowed, its spec
 * builds the same model again, and exporting and importing it again gives
 * the same weights; a forward pass runs. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nabla.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PARAMS 200000.0
#define MAX_VALUES 200000.0

/* An upper bound on the parameters, activations and im2col buffers of the
 * model a spec would build on an input shape: spatial sizes never grow
 * (stride >= 1, 'same' padding keeps them), so S (spatial) * c (channels)
 * bounds every activation. 0 when the work would be too much to fuzz. */
static int small_enough(const char *spec, const char *input)
{
    int rank;
    int64_t shape[NB_MAX_RANK];
    nb_layer_spec *l = NULL;
    int n = 0;
    if (nb_shape_parse(input, &rank, shape) != NB_OK) return 1; /* refused at once */
    if (nb_spec_parse(spec, &l, &n) != NB_OK) return 1;
    double S = 1, c = (double)shape[rank - 1], params = 0;
    for (int d = 0; d + 1 < rank; d++) S *= (double)shape[d];
    int ok = S * c <= MAX_VALUES;
    for (int i = 0; i < n && ok; i++) {
        switch (l[i].kind) {
        case NB_LAYER_CONV2D:
            if (S * l[i].size * l[i].size * c > 4 * MAX_VALUES) ok = 0;
            params += (double)l[i].size * l[i].size * c * l[i].units + l[i].units;
            c = l[i].units;
            break;
        case NB_LAYER_DENSE:
            params += S * c * l[i].units + l[i].units;
            S = 1;
            c = l[i].units;
            break;
        case NB_LAYER_FLATTEN:
            c *= S;
            S = 1;
            break;
        default: break;
        }
        if (params > MAX_PARAMS || S * c > MAX_VALUES) ok = 0;
    }
    free(l);
    return ok;
}

static nb_real value_of(uint8_t b)
{
    if (b == 255) return (nb_real)NAN;
    if (b == 254) return (nb_real)INFINITY;
    if (b == 253) return (nb_real)-INFINITY;
    return (nb_real)((b - 128) / 16.0);
}

typedef struct {
    const uint8_t *v;
    size_t n, at;
} values;

static void fill(nb_tensor *t, values *vs)
{
    for (int64_t i = 0; i < t->size; i++) t->data[i] = vs->n ? value_of(vs->v[vs->at++ % vs->n]) : (nb_real)0.5;
}

/* A NUL-terminated copy of the bytes up to the next '\0' (or the end). */
static char *take_string(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *z = memchr(*p, 0, (size_t)(end - *p));
    size_t n = z ? (size_t)(z - *p) : (size_t)(end - *p);
    char *s = malloc(n + 1);
    if (!s) abort();
    memcpy(s, *p, n);
    s[n] = '\0';
    *p += z ? n + 1 : n;
    return s;
}

static void add(nb_safetensors *st, const char *name, int rank, const int64_t *shape, values *vs)
{
    nb_tensor *t = nb_tensor_new(rank, shape);
    if (!t) abort();
    fill(t, vs);
    nb_safetensors_add(st, name, t); /* a bad name is refused: fine */
    nb_tensor_free(t);
}

/* The structured input as a model file in memory. NULL: nothing to fuzz. */
static nb_safetensors *build(const uint8_t *p, const uint8_t *end, unsigned flags, unsigned sel)
{
    char *spec = take_string(&p, end), *input = take_string(&p, end);
    nb_safetensors *st = NULL;
    if (!small_enough(spec, input)) goto done;
    st = nb_safetensors_new();
    if (!st) abort();
    nb_safetensors_set_meta(st, "nabla.spec", spec);
    if (!(flags & 64)) nb_safetensors_set_meta(st, "nabla.input", input);
    nb_safetensors_set_meta(st, "nabla.format", "1");
    /* extra tensors first: their bytes come before the values */
    int nextra = p < end ? *p++ % 4 : 0;
    struct {
        char *name;
        int rank;
        int64_t shape[4];
    } extra[4];
    int ne = 0;
    for (int i = 0; i < nextra && p < end; i++) {
        extra[ne].name = take_string(&p, end);
        extra[ne].rank = p < end ? *p++ % 4 : 1;
        for (int d = 0; d < extra[ne].rank; d++) extra[ne].shape[d] = p < end ? *p++ % 5 : 1;
        ne++;
    }
    values vs = {p, (size_t)(end - p), 0};
    int rank;
    int64_t shape[NB_MAX_RANK];
    nb_model *m0 = NULL;
    if ((flags & 4) && nb_shape_parse(input, &rank, shape) == NB_OK &&
        nb_model_from_spec(spec, rank, shape, &m0) == NB_OK) {
        int np = nb_model_param_count(m0);
        for (int i = 0; i < np; i++) {
            nb_node *q = nb_model_param(m0, i);
            if ((flags & 8) && i == (int)(sel % (unsigned)np)) continue;
            nb_tensor *v = nb_value(q);
            int64_t s2[NB_MAX_RANK];
            memcpy(s2, v->shape, sizeof(int64_t) * (size_t)v->rank);
            if ((flags & 16) && i == (int)(sel / 8 % (unsigned)np)) s2[v->rank - 1]++;
            add(st, nb_node_name(q), v->rank, s2, &vs);
        }
        if ((flags & 32) && np) {
            char name[128];
            snprintf(name, sizeof name, "optim.%s.m", nb_node_name(nb_model_param(m0, 0)));
            add(st, name, nb_value(nb_model_param(m0, 0))->rank, nb_value(nb_model_param(m0, 0))->shape, &vs);
        }
    }
    nb_model_free(m0);
    for (int i = 0; i < ne; i++) {
        add(st, extra[i].name, extra[i].rank, extra[i].shape, &vs);
        free(extra[i].name);
    }
done:
    free(spec);
    free(input);
    return st;
}

static int all_finite(const nb_tensor *t)
{
    for (int64_t i = 0; i < t->size; i++)
        if (!isfinite((double)t->data[i])) return 0;
    return 1;
}

/* m's parameters hold st's tensors of the same names bit for bit. */
static void same_weights(nb_model *m, const nb_safetensors *st)
{
    for (int i = 0; i < nb_model_param_count(m); i++) {
        nb_node *q = nb_model_param(m, i);
        const nb_tensor *v = nb_value(q), *t = nb_safetensors_get(st, nb_node_name(q));
        if (!t || t->rank != v->rank || t->size != v->size) abort();
        if (memcmp(t->shape, v->shape, sizeof(int64_t) * (size_t)v->rank)) abort();
        if (v->size && memcmp(t->data, v->data, (size_t)v->size * sizeof(nb_real))) abort();
    }
}

static void check_imported(nb_model *m, const nb_safetensors *st, unsigned lflags)
{
    same_weights(m, st);
    for (int i = 0; i < nb_safetensors_count(st); i++) { /* nothing unaccounted for */
        const char *name = nb_safetensors_name(st, i);
        if (strncmp(name, "optim.", 6) && !nb_model_find_param(m, name)) abort();
    }
    int finite = 1;
    for (int i = 0; i < nb_model_param_count(m); i++) finite &= all_finite(nb_value(nb_model_param(m, i)));
    if (!finite && !(lflags & NB_LOAD_ALLOW_NONFINITE)) abort();
    /* Its spec builds the same model again, and prints the same. */
    int64_t in[NB_MAX_RANK];
    int rank = nb_model_input_shape(m, in);
    nb_model *again = NULL;
    if (nb_model_from_spec(nb_model_spec(m), rank, in, &again) != NB_OK) abort();
    if (strcmp(nb_model_spec(again), nb_model_spec(m)) || nb_model_num_params(again) != nb_model_num_params(m) ||
        nb_model_param_count(again) != nb_model_param_count(m))
        abort();
    nb_model_free(again);
    /* Export, serialise, parse, import: the same weights. */
    nb_safetensors *out = nb_safetensors_new(), *back = NULL;
    void *buf = NULL;
    size_t len = 0;
    if (!out || nb_model_export(m, out) != NB_OK) abort();
    if (nb_safetensors_serialize(out, sizeof(nb_real) == 8, &buf, &len) != NB_OK) abort();
    if (nb_safetensors_parse(buf, len, &back) != NB_OK) abort();
    nb_model *m2 = NULL;
    nb_status s = nb_model_import_flags(back, lflags, &m2);
    if (s != NB_OK || !m2) abort();
    same_weights(m2, back);
    same_weights(m2, out);
    nb_model_free(m2);
    m2 = NULL;
    if (finite && nb_model_import(back, &m2) != NB_OK) abort();
    nb_model_free(m2);
    nb_safetensors_free(back);
    nb_safetensors_free(out);
    free(buf);
    /* One example of zeros runs. */
    int64_t xs[NB_MAX_RANK] = {1};
    memcpy(xs + 1, in, sizeof(int64_t) * (size_t)rank);
    nb_tensor *x = nb_tensor_new(rank + 1, xs), *y = NULL;
    if (!x) abort();
    if (nb_model_predict(m, x, 1, &y) != NB_OK || !y) abort();
    nb_tensor_free(y);
    nb_tensor_free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    const unsigned flags = data[0], sel = data[1];
    const unsigned lflags = (flags & 2) ? NB_LOAD_ALLOW_NONFINITE : 0;
    nb_safetensors *st = NULL;
    if (flags & 1) {
        if (nb_safetensors_parse(data + 2, size - 2, &st) != NB_OK) return 0;
        const char *spec = nb_safetensors_meta(st, "nabla.spec"), *input = nb_safetensors_meta(st, "nabla.input");
        if (spec && input && !small_enough(spec, input)) {
            nb_safetensors_free(st);
            return 0;
        }
    } else {
        st = build(data + 2, data + size, flags, sel);
        if (!st) return 0;
    }
    nb_model *m = (nb_model *)&m; /* must be overwritten */
    nb_status s = nb_model_import_flags(st, lflags, &m);
    if ((s == NB_OK) != (m != NULL) || (s && !nb_last_error()[0])) abort();
    /* A spec that does not build on its input is refused with its status. */
    const char *spec = nb_safetensors_meta(st, "nabla.spec"), *input = nb_safetensors_meta(st, "nabla.input");
    int rank;
    int64_t shape[NB_MAX_RANK];
    if (spec && input && nb_shape_parse(input, &rank, shape) == NB_OK) {
        nb_model *m0 = NULL;
        nb_status s0 = nb_model_from_spec(spec, rank, shape, &m0);
        if (s0 != NB_OK && s != s0) abort();
        nb_model_free(m0);
    } else if (s == NB_OK) {
        abort();
    }
    if (m) check_imported(m, st, lflags);
    nb_model_free(m);
    nb_safetensors_free(st);
    return 0;
}
