/* A sum of S rows (shard results: gradients, Hessian-vector products) over
 * a fixed binary tree, wherever the rows were computed.
 *
 * Rows are spread over ranks in contiguous runs (rank r: [S r / P,
 * S (r + 1) / P)). The tree is the stride-doubling one (rows j and j + w
 * added for w = 1, 2, 4, ...), which depends on S alone, so the sum has
 * the same bits for any number of ranks P.
 *
 * With P > 1 the tree runs where the data is, as a reduce-scatter: each
 * rank first sums the whole subtrees its run covers (one for P = 2 and S a
 * power of two, at most 2 log2 S), the rows (L values) are split into P
 * chunks of C = ceil(L / P), an alltoall sends chunk d of every subtree
 * root to rank d, rank d finishes the tree on its chunk, and an allgather
 * returns the summed chunks to everyone. Values sent per rank: (R + 1) L
 * (P - 1) / P for R subtree roots per rank, against 2 L (P - 1) / P for a
 * ring allreduce (whose order of sums depends on P). Used by the sharded
 * training step (shards.c) and by the data-set curvature (curvature.c). */
#include "dist_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int64_t ceil_div(int64_t a, int64_t b)
{
    return (a + b - 1) / b;
}

int64_t nb_fixed_sum_first(int64_t S, int r, int P)
{
    return S * r / P;
}

nb_status nb_fixed_sum_init(nb_fixed_sum *f, const nb_comm *comm, int64_t S_max, int64_t L, const char *who)
{
    memset(f, 0, sizeof *f);
    f->comm = comm, f->rank = comm ? comm->rank : 0, f->size = comm ? comm->size : 1;
    f->L = L, f->Qmax = ceil_div(S_max, f->size), f->C = ceil_div(L, f->size);
    if (S_max < 1 || L < 0 || L > (INT64_MAX / 8) / (f->Qmax * f->size + 1))
        return nb_fail(NB_ERR_TOO_LARGE, "%s: %lld rows of %lld values are too many", who, (long long)S_max,
                       (long long)L);
    f->local = calloc((size_t)(f->Qmax * L) + 1, sizeof(nb_real));
    f->rows = calloc((size_t)(f->Qmax * f->size), sizeof(nb_real *));
    if (f->size > 1) {
        f->send = calloc((size_t)(f->size * f->Qmax * f->C) + 1, sizeof(nb_real));
        f->recv = calloc((size_t)(f->size * f->Qmax * f->C) + 1, sizeof(nb_real));
        f->full = calloc((size_t)(f->size * f->C) + 1, sizeof(nb_real));
        if (!f->send || !f->recv || !f->full) f->local = (free(f->local), NULL);
    }
    if (!f->local || !f->rows) {
        nb_fixed_sum_free(f);
        return nb_fail(NB_ERR_NOMEM, "%s: out of memory for %lld rows of %lld values", who, (long long)S_max,
                       (long long)L);
    }
    return NB_OK;
}

void nb_fixed_sum_free(nb_fixed_sum *f)
{
    if (!f) return;
    free(f->local), free(f->send), free(f->recv), free(f->full), free(f->rows);
    f->local = f->send = f->recv = f->full = NULL, f->rows = NULL;
}

nb_real *nb_fixed_sum_row(nb_fixed_sum *f, int64_t q)
{
    return f->local + q * f->L;
}

/* rows[j] += rows[j + w] for w = 1, 2, 4, ... and j a multiple of 2w
 * (elements [0, n) of each): rows[0] ends as the sum in the fixed tree of
 * S rows. A NULL row lies inside a subtree that its rank summed already
 * (see subtrees), so its pair is skipped. Elementwise, so splitting the
 * elements over threads changes no bits. */
static void tree_sum(nb_real *const *rows, int64_t S, int64_t n)
{
    enum { BLOCK = 4096 };
#pragma omp parallel for schedule(static) if (n * S > 65536)
    for (int64_t k0 = 0; k0 < n; k0 += BLOCK) {
        const int64_t k1 = k0 + BLOCK < n ? k0 + BLOCK : n;
        for (int64_t w = 1; w < S; w *= 2)
            for (int64_t j = 0; j + w < S; j += 2 * w) {
                if (!rows[j] || !rows[j + w]) continue;
                nb_real *a = rows[j] + k0;
                const nb_real *c = rows[j + w] + k0;
                for (int64_t k = 0; k < k1 - k0; k++)
                    a[k] += c[k];
            }
    }
}

