/* The layer table: one entry per line of NB_LAYER_KINDS (nabla.h), each
 * defined in src/nn/layers/<file>.c. */
#include "layers.h"

#define NB_LAYER_DECLARE_(e, file) extern const nb_layer_type nb_layer_##file;
NB_LAYER_KINDS(NB_LAYER_DECLARE_)
#undef NB_LAYER_DECLARE_

static const nb_layer_type *const table[NB_LAYER_KIND_COUNT] = {
#define NB_LAYER_ENTRY_(e, file) [NB_LAYER_##e] = &nb_layer_##file,
    NB_LAYER_KINDS(NB_LAYER_ENTRY_)
#undef NB_LAYER_ENTRY_
};

const nb_layer_type *nb_layer_type_of(nb_layer_kind k)
{
    return (unsigned)k < NB_LAYER_KIND_COUNT ? table[k] : NULL;
}
