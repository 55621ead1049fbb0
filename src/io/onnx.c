/* ONNX messages (onnx.h): parsing a ModelProto from untrusted bytes into
 * arena-allocated structs, and writing the messages the exporter needs.
 * Field numbers are onnx.proto's. Each message is read in two passes over
 * its fields: the first counts the repeated ones (checked against the
 * limits of onnx.h), the second stores them into arrays of that size. */
#include "onnx.h"

#include "io_internal.h"

#include <stdio.h>
#include <stdlib.h>

struct onnx_block {
    onnx_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char mem[];
};

/* n zeroed bytes from the model's arena, 16-aligned; NULL + error if out of memory. */
static void *arena_alloc(onnx_model *m, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    onnx_block *b = m->arena;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > (64u << 10) ? n : (64u << 10);
        b = malloc(sizeof *b + cap);
        if (!b) return nb_fail(NB_ERR_NOMEM, "onnx: out of memory"), NULL;
        b->next = m->arena, b->used = 0, b->cap = cap;
        m->arena = b;
    }
    void *p = b->mem + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

/* count elements of size bytes each (count already bounded by a limit). */
static void *arena_array(onnx_model *m, int64_t count, size_t size)
{
    size_t bytes;
    if (count <= 0) return NULL;
    if (!nb_mul_size((size_t)count, size, &bytes)) return nb_fail(NB_ERR_NOMEM, "onnx: out of memory"), NULL;
    return arena_alloc(m, bytes);
}

/* A NUL-terminated copy of a string field. */
static nb_status arena_str(onnx_model *m, const nb_pb_field *f, const char *what, const char **out)
{
    if (f->wire != NB_PB_BYTES) return nb_fail(NB_ERR_FORMAT, "onnx: %s is not a string (wire type %d)", what, f->wire);
    if (f->len > ONNX_MAX_NAME)
        return nb_fail(NB_ERR_FORMAT, "onnx: %s is %zu bytes long, more than the limit of %d", what, f->len,
                       ONNX_MAX_NAME);
    char *s = arena_alloc(m, f->len + 1);
    if (!s) return NB_ERR_NOMEM;
    memcpy(s, f->data, f->len);
    *out = s;
    return NB_OK;
}

