/* What build functions share: parameters by their declaration, the end of a
 * build, refusals that name the layer. */
#include "layers.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

nb_node *nb_layer_param(nb_layer_ctx *c, int which, int rank, const int64_t *shape)
{
    nb_model *m = c->m;
    if (which < 0 || which >= c->type->nparams) {
        nb_fail(NB_ERR_ARG, "layer %d: %s has no parameter %d", c->index, c->type->keyword, which);
        return NULL;
    }
    if (m->nparams == NB_MODEL_MAX_PARAMS) {
        nb_fail(NB_ERR_ARG, "model: more than %d parameter tensors", NB_MODEL_MAX_PARAMS);
        return NULL;
    }
    char name[64];
    snprintf(name, sizeof name, "%d.%s", c->index, c->type->params[which].name);
    nb_node *p = nb_param(m->g, name, rank, shape);
    if (!p) return NULL;
    m->param_layer[m->nparams] = c->index;
    m->param_init[m->nparams] = (unsigned char)c->type->params[which].init;
    m->params[m->nparams++] = p;
    const nb_param_init init = c->type->params[which].init;
    if (init == NB_PARAM_STATE_ONES || init == NB_PARAM_STATE_ZEROS) nb_set_requires_grad(p, 0);
    return p;
}

nb_node *nb_layer_finish(nb_node *z, nb_activation a, nb_node **pre)
{
    if (!z) return NULL;
    *pre = z;
    return nb_layer_activate(z, a);
}

nb_node *nb_layer_refuse(nb_layer_ctx *c, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    nb_fail(NB_ERR_SHAPE, "layer %d (%s): %s", c->index, c->line, msg);
    c->reported = 1;
    return NULL;
}

int nb_layer_need_rank(nb_layer_ctx *c, nb_node *x, int rank, const char *what, const char *hint)
{
    const nb_tensor *v = nb_value(x);
    if (v->rank == rank) return 1;
    char s[96];
    nb_layer_refuse(c, "%s, got %s%s", what, NB_SHAPE_STR(v, s), hint);
    return 0;
}

nb_node *nb_layer_lookup(nb_layer_ctx *c, const char *name)
{
    const nb_model *m = c->m;
    if (!strcmp(name, "input")) return m->input;
    for (int i = 0; i < c->index && i < m->nlayers; i++)
        if (!strcmp(m->layers[i].name, name)) return m->layer_out[i];
    char names[256] = "input";
    size_t u = strlen(names);
    for (int i = 0; i < c->index && i < m->nlayers && u < sizeof names; i++)
        if (m->layers[i].name[0]) u += (size_t)snprintf(names + u, sizeof names - u, ", %s", m->layers[i].name);
    return nb_layer_refuse(c, "unknown name '%s': an entry can use only the outputs named before it (%s); name one "
                           "with 'ENTRY as NAME'", name, names);
}

int nb_layer_is_named_output(const nb_layer_ctx *c, const nb_node *node)
{
    const nb_model *m = c->m;
    if (node == m->input) return 1;
    for (int i = 0; i < c->index && i < m->nlayers; i++)
        if (m->layer_out[i] == node && m->layers[i].name[0]) return 1;
    return 0;
}
