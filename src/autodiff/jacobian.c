/* Full Jacobians J = d out / d wrt, shape out.shape + wrt.shape, with
 * J[o..., i...] = d out[o...] / d wrt[i...] (PyTorch's, JAX's and
 * TensorFlow's convention), by
 *   reverse mode: row o of J is the VJP of the seed e_o; K rows per pass;
 *   forward mode: column i of J is the JVP of the tangent e_i; K per pass;
 *   central differences: column i is (out(x + eps e_i) - out(x - eps e_i)) / 2 eps.
 * Per-example (batch) Jacobians, out (N, o...) and wrt (N, i...): since example
 * n's output depends on example n's input only, one seed e_o set in every
 * example at once gives row o of all N Jacobians: o passes instead of N*o,
 * and the N*N cross terms are never formed. */
#include "../dist/comm.h"
#include "autodiff_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    nb_node *out, *wrt;
    int64_t N;    /* examples (1 unless per_example) */
    int64_t O, I; /* per-example sizes of out and wrt */
    int64_t chunk;
} jac_job;

static double human_bytes(double b, const char **unit)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int u = 0;
    while (b >= 1024 && u < 5)
        b /= 1024, u++;
    *unit = units[u];
    return b;
}

/* The one place for the numeric defaults of nb_jacobian and nb_gradcheck.
 * Central differences err by eps^2 |f'''| / 6 (truncation) plus about
 * ulp(f) / eps (rounding), least near eps = cbrt(ulp): in double PyTorch's
 * gradcheck defaults; in float (ulp 1.2e-7) a step of 1e-3, with
 * tolerances above its rounding error of ~1e-4 (over 20 seeds of the op
 * table the worst ratio is 0.3; with eps 1e-6 float's rounding is most of
 * the difference). */
void nb_gradcheck_defaults(nb_gradcheck_opts *o)
{
    if (!o) return;
    if (sizeof(nb_real) == 8)
        *o = (nb_gradcheck_opts){1e-6, 1e-5, 1e-3};
    else
        *o = (nb_gradcheck_opts){1e-3, 1e-3, 1e-2};
}

/* opts' fields, zeros (or no opts) replaced by the defaults. */
static nb_gradcheck_opts gradcheck_opts_or_defaults(const nb_gradcheck_opts *opts)
{
    nb_gradcheck_opts d;
    nb_gradcheck_defaults(&d);
    if (opts && opts->eps > 0) d.eps = opts->eps;
    if (opts && opts->atol > 0) d.atol = opts->atol;
    if (opts && opts->rtol > 0) d.rtol = opts->rtol;
    return d;
}

static nb_status jac_shape(const jac_job *j, const nb_jacobian_opts *o, int *rank, int64_t *shape)
{
    const nb_tensor *y = &j->out->value, *x = &j->wrt->value;
    int skip = o->per_example ? 1 : 0;
    *rank = y->rank + x->rank - skip;
    if (*rank > NB_MAX_RANK) {
        return nb_fail(NB_ERR_TOO_LARGE, "jacobian: rank %d + %d exceeds %d; reshape or use per_example", y->rank,
                       x->rank - skip, NB_MAX_RANK);
    }
    int r = 0;
    for (int d = 0; d < y->rank; d++)
        shape[r++] = y->shape[d];
    for (int d = skip; d < x->rank; d++)
        shape[r++] = x->shape[d];
    int64_t elems = nb_shape_size(*rank, shape);
    size_t limit = o->max_bytes ? o->max_bytes : (size_t)2 << 30;
    double bytes = (double)j->N * (double)j->O * (double)j->I * (double)sizeof(nb_real);
    if (elems < 0 || bytes > (double)limit) {
        char s1[96], s2[96];
        const char *u1, *u2;
        double h = human_bytes(bytes, &u1), l = human_bytes((double)limit, &u2);
        return nb_fail(NB_ERR_TOO_LARGE,
                       "jacobian: d %s%s / d %s%s would need %.0f elements, %.0f bytes (%.1f %s), over the limit "
                       "of %.1f %s; raise max_bytes, take a per-example Jacobian, or use nb_vjp/nb_jvp for products",
                       j->out->name, NB_SHAPE_STR(y, s1), j->wrt->name, NB_SHAPE_STR(x, s2),
                       (double)j->N * (double)j->O * (double)j->I, bytes, h, u1, l, u2);
    }
    return NB_OK;
}

