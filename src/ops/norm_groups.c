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

/* ------------------------------------------------- per-channel sums
 * Batchnorm's groups are the columns of x (rows, C): walking a column
 * touches one value per row, C times over. Instead every pass here goes
 * row by row, accumulating per-channel sums in contiguous C-wide arrays of
 * doubles (vectorised over the channels). The rows are cut into CHUNKS
 * pieces fixed by the shape alone; the threads share the chunks and the
 * chunks' partial sums are added in chunk order, so the bits do not depend
 * on the thread count. Layernorm's per-channel sums (its dgamma, dbeta)
 * take the same path with per-row mu and s. */
enum { CHUNKS = 32, MAX_SUMS = 5, TAIL = 12 };

/* Scratch: CHUNKS x MAX_SUMS x C partial sums, then TAIL x C doubles for
 * the totals and per-channel coefficients of one pass. */
size_t nb_norm_scratch_bytes(int64_t C)
{
    return (size_t)(CHUNKS * MAX_SUMS + TAIL) * (size_t)(C > 0 ? C : 1) * sizeof(double);
}
static double *tail_of(const nb_norm_groups *L)
{
    return L->scratch + (int64_t)CHUNKS * MAX_SUMS * L->C;
}

typedef enum {
    SUM_SHIFTED, /* d, d^2 with d = x - mu (mu: a per-channel shift, the first row) */
    SUM_DY,      /* a, a xh (a: a seed dy) */
    SUM_TANGENT, /* a, a xh, b, b xh, a b (a: ybar, b: a tangent t) */
} sum_kind;
static const int sum_count[] = {2, 2, 5};

/* Adds row r's terms of kind to acc (sum_count[kind] arrays of C). */
static inline void row_terms(const nb_norm_groups *L, sum_kind kind, int64_t r, const nb_real *x, const nb_real *mu,
                             const nb_real *s, const nb_real *a, const nb_real *b, double *acc)
{
    const int64_t C = L->C;
    const nb_real *xr = x + r * C, *ar = a ? a + r * C : NULL, *br = b ? b + r * C : NULL;
    const bool pc = L->per_channel;
    const nb_real mr = pc ? 0 : mu[r], sr = pc ? 1 : s[r];
    double *acc1 = acc + C, *acc2 = acc + 2 * C, *acc3 = acc + 3 * C, *acc4 = acc + 4 * C;
    switch (kind) {
    case SUM_SHIFTED: /* batchnorm's forward only: per channel */
        for (int64_t c = 0; c < C; c++) {
            const double d = (double)xr[c] - mu[c];
            acc[c] += d, acc1[c] += d * d;
        }
        break;
    case SUM_DY:
        for (int64_t c = 0; c < C; c++) {
            const double xh = ((double)xr[c] - (pc ? mu[c] : mr)) * (pc ? s[c] : sr);
            acc[c] += ar[c], acc1[c] += ar[c] * xh;
        }
        break;
    case SUM_TANGENT:
        for (int64_t c = 0; c < C; c++) {
            const double xh = ((double)xr[c] - (pc ? mu[c] : mr)) * (pc ? s[c] : sr), t = br ? br[c] : 0;
            acc[c] += ar[c], acc1[c] += ar[c] * xh, acc2[c] += t, acc3[c] += t * xh, acc4[c] += ar[c] * t;
        }
        break;
    }
}

/* Rows r..r+3's terms of SUM_SHIFTED or SUM_DY, per channel: formed and
 * added in pairs in nb_real, and only their sum of four widened to double
 * for acc. Batchnorm's sums are compute-bound (they scale with the threads)
 * and the conversions and double arithmetic per value were most of them;
 * a group of four carries a relative error of a few float ulps of its own
 * magnitude (about 2.4e-7), far below what mu and var keep as floats, and
 * the groups are still summed in double over all rows. */
