/* The nabla CLI, run as a program: demo gd, summary, and eval / predict /
 * jacobian / grad on a tiny model trained for one epoch on 512 Fashion-MNIST
 * images, plus the errors of bad inputs (exit code != 0 and a message). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "kernels/kernels.h" /* nb_gemm_fixed_kernel: which kernel fixed runs */
#include "nabla.h"
#include "nb_test_shell.h"

#define CLI NB_BINARY_DIR "/nabla"
#define TMP NB_BINARY_DIR "/cli_test_"
#define FASHION "/usr/share/datasets/fashion-mnist"


/* The x column (2nd field) of the demo's table row for a step. */
static int demo_x(int step, char *x, size_t n)
{
    for (const char *line = out; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        int k;
        char buf[64];
        if (sscanf(line, "%d %63s", &k, buf) == 2 && k == step) {
            snprintf(x, n, "%s", buf);
            return 1;
        }
    }
    return 0;
}

static void test_demo_gd_converges(void **state)
{
    (void)state;
    assert_int_equal(run(CLI " demo gd --lr 0.1"), 0);
    const char *want[] = {"1", "0.6", "0.36", "0.216", "0.1296", "0.07776", "0.046656"};
    for (int k = 0; k < 7; k++) {
        char x[64];
        assert_true(demo_x(k, x, sizeof x));
        assert_string_equal(x, want[k]);
    }
    assert_true(contains("converging"));
    assert_null(strstr(out, "diverging"));
}

static void test_demo_gd_diverges(void **state)
{
    (void)state;
    assert_int_equal(run(CLI " demo gd --lr 1 --steps 5"), 0);
    const char *want[] = {"1", "-3", "9", "-27", "81", "-243"};
    for (int k = 0; k < 6; k++) {
        char x[64];
        assert_true(demo_x(k, x, sizeof x));
        assert_string_equal(x, want[k]);
    }
    assert_true(contains("diverging: |x| grows because |1 - 4 alpha|"));
    assert_true(contains("converges for 0 < alpha < 0.5"));
    /* f'(1) = 4 from autodiff, f(1) = 2. */
    assert_true(contains("     0              1              2              4"));
    assert_int_equal(run(CLI " demo gd --lr abc"), 2);
    assert_int_equal(run(CLI " demo nope"), 2);
    assert_int_equal(run(CLI " demo gd --help"), 0);
    assert_true(contains("usage: nabla demo gd"));
}

static void test_summary_mnist_cnn(void **state)
{
    (void)state;
    assert_int_equal(run(CLI " summary --model 'conv2d 32 3 relu; conv2d 64 3 relu; maxpool 2; flatten; "
                             "dense 128 relu; dense 10' --input 28,28,1"),
                     0);
    assert_true(contains("Total params: 1199882"));
    /* Per-layer counts, in order, at the end of the rows 0..5. */
    const long long want[] = {320, 18496, 0, 0, 1179776, 1290};
    int found = 0;
    for (const char *line = out; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        int idx;
        if (sscanf(line, "%d ", &idx) != 1 || idx != found) continue;
        const char *end = strchr(line, '\n');
        const char *q = end ? end : line + strlen(line);
        while (q > line && q[-1] == ' ') q--;
        while (q > line && q[-1] >= '0' && q[-1] <= '9') q--;
        assert_int_equal(strtoll(q, NULL, 10), want[found]);
        found++;
    }
    assert_int_equal(found, 6);
    assert_true(contains("(N, 24, 24, 64)"));
    /* A spec that does not fit, and a missing --input. */
    assert_int_equal(run(CLI " summary --model 'dense 10' --input 28,28,1"), 1);
    assert_true(contains("flatten"));
    assert_int_equal(run(CLI " summary --model 'dense 10'"), 1);
    assert_true(contains("--input"));
    assert_int_equal(run(CLI " summary"), 2);
}


/* Reads a whole small file into out (NUL-terminated); its length, or -1. */
static long read_small(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t k = fread(buf, 1, n - 1, f);
    fclose(f);
    buf[k] = '\0';
    return (long)k;
}

/* Whether DOT text is structurally sound: braces balanced outside quoted
 * strings, every quote closed, and escapes only of '"', '\\' and 'n'. */
static int dot_balanced(const char *t)
{
    int depth = 0, quoted = 0;
    for (; *t; t++) {
        if (quoted && *t == '\\') {
            if (t[1] != '"' && t[1] != '\\' && t[1] != 'n') return 0;
            t++;
        } else if (*t == '"') quoted = !quoted;
        else if (!quoted && *t == '{') depth++;
        else if (!quoted && *t == '}' && --depth < 0) return 0;
    }
    return depth == 0 && !quoted;
}

/* summary --dot: one node per layer (labelled with spec and output shape),
 * an edge for each input (the entry before, and add/concat/from's names),
 * the same text on stdout and in -o's file. */
