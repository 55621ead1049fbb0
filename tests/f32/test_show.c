/* nabla show FILE: each format (.npy, IDX raw and gzip, safetensors, a nabla
 * model file, ONNX), an empty tensor, NaN and Inf, integer dtypes, and the
 * errors of a missing, truncated or foreign file (rows I4-I7 of
 * docs/bad-inputs.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "nabla.h"
#include "nb_test_util.h"

static char dir[1024];

/* Runs `nabla show ARGS...`; *out gets stdout and stderr (free it). */
static int show(char **out, const char *file, const char *extra)
{
    const char *args[] = {"show", file, extra, NULL};
    return tu_run_cli(args, out, NULL);
}

static void has(const char *out, const char *want)
{
    if (!strstr(out, want)) fail_msg("expected '%s' in:\n%s", want, out);
}

static void path_in(char *buf, size_t n, const char *name)
{
    tu_fmt(buf, n, "%s/%s", dir, name);
}

/* A .npy of floats with NaN and Inf: shape, dtype, statistics of the finite
 * values, the counts, and the values with the digits that matter (0.4, not
 * 0.400000006). Read back with the library first. */
static void test_npy(void **state)
{
    (void)state;
    char p[1100], *out;
    path_in(p, sizeof p, "a.npy");
    nb_tensor *t = nb_tensor_new(2, (const int64_t[]){2, 3});
    const nb_real v[] = {0.4f, 1.5f, -2, NAN, INFINITY, 3};
    memcpy(t->data, v, sizeof v);
    assert_int_equal(nb_npy_write(p, t), NB_OK);
    nb_tensor *back = NULL;
    assert_int_equal(nb_npy_read(p, &back), NB_OK);
    assert_int_equal(back->size, 6);
    assert_true(isnan(back->data[3]));
    nb_tensor_free(back);
    nb_tensor_free(t);
    assert_int_equal(show(&out, p, NULL), 0);
    has(out, ".npy file\narray  (2, 3)  <f4  6 values\n");
    has(out, "  min -2, max 3, mean 0.725; non-finite: 1 NaN, 1 infinite (of 6)\n");
    has(out, "  [0.4, 1.5, -2]\n  [nan, inf, 3]\n");
    free(out);
    /* --max 5: a tensor of 6 is summarised only. */
    const char *args[] = {"show", p, "--max", "5", NULL};
    assert_int_equal(tu_run_cli(args, &out, NULL), 0);
    assert_null(strstr(out, "[0.4"));
    has(out, "  min -2, max 3");
    free(out);
}

/* An empty tensor (0, 3) and an all-NaN one. */
static void test_empty_and_nan(void **state)
{
    (void)state;
    char p[1100], *out;
    path_in(p, sizeof p, "empty.npy");
    nb_tensor *t = nb_tensor_new(2, (const int64_t[]){0, 3});
    assert_int_equal(nb_npy_write(p, t), NB_OK);
    nb_tensor_free(t);
    assert_int_equal(show(&out, p, NULL), 0);
    has(out, "array  (0, 3)  <f4  0 values\n  empty (no values)\n");
    free(out);
    path_in(p, sizeof p, "nan.npy");
    t = nb_tensor_new(1, (const int64_t[]){2});
    t->data[0] = t->data[1] = NAN;
    assert_int_equal(nb_npy_write(p, t), NB_OK);
    nb_tensor_free(t);
    assert_int_equal(show(&out, p, NULL), 0);
    has(out, "  no finite values; non-finite: 2 NaN, 0 infinite (of 2)\n  [nan, nan]\n");
    free(out);
}

/* IDX, raw and gzip: the u8 dtype, and the same values either way. */
static void test_idx(void **state)
{
    (void)state;
    char p[1100], gz[1100], *out;
    path_in(p, sizeof p, "x-idx1-ubyte");
    const unsigned char data[] = {0, 7, 255, 9};
    assert_int_equal(tu_write_idx_u8(p, 1, (const uint32_t[]){4}, data), 0);
    assert_int_equal(show(&out, p, NULL), 0);
    has(out, ": IDX file\ndata  (4,)  u8  4 values\n  min 0, max 255, mean 67.75\n  [0, 7, 255, 9]\n");
    free(out);
    size_t n = 0;
    char *raw = tu_read(p, &n);
    assert_non_null(raw);
    path_in(gz, sizeof gz, "x-idx1-ubyte.gz");
    gzFile f = gzopen(gz, "wb");
    assert_non_null(f);
    assert_int_equal(gzwrite(f, raw, (unsigned)n), (int)n);
    assert_int_equal(gzclose(f), Z_OK);
    free(raw);
    assert_int_equal(show(&out, gz, NULL), 0);
    has(out, ": IDX (gzip) file\ndata  (4,)  u8  4 values\n  min 0, max 255, mean 67.75\n  [0, 7, 255, 9]\n");
    free(out);
}

