/* The subset of ONNX (onnx.proto, IR version 3 and later) that nabla reads
 * and writes: ModelProto, GraphProto, NodeProto, AttributeProto,
 * TensorProto and ValueInfoProto. Not installed.
 *
 * Reading parses untrusted bytes into the structs below, all allocated in
 * one arena (freed by onnx_model_free). Every repeated field is counted
 * before it is stored, against the limits below, so a file can make us
 * allocate a small multiple of its length at most. Fields nabla does not use
 * are skipped (after their bounds are checked); nested graphs in attributes
 * (If, Loop) are kept as bytes only.
 *
 * Writing (onnx_w_*) builds the same messages with the protobuf writer. */
#ifndef NB_ONNX_H
#define NB_ONNX_H

#include "protobuf.h"

/* Limits of what a file may hold (counts per message). */
enum {
    ONNX_MAX_NODES = 1 << 16,
    ONNX_MAX_TENSORS = 1 << 16,
    ONNX_MAX_VALUES = 1 << 16, /* graph inputs, outputs, value_info */
    ONNX_MAX_ATTRS = 256,      /* per node */
    ONNX_MAX_IO = 256,         /* inputs or outputs of a node */
    ONNX_MAX_INTS = 1024,      /* ints or floats of an attribute */
    ONNX_MAX_META = 1024,      /* metadata_props, opset_import */
    ONNX_MAX_NAME = 4096,      /* bytes of a name or string */
};

/* TensorProto.DataType values nabla reads. */
enum { ONNX_FLOAT = 1, ONNX_INT32 = 6, ONNX_INT64 = 7, ONNX_DOUBLE = 11 };
/* AttributeProto.AttributeType values. */
enum {
    ONNX_ATTR_FLOAT = 1, ONNX_ATTR_INT = 2, ONNX_ATTR_STRING = 3, ONNX_ATTR_TENSOR = 4, ONNX_ATTR_GRAPH = 5,
    ONNX_ATTR_FLOATS = 6, ONNX_ATTR_INTS = 7, ONNX_ATTR_STRINGS = 8
};

typedef struct onnx_tensor {
    const char *name;
    int data_type;
    int rank;
    int64_t dims[NB_MAX_RANK];
    int64_t count;                 /* product of dims (1 for a scalar) */
    int external;                  /* data_location EXTERNAL or external_data present */
    const unsigned char *raw;      /* raw_data, little-endian, or NULL */
    size_t raw_len;
    float *floats;                 /* float_data */
    double *doubles;               /* double_data */
    int64_t *ints;                 /* int64_data, or int32_data widened */
    int64_t nvalues;               /* values in floats, doubles or ints */
} onnx_tensor;

typedef struct onnx_attr {
    const char *name;
    int type;
    float f;
    int64_t i;
    const char *s; /* NUL-terminated copy of s */
    int64_t *ints;
    int nints;
    float *floats;
    int nfloats;
    onnx_tensor *t;
} onnx_attr;

typedef struct onnx_node {
    const char *name, *op_type, *domain;
    const char **in, **out;
    int nin, nout;
    onnx_attr *attrs;
    int nattrs;
} onnx_node;

/* A ValueInfoProto of a tensor type: dims[d] < 0 is a symbolic or unknown
 * dimension. */
typedef struct onnx_value {
    const char *name;
    int elem_type;
    int has_shape;
    int rank;
    int64_t dims[NB_MAX_RANK];
} onnx_value;

typedef struct onnx_graph {
    onnx_node *nodes;
    int nnodes;
    onnx_tensor *inits;
    int ninits;
    onnx_value *inputs, *outputs;
    int ninputs, noutputs;
} onnx_graph;

typedef struct onnx_block onnx_block;

typedef struct onnx_model {
    int64_t ir_version;
    int64_t opset;  /* the default domain's ("" or "ai.onnx"); 0 if absent */
    const char *producer;
    int has_graph;
    onnx_graph graph;
    const char **meta_keys, **meta_values;
    int nmeta;
    onnx_block *arena;
} onnx_model;

/* Parses a ModelProto; on failure the error says what and where. */
nb_status onnx_model_parse(const void *data, size_t len, onnx_model **out);
void onnx_model_free(onnx_model *m);
const char *onnx_meta(const onnx_model *m, const char *key);
/* The attribute called name of node n, or NULL. */
const onnx_attr *onnx_node_attr(const onnx_node *n, const char *name);
/* t's values as nb_real (count of them), for FLOAT and DOUBLE tensors;
 * INT64/INT32 ones through onnx_tensor_ints. The error names the tensor. */
nb_status onnx_tensor_reals(const onnx_tensor *t, nb_real *out);
/* The checks of onnx_tensor_reals alone: the data is there, of a real
 * type, as many values as the shape says (before allocating for them). */
nb_status onnx_tensor_check_reals(const onnx_tensor *t);
nb_status onnx_tensor_ints(const onnx_tensor *t, int64_t *out, int64_t max);

/* ---- writing */
/* A TensorProto of FLOAT values (raw_data) in the graph's initializers. */
void onnx_w_initializer(nb_pb_writer *graph, const char *name, int rank, const int64_t *dims, const nb_real *v);
void onnx_w_initializer_int64(nb_pb_writer *graph, const char *name, int rank, const int64_t *dims,
                              const int64_t *v);
/* A graph input (field 11) or output (12): FLOAT, dims with dims[0] the
 * symbolic batch "N". */
void onnx_w_value(nb_pb_writer *graph, uint32_t field, const char *name, int rank, const int64_t *dims);

/* A node being written: begin, add attributes, end (appends it to graph). */
typedef struct onnx_w_node {
    nb_pb_writer w;
} onnx_w_node;
void onnx_w_node_begin(onnx_w_node *n, const char *op, const char *name, int nin, const char *const *in,
                       const char *out);
void onnx_w_attr_int(onnx_w_node *n, const char *name, int64_t v);
void onnx_w_attr_float(onnx_w_node *n, const char *name, float v);
void onnx_w_attr_ints(onnx_w_node *n, const char *name, int count, const int64_t *v);
void onnx_w_node_end(onnx_w_node *n, nb_pb_writer *graph);

#endif