static void test_summary_dot(void **state)
{
    (void)state;
    const char *spec = "conv2d 4 3 padding=same as a; relu; add a as b; from a; conv2d 4 1 as short; concat b input; "
                       "globalavgpool; dense 3";
    assert_int_equal(run(CLI " summary --dot --input 6,6,1 --model '%s'", spec), 0);
    static char text[sizeof out];
    memcpy(text, out, sizeof out);
    assert_int_equal(strncmp(text, "digraph model {\n", 16), 0);
    assert_true(dot_balanced(text));
    assert_int_equal(strcmp(text + strlen(text) - 2, "}\n"), 0);
    int nodes = 0, edges = 0;
    for (const char *l = text; *l; l = strchr(l, '\n') + 1) {
        int i, j;
        char c;
        if (sscanf(l, "  n%d [label=%c", &i, &c) == 2 && c == '"') assert_int_equal(i, nodes), nodes++;
        if (strstr(l, " -> ") && sscanf(l, "  %*s -> n%d;%c", &j, &c) == 2 && c == '\n') edges++;
    }
    assert_int_equal(nodes, 8);
    /* 7 from the entry before (not into `from`), 1 for from, 1 for add, 2 for concat. */
    assert_int_equal(edges, 7 + 1 + 1 + 2);
    const char *want[] = {"  input [label=\"input\\n(N, 6, 6, 1)\"];\n",
                          "  n0 [label=\"0: conv2d 4 3 padding=same as a\\n(N, 6, 6, 4)\\n40 params\"];\n",
                          "  input -> n0;\n", "  n0 -> n1;\n", "  n1 -> n2;\n  n0 -> n2;\n", "  n0 -> n3;\n",
                          "  n3 -> n4;\n", "  n4 -> n5;\n  n2 -> n5;\n  input -> n5;\n",
                          "  n5 [label=\"5: concat b input\\n(N, 6, 6, 9)\\n0 params\"];\n", "\\n(N, 3)\\n30 params\"];\n"};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) assert_non_null(strstr(text, want[k]));
    assert_null(strstr(text, "n2 -> n3")); /* from a reads a, not the entry before it */
    /* -o writes the same text, read back. */
    remove(TMP "model.dot");
    assert_int_equal(run(CLI " summary --dot --input 6,6,1 --model '%s' -o " TMP "model.dot", spec), 0);
    assert_true(contains("wrote " TMP "model.dot"));
    static char back[sizeof out];
    assert_int_equal(read_small(TMP "model.dot", back, sizeof back), (long)strlen(text));
    assert_string_equal(back, text);
    remove(TMP "model.dot");
    /* A stack is a chain: n nodes, n edges. */
    assert_int_equal(run(CLI " summary --dot --input 4 --model 'dense 3 relu; dense 2'"), 0);
    assert_true(contains("  input -> n0;\n  n1 [label=\"1: dense 2\\n(N, 2)\\n8 params\"];\n  n0 -> n1;\n}\n"));
}

/* The declarative options: --help is nabla help CMD, --opt=value, strict
 * numbers, did-you-mean for commands, options and choices. */
static void test_options(void **state)
{
    (void)state;
    static char help[1 << 16];
    assert_int_equal(run(CLI " train --help"), 0);
    snprintf(help, sizeof help, "%s", out);
    assert_true(contains("  --epochs E            epochs (with --resume: in all, those done included) (default 1)"));
    assert_true(contains("  --optimizer sgd|adam|adamw|rmsprop"));
    assert_int_equal(run(CLI " help train"), 0);
    assert_string_equal(out, help);
    assert_int_equal(run(CLI " help trian"), 2);
    assert_true(contains("nabla: unknown command 'trian' (did you mean train?)"));
    assert_int_equal(run(CLI " trian --epochs 1"), 2);
    assert_true(contains("nabla: unknown command 'trian' (did you mean train?)"));
    assert_int_equal(run(CLI " train --data d --model m --epoch 3"), 2);
    assert_true(contains("nabla train: unknown option '--epoch' (did you mean --epochs?)"));
    assert_int_equal(run(CLI " train --data d --model m --optimizer adma"), 2);
    assert_true(contains("unknown --optimizer 'adma': did you mean adam? (the choices: sgd, adam, adamw, rmsprop)"));
    assert_int_equal(run(CLI " gradcheck --seed abc"), 2);
    assert_true(contains("nabla gradcheck: --seed must be an integer >= 0, got 'abc'"));
    assert_int_equal(run(CLI " gradcheck --seed 12x"), 2);
    assert_int_equal(run(CLI " jacobian --model m --input x -o J.npy --eps=-1"), 2);
    assert_true(contains("--eps must be a positive finite number, got '-1'"));
    /* --name=value is --name value: alpha 0.25 takes x from 1 to 0 in one step. */
    assert_int_equal(run(CLI " demo gd --lr=0.25 --steps=1"), 0);
    char x[64];
    assert_true(demo_x(1, x, sizeof x));
    assert_string_equal(x, "0");
    assert_int_equal(run(CLI " train --data=d --model=m --resume=1"), 2);
    assert_true(contains("--resume takes no value, got '--resume=1'"));
    assert_int_equal(run(CLI " train --data d"), 2);
    assert_true(contains("--model is required (or --resume"));
    assert_int_equal(run(CLI " grad --input x.npy --labels y.npy"), 2);
    assert_true(contains("nabla grad: --model and --out are required"));
}

/* ------------------------------------------------------- a trained model */

#define MODEL TMP "tiny.safetensors"
#define XF TMP "x.npy"     /* 3 images, float (3, 28, 28, 1) in [0, 1] */
#define XU8 TMP "x_u8.npy" /* the same 3 images as uint8 (3, 28, 28) */
#define Y TMP "y.npy"
enum { N = 3 };

static int have_data;

