/* Normalisation over groups of elements, shared by batchnorm (training
 * mode: a group is one channel, its n = N H W values) and layernorm (a group
 * is one row of the last axis, its n = C values). x has `rows` rows of C
 * values (the last axis); gamma and beta have C values, indexed by the
 * element's channel in both ops.
 *
 * Per group, with mu = mean(x), var = mean((x - mu)^2) (biased),
 * s = (var + eps)^(-1/2), xh_j = (x_j - mu) s:
 *   y_j = gamma_c(j) xh_j + beta_c(j).
 * Jacobian of xh in x: dxh_i/dx_j = s ([i = j] - 1/n - xh_i xh_j / n).
 *   VJP (g_j = gamma_c(j) dy_j, A = sum g, B = sum g xh):
 *     dx_j = s (g_j - A/n - xh_j B/n);
 *     dgamma_c = sum over elements of channel c of dy xh, dbeta_c = sum dy.
 *   JVP (t = xdot, m1 = mean(t), m2 = mean(t xh)):
 *     xhdot_j = s (t_j - m1 - xh_j m2),
 *     ydot = gamma xhdot + gammadot xh + betadot.
 * Second order: along the tangents t (of x) and gammadot, with
 *   vardot = 2 m2 / s, so sdot = -s^3 vardot / 2 = -s^2 m2,
 *   gdot_j = gammadot_c(j) dy_j, Adot = sum gdot, Bdot = sum(gdot xh + g xhdot):
 *     d(dx_j) = sdot (g_j - A/n - xh_j B/n)
 *             + s (gdot_j - Adot/n - xhdot_j B/n - xh_j Bdot/n);
 *     d(dgamma_c) = sum over channel c of dy xhdot;  d(dbeta) = 0. */
#include "ops_internal.h"

/* Element j of group gi, and its channel. */
static inline int64_t at(const nb_norm_groups *L, int64_t gi, int64_t j)
{
    return L->per_channel ? j * L->C + gi : gi * L->C + j;
}
static inline int64_t chan(const nb_norm_groups *L, int64_t gi, int64_t j)
{
    return L->per_channel ? gi : j;
}

int64_t nb_norm_group_count(const nb_norm_groups *L)
{
    return L->per_channel ? L->C : L->rows;
}
static int64_t group_size(const nb_norm_groups *L)
{
    return L->per_channel ? L->rows : L->C;
}

void nb_norm_forward(const nb_norm_groups *L, const nb_real *x, const nb_real *gamma, const nb_real *beta, double eps,
                     nb_real *mu, nb_real *s, nb_real *var, nb_real *y)
{
    const int64_t G = nb_norm_group_count(L), n = group_size(L);
#pragma omp parallel for schedule(static) if (G * n > NB_PAR_MAP)
    for (int64_t gi = 0; gi < G; gi++) {
        double sum = 0, sq = 0;
        for (int64_t j = 0; j < n; j++)
            sum += x[at(L, gi, j)];
        const double m = n ? sum / (double)n : 0;
        for (int64_t j = 0; j < n; j++) {
            const double d = x[at(L, gi, j)] - m;
            sq += d * d;
        }
        const double v = n ? sq / (double)n : 0, inv = 1 / sqrt(v + eps);
        mu[gi] = (nb_real)m, s[gi] = (nb_real)inv, var[gi] = (nb_real)v;
        for (int64_t j = 0; j < n; j++) {
            const int64_t e = at(L, gi, j), c = chan(L, gi, j);
            y[e] = (nb_real)(gamma[c] * ((x[e] - m) * inv) + beta[c]);
        }
    }
}

/* Sums of one group for a seed: A = sum g, B = sum g xh (g = gamma dy). */
static void sums_ab(const nb_norm_groups *L, int64_t gi, const nb_real *x, const nb_real *gamma, nb_real mu, nb_real s,
                    const nb_real *dy, double *A, double *B)
{
    double a = 0, b = 0;
    for (int64_t j = 0; j < group_size(L); j++) {
        const int64_t e = at(L, gi, j);
        const double g = (double)gamma[chan(L, gi, j)] * dy[e];
        a += g, b += g * (x[e] - mu) * s;
    }
    *A = a, *B = b;
}