/* Seeds/tangents per pass: enough to amortise the pass, few enough that
 * the stacked buffers of every node stay near 256 MiB. */
static int64_t auto_chunk(nb_graph *g, int64_t rows)
{
    double per = 0;
    for (int i = 0; i < g->n; i++)
        per += (double)g->nodes[i]->value.size;
    per *= sizeof(nb_real);
    int64_t k = per > 0 ? (int64_t)((256.0 * 1024 * 1024) / per) : rows;
    if (k < 1) k = 1;
    return k < rows ? k : rows;
}

/* Rows [r0, r1) of J by reverse mode, K = chunk per pass from r0. With
 * part, each pass's adjoints (K x N x I) are stored there one after the
 * other instead of into J: part[((o - r0) N + n) I + i] = J[n, o, i]. */
static nb_status jac_rev(const jac_job *j, nb_real *J, int64_t r0, int64_t r1, nb_real *part)
{
    int64_t N = j->N, O = j->O, I = j->I;
    nb_real *seeds = nb_calloc_real(j->chunk * N * O);
    if (!seeds) return NB_ERR_NOMEM;
    nb_status s = NB_OK;
    for (int64_t o0 = r0; o0 < r1 && !s; o0 += j->chunk) {
        int64_t K = r1 - o0 < j->chunk ? r1 - o0 : j->chunk;
        memset(seeds, 0, (size_t)(K * N * O) * sizeof(nb_real));
        for (int64_t k = 0; k < K; k++)
            for (int64_t n = 0; n < N; n++)
                seeds[(k * N + n) * O + o0 + k] = 1;
        s = nb_vjp_raw(j->out, K, seeds, 1, &j->wrt);
        if (s) break;
        /* adj[k, n, i] = J[n, o0 + k, i] */
        const nb_real *adj = nb_pass_adjoint(j->wrt, NB_PASS_SCRATCH);
        if (part) {
            nb_real *dst = part + (o0 - r0) * N * I;
            if (adj)
                memcpy(dst, adj, (size_t)(K * N * I) * sizeof(nb_real));
            else
                memset(dst, 0, (size_t)(K * N * I) * sizeof(nb_real));
            continue;
        }
        for (int64_t k = 0; k < K; k++)
            for (int64_t n = 0; n < N; n++) {
                nb_real *dst = J + (n * O + o0 + k) * I;
                if (adj)
                    memcpy(dst, adj + (k * N + n) * I, (size_t)I * sizeof(nb_real));
                else
                    memset(dst, 0, (size_t)I * sizeof(nb_real));
            }
    }
    nb_free(seeds);
    return s;
}

/* Columns [r0, r1) of J by forward mode, as jac_rev: with part,
 * part[((i - r0) N + n) O + o] = J[n, o, i]. */
static nb_status jac_fwd(const jac_job *j, nb_real *J, int64_t r0, int64_t r1, nb_real *part)
{
    int64_t N = j->N, O = j->O, I = j->I;
    nb_real *tangents = nb_calloc_real(j->chunk * N * I);
    if (!tangents) return NB_ERR_NOMEM;
    nb_status s = NB_OK;
    for (int64_t i0 = r0; i0 < r1 && !s; i0 += j->chunk) {
        int64_t K = r1 - i0 < j->chunk ? r1 - i0 : j->chunk;
        memset(tangents, 0, (size_t)(K * N * I) * sizeof(nb_real));
        for (int64_t k = 0; k < K; k++)
            for (int64_t n = 0; n < N; n++)
                tangents[(k * N + n) * I + i0 + k] = 1;
        const nb_real *t = tangents;
        s = nb_jvp_raw(j->out, K, 1, &j->wrt, &t);
        if (s) break;
        /* tan[k, n, o] = J[n, o, i0 + k] */
        const nb_real *tan = nb_pass_tangent(j->out, NB_PASS_SCRATCH);
        if (part) {
            nb_real *dst = part + (i0 - r0) * N * O;
            if (tan)
                memcpy(dst, tan, (size_t)(K * N * O) * sizeof(nb_real));
            else
                memset(dst, 0, (size_t)(K * N * O) * sizeof(nb_real));
            continue;
        }
        for (int64_t k = 0; k < K; k++)
            for (int64_t n = 0; n < N; n++)
                for (int64_t o = 0; o < O; o++)
                    J[(n * O + o) * I + i0 + k] = tan ? tan[(k * N + n) * O + o] : 0;
    }
    nb_free(tangents);
    return s;
}

