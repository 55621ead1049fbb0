/* Which GEMM kernel a product runs: chosen per shape class by a short
 * measurement at the class's first product, kept for the process.
 *
 * Why measure: machines of one kind differ. On a Zen 5 EPYC our AVX-512
 * kernel ran 210-240 GFLOP/s against OpenBLAS's 115-125 (Haswell kernels);
 * on a Zen 4, whose AVX-512 units are half width, 122-156 against 136-150,
 * and which one wins depends on the shape. So each class times its usable
 * kernels at the shape of its first product (shrunk to a few MFLOP within
 * its buckets): one warm-up round, then TRIALS rounds, the kernels
 * alternating within a round (paired, so a burst of load from elsewhere hits
 * all of them) and the order rotating between rounds; the median of each is
 * compared, and a kernel other than the fixed default must beat it by
 * NB_GEMM_MARGIN, so that near-ties keep one fixed choice rather than a coin
 * flip. A few ms per class, about ten classes for a network.
 *
 * Results: kernels round differently (each sums K in its own order), so
 * within a process a class never changes kernel, and a thread that meets a
 * class being measured waits for the decision instead of running the
 * default meanwhile. Across processes two measurements near the margin can
 * decide differently: NB_GEMM=fixed (or a kernel name) makes the choice a
 * function of the shape, the build and the CPU alone (docs/design.md). */
#include "kernels.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <threads.h>
#include <time.h>

enum {
    TRIALS = 7,             /* timed rounds (odd: one median sample) */
    DROP = 3,               /* after round 1, a kernel this many times slower than the best stops */
    POLICY_AUTO = -2,       /* per class: measure */
    POLICY_FIXED = -1,      /* per class: the fixed default; >= 0: that kernel */
};
static const double TRIAL_FLOPS = 4e6;  /* one trial repeats a small product up to this */
static const double SHRINK_FLOPS = 4e7; /* a larger product is shrunk (within its buckets) */
static const double MAX_FLOPS = 1e9;    /* and past this, shrunk regardless (a few ms a trial) */
static const int64_t EDGES[NB_GEMM_BUCKETS - 1] = {2, 8, 32, 128, 512, 2048};

static once_flag init_once = ONCE_FLAG_INIT;
static mtx_t lock; /* serialises decisions (measurements) */
static bool lock_ok;
static int8_t policy[NB_GEMM_NCLASSES];
static atomic_bool used[NB_GEMM_NCLASSES];         /* info[c] written before this turns true */
static nb_gemm_choice info[NB_GEMM_NCLASSES];      /* under lock until used[c] */
static char problem[160];
static nb_gemm_trial_fn *trial_hook;
static void *trial_ctx;

static int bucket(int64_t x)
{
    int b = 0;
    while (b < NB_GEMM_BUCKETS - 1 && x > EDGES[b]) b++;
    return b;
}

int nb_gemm_class_of(bool ta, bool tb, int64_t M, int64_t N, int64_t K)
{
    const int B = NB_GEMM_BUCKETS;
    return (((ta ? 2 : 0) + (tb ? 1 : 0)) * B + bucket(M)) * B * B + bucket(N) * B + bucket(K);
}

static int dim_key(char *out, size_t n, char axis, int b)
{
    const int64_t lo = b == 0 ? 1 : EDGES[b - 1] + 1;
    if (b == NB_GEMM_BUCKETS - 1) return snprintf(out, n, ".%c%lld+", axis, (long long)lo);
    return snprintf(out, n, ".%c%lld-%lld", axis, (long long)lo, (long long)EDGES[b]);
}

void nb_gemm_class_key(int cls, char out[32])
{
    const int B = NB_GEMM_BUCKETS, t = cls / (B * B * B);
    static const char *const trans[4] = {"nn", "nt", "tn", "tt"};
    int len = snprintf(out, 32, "%s", trans[t & 3]);
    len += dim_key(out + len, (size_t)(32 - len), 'm', cls / (B * B) % B);
    len += dim_key(out + len, (size_t)(32 - len), 'n', cls / B % B);
    dim_key(out + len, (size_t)(32 - len), 'k', cls % B);
}

/* ---------------------------------------------------------------- NB_GEMM */

/* A policy word: auto, fixed or a kernel's name (two spellings each for
 * the portable kernel and OpenBLAS); -3 when it is none of them. */