/* A .npy of dtype |u1 written byte by byte (nb_npy_write writes floats only). */
static void write_u8_npy(const char *path, const unsigned char *v, int n, int h, int w)
{
    char hdr[128];
    int len = snprintf(hdr, sizeof hdr, "{'descr': '|u1', 'fortran_order': False, 'shape': (%d, %d, %d), }", n, h, w);
    int total = 10 + len + 1, pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    unsigned short hl = (unsigned short)(len + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc(hl & 0xff, f), fputc(hl >> 8, f);
    fwrite(hdr, 1, (size_t)len, f);
    for (int i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    fwrite(v, 1, (size_t)n * h * w, f);
    fclose(f);
}

static int setup_model(void **state)
{
    (void)state;
    struct stat st;
    have_data = stat(FASHION "/t10k-images-idx3-ubyte.gz", &st) == 0;
    if (!have_data) return 0;
    if (run(CLI " train --data fashion-mnist --model 'conv2d 4 3 relu; maxpool 2; flatten; dense 10' --limit 512 "
                "--epochs 1 --batch 64 --no-test --quiet --out " MODEL))
        return -1;
    nb_dataset d = {0};
    if (nb_dataset_load_mnist(FASHION, "test", &d)) return -1;
    int64_t xs[4] = {N, 28, 28, 1}, ys[1] = {N};
    nb_tensor *x = nb_tensor_from(4, xs, d.x->data), *y = nb_tensor_from(1, ys, d.y->data);
    unsigned char u8[N * 28 * 28];
    for (int i = 0; i < N * 28 * 28; i++) u8[i] = (unsigned char)lrint(d.x->data[i] * 255);
    int bad = !x || !y || nb_npy_write(XF, x) || nb_npy_write(Y, y);
    nb_tensor_free(x);
    nb_tensor_free(y);
    nb_dataset_free(&d);
    write_u8_npy(XU8, u8, N, 28, 28);
    return bad ? -1 : 0;
}

static nb_tensor *read_npy(const char *path)
{
    nb_tensor *t = NULL;
    assert_int_equal(nb_npy_read(path, &t), NB_OK);
    return t;
}

static void test_eval(void **state)
{
    (void)state;
    if (!have_data) skip();
    assert_int_equal(run(CLI " eval --model " MODEL " --data fashion-mnist --limit 1000"), 0);
    assert_true(contains("accuracy"));
    assert_true(contains("confusion matrix (rows: true class, columns: predicted class)"));
    assert_true(contains("9 Ankle boot"));
    assert_true(contains("0 T-shirt/top"));
    /* The per-class example counts add up to the 1000 evaluated. */
    long long total = 0;
    const char *p = strstr(out, "class ");
    assert_non_null(p);
    for (int c = 0; c < 10; c++) {
        p = strchr(p, '\n') + 1;
        const char *q = p + 14; /* past "c name" */
        total += strtoll(q, NULL, 10);
    }
    assert_int_equal(total, 1000);
    assert_int_equal(run(CLI " eval --model " MODEL " --data fashion-mnist --split dev"), 2);
    assert_int_equal(run(CLI " eval --model " TMP "missing.safetensors --data fashion-mnist"), 1);
    assert_true(contains("missing.safetensors"));
}

static void test_predict(void **state)
{
    (void)state;
    if (!have_data) skip();
    assert_int_equal(run(CLI " predict --model " MODEL " --input " XF " -o " TMP "p.npy"), 0);
    assert_int_equal(run(CLI " predict --model " MODEL " --input " XU8 " -o " TMP "p8.npy"), 0);
    assert_true(contains("scaled by 1/255"));
    nb_tensor *p = read_npy(TMP "p.npy"), *p8 = read_npy(TMP "p8.npy");
    assert_int_equal(p->rank, 2);
    assert_int_equal(p->shape[0], N);
    assert_int_equal(p->shape[1], 10);
    for (int i = 0; i < N; i++) {
        double s = 0;
        for (int c = 0; c < 10; c++) {
            double v = p->data[i * 10 + c];
            assert_true(v > 0 && v < 1);
            s += v;
            /* uint8 / 255 equals the float data set up to rounding. */
            assert_true(fabs(v - p8->data[i * 10 + c]) < 1e-5);
        }
        assert_true(fabs(s - 1) < 1e-5);
    }
    nb_tensor_free(p);
    nb_tensor_free(p8);
    /* The raw IDX file works too (first rows equal). */
    assert_int_equal(run(CLI " predict --model " MODEL " --input " FASHION "/t10k-images-idx3-ubyte.gz -o " TMP
                             "pidx.npy --batch 500"),
                     0);
    nb_tensor *pi = read_npy(TMP "pidx.npy");
    assert_int_equal(pi->shape[0], 10000);
    nb_tensor *pf = read_npy(TMP "p.npy");
    for (int i = 0; i < N * 10; i++) assert_true(fabs(pi->data[i] - pf->data[i]) < 1e-5);
    nb_tensor_free(pi);
    nb_tensor_free(pf);
    /* Bad inputs: a wrong shape, a missing file, missing options. */
    int64_t ws[2] = {2, 5};
    nb_tensor *w = nb_tensor_new(2, ws);
    assert_int_equal(nb_npy_write(TMP "wrong.npy", w), NB_OK);
    nb_tensor_free(w);
    assert_int_equal(run(CLI " predict --model " MODEL " --input " TMP "wrong.npy -o " TMP "q.npy"), 1);
    assert_true(contains("(2, 5)"));
    assert_true(contains("the model takes (N, 28, 28, 1)"));
    assert_int_equal(run(CLI " predict --model " MODEL " --input " TMP "nothere.npy -o " TMP "q.npy"), 1);
    assert_true(contains("nothere.npy"));
    /* Without -o: the top classes only, nothing written. */
    assert_int_equal(run(CLI " predict --model " MODEL " --input " XF " --top 2"), 0);
    assert_true(contains("example 0: class "));
    assert_null(strstr(out, "wrote"));
    assert_int_equal(run(CLI " predict --model " MODEL), 2);
    assert_true(contains("--input FILE or --data D is required"));
    assert_int_equal(run(CLI " predict --bogus"), 2);
}

static void test_jacobian(void **state)
{
    (void)state;
    if (!have_data) skip();
    assert_int_equal(run(CLI " jacobian --model " MODEL " --input " XF " -o " TMP "J.npy"), 0);
    assert_true(contains("(3, 10, 3, 28, 28, 1)"));
    assert_true(contains("mode auto"));
    assert_int_equal(run(CLI " jacobian --model " MODEL " --input " XF " --per-example --mode fwd -o " TMP "Jp.npy"),
                     0);
    nb_tensor *J = read_npy(TMP "J.npy"), *P = read_npy(TMP "Jp.npy");
    const int64_t js[6] = {N, 10, N, 28, 28, 1}, ps[5] = {N, 10, 28, 28, 1};
    assert_int_equal(J->rank, 6);
    assert_memory_equal(J->shape, js, sizeof js);
    assert_int_equal(P->rank, 5);
    assert_memory_equal(P->shape, ps, sizeof ps);
    /* J[n, o, m, i] = P[n, o, i] when m == n, else 0; and not all zero. */
    const int64_t I = 28 * 28;
    double maxabs = 0;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < 10; o++)
            for (int m = 0; m < N; m++)
                for (int64_t i = 0; i < I; i++) {
                    double j = J->data[((n * 10 + o) * N + m) * I + i];
                    double want = m == n ? P->data[(n * 10 + o) * I + i] : 0;
                    if (fabs(j - want) > 1e-5 * (1 + fabs(want))) fail_msg("J[%d,%d,%d,%lld] = %g, want %g", n, o, m, (long long)i, j, want);
                    if (fabs(j) > maxabs) maxabs = fabs(j);
                }
    assert_true(maxabs > 1e-3);
    nb_tensor_free(J);
    nb_tensor_free(P);
    /* With respect to a parameter: shape out.shape + kernel.shape. */
    assert_int_equal(run(CLI " jacobian --model " MODEL " --input " XF " --wrt 0.kernel -o " TMP "Jk.npy"), 0);
    nb_tensor *K = read_npy(TMP "Jk.npy");
    const int64_t ks[6] = {N, 10, 3, 3, 1, 4};
    assert_int_equal(K->rank, 6);
    assert_memory_equal(K->shape, ks, sizeof ks);
    nb_tensor_free(K);
    /* Errors: an unknown parameter, per-example w.r.t. a parameter, a bad mode. */
    assert_int_equal(run(CLI " jacobian --model " MODEL " --input " XF " --wrt 7.kernel -o " TMP "Jx.npy"), 1);
    assert_true(contains("7.kernel"));
    assert_true(contains("0.kernel"));
    assert_int_equal(run(CLI " jacobian --model " MODEL " --input " XF " --wrt 0.bias --per-example -o " TMP "Jx.npy"),
                     2);
    assert_int_equal(run(CLI " jacobian --model " MODEL " --input " XF " --mode sideways -o " TMP "Jx.npy"), 2);
}

/* The numerical Jacobian of a trained CNN on Fashion-MNIST: the images' flat
 * black background (pixels exactly 0) puts max pools at ties and ReLUs at 0,
 * where central differences give no derivative. --compare and --mode
 * numeric count those inputs and compare backprop on the others. */
static double number_after(const char *needle)
{
    const char *p = strstr(out, needle);
    if (!p) fail_msg("expected '%s' in the output:\n%s", needle, out);
    return strtod(p + strlen(needle), NULL);
}

static void test_jacobian_compare(void **state)
{
    (void)state;
    if (!have_data) skip();
    assert_int_equal(run(CLI " jacobian --model " MODEL " --input " XF " --per-example --compare --kinks " TMP
                             "K.npy"),
                     0);
    assert_true(contains("compare rev with central differences (eps 0.001), per example"));
    assert_true(contains("agree: rev mode matches central differences within 0.05 away from kinks"));
    double all = number_after("  all 2352 input elements: ");
    const char *k = strstr(out, "input elements: ");
    assert_non_null(k);
    long long kinks = strtoll(strchr(k, '\n') + 1, NULL, 10);
    assert_true(contains(") at a kink or tie for this eps"));
    char want[64];
    snprintf(want, sizeof want, "  the other %lld: ", 2352 - kinks);
    double off = number_after(want);
    /* Some inputs sit at kinks, and they carry the difference. */
    assert_true(kinks > 0 && kinks < 2352);
    assert_true(off < 0.05);
    assert_true(all > 2 * off);
    /* The mask: wrt's shape, 0 or 1, as many ones as reported. */
    nb_tensor *K = read_npy(TMP "K.npy");
    const int64_t xs[4] = {N, 28, 28, 1};
    assert_int_equal(K->rank, 4);
    assert_memory_equal(K->shape, xs, sizeof xs);
    long long ones = 0;
    for (int64_t i = 0; i < K->size; i++) {
        assert_true(K->data[i] == 0 || K->data[i] == 1);
        ones += K->data[i] == 1;
    }
    assert_int_equal(ones, kinks);
    nb_tensor_free(K);
    /* The same count from the numeric mode, and the same advice. */
    assert_int_equal(run(CLI " jacobian --model " MODEL " --input " XF " --per-example --mode numeric -o " TMP
                             "Jn.npy"),
                     0);
    snprintf(want, sizeof want, "numeric: %lld of 2352 input elements", kinks);
    assert_true(contains(want));
    assert_true(contains("sit at a kink or tie for eps 0.001"));
    assert_true(contains("--compare"));
    /* A tolerance nothing meets: exit 1 and say so. */
    assert_int_equal(run(CLI " jacobian --model " MODEL " --input " XF " --per-example --compare --tol 1e-9"), 1);
    assert_true(contains("DIFFER"));
    /* Option errors. */
    assert_int_equal(run(CLI " jacobian --model " MODEL " --input " XF " --compare --mode numeric"), 2);
    assert_int_equal(run(CLI " jacobian --model " MODEL " --input " XF " --kinks " TMP "K2.npy -o " TMP "J2.npy"), 2);
    assert_int_equal(run(CLI " jacobian --model " MODEL " --input " XF " --tol 0.1 -o " TMP "J2.npy"), 2);
    assert_int_equal(run(CLI " jacobian --model " MODEL " --input " XF " --compare --tol -1"), 2);
}

static void test_grad(void **state)
{
    (void)state;
    if (!have_data) skip();
    assert_int_equal(run(CLI " grad --model " MODEL " --input " XF " --labels " Y " --loss cce -o " TMP
                             "g.safetensors"),
                     0);
    nb_model *m = NULL;
    nb_safetensors *g = NULL;
    assert_int_equal(nb_model_load(MODEL, &m), NB_OK);
    assert_int_equal(nb_safetensors_read(TMP "g.safetensors", &g), NB_OK);
    assert_int_equal(nb_safetensors_count(g), nb_model_param_count(m));
    for (int i = 0; i < nb_model_param_count(m); i++) {
        nb_node *p = nb_model_param(m, i);
        const nb_tensor *t = nb_safetensors_get(g, nb_node_name(p)), *v = nb_value(p);
        assert_non_null(t);
        assert_int_equal(t->rank, v->rank);
        assert_memory_equal(t->shape, v->shape, sizeof(int64_t) * (size_t)v->rank);
        double mx = 0;
        for (int64_t j = 0; j < t->size; j++) mx = fmax(mx, fabs(t->data[j]));
        assert_true(mx > 1e-6);
    }
    nb_safetensors_free(g);
    nb_model_free(m);
    /* Labels out of range, labels of the wrong shape, an unknown loss. */
    int64_t ls[1] = {N};
    nb_tensor *bad = nb_tensor_new(1, ls);
    bad->data[0] = 1, bad->data[1] = 10, bad->data[2] = 0;
    assert_int_equal(nb_npy_write(TMP "ybad.npy", bad), NB_OK);
    nb_tensor_free(bad);
    assert_int_equal(run(CLI " grad --model " MODEL " --input " XF " --labels " TMP "ybad.npy -o " TMP "g2.safetensors"),
                     1);
    assert_true(contains("ybad.npy': example 1 has label 10, not a class index 0..9 (10 classes)"));
    assert_int_equal(run(CLI " grad --model " MODEL " --input " XF " --labels " Y " --loss mse -o " TMP "g2.safetensors"),
                     1);
    assert_true(contains("(3, 10)"));
    assert_int_equal(run(CLI " grad --model " MODEL " --input " XF " --labels " Y " --loss hinge -o " TMP "g2.safetensors"),
                     2);
}

/* A small CSV task: 4 features, 3 classes, 60 rows. */
static void write_csv3(const char *path)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "a,b,c,d,label\n");
    for (int i = 0; i < 60; i++) {
        int c = i % 3;
        fprintf(f, "%g,%g,%g,%g,%d\n", c == 0 ? 1.0 : 0.1 * (i % 7), c == 1 ? 1.0 : 0.05 * (i % 5),
                c == 2 ? 1.0 : 0.02 * (i % 11), 0.3, c);
    }
    fclose(f);
}