/* A forward pass that redraws nothing: it runs at the given step (the one of
 * the last forward pass), so random ops (dropout) reuse their draws and a
 * Jacobian differentiates the function that was evaluated. */
static nb_status forward_at_step(nb_graph *g, uint64_t step)
{
    return g->n ? nb_forward_keyed(g->nodes[g->n - 1], step) : NB_OK;
}

/* Kink detection during the numeric Jacobian (see nb_jacobian_kinks). */
typedef struct {
    double atol, rtol;
    nb_real *flags; /* N x I: 1 where wrt[n, i] sits at a kink for this eps, else 0 */
    int64_t count;
} kink_job;

/* Column i of J (all N examples' element i perturbed at once) from
 *   f+ = out(x + h+ e_i), f0 = out(x), f- = out(x - h- e_i),
 * with h+ and h- the steps float or double really took (x + eps rounds):
 *   J[., i] = (f+ - f-) / (h+ + h-).
 * With kk, also the one-sided slopes d+ = (f+ - f0) / h+ and
 * d- = (f0 - f-) / h-: where f is differentiable they agree up to
 * eps |f''| and rounding; across a kink (relu at 0) or a tie (equal values
 * in a max pool's window) they differ by the jump in slope, whatever eps,
 * and the central difference is their mean, which is no derivative. J may
 * be NULL (kinks only). */