static int policy_word(const char *w, size_t n, bool *only)
{
    *only = n > 5 && !strncmp(w + n - 5, "-only", 5);
    if (*only) n -= 5;
    static const struct {
        const char *word;
        int policy;
    } WORDS[] = {{"auto", POLICY_AUTO},         {"fixed", POLICY_FIXED},       {"builtin", NB_GEMM_PORTABLE},
                 {"portable", NB_GEMM_PORTABLE}, {"openblas", NB_GEMM_OPENBLAS}, {"blas", NB_GEMM_OPENBLAS},
                 {"avx512", NB_GEMM_AVX512},     {"rows", NB_GEMM_ROWS}};
    for (size_t i = 0; i < sizeof WORDS / sizeof WORDS[0]; i++)
        if (strlen(WORDS[i].word) == n && !strncmp(WORDS[i].word, w, n))
            return *only && WORDS[i].policy < 0 ? -3 : WORDS[i].policy; /* "auto-only": no word */
    return -3;
}

/* Every class's key, made once (init): a spec's items are looked up
 * without formatting 1372 keys each. */
static char class_keys[NB_GEMM_NCLASSES][32];

static int class_word(const char *w, size_t n)
{
    for (int c = 0; c < NB_GEMM_NCLASSES; c++)
        if (strlen(class_keys[c]) == n && !strncmp(class_keys[c], w, n)) return c;
    return -1;
}

static void complain(char prob[160], const char *what, const char *w, size_t n)
{
    if (prob[0]) return; /* the first problem is the one to fix first */
    snprintf(prob, 160,
             "NB_GEMM: %s '%.*s' ignored (use auto, fixed, avx512, openblas, builtin or rows, then "
             "CLASS=KERNEL items as bench/run.sh names the classes)",
             what, (int)(n < 40 ? n : 40), w);
}

/* spec: ITEM[,ITEM...], ITEM = WORD or CLASS=WORD; a bare WORD sets every
 * class, CLASS=WORD one class (later items win). Into pol, and what was
 * not understood into prob ("" when all was). Into inplace, whether the
 * in-place convolutions may run for the class (nb_gemm_inplace_allowed):
 * yes for auto, fixed and avx512; for another kernel named in NB_GEMM, no;
 * for one a checkpoint names (followed), yes unless written KERNEL-only
 * (nb_gemm_choices_spec writes a kernel NB_GEMM named so, and a measured one
 * plain: the measurement chose among GEMM kernels, not against the
 * in-place paths). */
static void parse_spec_into(const char *spec, bool followed, int8_t pol[NB_GEMM_NCLASSES],
                            bool inplace[NB_GEMM_NCLASSES], char prob[160])
{
    prob[0] = 0;
    for (int c = 0; c < NB_GEMM_NCLASSES; c++) pol[c] = POLICY_AUTO, inplace[c] = true;
    for (const char *p = spec; p && *p;) {
        const char *end = strchr(p, ','), *eq;
        const size_t n = end ? (size_t)(end - p) : strlen(p);
        eq = memchr(p, '=', n);
        bool only;
        if (!eq) {
            const int w = policy_word(p, n, &only);
            if (w == -3) complain(prob, "unknown kernel", p, n);
            else
                for (int c = 0; c < NB_GEMM_NCLASSES; c++)
                    pol[c] = (int8_t)w, inplace[c] = w < 0 || w == NB_GEMM_AVX512 || (followed && !only);
        } else {
            const int c = class_word(p, (size_t)(eq - p)), w = policy_word(eq + 1, n - (size_t)(eq + 1 - p), &only);
            if (c < 0) complain(prob, "unknown class", p, (size_t)(eq - p));
            else if (w == -3) complain(prob, "unknown kernel", eq + 1, n - (size_t)(eq + 1 - p));
            else pol[c] = (int8_t)w, inplace[c] = w < 0 || w == NB_GEMM_AVX512 || (followed && !only);
        }
        p = end ? end + 1 : p + n;
    }
}

static bool inplace_ok[NB_GEMM_NCLASSES];
/* A class whose in-place paths were refused here: the product those paths
 * stand for may never run as a GEMM of this class (the lowering runs other
 * classes), so nb_gemm_choices_spec writes it from this, as KERNEL-only, and
 * a resumed run refuses it too. */