/* A safetensors file of two tensors with their dtypes, and a nabla model
 * file (its spec and input, then its parameters by name). */
static void test_safetensors_and_model(void **state)
{
    (void)state;
    char p[1100], *out;
    path_in(p, sizeof p, "w.safetensors");
    nb_safetensors *st = nb_safetensors_new();
    nb_tensor *a = nb_tensor_new(1, (const int64_t[]){3}), *b = nb_tensor_new(2, (const int64_t[]){40, 2});
    a->data[0] = 0.1f, a->data[1] = 0.2f, a->data[2] = 0.3f;
    for (int64_t i = 0; i < b->size; i++)
        b->data[i] = (nb_real)i;
    assert_int_equal(nb_safetensors_add(st, "alpha", a), NB_OK);
    assert_int_equal(nb_safetensors_add(st, "beta", b), NB_OK);
    assert_null(nb_safetensors_dtype(st, 0)); /* added in memory */
    assert_int_equal(nb_safetensors_write(p, st, 0), NB_OK);
    nb_safetensors_free(st);
    nb_tensor_free(a);
    nb_tensor_free(b);
    assert_int_equal(nb_safetensors_read(p, &st), NB_OK);
    assert_int_equal(nb_safetensors_count(st), 2);
    assert_string_equal(nb_safetensors_dtype(st, 0), "F32");
    assert_null(nb_safetensors_dtype(st, 2));
    nb_safetensors_free(st);
    assert_int_equal(show(&out, p, NULL), 0);
    has(out, ": safetensors file, 2 tensors\n");
    has(out, "alpha  (3,)  F32  3 values\n  min 0.1, max 0.3, mean 0.2\n  [0.1, 0.2, 0.3]\n");
    has(out, "beta  (40, 2)  F32  80 values\n  min 0, max 79, mean 39.5\n");
    assert_null(strstr(out, "[0, 1]")); /* 80 values: not printed */
    assert_null(strstr(out, "nabla model"));
    free(out);

    nb_model *m;
    assert_int_equal(nb_model_from_spec("flatten; dense 3 relu; dense 2", 3, (const int64_t[]){2, 2, 1}, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 1), NB_OK);
    path_in(p, sizeof p, "m.safetensors");
    assert_int_equal(nb_model_save(m, p), NB_OK);
    assert_int_equal(show(&out, p, NULL), 0);
    has(out, "nabla model: flatten; dense 3 relu; dense 2\ninput: 2,2,1\n");
    has(out, "1.kernel  (4, 3)  F32  12 values\n");
    has(out, "1.bias  (3,)  F32  3 values\n  min 0, max 0, mean 0\n  [0, 0, 0]\n");
    has(out, "2.kernel  (3, 2)  F32  6 values\n");
    free(out);

    nb_model_free(m);

    /* A model as ONNX: read as a model, its weights shown. */
    assert_int_equal(nb_model_from_spec("dense 3 relu; dense 2", 1, (const int64_t[]){4}, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 1), NB_OK);
    path_in(p, sizeof p, "m.onnx");
    assert_int_equal(nb_onnx_save(m, p, 0), NB_OK);
    assert_int_equal(show(&out, p, NULL), 0);
    has(out, ": ONNX model, 4 weights\nas a nabla model: dense 3 relu; dense 2\ninput: (4,)\n");
    has(out, "0.bias  (3,)  float32  3 values\n  min 0, max 0, mean 0\n");
    char want[200];
    nb_tensor *k = nb_value(nb_model_find_param(m, "1.kernel"));
    char v0[32];
    tu_fmt(want, sizeof want, "1.kernel  (3, 2)  float32  6 values\n  min ");
    has(out, want);
    tu_fmt(want, sizeof want, "  [%s, ", nb_format_real(k->data[0], v0, sizeof v0));
    has(out, want); /* the first value, as the shortest text that reads back */
    free(out);
    nb_model_free(m);
}

