/* Matrix product, 2-D or batched: C (..., m, n) = A (..., m, k) B (..., k, n),
 * batch dimensions broadcast as NumPy's matmul does.
 *
 * Jacobian (one batch entry): dC[i,j]/dA[p,q] = [i == p] B[q,j] and
 * dC[i,j]/dB[p,q] = A[i,p] [q == j]: a 4-D tensor with mostly zeros. So
 *   VJP: dA = dC B^T (m x n . n x k), dB = A^T dC (k x m . m x n);
 *   JVP: dC = dA B + A dB.
 * Broadcast batch entries accumulate their VJPs. */
#include "ops_internal.h"

typedef struct {
    int64_t m, k, n, batch;
    int brank;
    int64_t bshape[NB_MAX_RANK];
    int64_t astride[NB_MAX_RANK], bstride[NB_MAX_RANK]; /* in matrices, 0 if broadcast */
} mm_plan;

static nb_status mm_plan_make(const nb_node *n, mm_plan *p, int64_t *out_shape, int *out_rank)
{
    const nb_tensor *A = &n->in[0]->value, *B = &n->in[1]->value;
    char s1[96], s2[96];
    if (A->rank < 2 || B->rank < 2)
        return nb_fail(NB_ERR_SHAPE, "matmul: both inputs need rank >= 2, got %s and %s", NB_SHAPE_STR(A, s1),
                       NB_SHAPE_STR(B, s2));
    p->m = A->shape[A->rank - 2], p->k = A->shape[A->rank - 1], p->n = B->shape[B->rank - 1];
    if (B->shape[B->rank - 2] != p->k)
        return nb_fail(NB_ERR_SHAPE, "matmul: shapes %s and %s do not match (%lld != %lld)", NB_SHAPE_STR(A, s1),
                       NB_SHAPE_STR(B, s2), (long long)p->k, (long long)B->shape[B->rank - 2]);
    int ra = A->rank - 2, rb = B->rank - 2, r = ra > rb ? ra : rb;
    int64_t sa = 1, sb = 1;
    p->brank = r;
    p->batch = 1;
    for (int d = r - 1; d >= 0; d--) {
        int da = d - (r - ra), db = d - (r - rb);
        int64_t x = da >= 0 ? A->shape[da] : 1, y = db >= 0 ? B->shape[db] : 1;
        if (x != y && x != 1 && y != 1)
            return nb_fail(NB_ERR_SHAPE, "matmul: batch dimensions of %s and %s do not broadcast",
                           NB_SHAPE_STR(A, s1), NB_SHAPE_STR(B, s2));
        p->bshape[d] = x == 1 ? y : x;
        p->astride[d] = x == 1 ? 0 : sa;
        p->bstride[d] = y == 1 ? 0 : sb;
        sa *= x, sb *= y;
        p->batch *= p->bshape[d];
    }
    if (out_shape) {
        for (int d = 0; d < r; d++) out_shape[d] = p->bshape[d];
        out_shape[r] = p->m, out_shape[r + 1] = p->n;
        *out_rank = r + 2;
    }
    return NB_OK;
}

/* Matrix offsets (in matrices) of A and B for flat batch index t. */
static void mm_offsets(const mm_plan *p, int64_t t, int64_t *ia, int64_t *ib)
{
    *ia = *ib = 0;
    for (int d = p->brank - 1; d >= 0; d--) {
        int64_t i = t % p->bshape[d];
        t /= p->bshape[d];
        *ia += i * p->astride[d];
        *ib += i * p->bstride[d];
    }
}

static nb_status matmul_infer(nb_node *n)
{
    mm_plan p;
    int64_t shape[NB_MAX_RANK + 2];
    int rank;
    nb_status s = mm_plan_make(n, &p, shape, &rank);
    if (s) return s;
    if (rank > NB_MAX_RANK) return nb_fail(NB_ERR_SHAPE, "matmul: rank too large");
    nb_tensor_set_shape(&n->value, rank, shape);
    return NB_OK;
}