static nb_status jac_numeric(const jac_job *j, double eps, nb_real *J, kink_job *kk)
{
    nb_graph *g = j->out->graph;
    const uint64_t step = g->key;
    int64_t N = j->N, O = j->O, I = j->I;
    if (j->wrt->kind == NB_KIND_OP)
        return nb_fail(NB_ERR_ARG, "jacobian: the numeric mode needs an input or parameter, '%s' is an op output",
                       j->wrt->name);
    nb_real *plus = nb_calloc_real(3 * N * O + N);
    double *h = nb_alloc((size_t)(2 * N) * sizeof(double) + 1);
    if (!plus || !h) {
        nb_free(plus), nb_free(h);
        return NB_ERR_NOMEM;
    }
    nb_real *minus = plus + N * O, *y0 = minus + N * O;
    nb_real *orig = y0 + N * O; /* x[n, i] before perturbing, restored exactly */
    nb_real *x = j->wrt->value.data;
    /* Every output is copied before x changes again: out may be wrt itself
     * (d x / d x), whose value is the buffer being perturbed. */
    const nb_real *y = j->out->value.data;
    memcpy(y0, y, (size_t)(N * O) * sizeof(nb_real)); /* nb_jacobian ran the forward pass at x */
    if (kk) kk->count = 0;
    nb_status s = NB_OK;
    for (int64_t i = 0; i < I && !s; i++) {
        for (int64_t n = 0; n < N; n++) {
            nb_real xv = x[n * I + i], xp = (nb_real)((double)xv + eps), xm = (nb_real)((double)xv - eps);
            h[2 * n] = (double)xp - (double)xv, h[2 * n + 1] = (double)xv - (double)xm;
            /* NaN or Inf: no step is taken, whatever eps; the column is NaN
             * (or nothing) as the analytic one is, and the caller reports it */
            if (!isfinite((double)xv))
                h[2 * n] = h[2 * n + 1] = eps;
            else if (!(h[2 * n] > 0 && h[2 * n + 1] > 0)) {
                s = nb_fail(NB_ERR_ARG,
                            "jacobian: the numeric step eps %g is lost in %s's rounding at %s element %lld "
                            "(value %g); use a larger eps",
                            eps, nb_precision(), j->wrt->name, (long long)(n * I + i), (double)xv);
                break;
            }
            orig[n] = xv;
        }
        if (s) break;
        for (int64_t n = 0; n < N; n++)
            x[n * I + i] = (nb_real)(orig[n] + h[2 * n]);
        if ((s = forward_at_step(g, step))) {
            for (int64_t n = 0; n < N; n++)
                x[n * I + i] = orig[n];
            break;
        }
        memcpy(plus, y, (size_t)(N * O) * sizeof(nb_real));
        for (int64_t n = 0; n < N; n++)
            x[n * I + i] = (nb_real)(orig[n] - h[2 * n + 1]);
        s = forward_at_step(g, step);
        memcpy(minus, y, (size_t)(N * O) * sizeof(nb_real));
        for (int64_t n = 0; n < N; n++)
            x[n * I + i] = orig[n];
        if (s) break;
        for (int64_t n = 0; n < N; n++) {
            const double hp = h[2 * n], hm = h[2 * n + 1];
            bool kink = false;
            for (int64_t o = 0; o < O; o++) {
                const double fp = plus[n * O + o], fm = minus[n * O + o], f0 = y0[n * O + o];
                const double c = (fp - fm) / (hp + hm);
                if (J) J[(n * O + o) * I + i] = (nb_real)c;
                /* Half the jump is what the kink can move c away from
                 * either one-sided slope (the analytic value is one of
                 * them or between): flag it when that exceeds the
                 * gradient check's tolerance. */
                if (kk && !kink && fabs((fp - f0) / hp - (f0 - fm) / hm) / 2 > kk->atol + kk->rtol * fabs(c))
                    kink = true;
            }
            if (kk) {
                kk->flags[n * I + i] = kink;
                kk->count += kink;
            }
        }
    }
    nb_free(plus);
    nb_free(h);
    nb_status s2 = forward_at_step(g, step); /* leave the graph at the unperturbed point */
    return s ? s : s2;
}

/* ------------------------------------------------ several processes */

/* Rank r's rows (reverse mode) or columns (forward mode) of `rows`:
 * whole chunks, contiguous, in rank order. */
static void rank_rows(int64_t rows, int64_t chunk, int r, int P, int64_t *r0, int64_t *r1)
{
    const int64_t c = (rows + chunk - 1) / chunk, c0 = c * r / P, c1 = c * (r + 1) / P;
    *r0 = c0 * chunk < rows ? c0 * chunk : rows;
    *r1 = c1 * chunk < rows ? c1 * chunk : rows;
}

/* The ranks hold the same graph values and options: a hash of them. */
static nb_status ranks_agree(const nb_comm *c, const jac_job *j, nb_jac_mode mode)
{
    const int64_t dims[5] = {(int64_t)mode, j->N, j->O, j->I, j->chunk};
    uint64_t h = nb_hash_bytes(NB_HASH_START, dims, sizeof dims);
    h = nb_hash_bytes(h, j->out->value.data, (size_t)j->out->value.size * sizeof(nb_real));
    h = nb_hash_bytes(h, j->wrt->value.data, (size_t)j->wrt->value.size * sizeof(nb_real));
    return nb_comm_same_hash(c, h, "jacobian", "shapes, options or values of out and wrt",
                             "every rank must call nb_jacobian on the same graph, values and options");
}

/* Rank 0: the parts (P x rows_max x N x X, X = I or O) into J. */
static void parts_to_J(const jac_job *j, nb_jac_mode mode, int P, int64_t rows, const nb_real *recv, int64_t part_len,
                       nb_real *J)
{
    const int64_t N = j->N, O = j->O, I = j->I;
    for (int q = 0; q < P; q++) {
        int64_t q0, q1;
        rank_rows(rows, j->chunk, q, P, &q0, &q1);
        const nb_real *p = recv + q * part_len;
        for (int64_t r = q0; r < q1; r++)
            for (int64_t n = 0; n < N; n++) {
                const nb_real *src = p + ((r - q0) * N + n) * (mode == NB_JAC_REV ? I : O);
                if (mode == NB_JAC_REV)
                    memcpy(J + (n * O + r) * I, src, (size_t)I * sizeof(nb_real));
                else
                    for (int64_t o = 0; o < O; o++)
                        J[(n * O + o) * I + r] = src[o];
            }
    }
}