/* train writes a model with a bare linear layer that summary, predict and
 * --resume read back (it used to write the spec line 'none'). */
static void test_linear_layer_model_file(void **state)
{
    (void)state;
    write_csv3(TMP "three.csv");
    assert_int_equal(run(CLI " train --data " TMP "three.csv --model 'dense 8 relu; linear; dense 3' --epochs 1 "
                             "--no-test --quiet --val-split 0 --out " TMP "linear.safetensors"),
                     0);
    assert_int_equal(run(CLI " summary --model " TMP "linear.safetensors"), 0);
    assert_true(contains("model: dense 8 relu; linear; dense 3"));
    int64_t xs[2] = {2, 4};
    nb_tensor *x = nb_tensor_new(2, xs);
    for (int i = 0; i < 8; i++) x->data[i] = (nb_real)(0.1 * i);
    assert_int_equal(nb_npy_write(TMP "x4.npy", x), NB_OK);
    nb_tensor_free(x);
    assert_int_equal(run(CLI " predict --model " TMP "linear.safetensors --input " TMP "x4.npy -o " TMP "plin.npy"), 0);
    assert_true(contains("shape (2, 3)"));
    assert_int_equal(run(CLI " train --data " TMP "three.csv --model 'dense 8 relu; linear; dense 3' --epochs 2 "
                             "--no-test --quiet --val-split 0 --resume --out " TMP "linear.safetensors"),
                     0);
}

