/* Full Hessians, Gauss-Newton products and the Hessian check.
 *
 * nb_hessian: H[o..., i..., j...] = d^2 out[o] / d wrt[i] d wrt2[j], shape
 * out.shape + wrt.shape + wrt2.shape (jax.hessian's layout; wrt2 = wrt
 * gives the square Hessian), by forward-over-reverse (hvp.c): the seed e_o
 * on out and the tangents e_j on wrt2, K of them per pass, give
 * d(xbar)[k = j] at wrt = H[o, :, j]. The numeric mode (the reference)
 * takes central differences of the gradient:
 *   H[o, :, j] = (g_o(x2 + h e_j) - g_o(x2 - h e_j)) / 2h,  g_o = d out[o] / d wrt.
 *
 * Gauss-Newton: for a loss L(z, t) of logits z = f(w), the Hessian is
 *   d^2 L / dw^2 = J^T H_L J + sum_c (dL/dz_c) d^2 z_c / dw^2,
 * J = dz/dw and H_L = d^2 L / dz^2; the first term, G = J^T H_L J, is
 * positive semi-definite for the convex losses (mse, bce, cce) and equals
 * the Hessian where z is linear in w (a ReLU network's logits w.r.t. its
 * input, almost everywhere). G v = J^T (H_L (J v)): a JVP, the loss's
 * second-order rule with seed 1 (H_L u), and a VJP. */
#include "autodiff_internal.h"

#include <math.h>
#include <stdlib.h>

static double human_bytes(double b, const char **unit)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int u = 0;
    while (b >= 1024 && u < 5) b /= 1024, u++;
    *unit = units[u];
    return b;
}

/* H's shape, refused (before anything is computed) when its rank exceeds
 * NB_MAX_RANK or its bytes max_bytes. */
static nb_status hessian_shape(const nb_node *out, const nb_node *wrt, const nb_node *wrt2, size_t max_bytes,
                               int *rank, int64_t *shape)
{
    const nb_tensor *y = &out->value, *a = &wrt->value, *b = &wrt2->value;
    *rank = y->rank + a->rank + b->rank;
    if (*rank > NB_MAX_RANK)
        return nb_fail(NB_ERR_TOO_LARGE, "hessian: rank %d + %d + %d exceeds %d; reshape the tensors", y->rank,
                       a->rank, b->rank, NB_MAX_RANK);
    int r = 0;
    for (int d = 0; d < y->rank; d++) shape[r++] = y->shape[d];
    for (int d = 0; d < a->rank; d++) shape[r++] = a->shape[d];
    for (int d = 0; d < b->rank; d++) shape[r++] = b->shape[d];
    const size_t limit = max_bytes ? max_bytes : (size_t)2 << 30;
    const double elems = (double)y->size * (double)a->size * (double)b->size;
    const double bytes = elems * (double)sizeof(nb_real);
    if (nb_shape_size(*rank, shape) < 0 || bytes > (double)limit) {
        char s1[96], s2[96], s3[96];
        const char *u1, *u2;
        const double h = human_bytes(bytes, &u1), l = human_bytes((double)limit, &u2);
        return nb_fail(NB_ERR_TOO_LARGE,
                       "hessian: d2 %s%s / d %s%s d %s%s would need %.0f elements, %.0f bytes (%.1f %s), over the "
                       "limit of %.1f %s; raise max_bytes, take a smaller block, or use nb_hvp for products",
                       out->name, NB_SHAPE_STR(y, s1), wrt->name, NB_SHAPE_STR(a, s2), wrt2->name,
                       NB_SHAPE_STR(b, s3), elems, bytes, h, u1, l, u2);
    }
    return NB_OK;
}

/* Tangents per pass: the K-stacked buffers of a pass (three per node on a
 * path from the wrt nodes to out: xdot, d(ybar), and the op's scratch) near
 * 256 MiB, and at most NB_HESSIAN_CHUNK, in passes of equal size. Counting
 * every node of the graph made it 5 tangents per pass for the lecture CNN's
 * last dense kernel (1280 tangents, whose path is three small nodes): 256
 * passes of GEMMs with 5 x 10 columns. Past a few hundred, the products
 * gain nothing, the buffers grow (about 42 KiB per tangent there, beside
 * the 6.25 MiB of H) and each pass still costs its parallel regions (on a
 * loaded machine a wake-up each), so 3 passes of 427 there. */