/* This rank's chunks of J, then rank 0 gathers every rank's part. */
static nb_status jac_dist(const jac_job *j, const nb_comm *c, nb_jac_mode mode, int rank, const int64_t *shape,
                          nb_tensor **J)
{
    const int64_t rows = mode == NB_JAC_REV ? j->O : j->I, X = mode == NB_JAC_REV ? j->I : j->O;
    nb_status s = ranks_agree(c, j, mode);
    if (s) return s;
    int64_t r0, r1, most = 0;
    for (int q = 0; q < c->size; q++) {
        rank_rows(rows, j->chunk, q, c->size, &r0, &r1);
        most = r1 - r0 > most ? r1 - r0 : most;
    }
    rank_rows(rows, j->chunk, c->rank, c->size, &r0, &r1);
    const int64_t part_len = most * j->N * X;
    const int root = c->rank == 0, all_receive = !c->gather;
    nb_real *part = nb_calloc_real(part_len + 1);
    nb_real *recv = root || all_receive ? nb_calloc_real(c->size * part_len + 1) : NULL;
    nb_tensor *t = root ? nb_tensor_new(rank, shape) : NULL;
    if (!part || ((root || all_receive) && !recv) || (root && !t))
        s = nb_fail(NB_ERR_NOMEM, "jacobian: out of memory for the ranks' parts of J");
    if (!s && r1 > r0 && j->O > 0 && j->I > 0)
        s = mode == NB_JAC_REV ? jac_rev(j, NULL, r0, r1, part) : jac_fwd(j, NULL, r0, r1, part);
    /* No rank enters the gather that a failed one would skip. */
    s = nb_comm_any_failed(c, s, "jacobian");
    const size_t bytes = (size_t)part_len * sizeof(nb_real);
    if (!s) s = c->gather ? c->gather(part, bytes, recv, c->user) : c->allgather(part, bytes, recv, c->user);
    if (!s && root) parts_to_J(j, mode, c->size, rows, recv, part_len, t->data);
    nb_free(part);
    nb_free(recv);
    if (s || !root) {
        nb_tensor_free(t);
        return s;
    }
    *J = t;
    return NB_OK;
}

/* The job, J's shape (checked against the size limit when with_J) and the
 * mode, after the forward pass at the last key. */
static nb_status jac_prepare(nb_node *out, nb_node *wrt, const nb_jacobian_opts *o, bool numeric, bool with_J,
                             jac_job *jp, int *rank, int64_t *shape, nb_jac_mode *mode_out)
{
    /* Shapes first: a Jacobian too large to hold is refused before any pass runs. */
    nb_status s = nb_graph_prepare(out->graph);
    if (s) return s;
    jac_job j = {out, wrt, 1, out->value.size, wrt->value.size, 0};
    if (o->per_example) {
        if (out->value.rank < 1 || wrt->value.rank < 1 || out->value.shape[0] != wrt->value.shape[0])
            return nb_fail(NB_ERR_SHAPE, "jacobian: per-example needs out and wrt with the same first (batch) "
                                         "dimension");
        if (nb_graph_couples_batch(out->graph))
            return nb_fail(NB_ERR_ARG, "jacobian: per-example Jacobians of a model with batchnorm in training mode "
                                       "would be wrong (the batch's statistics couple its examples); use inference "
                                       "mode (NB_INFERENCE, the CLI's default) or the full Jacobian");
        j.N = out->value.shape[0];
        j.O = j.N ? out->value.size / j.N : 0;
        j.I = j.N ? wrt->value.size / j.N : 0;
    }
    if (with_J && (s = jac_shape(&j, o, rank, shape))) return s;
    /* At the key of the last forward pass (the first if none ran yet; 0 is
     * a key too: nb_forward_key(g, 0)). */
    if ((s = nb_forward_again(out->graph))) return s;
    nb_jac_mode mode = numeric ? NB_JAC_NUMERIC : o->mode;
    if (mode == NB_JAC_AUTO) mode = j.O <= j.I ? NB_JAC_REV : NB_JAC_FWD;
    int64_t rows = mode == NB_JAC_REV ? j.O : j.I;
    j.chunk = o->chunk > 0 ? (o->chunk < rows ? o->chunk : rows) : auto_chunk(out->graph, rows);
    /* Several processes: chunks fixed by the shapes alone (see nabla.h). */
    if (o->comm && o->chunk <= 0 && j.chunk > (rows + 63) / 64) j.chunk = (rows + 63) / 64;
    if (j.chunk < 1) j.chunk = 1;
    *jp = j;
    *mode_out = mode;
    return NB_OK;
}