/* The whole subtrees of the tree over S rows that the run [lo, hi)
 * covers, greedily from lo: [a, a + 2^k) (clipped at S) with a a multiple
 * of 2^k, as large as fits. A rank sums each one itself, in the tree's own
 * order, and sends only its root: P = 2 and S a power of two send one row
 * per rank, the bytes of a ring allreduce. Returns the count (<= 2 log2 S). */
static int subtrees(int64_t S, int64_t lo, int64_t hi, int64_t *start, int64_t *end)
{
    int n = 0;
    for (int64_t a = lo; a < hi; n++) {
        int64_t size = 1;
        while (a % (2 * size) == 0 && (a + 2 * size <= hi || (hi == S && a + size < S)))
            size *= 2;
        start[n] = a, end[n] = a + size < S ? a + size : S;
        a = end[n];
    }
    return n;
}

static nb_status comm_status(nb_status s, const char *what)
{
    if (!s) return NB_OK;
    const char *m = nb_last_error();
    return nb_fail(s, "%s between ranks failed%s%s", what, m && *m ? ": " : "", m ? m : "");
}

/* P > 1: the reduce-scatter of the file comment, on subtree roots. On
 * return f->full holds the sum. */
static nb_status exchange(nb_fixed_sum *f, int64_t S)
{
    const int64_t C = f->C, L = f->L, lo = nb_fixed_sum_first(S, f->rank, f->size);
    nb_real **rows = f->rows;
    int64_t st[128], en[128];
    int R = 0, mine = subtrees(S, lo, nb_fixed_sum_first(S, f->rank + 1, f->size), st, en);
    for (int r = 0; r < f->size; r++) {
        int n = subtrees(S, nb_fixed_sum_first(S, r, f->size), nb_fixed_sum_first(S, r + 1, f->size), st + 64, en + 64);
        R = n > R ? n : R;
    }
    for (int q = 0; q < mine; q++) {
        for (int64_t j = st[q]; j < en[q]; j++)
            rows[j - st[q]] = f->local + (j - lo) * L;
        tree_sum(rows, en[q] - st[q], L);
    }
    for (int d = 0; d < f->size; d++)
        for (int q = 0; q < R; q++) {
            nb_real *dst = f->send + (d * R + q) * C;
            const int64_t n = q < mine ? (L - d * C < C ? (L - d * C > 0 ? L - d * C : 0) : C) : 0;
            if (n) memcpy(dst, f->local + (st[q] - lo) * L + d * C, (size_t)n * sizeof(nb_real));
            memset(dst + n, 0, (size_t)(C - n) * sizeof(nb_real));
        }
    double t0 = now_seconds();
    nb_status s = f->comm->alltoall(f->send, (size_t)(R * C) * sizeof(nb_real), f->recv, f->comm->user);
    f->seconds += now_seconds() - t0;
    f->bytes += (f->size - 1) * R * C * (int64_t)sizeof(nb_real);
    if (s) return comm_status(s, "exchanging shard sums");
    for (int64_t j = 0; j < S; j++)
        rows[j] = NULL;
    for (int r = 0; r < f->size; r++) {
        int n = subtrees(S, nb_fixed_sum_first(S, r, f->size), nb_fixed_sum_first(S, r + 1, f->size), st + 64, en + 64);
        for (int q = 0; q < n; q++)
            rows[st[64 + q]] = f->recv + (r * R + q) * C;
    }
    tree_sum(rows, S, C);
    t0 = now_seconds();
    s = f->comm->allgather(rows[0], (size_t)C * sizeof(nb_real), f->full, f->comm->user);
    f->seconds += now_seconds() - t0;
    f->bytes += (f->size - 1) * C * (int64_t)sizeof(nb_real);
    return comm_status(s, "gathering the summed shards");
}

nb_status nb_fixed_sum_run(nb_fixed_sum *f, int64_t S, const nb_real **sum)
{
    if (S < 1 || ceil_div(S, f->size) > f->Qmax)
        return nb_fail(NB_ERR_ARG, "fixed sum: %lld rows, planned for at most %lld", (long long)S,
                       (long long)(f->Qmax * f->size));
    if (f->size > 1) {
        nb_status s = exchange(f, S);
        *sum = f->full;
        return s;
    }
    for (int64_t j = 0; j < S; j++)
        f->rows[j] = f->local + j * f->L;
    tree_sum(f->rows, S, f->L);
    *sum = f->local;
    return NB_OK;
}
