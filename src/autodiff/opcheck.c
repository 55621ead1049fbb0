/* The gradient check of every registered op (`nabla gradcheck`, and the
 * test suite in double): each op's cases (nb_op.cases, beside the op) build
 * a small graph, and the reverse- and forward-mode Jacobians of its output
 * are checked against central differences for every leaf whose name does
 * not start with '~' (labels and other constants). */
#include "autodiff_internal.h"

/* One case: its graph, then one gradcheck (and one report) per leaf.
 * Returns the failures, or -1 if the check could not run. */
static int check_case(const nb_op *op, const nb_op_case *c, nb_rng *r, const nb_gradcheck_opts *opts,
                      void (*report)(const nb_opcheck_row *row, void *user), void *user)
{
    nb_graph *g = nb_graph_new();
    if (!g) return -1;
    nb_node *out = c->build(g, r);
    int failures = out ? 0 : -1;
    for (int i = 0; out && i < nb_graph_size(g); i++) {
        nb_node *x = nb_graph_node(g, i);
        if (x->kind == NB_KIND_OP || x->name[0] == '~') continue;
        nb_opcheck_row row = {op->name, c->name, x->name, {0}, {0}};
        nb_shape_str(x->value.rank, x->value.shape, row.shape, sizeof row.shape);
        if (nb_gradcheck(out, x, opts, &row.r) != NB_OK) {
            failures = -1;
            break;
        }
        if (!row.r.ok) failures++;
        if (report) report(&row, user);
    }
    nb_graph_free(g);
    return failures;
}

int nb_opcheck_all(uint64_t seed, const nb_gradcheck_opts *opts,
                   void (*report)(const nb_opcheck_row *row, void *user), void *user)
{
    int failures = 0;
    nb_rng r;
    nb_rng_seed(&r, seed);
    for (int i = 0; i < nb_op_count(); i++) {
        const nb_op *op = nb_op_at(i);
        for (int c = 0; c < op->ncases; c++) {
            int f = check_case(op, &op->cases[c], &r, opts, report, user);
            if (f < 0) return -1;
            failures += f;
        }
    }
    return failures;
}