/* Rows I4-I7: a missing file, a truncated .npy, a truncated safetensors
 * file, a file that is none of the formats. Each names the file and what is
 * wrong; exit 1. */
static void test_unreadable(void **state)
{
    (void)state;
    char p[1100], want[1400], *out;
    path_in(p, sizeof p, "nosuch.npy");
    assert_int_equal(show(&out, p, NULL), 1);
    tu_fmt(want, sizeof want, "nabla show: '%s': no such file", p);
    has(out, want);
    free(out);

    path_in(p, sizeof p, "trunc.npy");
    nb_tensor *t = nb_tensor_new(2, (const int64_t[]){2, 3});
    assert_int_equal(nb_npy_write(p, t), NB_OK);
    nb_tensor_free(t);
    size_t n = 0;
    char *raw = tu_read(p, &n);
    assert_int_equal(tu_write(p, raw, n - 5), 0);
    free(raw);
    assert_int_equal(show(&out, p, NULL), 1);
    tu_fmt(want, sizeof want,
           "nabla show: %s: header says shape (2, 3) of <f4 = 24 bytes, but the file holds 19 "
           "bytes of data",
           p);
    has(out, want);
    free(out);

    path_in(p, sizeof p, "trunc.safetensors");
    const char json[] = "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
    unsigned char st[128] = {(unsigned char)(sizeof json - 1)}; /* the 8-byte length, then the header */
    memcpy(st + 8, json, sizeof json - 1);
    st[8 + sizeof json - 1] = 1, st[8 + sizeof json] = 2; /* 2 of the 16 data bytes */
    assert_int_equal(tu_write(p, st, 8 + sizeof json - 1 + 2), 0);
    assert_int_equal(show(&out, p, NULL), 1);
    tu_fmt(want, sizeof want,
           "nabla show: %s: header: tensor 'w': field 'data_offsets': end 16 is past the end of "
           "the data (2 bytes)",
           p);
    has(out, want);
    free(out);

    path_in(p, sizeof p, "notes.txt");
    assert_int_equal(tu_write(p, "hello, world\n", 13), 0);
    assert_int_equal(show(&out, p, NULL), 1);
    tu_fmt(want, sizeof want,
           "nabla show: '%s': not a .npy, IDX (raw or .gz), safetensors or ONNX file (by its "
           "first bytes and its name); show reads those",
           p);
    has(out, want);
    free(out);

    /* Usage: no file at all (exit 2). */
    const char *none[] = {"show", NULL};
    assert_int_equal(tu_run_cli(none, &out, NULL), 2);
    has(out, "nabla show: --file is required\n(see 'nabla show --help')");
    free(out);
}

/* The shared formatter: the fewest digits that read back (as the float
 * nabla stores, or as a double), and the special values. */
static void test_format(void **state)
{
    (void)state;
    char b[32];
    assert_string_equal(nb_format_real(0.4f, b, sizeof b), "0.4");
    assert_string_equal(nb_format_double(0.4f, b, sizeof b), "0.4000000059604645");
    assert_string_equal(nb_format_double(0.1 + 0.2, b, sizeof b), "0.30000000000000004");
    assert_string_equal(nb_format_double(0.6, b, sizeof b), "0.6");
    assert_string_equal(nb_format_real(1e30f, b, sizeof b), "1e+30");
    assert_string_equal(nb_format_real(-3, b, sizeof b), "-3");
    assert_string_equal(nb_format_real(0, b, sizeof b), "0");
    assert_string_equal(nb_format_real(NAN, b, sizeof b), "nan");
    assert_string_equal(nb_format_real(-NAN, b, sizeof b), "nan");
    assert_string_equal(nb_format_real(-INFINITY, b, sizeof b), "-inf");
    assert_string_equal(nb_format_double(INFINITY, b, sizeof b), "inf");
    assert_true(strtof(nb_format_real(1.0f / 3, b, sizeof b), NULL) == 1.0f / 3);
    assert_string_equal(b, "0.33333334");
    b[0] = 'x';
    assert_ptr_equal(nb_format_real(1, b, 0), b); /* n = 0: nothing written */
    assert_int_equal(b[0], 'x');
}

int main(void)
{
    tu_mkdtemp(dir, sizeof dir, "show");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_npy),
        cmocka_unit_test(test_empty_and_nan),
        cmocka_unit_test(test_idx),
        cmocka_unit_test(test_safetensors_and_model),
        cmocka_unit_test(test_unreadable),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tu_rm_rf(dir);
    return rc;
}
