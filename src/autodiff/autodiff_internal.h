/* Autodiff's internals (src/autodiff): the passes on raw buffers that the
 * Jacobian code drives, and the late writing of a deferred adjoint. Not
 * installed. */
#ifndef NB_AUTODIFF_INTERNAL_H
#define NB_AUTODIFF_INTERNAL_H

#include "../ops/ops_internal.h"

/* Writes a deferred adjoint (via set) of pass `pass` into its data as the
 * deferring op's vjp would have; no-op otherwise (autodiff.c). */
void nb_adjoint_resolve(nb_node *x, int pass);
/* Resolves every deferred adjoint of the last nb_backward while it can
 * still be formed: before a forward pass that nb_vjp, nb_jvp or
 * nb_jacobian run themselves, which would drop it (nabla.h: those passes
 * leave nb_grad as it is). */
void nb_grads_settle(nb_graph *g);
/* Passes on raw buffers (autodiff.c), used by the Jacobian code:
 * seeds K x |out| -> adjoints of the scratch pass (nb_pass_adjoint of each
 * wrt node); tangents[i] K x |wrt[i]| -> out's tangent (nb_pass_tangent). */
nb_status nb_vjp_raw(nb_node *out, int64_t K, const nb_real *seeds, int nwrt, nb_node *const *wrt);
nb_status nb_jvp_raw(nb_node *out, int64_t K, int nwrt, nb_node *const *wrt, const nb_real *const *tangents);

#endif