/* predict on a model whose softmax is followed by dropout writes the
 * softmax's probabilities, once (it used to apply a second softmax). */
static void test_predict_softmax_then_dropout(void **state)
{
    (void)state;
    const char *specs[] = {"dense 8 relu; dense 3 softmax; dropout 0.1", "dense 8 relu; dense 3 softmax; linear",
                           "dense 8 relu; dense 3 log_softmax; dropout 0.2", "dense 8 relu; dense 3; dropout 0.2"};
    const int64_t in[1] = {4}, xs[2] = {5, 4};
    nb_tensor *x = nb_tensor_new(2, xs);
    for (int i = 0; i < 20; i++) x->data[i] = (nb_real)(0.2 * (i % 7) - 0.5);
    assert_int_equal(nb_npy_write(TMP "xsd.npy", x), NB_OK);
    for (int t = 0; t < 4; t++) {
        nb_model *m;
        assert_int_equal(nb_model_from_spec(specs[t], 1, in, &m), NB_OK);
        assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 5), NB_OK);
        /* large weights, so that a second softmax would be far off */
        nb_tensor *k = nb_value(nb_model_find_param(m, "1.kernel"));
        for (int64_t i = 0; i < k->size; i++) k->data[i] *= 4;
        assert_int_equal(nb_model_save(m, TMP "sd.safetensors"), NB_OK);
        nb_tensor *ref;
        assert_int_equal(nb_model_predict(m, x, 0, &ref), NB_OK);
        nb_model_free(m);
        assert_int_equal(run(CLI " predict --model " TMP "sd.safetensors --input " TMP "xsd.npy -o " TMP "psd.npy"), 0);
        nb_tensor *p = read_npy(TMP "psd.npy");
        assert_int_equal(p->size, 15);
        for (int r = 0; r < 5; r++) {
            double sum = 0, z[3], mx = -1e30, zs = 0;
            for (int c = 0; c < 3; c++) mx = fmax(mx, ref->data[3 * r + c]);
            for (int c = 0; c < 3; c++) zs += z[c] = exp(ref->data[3 * r + c] - mx);
            for (int c = 0; c < 3; c++) {
                double v = p->data[3 * r + c], want = ref->data[3 * r + c]; /* softmax: as is */
                if (t == 2) want = exp(want);                               /* log_softmax: exp */
                if (t == 3) want = z[c] / zs;                               /* logits: softmax */
                if (fabs(v - want) > 1e-5) print_error("'%s': row %d class %d: %g, want %g\n", specs[t], r, c, v, want);
                assert_true(fabs(v - want) < 1e-5);
                sum += v;
            }
            assert_true(fabs(sum - 1) < 1e-5);
        }
        if (t < 2) assert_true(contains("probabilities (the model ends in softmax)"));
        nb_tensor_free(p);
        nb_tensor_free(ref);
    }
    nb_tensor_free(x);
}


/* --data D --start K --count N: the same examples as --input, from the data
 * set itself, with its labels; predict's top classes with their names. */
