/* Curvature from Hessian-vector products alone: the top eigenvalues of a
 * Hessian (subspace iteration with Rayleigh-Ritz) and its trace
 * (Hutchinson's estimator), on any symmetric operator given as a product
 * (nb_linop: one batch, a whole data set summed over batches, ...) and on
 * a graph's loss (nb_hessian_eigs, nb_hessian_trace: nb_hvp_raw).
 *
 * Subspace iteration: V (b orthonormal columns, b = k + guard vectors)
 * becomes W = A V, one batched product of b vectors; the Ritz values of
 * A on span(V) are the eigenvalues of T = V^T W (b x b, Jacobi rotations),
 * Q its eigenvectors, U = V Q the Ritz vectors and A U = W Q; the next V is
 * W Q orthonormalised. The i-th Ritz value converges like |l_{b+1} / l_i|
 * per iteration; the guard vectors make that ratio small for the k wanted. */
#include "autodiff_internal.h"

#include <math.h>
#include <stdlib.h>

enum { GUARD = 2 };

static double dot_rows(const double *a, const double *b, int64_t n)
{
    double d = 0;
    for (int64_t e = 0; e < n; e++) d += a[e] * b[e];
    return d;
}

/* Eigen-decomposition of the symmetric b x b matrix T (overwritten) by
 * cyclic Jacobi rotations: T = Q diag(vals) Q^T, columns of Q (b x b,
 * row-major) the eigenvectors, sorted by |value|, largest first. */
static void jacobi_eigs(double *T, int b, double *vals, double *Q)
{
    for (int i = 0; i < b * b; i++) Q[i] = i % (b + 1) == 0;
    for (int sweep = 0; sweep < 60; sweep++) {
        double off = 0, diag = 0;
        for (int i = 0; i < b; i++)
            for (int j = 0; j < b; j++) *(i == j ? &diag : &off) += T[i * b + j] * T[i * b + j];
        if (off <= 1e-30 * (diag > 0 ? diag : 1)) break;
        for (int p = 0; p < b; p++)
            for (int q = p + 1; q < b; q++) {
                const double apq = T[p * b + q];
                if (apq == 0) continue;
                /* the rotation that zeroes T[p][q]: tan(2 phi) = 2 apq / (aqq - app) */
                const double theta = (T[q * b + q] - T[p * b + p]) / (2 * apq);
                const double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                const double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int r = 0; r < b; r++) { /* T := T G (columns p, q) */
                    const double tp = T[r * b + p], tq = T[r * b + q];
                    T[r * b + p] = c * tp - s * tq, T[r * b + q] = s * tp + c * tq;
                }
                for (int r = 0; r < b; r++) { /* T := G^T T (rows p, q) */
                    const double tp = T[p * b + r], tq = T[q * b + r];
                    T[p * b + r] = c * tp - s * tq, T[q * b + r] = s * tp + c * tq;
                }
                for (int r = 0; r < b; r++) { /* Q := Q G */
                    const double qp = Q[r * b + p], qq = Q[r * b + q];
                    Q[r * b + p] = c * qp - s * qq, Q[r * b + q] = s * qp + c * qq;
                }
            }
    }
    for (int i = 0; i < b; i++) vals[i] = T[i * b + i];
    for (int i = 0; i < b; i++) { /* selection sort by |value|, columns of Q along */
        int m = i;
        for (int j = i + 1; j < b; j++)
            if (fabs(vals[j]) > fabs(vals[m])) m = j;
        if (m == i) continue;
        const double v = vals[i];
        vals[i] = vals[m], vals[m] = v;
        for (int r = 0; r < b; r++) {
            const double q = Q[r * b + i];
            Q[r * b + i] = Q[r * b + m], Q[r * b + m] = q;
        }
    }
}

/* Orthonormalises the b rows of V (b x n) in place: modified Gram-Schmidt
 * with re-orthogonalisation. A row is projected out of the rows before it
 * until a pass keeps at least half its norm ("twice is enough", at most 4
 * passes). A row that keeps less than DEPENDENT of its norm lay in their
 * span: what is left is rounding error, which has components along them
 * and is no direction at all (normalising it put copies of a vector in V,
 * and the Ritz values of a rank-1 Hessian came out as 2 lambda). Such a
 * row, or one that is zero, is replaced by a random one and done again:
 * the basis stays orthonormal when A V has rank below b (a low-rank
 * Hessian, one example), and the new directions give A's other Ritz
 * values (zeros of a null space) instead of ghosts. b <= n, so the
 * complement is never empty. */