static nb_status matmul_forward(nb_node *n)
{
    mm_plan p;
    mm_plan_make(n, &p, NULL, NULL);
    const nb_real *A = n->in[0]->value.data, *B = n->in[1]->value.data;
    nb_real *C = n->value.data;
    for (int64_t t = 0; t < p.batch; t++) {
        int64_t ia, ib;
        mm_offsets(&p, t, &ia, &ib);
        nb_gemm(false, false, p.m, p.n, p.k, 1, A + ia * p.m * p.k, p.k, B + ib * p.k * p.n, p.n, 0,
                C + t * p.m * p.n, p.n);
    }
    return NB_OK;
}

/* K stacked (rows x n) matrices, src[s][r][j], side by side as one rows x
 * (K n) matrix, dst[r][s n + j]; and back (adding when acc). A product with
 * each of K matrices of n columns (n = 10 for a classifier's kernel: a GEMM
 * far below the kernels' speed, K times) becomes one product with K n
 * columns; the copies are 1 / (2 inner) of its work. Both walk RT rows at a
 * time across all K, so that the side read with a stride (rows n or K n
 * values) stays in cache. Plain loops, not memcpy: n is often 10 values. */
enum { RT = 8 };
static void side_by_side(int64_t K, int64_t rows, int64_t n, const nb_real *src, nb_real *dst)
{
    for (int64_t r0 = 0; r0 < rows; r0 += RT)
        for (int64_t s = 0; s < K; s++)
            for (int64_t r = r0; r < r0 + RT && r < rows; r++) {
                const nb_real *a = src + (s * rows + r) * n;
                nb_real *b = dst + (r * K + s) * n;
                for (int64_t j = 0; j < n; j++) b[j] = a[j];
            }
}

static void stacked_back(int64_t K, int64_t rows, int64_t n, const nb_real *src, nb_real *dst, bool acc)
{
    for (int64_t r0 = 0; r0 < rows; r0 += RT)
        for (int64_t s = 0; s < K; s++)
            for (int64_t r = r0; r < r0 + RT && r < rows; r++) {
                const nb_real *a = src + (r * K + s) * n;
                nb_real *b = dst + (s * rows + r) * n;
                if (acc)
                    for (int64_t j = 0; j < n; j++) b[j] += a[j];
                else
                    for (int64_t j = 0; j < n; j++) b[j] = a[j];
            }
}

/* For K > 1 matrices Y[s] (rows x n) = op(M) X[s] (M fixed, no batch):
 * Y (+)= op(M) [X[s0] .. X[s0 + SB - 1]], blocks of SB matrices side by
 * side, SB such that a block's copies (about 256 KiB) stay in cache while
 * its product runs; the K matrices split into one run per thread, each
 * run's copies and products on its thread (one parallel region, no barrier
 * between them; every product through one kernel, chosen as nb_gemm
 * chooses, so a column's result does not depend on its block). Where one
 * matrix fills a block (n of a hundred or more) the product reads X[s] and
 * writes Y[s] directly. Scratch: the node's workspace (matmul saves nothing
 * in it). inner: X's rows. */