static atomic_bool refused[NB_GEMM_NCLASSES];

static void parse_spec(const char *spec)
{
    parse_spec_into(spec, false, policy, inplace_ok, problem);
}

static void init(void)
{
    lock_ok = mtx_init(&lock, mtx_plain) == thrd_success;
    for (int c = 0; c < NB_GEMM_NCLASSES; c++)
        nb_gemm_class_key(c, class_keys[c]);
    parse_spec(getenv("NB_GEMM"));
}

bool nb_gemm_inplace_allowed(bool ta, bool tb, int64_t M, int64_t N, int64_t K)
{
    call_once(&init_once, init);
    const int cls = nb_gemm_class_of(ta, tb, M, N, K);
    if (inplace_ok[cls]) return true;
    atomic_store_explicit(&refused[cls], true, memory_order_release);
    return false;
}

const char *nb_gemm_spec_problem(void)
{
    call_once(&init_once, init);
    return problem[0] ? problem : NULL;
}

void nb_gemm_select_reset(const char *spec, nb_gemm_trial_fn *trial, void *ctx)
{
    call_once(&init_once, init);
    parse_spec(spec ? spec : getenv("NB_GEMM"));
    for (int c = 0; c < NB_GEMM_NCLASSES; c++) atomic_store(&used[c], false), atomic_store(&refused[c], false);
    memset(info, 0, sizeof info);
    trial_hook = trial, trial_ctx = ctx;
}

void nb_gemm_select_fixed(void)
{
    call_once(&init_once, init);
    for (int c = 0; c < NB_GEMM_NCLASSES; c++)
        if (policy[c] == POLICY_AUTO) policy[c] = POLICY_FIXED;
}

int nb_gemm_follow(const char *spec)
{
    call_once(&init_once, init);
    if (!spec) return nb_set_error(NB_ERR_ARG, "nb_gemm_follow: spec is NULL"), -1;
    /* nb_gemm_choices_spec writes "fixed" and at most one item of < 48
     * characters per class: anything longer is no build's (a hostile file). */
    const size_t most = sizeof "fixed" + (size_t)NB_GEMM_NCLASSES * 48, len = strnlen(spec, most + 1);
    if (len > most)
        return nb_set_error(NB_ERR_ARG, "GEMM kernels: over %zu characters, longer than any build writes", most), -1;
    for (int c = 0; c < NB_GEMM_NCLASSES; c++)
        if (policy[c] != POLICY_AUTO) return 0; /* an explicit NB_GEMM wins */
    int8_t pol[NB_GEMM_NCLASSES];
    bool inplace[NB_GEMM_NCLASSES];
    char prob[160];
    parse_spec_into(spec, true, pol, inplace, prob);
    if (prob[0]) /* (a checkpoint of another build or CPU: measure here rather than half-follow it) */
        return nb_set_error(NB_ERR_ARG, "GEMM kernels '%.60s': %s", spec, prob + strlen("NB_GEMM: ")), -1;
    memcpy(policy, pol, sizeof policy);
    memcpy(inplace_ok, inplace, sizeof inplace_ok);
    for (int c = 0; c < NB_GEMM_NCLASSES; c++) atomic_store(&used[c], false), atomic_store(&refused[c], false);
    memset(info, 0, sizeof info);
    return 1;
}

/* ----------------------------------------------------------- measurement */

