/* Autodiff's internals (src/autodiff): the passes on raw buffers that the
 * Jacobian code drives. Not installed. */
#ifndef NB_AUTODIFF_INTERNAL_H
#define NB_AUTODIFF_INTERNAL_H

#include "../ops/ops_internal.h"

/* Passes on raw buffers (autodiff.c), used by the Jacobian code:
 * seeds K x |out| -> adjoints of the scratch pass (nb_pass_adjoint of each
 * wrt node); tangents[i] K x |wrt[i]| -> out's tangent (nb_pass_tangent). */
nb_status nb_vjp_raw(nb_node *out, int64_t K, const nb_real *seeds, int nwrt, nb_node *const *wrt);
nb_status nb_jvp_raw(nb_node *out, int64_t K, int nwrt, nb_node *const *wrt, const nb_real *const *tangents);

#endif