static void orthonormalise(double *V, int b, int64_t n, nb_rng *r)
{
    const double DEPENDENT = 1e-10;
    for (int i = 0; i < b; i++) {
        double *vi = V + i * n;
        const double start = sqrt(dot_rows(vi, vi, n));
        double norm = start;
        for (int pass = 0; pass < 4 && i > 0; pass++) {
            for (int j = 0; j < i; j++) {
                const double *vj = V + j * n;
                const double d = dot_rows(vi, vj, n);
                for (int64_t e = 0; e < n; e++) vi[e] -= d * vj[e];
            }
            const double before = norm;
            norm = sqrt(dot_rows(vi, vi, n));
            if (pass > 0 && norm >= 0.5 * before) break;
        }
        if (!(norm > DEPENDENT * start) || !(norm > 1e-300)) {
            for (int64_t e = 0; e < n; e++) vi[e] = nb_rng_normal(r);
            i--; /* orthogonalise the new row again */
            continue;
        }
        for (int64_t e = 0; e < n; e++) vi[e] /= norm;
    }
}

typedef struct {
    int64_t n;
    int b;
    double *V, *W, *U;   /* b x n each */
    double *T, *Q, *vals, *prev;
    nb_real *x, *y;      /* b x n in the element type, for the operator */
} eig_work;

/* W = A V (b products in one call of the operator). */
static nb_status apply_op(nb_linop op, void *user, eig_work *w, int64_t *products)
{
    const int64_t count = (int64_t)w->b * w->n;
    for (int64_t e = 0; e < count; e++) w->x[e] = (nb_real)w->V[e];
    nb_status s = op(user, w->b, w->x, w->y);
    if (s) return s;
    *products += w->b;
    for (int64_t e = 0; e < count; e++) {
        /* A NaN would stop the iteration as converged (every comparison
         * with it is false) with NaN values: refuse it here. */
        if (!isfinite(w->y[e]))
            return nb_fail(NB_ERR_NUMERIC,
                           "eigs: a product of the operator holds %s (vector %lld, element %lld); check the model "
                           "and its data for NaN or Inf (a NaN input, or weights that diverged)",
                           isnan(w->y[e]) ? "NaN" : "Inf", (long long)(e / w->n), (long long)(e % w->n));
        w->W[e] = (double)w->y[e];
    }
    return NB_OK;
}

/* One Rayleigh-Ritz step: Ritz values into w->vals, Ritz vectors U = V Q
 * into w->U, and A U = W Q into w->V (the next iterate, before it is
 * orthonormalised; V is not needed once U is formed). */
static void rayleigh_ritz(eig_work *w)
{
    const int b = w->b;
    const int64_t n = w->n;
    for (int i = 0; i < b; i++)
        for (int j = i; j < b; j++) {
            double vw = 0, wv = 0;
            for (int64_t e = 0; e < n; e++) vw += w->V[i * n + e] * w->W[j * n + e], wv += w->W[i * n + e] * w->V[j * n + e];
            /* A is symmetric; its product's rounding is not: the mean */
            w->T[i * b + j] = w->T[j * b + i] = 0.5 * (vw + wv);
        }
    jacobi_eigs(w->T, b, w->vals, w->Q);
    for (int i = 0; i < b; i++)
        for (int64_t e = 0; e < n; e++) {
            double u = 0;
            for (int j = 0; j < b; j++) u += w->V[j * n + e] * w->Q[j * b + i];
            w->U[i * n + e] = u;
        }
    for (int i = 0; i < b; i++)
        for (int64_t e = 0; e < n; e++) {
            double au = 0;
            for (int j = 0; j < b; j++) au += w->W[j * n + e] * w->Q[j * b + i];
            w->V[i * n + e] = au;
        }
}

/* |A u_i - l_i u_i| / |l_1| of Ritz pair i (A u_i in row i of V): the
 * residual relative to the largest |value| (the operator's scale), so that
 * a pair of a null space (l_i ~ 0) reads as small when it is, not as a
 * rounding error divided by a rounding error. */
static double residual(const eig_work *w, int i)
{
    double r = 0;
    for (int64_t e = 0; e < w->n; e++) {
        const double d = w->V[i * w->n + e] - w->vals[i] * w->U[i * w->n + e];
        r += d * d;
    }
    return sqrt(r) / (fabs(w->vals[0]) > 0 ? fabs(w->vals[0]) : 1);
}