nb_gemm_kernel nb_gemm_pick(const double seconds[NB_GEMM_NKERNELS], nb_gemm_kernel fixed, double margin)
{
    int best = -1;
    for (int k = 0; k < NB_GEMM_NKERNELS; k++)
        if (seconds[k] > 0 && (best < 0 || seconds[k] < seconds[best])) best = k;
    if (best < 0 || best == (int)fixed) return fixed;
    if (seconds[fixed] > 0 && !(seconds[best] < (1 - margin) * seconds[fixed])) return fixed;
    return (nb_gemm_kernel)best;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The measured shape: the first product's, its longest side halved while
 * it is over SHRINK_FLOPS and the side stays in its bucket, then, past
 * MAX_FLOPS (all three sides in the top bucket), halved regardless: sides
 * of a thousand or more show a kernel's full speed anyway. */
static void shrink(int64_t *M, int64_t *N, int64_t *K)
{
    int64_t *d[3] = {M, N, K};
    for (bool within = true;;) {
        const double flops = 2.0 * (double)*M * (double)*N * (double)*K;
        if (flops <= (within ? SHRINK_FLOPS : MAX_FLOPS)) return;
        int longest = -1;
        for (int i = 0; i < 3; i++) {
            const int64_t half = (*d[i] + 1) / 2;
            if ((!within || bucket(half) == bucket(*d[i])) && (longest < 0 || *d[i] > *d[longest])) longest = i;
        }
        if (longest < 0) {
            within = false;
            continue;
        }
        *d[longest] = (*d[longest] + 1) / 2;
    }
}

typedef struct bench_bufs {
    bool ta, tb;
    int64_t M, N, K, reps;
    nb_real beta, *A, *B, *C;
} bench_bufs;

static double time_trial(const bench_bufs *b, nb_gemm_kernel k, int round)
{
    if (trial_hook) return trial_hook(trial_ctx, k, round, b->ta, b->tb, b->M, b->N, b->K);
    const double t0 = now();
    for (int64_t r = 0; r < b->reps; r++)
        nb_gemm_with(k, b->ta, b->tb, b->M, b->N, b->K, 1, b->A, b->ta ? b->M : b->K, b->B, b->tb ? b->K : b->N,
                     b->beta, b->C, b->N);
    return (now() - t0) / (double)b->reps;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Rounds 0 (warm-up) to TRIALS over the live candidates, the start
 * rotating; after round 1 the slow ones stop. Medians into c->seconds. */
static void run_rounds(const bench_bufs *b, bool live[NB_GEMM_NKERNELS], nb_gemm_kernel fixed, nb_gemm_choice *c)
{
    double t[NB_GEMM_NKERNELS][TRIALS];
    for (int r = 0; r <= TRIALS; r++) {
        for (int i = 0; i < NB_GEMM_NKERNELS; i++) {
            const int k = (i + r) % NB_GEMM_NKERNELS;
            if (!live[k]) continue;
            const double s = time_trial(b, (nb_gemm_kernel)k, r);
            if (r > 0) t[k][r - 1] = s;
        }
        if (r != 1) continue;
        double best = 0;
        for (int k = 0; k < NB_GEMM_NKERNELS; k++)
            if (live[k] && (best == 0 || t[k][0] < best)) best = t[k][0];
        for (int k = 0; k < NB_GEMM_NKERNELS; k++)
            if (live[k] && k != (int)fixed && t[k][0] > DROP * best) live[k] = false;
    }
    for (int k = 0; k < NB_GEMM_NKERNELS; k++) {
        c->seconds[k] = 0;
        if (!live[k]) continue;
        qsort(t[k], TRIALS, sizeof t[k][0], cmp_double);
        c->seconds[k] = t[k][TRIALS / 2];
    }
}

/* Times the usable kernels at (a shrunk copy of) this shape on scratch
 * operands and fills c; false when there was nothing to choose from or no
 * memory (then the fixed default runs). */
static bool measure(bool ta, bool tb, int64_t M, int64_t N, int64_t K, nb_real beta, nb_gemm_choice *c)
{
    bool live[NB_GEMM_NKERNELS];
    int n = 0;
    for (int k = 0; k < NB_GEMM_NKERNELS; k++) {
        live[k] = nb_gemm_kernel_usable((nb_gemm_kernel)k, tb, M);
        n += live[k];
    }
    if (n < 2) return false;
    shrink(&M, &N, &K);
    const double flops = 2.0 * (double)M * (double)N * (double)K;
    bench_bufs b = {.ta = ta, .tb = tb, .M = M, .N = N, .K = K, .beta = beta != 0 ? 1 : 0,
                    .reps = flops >= TRIAL_FLOPS ? 1 : (int64_t)(TRIAL_FLOPS / flops)};
    if (!trial_hook) {
        b.A = malloc((size_t)(M * K) * sizeof *b.A), b.B = malloc((size_t)(K * N) * sizeof *b.B);
        b.C = calloc((size_t)(M * N), sizeof *b.C);
        if (!b.A || !b.B || !b.C) {
            free(b.A), free(b.B), free(b.C);
            return false;
        }
        /* Small exact values: no denormals, no growth that matters. */
        for (int64_t i = 0; i < M * K; i++) b.A[i] = (nb_real)(i % 13 - 6) / 16;
        for (int64_t i = 0; i < K * N; i++) b.B[i] = (nb_real)(i % 11 - 5) / 16;
    }
    const nb_gemm_kernel fixed = nb_gemm_fixed_kernel(ta, tb, M, N, K);
    run_rounds(&b, live, fixed, c);
    free(b.A), free(b.B), free(b.C);
    c->kernel = nb_gemm_pick(c->seconds, fixed, NB_GEMM_MARGIN);
    c->M = M, c->N = N, c->K = K;
    return true;
}

/* The first product of class cls: decides (auto) or records (otherwise). */
static void first_use(int cls, bool ta, bool tb, int64_t M, int64_t N, int64_t K, nb_real beta)
{
    mtx_lock(&lock);
    if (!atomic_load_explicit(&used[cls], memory_order_acquire)) {
        nb_gemm_choice c = {.used = true, .M = M, .N = N, .K = K};
        const int p = policy[cls];
        if (p == POLICY_AUTO) c.measured = measure(ta, tb, M, N, K, beta, &c);
        if (!c.measured)
            c.kernel = p >= 0 && nb_gemm_kernel_usable((nb_gemm_kernel)p, tb, M) ? (nb_gemm_kernel)p
                                                                                 : nb_gemm_fixed_kernel(ta, tb, M, N, K);
        info[cls] = c;
        atomic_store_explicit(&used[cls], true, memory_order_release);
    }
    mtx_unlock(&lock);
}

nb_gemm_kernel nb_gemm_kernel_for(bool ta, bool tb, int64_t M, int64_t N, int64_t K, nb_real beta)
{
    call_once(&init_once, init);
    const int cls = nb_gemm_class_of(ta, tb, M, N, K);
    const int p = policy[cls];
    if (!lock_ok) /* (no mutex: nothing measured, nothing recorded) */
        return p >= 0 && nb_gemm_kernel_usable((nb_gemm_kernel)p, tb, M) ? (nb_gemm_kernel)p
                                                                         : nb_gemm_fixed_kernel(ta, tb, M, N, K);
    if (!atomic_load_explicit(&used[cls], memory_order_acquire)) first_use(cls, ta, tb, M, N, K, beta);
    if (p == POLICY_AUTO) return info[cls].kernel;
    if (p >= 0 && nb_gemm_kernel_usable((nb_gemm_kernel)p, tb, M)) return (nb_gemm_kernel)p;
    return nb_gemm_fixed_kernel(ta, tb, M, N, K);
}

void nb_gemm_class_choice(int cls, nb_gemm_choice *out)
{
    call_once(&init_once, init);
    memset(out, 0, sizeof *out);
    if (cls >= 0 && cls < NB_GEMM_NCLASSES && atomic_load_explicit(&used[cls], memory_order_acquire))
        *out = info[cls];
}

size_t nb_gemm_choices_spec(char *out, size_t n)
{
    call_once(&init_once, init);
    size_t len = 0;
    char key[32], item[64]; /* "," key "=" kernel "-only": at most 46 characters */
    for (int c = -1; c < NB_GEMM_NCLASSES; c++) {
        int w;
        if (c < 0) {
            w = snprintf(item, sizeof item, "fixed");
        } else {
            const int p = policy[c];
            const bool ran = atomic_load_explicit(&used[c], memory_order_acquire);
            /* a class refused in place but never run has a kernel named (inplace_ok is false only then) */
            if (p == POLICY_FIXED || (!ran && (p < 0 || !atomic_load_explicit(&refused[c], memory_order_acquire))))
                continue;
            nb_gemm_class_key(c, key);
            /* auto: what was measured; a named kernel: itself (where it cannot run, fixed decides anyway) */
            const nb_gemm_kernel k = p == POLICY_AUTO ? info[c].kernel : (nb_gemm_kernel)p;
            w = snprintf(item, sizeof item, ",%s=%s%s", key, nb_gemm_kernel_name(k), inplace_ok[c] ? "" : "-only");
        }
        if (n > 0 && len < n - 1) snprintf(out + len, n - len, "%s", item);
        len += (size_t)w;
    }
    if (n > 0 && len >= n) out[n - 1] = 0;
    return len;
}
