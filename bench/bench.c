/* nabla's side of the benchmark (bench/run.sh prints it beside PyTorch's).
 * Each figure is the median of several timed repetitions after a warm-up.
 * Output: one "key value" line per figure, read by bench/run.sh.
 * Usage: bench [threads] [onethread|peak|jacobian|gemm|second [forward|grad|hvp|hessian [REPS]]|hessian_peak|resnet [SPEC]|eigs [COUNT [MODEL_OUT]]] */
#include "nabla.h"
/* In-tree: the benchmark calls the internal GEMM directly. */
#include "../src/kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef NB_HAVE_CBLAS
#include <cblas.h>
void openblas_set_num_threads(int n);
#endif

static const char *CNN = "conv2d 32 3 relu; conv2d 64 3 relu; maxpool 2; flatten; dense 128 relu; dense 10";
static const int64_t IMG[3] = {28, 28, 1};

/* CPU seconds of the whole process (all threads): with one thread, the
 * work of a call whatever the load of the machine (profiling only). */
static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void die(const char *what)
{
    fprintf(stderr, "bench: %s: %s\n", what, nb_last_error());
    exit(1);
}

static long status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key))) v = atol(line + strlen(key) + 1);
    if (f) fclose(f);
    return v;
}

/* The spec of a model file such as scripts/resnet.spec ('#' comments and
 * newlines are the spec grammar's own), read whole. */
static char *read_spec(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "bench: cannot open %s\n", path); exit(1); }
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

/* A model of this spec with random weights and a batch of Fashion-MNIST images. */
static nb_model *model_of(const char *spec, int64_t batch, nb_dataset *d)
{
    nb_model *m;
    if (nb_model_from_spec(spec, 3, IMG, &m) || nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 1)) die("model");
    if (nb_model_set_batch(m, batch)) die("batch");
    memcpy(nb_value(nb_model_input(m))->data, d->x->data, (size_t)(batch * 784) * sizeof(nb_real));
    return m;
}

/* The lecture CNN with random weights and a batch of Fashion-MNIST images. */
static nb_model *cnn(int64_t batch, nb_dataset *d) { return model_of(CNN, batch, d); }

/* Training images per second of a spec at this batch: forward (training
 * mode: batchnorm on the batch's statistics, then its moving ones
 * updated), backward, SGD step with momentum 0.9. */
static double train_ips_of(const char *spec, nb_dataset *d, int64_t batch, int steps, int reps)
{
    nb_model *m = model_of(spec, batch, d);
    nb_graph *g = nb_model_graph(m);
    nb_node *target, *loss;
    if (nb_model_loss(m, NB_LOSS_CCE, &target, &loss)) die("loss");
    memcpy(nb_value(target)->data, d->y->data, (size_t)batch * sizeof(nb_real));
    nb_graph_set_training(g, NB_TRAINING, 1);
    nb_optim *o;
    nb_optim_opts oo = {.kind = NB_OPT_SGD, .lr = 0.01, .momentum = 0.9};
    if (nb_optim_new(m, &oo, &o)) die("optim");
    double t[16];
    for (int r = -1; r < reps; r++) {
        double t0 = now();
        for (int s = 0; s < steps; s++)
            if (nb_forward(g) || nb_batchnorm_update_moving(g) < 0 || nb_backward_leaves(loss) || nb_optim_step(o))
                die("step");
        if (r >= 0) t[r] = (double)(batch * steps) / (now() - t0);
    }
    nb_optim_free(o);
    nb_model_free(m);
    return median(t, reps);
}

/* Training steps per second at this batch: forward, backward, SGD step. */
static double train_ips(nb_dataset *d, int64_t batch, int steps, int reps)
{
    nb_model *m = cnn(batch, d);
    nb_node *target, *loss;
    if (nb_model_loss(m, NB_LOSS_CCE, &target, &loss)) die("loss");
    memcpy(nb_value(target)->data, d->y->data, (size_t)batch * sizeof(nb_real));
    nb_optim *o;
    nb_optim_opts oo = {.kind = NB_OPT_SGD, .lr = 0.01, .momentum = 0.9};
    if (nb_optim_new(m, &oo, &o)) die("optim");
    double t[16];
    for (int r = -1; r < reps; r++) {
        double t0 = now();
        for (int s = 0; s < steps; s++)
            if (nb_forward(nb_model_graph(m)) || nb_backward_leaves(loss) || nb_optim_step(o)) die("step");
        if (r >= 0) t[r] = (double)(batch * steps) / (now() - t0);
    }
    nb_optim_free(o);
    nb_model_free(m);
    return median(t, reps);
}