enum { NB_HESSIAN_CHUNK = 448 };
static int64_t hessian_chunk(const nb_graph *g, const nb_pass *p, int64_t cols, int64_t chunk)
{
    if (chunk > 0) return chunk < cols ? chunk : cols;
    double per = 0;
    for (int i = 0; i < g->n; i++)
        if (p->on_path[i]) per += 3.0 * (double)g->nodes[i]->value.size;
    per *= sizeof(nb_real);
    int64_t k = per > 0 ? (int64_t)((256.0 * 1024 * 1024) / per) : cols;
    if (k < 1) k = 1;
    if (k > NB_HESSIAN_CHUNK) k = NB_HESSIAN_CHUNK;
    if (k >= cols) return cols > 0 ? cols : 1;
    const int64_t passes = (cols + k - 1) / k;
    return (cols + passes - 1) / passes;
}

/* H[i][k] = hv[k][i] (I x k1 of H's rows of J; zeros when hv is NULL: wrt
 * is on no path), in tiles of 32 x 32 so that neither side is walked with
 * a stride of a whole row per element. Threaded by one column's size (a
 * region per pass costs a wake-up of the other thread on a loaded machine). */
static void columns_into(const nb_real *hv, int64_t k1, int64_t I, int64_t J, nb_real *H)
{
    enum { T = 32 };
    (void)k1;
#pragma omp parallel for schedule(static) if (I > NB_PAR_COPY)
    for (int64_t i0 = 0; i0 < I; i0 += T)
        for (int64_t k0 = 0; k0 < k1; k0 += T) {
            const int64_t i1 = i0 + T < I ? i0 + T : I, kk1 = k0 + T < k1 ? k0 + T : k1;
            for (int64_t i = i0; i < i1; i++)
                for (int64_t k = k0; k < kk1; k++) H[i * J + k] = hv ? hv[k * I + i] : 0;
        }
}

/* Exact: for each output o, tangents e_j on wrt2 in chunks of K; the
 * adjoint tangents at wrt are the columns H[o, :, j0 .. j0 + K). */
static nb_status hessian_exact(nb_node *out, nb_node *wrt, nb_node *wrt2, int64_t chunk, nb_real *H)
{
    const int64_t O = out->value.size, I = wrt->value.size, J = wrt2->value.size;
    nb_node *nodes[2] = {wrt2, wrt};
    nb_pass *p;
    nb_status s = nb_pass_get(out->graph, NB_PASS_SECOND, &p);
    if (s) return s;
    nb_pass_mark(p, out, wrt == wrt2 ? 1 : 2, nodes); /* what nb_hvp_raw will mark: the path's size */
    const int64_t K = hessian_chunk(out->graph, p, J, chunk);
    nb_real *seed = nb_calloc_real(O + K * J);
    if (!seed) return NB_ERR_NOMEM;
    nb_real *tangents = seed + O;
    for (int64_t o = 0; o < O && !s; o++) {
        memset(seed, 0, (size_t)O * sizeof(nb_real));
        seed[o] = 1;
        for (int64_t j0 = 0; j0 < J && !s; j0 += K) {
            const int64_t k1 = J - j0 < K ? J - j0 : K;
            memset(tangents, 0, (size_t)(k1 * J) * sizeof(nb_real));
            for (int64_t k = 0; k < k1; k++) tangents[k * J + j0 + k] = 1;
            const nb_real *vectors[2] = {tangents, NULL};
            if ((s = nb_hvp_raw(out, seed, k1, wrt == wrt2 ? 1 : 2, nodes, vectors))) break;
            columns_into(nb_hvp_result(wrt), k1, I, J, H + o * I * J + j0);
        }
    }
    nb_free(seed);
    return s;
}

/* The gradients of every output, g[o] = d out[o] / d wrt (O x I), at the
 * current values, the forward pass run at the last key. */
static nb_status gradients_at(nb_node *out, nb_node *wrt, const nb_real *eye, nb_real *g)
{
    nb_status s = nb_forward_keyed(out, out->graph->key);
    if (!s) s = nb_vjp_raw(out, out->value.size, eye, 1, &wrt);
    if (s) return s;
    const nb_real *adj = nb_pass_adjoint(wrt, NB_PASS_SCRATCH);
    const size_t bytes = (size_t)(out->value.size * wrt->value.size) * sizeof(nb_real);
    if (adj) memcpy(g, adj, bytes);
    else memset(g, 0, bytes);
    return NB_OK;
}

