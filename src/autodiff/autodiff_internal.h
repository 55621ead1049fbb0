/* Autodiff's internals (src/autodiff): the passes on raw buffers that the
 * Jacobian code drives. Not installed. */
#ifndef NB_AUTODIFF_INTERNAL_H
#define NB_AUTODIFF_INTERNAL_H

#include "../ops/ops_internal.h"

/* Passes on raw buffers (autodiff.c), used by the Jacobian code:
 * seeds K x |out| -> adjoints of the scratch pass (nb_pass_adjoint of each
 * wrt node); tangents[i] K x |wrt[i]| -> out's tangent (nb_pass_tangent). */
nb_status nb_vjp_raw(nb_node *out, int64_t K, const nb_real *seeds, int nwrt, nb_node *const *wrt);
/* results[i] = a new tensor of shape (K,) + wrt[i].shape holding what
 * result_of(wrt[i]) points at (zeros where it gives NULL: nothing reached
 * that node), for nb_vjp and nb_hvp. NB_ERR_NOMEM frees those made so far
 * and leaves every results[i] NULL. */
nb_status nb_stacked_results(int64_t K, int nwrt, nb_node *const *wrt,
                             const nb_real *(*result_of)(const nb_node *), nb_tensor **results);
nb_status nb_jvp_raw(nb_node *out, int64_t K, int nwrt, nb_node *const *wrt, const nb_real *const *tangents);

/* For passes outside autodiff.c (hvp.c): the pass of that kind grown to
 * cover every node of g; paths from the nodes wrt to out marked in it
 * (through differentiable inputs; a source does not stop a path); and the
 * check that the last forward pass completed up to out. */
nb_status nb_pass_get(nb_graph *g, int kind, nb_pass **out);
void nb_pass_mark(nb_pass *p, nb_node *out, int nwrt, nb_node *const *wrt);
nb_status nb_check_forward_done(const char *who, const nb_node *out);
/* The second-order pass (hvp.c), forward-over-reverse on raw buffers: for a
 * seed u on out (|out| values) and K tangents vectors[i] (K x |wrt[i]|) on
 * leaves, afterwards nb_hvp_result(wrt[i]) is the derivative of the VJP
 * u . d out / d wrt[i] along the tangents,
 * sum_j d/dwrt[j] (u . d out / d wrt[i]) . v_j (K x |wrt[i]|): for a scalar
 * out and u = 1, K Hessian-vector products. (That VJP itself, the first
 * |wrt[i]| values of nb_pass_adjoint(wrt[i], NB_PASS_SECOND), is not
 * computed for leaves: nothing reads it.)
 * NULL where wrt[i] is on no path. vectors[i] NULL: wrt[i] is only read (its
 * tangent is zero), for cross blocks of a Hessian. The forward pass must
 * have run. */
nb_status nb_hvp_raw(nb_node *out, const nb_real *seed, int64_t K, int nwrt, nb_node *const *wrt,
                     const nb_real *const *vectors);
const nb_real *nb_hvp_result(const nb_node *wrt);

/* NB_ERR_ARG unless wrt are 1 or more leaves of out's graph; NB_ERR_SHAPE when
 * scalar and out is not a scalar (hvp.c; who names the caller). */
nb_status nb_second_check_args(const char *who, nb_node *out, int nwrt, nb_node *const *wrt, bool scalar);


#endif