static double infer_ips(nb_dataset *d, int64_t batch, int steps, int reps)
{
    nb_model *m = cnn(batch, d);
    double t[16];
    for (int r = -1; r < reps; r++) {
        double t0 = now();
        for (int s = 0; s < steps; s++)
            if (nb_forward(nb_model_graph(m))) die("forward");
        if (r >= 0) t[r] = (double)(batch * steps) / (now() - t0);
    }
    nb_model_free(m);
    return median(t, reps);
}

/* Seconds for the (10, 1, 28, 28, 1) Jacobian of the logits w.r.t. one
 * image, or the per-example (64, 10, 28, 28, 1) Jacobians of a batch. */
static double jacobian_seconds(nb_dataset *d, int64_t batch, int per_example, int reps)
{
    nb_model *m = cnn(batch, d);
    nb_jacobian_opts jo = {.mode = NB_JAC_AUTO, .per_example = per_example};
    double t[16];
    for (int r = -1; r < reps; r++) {
        nb_tensor *J;
        double t0 = now();
        if (nb_jacobian(nb_model_output(m), nb_model_input(m), &jo, &J)) die("jacobian");
        if (r >= 0) t[r] = now() - t0;
        nb_tensor_free(J);
    }
    nb_model_free(m);
    return median(t, reps);
}

static double gemm_gflops(int64_t M, int64_t N, int64_t K, int reps, int reference)
{
    nb_real *a = calloc((size_t)(M * K), sizeof *a), *b = calloc((size_t)(K * N), sizeof *b),
            *c = calloc((size_t)(M * N), sizeof *c);
    for (int64_t i = 0; i < M * K; i++) a[i] = (nb_real)((i % 7) - 3) / 7;
    for (int64_t i = 0; i < K * N; i++) b[i] = (nb_real)((i % 5) - 2) / 5;
    double t[16];
    for (int r = -1; r < reps; r++) {
        double t0 = now();
#ifdef NB_HAVE_CBLAS
        if (reference)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1, a, (int)K, b, (int)N, 0,
                        c, (int)N);
        else
#endif
            nb_gemm(false, false, M, N, K, 1, a, K, b, N, 0, c, N);
        if (r >= 0) t[r] = 2.0 * (double)M * (double)N * (double)K / (now() - t0) / 1e9;
    }
    free(a), free(b), free(c);
    return median(t, reps);
}

/* The kernel each GEMM shape class runs in this process, and the medians
 * it was chosen on: "gemm_choice KEY KERNEL how MxNxK kernel=us...". */
static void print_choices(void)
{
    const char *problem = nb_gemm_spec_problem();
    if (problem) printf("gemm_spec_problem %s\n", problem);
    for (int c = 0; c < NB_GEMM_NCLASSES; c++) {
        nb_gemm_choice ch;
        nb_gemm_class_choice(c, &ch);
        if (!ch.used) continue;
        char key[32];
        nb_gemm_class_key(c, key);
        printf("gemm_choice %-30s %-8s %-8s %lldx%lldx%lld", key, nb_gemm_kernel_name(ch.kernel),
               ch.measured ? "measured" : "fixed", (long long)ch.M, (long long)ch.N, (long long)ch.K);
        for (int k = 0; k < NB_GEMM_NKERNELS; k++)
            if (ch.seconds[k] > 0) printf(" %s=%.1fus", nb_gemm_kernel_name((nb_gemm_kernel)k), 1e6 * ch.seconds[k]);
        printf("\n");
    }
    char spec[2048];
    nb_gemm_choices_spec(spec, sizeof spec);
    printf("gemm_spec %s\n", spec);
}

/* GFLOP/s of each kernel and of the chosen one (nb_gemm_serial) at the
 * network's per-thread products, one thread: rounds alternate the kernels
 * (paired), medians of 21 rounds. */