/* Numeric: H[o, :, j] = (g_o(x2 + h e_j) - g_o(x2 - h e_j)) / (h+ + h-), with
 * the steps the element type really took. */
static nb_status hessian_numeric(nb_node *out, nb_node *wrt, nb_node *wrt2, double eps, nb_real *H)
{
    const int64_t O = out->value.size, I = wrt->value.size, J = wrt2->value.size;
    nb_real *eye = nb_calloc_real(O * O + 2 * O * I);
    if (!eye) return NB_ERR_NOMEM;
    nb_real *gp = eye + O * O, *gm = gp + O * I, *x = wrt2->value.data;
    for (int64_t o = 0; o < O; o++) eye[o * O + o] = 1;
    nb_status s = NB_OK;
    for (int64_t j = 0; j < J && !s; j++) {
        const nb_real xv = x[j], xp = (nb_real)((double)xv + eps), xm = (nb_real)((double)xv - eps);
        const double h = (double)xp - (double)xm;
        if (!(h > 0)) {
            s = nb_fail(NB_ERR_ARG, "hessian: the numeric step eps %g is lost in %s's rounding at %s element %lld "
                        "(value %g); use a larger eps", eps, nb_precision(), wrt2->name, (long long)j, (double)xv);
            break;
        }
        x[j] = xp;
        s = gradients_at(out, wrt, eye, gp);
        x[j] = xm;
        if (!s) s = gradients_at(out, wrt, eye, gm);
        x[j] = xv;
        for (int64_t o = 0; o < O && !s; o++)
            for (int64_t i = 0; i < I; i++)
                H[(o * I + i) * J + j] = (nb_real)(((double)gp[o * I + i] - (double)gm[o * I + i]) / h);
    }
    nb_free(eye);
    nb_status s2 = nb_forward_keyed(out, out->graph->key); /* back at the unperturbed point */
    return s ? s : s2;
}

static double default_eps(void)
{
    nb_gradcheck_opts d;
    nb_gradcheck_defaults(&d);
    return d.eps;
}

nb_status nb_hessian(nb_node *out, nb_node *wrt, nb_node *wrt2, const nb_hessian_opts *opts, nb_tensor **H)
{
    static const nb_hessian_opts defaults = {0};
    if (!H) return nb_fail(NB_ERR_ARG, "hessian: H is NULL");
    *H = NULL;
    if (!opts) opts = &defaults;
    if (!out || !wrt) return nb_fail(NB_ERR_ARG, "hessian: out and wrt must not be NULL");
    if (!wrt2) wrt2 = wrt;
    nb_node *both[2] = {wrt, wrt2};
    nb_status s = nb_graph_prepare(out->graph); /* shapes first: too large is refused before any pass */
    if (!s) s = nb_second_check_args("hessian", out, 2, both, false);
    if (s) return s;
    int rank;
    int64_t shape[NB_MAX_RANK];
    if ((s = hessian_shape(out, wrt, wrt2, opts->max_bytes, &rank, shape))) return s;
    if ((s = nb_forward_again(out->graph))) return s;
    nb_tensor *t = nb_tensor_new(rank, shape);
    if (!t) return NB_ERR_NOMEM;
    if (t->size > 0) {
        if (opts->numeric) s = hessian_numeric(out, wrt, wrt2, opts->eps > 0 ? opts->eps : default_eps(), t->data);
        else s = hessian_exact(out, wrt, wrt2, opts->chunk, t->data);
    }
    if (s) {
        nb_tensor_free(t);
        return s;
    }
    *H = t;
    return NB_OK;
}

/* ---------------------------------------------------------- Gauss-Newton */

/* H_L u for the loss's logits (input 0) and K tangents u (K x |z|): the
 * loss's second-order rule with seed 1 and no tangent on its target. */
static nb_status loss_hessian_product(nb_node *loss, int64_t K, nb_real *u, nb_real *out)
{
    nb_real *xdots[NB_NODE_MAX_INPUTS] = {u};
    const nb_real one = 1;
    return loss->op->vjp_tangent(loss, 0, K, &one, xdots, out, false);
}