void nb_norm_vjp_x(const nb_norm_groups *L, int64_t K, const nb_real *x, const nb_real *gamma, const nb_real *mu,
                   const nb_real *s, const nb_real *dy, nb_real *dx, bool acc)
{
    const int64_t G = nb_norm_group_count(L), n = group_size(L), m = L->rows * L->C;
#pragma omp parallel for schedule(static) if (K * m > NB_PAR_MAP)
    for (int64_t kg = 0; kg < K * G; kg++) {
        const int64_t k = kg / G, gi = kg % G;
        const nb_real *g = dy + k * m;
        nb_real *o = dx + k * m;
        double A, B;
        sums_ab(L, gi, x, gamma, mu[gi], s[gi], g, &A, &B);
        for (int64_t j = 0; j < n; j++) {
            const int64_t e = at(L, gi, j);
            const double xh = (x[e] - mu[gi]) * s[gi];
            NB_PUT(acc, o[e], (nb_real)(s[gi] * ((double)gamma[chan(L, gi, j)] * g[e] - A / n - xh * B / n)));
        }
    }
}

/* dgamma (which 1) or dbeta (which 2) for K seeds: sums over each channel. */
void nb_norm_vjp_affine(const nb_norm_groups *L, int which, int64_t K, const nb_real *x, const nb_real *mu,
                        const nb_real *s, const nb_real *dy, nb_real *out, bool acc)
{
    const int64_t C = L->C, m = L->rows * C;
    for (int64_t k = 0; k < K; k++)
        for (int64_t c = 0; c < C; c++) {
            double sum = 0;
            for (int64_t r = 0; r < L->rows; r++) {
                const int64_t e = r * C + c, gi = L->per_channel ? c : r;
                sum += which == 1 ? dy[k * m + e] * ((x[e] - mu[gi]) * (double)s[gi]) : dy[k * m + e];
            }
            NB_PUT(acc, out[k * C + c], (nb_real)sum);
        }
}

/* xhdot of group gi for tangent t: writes it to out (the group's elements
 * at their places); returns m2 = mean(t xh). */
static double xh_tangent(const nb_norm_groups *L, int64_t gi, const nb_real *x, nb_real mu, nb_real s, const nb_real *t,
                         nb_real *out)
{
    const int64_t n = group_size(L);
    double m1 = 0, m2 = 0;
    for (int64_t j = 0; j < n; j++) {
        const int64_t e = at(L, gi, j);
        m1 += t[e], m2 += t[e] * (x[e] - mu) * s;
    }
    m1 = n ? m1 / n : 0, m2 = n ? m2 / n : 0;
    for (int64_t j = 0; j < n; j++) {
        const int64_t e = at(L, gi, j);
        out[e] = (nb_real)(s * (t[e] - m1 - (x[e] - mu) * s * m2));
    }
    return m2;
}

void nb_norm_jvp(const nb_norm_groups *L, int64_t K, const nb_real *x, const nb_real *gamma, const nb_real *mu,
                 const nb_real *s, nb_real *const *dxs, nb_real *dy)
{
    const int64_t G = nb_norm_group_count(L), n = group_size(L), C = L->C, m = L->rows * C;
#pragma omp parallel for schedule(static) if (K * m > NB_PAR_MAP)
    for (int64_t kg = 0; kg < K * G; kg++) {
        const int64_t k = kg / G, gi = kg % G;
        nb_real *o = dy + k * m;
        if (dxs[0])
            xh_tangent(L, gi, x, mu[gi], s[gi], dxs[0] + k * m, o);
        else
            for (int64_t j = 0; j < n; j++)
                o[at(L, gi, j)] = 0;
        for (int64_t j = 0; j < n; j++) {
            const int64_t e = at(L, gi, j), c = chan(L, gi, j);
            double v = (double)gamma[c] * o[e];
            if (dxs[1]) v += dxs[1][k * C + c] * ((x[e] - mu[gi]) * (double)s[gi]);
            if (dxs[2]) v += dxs[2][k * C + c];
            o[e] = (nb_real)v;
        }
    }
}