static void gemm_kernels(void)
{
    static const struct {
        const char *name;
        bool ta, tb;
        int64_t M, N, K;
        nb_real beta;
    } S[] = {
        {"conv1_fwd", false, false, 676 * 2, 32, 9, 0},   {"conv1_dK", true, false, 9, 32, 676 * 2, 1},
        {"conv1_dX_t", false, true, 9, 676 * 2, 32, 0},   {"conv2_fwd", false, false, 576, 64, 288, 0},
        {"conv2_fwd_g2", false, false, 1152, 64, 288, 0}, {"conv2_dK", true, false, 288, 64, 576, 1},
        {"conv2_dX", false, true, 576, 288, 64, 0},       {"dense1_fwd", false, false, 64, 128, 9216, 0},
        {"dense1_dW", true, false, 9216, 128, 64, 0},     {"dense1_dX", false, true, 64, 9216, 128, 0},
        {"dense1_one", false, false, 1, 128, 9216, 0},
    };
    enum { ROUNDS = 21, NK = NB_GEMM_NKERNELS + 1 };
    for (size_t s = 0; s < sizeof S / sizeof S[0]; s++) {
        const int64_t M = S[s].M, N = S[s].N, K = S[s].K, lda = S[s].ta ? M : K, ldb = S[s].tb ? K : N;
        nb_real *a = calloc((size_t)(M * K), sizeof *a), *b = calloc((size_t)(K * N), sizeof *b),
                *c = calloc((size_t)(M * N), sizeof *c);
        for (int64_t i = 0; i < M * K; i++) a[i] = (nb_real)((i % 7) - 3) / 7;
        for (int64_t i = 0; i < K * N; i++) b[i] = (nb_real)((i % 5) - 2) / 5;
        const double flops = 2.0 * (double)M * (double)N * (double)K;
        const int reps = flops > 2e7 ? 1 : (int)(2e7 / flops);
        double t[NK][ROUNDS];
        for (int r = -1; r < ROUNDS; r++)
            for (int i = 0; i < NK; i++) {
                const int k = (i + (r < 0 ? 0 : r)) % NK; /* NB_GEMM_NKERNELS: the chosen one */
                if (k < NB_GEMM_NKERNELS && !nb_gemm_kernel_usable((nb_gemm_kernel)k, S[s].tb, M)) continue;
                const double t0 = now();
                for (int q = 0; q < reps; q++)
                    if (k == NB_GEMM_NKERNELS)
                        nb_gemm_serial(S[s].ta, S[s].tb, M, N, K, 1, a, lda, b, ldb, S[s].beta, c, N);
                    else
                        nb_gemm_with((nb_gemm_kernel)k, S[s].ta, S[s].tb, M, N, K, 1, a, lda, b, ldb, S[s].beta, c,
                                     N);
                if (r >= 0) t[k][r] = flops * reps / (now() - t0) / 1e9;
            }
        const nb_gemm_kernel chosen = nb_gemm_kernel_for(S[s].ta, S[s].tb, M, N, K, S[s].beta);
        printf("gemm_gflops %-13s %c%c %lldx%lldx%lld", S[s].name, S[s].ta ? 't' : 'n', S[s].tb ? 't' : 'n',
               (long long)M, (long long)N, (long long)K);
        for (int k = 0; k < NK; k++)
            if (k == NB_GEMM_NKERNELS || nb_gemm_kernel_usable((nb_gemm_kernel)k, S[s].tb, M))
                printf(" %s=%.1f", k == NB_GEMM_NKERNELS ? "chosen" : nb_gemm_kernel_name((nb_gemm_kernel)k),
                       median(t[k], ROUNDS));
        printf(" (chosen: %s)\n", nb_gemm_kernel_name(chosen));
        free(a), free(b), free(c);
    }
}

/* Peak resident memory growth (KiB) of building the CNN and running 3
 * training steps at batch 128, from /proc/self/status. */

/* What the second-order figures share: the lecture CNN at batch 128 with
 * its mean CCE loss, its P parameters and one random direction v (K = 1)
 * per parameter, seeded. */