nb_status nb_gauss_newton_vp(nb_node *loss, int nwrt, nb_node *const *wrt, const nb_tensor *const *vectors,
                             nb_tensor **results)
{
    nb_status s = nb_second_check_args("gauss-newton", loss, nwrt, wrt, true);
    if (s) return s;
    if (!vectors || !results) return nb_fail(NB_ERR_ARG, "gauss-newton: vectors or results is NULL");
    if (loss->kind != NB_KIND_OP || !loss->op->vjp_tangent || loss->ninputs < 1)
        return nb_fail(NB_ERR_ARG, "gauss-newton: '%s' is not a loss of logits (mse, bce or cce)", loss->name);
    nb_node *z = loss->in[0];
    int64_t K = -1;
    const nb_real **vdata = malloc(sizeof *vdata * (size_t)nwrt); /* any number of wrt nodes */
    if (!vdata) return nb_fail(NB_ERR_NOMEM, "gauss-newton: out of memory for %d wrt nodes", nwrt);
    for (int i = 0; i < nwrt; i++) {
        const nb_tensor *v = vectors[i];
        bool ok = v && v->rank == wrt[i]->value.rank + 1 && (K < 0 || v->shape[0] == K);
        for (int d = 0; ok && d < wrt[i]->value.rank; d++) ok = v->shape[d + 1] == wrt[i]->value.shape[d];
        if (!ok) {
            free(vdata);
            return nb_fail(NB_ERR_SHAPE, "gauss-newton: vectors[%d] must have shape (K,) + the shape of '%s'", i,
                           wrt[i]->name);
        }
        K = v->shape[0];
        vdata[i] = v->data;
        results[i] = NULL;
    }
    const int64_t m = z->value.size;
    nb_real *u = NULL;
    if (!(s = nb_forward_again(loss->graph)) && m > 0 && K > INT64_MAX / 4 / m)
        s = nb_fail(NB_ERR_TOO_LARGE, "gauss-newton: too many vectors");
    if (!s && !(u = nb_calloc_real(2 * K * m + 1))) s = NB_ERR_NOMEM;
    if (!s && !(s = nb_jvp_raw(z, K, nwrt, wrt, vdata))) { /* u = J v */
        const nb_real *t = nb_pass_tangent(z, NB_PASS_SCRATCH);
        if (t) memcpy(u, t, (size_t)(K * m) * sizeof(nb_real));
        s = loss_hessian_product(loss, K, u, u + K * m); /* H_L u */
    }
    if (!s) s = nb_vjp_raw(z, K, u + K * m, nwrt, wrt); /* J^T H_L u */
    nb_free(u);
    free(vdata);
    if (s) return s;
    for (int i = 0; i < nwrt && !s; i++) {
        int64_t shape[NB_MAX_RANK + 1] = {K};
        memcpy(shape + 1, wrt[i]->value.shape, sizeof(int64_t) * (size_t)wrt[i]->value.rank);
        if (!(results[i] = nb_tensor_new(wrt[i]->value.rank + 1, shape))) s = NB_ERR_NOMEM;
        const nb_real *adj = s ? NULL : nb_pass_adjoint(wrt[i], NB_PASS_SCRATCH);
        if (adj) memcpy(results[i]->data, adj, (size_t)results[i]->size * sizeof(nb_real));
    }
    if (s)
        for (int i = 0; i < nwrt; i++) nb_tensor_free(results[i]), results[i] = NULL;
    return s;
}

/* ---------------------------------------------------------- Hessian check */

static void unflatten(int64_t flat, const nb_tensor *t, int64_t *idx)
{
    for (int d = t->rank - 1; d >= 0; d--) {
        idx[d] = t->shape[d] ? flat % t->shape[d] : 0;
        flat = t->shape[d] ? flat / t->shape[d] : 0;
    }
}