static nb_status eig_work_new(int64_t n, int b, eig_work *w)
{
    memset(w, 0, sizeof *w);
    w->n = n, w->b = b;
    if (n > (INT64_MAX / 8) / (int64_t)(6 * b * sizeof(double)))
        return nb_fail(NB_ERR_TOO_LARGE, "eigs: %lld parameters are too many", (long long)n);
    const size_t vec = (size_t)(b * n);
    w->V = nb_alloc((3 * vec + (size_t)(2 * b * b + 2 * b)) * sizeof(double));
    w->x = nb_alloc(2 * vec * sizeof(nb_real) + 1);
    if (!w->V || !w->x) {
        nb_free(w->V), nb_free(w->x);
        return NB_ERR_NOMEM;
    }
    w->W = w->V + vec, w->U = w->W + vec, w->T = w->U + vec;
    w->Q = w->T + b * b, w->vals = w->Q + b * b, w->prev = w->vals + b;
    w->y = w->x + vec;
    return NB_OK;
}

static nb_eigs_opts eigs_defaults(const nb_eigs_opts *o)
{
    nb_eigs_opts d = o ? *o : (nb_eigs_opts){0};
    if (d.k <= 0) d.k = 1;
    if (d.max_iter <= 0) d.max_iter = 100;
    if (!(d.tol > 0)) d.tol = 1e-3;
    return d;
}

/* The result from the last step: values, residuals, Ritz vectors (k x n). */
static nb_status eigs_finish(const eig_work *w, int k, nb_eigs_result *res)
{
    for (int i = 0; i < k; i++) res->values[i] = w->vals[i], res->residuals[i] = residual(w, i);
    const int64_t shape[2] = {k, w->n};
    if (!(res->vectors = nb_tensor_new(2, shape))) return NB_ERR_NOMEM;
    for (int64_t e = 0; e < k * w->n; e++) res->vectors->data[e] = (nb_real)w->U[e];
    return NB_OK;
}

nb_status nb_linop_eigs(int64_t n, nb_linop op, void *user, const nb_eigs_opts *opts, nb_eigs_result *res)
{
    if (!res || !op) return nb_fail(NB_ERR_ARG, "eigs: op or result is NULL");
    memset(res, 0, sizeof *res);
    const nb_eigs_opts o = eigs_defaults(opts);
    if (o.k > NB_EIGS_MAX || o.k > n)
        return nb_fail(NB_ERR_ARG, "eigs: k = %d is more than %s (%lld)", o.k, o.k > NB_EIGS_MAX ? "NB_EIGS_MAX" : "the dimension",
                       (long long)(o.k > NB_EIGS_MAX ? NB_EIGS_MAX : n));
    const int b = (int)(o.k + GUARD < n ? o.k + GUARD : n);
    eig_work w;
    nb_status s = eig_work_new(n, b, &w);
    if (s) return s;
    nb_rng r;
    nb_rng_seed(&r, o.seed);
    for (int64_t e = 0; e < (int64_t)b * n; e++) w.V[e] = nb_rng_normal(&r);
    orthonormalise(w.V, b, n, &r);
    res->k = o.k;
    for (int it = 1; it <= o.max_iter && !s; it++) {
        if ((s = apply_op(op, user, &w, &res->products))) break;
        rayleigh_ritz(&w);
        res->iterations = it;
        /* Changes on the operator's scale, the largest |value| (as the
         * residuals): a value of the null space is rounding noise, and its
         * change relative to itself never settles (a low-rank Hessian). */
        double change = 0, scale = 0;
        for (int i = 0; i < o.k; i++)
            if (fabs(w.vals[i]) > scale) scale = fabs(w.vals[i]);
        for (int i = 0; i < o.k; i++) {
            const double d = fabs(w.vals[i] - w.prev[i]) / (scale > 0 ? scale : 1);
            if (d > change) change = d;
            w.prev[i] = w.vals[i];
        }
        if (it == 1) change = INFINITY; /* nothing to compare with yet */
        res->rel_change = change;
        if (change <= o.tol) {
            res->converged = 1;
            break;
        }
        if (it < o.max_iter) orthonormalise(w.V, b, n, &r);
    }
    if (!s) s = eigs_finish(&w, o.k, res);
    nb_free(w.V), nb_free(w.x);
    return s;
}

/* --------------------------------------------------------------- trace */