static void test_data_source(void **state)
{
    (void)state;
    if (!have_data) skip();
    assert_int_equal(run(CLI " predict --model " MODEL " --input " XF " -o " TMP "pin.npy"), 0);
    assert_int_equal(run(CLI " predict --model " MODEL " --data fashion-mnist --count 3 --top 1 -o " TMP "pdata.npy"),
                     0);
    /* The first three test images are an ankle boot, a pullover and a trouser. */
    assert_true(contains("the test split of 'fashion-mnist' examples 0..2: 3 examples"));
    assert_true(contains("(label: Ankle boot"));
    assert_true(contains("(label: Pullover"));
    assert_true(contains("(label: Trouser"));
    nb_tensor *a = read_npy(TMP "pin.npy"), *b = read_npy(TMP "pdata.npy");
    assert_int_equal(a->size, b->size);
    assert_memory_equal(a->data, b->data, (size_t)a->size * sizeof(nb_real));
    /* The top class printed is the argmax of the row, with its probability. */
    int best = 0;
    for (int c = 1; c < 10; c++)
        if (a->data[c] > a->data[best]) best = c;
    static const char *names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
    char line[128];
    snprintf(line, sizeof line, "example 0: %s %.3f   (label: Ankle boot", names[best], (double)a->data[best]);
    assert_true(contains(line));
    /* --classes FILE: one name per line. */
    FILE *cf = fopen(TMP "classes.txt", "w");
    assert_non_null(cf);
    for (int k = 0; k < 10; k++) fprintf(cf, "kind-%d\n", k);
    fclose(cf);
    assert_int_equal(run(CLI " predict --model " MODEL " --input " XF " --classes " TMP "classes.txt --top 1"), 0);
    snprintf(line, sizeof line, "example 0: kind-%d %.3f\n", best, (double)a->data[best]);
    assert_true(contains(line));
    /* --start 1 --count 2: rows 1 and 2; on --input too. */
    assert_int_equal(run(CLI " predict --model " MODEL " --data fashion-mnist --start 1 --count 2 -o " TMP "p12.npy"), 0);
    nb_tensor *c = read_npy(TMP "p12.npy");
    assert_int_equal(c->shape[0], 2);
    assert_memory_equal(c->data, a->data + 10, 20 * sizeof(nb_real));
    nb_tensor_free(c);
    assert_int_equal(run(CLI " predict --model " MODEL " --input " XF " --start 2 -o " TMP "p2.npy"), 0);
    c = read_npy(TMP "p2.npy");
    assert_int_equal(c->shape[0], 1);
    assert_memory_equal(c->data, a->data + 20, 10 * sizeof(nb_real));
    nb_tensor_free(c);
    nb_tensor_free(a);
    nb_tensor_free(b);
    /* jacobian: one example by default with --data; the same J as --input. */
    assert_int_equal(run(CLI " jacobian --model " MODEL " --data fashion-mnist -o " TMP "Jd.npy"), 0);
    nb_tensor *J = read_npy(TMP "Jd.npy");
    const int64_t js[6] = {1, 10, 1, 28, 28, 1};
    assert_int_equal(J->rank, 6);
    assert_memory_equal(J->shape, js, sizeof js);
    assert_int_equal(run(CLI " jacobian --model " MODEL " --input " XF " --count 1 -o " TMP "Ji.npy"), 0);
    nb_tensor *Ji = read_npy(TMP "Ji.npy");
    assert_memory_equal(J->data, Ji->data, (size_t)J->size * sizeof(nb_real));
    nb_tensor_free(J);
    nb_tensor_free(Ji);
    /* grad: the data set's labels, the same loss as --labels. */
    assert_int_equal(run(CLI " grad --model " MODEL " --input " XF " --labels " Y " -o " TMP "gi.safetensors"), 0);
    const char *p = strstr(out, "loss (cce, mean over 3 examples): ");
    assert_non_null(p);
    char loss_in[64];
    sscanf(p + strlen("loss (cce, mean over 3 examples): "), "%63s", loss_in);
    assert_int_equal(run(CLI " grad --model " MODEL " --data fashion-mnist --count 3 -o " TMP "gd.safetensors"), 0);
    snprintf(line, sizeof line, "loss (cce, mean over 3 examples): %s\n", loss_in);
    assert_true(contains(line));
    /* Errors: both sources, --start past the end. */
    assert_int_equal(run(CLI " predict --model " MODEL " --input " XF " --data fashion-mnist"), 2);
    assert_true(contains("give --input or --data, not both"));
    assert_int_equal(run(CLI " predict --model " MODEL " --data fashion-mnist --start 10000"), 1);
    assert_true(contains("--start 10000: the test split of 'fashion-mnist' has 10000 examples (0..9999)"));
}

/* --resume needs no --model, and says when the epochs are already done. */
static void test_resume_without_model(void **state)
{
    (void)state;
    if (!have_data) skip();
    assert_int_equal(run("cp " MODEL " " TMP "resume.safetensors"), 0);
    assert_int_equal(run(CLI " train --data fashion-mnist --resume --out " TMP "resume.safetensors"), 0);
    assert_true(contains("nothing to train: the checkpoint '" TMP "resume.safetensors' already holds 1 epoch and "
                         "--epochs is 1"));
    assert_int_equal(run(CLI " train --data fashion-mnist --resume --epochs 2 --limit 128 --no-test --out " TMP
                             "resume.safetensors"),
                     0);
    assert_true(contains("resuming after epoch 1"));
    assert_true(contains("epoch 2/2: loss "));
}

/* Whether the tensors of checkpoint a stand in b with the same bits. */
static int same_weights(const char *a, const char *b)
{
    nb_safetensors *sa = NULL, *sb = NULL;
    int same = nb_safetensors_read(a, &sa) == NB_OK && nb_safetensors_read(b, &sb) == NB_OK &&
               nb_safetensors_count(sa) > 0 && nb_safetensors_count(sa) == nb_safetensors_count(sb);
    for (int i = 0; same && i < nb_safetensors_count(sa); i++) {
        const nb_tensor *x = nb_safetensors_get(sa, nb_safetensors_name(sa, i)),
                        *y = nb_safetensors_get(sb, nb_safetensors_name(sa, i));
        same = y && x->size == y->size && memcmp(x->data, y->data, (size_t)x->size * sizeof(nb_real)) == 0;
    }
    nb_safetensors_free(sa);
    nb_safetensors_free(sb);
    return same;
}

#define GEMM_TRAIN                                                                                                    \
    " train --data fashion-mnist --model 'conv2d 2 3 relu; maxpool 2; flatten; dense 10' --limit 256 --batch 64 "     \
    "--no-test --seed 5 --quiet "