nb_status nb_hessian_check(nb_node *out, nb_node *wrt, nb_node *wrt2, const nb_gradcheck_opts *opts,
                           nb_hessian_check_result *res)
{
    if (!res) return nb_fail(NB_ERR_ARG, "hessian check: result is NULL");
    memset(res, 0, sizeof *res);
    nb_gradcheck_opts d;
    nb_gradcheck_defaults(&d);
    if (opts && opts->eps > 0) d.eps = opts->eps;
    if (opts && opts->atol > 0) d.atol = opts->atol;
    if (opts && opts->rtol > 0) d.rtol = opts->rtol;
    nb_tensor *Ha = NULL, *Hn = NULL;
    nb_status s = nb_hessian(out, wrt, wrt2, &(nb_hessian_opts){0, 0, 0, 0}, &Ha);
    if (!s) s = nb_hessian(out, wrt, wrt2, &(nb_hessian_opts){1, d.eps, 0, 0}, &Hn);
    if (s) goto done;
    res->ok = 1;
    res->worst_flat = -1;
    for (int64_t i = 0; i < Ha->size; i++) {
        const double a = Ha->data[i], n = Hn->data[i], err = fabs(a - n);
        double ratio = err / (d.atol + d.rtol * fabs(n));
        if (!isfinite(a) || !isfinite(n)) ratio = INFINITY;
        if (err > res->max_err || !isfinite(err)) res->max_err = err;
        if (fabs(a) > res->max_abs_hessian) res->max_abs_hessian = fabs(a);
        if (ratio > res->worst_ratio || res->worst_flat < 0) {
            res->worst_ratio = ratio, res->worst_flat = i;
            res->worst_analytic = a, res->worst_numeric = n;
        }
        if (!(ratio <= 1)) res->ok = 0;
    }
    res->worst_rank = Ha->rank;
    if (res->worst_flat >= 0) unflatten(res->worst_flat, Ha, res->worst_index);
done:
    nb_tensor_free(Ha);
    nb_tensor_free(Hn);
    return s;
}

/* ------------------------------------------- the second-order op check */

/* A scalar of out that exercises both halves of every rule: the seed of out
 * (2 c out + d) and its tangent (2 c outdot) are both non-zero:
 *   L = sum(c * out * out) + sum(d * out),  c, d random constants. */
static nb_node *scalar_of(nb_graph *g, nb_rng *r, nb_node *out)
{
    const nb_tensor *y = &out->value;
    nb_node *c = nb_input(g, "~c", y->rank, y->shape), *d = nb_input(g, "~d", y->rank, y->shape);
    if (!c || !d) return NULL;
    nb_tensor_fill_uniform(nb_value(c), r, -1, 1);
    nb_tensor_fill_uniform(nb_value(d), r, -1, 1);
    return nb_add(nb_sum(nb_mul(c, nb_mul(out, out)), 0, NULL, 0), nb_sum(nb_mul(d, out), 0, NULL, 0));
}

/* One row per block (a, b) of leaves a <= b of one case. */
static int check_case_blocks(nb_graph *g, nb_node *L, const char *op, const char *case_name,
                             const nb_gradcheck_opts *opts, void (*report)(const nb_opcheck2_row *, void *), void *user)
{
    int failures = 0;
    for (int a = 0; a < nb_graph_size(g); a++)
        for (int b = a; b < nb_graph_size(g); b++) {
            nb_node *x = nb_graph_node(g, a), *x2 = nb_graph_node(g, b);
            if (x->kind == NB_KIND_OP || x2->kind == NB_KIND_OP || x->name[0] == '~' || x2->name[0] == '~') continue;
            nb_opcheck2_row row = {op, case_name, x->name, x2->name, {0}};
            if (nb_hessian_check(L, x, x2, opts, &row.r) != NB_OK) return -1;
            if (!row.r.ok) failures++;
            if (report) report(&row, user);
        }
    return failures;
}

int nb_opcheck_second_all(uint64_t seed, const nb_gradcheck_opts *opts,
                          void (*report)(const nb_opcheck2_row *row, void *user), void *user)
{
    int failures = 0;
    nb_rng r;
    nb_rng_seed(&r, seed);
    for (int i = 0; i < nb_op_count(); i++) {
        const nb_op *op = nb_op_at(i);
        if (!op->vjp_tangent)
            return nb_fail(NB_ERR_UNSUPPORTED, "second-order check: op %s has no second-order rule (vjp_tangent)",
                           op->name), -1;
        for (int c = 0; c < op->ncases; c++) {
            nb_graph *g = nb_graph_new();
            nb_node *out = g ? op->cases[c].build(g, &r) : NULL;
            nb_node *L = out ? scalar_of(g, &r, out) : NULL;
            const int f = L ? check_case_blocks(g, L, op->name, op->cases[c].name, opts, report, user) : -1;
            nb_graph_free(g);
            if (f < 0) return -1;
            failures += f;
        }
    }
    return failures;
}