typedef struct {
    nb_model *m;
    nb_node *loss;
    int P;
    nb_node *params[16];
    nb_tensor *v[16], *hv[16];
} second_setup;

static void second_setup_new(nb_dataset *d, second_setup *q)
{
    nb_node *target;
    q->m = cnn(128, d);
    if (nb_model_loss(q->m, NB_LOSS_CCE, &target, &q->loss)) die("loss");
    memcpy(nb_value(target)->data, d->y->data, 128 * sizeof(nb_real));
    q->P = nb_model_param_count(q->m);
    if (q->P > 16) die("more than 16 parameter tensors");
    nb_rng r;
    nb_rng_seed(&r, 1);
    for (int i = 0; i < q->P; i++) {
        q->params[i] = nb_model_param(q->m, i);
        const nb_tensor *p = nb_value(q->params[i]);
        int64_t s[NB_MAX_RANK + 1] = {1};
        memcpy(s + 1, p->shape, sizeof(int64_t) * (size_t)p->rank);
        q->v[i] = nb_tensor_new(p->rank + 1, s);
        nb_tensor_fill_normal(q->v[i], &r, 0, 1);
    }
}

static void second_setup_free(second_setup *q)
{
    for (int i = 0; i < q->P; i++) nb_tensor_free(q->v[i]);
    nb_model_free(q->m);
}

/* Second order at batch 128 (issue 12): one gradient (forward + backward of
 * the mean CCE), one HVP w.r.t. all parameters (nb_hvp, K = 1), and the
 * full Hessian w.r.t. the last dense kernel (128 x 10: 1280 x 1280), each
 * the median of reps, on the same model, batch and threads. */
static void second_order(nb_dataset *d, int reps)
{
    second_setup q;
    second_setup_new(d, &q);
    nb_model *m = q.m;
    nb_node *loss = q.loss, **params = q.params;
    nb_tensor **v = q.v, **hv = q.hv;
    const int P = q.P;
    double tg[16], th[16], tH[16];
    for (int k = -1; k < reps; k++) { /* paired: gradient and HVP alternate; k = -1 warms up */
        double t0 = now();
        if (nb_forward(nb_model_graph(m)) || nb_backward(loss)) die("gradient");
        double t1 = now();
        if (nb_hvp(loss, P, params, (const nb_tensor *const *)v, hv)) die("hvp");
        double t2 = now();
        for (int i = 0; i < P; i++) nb_tensor_free(hv[i]);
        if (k >= 0) tg[k] = t1 - t0, th[k] = t2 - t1;
    }
    for (int k = -1; k < (reps < 3 ? reps : 3); k++) {
        nb_tensor *H = NULL;
        double t0 = now();
        if (nb_hessian(loss, params[P - 2], NULL, NULL, &H)) die("hessian");
        if (k >= 0) tH[k] = now() - t0;
        nb_tensor_free(H);
    }
    const double g = median(tg, reps), h = median(th, reps);
    printf("grad_b128_s %.4f\nhvp_b128_s %.4f\nhvp_over_grad %.2f\n", g, h, h / g);
    printf("hessian_dense2_b128_s %.4f\n", median(tH, reps < 3 ? reps : 3));
    second_setup_free(&q);
}

/* For profiling (perf record): only the forward pass, the gradient (forward
 * and backward, as second_order times it), the HVP w.r.t. all
 * parameters or the Hessian w.r.t. the last dense kernel, reps times in a
 * row, the medians of each call's wall and CPU time (the process's, all
 * threads) printed; what is "forward", "grad", "hvp" or "hessian". */
