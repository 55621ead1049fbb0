/* The layer table (internal to src/nn): one entry per layer kind, each a
 * `const nb_layer_type` with designated initializers in its own file
 * (src/nn/layers/<kind>.c) and one line in NB_LAYER_KINDS (nabla.h). An
 * entry declares its keyword, its arguments (name, type, the nb_layer_spec
 * field it fills, range, default), its parameters with their initialisers,
 * and how it builds its graph nodes; spec.c parses, prints and checks every
 * kind from those declarations, model.c builds and initialises through them.
 * How to add a layer: docs/design.md. */
#ifndef NB_LAYERS_H
#define NB_LAYERS_H

#include "../nn_internal.h"

#include <stddef.h>

/* What an argument's text is. */
typedef enum {
    NB_ARG_INT,     /* an int field, decimal, in [lo, hi] */
    NB_ARG_KSIZE,   /* an int field as NB_ARG_INT, "3x3" accepted (square kernels) */
    NB_ARG_REAL,    /* a double field in [lo, hi), printed with the fewest digits that read back */
    NB_ARG_ACT,     /* an nb_activation field by name (nb_activation_parse) */
    NB_ARG_PADDING, /* an nb_padding field: valid | same */
    NB_ARG_NAMES,   /* the rest of the words: names of earlier outputs into refs, lo..hi of them */
} nb_arg_type;

enum {
    NB_ARG_KEY = 1,      /* written key=value after the positional arguments, else positional */
    NB_ARG_OPTIONAL = 2, /* a positional argument that may be left out (only NB_ARG_ACT) */
};

typedef struct nb_layer_arg {
    const char *name; /* positional: its placeholder in the usage, FILTERS; key: the key, stride */
    const char *meta; /* a key's value in the usage: "S" (NULL: the type's values, valid|same) */
    nb_arg_type type;
    size_t field;   /* offsetof(nb_layer_spec, the field it fills) */
    unsigned flags; /* NB_ARG_* */
    double lo, hi;  /* the range accepted when parsing */
    /* Keys: a field left at 0 takes the default, and a value equal to the
     * default is not printed. The default is def, or the value of the field
     * at def_field when that is not 0 (a pool's stride is its size). */
    int def;
    size_t def_field;
    double def_real; /* an NB_ARG_REAL key's default (the field is 0 for it) */
} nb_layer_arg;

/* How a parameter starts (nb_model_init). */
typedef enum {
    NB_PARAM_WEIGHT, /* by the model's initialiser, fans from its own shape (Keras) */
    NB_PARAM_BIAS,   /* zero; NB_INIT_TORCH_DEFAULT: U(+-1/sqrt(fan_in of the layer's first WEIGHT)) */
    NB_PARAM_ONES,   /* 1 whatever the initialiser (batchnorm's gamma and moving_variance) */
    NB_PARAM_ZEROS,  /* 0 whatever the initialiser (beta, moving_mean) */
    NB_PARAM_STATE_ONES,  /* as ONES and not trained: no gradient, the optimiser skips it (moving_variance) */
    NB_PARAM_STATE_ZEROS, /* as ZEROS and not trained (moving_mean) */
} nb_param_init;

typedef struct nb_layer_param_decl {
    const char *name; /* the file and graph name is "<layer index>.<name>" */
    nb_param_init init;
} nb_layer_param_decl;

/* What a build function gets: the model, the layer's index and spec line. */
typedef struct nb_layer_ctx {
    nb_model *m;
    int index;
    const char *line; /* the layer's spec line, for messages */
    const struct nb_layer_type *type;
    int reported; /* set by nb_layer_refuse: the message names the layer already */
} nb_layer_ctx;

typedef struct nb_layer_type {
    nb_layer_kind kind;
    const char *keyword;        /* the spec's first word */
    const char *const *aliases; /* other first words it reads (NULL-terminated, or NULL) */
    int act_is_keyword;         /* the first word is an activation (bare activation layers) */
    const nb_layer_arg *args;   /* positional ones first, in order; then keys */
    int nargs;
    const nb_layer_param_decl *params; /* in the order build creates them */
    int nparams;
    const char *example; /* a spec line using its options, for tests and docs */
    /* Optional: -1 if word is not this kind's, else the index of the first
     * argument the words after it fill (presetting the others in l); when
     * NULL, the keyword and aliases match and the words fill from 0. */
    int (*match)(const char *word, nb_layer_spec *l);
    /* The layer on x (N, ...): its output; *pre gets the value before its
     * activation (a final softmax's logits). NULL on failure, after
     * nb_layer_refuse, or with the op's error (wrapped with the layer). */
    nb_node *(*build)(nb_layer_ctx *c, const nb_layer_spec *l, nb_node *x, nb_node **pre);
    /* Optional: 1 if the layer is the identity in inference (dropout). */
    int (*identity)(const nb_layer_spec *l);
} nb_layer_type;

/* The table: the entry of kind k, NULL out of range. */
const nb_layer_type *nb_layer_type_of(nb_layer_kind k);

/* For build functions. */
/* Parameter params[which] of the layer's kind, named "<index>.<name>". */
nb_node *nb_layer_param(nb_layer_ctx *c, int which, int rank, const int64_t *shape);
/* g(z) for an activation (NB_ACT_NONE: z itself). */
nb_node *nb_layer_activate(nb_node *z, nb_activation a);
/* *pre = z, then the activation on it: the usual end of a build. */
nb_node *nb_layer_finish(nb_node *z, nb_activation a, nb_node **pre);
/* Fails with "layer I (LINE): " and the message; returns NULL. */
nb_node *nb_layer_refuse(nb_layer_ctx *c, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* 1 if x has the rank, else refuses: "layer I (LINE): WHAT, got (N, 784)HINT". */
int nb_layer_need_rank(nb_layer_ctx *c, nb_node *x, int rank, const char *what, const char *hint);

/* The output named name among the entries before this one ("input": the
 * model's input), or NULL after refusing with the names that exist. */
nb_node *nb_layer_lookup(nb_layer_ctx *c, const char *name);
/* 1 if node is an output that a name may reference (the model's input or a
 * named entry's), so a later entry may read it: it must not be fused away. */
int nb_layer_is_named_output(const nb_layer_ctx *c, const nb_node *node);

/* The layer's grammar from its arguments, "conv2d FILTERS SIZE [ACT] [stride=S] ...". */
void nb_layer_usage(const nb_layer_type *t, char *buf, size_t n);

#endif
