/* NaN and Inf through `nabla predict`, `jacobian` and `grad`: the file is
 * written with NaN kept (relu and the fused conv2d + relu propagate it), a
 * warning on stderr names each example with its counts, and the exit
 * status is 3. Small models on 8x8 inputs, saved untrained; no data set. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "f32/nb_test_util.h"

static char dir[1024];

static const char *path_in(const char *name)
{
    return tu_path_in(dir, name);
}

#define CLI(out, ...) tu_run_cli((const char *const[]){__VA_ARGS__, NULL}, out, NULL)

enum { N = 5, HW = 8 };

static const char *CONV = "conv2d 2 3 relu; maxpool 2; flatten; dense 10"; /* the fused conv2d + relu */
static const char *DENSE = "flatten; dense 16 relu; dense 10";               /* nb_relu */

/* A model for 8x8x1 inputs, untrained (Glorot, seed 3); its first kernel
 * set to v everywhere when v != 0. */
static void save_model(const char *file, const char *spec, float v)
{
    nb_model *m;
    int64_t in[3] = {HW, HW, 1};
    assert_int_equal(nb_model_from_spec(spec, 3, in, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 3), NB_OK);
    if (v != 0) {
        nb_tensor *t = nb_value(nb_model_param(m, 0));
        for (int64_t i = 0; i < t->size; i++) t->data[i] = v;
    }
    assert_int_equal(nb_model_save(m, file), NB_OK);
    nb_model_free(m);
}

/* N inputs in [0, 1); example 3 gets a NaN at pixel (2, 2) and example 1 an
 * Inf at (5, 6) unless clean. */
static void save_inputs(const char *file, int clean)
{
    int64_t s[4] = {N, HW, HW, 1};
    nb_tensor *x = nb_tensor_new(4, s);
    for (int64_t i = 0; i < x->size; i++) x->data[i] = (float)((i * 37) % 101) / 101.0f;
    if (!clean) {
        x->data[3 * HW * HW + 2 * HW + 2] = NAN;
        x->data[1 * HW * HW + 5 * HW + 6] = INFINITY;
    }
    assert_int_equal(nb_npy_write(file, x), NB_OK);
    nb_tensor_free(x);
}

static void save_labels(const char *file, int rank, const int64_t *shape, int nan_at)
{
    nb_tensor *y = nb_tensor_new(rank, shape);
    for (int64_t i = 0; i < y->size; i++) y->data[i] = rank == 1 ? (float)(i % 10) : (i % 10 == 0);
    if (nan_at >= 0) y->data[nan_at] = NAN;
    assert_int_equal(nb_npy_write(file, y), NB_OK);
    nb_tensor_free(y);
}

static nb_tensor *read_npy(const char *path)
{
    nb_tensor *t = NULL;
    assert_int_equal(nb_npy_read(path, &t), NB_OK);
    return t;
}

/* predict: rows of the clean examples are probabilities; example 3's row is
 * all NaN (not plausible probabilities); exit 3 with both examples named. */
static void test_predict_reports_nonfinite_examples(void **state)
{
    (void)state;
    const char *specs[2] = {CONV, DENSE};
    save_inputs(path_in("x.npy"), 0);
    for (int s = 0; s < 2; s++) {
        char *out;
        save_model(path_in("m.safetensors"), specs[s], 0);
        unlink(path_in("p.npy"));
        int rc = CLI(&out, "predict", "--model", path_in("m.safetensors"), "--input", path_in("x.npy"), "-o",
                     path_in("p.npy"));
        assert_has(out, "nabla predict: warning: 2 of 5 examples have NaN or Inf (counted from 0): example 1 "
                        "(input: 1 Inf; output");
        assert_has(out, ", example 3 (input: 1 NaN; output: 10 NaN)\n");
        assert_has(out, "(exit status 3)");
        assert_int_equal(rc, 3);
        nb_tensor *p = read_npy(path_in("p.npy"));
        assert_int_equal(p->shape[0], N);
        for (int n = 0; n < N; n++) {
            double sum = 0;
            for (int c = 0; c < 10; c++) {
                const double v = p->data[n * 10 + c];
                if (n == 3) assert_true(isnan(v));
                sum += v;
            }
            if (n != 1 && n != 3) assert_true(fabs(sum - 1) < 1e-5);
        }
        nb_tensor_free(p);
        free(out);
    }
    /* Clean inputs: exit 0 and no warning. */
    char *out;
    save_inputs(path_in("xc.npy"), 1);
    int rc = CLI(&out, "predict", "--model", path_in("m.safetensors"), "--input", path_in("xc.npy"), "-o",
                 path_in("p.npy"));
    assert_int_equal(rc, 0);
    assert_null(strstr(out, "warning"));
    free(out);
}