/* The tangent of dx for one seed ybar, tangent k, group gi (see the top):
 * xhd is scratch of |x| for the group's xhdot. */
static void dx_tangent_group(const nb_norm_groups *L, int64_t gi, const nb_real *x, const nb_real *gamma, nb_real mu,
                             nb_real s, const nb_real *ybar, const nb_real *t, const nb_real *gd, nb_real *xhd,
                             nb_real *o, bool acc)
{
    const int64_t n = group_size(L);
    const double m2 = t ? xh_tangent(L, gi, x, mu, s, t, xhd) : 0, sdot = -(double)s * s * m2;
    double A, B, Ad = 0, Bd = 0;
    sums_ab(L, gi, x, gamma, mu, s, ybar, &A, &B);
    for (int64_t j = 0; j < n; j++) {
        const int64_t e = at(L, gi, j), c = chan(L, gi, j);
        const double xh = (x[e] - mu) * s, g = (double)gamma[c] * ybar[e], gdot = gd ? gd[c] * (double)ybar[e] : 0;
        Ad += gdot, Bd += gdot * xh + (t ? g * xhd[e] : 0);
    }
    for (int64_t j = 0; j < n; j++) {
        const int64_t e = at(L, gi, j), c = chan(L, gi, j);
        const double xh = (x[e] - mu) * s, g = (double)gamma[c] * ybar[e], gdot = gd ? gd[c] * (double)ybar[e] : 0;
        const double xhdot = t ? xhd[e] : 0;
        const double v = sdot * (g - A / n - xh * B / n) + s * (gdot - Ad / n - xhdot * B / n - xh * Bd / n);
        NB_PUT(acc, o[e], (nb_real)v);
    }
}

nb_status nb_norm_vjp_tangent(const nb_norm_groups *L, int i, int64_t K, const nb_real *x, const nb_real *gamma,
                              const nb_real *mu, const nb_real *s, const nb_real *ybar, nb_real *const *xdots,
                              nb_real *out, bool acc)
{
    const int64_t G = nb_norm_group_count(L), C = L->C, m = L->rows * C;
    if (i == 2 || (!xdots[0] && (i == 1 || !xdots[1]))) {
        const int64_t count = K * (i == 0 ? m : C);
        if (!acc && count > 0) memset(out, 0, (size_t)count * sizeof(nb_real));
        return NB_OK;
    }
    nb_real *xhd = nb_calloc_real(m ? m : 1);
    if (!xhd) return nb_fail(NB_ERR_NOMEM, "normalisation: out of memory for the second-order rule");
    for (int64_t k = 0; k < K; k++) {
        const nb_real *t = xdots[0] ? xdots[0] + k * m : NULL, *gd = xdots[1] ? xdots[1] + k * C : NULL;
        if (i == 0) {
            for (int64_t gi = 0; gi < G; gi++)
                dx_tangent_group(L, gi, x, gamma, mu[gi], s[gi], ybar, t, gd, xhd, out + k * m, acc);
            continue;
        }
        /* d(dgamma_c) = sum over channel c of ybar xhdot */
        for (int64_t gi = 0; gi < G; gi++)
            xh_tangent(L, gi, x, mu[gi], s[gi], t, xhd);
        for (int64_t c = 0; c < C; c++) {
            double sum = 0;
            for (int64_t r = 0; r < L->rows; r++)
                sum += (double)ybar[r * C + c] * xhd[r * C + c];
            NB_PUT(acc, out[k * C + c], (nb_real)sum);
        }
    }
    nb_free(xhd);
    return NB_OK;
}