static nb_status product_side_by_side(nb_node *nd, bool transM, const nb_real *M, int64_t ldm, int64_t K,
                                      int64_t rows, int64_t inner, int64_t n, const nb_real *X, nb_real *Y, bool acc)
{
    if (K * rows * n == 0) return NB_OK;
    if (inner == 0) { /* a batch of 0 rows: a product of zeros (nothing is added) */
        if (!acc) memset(Y, 0, (size_t)(K * rows * n) * sizeof(nb_real));
        return NB_OK;
    }
    const int T = 2.0 * (double)(K * n) * (double)rows * (double)inner < 1e6 ? 1 : nb_max_team();
    const int64_t per_s = n * (inner + rows), fit = (int64_t)(256 * 1024 / sizeof(nb_real)) / per_s;
    const int64_t SB = fit < 1 ? 1 : fit < (K + T - 1) / T ? fit : (K + T - 1) / T;
    nb_real *wide = SB > 1 ? nb_node_workspace(nd, (size_t)(T * SB * per_s) * sizeof(nb_real)) : NULL;
    if (SB > 1 && !wide) return NB_ERR_NOMEM;
    const nb_gemm_kernel kern = nb_gemm_kernel_for(transM, false, rows, SB * n, inner, acc ? 1 : 0);
#pragma omp parallel num_threads(T)
    {
        const int64_t per = (K + nb_team_size() - 1) / nb_team_size(), s0 = nb_thread_id() * per;
        const int64_t s1 = s0 + per < K ? s0 + per : K;
        nb_real *x = wide ? wide + nb_thread_id() * SB * per_s : NULL, *y = x ? x + SB * n * inner : NULL;
        for (int64_t b = s0; b < s1; b += SB) {
            const int64_t ks = b + SB < s1 ? SB : s1 - b;
            if (!x) {
                for (int64_t s = b; s < b + ks; s++)
                    nb_gemm_with(kern, transM, false, rows, n, inner, 1, M, ldm, X + s * inner * n, n, acc ? 1 : 0,
                                 Y + s * rows * n, n);
                continue;
            }
            side_by_side(ks, inner, n, X + b * inner * n, x);
            nb_gemm_with(kern, transM, false, rows, ks * n, inner, 1, M, ldm, x, ks * n, 0, y, ks * n);
            stacked_back(ks, rows, n, y, Y + b * rows * n, acc);
        }
    }
    return NB_OK;
}

static nb_status matmul_vjp(nb_node *n, int which, int64_t K, const nb_real *dC, nb_real *dX, bool acc)
{
    mm_plan p;
    mm_plan_make(n, &p, NULL, NULL);
    const nb_real *A = n->in[0]->value.data, *B = n->in[1]->value.data;
    int64_t mc = n->value.size, mx = n->in[which]->value.size;
    if (which == 0 && p.batch == 1) {
        /* All K seeds at once: (K m) x n . n x k. */
        nb_gemm(false, true, K * p.m, p.k, p.n, 1, dC, p.n, B, p.n, acc ? 1 : 0, dX, p.k);
        return NB_OK;
    }
    if (which == 1 && p.batch == 1 && K > 1) /* dB[s] = A^T dC[s], all K in one GEMM */
        return product_side_by_side(n, true, A, p.k, K, p.k, p.m, p.n, dC, dX, acc);
    for (int64_t s = 0; s < K; s++) {
        const nb_real *g = dC + s * mc;
        nb_real *r = dX + s * mx;
        if (!acc) memset(r, 0, (size_t)mx * sizeof(nb_real));
        for (int64_t t = 0; t < p.batch; t++) {
            int64_t ia, ib;
            mm_offsets(&p, t, &ia, &ib);
            const nb_real *gt = g + t * p.m * p.n;
            if (which == 0) /* dA[ia] += dC B^T */
                nb_gemm(false, true, p.m, p.k, p.n, 1, gt, p.n, B + ib * p.k * p.n, p.n, 1, r + ia * p.m * p.k,
                        p.k);
            else /* dB[ib] += A^T dC */
                nb_gemm(true, false, p.k, p.n, p.m, 1, A + ia * p.m * p.k, p.k, gt, p.n, 1, r + ib * p.k * p.n,
                        p.n);
        }
    }
    return NB_OK;
}