static inline void rows4_terms(const nb_norm_groups *L, sum_kind kind, int64_t r, const nb_real *x, const nb_real *mu,
                               const nb_real *s, const nb_real *a, double *restrict acc)
{
    const int64_t C = L->C;
    const nb_real *x0 = x + r * C, *x1 = x0 + C, *x2 = x1 + C, *x3 = x2 + C;
    double *restrict acc1 = acc + C;
    if (kind == SUM_SHIFTED) {
#pragma omp simd
        for (int64_t c = 0; c < C; c++) {
            const nb_real d0 = x0[c] - mu[c], d1 = x1[c] - mu[c], d2 = x2[c] - mu[c], d3 = x3[c] - mu[c];
            acc[c] += (double)((d0 + d1) + (d2 + d3));
            acc1[c] += (double)((d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3));
        }
        return;
    }
    const nb_real *a0 = a + r * C, *a1 = a0 + C, *a2 = a1 + C, *a3 = a2 + C;
#pragma omp simd
    for (int64_t c = 0; c < C; c++) {
        const nb_real sc = s[c], m = mu[c];
        const nb_real h0 = (x0[c] - m) * sc, h1 = (x1[c] - m) * sc, h2 = (x2[c] - m) * sc, h3 = (x3[c] - m) * sc;
        acc[c] += (double)((a0[c] + a1[c]) + (a2[c] + a3[c]));
        acc1[c] += (double)((a0[c] * h0 + a1[c] * h1) + (a2[c] * h2 + a3[c] * h3));
    }
}

/* out (sum_count[kind] x C) = the sums of kind over all rows. */
static void channel_sums(const nb_norm_groups *L, sum_kind kind, const nb_real *x, const nb_real *mu, const nb_real *s,
                         const nb_real *a, const nb_real *b, double *out)
{
    const int64_t C = L->C, rows = L->rows, per = (rows + CHUNKS - 1) / CHUNKS, nq = sum_count[kind];
    double *part = L->scratch; /* CHUNKS x nq x C */
#pragma omp parallel for schedule(static) if (rows * C > NB_PAR_MAP)
    for (int q = 0; q < CHUNKS; q++) {
        double *acc = part + (int64_t)q * nq * C;
        for (int64_t i = 0; i < nq * C; i++)
            acc[i] = 0;
        const int64_t r1 = (q + 1) * per < rows ? (q + 1) * per : rows;
        int64_t r = q * per;
        if (L->per_channel && kind != SUM_TANGENT)
            for (; r + 4 <= r1; r += 4) rows4_terms(L, kind, r, x, mu, s, a, acc);
        for (; r < r1; r++)
            row_terms(L, kind, r, x, mu, s, a, b, acc);
    }
    for (int64_t i = 0; i < nq * C; i++)
        out[i] = 0;
    for (int q = 0; q < CHUNKS; q++)
        for (int64_t i = 0; i < nq * C; i++)
            out[i] += part[(int64_t)q * nq * C + i];
}

/* Batchnorm's forward: mu, var per channel from one pass of shifted sums,
 * then y. With the shift K_c = x[0, c] (a value of the channel, so near
 * its mean on the scale of its spread) and d = x - K in double,
 *   mu = K + S_d / n,  var = S_dd / n - (S_d / n)^2,
 * which loses nothing a float input can show (the cancellation is
 * (mu - K)^2 / var, a few units at most, against double's 1e-16; the
 * groups of four rows formed in float, rows4_terms, add a few float ulps of
 * each group), and reads x once instead of twice. */
static void forward_per_channel(const nb_norm_groups *L, const nb_real *x, const nb_real *gamma, const nb_real *beta,
                                double eps, nb_real *mu, nb_real *s, nb_real *var, nb_real *y)
{
    const int64_t C = L->C, n = L->rows;
    double *sum = tail_of(L);
    for (int64_t c = 0; c < C; c++)
        mu[c] = n ? x[c] : 0; /* the shift, for SUM_SHIFTED */
    channel_sums(L, SUM_SHIFTED, x, mu, NULL, NULL, NULL, sum);
    for (int64_t c = 0; c < C; c++) {
        const double m1 = n ? sum[c] / (double)n : 0, v0 = n ? sum[C + c] / (double)n - m1 * m1 : 0;
        const double v = v0 > 0 ? v0 : 0;
        mu[c] = (nb_real)(mu[c] + m1), var[c] = (nb_real)v, s[c] = (nb_real)(1 / sqrt(v + eps));
    }
#pragma omp parallel for schedule(static) if (n * C > NB_PAR_MAP)
    for (int64_t r = 0; r < n; r++)
        for (int64_t c = 0; c < C; c++)
            y[r * C + c] = gamma[c] * ((x[r * C + c] - mu[c]) * s[c]) + beta[c];
}