/* A checkpoint carries its run's GEMM kernels (nabla.gemm), and --resume
 * under NB_GEMM=auto follows them: 1 epoch with the builtin kernel, resumed
 * under auto, gives the bits of 2 epochs with it uninterrupted (measuring
 * would have chosen the machine's faster kernels). An explicit NB_GEMM wins
 * over the checkpoint's. Nothing is timed: builtin and fixed never measure,
 * and the resume follows. */
static void test_resume_follows_gemm_choices(void **state)
{
    (void)state;
    if (!have_data) skip();
    assert_int_equal(run("NB_GEMM=builtin " CLI GEMM_TRAIN "--epochs 1 --out " TMP "gA.safetensors"), 0);
    nb_safetensors *st = NULL;
    assert_int_equal(nb_safetensors_read(TMP "gA.safetensors", &st), NB_OK);
    const char *gemm = nb_safetensors_meta(st, "nabla.gemm");
    assert_non_null(gemm);
    assert_true(!strncmp(gemm, "fixed,", 6) && strstr(gemm, "=builtin") && !strstr(gemm, "=avx512"));
    nb_safetensors_free(st);
    assert_int_equal(run("cp " TMP "gA.safetensors " TMP "gB.safetensors && cp " TMP "gA.safetensors " TMP
                         "gD.safetensors"),
                     0);
    assert_int_equal(run("NB_GEMM=auto " CLI GEMM_TRAIN "--epochs 2 --resume --out " TMP "gB.safetensors"), 0);
    assert_int_equal(run("NB_GEMM=builtin " CLI GEMM_TRAIN "--epochs 2 --out " TMP "gC.safetensors"), 0);
    assert_true(same_weights(TMP "gB.safetensors", TMP "gC.safetensors"));
    assert_false(same_weights(TMP "gA.safetensors", TMP "gC.safetensors")); /* epoch 2 did train */
    /* NB_GEMM=fixed is explicit: not followed. Where the fixed kernel of the
     * dense layer's product is not builtin, the resumed bits then differ. */
    assert_int_equal(run("NB_GEMM=fixed " CLI GEMM_TRAIN "--epochs 2 --resume --out " TMP "gD.safetensors"), 0);
    if (nb_gemm_fixed_kernel(false, false, 64, 10, 338) != NB_GEMM_PORTABLE)
        assert_false(same_weights(TMP "gD.safetensors", TMP "gC.safetensors"));
    /* The same with a strided convolution of 16 channels: the in-place paths
     * (kernel VJP, strided input VJP) refused under builtin are written to
     * the checkpoint as builtin-only and stay refused when followed (they
     * ask about GEMM classes the lowering never runs). */
#define GEMM_TRAIN2                                                                                                   \
    " train --data fashion-mnist --model 'conv2d 16 3 relu; conv2d 16 3 stride=2 padding=same; flatten; dense 10' "  \
    "--limit 256 --batch 64 --no-test --seed 5 --quiet "
    assert_int_equal(run("NB_GEMM=builtin " CLI GEMM_TRAIN2 "--epochs 1 --out " TMP "gF.safetensors"), 0);
    assert_int_equal(run("cp " TMP "gF.safetensors " TMP "gG.safetensors"), 0);
    assert_int_equal(run("NB_GEMM=auto " CLI GEMM_TRAIN2 "--epochs 2 --resume --out " TMP "gG.safetensors"), 0);
    assert_int_equal(run("NB_GEMM=builtin " CLI GEMM_TRAIN2 "--epochs 2 --out " TMP "gH.safetensors"), 0);
    assert_true(same_weights(TMP "gG.safetensors", TMP "gH.safetensors"));
    assert_false(same_weights(TMP "gF.safetensors", TMP "gH.safetensors"));
    /* A nabla.gemm this build does not understand: a note (then it would
     * measure; here the epochs are done, so nothing runs). */
    assert_int_equal(nb_safetensors_read(TMP "gA.safetensors", &st), NB_OK);
    assert_int_equal(nb_safetensors_set_meta(st, "nabla.gemm", "fixed,nn.m1-2.n1-2.k1-2=warp9"), NB_OK);
    assert_int_equal(nb_safetensors_write(TMP "gE.safetensors", st, 0), NB_OK);
    nb_safetensors_free(st);
    assert_int_equal(run("NB_GEMM=auto " CLI " train --data fashion-mnist --epochs 1 --resume --out " TMP
                         "gE.safetensors"),
                     0);
    assert_true(contains("nothing to train"));
    assert_true(contains("nabla train: --resume: GEMM kernels 'fixed,nn.m1-2.n1-2.k1-2=warp9': unknown kernel 'warp9' "
                         "ignored"));
}

/* train --plot: an SVG file (a .png name is refused), epochs on integer ticks. */
static void test_train_plot_ticks(void **state)
{
    (void)state;
    if (!have_data) skip();
    assert_int_equal(run(CLI " train --data fashion-mnist --model 'flatten; dense 10' --limit 256 --epochs 3 --no-test "
                             "--quiet --out " TMP "plot.safetensors --plot " TMP "curves.png"),
                     2);
    assert_true(contains("--plot writes SVG"));
    assert_int_equal(run(CLI " train --data fashion-mnist --model 'flatten; dense 10' --limit 256 --epochs 3 --no-test "
                             "--quiet --out " TMP "plot.safetensors --plot " TMP "curves.svg"),
                     0);
    FILE *f = fopen(TMP "curves.svg", "r");
    assert_non_null(f);
    static char svg[1 << 18];
    size_t n = fread(svg, 1, sizeof svg - 1, f);
    svg[n] = '\0';
    fclose(f);
    /* Both plots' x ticks: 1, 2, 3 and nothing between. */
    char ticks[256] = "";
    for (const char *q = strstr(svg, "class=\"xtick\""); q; q = strstr(q + 1, "class=\"xtick\"")) {
        const char *gt = strchr(q, '>'), *lt = gt ? strchr(gt, '<') : NULL;
        assert_non_null(lt);
        size_t u = strlen(ticks);
        snprintf(ticks + u, sizeof ticks - u, "%.*s ", (int)(lt - gt - 1), gt + 1);
    }
    assert_string_equal(ticks, "1 2 3 1 2 3 ");
}