/* The Jacobian, and kinks when kk is given (numeric mode only). J NULL:
 * kinks only, without the size limit of J. */
static nb_status jacobian_impl(nb_node *out, nb_node *wrt, const nb_jacobian_opts *o, nb_tensor **J, kink_job *kk,
                               nb_tensor **kinks)
{
    if (out->graph != wrt->graph) return nb_fail(NB_ERR_ARG, "jacobian: out and wrt are in different graphs");
    if (o->comm && kk)
        return nb_fail(NB_ERR_UNSUPPORTED, "jacobian kinks: run in one process (comm NULL; the numeric mode)");
    nb_status cs = nb_comm_check(o->comm, "jacobian");
    if (cs) return cs;
    jac_job j;
    int rank = 0;
    int64_t shape[NB_MAX_RANK];
    nb_jac_mode mode = NB_JAC_AUTO;
    nb_status s = jac_prepare(out, wrt, o, kk != NULL, J != NULL, &j, &rank, shape, &mode);
    if (o->comm) { /* every rank learns whether one failed before the collectives */
        if (!s && mode == NB_JAC_NUMERIC)
            s = nb_fail(NB_ERR_UNSUPPORTED, "jacobian: the numeric mode runs in one process (comm NULL)");
        s = nb_comm_any_failed(o->comm, s, "jacobian");
        return s ? s : jac_dist(&j, o->comm, mode, rank, shape, J);
    }
    if (s) return s;
    nb_tensor *t = J ? nb_tensor_new(rank, shape) : NULL, *k = NULL;
    if (J && !t) return NB_ERR_NOMEM;
    if (kk) {
        if (!(k = nb_tensor_new(wrt->value.rank, wrt->value.shape))) {
            nb_tensor_free(t);
            return NB_ERR_NOMEM;
        }
        kk->flags = k->data;
        kk->count = 0;
    }
    if (j.O > 0 && j.I > 0) {
        if (mode == NB_JAC_REV)
            s = jac_rev(&j, t->data, 0, j.O, NULL);
        else if (mode == NB_JAC_FWD)
            s = jac_fwd(&j, t->data, 0, j.I, NULL);
        else {
            double eps = o->eps > 0 ? o->eps : gradcheck_opts_or_defaults(NULL).eps;
            s = jac_numeric(&j, eps, t ? t->data : NULL, kk);
        }
    }
    if (s) {
        nb_tensor_free(t);
        nb_tensor_free(k);
        return s;
    }
    if (J) *J = t;
    if (kinks)
        *kinks = k;
    else
        nb_tensor_free(k);
    return NB_OK;
}

nb_status nb_jacobian(nb_node *out, nb_node *wrt, const nb_jacobian_opts *opts, nb_tensor **J)
{
    static const nb_jacobian_opts defaults = {0};
    if (!out || !wrt || !J) return nb_fail(NB_ERR_ARG, "jacobian: out, wrt and J must not be NULL");
    *J = NULL;
    return jacobian_impl(out, wrt, opts ? opts : &defaults, J, NULL, NULL);
}