static void second_alone(nb_dataset *d, const char *what, int reps)
{
    if (strcmp(what, "forward") && strcmp(what, "grad") && strcmp(what, "hvp") && strcmp(what, "hessian")) {
        fprintf(stderr, "bench: second %s: expected forward, grad, hvp or hessian\n", what);
        exit(2);
    }
    if (reps < 1) reps = 1;
    second_setup q;
    second_setup_new(d, &q);
    nb_model *m = q.m;
    nb_node *loss = q.loss, **params = q.params;
    nb_tensor **v = q.v, **hv = q.hv;
    const int P = q.P;
    if (nb_forward(nb_model_graph(m))) die("forward");
    double *t = malloc(sizeof *t * (size_t)reps * 2), *c = t + reps;
    if (!t) die("memory");
    for (int k = 0; k < reps; k++) {
        const double t0 = now(), c0 = cpu_now();
        if (!strcmp(what, "forward")) {
            if (nb_forward(nb_model_graph(m))) die("forward");
        } else if (!strcmp(what, "grad")) {
            if (nb_forward(nb_model_graph(m)) || nb_backward(loss)) die("gradient");
        } else if (!strcmp(what, "hvp")) {
            if (nb_hvp(loss, P, params, (const nb_tensor *const *)v, hv)) die("hvp");
            for (int i = 0; i < P; i++) nb_tensor_free(hv[i]);
        } else {
            nb_tensor *H = NULL;
            if (nb_hessian(loss, params[P - 2], NULL, NULL, &H)) die("hessian");
            nb_tensor_free(H);
        }
        t[k] = now() - t0, c[k] = cpu_now() - c0;
    }
    printf("%s_b128_s %.4f\n%s_b128_cpu_s %.4f\n", what, median(t, reps), what, median(c, reps));
    free(t);
    second_setup_free(&q);
}

/* Peak resident memory (MiB) of computing the Hessian w.r.t. the last dense
 * kernel (1280 x 1280) at batch 128, above the resident size before it: the
 * high-water mark is reset first (writing 5 to /proc/self/clear_refs), so
 * building the model does not count. */
static void hessian_peak(nb_dataset *d)
{
    nb_model *m = cnn(128, d);
    nb_node *target, *loss;
    if (nb_model_loss(m, NB_LOSS_CCE, &target, &loss)) die("loss");
    memcpy(nb_value(target)->data, d->y->data, 128 * sizeof(nb_real));
    if (nb_forward(nb_model_graph(m))) die("forward");
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f || fputs("5", f) < 0 || fclose(f)) die("resetting the peak (needs /proc/self/clear_refs)");
    const long base = status_kib("VmRSS");
    nb_tensor *H = NULL;
    if (nb_hessian(loss, nb_model_param(m, nb_model_param_count(m) - 2), NULL, NULL, &H)) die("hessian");
    printf("hessian_dense2_b128_peak_mib %.1f\n", (double)(status_kib("VmHWM") - base) / 1024);
    nb_tensor_free(H);
    nb_model_free(m);
}

/* The mean loss's Hessian over a data set, batch by batch (each batch's
 * products weighted by its share), as an nb_linop for nb_linop_eigs. */
typedef struct {
    nb_model *m;
    nb_node *loss, *target, *params[16];
    int np;
    int64_t n, batch;
    const nb_dataset *d;
} data_op;

static nb_status data_hvp(void *user, int64_t K, const nb_real *x, nb_real *y)
{
    data_op *h = user;
    nb_tensor *vs[16], *hv[16];
    int64_t off = 0;
    for (int i = 0; i < h->np; i++) {
        const nb_tensor *p = nb_value(h->params[i]);
        int64_t s[NB_MAX_RANK + 1] = {K};
        memcpy(s + 1, p->shape, sizeof(int64_t) * (size_t)p->rank);
        if (!(vs[i] = nb_tensor_new(p->rank + 1, s))) die("vectors");
        for (int64_t k = 0; k < K; k++)
            memcpy(vs[i]->data + k * p->size, x + k * h->n + off, (size_t)p->size * sizeof(nb_real));
        off += p->size;
    }
    memset(y, 0, (size_t)(K * h->n) * sizeof(nb_real));
    const int64_t N = h->d->x->shape[0];
    for (int64_t r0 = 0; r0 < N; r0 += h->batch) {
        const int64_t b = N - r0 < h->batch ? N - r0 : h->batch;
        if (nb_model_set_batch(h->m, b)) die("batch");
        memcpy(nb_value(nb_model_input(h->m))->data, h->d->x->data + r0 * 784, (size_t)(b * 784) * sizeof(nb_real));
        memcpy(nb_value(h->target)->data, h->d->y->data + r0, (size_t)b * sizeof(nb_real));
        if (nb_hvp(h->loss, h->np, h->params, (const nb_tensor *const *)vs, hv)) die("hvp"); /* runs the forward */
        const double w = (double)b / (double)N;
        off = 0;
        for (int i = 0; i < h->np; i++) {
            const int64_t sz = nb_value(h->params[i])->size;
            for (int64_t k = 0; k < K; k++)
                for (int64_t e = 0; e < sz; e++) y[k * h->n + off + e] += (nb_real)(w * hv[i]->data[k * sz + e]);
            off += sz;
            nb_tensor_free(hv[i]);
        }
    }
    for (int i = 0; i < h->np; i++) nb_tensor_free(vs[i]);
    return NB_OK;
}