void onnx_model_free(onnx_model *m)
{
    if (!m) return;
    for (onnx_block *b = m->arena, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(m);
}

/* How many values of a repeated scalar of wire type wire field f holds
 * (packed: many in one length-delimited field); -1 if it cannot hold any. */
static int64_t rep_count(const nb_pb_field *f, int wire)
{
    if (f->wire == wire) return 1;
    if (f->wire != NB_PB_BYTES) return -1;
    if (wire == NB_PB_FIXED32) return f->len % 4 ? -1 : (int64_t)(f->len / 4);
    if (wire == NB_PB_FIXED64) return f->len % 8 ? -1 : (int64_t)(f->len / 8);
    if (f->len && (f->data[f->len - 1] & 0x80)) return -1; /* a varint runs past the end */
    int64_t n = 0;
    for (size_t i = 0; i < f->len; i++) n += !(f->data[i] & 0x80);
    return n;
}

/* The values of f into out (rep_count(f) of them, as raw 64-bit words). */
static int rep_get(const nb_pb_field *f, int wire, uint64_t *out)
{
    if (f->wire == wire) return out[0] = f->v, 1;
    nb_pb_reader r = nb_pb_reader_of(f->data, f->len);
    int64_t i = 0;
    while (r.p < r.end) {
        if (wire == NB_PB_FIXED32) out[i++] = nb_ld_le32(r.p), r.p += 4;
        else if (wire == NB_PB_FIXED64) out[i++] = nb_ld_le64(r.p), r.p += 8;
        else if (!nb_pb_read_varint(&r, &out[i++])) return 0;
    }
    return 1;
}

/* Adds rep_count(f) to *n, refusing more than max or a wrong wire type. */
static nb_status count_rep(const nb_pb_field *f, int wire, int64_t *n, int64_t max, const char *what)
{
    int64_t c = rep_count(f, wire);
    if (c < 0) return nb_fail(NB_ERR_FORMAT, "onnx: %s: malformed repeated field %u (wire type %d)", what, f->num, f->wire);
    if (c > max - *n) return nb_fail(NB_ERR_FORMAT, "onnx: %s: more than %lld values", what, (long long)max);
    *n += c;
    return NB_OK;
}

/* Reads f's values into tmp (sized for them) and returns how many. */
static int64_t get_rep(const nb_pb_field *f, int wire, uint64_t *tmp, const char *what)
{
    int64_t c = rep_count(f, wire);
    if (c < 0 || !rep_get(f, wire, tmp)) return nb_fail(NB_ERR_FORMAT, "onnx: %s: malformed repeated field", what), -1;
    return c;
}

/* for each field f of reader r: body; a malformed field sets s and stops.
 * (The loop variable is named after the line, as these loops nest.) */
#define NB_CAT2(a, b) a##b
#define NB_CAT(a, b) NB_CAT2(a, b)
#define NEXT_OR_FAIL(r, f, what, s) NEXT_OR_FAIL_(r, f, what, s, NB_CAT(rc_, __LINE__))
#define NEXT_OR_FAIL_(r, f, what, s, rc)                                                                               \
    for (int rc; !(s) && (rc = nb_pb_next(&(r), &(f), (what))) != 0;)                                                  \
        if (rc < 0) {                                                                                                  \
            char msg_[300];                                                                                            \
            snprintf(msg_, sizeof msg_, "%s", nb_last_error());                                                        \
            s = nb_fail(NB_ERR_FORMAT, "onnx: %s", msg_);                                                              \
        } else

/* TensorProto: 1 dims, 2 data_type, 4 float_data, 5 int32_data, 7 int64_data,
 * 8 name, 9 raw_data, 10 double_data, 13 external_data, 14 data_location. */
static nb_status parse_tensor(onnx_model *m, const unsigned char *data, size_t len, onnx_tensor *t)
{
    nb_status s = NB_OK;
    nb_pb_field f;
    nb_pb_reader r = nb_pb_reader_of(data, len);
    int64_t nd = 0, nf = 0, ndb = 0, ni = 0, max = (int64_t)len + 1;
    NEXT_OR_FAIL(r, f, "tensor", s)
    {
        if (f.num == 1) s = count_rep(&f, NB_PB_VARINT, &nd, NB_MAX_RANK, "tensor dims (rank at most 8)");
        else if (f.num == 4) s = count_rep(&f, NB_PB_FIXED32, &nf, max, "tensor float_data");
        else if (f.num == 10) s = count_rep(&f, NB_PB_FIXED64, &ndb, max, "tensor double_data");
        else if (f.num == 5 || f.num == 7) s = count_rep(&f, NB_PB_VARINT, &ni, max, "tensor int_data");
    }
    if (s) return s;
    if ((nf > 0) + (ndb > 0) + (ni > 0) > 1)
        return nb_fail(NB_ERR_FORMAT, "onnx: a tensor holds values in more than one of float_data, double_data, int_data");
    int64_t nv = nf + ndb + ni;
    /* At least one slot: an empty packed field still forms dst = tmp + rank
     * (arithmetic on NULL is undefined; found by fuzz_onnx). */
    uint64_t *tmp = arena_array(m, nv > nd ? nv : nd > 0 ? nd : 1, sizeof(uint64_t));
    if (!tmp) return NB_ERR_NOMEM;
    if (nf && !(t->floats = arena_array(m, nf, sizeof(float)))) return NB_ERR_NOMEM;
    if (ndb && !(t->doubles = arena_array(m, ndb, sizeof(double)))) return NB_ERR_NOMEM;
    if (ni && !(t->ints = arena_array(m, ni, sizeof(int64_t)))) return NB_ERR_NOMEM;
    r = nb_pb_reader_of(data, len);
    t->name = "";
    NEXT_OR_FAIL(r, f, "tensor", s)
    {
        int64_t c = 0;
        if (f.num == 1 || f.num == 4 || f.num == 5 || f.num == 7 || f.num == 10) {
            const int wire = f.num == 4 ? NB_PB_FIXED32 : f.num == 10 ? NB_PB_FIXED64 : NB_PB_VARINT;
            uint64_t *dst = f.num == 1 ? tmp + t->rank : tmp;
            if ((c = get_rep(&f, wire, dst, "tensor")) < 0) return NB_ERR_FORMAT;
            for (int64_t k = 0; k < c; k++) {
                if (f.num == 1) t->dims[t->rank++] = (int64_t)dst[k];
                else if (f.num == 4) t->floats[t->nvalues++] = nb_bits_to_f32((uint32_t)dst[k]);
                else if (f.num == 10) t->doubles[t->nvalues++] = nb_bits_to_f64(dst[k]);
                else t->ints[t->nvalues++] = f.num == 5 ? (int32_t)dst[k] : (int64_t)dst[k];
            }
        } else if (f.num == 2 && f.wire == NB_PB_VARINT) {
            t->data_type = (int32_t)f.v;
        } else if (f.num == 8) {
            s = arena_str(m, &f, "tensor name", &t->name);
        } else if (f.num == 9 && f.wire == NB_PB_BYTES) {
            t->raw = f.data, t->raw_len = f.len;
        } else if (f.num == 13 || (f.num == 14 && f.v == 1)) {
            t->external = 1;
        }
    }
    if (s) return s;
    t->count = 1;
    for (int d = 0; d < t->rank; d++) {
        if (t->dims[d] < 0 || t->dims[d] > ((int64_t)1 << 40))
            return nb_fail(NB_ERR_FORMAT, "onnx: tensor '%s': dimension %d is %lld", NB_QUOTED(t->name), d,
                           (long long)t->dims[d]);
        if (t->dims[d] && t->count > ((int64_t)1 << 40) / t->dims[d])
            return nb_fail(NB_ERR_FORMAT, "onnx: tensor '%s' has more than 2^40 elements", NB_QUOTED(t->name));
        t->count *= t->dims[d];
    }
    return NB_OK;
}

/* AttributeProto: 1 name, 20 type, 2 f, 3 i, 4 s, 5 t, 7 floats, 8 ints. */
static nb_status parse_attr(onnx_model *m, const unsigned char *data, size_t len, onnx_attr *a)
{
    nb_status s = NB_OK;
    nb_pb_field f;
    nb_pb_reader r = nb_pb_reader_of(data, len);
    int64_t ni = 0, nf = 0;
    int has_f = 0, has_i = 0;
    NEXT_OR_FAIL(r, f, "attribute", s)
    {
        if (f.num == 7) s = count_rep(&f, NB_PB_FIXED32, &nf, ONNX_MAX_INTS, "attribute floats");
        else if (f.num == 8) s = count_rep(&f, NB_PB_VARINT, &ni, ONNX_MAX_INTS, "attribute ints");
    }
    uint64_t tmp[ONNX_MAX_INTS];
    if (!s && ni && !(a->ints = arena_array(m, ni, sizeof(int64_t)))) return NB_ERR_NOMEM;
    if (!s && nf && !(a->floats = arena_array(m, nf, sizeof(float)))) return NB_ERR_NOMEM;
    r = nb_pb_reader_of(data, len);
    a->name = "";
    NEXT_OR_FAIL(r, f, "attribute", s)
    {
        if (f.num == 1) s = arena_str(m, &f, "attribute name", &a->name);
        else if (f.num == 20 && f.wire == NB_PB_VARINT) a->type = (int32_t)f.v;
        else if (f.num == 2 && f.wire == NB_PB_FIXED32) a->f = nb_bits_to_f32((uint32_t)f.v), has_f = 1;
        else if (f.num == 3 && f.wire == NB_PB_VARINT) a->i = (int64_t)f.v, has_i = 1;
        else if (f.num == 4) s = arena_str(m, &f, "attribute string", &a->s);
        else if (f.num == 5 && f.wire == NB_PB_BYTES) {
            if (!(a->t = arena_alloc(m, sizeof *a->t))) return NB_ERR_NOMEM;
            s = parse_tensor(m, f.data, f.len, a->t);
        } else if (f.num == 7 || f.num == 8) {
            int64_t c = get_rep(&f, f.num == 7 ? NB_PB_FIXED32 : NB_PB_VARINT, tmp, "attribute");
            if (c < 0) return NB_ERR_FORMAT;
            for (int64_t k = 0; k < c; k++) {
                if (f.num == 7) a->floats[a->nfloats++] = nb_bits_to_f32((uint32_t)tmp[k]);
                else a->ints[a->nints++] = (int64_t)tmp[k];
            }
        }
    }
    if (!s && a->type == 0) /* IR version 1 had no type: infer it from the field present */
        a->type = a->t ? ONNX_ATTR_TENSOR : a->s ? ONNX_ATTR_STRING : ni ? ONNX_ATTR_INTS : nf ? ONNX_ATTR_FLOATS
                  : has_i ? ONNX_ATTR_INT : has_f ? ONNX_ATTR_FLOAT : 0;
    return s;
}

/* NodeProto: 1 input, 2 output, 3 name, 4 op_type, 5 attribute, 7 domain. */
static nb_status parse_node(onnx_model *m, const unsigned char *data, size_t len, onnx_node *n)
{
    nb_status s = NB_OK;
    nb_pb_field f;
    nb_pb_reader r = nb_pb_reader_of(data, len);
    int nin = 0, nout = 0, na = 0;
    NEXT_OR_FAIL(r, f, "node", s)
    {
        if ((f.num == 1 && ++nin > ONNX_MAX_IO) || (f.num == 2 && ++nout > ONNX_MAX_IO))
            s = nb_fail(NB_ERR_FORMAT, "onnx: a node has more than %d inputs or outputs", ONNX_MAX_IO);
        if (f.num == 5 && ++na > ONNX_MAX_ATTRS)
            s = nb_fail(NB_ERR_FORMAT, "onnx: a node has more than %d attributes", ONNX_MAX_ATTRS);
    }
    if (s) return s;
    if ((nin && !(n->in = arena_array(m, nin, sizeof *n->in))) ||
        (nout && !(n->out = arena_array(m, nout, sizeof *n->out))) ||
        (na && !(n->attrs = arena_array(m, na, sizeof *n->attrs))))
        return NB_ERR_NOMEM;
    n->name = n->op_type = n->domain = "";
    r = nb_pb_reader_of(data, len);
    NEXT_OR_FAIL(r, f, "node", s)
    {
        if (f.num == 1) s = arena_str(m, &f, "node input", &n->in[n->nin++]);
        else if (f.num == 2) s = arena_str(m, &f, "node output", &n->out[n->nout++]);
        else if (f.num == 3) s = arena_str(m, &f, "node name", &n->name);
        else if (f.num == 4) s = arena_str(m, &f, "node op_type", &n->op_type);
        else if (f.num == 7) s = arena_str(m, &f, "node domain", &n->domain);
        else if (f.num == 5) {
            if (f.wire != NB_PB_BYTES) return nb_fail(NB_ERR_FORMAT, "onnx: node attribute is not a message");
            s = parse_attr(m, f.data, f.len, &n->attrs[n->nattrs++]);
        }
    }
    return s;
}

/* A length-delimited submessage field number num of data, or 0 bytes. */
static nb_status sub_message(const unsigned char *data, size_t len, uint32_t num, const char *what, nb_pb_field *out)
{
    nb_status s = NB_OK;
    nb_pb_field f;
    nb_pb_reader r = nb_pb_reader_of(data, len);
    out->data = NULL, out->len = 0, out->wire = NB_PB_BYTES;
    NEXT_OR_FAIL(r, f, what, s)
    if (f.num == num && f.wire == NB_PB_BYTES) *out = f;
    return s;
}

/* ValueInfoProto: 1 name, 2 type (TypeProto: 1 tensor_type (1 elem_type,
 * 2 shape (TensorShapeProto: 1 dim (1 dim_value, 2 dim_param)))). */
static nb_status parse_value(onnx_model *m, const unsigned char *data, size_t len, onnx_value *v)
{
    nb_status s = NB_OK;
    nb_pb_field f, type = {0}, tensor = {0}, shape = {0};
    nb_pb_reader r = nb_pb_reader_of(data, len);
    v->name = "";
    NEXT_OR_FAIL(r, f, "value_info", s)
    if (f.num == 1) s = arena_str(m, &f, "value name", &v->name);
    if (!s) s = sub_message(data, len, 2, "value type", &type);
    if (!s) s = sub_message(type.data, type.len, 1, "tensor type", &tensor);
    if (s || !tensor.data) return s;
    r = nb_pb_reader_of(tensor.data, tensor.len);
    NEXT_OR_FAIL(r, f, "tensor type", s)
    if (f.num == 1 && f.wire == NB_PB_VARINT) v->elem_type = (int32_t)f.v;
    if (!s) s = sub_message(tensor.data, tensor.len, 2, "tensor shape", &shape);
    if (s || !shape.data) return s;
    v->has_shape = 1;
    r = nb_pb_reader_of(shape.data, shape.len);
    NEXT_OR_FAIL(r, f, "tensor shape", s)
    {
        if (f.num != 1 || f.wire != NB_PB_BYTES) continue;
        if (v->rank == NB_MAX_RANK)
            return nb_fail(NB_ERR_FORMAT, "onnx: value '%s' has more than %d dimensions", NB_QUOTED(v->name), NB_MAX_RANK);
        int64_t dim = -1;
        nb_pb_field g;
        nb_pb_reader rd = nb_pb_reader_of(f.data, f.len);
        NEXT_OR_FAIL(rd, g, "dimension", s)
        if (g.num == 1 && g.wire == NB_PB_VARINT) dim = (int64_t)g.v < 0 ? -1 : (int64_t)g.v;
        v->dims[v->rank++] = dim;
    }
    return s;
}

/* GraphProto: 1 node, 5 initializer, 11 input, 12 output. */
static nb_status parse_graph(onnx_model *m, const unsigned char *data, size_t len, onnx_graph *g)
{
    nb_status s = NB_OK;
    nb_pb_field f;
    nb_pb_reader r = nb_pb_reader_of(data, len);
    int nn = 0, nt = 0, ni = 0, no = 0;
    NEXT_OR_FAIL(r, f, "graph", s)
    {
        nn += f.num == 1, nt += f.num == 5, ni += f.num == 11, no += f.num == 12;
        if (nn > ONNX_MAX_NODES || nt > ONNX_MAX_TENSORS || ni > ONNX_MAX_VALUES || no > ONNX_MAX_VALUES)
            s = nb_fail(NB_ERR_FORMAT, "onnx: the graph has more than %d nodes, initializers, inputs or outputs",
                        ONNX_MAX_NODES);
    }
    if (s) return s;
    if ((nn && !(g->nodes = arena_array(m, nn, sizeof *g->nodes))) ||
        (nt && !(g->inits = arena_array(m, nt, sizeof *g->inits))) ||
        (ni && !(g->inputs = arena_array(m, ni, sizeof *g->inputs))) ||
        (no && !(g->outputs = arena_array(m, no, sizeof *g->outputs))))
        return NB_ERR_NOMEM;
    r = nb_pb_reader_of(data, len);
    NEXT_OR_FAIL(r, f, "graph", s)
    {
        if (f.num != 1 && f.num != 5 && f.num != 11 && f.num != 12) continue;
        if (f.wire != NB_PB_BYTES) return nb_fail(NB_ERR_FORMAT, "onnx: graph field %u is not a message", f.num);
        if (f.num == 1) s = parse_node(m, f.data, f.len, &g->nodes[g->nnodes++]);
        else if (f.num == 5) s = parse_tensor(m, f.data, f.len, &g->inits[g->ninits++]);
        else if (f.num == 11) s = parse_value(m, f.data, f.len, &g->inputs[g->ninputs++]);
        else s = parse_value(m, f.data, f.len, &g->outputs[g->noutputs++]);
    }
    return s;
}

/* OperatorSetIdProto (1 domain, 2 version) and StringStringEntryProto (1 key,
 * 2 value): two strings or a string and a varint. */
static nb_status parse_pair(onnx_model *m, const nb_pb_field *outer, const char **a, const char **b, int64_t *v)
{
    nb_status s = NB_OK;
    nb_pb_field f;
    nb_pb_reader r = nb_pb_reader_of(outer->data, outer->len);
    *a = "";
    if (b) *b = "";
    NEXT_OR_FAIL(r, f, "entry", s)
    {
        if (f.num == 1) s = arena_str(m, &f, "key", a);
        else if (f.num == 2 && b) s = arena_str(m, &f, "value", b);
        else if (f.num == 2 && f.wire == NB_PB_VARINT) *v = (int64_t)f.v;
    }
    return s;
}

/* ModelProto: 1 ir_version, 2 producer_name, 7 graph, 8 opset_import,
 * 14 metadata_props. */
static nb_status parse_model(onnx_model *m, const unsigned char *data, size_t len)
{
    nb_status s = NB_OK;
    nb_pb_field f;
    nb_pb_reader r = nb_pb_reader_of(data, len);
    int nmeta = 0, ngraph = 0;
    NEXT_OR_FAIL(r, f, "model", s)
    {
        if ((f.num == 14 || f.num == 8 || f.num == 7) && f.wire != NB_PB_BYTES)
            s = nb_fail(NB_ERR_FORMAT, "onnx: model field %u is not a message", f.num);
        else if (f.num == 14 && ++nmeta > ONNX_MAX_META)
            s = nb_fail(NB_ERR_FORMAT, "onnx: more than %d metadata_props", ONNX_MAX_META);
        else if (f.num == 7 && ++ngraph > 1)
            s = nb_fail(NB_ERR_FORMAT, "onnx: the model has more than one graph");
    }
    if (s) return s;
    if (nmeta && (!(m->meta_keys = arena_array(m, nmeta, sizeof(char *))) ||
                  !(m->meta_values = arena_array(m, nmeta, sizeof(char *)))))
        return NB_ERR_NOMEM;
    m->producer = "";
    r = nb_pb_reader_of(data, len);
    NEXT_OR_FAIL(r, f, "model", s)
    {
        if (f.num == 1 && f.wire == NB_PB_VARINT) m->ir_version = (int64_t)f.v;
        else if (f.num == 2) s = arena_str(m, &f, "producer_name", &m->producer);
        else if (f.num == 7) {
            m->has_graph = 1;
            s = parse_graph(m, f.data, f.len, &m->graph);
        } else if (f.num == 8) {
            const char *domain;
            int64_t version = 0;
            s = parse_pair(m, &f, &domain, NULL, &version);
            if (!s && (!strcmp(domain, "") || !strcmp(domain, "ai.onnx"))) m->opset = version;
        } else if (f.num == 14) {
            s = parse_pair(m, &f, &m->meta_keys[m->nmeta], &m->meta_values[m->nmeta], NULL);
            m->nmeta++;
        }
    }
    return s;
}

nb_status onnx_model_parse(const void *data, size_t len, onnx_model **out)
{
    if (!out || (!data && len)) return nb_fail(NB_ERR_ARG, "onnx: NULL argument");
    *out = NULL;
    onnx_model *m = calloc(1, sizeof *m);
    if (!m) return nb_fail(NB_ERR_NOMEM, "onnx: out of memory");
    nb_status s = parse_model(m, data, len);
    if (!s && !m->has_graph) s = nb_fail(NB_ERR_FORMAT, "onnx: the file has no graph (is it an ONNX model?)");
    if (s) {
        onnx_model_free(m);
        return s;
    }
    *out = m;
    return NB_OK;
}

const char *onnx_meta(const onnx_model *m, const char *key)
{
    for (int i = m->nmeta - 1; i >= 0; i--)
        if (!strcmp(m->meta_keys[i], key)) return m->meta_values[i];
    return NULL;
}

const onnx_attr *onnx_node_attr(const onnx_node *n, const char *name)
{
    for (int i = n->nattrs - 1; i >= 0; i--)
        if (!strcmp(n->attrs[i].name, name)) return &n->attrs[i];
    return NULL;
}

nb_status onnx_tensor_reals(const onnx_tensor *t, nb_real *out)
{
    nb_status s = onnx_tensor_check_reals(t);
    if (s) return s;
    const int isf = t->data_type == ONNX_FLOAT;
    for (int64_t i = 0; i < t->count; i++)
        if (t->raw)
            out[i] = isf ? (nb_real)nb_bits_to_f32(nb_ld_le32(t->raw + 4 * i))
                         : (nb_real)nb_bits_to_f64(nb_ld_le64(t->raw + 8 * i));
        else
            out[i] = isf ? (nb_real)t->floats[i] : (nb_real)t->doubles[i];
    return NB_OK;
}

nb_status onnx_tensor_check_reals(const onnx_tensor *t)
{
    const char *where = t->external ? "stored outside the file (external data)" : NULL;
    if (where)
        return nb_fail(NB_ERR_FORMAT, "onnx: tensor '%s' is %s: save the model with all tensors inside it "
                                      "(onnx.save_model(m, path, save_as_external_data=False))", NB_QUOTED(t->name), where);
    const int isf = t->data_type == ONNX_FLOAT, isd = t->data_type == ONNX_DOUBLE;
    if (!isf && !isd)
        return nb_fail(NB_ERR_FORMAT, "onnx: tensor '%s' has data type %d; nabla reads FLOAT (1) and DOUBLE (11)",
                       NB_QUOTED(t->name), t->data_type);
    const size_t esize = isf ? 4 : 8;
    if (t->raw) {
        if ((uint64_t)t->raw_len != (uint64_t)t->count * esize)
            return nb_fail(NB_ERR_FORMAT, "onnx: tensor '%s' has %zu bytes of raw_data, its %lld elements need %llu",
                           NB_QUOTED(t->name), t->raw_len, (long long)t->count, (unsigned long long)t->count * esize);
        return NB_OK;
    }
    if (t->nvalues != t->count || (isf ? !t->floats && t->count : !t->doubles && t->count))
        return nb_fail(NB_ERR_FORMAT, "onnx: tensor '%s' holds %lld values, its shape needs %lld", NB_QUOTED(t->name),
                       (long long)t->nvalues, (long long)t->count);
    return NB_OK;
}

nb_status onnx_tensor_ints(const onnx_tensor *t, int64_t *out, int64_t max)
{
    if (t->data_type != ONNX_INT64 && t->data_type != ONNX_INT32)
        return nb_fail(NB_ERR_FORMAT, "onnx: tensor '%s' has data type %d, expected INT64 (7)", NB_QUOTED(t->name),
                       t->data_type);
    if (t->count > max || t->external)
        return nb_fail(NB_ERR_FORMAT, "onnx: tensor '%s' has %lld values, expected at most %lld", NB_QUOTED(t->name),
                       (long long)t->count, (long long)max);
    const size_t esize = t->data_type == ONNX_INT64 ? 8 : 4;
    if (t->raw) {
        if ((uint64_t)t->raw_len != (uint64_t)t->count * esize)
            return nb_fail(NB_ERR_FORMAT, "onnx: tensor '%s': raw_data of %zu bytes for %lld values", NB_QUOTED(t->name),
                           t->raw_len, (long long)t->count);
        for (int64_t i = 0; i < t->count; i++)
            out[i] = esize == 8 ? (int64_t)nb_ld_le64(t->raw + 8 * i) : (int32_t)nb_ld_le32(t->raw + 4 * i);
        return NB_OK;
    }
    if (t->nvalues != t->count || (t->count && !t->ints))
        return nb_fail(NB_ERR_FORMAT, "onnx: tensor '%s' holds %lld values, its shape needs %lld", NB_QUOTED(t->name),
                       (long long)t->nvalues, (long long)t->count);
    memcpy(out, t->ints, (size_t)t->count * sizeof *out);
    return NB_OK;
}

/* ---------------------------------------------------------------- writing */

static void put_tensor_head(nb_pb_writer *t, const char *name, int rank, const int64_t *dims, int type)
{
    for (int d = 0; d < rank; d++) nb_pb_put_varint(t, 1, (uint64_t)dims[d]);
    nb_pb_put_varint(t, 2, (uint64_t)type);
    nb_pb_put_string(t, 8, name);
}

void onnx_w_initializer(nb_pb_writer *graph, const char *name, int rank, const int64_t *dims, const nb_real *v)
{
    nb_pb_writer t = {0};
    put_tensor_head(&t, name, rank, dims, ONNX_FLOAT);
    int64_t count = 1;
    for (int d = 0; d < rank; d++) count *= dims[d];
    unsigned char *raw = malloc((size_t)count * 4 + 1);
    if (!raw) t.failed = 1;
    else {
        for (int64_t i = 0; i < count; i++) nb_st_le32(raw + 4 * i, nb_f32_to_bits((float)v[i]));
        nb_pb_put_bytes(&t, 9, raw, (size_t)count * 4);
        free(raw);
    }
    nb_pb_put_message(graph, 5, &t);
}

void onnx_w_initializer_int64(nb_pb_writer *graph, const char *name, int rank, const int64_t *dims,
                              const int64_t *v)
{
    nb_pb_writer t = {0};
    put_tensor_head(&t, name, rank, dims, ONNX_INT64);
    int64_t count = 1;
    for (int d = 0; d < rank; d++) count *= dims[d];
    nb_pb_put_packed_int64(&t, 7, v, (int)count);
    nb_pb_put_message(graph, 5, &t);
}

void onnx_w_value(nb_pb_writer *graph, uint32_t field, const char *name, int rank, const int64_t *dims)
{
    nb_pb_writer shape = {0}, tensor = {0}, type = {0}, value = {0};
    for (int d = 0; d < rank; d++) {
        nb_pb_writer dim = {0};
        if (d == 0) nb_pb_put_string(&dim, 2, "N");
        else nb_pb_put_varint(&dim, 1, (uint64_t)dims[d]);
        nb_pb_put_message(&shape, 1, &dim);
    }
    nb_pb_put_varint(&tensor, 1, ONNX_FLOAT);
    nb_pb_put_message(&tensor, 2, &shape);
    nb_pb_put_message(&type, 1, &tensor);
    nb_pb_put_string(&value, 1, name);
    nb_pb_put_message(&value, 2, &type);
    nb_pb_put_message(graph, field, &value);
}

void onnx_w_node_begin(onnx_w_node *n, const char *op, const char *name, int nin, const char *const *in,
                       const char *out)
{
    memset(n, 0, sizeof *n);
    for (int i = 0; i < nin; i++) nb_pb_put_string(&n->w, 1, in[i]);
    nb_pb_put_string(&n->w, 2, out);
    nb_pb_put_string(&n->w, 3, name);
    nb_pb_put_string(&n->w, 4, op);
}

static void put_attr(onnx_w_node *n, nb_pb_writer *a) { nb_pb_put_message(&n->w, 5, a); }

void onnx_w_attr_int(onnx_w_node *n, const char *name, int64_t v)
{
    nb_pb_writer a = {0};
    nb_pb_put_string(&a, 1, name);
    nb_pb_put_varint(&a, 3, (uint64_t)v);
    nb_pb_put_varint(&a, 20, ONNX_ATTR_INT);
    put_attr(n, &a);
}

void onnx_w_attr_float(onnx_w_node *n, const char *name, float v)
{
    nb_pb_writer a = {0};
    nb_pb_put_string(&a, 1, name);
    nb_pb_put_fixed32(&a, 2, nb_f32_to_bits(v));
    nb_pb_put_varint(&a, 20, ONNX_ATTR_FLOAT);
    put_attr(n, &a);
}

void onnx_w_attr_ints(onnx_w_node *n, const char *name, int count, const int64_t *v)
{
    nb_pb_writer a = {0};
    nb_pb_put_string(&a, 1, name);
    nb_pb_put_packed_int64(&a, 8, v, count);
    nb_pb_put_varint(&a, 20, ONNX_ATTR_INTS);
    put_attr(n, &a);
}

void onnx_w_node_end(onnx_w_node *n, nb_pb_writer *graph) { nb_pb_put_message(graph, 1, &n->w); }