nb_status nb_jacobian_kinks(nb_node *out, nb_node *wrt, const nb_jacobian_opts *opts, double atol, double rtol,
                            nb_tensor **J, nb_tensor **kinks, int64_t *nkinks)
{
    static const nb_jacobian_opts defaults = {0};
    if (J) *J = NULL;
    if (kinks) *kinks = NULL;
    if (nkinks) *nkinks = 0;
    if (!out || !wrt) return nb_fail(NB_ERR_ARG, "jacobian kinks: out and wrt must not be NULL");
    if (!(atol >= 0 && rtol >= 0))
        return nb_fail(NB_ERR_ARG, "jacobian kinks: atol %g and rtol %g must be >= 0 (0 = the defaults)", atol, rtol);
    nb_gradcheck_opts d = gradcheck_opts_or_defaults(&(nb_gradcheck_opts){0, atol, rtol});
    kink_job kk = {d.atol, d.rtol, NULL, 0};
    nb_status s = jacobian_impl(out, wrt, opts ? opts : &defaults, J, &kk, kinks);
    if (!s && nkinks) *nkinks = kk.count;
    return s;
}

/* ------------------------------------------------------------ gradcheck */

static void unflatten(int64_t flat, const nb_tensor *t, int64_t *idx)
{
    for (int d = t->rank - 1; d >= 0; d--) {
        idx[d] = t->shape[d] ? flat % t->shape[d] : 0;
        flat = t->shape[d] ? flat / t->shape[d] : 0;
    }
}

nb_status nb_gradcheck(nb_node *out, nb_node *wrt, const nb_gradcheck_opts *opts, nb_gradcheck_result *res)
{
    if (!res) return nb_fail(NB_ERR_ARG, "gradcheck: result is NULL");
    memset(res, 0, sizeof *res);
    const nb_gradcheck_opts d = gradcheck_opts_or_defaults(opts);
    const double eps = d.eps, atol = d.atol, rtol = d.rtol;
    nb_tensor *Jn = NULL, *Jm[2] = {NULL, NULL}, *kinks = NULL;
    nb_jacobian_opts jo = {.mode = NB_JAC_NUMERIC, .eps = eps};
    nb_status s = nb_jacobian_kinks(out, wrt, &jo, atol, rtol, &Jn, &kinks, &res->kinks);
    for (int m = 0; m < 2 && !s; m++) {
        jo.mode = m == 0 ? NB_JAC_REV : NB_JAC_FWD;
        s = nb_jacobian(out, wrt, &jo, &Jm[m]);
    }
    if (s) goto done;
    res->ok = 1;
    res->ok_off_kinks = 1;
    res->worst_flat = -1;
    const int64_t I = kinks->size; /* J's columns: wrt's elements */
    for (int m = 0; m < 2; m++) {
        double *max_err = m == 0 ? &res->max_err_rev : &res->max_err_fwd;
        for (int64_t i = 0; i < Jn->size; i++) {
            double a = Jm[m]->data[i], n = Jn->data[i], err = fabs(a - n);
            double ratio = err / (atol + rtol * fabs(n));
            if (!isfinite(a) || !isfinite(n)) ratio = INFINITY;
            if (err > *max_err || !isfinite(err)) *max_err = err;
            if (fabs(a) > res->max_abs_jacobian) res->max_abs_jacobian = fabs(a);
            if (ratio > res->worst_ratio || res->worst_flat < 0) {
                res->worst_ratio = ratio;
                res->worst_flat = i;
                res->worst_analytic = a;
                res->worst_numeric = n;
                res->worst_mode = m == 0 ? NB_JAC_REV : NB_JAC_FWD;
            }
            if (!(ratio <= 1)) {
                res->ok = 0;
                if (!(kinks->data[I ? i % I : 0] != 0)) res->ok_off_kinks = 0;
            }
        }
    }
    res->worst_rank = Jn->rank;
    if (res->worst_flat >= 0) unflatten(res->worst_flat, Jn, res->worst_index);
done:
    nb_tensor_free(Jn);
    nb_tensor_free(kinks);
    nb_tensor_free(Jm[0]);
    nb_tensor_free(Jm[1]);
    return s;
}