/* The top eigenvalue of the mean CCE loss's Hessian over the first count
 * training images w.r.t. all parameters of the lecture CNN (its initial
 * weights, seed 1), to 1% relative: nb_linop_eigs with k = 1 stops when the
 * value changes by <= tol per iteration; on 500 images tol 1e-2 stopped 4%
 * short (3.486 against 3.627 at tol 1e-4) and tol 1e-3 0.4% short (3.612,
 * relative residual 0.087), hence tol 1e-3. Batches of 250; prints
 * the time and the HVPs used, once (it takes minutes). The weights are
 * written to model_out (if given) so that bench/torch_bench.py eigs runs
 * PyTorch's power iteration on the same ones. */
static void top_eigenvalue(int64_t count, const char *model_out)
{
    nb_dataset all, d;
    if (nb_dataset_load_mnist("/usr/share/datasets/fashion-mnist", "train", &all)) die("data");
    if (nb_dataset_subset(&all, 0, count, &d)) die("subset");
    nb_dataset_free(&all);
    data_op h = {.m = cnn(1, &d), .batch = 250, .d = &d};
    if (nb_model_loss(h.m, NB_LOSS_CCE, &h.target, &h.loss)) die("loss");
    nb_graph_set_training(nb_model_graph(h.m), 0, 0);
    h.np = nb_model_param_count(h.m);
    for (int i = 0; i < h.np; i++) h.params[i] = nb_model_param(h.m, i), h.n += nb_value(h.params[i])->size;
    if (model_out && nb_model_save(h.m, model_out)) die("writing the model");
    nb_eigs_result e;
    const double t0 = now();
    if (nb_linop_eigs(h.n, data_hvp, &h, &(nb_eigs_opts){.k = 1, .max_iter = 200, .tol = 1e-3, .seed = 1}, &e))
        die("eigs");
    const double t = now() - t0;
    printf("eigs_top_images %lld\neigs_top_value %.6g\neigs_top_residual %.3g\neigs_top_s %.2f\neigs_top_hvps %lld\n",
           (long long)count, e.values[0], e.residuals[0], t, (long long)e.products);
    nb_tensor_free(e.vectors);
    nb_model_free(h.m);
    nb_dataset_free(&d);
}