void nb_norm_seed_sums(const nb_norm_groups *L, int64_t K, const nb_real *x, const nb_real *mu, const nb_real *s,
                       const nb_real *dy, double *sums)
{
    const int64_t C = L->C, m = L->rows * C;
    for (int64_t k = 0; k < K; k++)
        channel_sums(L, SUM_DY, x, mu, s, dy + k * m, NULL, sums + 2 * k * C);
}

/* dx = s gamma (dy - Sdy/n - xh Sdyxh/n) per channel, for each seed, from
 * its sums (nb_norm_seed_sums). */
static void vjp_x_per_channel(const nb_norm_groups *L, int64_t K, const nb_real *x, const nb_real *gamma,
                              const nb_real *mu, const nb_real *s, const nb_real *dy, const double *seed_sums,
                              nb_real *dx, bool acc)
{
    const int64_t C = L->C, n = L->rows, m = n * C;
    double *q = tail_of(L), *r = q + C, *p = r + C; /* 3C coefficients */
    for (int64_t k = 0; k < K; k++) {
        const nb_real *g = dy + k * m;
        const double *sums = seed_sums + 2 * k * C;
        nb_real *o = dx + k * m;
        for (int64_t c = 0; c < C; c++)
            q[c] = (nb_real)(sums[c] / (double)n), r[c] = (nb_real)(sums[C + c] / (double)n), p[c] = s[c] * gamma[c];
#pragma omp parallel for schedule(static) if (m > NB_PAR_MAP)
        for (int64_t row = 0; row < n; row++)
            for (int64_t c = 0; c < C; c++) {
                const int64_t e = row * C + c;
                const nb_real xh = (x[e] - mu[c]) * s[c], v = (nb_real)(p[c] * (g[e] - q[c] - xh * r[c]));
                NB_PUT(acc, o[e], v);
            }
    }
}

void nb_norm_vjp_affine_of_sums(int which, int64_t K, int64_t C, const double *sums, nb_real *out, bool acc)
{
    for (int64_t k = 0; k < K; k++) {
        const double *want = sums + 2 * k * C + (which == 1 ? C : 0);
        for (int64_t c = 0; c < C; c++)
            NB_PUT(acc, out[k * C + c], (nb_real)want[c]);
    }
}

/* dgamma (which 1) or dbeta (which 2) per channel for each seed: the sums
 * of dy xh and dy (per-channel or per-row mu and s), seed by seed in the
 * scratch's tail. */
static void vjp_affine_sums(const nb_norm_groups *L, int which, int64_t K, const nb_real *x, const nb_real *mu,
                            const nb_real *s, const nb_real *dy, nb_real *out, bool acc)
{
    const int64_t C = L->C, m = L->rows * C;
    double *sums = tail_of(L);
    for (int64_t k = 0; k < K; k++) {
        nb_norm_seed_sums(L, 1, x, mu, s, dy + k * m, sums);
        nb_norm_vjp_affine_of_sums(which, 1, C, sums, out + k * C, acc);
    }
}

/* ydot = gamma s (t - St/n - xh Stxh/n) + gammadot xh + betadot. */
static void jvp_per_channel(const nb_norm_groups *L, int64_t K, const nb_real *x, const nb_real *gamma,
                            const nb_real *mu, const nb_real *s, nb_real *const *dxs, nb_real *dy)
{
    const int64_t C = L->C, n = L->rows, m = n * C;
    double *sums = tail_of(L); /* 2C sums of SUM_DY over t, then 5 x C coefficients */
    double *p = sums + 2 * C, *m1 = p + C, *m2 = m1 + C, *gd = m2 + C, *bd = gd + C;
    for (int64_t k = 0; k < K; k++) {
        const nb_real *t = dxs[0] ? dxs[0] + k * m : NULL;
        if (t) channel_sums(L, SUM_DY, x, mu, s, t, NULL, sums);
        for (int64_t c = 0; c < C; c++) {
            p[c] = gamma[c] * s[c];
            m1[c] = t ? (nb_real)(sums[c] / (double)n) : 0, m2[c] = t ? (nb_real)(sums[C + c] / (double)n) : 0;
            gd[c] = dxs[1] ? dxs[1][k * C + c] : 0, bd[c] = dxs[2] ? dxs[2][k * C + c] : 0;
        }
        nb_real *o = dy + k * m;
#pragma omp parallel for schedule(static) if (m > NB_PAR_MAP)
        for (int64_t r = 0; r < n; r++)
            for (int64_t c = 0; c < C; c++) {
                const int64_t e = r * C + c;
                const nb_real xh = (x[e] - mu[c]) * s[c], te = t ? t[e] : 0;
                o[e] = (nb_real)(p[c] * (te - m1[c] - xh * m2[c]) + gd[c] * xh + bd[c]);
            }
    }
}

