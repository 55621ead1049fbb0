/* The op registry: the descriptors listed in op_list.h, enumerable by index
 * and findable by name. The one place that compares op names. */
#include "ops_internal.h"

static const nb_op *const registry[] = {
#define NB_OP(id) &nb_op_##id,
#include "op_list.h"
#undef NB_OP
};

int nb_op_count(void) { return NB_COUNT(registry); }

const nb_op *nb_op_at(int i) { return i >= 0 && i < NB_COUNT(registry) ? registry[i] : NULL; }

const nb_op *nb_op_find(const char *name)
{
    for (int i = 0; name && i < NB_COUNT(registry); i++)
        if (!strcmp(registry[i]->name, name)) return registry[i];
    return NULL;
}

nb_node *nb_check_leaf(nb_graph *g, nb_rng *r, const char *name, int rank, const int64_t *shape, double lo,
                       double hi)
{
    nb_node *x = nb_input(g, name, rank, shape);
    if (x) nb_tensor_fill_uniform(nb_value(x), r, lo, hi);
    return x;
}

nb_node *nb_check_ramp_leaf(nb_graph *g, nb_rng *r, const char *name, int rank, const int64_t *shape, double start)
{
    nb_node *x = nb_input(g, name, rank, shape);
    if (!x) return NULL;
    nb_tensor *t = nb_value(x);
    for (int64_t i = 0; i < t->size; i++) t->data[i] = (nb_real)i;
    for (int64_t i = t->size - 1; i > 0; i--) { /* Fisher-Yates */
        int64_t j = (int64_t)(nb_rng_next(r) % (uint64_t)(i + 1));
        nb_real v = t->data[i];
        t->data[i] = t->data[j], t->data[j] = v;
    }
    for (int64_t i = 0; i < t->size; i++)
        t->data[i] = (nb_real)(start + 0.1 * t->data[i] + 0.02 * nb_rng_uniform(r));
    return x;
}