static void peak_memory(nb_dataset *d)
{
    long base = status_kib("VmRSS");
    train_ips(d, 128, 3, 1);
    printf("train_b128_peak_mib %.1f\n", (double)(status_kib("VmHWM") - base) / 1024);
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    if (argc > 2 && !strcmp(argv[2], "onethread")) { /* its own process, as PyTorch's */
        nb_set_num_threads(1);
        nb_dataset d;
        if (nb_dataset_load_mnist("/usr/share/datasets/fashion-mnist", "test", &d)) die("data");
        printf("train_b128_1thread_ips %.1f\n", train_ips(&d, 128, 4, 5));
        nb_dataset_free(&d);
        return 0;
    }
    if (argc > 2 && !strcmp(argv[2], "peak")) {
        nb_set_num_threads(threads);
        nb_dataset d;
        int64_t n = 128;
        if (nb_dataset_load_mnist("/usr/share/datasets/fashion-mnist", "test", &d)) die("data");
        nb_dataset small;
        if (nb_dataset_subset(&d, 0, n, &small)) die("subset");
        nb_dataset_free(&d);
        peak_memory(&small);
        nb_dataset_free(&small);
        return 0;
    }
    if (argc > 2 && !strcmp(argv[2], "resnet")) { /* nabla_bench T resnet [SPEC_FILE]: train img/s and peak */
        nb_set_num_threads(threads);
        const char *spec = read_spec(argc > 3 ? argv[3] : "scripts/resnet.spec");
        nb_dataset d;
        if (nb_dataset_load_mnist("/usr/share/datasets/fashion-mnist", "test", &d)) die("data");
        nb_dataset small;
        if (nb_dataset_subset(&d, 0, 128, &small)) die("subset");
        nb_dataset_free(&d);
        const long base = status_kib("VmRSS");
        printf("resnet_train_b128_ips %.1f\n", train_ips_of(spec, &small, 128, 4, 5));
        printf("resnet_train_b128_peak_mib %.1f\n", (double)(status_kib("VmHWM") - base) / 1024);
        print_choices();
        nb_dataset_free(&small);
        return 0;
    }
    if (argc > 2 && !strcmp(argv[2], "eigs")) { /* nabla_bench T eigs [COUNT [MODEL_OUT]] */
        nb_set_num_threads(threads);
        top_eigenvalue(argc > 3 ? atoll(argv[3]) : 10000, argc > 4 ? argv[4] : NULL);
        return 0;
    }
    if (argc > 2 && !strcmp(argv[2], "hessian_peak")) { /* its own process: a clean high-water mark */
        nb_set_num_threads(threads);
        nb_dataset d;
        if (nb_dataset_load_mnist("/usr/share/datasets/fashion-mnist", "test", &d)) die("data");
        hessian_peak(&d);
        nb_dataset_free(&d);
        return 0;
    }
    if (argc > 2 && !strcmp(argv[2], "gemm")) {
        nb_set_num_threads(1);
        gemm_kernels();
        print_choices();
        return 0;
    }
    nb_set_num_threads(threads);
    nb_dataset all;
    if (nb_dataset_load_mnist("/usr/share/datasets/fashion-mnist", "test", &all)) die("data");
    if (argc > 3 && !strcmp(argv[2], "second")) { /* second forward|grad|hvp|hessian [REPS]: one, to profile */
        second_alone(&all, argv[3], argc > 4 ? atoi(argv[4]) : 20);
        nb_dataset_free(&all);
        return 0;
    }
    if (argc > 2 && !strcmp(argv[2], "second")) { /* the second-order figures alone */
        second_order(&all, 5);
        nb_dataset_free(&all);
        return 0;
    }
    if (argc > 2 && !strcmp(argv[2], "infer")) { /* inference alone, for profiling */
        printf("infer_b128_ips %.1f\n", infer_ips(&all, 128, 64, 5));
        nb_dataset_free(&all);
        return 0;
    }
    if (argc > 2 && !strcmp(argv[2], "jacobian")) { /* the Jacobian figures alone, for profiling */
        printf("jacobian_one_s %.6f\n", jacobian_seconds(&all, 1, 0, 9));
        printf("jacobian_per_example64_s %.6f\n", jacobian_seconds(&all, 64, 1, 5));
        nb_dataset_free(&all);
        return 0;
    }
    printf("threads %d\n", threads);
#ifdef NB_HAVE_CBLAS
    openblas_set_num_threads(threads);
    printf("sgemm_square_gflops %.1f\n", gemm_gflops(2048, 2048, 2048, 5, 1));
    openblas_set_num_threads(1); /* nb_gemm runs OpenBLAS on one thread per block */
#endif
    printf("gemm_conv2_gflops %.1f\n", gemm_gflops(128 * 576, 64, 288, 5, 0));
    printf("gemm_dense1_gflops %.1f\n", gemm_gflops(128, 128, 9216, 9, 0));
    printf("train_b128_ips %.1f\n", train_ips(&all, 128, 8, 5));
    printf("train_b32_ips %.1f\n", train_ips(&all, 32, 24, 5));
    printf("infer_b128_ips %.1f\n", infer_ips(&all, 128, 16, 5));
    printf("jacobian_one_s %.6f\n", jacobian_seconds(&all, 1, 0, 9));
    printf("jacobian_per_example64_s %.6f\n", jacobian_seconds(&all, 64, 1, 5));
    print_choices();
    nb_dataset_free(&all);
    return 0;
}