/* Finite inputs, weights that overflow: every example named, with the hint. */
static void test_predict_reports_overflow(void **state)
{
    (void)state;
    char *out;
    save_model(path_in("big.safetensors"), CONV, 3e38f);
    save_inputs(path_in("xc.npy"), 1);
    int rc = CLI(&out, "predict", "--model", path_in("big.safetensors"), "--input", path_in("xc.npy"), "-o",
                 path_in("pbig.npy"));
    assert_int_equal(rc, 3);
    /* The top classes of rows all NaN: in class order (NaN ranks last). */
    assert_has(out, "example 0: class 0 nan, class 1 nan, class 2 nan\n");
    assert_has(out, "nabla predict: warning: 5 of 5 examples have NaN or Inf (counted from 0): example 0 (input "
                    "finite; output: ");
    assert_has(out, "nabla predict: an example given only finite values whose result is not finite overflowed "
                    "inside the model or met a non-finite weight\n");
    free(out);
}

/* jacobian: example 3's logits are NaN, which the report says; J is written. */
static void test_jacobian_reports_nonfinite_examples(void **state)
{
    (void)state;
    char *out;
    save_model(path_in("m.safetensors"), CONV, 0);
    save_inputs(path_in("x.npy"), 0);
    const char *modes[3] = {"rev", "fwd", "numeric"};
    for (int k = 0; k < 3; k++) {
        unlink(path_in("J.npy"));
        int rc = CLI(&out, "jacobian", "--model", path_in("m.safetensors"), "--input", path_in("x.npy"),
                     "--per-example", "--mode", modes[k], "-o", path_in("J.npy"));
        assert_has(out, "nabla jacobian: warning: 2 of 5 examples have NaN or Inf (counted from 0): example 1 "
                        "(input: 1 Inf; logits");
        assert_has(out, ", example 3 (input: 1 NaN; logits: 10 NaN; Jacobian");
        assert_int_equal(rc, 3);
        nb_tensor *J = read_npy(path_in("J.npy"));
        assert_int_equal(J->shape[0], N);
        nb_tensor_free(J);
        free(out);
    }
}

/* The last two fields of the grad table's row for parameter name. */
static void grad_row(const char *out, const char *name, char *mx, char *l2)
{
    const char *p = strstr(out, name);
    assert_non_null(p);
    p += *name == '\n';
    const char *e = strchr(p, '\n');
    assert_non_null(e);
    char line[256];
    snprintf(line, sizeof line, "%.*s", (int)(e - p), p);
    char *last = strrchr(line, ' ');
    assert_non_null(last);
    strcpy(l2, last + 1);
    while (last > line && *last == ' ') *last-- = '\0';
    char *before = strrchr(line, ' ');
    assert_non_null(before);
    strcpy(mx, before + 1);
}

/* grad: a NaN input makes the loss and gradients NaN; the table's max |grad|
 * says nan (it skipped NaN), the report names example 3 and the gradients. */