/* The CSV path: the label first and named, pixels 0..255 (a warning, then
 * --scale 255), rows reshaped to --input for a conv net, eval and predict on
 * the CSV file without --split, and a file without a header keeps its first
 * row. 60 rows of 4x4 images, class c bright where (pixel % 3) == c. */
static void test_csv_path(void **state)
{
    (void)state;
    FILE *f = fopen(TMP "lf.csv", "w");
    assert_non_null(f);
    fprintf(f, "label");
    for (int j = 0; j < 16; j++) fprintf(f, ",p%d", j);
    fprintf(f, "\n");
    for (int i = 0; i < 60; i++) {
        fprintf(f, "%d", i % 3);
        for (int j = 0; j < 16; j++) fprintf(f, ",%d", j % 3 == i % 3 ? 255 : (i * 7 + j * 13) % 41);
        fprintf(f, "\n");
    }
    fclose(f);
    const char *common = " --data " TMP "lf.csv --label-col label --model 'conv2d 4 2 relu; flatten; dense 3' --input "
                         "4,4,1 --val-split 0 --seed 2 --out " TMP "lf.safetensors";
    assert_int_equal(run(CLI " train%s --epochs 1 --quiet", common), 0);
    assert_true(contains("'" TMP "lf.csv': the first line is a header (it holds a field that is not a number)"));
    assert_true(contains("warning: the inputs of '" TMP "lf.csv' are whole numbers up to 255, like 0..255 pixels: "
                         "pass --scale 255"));
    assert_int_equal(run(CLI " train%s --epochs 30 --lr 0.02 --scale 255", common), 0);
    assert_null(strstr(out, "warning"));
    assert_true(contains("60 examples (0 validation)"));
    /* eval reads the same file (no --split needed) and reshapes its rows. */
    assert_int_equal(run(CLI " eval --model " TMP "lf.safetensors --data " TMP "lf.csv --label-col 0 --scale 255"), 0);
    assert_true(contains("60 examples"));
    assert_true(contains("accuracy 1.0000 (60/60 correct)"));
    assert_int_equal(run(CLI " predict --model " TMP "lf.safetensors --data " TMP "lf.csv --label-col label --scale "
                             "255 --count 3 --top 1"),
                     0);
    assert_true(contains("example 2: class 2 "));
    assert_true(contains("3 of 3 right"));
    /* No header: every row is data, and the detection says so. */
    f = fopen(TMP "nh.csv", "w");
    assert_non_null(f);
    for (int i = 0; i < 30; i++) fprintf(f, "%d,%g,%g,%g\n", i % 3, i % 3 == 0 ? 1.0 : 0.1, i % 3 == 1 ? 1.0 : 0.1, i % 3 == 2 ? 1.0 : 0.1);
    fclose(f);
    assert_int_equal(run(CLI " train --data " TMP "nh.csv --label-col 0 --model 'dense 3' --val-split 0 --out " TMP
                             "nh.safetensors"),
                     0);
    assert_true(contains("no header line (the first line is all numbers): it is data (pass --header if not)"));
    assert_true(contains("30 examples (0 validation)"));
    assert_int_equal(run(CLI " train --data " TMP "nh.csv --label-col 0 --header --model 'dense 3' --val-split 0 --out " TMP
                             "nh.safetensors"),
                     0);
    assert_true(contains("29 examples (0 validation)"));
}

/* train --model M.safetensors continues from M's weights and says so (after
 * test_csv_path, whose lf.csv and 60/60-right lf.safetensors it reuses): one
 * epoch at lr 1e-4 keeps every example right, which a new initialisation
 * would not. A spec says nothing of the kind, and --quiet silences it. */
static void test_train_continues_from_model_file(void **state)
{
    (void)state;
    const char *common = " --data " TMP "lf.csv --label-col label --input 4,4,1 --scale 255 --val-split 0 --epochs 1 "
                         "--lr 1e-4 --seed 2";
    assert_int_equal(run(CLI " train%s --model " TMP "lf.safetensors --out " TMP "lf2.safetensors", common), 0);
    assert_true(contains("continuing from the weights in " TMP "lf.safetensors (a new optimizer state)"));
    assert_int_equal(run(CLI " eval --model " TMP "lf2.safetensors --data " TMP "lf.csv --label-col 0 --scale 255"), 0);
    assert_true(contains("accuracy 1.0000 (60/60 correct)"));
    /* A spec starts afresh: no such line, and one epoch at 1e-4 is not enough. */
    assert_int_equal(run(CLI " train%s --model 'conv2d 4 2 relu; flatten; dense 3' --out " TMP "lf3.safetensors",
                         common),
                     0);
    assert_null(strstr(out, "continuing from"));
    assert_int_equal(run(CLI " eval --model " TMP "lf3.safetensors --data " TMP "lf.csv --label-col 0 --scale 255"), 0);
    assert_null(strstr(out, "(60/60 correct)"));
    assert_int_equal(run(CLI " train%s --quiet --model " TMP "lf.safetensors --out " TMP "lf2.safetensors", common),
                     0);
    assert_null(strstr(out, "continuing from"));
}

int main(void)
{
    const struct CMUnitTest basic[] = {
        cmocka_unit_test(test_demo_gd_converges),
        cmocka_unit_test(test_demo_gd_diverges),
        cmocka_unit_test(test_summary_mnist_cnn),
        cmocka_unit_test(test_summary_dot),
        cmocka_unit_test(test_linear_layer_model_file),
        cmocka_unit_test(test_predict_softmax_then_dropout),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_csv_path),
        cmocka_unit_test(test_train_continues_from_model_file),
    };
    const struct CMUnitTest trained[] = {
        cmocka_unit_test(test_eval),
        cmocka_unit_test(test_predict),
        cmocka_unit_test(test_jacobian),
        cmocka_unit_test(test_jacobian_compare),
        cmocka_unit_test(test_grad),
        cmocka_unit_test(test_data_source),
        cmocka_unit_test(test_resume_without_model),
        cmocka_unit_test(test_resume_follows_gemm_choices),
        cmocka_unit_test(test_train_plot_ticks),
    };
    int f = cmocka_run_group_tests(basic, NULL, NULL);
    return f + cmocka_run_group_tests(trained, setup_model, NULL);
}