/* The second-order rule of batchnorm for seed ybar and tangents t (of x)
 * and gd (of gamma), per channel (the top of the file). With the sums
 * Sy = sum ybar, Syx = sum ybar xh, m1 = mean t, m2 = mean t xh and
 * Syt = sum ybar t, so that sum ybar xhdot = s (Syt - m1 Sy - m2 Syx):
 *   i = 1: d(dgamma) = sum ybar xhdot;
 *   i = 0: d(dx) = sdot (g - A/n - xh B/n) + s (gdot - Ad/n - xhdot B/n - xh Bd/n)
 *               = cy ybar + cx xh + cd xhdot + c0 per channel, with
 *   cy = sdot gamma + s gd, cx = -(sdot B + s Bd)/n, cd = -s B/n, c0 = -(sdot A + s Ad)/n. */
static void tangent_per_channel(const nb_norm_groups *L, int i, const nb_real *x, const nb_real *gamma,
                                const nb_real *mu, const nb_real *s, const nb_real *ybar, const nb_real *t,
                                const nb_real *gdv, nb_real *out, bool acc)
{
    const int64_t C = L->C, n = L->rows;
    double *S = tail_of(L); /* 5 x C: Sy, Syx, St, Stx, Syt; then 6 x C coefficients */
    channel_sums(L, SUM_TANGENT, x, mu, s, ybar, t, S);
    const double *Sy = S, *Syx = S + C, *St = S + 2 * C, *Stx = S + 3 * C, *Syt = S + 4 * C;
    double *m1 = S + 5 * C, *m2 = m1 + C, *cy = m2 + C, *cx = cy + C, *cd = cx + C, *c0 = cd + C;
    for (int64_t c = 0; c < C; c++) {
        const double sc = s[c], ga = gamma[c], gd = gdv ? gdv[c] : 0;
        m1[c] = St[c] / (double)n, m2[c] = Stx[c] / (double)n;
        const double ybxd = sc * (Syt[c] - m1[c] * Sy[c] - m2[c] * Syx[c]); /* sum ybar xhdot */
        if (i == 1) {
            NB_PUT(acc, out[c], (nb_real)ybxd);
            continue;
        }
        const double A = ga * Sy[c], B = ga * Syx[c], Ad = gd * Sy[c], Bd = gd * Syx[c] + ga * ybxd;
        const double sdot = -sc * sc * m2[c];
        cy[c] = sdot * ga + sc * gd, cx[c] = -(sdot * B + sc * Bd) / (double)n, cd[c] = -sc * B / (double)n;
        c0[c] = -(sdot * A + sc * Ad) / (double)n;
    }
    if (i == 1) return;
#pragma omp parallel for schedule(static) if (n * C > NB_PAR_MAP)
    for (int64_t r = 0; r < n; r++)
        for (int64_t c = 0; c < C; c++) {
            const int64_t e = r * C + c;
            const double xh = ((double)x[e] - mu[c]) * s[c], xhdot = t ? s[c] * (t[e] - m1[c] - xh * m2[c]) : 0;
            NB_PUT(acc, out[e], (nb_real)(cy[c] * ybar[e] + cx[c] * xh + cd[c] * xhdot + c0[c]));
        }
}

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
    if (L->per_channel) {
        forward_per_channel(L, x, gamma, beta, eps, mu, s, var, y);
        return;
    }
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
                   const nb_real *s, const nb_real *dy, const double *seed_sums, nb_real *dx, bool acc)
{
    if (L->per_channel) {
        vjp_x_per_channel(L, K, x, gamma, mu, s, dy, seed_sums, dx, acc);
        return;
    }
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
    vjp_affine_sums(L, which, K, x, mu, s, dy, out, acc);
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
    if (L->per_channel) {
        jvp_per_channel(L, K, x, gamma, mu, s, dxs, dy);
        return;
    }
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
    if (L->per_channel) {
        for (int64_t k = 0; k < K; k++)
            tangent_per_channel(L, i, x, gamma, mu, s, ybar, xdots[0] ? xdots[0] + k * m : NULL,
                                xdots[1] ? xdots[1] + k * C : NULL, out + k * (i == 0 ? m : C), acc);
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