static void test_grad_reports_nonfinite(void **state)
{
    (void)state;
    char *out, mx[64], l2[64];
    save_model(path_in("m.safetensors"), CONV, 0);
    save_inputs(path_in("x.npy"), 0);
    const int64_t ls[1] = {N};
    save_labels(path_in("y.npy"), 1, ls, -1);
    int rc = CLI(&out, "grad", "--model", path_in("m.safetensors"), "--input", path_in("x.npy"), "--labels",
                 path_in("y.npy"), "--loss", "cce", "-o", path_in("g.safetensors"));
    assert_has(out, "loss (cce, mean over 5 examples): nan");
    assert_has(out, ", example 3 (input: 1 NaN; labels finite; logits: 10 NaN)");
    assert_has(out, "nabla grad: warning: non-finite gradients: 0.kernel (");
    assert_int_equal(rc, 3);
    grad_row(out, "\n3.kernel", mx, l2);
    assert_non_null(strstr(mx, "nan"));
    assert_non_null(strstr(l2, "nan"));
    free(out);
    /* mse with one NaN target: finite inputs and outputs, NaN gradients. */
    save_inputs(path_in("xc.npy"), 1);
    const int64_t ts[2] = {N, 10};
    save_labels(path_in("t.npy"), 2, ts, 2 * 10 + 4);
    rc = CLI(&out, "grad", "--model", path_in("m.safetensors"), "--input", path_in("xc.npy"), "--labels",
             path_in("t.npy"), "--loss", "mse", "-o", path_in("g2.safetensors"));
    assert_has(out, "nabla grad: warning: 1 of 5 examples has NaN or Inf (counted from 0): example 2 (input "
                    "finite; labels: 1 NaN; output finite)\n");
    assert_has(out, "nabla grad: warning: non-finite gradients: 0.kernel (");
    assert_null(strstr(out, "overflowed"));
    assert_int_equal(rc, 3);
    grad_row(out, "\n3.bias", mx, l2);
    assert_non_null(strstr(mx, "nan"));
    nb_safetensors *g = NULL;
    assert_int_equal(nb_safetensors_read(path_in("g2.safetensors"), &g), NB_OK);
    assert_true(isnan(nb_safetensors_get(g, "3.bias")->data[4]));
    nb_safetensors_free(g);
    free(out);
    /* Finite logits 3e38 apart: the loss overflows to inf, all else finite. */
    nb_model *m;
    int64_t in[3] = {HW, HW, 1};
    assert_int_equal(nb_model_from_spec("flatten; dense 2", 3, in, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 3), NB_OK);
    nb_tensor *k = nb_value(nb_model_find_param(m, "1.kernel")), *b = nb_value(nb_model_find_param(m, "1.bias"));
    memset(k->data, 0, (size_t)k->size * sizeof(nb_real));
    b->data[0] = 3e38f, b->data[1] = -3e38f;
    assert_int_equal(nb_model_save(m, path_in("far.safetensors")), NB_OK);
    nb_model_free(m);
    const int64_t ones[1] = {N};
    nb_tensor *y1 = nb_tensor_new(1, ones);
    for (int i = 0; i < N; i++) y1->data[i] = 1;
    assert_int_equal(nb_npy_write(path_in("y1.npy"), y1), NB_OK);
    nb_tensor_free(y1);
    rc = CLI(&out, "grad", "--model", path_in("far.safetensors"), "--input", path_in("xc.npy"), "--labels",
             path_in("y1.npy"), "--loss", "cce", "-o", path_in("g4.safetensors"));
    assert_has(out, "loss (cce, mean over 5 examples): inf\n");
    assert_has(out, "nabla grad: warning: the loss is inf\n");
    assert_null(strstr(out, "examples have"));
    assert_int_equal(rc, 3);
    free(out);
    /* Clean: exit 0. */
    rc = CLI(&out, "grad", "--model", path_in("m.safetensors"), "--input", path_in("xc.npy"), "--labels",
             path_in("y.npy"), "--loss", "cce", "-o", path_in("g3.safetensors"));
    assert_int_equal(rc, 0);
    assert_null(strstr(out, "warning"));
    free(out);
}

static int setup(void **state)
{
    (void)state;
    tu_mkdtemp(dir, sizeof dir, "nonfinite");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rm_rf(dir);
    return 0;
}

int main(void)
{
    nb_set_num_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_predict_reports_nonfinite_examples),
        cmocka_unit_test(test_predict_reports_overflow),
        cmocka_unit_test(test_jacobian_reports_nonfinite_examples),
        cmocka_unit_test(test_grad_reports_nonfinite),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