static nb_status matmul_jvp(nb_node *n, int64_t K, nb_real *const *dxs, nb_real *dC)
{
    mm_plan p;
    mm_plan_make(n, &p, NULL, NULL);
    const nb_real *A = n->in[0]->value.data, *B = n->in[1]->value.data;
    int64_t mc = n->value.size, ma = n->in[0]->value.size, mb = n->in[1]->value.size;
    if (p.batch == 1) { /* dC = dA B + A dB, each for all K at once */
        if (dxs[0]) nb_gemm(false, false, K * p.m, p.n, p.k, 1, dxs[0], p.k, B, p.n, 0, dC, p.n);
        else if (!dxs[1] && mc > 0) memset(dC, 0, (size_t)(K * mc) * sizeof(nb_real));
        if (!dxs[1]) return NB_OK;
        if (K > 1) return product_side_by_side(n, false, A, p.k, K, p.m, p.k, p.n, dxs[1], dC, dxs[0] != NULL);
        nb_gemm(false, false, p.m, p.n, p.k, 1, A, p.k, dxs[1], p.n, dxs[0] ? 1 : 0, dC, p.n);
        return NB_OK;
    }
    for (int64_t s = 0; s < K; s++) {
        nb_real *r = dC + s * mc;
        for (int64_t t = 0; t < p.batch; t++) {
            int64_t ia, ib;
            mm_offsets(&p, t, &ia, &ib);
            nb_real *rt = r + t * p.m * p.n;
            nb_real beta = 0;
            if (dxs[0]) {
                nb_gemm(false, false, p.m, p.n, p.k, 1, dxs[0] + s * ma + ia * p.m * p.k, p.k, B + ib * p.k * p.n,
                        p.n, 0, rt, p.n);
                beta = 1;
            }
            if (dxs[1])
                nb_gemm(false, false, p.m, p.n, p.k, 1, A + ia * p.m * p.k, p.k, dxs[1] + s * mb + ib * p.k * p.n,
                        p.n, beta, rt, p.n);
        }
    }
    return NB_OK;
}

static nb_node *case_matmul(nb_graph *g, nb_rng *r)
{
    return nb_matmul(NB_CHECK_X("a", -1, 1, 3, 4), NB_CHECK_X("b", -1, 1, 4, 2));
}
static nb_node *case_matmul_batched(nb_graph *g, nb_rng *r)
{
    return nb_matmul(NB_CHECK_X("a", -1, 1, 2, 3, 4), NB_CHECK_X("b", -1, 1, 4, 2));
}
static nb_node *case_matmul_bcast(nb_graph *g, nb_rng *r)
{
    return nb_matmul(NB_CHECK_X("a", -1, 1, 2, 1, 2, 3), NB_CHECK_X("b", -1, 1, 3, 3, 2));
}
static nb_node *case_dense(nb_graph *g, nb_rng *r)
{
    nb_node *a = NB_CHECK_X("a", -1, 1, 5, 4), *w = NB_CHECK_X("w", -1, 1, 4, 3), *b = NB_CHECK_X("b", -1, 1, 3);
    return nb_tanh(nb_add(nb_matmul(a, w), b));
}
static const nb_op_case matmul_cases[] = {
    {"(3,4)@(4,2)", case_matmul},
    {"batched (2,3,4)@(4,2)", case_matmul_batched},
    {"bcast (2,1,2,3)@(3,3,2)", case_matmul_bcast},
    {"dense tanh(AW+b)", case_dense},
};

/* Second order. C = AB is bilinear: dA = dC B^T reads only B, dB = A^T dC
 * only A, so along the tangents (Adot, Bdot)
 *   d(dA) = Cbar Bdot^T,   d(dB) = Adot^T Cbar
 * (the cross terms; each VJP is constant in its own input): the VJP with
 * the other input's tangent in its place. */
static nb_status matmul_vjp_tangent(nb_node *n, int which, int64_t K, const nb_real *ybar, nb_real *const *xdots,
                                    nb_real *out, bool acc)
{
    return nb_vjp_tangent_bilinear(n, which, 1 - which, K, ybar, xdots, out, acc);
}

const nb_op nb_op_matmul = {
    .name = "matmul",
    .ninputs = 2,
    .infer = matmul_infer,
    .forward = matmul_forward,
    .vjp = matmul_vjp,
    .jvp = matmul_jvp,
    .vjp_tangent = matmul_vjp_tangent,
    .cases = matmul_cases,
    .ncases = NB_COUNT(matmul_cases),
};

nb_node *nb_matmul(nb_node *a, nb_node *b)
{
    nb_node *in[2] = {a, b};
    return nb_node_op_new(&nb_op_matmul, 2, in, NULL);
}