nb_status nb_linop_trace(int64_t n, nb_linop op, void *user, int samples, uint64_t seed, nb_trace_result *res)
{
    enum { BATCH = 8 };
    if (!res || !op) return nb_fail(NB_ERR_ARG, "trace: op or result is NULL");
    memset(res, 0, sizeof *res);
    if (samples < 2) return nb_fail(NB_ERR_ARG, "trace: %d samples; use at least 2 (for the error estimate)", samples);
    if (n > (INT64_MAX / 4) / (int64_t)(2 * BATCH * sizeof(nb_real)))
        return nb_fail(NB_ERR_TOO_LARGE, "trace: %lld parameters are too many", (long long)n);
    nb_real *z = nb_alloc((size_t)(2 * BATCH * n) * sizeof(nb_real) + 1);
    if (!z) return NB_ERR_NOMEM;
    nb_real *az = z + BATCH * n;
    nb_rng r;
    nb_rng_seed(&r, seed);
    double sum = 0, sum2 = 0;
    nb_status s = NB_OK;
    for (int done = 0; done < samples && !s;) {
        const int K = samples - done < BATCH ? samples - done : BATCH;
        for (int64_t e = 0; e < K * n; e++) z[e] = (nb_rng_next(&r) >> 63) ? 1 : -1; /* Rademacher */
        if ((s = op(user, K, z, az))) break;
        for (int k = 0; k < K; k++) {
            double q = 0; /* z^T A z, an unbiased estimate of tr(A) */
            for (int64_t e = 0; e < n; e++) q += (double)z[k * n + e] * (double)az[k * n + e];
            sum += q, sum2 += q * q;
        }
        done += K;
        res->products += K;
    }
    nb_free(z);
    if (s) return s;
    res->samples = samples;
    res->trace = sum / samples;
    const double var = (sum2 - sum * sum / samples) / (samples - 1);
    res->std_error = sqrt(var > 0 ? var : 0) / sqrt((double)samples);
    return NB_OK;
}

/* ------------------------------------------------- on a graph's Hessian */

typedef struct {
    nb_node *out;
    int nwrt;
    nb_node *const *wrt;
    int64_t n;
} graph_op;

/* y = H x for K flat vectors over the concatenated wrt nodes. */
static nb_status graph_hvp(void *user, int64_t K, const nb_real *x, nb_real *y)
{
    graph_op *h = user;
    nb_real *split = nb_alloc((size_t)(K * h->n) * sizeof(nb_real) + 1);
    const nb_real **vectors = malloc(sizeof *vectors * (size_t)h->nwrt); /* any number of wrt nodes */
    if (!split || !vectors) {
        nb_free(split), free(vectors);
        return NB_ERR_NOMEM;
    }
    int64_t off = 0;
    for (int i = 0; i < h->nwrt; i++) { /* (K, n) -> per node (K, |wrt_i|) */
        const int64_t m = h->wrt[i]->value.size;
        for (int64_t k = 0; k < K; k++) memcpy(split + off * K + k * m, x + k * h->n + off, (size_t)m * sizeof(nb_real));
        vectors[i] = split + off * K;
        off += m;
    }
    const nb_real one = 1;
    nb_status s = nb_hvp_raw(h->out, &one, K, h->nwrt, h->wrt, vectors);
    off = 0;
    for (int i = 0; i < h->nwrt && !s; i++) {
        const int64_t m = h->wrt[i]->value.size;
        const nb_real *hv = nb_hvp_result(h->wrt[i]);
        for (int64_t k = 0; k < K; k++) {
            if (hv) memcpy(y + k * h->n + off, hv + k * m, (size_t)m * sizeof(nb_real));
            else memset(y + k * h->n + off, 0, (size_t)m * sizeof(nb_real));
        }
        off += m;
    }
    nb_free(split), free(vectors);
    return s;
}

static nb_status graph_op_make(const char *who, nb_node *out, int nwrt, nb_node *const *wrt, graph_op *h)
{
    nb_status s = nb_second_check_args(who, out, nwrt, wrt, true);
    if (s) return s;
    *h = (graph_op){out, nwrt, wrt, 0};
    for (int i = 0; i < nwrt; i++) h->n += wrt[i]->value.size;
    return nb_forward_again(out->graph);
}

nb_status nb_hessian_eigs(nb_node *out, int nwrt, nb_node *const *wrt, const nb_eigs_opts *opts, nb_eigs_result *res)
{
    graph_op h;
    if (res) memset(res, 0, sizeof *res);
    nb_status s = graph_op_make("hessian eigs", out, nwrt, wrt, &h);
    return s ? s : nb_linop_eigs(h.n, graph_hvp, &h, opts, res);
}

nb_status nb_hessian_trace(nb_node *out, int nwrt, nb_node *const *wrt, int samples, uint64_t seed,
                           nb_trace_result *res)
{
    graph_op h;
    if (res) memset(res, 0, sizeof *res);
    nb_status s = graph_op_make("hessian trace", out, nwrt, wrt, &h);
    return s ? s : nb_linop_trace(h.n, graph_hvp, &h, samples, seed, res);
}
