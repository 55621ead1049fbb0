/* The table of bad inputs (docs/bad-inputs.md): every row is one test here,
 * asserting the exact message nabla answers (from the library's
 * nb_last_error(), or the CLI's stderr) and that nothing is lost or
 * written where it should not be. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "f32/nb_test_util.h"

static char dir[1024];  /* a temporary directory for the whole program */
static char data[1100]; /* a small valid IDX data set (8x8 images, 10 classes) */

static const char *path_in(const char *name)
{
    return tu_path_in(dir, name);
}

static void put(const char *name, const void *bytes, size_t n)
{
    assert_int_equal(tu_write(path_in(name), bytes, n), 0);
}

static void le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* A safetensors file from a header string and n zero bytes of data. */
static void put_st(const char *name, const char *json, size_t n)
{
    size_t h = strlen(json), total = 8 + h + n;
    unsigned char *b = calloc(1, total);
    le64(b, h);
    memcpy(b + 8, json, h);
    put(name, b, total);
    free(b);
}

/* A .npy v1 file with the given dict and n zero bytes of data. */
static void put_npy(const char *name, const char *magic, const char *dict, size_t n)
{
    char hdr[128];
    memset(hdr, ' ', sizeof hdr);
    size_t d = strlen(dict);
    memcpy(hdr, dict, d);
    hdr[117] = '\n'; /* 10 + 118 = 128 bytes before the data */
    size_t total = 10 + 118 + n;
    unsigned char *b = calloc(1, total);
    memcpy(b, magic, 6);
    b[6] = 1, b[7] = 0, b[8] = 118, b[9] = 0;
    memcpy(b + 10, hdr, 118);
    put(name, b, total);
    free(b);
}

static nb_status read_tensor(const char *name, nb_tensor **t)
{
    const char *p = path_in(name);
    size_t n = strlen(p);
    if (n > 4 && !strcmp(p + n - 4, ".npy")) return nb_npy_read(p, t);
    if (n > 4 && !strcmp(p + n - 4, ".csv")) return nb_csv_read(p, 1, t, NULL);
    return nb_idx_read(p, t);
}

/* Reading name fails with FORMAT, nothing is returned, and the message
 * starts with the path and contains want. */
static void expect_read_error(const char *name, const char *want)
{
    nb_tensor *t = (nb_tensor *)1;
    assert_int_equal(read_tensor(name, &t), NB_ERR_FORMAT);
    assert_null(t);
    assert_has(nb_last_error(), path_in(name));
    assert_has(nb_last_error(), want);
}

static void expect_st_error(const char *name, const char *want)
{
    nb_safetensors *st = (nb_safetensors *)1;
    assert_int_equal(nb_safetensors_read(path_in(name), &st), NB_ERR_FORMAT);
    assert_null(st);
    assert_has(nb_last_error(), want);
}

/* ------------------------------------------------------------ wrong magic */

static void test_wrong_magic(void **state)
{
    (void)state;
    unsigned char idx[11] = {0x01, 0x02, 0x08, 0x01, 0, 0, 0, 3, 'a', 'b', 'c'};
    put("magic.idx", idx, sizeof idx);
    expect_read_error("magic.idx", "magic.idx: magic: bytes 01 02 are not 00 00: not an IDX file");
    put_npy("magic.npy", "\x93NUMPX", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 24);
    expect_read_error("magic.npy", "magic.npy: magic: not a .npy file (it does not start with \\x93NUMPY)");
}

/* --------------------------------------------------------- truncated file */

static void test_truncated(void **state)
{
    (void)state;
    unsigned char idx[8 + 4 + 4] = {0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 'a', 'b', 'c', 'd'};
    put("trunc.idx", idx, sizeof idx);
    expect_read_error("trunc.idx",
                      "trunc.idx: dims: header says shape (2, 3) of 1-byte elements = 6 bytes, but the file holds 4 "
                      "bytes of data");
    put_npy("trunc.npy", "\x93NUMPY", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 19);
    expect_read_error("trunc.npy", "trunc.npy: header says shape (2, 3) of <f4 = 24 bytes, but the file holds 19 "
                                   "bytes of data");
    /* safetensors cut in the data, and cut in the 8-byte length */
    put_st("trunc.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 10);
    expect_st_error("trunc.safetensors", "trunc.safetensors: header: tensor 'w': field 'data_offsets': end 16 is "
                                         "past the end of the data (10 bytes)");
    put("short.safetensors", "\x10\x00\x00", 3);
    expect_st_error("short.safetensors",
                    "short.safetensors: header length: the file holds 3 bytes, fewer than the 8 of the length");
}

/* --------------------------------------------- shape/offset mismatch, sizes */

static void test_shape_offset_mismatch(void **state)
{
    (void)state;
    put_st("mismatch.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24);
    expect_st_error("mismatch.safetensors", "mismatch.safetensors: header: tensor 'w': shape (2, 3) of F32 = 24 "
                                            "bytes, but data_offsets [0, 20] span 20 bytes");
    put_st("overlap.safetensors",
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
           12);
    expect_st_error("overlap.safetensors", "overlap.safetensors: header: tensors 'a' [0, 8] and 'b' [4, 12] overlap");
}

/* A header claiming 2^40 elements is refused before any allocation. */
static void test_huge_claims(void **state)
{
    (void)state;
    unsigned char idx[13] = {0, 0, 0x08, 3, 0, 1, 0, 0, 0, 1, 0, 0, 'x'};
    idx[3] = 2;
    put("huge.idx", idx, 4 + 8 + 1);
    expect_read_error("huge.idx", "huge.idx: dims: header says shape (65536, 65536) of 1-byte elements = 4294967296 "
                                  "bytes, but the file holds 1 bytes of data");
    put_npy("huge.npy", "\x93NUMPY", "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }", 8);
    expect_read_error("huge.npy", "huge.npy: header says shape (1099511627776,) of <f4 = 4398046511104 bytes, but "
                                  "the file holds 8 bytes of data");
    put_st("huge.safetensors",
           "{\"w\":{\"dtype\":\"F32\",\"shape\":[1048576,1048576],\"data_offsets\":[0,4398046511104]}}", 8);
    expect_st_error("huge.safetensors", "huge.safetensors: header: tensor 'w': field 'data_offsets': end "
                                        "4398046511104 is past the end of the data (8 bytes)");
    unsigned char hl[10] = {0, 0, 0, 0, 0, 1, 0, 0, '{', '}'}; /* header length 2^40 */
    put("hlen.safetensors", hl, sizeof hl);
    expect_st_error("hlen.safetensors",
                    "hlen.safetensors: header length: 1099511627776 bytes is more than the limit of 100000000");
}

/* Shapes with a zero dimension: size 0 wherever the zero stands, provided
 * the other dimensions' product fits (NumPy's rule), so that any partial
 * product a caller forms fits too; otherwise refused whatever the order.
 * Before, (0, 2^40, 2^40) was size 0 and (2^40, 2^40, 0) refused, and a
 * graph input of the first overflowed in flatten and mean. */
static void test_zero_dim_shapes(void **state)
{
    (void)state;
    const int64_t T20 = (int64_t)1 << 20, T40 = (int64_t)1 << 40;
    const int64_t fits[3][3] = {{T20, T20, 0}, {0, T20, T20}, {T20, 0, T20}};
    const int64_t huge[3][3] = {{T40, T40, 0}, {0, T40, T40}, {T40, 0, T40}};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(nb_shape_size(3, fits[i]), 0);
        assert_int_equal(nb_shape_size(3, huge[i]), -1);
    }
    const int64_t over[2] = {T40, T40}, neg_then_zero[3] = {T40, -1, 0}, zero_then_neg[3] = {0, 5, -1};
    assert_int_equal(nb_shape_size(2, over), -1);
    assert_int_equal(nb_shape_size(3, neg_then_zero), -1);
    assert_int_equal(nb_shape_size(3, zero_then_neg), -1);
    const int64_t most[3] = {INT64_MAX, 1, 0}, just_over[3] = {0, INT64_MAX / 2 + 1, 2}, six[2] = {2, 3};
    assert_int_equal(nb_shape_size(3, most), 0);
    assert_int_equal(nb_shape_size(3, just_over), -1);
    assert_int_equal(nb_shape_size(2, six), 6);
    assert_int_equal(nb_shape_size(0, NULL), 1);

    /* callers: an empty tensor has a buffer of size 0; a huge one is refused */
    nb_tensor *t = nb_tensor_new(3, fits[0]);
    assert_non_null(t);
    assert_int_equal(t->size, 0);
    assert_int_equal(t->shape[0], T20);
    assert_non_null(t->data);
    nb_tensor_free(t);
    assert_null(nb_tensor_new(3, huge[1]));
    assert_has(nb_last_error(), "tensor: shape has a negative dimension or overflows");
    /* a graph input of such a shape is refused up front: flatten and mean
     * of it overflowed an int64_t before */
    nb_graph *g = nb_graph_new();
    assert_non_null(g);
    assert_null(nb_input(g, "x", 3, huge[1]));
    assert_has(nb_last_error(), "x: invalid shape (rank 3)");
    nb_node *x = nb_input(g, "y", 3, fits[1]);
    assert_non_null(x);
    int axes[2] = {1, 2};
    nb_node *f = nb_flatten(x), *m = nb_mean(x, 2, axes, 0);
    assert_non_null(f);
    assert_non_null(m);
    assert_int_equal(nb_forward(g), NB_OK);
    assert_int_equal(nb_value(f)->rank, 2);
    assert_int_equal(nb_value(f)->shape[1], T40);
    assert_int_equal(nb_value(f)->size, 0);
    nb_graph_free(g);

    /* .npy files: an empty array reads as one; one whose other dimensions
     * overflow is refused like any other too-large claim */
    put_npy("empty.npy", "\x93NUMPY", "{'descr': '<f4', 'fortran_order': False, 'shape': (1048576, 1048576, 0), }",
            0);
    t = NULL;
    assert_int_equal(read_tensor("empty.npy", &t), NB_OK);
    assert_non_null(t);
    assert_int_equal(t->rank, 3);
    assert_int_equal(t->size, 0);
    nb_tensor_free(t);
    put_npy("hugeempty.npy", "\x93NUMPY",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 1099511627776, 1099511627776), }", 0);
    expect_read_error("hugeempty.npy", "hugeempty.npy: header: shape (0, 1099511627776, 1099511627776) of <f4 has "
                                       "too many elements");
}

/* Nesting is bounded before cJSON sees the header. */
static void test_deep_json(void **state)
{
    (void)state;
    char *json = malloc(4001);
    memset(json, '[', 2000);
    memset(json + 2000, ']', 2000);
    json[4000] = '\0';
    put_st("deep.safetensors", json, 0);
    free(json);
    expect_st_error("deep.safetensors", "deep.safetensors: header: JSON nested deeper than 16 levels at byte 16");
}

/* ---------------------------------------------------------- unknown dtype */

static void test_unknown_dtype(void **state)
{
    (void)state;
    put_st("dtype.safetensors", "{\"w\":{\"dtype\":\"F8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2);
    expect_st_error("dtype.safetensors", "dtype.safetensors: header: tensor 'w': field 'dtype': 'F8' is not "
                                         "supported (F64 F32 F16 BF16 I64 I32 I16 I8 U64 U32 U16 U8 BOOL are)");
    put_npy("dtype.npy", "\x93NUMPY", "{'descr': '<c8', 'fortran_order': False, 'shape': (2, 3), }", 48);
    expect_read_error("dtype.npy", "dtype.npy: header: field 'descr': dtype '<c8' is not supported (supported: <f2 "
                                   "<f4 <f8 |u1 <u2 <u4 <u8 |i1 <i2 <i4 <i8 |b1, or '>' for big-endian)");
    unsigned char idx[9] = {0, 0, 0x0A, 1, 0, 0, 0, 1, 7};
    put("dtype.idx", idx, sizeof idx);
    expect_read_error("dtype.idx", "dtype.idx: type: 0x0a is not an IDX type (0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, "
                                   "0x0D f32, 0x0E f64)");
}

/* ------------------------------------------------------------- CSV errors */

static void test_bad_csv(void **state)
{
    (void)state;
    const char ragged[] = "a,b,label\n1,2,0\n3,4\n";
    put("ragged.csv", ragged, sizeof ragged - 1);
    expect_read_error("ragged.csv", "ragged.csv: line 3 has 2 fields, expected 3");
    const char word[] = "a,b,label\n1,two,0\n";
    put("word.csv", word, sizeof word - 1);
    nb_tensor *t = NULL;
    assert_int_equal(read_tensor("word.csv", &t), NB_ERR_FORMAT);
    assert_has(nb_last_error(), "word.csv: line 2, column 2: 'two' is not a number");
}

/* ------------------------------------------------------- CLI-level inputs */

static int cli(char **out, const tu_run_opts *o, ...)
{
    const char *args[48];
    int n = 0;
    va_list ap;
    va_start(ap, o);
    for (const char *a; n < 47 && (a = va_arg(ap, const char *));) args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    return tu_run_cli(args, out, o);
}
#define CLI(out, ...) cli(out, NULL, __VA_ARGS__, (const char *)NULL)

static void test_labels_out_of_range(void **state)
{
    (void)state;
    char d[1100], *out;
    tu_fmt(d, sizeof d, "%s/badlabels", dir);
    mkdir(d, 0755);
    tu_write_dataset(d, "train", 64, 64, 8, 8, 10, 5); /* labels 5..14 */
    int rc = CLI(&out, "train", "--data", d, "--model", "flatten; dense 10", "--val-split", "0", "--out",
                 path_in("labels.safetensors"), "--no-test");
    assert_int_equal(rc, 1);
    assert_has(out, "nabla train: training data: example 5 has label 10, not a class index 0..9 (10 classes)");
    assert_int_equal(access(path_in("labels.safetensors"), F_OK), -1);
    free(out);
}

static void test_count_mismatch(void **state)
{
    (void)state;
    char d[1100], *out;
    tu_fmt(d, sizeof d, "%s/counts", dir);
    mkdir(d, 0755);
    tu_write_dataset(d, "train", 64, 60, 8, 8, 10, 0);
    int rc = CLI(&out, "train", "--data", d, "--model", "flatten; dense 10", "--no-test");
    assert_int_equal(rc, 1);
    char want[3000];
    tu_fmt(want, sizeof want,
             "nabla train: loading the training data: data: 64 images in '%s/train-images-idx3-ubyte' but 60 labels "
             "in '%s/train-labels-idx1-ubyte'",
             d, d);
    assert_has(out, want);
    free(out);
}

static void test_spec_does_not_fit(void **state)
{
    (void)state;
    char *out;
    int rc = CLI(&out, "train", "--data", data, "--model", "conv2d 4 30; flatten; dense 10", "--no-test");
    assert_int_equal(rc, 1);
    assert_has(out, "nabla train: building the model: layer 0 (conv2d 4 30) on input (1, 8, 8, 1): conv2d: kernel "
                    "30x30 larger than input 8x8 (padding 'valid')");
    free(out);
    nb_model *m = (nb_model *)1;
    int64_t in[3] = {28, 28, 1};
    assert_int_equal(nb_model_from_spec("flatten; conv2d 4 3", 3, in, &m), NB_ERR_SHAPE);
    assert_null(m);
    assert_has(nb_last_error(), "layer 1 (conv2d 4 3): conv2d needs an image input (N, H, W, C), got (1, 784)");
}

static void test_bad_learning_rate(void **state)
{
    (void)state;
    const char *bad[] = {"0", "-1", "nan", "inf", "-0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out, want[128];
        int rc = CLI(&out, "train", "--data", data, "--model", "flatten; dense 10", "--lr", bad[i], "--out",
                     path_in("lr.safetensors"));
        assert_int_equal(rc, 2);
        tu_fmt(want, sizeof want, "nabla train: --lr must be a positive finite number, got '%s'", bad[i]);
        assert_has(out, want);
        free(out);
    }
    assert_int_equal(access(path_in("lr.safetensors"), F_OK), -1);
    /* the library refuses it too */
    nb_model *m;
    int64_t in[1] = {4};
    assert_int_equal(nb_model_from_spec("dense 2", 1, in, &m), NB_OK);
    nb_optim *o = (nb_optim *)1;
    nb_optim_opts oo = {.kind = NB_OPT_SGD, .lr = NAN};
    assert_int_equal(nb_optim_new(m, &oo, &o), NB_ERR_ARG);
    assert_has(nb_last_error(), "optimizer: the learning rate must be a positive number, got nan (try 1e-3)");
    nb_model_free(m);
}

static void test_batch_zero(void **state)
{
    (void)state;
    char *out;
    int rc = CLI(&out, "train", "--data", data, "--model", "flatten; dense 10", "--batch", "0");
    assert_int_equal(rc, 2);
    assert_has(out, "nabla train: --batch must be an integer from 1 to 1048576, got '0'");
    free(out);
}

static void test_input_dim_over_limit(void **state)
{
    (void)state;
    char *out;
    int rc = CLI(&out, "summary", "--model", "dense 10", "--input", "16777217");
    assert_int_equal(rc, 1);
    assert_has(out, "nabla summary: building the model: shape '16777217': dimension 16777217 is larger than the "
                    "limit of 16777216 (2^24)");
    free(out);
    /* the library: the limit itself is accepted, one past it (or past
     * long long) names the limit, zero or a word still asks for positive
     * integers */
    int rank = 0;
    int64_t shape[NB_MAX_RANK];
    assert_int_equal(nb_shape_parse("16777216,1", &rank, shape), NB_OK);
    assert_int_equal(rank, 2);
    assert_int_equal(shape[0], 16777216);
    assert_int_equal(nb_shape_parse("28,99999999999999999999999", &rank, shape), NB_ERR_FORMAT);
    assert_has(nb_last_error(), "shape '28,99999999999999999999999': dimension 99999999999999999999999 is larger "
                                "than the limit of 16777216 (2^24)");
    assert_int_equal(nb_shape_parse("28,0", &rank, shape), NB_ERR_FORMAT);
    assert_has(nb_last_error(), "shape '28,0': expected positive integers separated by commas, e.g. 28,28,1");
    assert_int_equal(nb_shape_parse("-3", &rank, shape), NB_ERR_FORMAT);
    assert_has(nb_last_error(), "shape '-3': expected positive integers separated by commas, e.g. 28,28,1");
}

static void test_output_in_missing_dir(void **state)
{
    (void)state;
    char *out;
    const char *o = path_in("no/such/dir/m.safetensors");
    int rc = CLI(&out, "train", "--data", data, "--model", "flatten; dense 10", "--out", o, "--quiet");
    assert_int_equal(rc, 1);
    /* Refused before any training, not at the first checkpoint. */
    char want[3400];
    tu_fmt(want, sizeof want, "nabla train: --out '%s': the directory '%s' does not exist (create it first)", o,
           path_in("no/such/dir"));
    assert_has(out, want);
    free(out);
}

static void test_output_in_readonly_dir(void **state)
{
    (void)state;
    char ro[1100], o[1200], *out;
    tu_fmt(ro, sizeof ro, "%s/readonly", dir);
    mkdir(ro, 0755);
    tu_fmt(o, sizeof o, "%s/m.safetensors", ro);
    chmod(ro, 0555);
    tu_run_opts opts = {.drop_root = 1}; /* root may write anywhere */
    int rc = cli(&out, &opts, "train", "--data", data, "--model", "flatten; dense 10", "--out", o, "--quiet",
                 (const char *)NULL);
    assert_int_equal(rc, 1);
    char want[3400];
    tu_fmt(want, sizeof want, "nabla train: --out '%s': the directory '%s' is not writable", o, ro);
    assert_has(out, want);
    free(out);
    assert_int_equal(access(o, F_OK), -1);
    chmod(ro, 0755);
}

/* A full disk while writing a checkpoint: RLIMIT_FSIZE below the file's
 * size makes write() fail with EFBIG, as ENOSPC would. The previous
 * checkpoint survives byte for byte and no temporary file is left. */
static void test_full_disk_during_checkpoint(void **state)
{
    (void)state;
    char *out;
    const char *ck = path_in("full/ck.safetensors");
    mkdir(path_in("full"), 0755);
    int rc = CLI(&out, "train", "--data", data, "--model", "flatten; dense 10", "--out", ck, "--quiet", "--no-test");
    assert_int_equal(rc, 0);
    free(out);
    size_t n0;
    char *before = tu_read(ck, &n0);
    assert_non_null(before);
    tu_run_opts lim = {.fsize_limit = 1024};
    rc = cli(&out, &lim, "train", "--data", data, "--model", "flatten; dense 10", "--out", ck, "--quiet",
             "--no-test", "--resume", "--epochs", "3", (const char *)NULL);
    assert_int_equal(rc, 1);
    char want[3400];
    tu_fmt(want, sizeof want, "nabla train: writing the checkpoint: cannot write '%s': File too large", ck);
    assert_has(out, want);
    free(out);
    size_t n1;
    char *after = tu_read(ck, &n1);
    assert_non_null(after);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    nb_model *m = NULL;
    assert_int_equal(nb_model_load(ck, &m), NB_OK);
    nb_model_free(m);
    char cmd[1400];
    tu_fmt(cmd, sizeof cmd, "ls '%s' | grep -c tmp", path_in("full"));
    FILE *p = popen(cmd, "r");
    int tmps = -1;
    assert_int_equal(fscanf(p, "%d", &tmps), 1);
    pclose(p);
    assert_int_equal(tmps, 0);
    free(before);
    free(after);
}

/* ------------------------------------------ model files that do not fit */

/* A model file for inputs of shape (4): spec with Glorot weights (seed 3). */
static void save_small(const char *file, const char *spec)
{
    nb_model *m;
    int64_t in[1] = {4};
    assert_int_equal(nb_model_from_spec(spec, 1, in, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 3), NB_OK);
    assert_int_equal(nb_model_save(m, file), NB_OK);
    nb_model_free(m);
}

/* Rewrites a model file with its nabla.spec replaced by spec (when not
 * NULL) and a tensor of shape (2) named extra added (when not NULL). */
static void edit_model_file(const char *file, const char *spec, const char *extra)
{
    nb_safetensors *st;
    assert_int_equal(nb_safetensors_read(file, &st), NB_OK);
    if (spec) assert_int_equal(nb_safetensors_set_meta(st, "nabla.spec", spec), NB_OK);
    if (extra) {
        int64_t s[1] = {2};
        nb_tensor *t = nb_tensor_new(1, s);
        assert_int_equal(nb_safetensors_add(st, extra, t), NB_OK);
        nb_tensor_free(t);
    }
    assert_int_equal(nb_safetensors_write(file, st, 0), NB_OK);
    nb_safetensors_free(st);
}

/* An input file x.npy of shape (n, dims...) filled with 0.25. */
static const char *put_x(const char *name, int rank, const int64_t *shape)
{
    nb_tensor *x = nb_tensor_new(rank, shape);
    for (int64_t i = 0; i < x->size; i++) x->data[i] = 0.25f;
    assert_int_equal(nb_npy_write(path_in(name), x), NB_OK);
    nb_tensor_free(x);
    return path_in(name);
}

/* Loading file fails with status (library and the CLI's predict and
 * summary, exit 1), the message says want, and predict writes nothing. */
static void expect_model_refused(const char *file_, nb_status status, const char *want)
{
    char file[1200];
    tu_fmt(file, sizeof file, "%s", file_);
    nb_model *m = (nb_model *)1;
    assert_int_equal(nb_model_load(file, &m), status);
    assert_null(m);
    char full[1400];
    tu_fmt(full, sizeof full, "'%s': %s", file, want);
    assert_has(nb_last_error(), full);
    char *out;
    const int64_t xs[2] = {2, 4};
    const char *x = put_x("x4.npy", 2, xs), *p = path_in("refused-p.npy");
    int rc = CLI(&out, "predict", "--model", file, "--input", x, "-o", p);
    assert_int_equal(rc, 1);
    assert_has(out, "nabla predict: loading the model: ");
    assert_has(out, full);
    assert_int_equal(access(p, F_OK), -1);
    free(out);
    rc = CLI(&out, "summary", "--model", file);
    assert_int_equal(rc, 1);
    assert_has(out, "nabla summary: building the model: ");
    assert_has(out, full);
    free(out);
}

/* The tensors are those of 'dense 8 relu; dense 3', nabla.spec was changed
 * (the message used to be formatted from the freed model). */
static void test_model_file_spec_mismatch(void **state)
{
    (void)state;
    char f[1200];
    tu_fmt(f, sizeof f, "%s", path_in("respec.safetensors")); /* path_in's buffers rotate */
    save_small(f, "dense 8 relu; dense 3");
    edit_model_file(f, "dense 8 relu; dense 4", NULL);
    expect_model_refused(f, NB_ERR_FORMAT,
                         "model file: '1.kernel' has shape (8, 3), but nabla.spec (layer 1, dense 4) needs (8, 4): "
                         "the weights and the spec do not belong together");
    save_small(f, "dense 8 relu; dense 3");
    edit_model_file(f, "dense 8 relu; dense 3; dense 2", NULL);
    expect_model_refused(f, NB_ERR_FORMAT,
                         "model file: nabla.spec (layer 2, dense 2) needs '2.kernel' of shape (3, 2), the file has no "
                         "such tensor: the weights and the spec do not belong together");
}

/* A tensor that is no parameter of the spec is refused, by name; optimiser
 * state ("optim.*", in checkpoints) is not. */
static void test_model_file_extra_tensor(void **state)
{
    (void)state;
    char f[1200];
    tu_fmt(f, sizeof f, "%s", path_in("extra.safetensors")); /* path_in's buffers rotate */
    save_small(f, "dense 8 relu; dense 3");
    edit_model_file(f, NULL, "9.kernel");
    expect_model_refused(f, NB_ERR_FORMAT,
                         "model file: tensor '9.kernel' is not a parameter of nabla.spec (2 layers, parameters "
                         "0.kernel to 1.bias): the weights and the spec do not belong together");
    edit_model_file(f, NULL, "foo");
    expect_model_refused(f, NB_ERR_FORMAT,
                         "model file: tensor '9.kernel' (and 1 more) is not a parameter of nabla.spec (2 layers, "
                         "parameters 0.kernel to 1.bias): the weights and the spec do not belong together");
    save_small(f, "dense 8 relu; dense 3");
    edit_model_file(f, NULL, "foo");
    expect_model_refused(f, NB_ERR_FORMAT,
                         "model file: tensor 'foo' is not a parameter of nabla.spec (2 layers, parameters 0.kernel "
                         "to 1.bias): the weights and the spec do not belong together");
    save_small(f, "flatten");
    edit_model_file(f, NULL, "0.kernel");
    expect_model_refused(f, NB_ERR_FORMAT,
                         "model file: tensor '0.kernel' is not a parameter of nabla.spec (1 layer, no parameters): "
                         "the weights and the spec do not belong together");
    save_small(f, "dense 8 relu; dense 3");
    edit_model_file(f, NULL, "optim.0.kernel.m");
    nb_model *m = NULL;
    assert_int_equal(nb_model_load(f, &m), NB_OK);
    assert_non_null(m);
    nb_model_free(m);
}

/* Weights holding NaN or Inf are refused with the tensor and the counts,
 * unless asked for (--allow-nonfinite), e.g. to look at a diverged model. */
static void test_model_file_nonfinite(void **state)
{
    (void)state;
    char f[1200];
    tu_fmt(f, sizeof f, "%s", path_in("nonfinite.safetensors")); /* path_in's buffers rotate */
    save_small(f, "dense 8 relu; dense 3");
    nb_model *m;
    assert_int_equal(nb_model_load(f, &m), NB_OK);
    nb_tensor *k = nb_value(nb_model_find_param(m, "1.kernel"));
    k->data[0] = NAN, k->data[5] = INFINITY, k->data[7] = -INFINITY;
    assert_int_equal(nb_model_save(m, f), NB_OK);
    nb_model_free(m);
    expect_model_refused(f, NB_ERR_NUMERIC,
                         "model file: '1.kernel' holds 3 non-finite values (1 NaN, 2 infinite) of its 24: the model "
                         "would compute NaN; retrain it (e.g. with a smaller learning rate) or use an earlier "
                         "checkpoint");
    /* the library's flag */
    assert_int_equal(nb_model_load_flags(f, NB_LOAD_ALLOW_NONFINITE, &m), NB_OK);
    k = nb_value(nb_model_find_param(m, "1.kernel"));
    assert_true(isnan(k->data[0]) && isinf(k->data[5]) && k->data[7] < 0);
    nb_model_free(m);
    assert_int_equal(nb_model_load_flags(f, 2, &m), NB_ERR_ARG);
    assert_null(m);
    char *out;
    const int64_t xs[2] = {2, 4};
    const char *x = put_x("x4.npy", 2, xs), *p = path_in("nonfinite-p.npy");
    int rc = CLI(&out, "predict", "--model", f, "--input", x, "-o", p);
    assert_has(out, "; to load it anyway (to inspect it), pass --allow-nonfinite");
    free(out);
    rc = CLI(&out, "predict", "--model", f, "--input", x, "-o", p, "--allow-nonfinite");
    /* written, and the NaN outputs named (exit 3, test_cli_nonfinite.c) */
    assert_int_equal(rc, 3);
    assert_has(out, "examples have NaN or Inf");
    free(out);
    nb_tensor *y = NULL;
    assert_int_equal(nb_npy_read(p, &y), NB_OK);
    assert_int_equal(y->size, 6);
    nb_tensor_free(y);
    rc = CLI(&out, "summary", "--model", f, "--allow-nonfinite");
    assert_int_equal(rc, 0);
    assert_has(out, "Total params: 67");
    free(out);
    rc = CLI(&out, "summary", "--model", f);
    assert_has(out, "nabla summary: building the model: ");
    assert_has(out, "; to load it anyway (to inspect it), pass --allow-nonfinite to nabla summary, predict or train");
    free(out);
    /* Checked after the structure: a NaN in a tensor the spec has no place
     * for is reported as that. */
    edit_model_file(f, "dense 8 relu; dense 3; dense 2", NULL);
    expect_model_refused(f, NB_ERR_FORMAT, "model file: nabla.spec (layer 2, dense 2) needs '2.kernel'");
}

/* ---------------------------------------------------- non-finite numbers */

/* A model file for 8x8 inputs whose parameter `param` gets value v at
 * element 0 (or everywhere when all). */
static void save_model(const char *file, const char *spec, const char *param, float v, int all)
{
    nb_model *m;
    int64_t in[3] = {8, 8, 1};
    assert_int_equal(nb_model_from_spec(spec, 3, in, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 3), NB_OK);
    nb_tensor *t = nb_value(nb_model_find_param(m, param));
    assert_non_null(t);
    for (int64_t i = 0; i < (all ? t->size : 1); i++) t->data[i] = v;
    assert_int_equal(nb_model_save(m, file), NB_OK);
    nb_model_free(m);
}

static void test_nan_in_weights(void **state)
{
    (void)state;
    char *out;
    const char *f = path_in("nanw.safetensors");
    save_model(f, "conv2d 2 3 relu; flatten; dense 10", "2.kernel", NAN, 0);
    /* refused when loaded, unless --allow-nonfinite */
    int rc = CLI(&out, "train", "--data", data, "--model", f, "--out", path_in("nanw-out.safetensors"), "--quiet");
    assert_int_equal(rc, 1);
    assert_has(out, "model file: '2.kernel' holds 1 non-finite value (1 NaN, 0 infinite) of its 720");
    free(out);
    rc = CLI(&out, "train", "--data", data, "--model", f, "--out", path_in("nanw-out.safetensors"), "--quiet",
             "--check-numerics", "--allow-nonfinite");
    assert_int_equal(rc, 1);
    assert_has(out, "nabla train: check_numerics: value of node '2.kernel' (op param) element 0 is NaN");
    free(out);
    /* without the guard, the loss says so at the first step */
    rc = CLI(&out, "train", "--data", data, "--model", f, "--out", path_in("nanw-out.safetensors"), "--quiet",
             "--allow-nonfinite");
    assert_int_equal(rc, 1);
    assert_has(out, "nabla train: training diverged: the loss is NaN at step 1 (epoch 1, batch 1); try a smaller "
                    "learning rate than 0.001");
    free(out);
    assert_int_equal(access(path_in("nanw-out.safetensors"), F_OK), -1);
    /* --resume of a checkpoint whose weights went NaN */
    char ck[1200];
    tu_fmt(ck, sizeof ck, "%s", path_in("nanw-ck.safetensors"));
    rc = CLI(&out, "train", "--data", data, "--model", "flatten; dense 10", "--out", ck, "--quiet", "--no-test");
    assert_int_equal(rc, 0);
    free(out);
    nb_safetensors *st;
    assert_int_equal(nb_safetensors_read(ck, &st), NB_OK);
    nb_tensor *k = nb_tensor_clone(nb_safetensors_get(st, "1.kernel"));
    k->data[3] = NAN;
    assert_int_equal(nb_safetensors_add(st, "1.kernel", k), NB_OK);
    assert_int_equal(nb_safetensors_write(ck, st, 0), NB_OK);
    nb_tensor_free(k);
    nb_safetensors_free(st);
    rc = CLI(&out, "train", "--data", data, "--model", "flatten; dense 10", "--out", ck, "--quiet", "--no-test",
             "--resume", "--epochs", "2");
    assert_int_equal(rc, 1);
    assert_has(out, "nabla train: --resume: reading the checkpoint: model file: '1.kernel' holds 1 non-finite value "
                    "(1 NaN, 0 infinite) of its 640: ");
    assert_has(out, "; to load it anyway (to inspect it), pass --allow-nonfinite to nabla summary, predict or train");
    free(out);
    rc = CLI(&out, "train", "--data", data, "--model", "flatten; dense 10", "--out", ck, "--quiet", "--no-test",
             "--resume", "--epochs", "2", "--allow-nonfinite", "--check-numerics");
    assert_int_equal(rc, 1);
    assert_has(out, "nabla train: check_numerics: value of node '1.kernel' (op param) element 3 is NaN");
    free(out);
}

/* Finite weights whose products overflow: the guard names the first op
 * and its layer in the forward pass. */
static void test_overflow_forward(void **state)
{
    (void)state;
    char *out;
    const char *f = path_in("big.safetensors");
    save_model(f, "conv2d 2 3 relu; flatten; dense 10", "0.kernel", 3e38f, 1);
    int rc = CLI(&out, "train", "--data", data, "--model", f, "--out", path_in("big-out.safetensors"), "--quiet",
                 "--check-numerics");
    assert_int_equal(rc, 1);
    assert_has(out, "nabla train: check_numerics: forward value of node '0.conv2d' (op conv2d) element 0 is Inf");
    free(out);
}

/* Inf in the inputs (a CSV cell 'inf'). */
static void test_inf_in_inputs(void **state)
{
    (void)state;
    char *out;
    const char csv[] = "a,b,c,label\n1,2,3,0\n4,inf,6,1\n7,8,9,0\n1,1,1,1\n";
    put("inf.csv", csv, sizeof csv - 1);
    int rc = CLI(&out, "train", "--data", path_in("inf.csv"), "--model", "dense 2", "--val-split", "0", "--out",
                 path_in("inf-out.safetensors"), "--quiet", "--check-numerics", "--batch", "4", "--seed", "1");
    assert_int_equal(rc, 1);
    assert_has(out, "nabla train: check_numerics: value of node 'input' (op input) element ");
    assert_has(out, " is Inf");
    free(out);
}

/* A forward pass that is finite and a backward pass that is not: zero
 * images make layer 1's output 0 and the logits finite, but dL/dA1 =
 * g W2^T overflows; the guard names the node and layer in the backward
 * pass. */
static void test_overflow_backward(void **state)
{
    (void)state;
    char d[1100], *out;
    tu_fmt(d, sizeof d, "%s/zeros", dir);
    mkdir(d, 0755);
    unsigned char zeros[16 * 64] = {0}, labels[16] = {0};
    uint32_t idims[3] = {16, 8, 8}, ldims[1] = {16};
    char p[1200];
    tu_fmt(p, sizeof p, "%s/train-images-idx3-ubyte", d);
    tu_write_idx_u8(p, 3, idims, zeros);
    tu_fmt(p, sizeof p, "%s/train-labels-idx1-ubyte", d);
    tu_write_idx_u8(p, 1, ldims, labels);
    /* 2.kernel (4 x 10): column 0 is -3e38, the others +3e38, so with label
     * 0 every term of g W2^T has the same sign. */
    nb_model *m;
    int64_t in[3] = {8, 8, 1};
    const char *f = path_in("bwd.safetensors");
    assert_int_equal(nb_model_from_spec("flatten; dense 4; dense 10", 3, in, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 3), NB_OK);
    nb_tensor *w = nb_value(nb_model_find_param(m, "2.kernel"));
    for (int64_t i = 0; i < w->size; i++) w->data[i] = i % 10 == 0 ? -3e38f : 3e38f;
    assert_int_equal(nb_model_save(m, f), NB_OK);
    nb_model_free(m);
    int rc = CLI(&out, "train", "--data", d, "--model", f, "--out", path_in("bwd-out.safetensors"), "--quiet",
                 "--check-numerics", "--batch", "1", "--val-split", "0", "--no-test", "--optimizer", "sgd");
    assert_int_equal(rc, 1);
    assert_has(out, "nabla train: check_numerics: gradient of node '1.add' (op add) element 0 is Inf");
    assert_has(out, " is Inf");
    free(out);
}


/* ------------------------------------------------- command-line arguments */

/* Runs the CLI, asserts exit status rc and that the output holds want. */
#define EXPECT_CLI(rc_want, want, ...)                                                                                 \
    do {                                                                                                              \
        char *o_;                                                                                                     \
        int rc_ = CLI(&o_, __VA_ARGS__);                                                                              \
        assert_has(o_, want);                                                                                         \
        assert_int_equal(rc_, rc_want);                                                                               \
        free(o_);                                                                                                     \
    } while (0)

/* Rows I1-I2: summary's -o (only with --dot, into a directory that exists). */
static void test_summary_refusals(void **state)
{
    (void)state;
    char f[1200];
    snprintf(f, sizeof f, "%s/graph.dot", dir);
    EXPECT_CLI(2, "nabla summary: -o writes the DOT graph: add --dot\n(see 'nabla summary --help')", "summary",
               "--model", "dense 2", "--input", "3", "-o", f);
    struct stat st;
    assert_int_not_equal(stat(f, &st), 0); /* nothing written */
    snprintf(f, sizeof f, "%s/nosuch/graph.dot", dir);
    char want[3400];
    snprintf(want, sizeof want, "nabla summary: -o '%s': the directory '%s/nosuch' does not exist (create it first)",
             f, dir);
    EXPECT_CLI(1, want, "summary", "--dot", "--model", "dense 2", "--input", "3", "-o", f);
    assert_int_not_equal(stat(f, &st), 0);
}

static void test_mistyped_arguments(void **state)
{
    (void)state;
    EXPECT_CLI(2, "nabla: unknown command 'trian' (did you mean train?)", "trian", "--data", data);
    EXPECT_CLI(2, "nabla: unknown command 'frobnicate'\n(see 'nabla --help' for the commands)", "frobnicate");
    EXPECT_CLI(2, "nabla train: unknown option '--epoch' (did you mean --epochs?)", "train", "--data", data, "--model",
               "flatten; dense 10", "--epoch", "3");
    EXPECT_CLI(2, "nabla train: unknown option '--colour'\n(see 'nabla train --help')", "train", "--colour", "red");
    EXPECT_CLI(2, "nabla train: unexpected argument 'model.safetensors' (options start with --)", "train",
               "model.safetensors");
    EXPECT_CLI(2, "nabla gradcheck: --seed must be an integer >= 0, got 'abc'", "gradcheck", "--seed", "abc");
    EXPECT_CLI(2, "nabla train: --epochs must be an integer from 1 to 1000000, got '3x'", "train", "--data", data,
               "--model", "flatten; dense 10", "--epochs", "3x");
    EXPECT_CLI(2, "nabla train: --momentum must be a finite number, got 'nan'", "train", "--data", data, "--model",
               "flatten; dense 10", "--momentum", "nan");
    EXPECT_CLI(2, "nabla train: unknown --loss 'hinge' (the choices: cce, mse, bce)", "train", "--data", data,
               "--model", "flatten; dense 10", "--loss", "hinge");
    EXPECT_CLI(2, "nabla train: unknown --optimizer 'adma': did you mean adam? (the choices: sgd, adam, adamw, rmsprop)",
               "train", "--data", data, "--model", "flatten; dense 10", "--optimizer=adma");
    EXPECT_CLI(2, "nabla train: --resume takes no value, got '--resume=yes'", "train", "--data", data, "--resume=yes");
    EXPECT_CLI(2, "nabla train: option '--lr' needs a value", "train", "--data", data, "--model", "dense 2", "--lr");
    EXPECT_CLI(2, "nabla train: --data is required", "train", "--model", "dense 2");
    EXPECT_CLI(2, "nabla train: --model is required (or --resume, to continue the checkpoint in --out)", "train",
               "--data", data);
    EXPECT_CLI(2, "nabla jacobian: --model is required", "jacobian", "--input", "x.npy", "-o", "J.npy");
    EXPECT_CLI(2, "nabla grad: --model and --out are required", "grad", "--input", "x.npy", "--labels", "y.npy");
}

/* A plot is SVG: a .png name would get SVG text. */
static void test_plot_not_svg(void **state)
{
    (void)state;
    EXPECT_CLI(2, "nabla train: --plot writes SVG: give a file name ending in .svg, got 'DIR/curves.png'", "train",
               "--data", data, "--model", "flatten; dense 10", "--plot", "DIR/curves.png");
    EXPECT_CLI(2, "nabla demo gd: --plot writes SVG: give a file name ending in .svg, got 'gd.png'", "demo", "gd",
               "--plot", "gd.png");
    assert_int_equal(access("gd.png", F_OK), -1);
}

/* A small trained-shape classifier of the 8x8 data set. */
static const char *save_image_model(void)
{
    static char f[1200];
    tu_fmt(f, sizeof f, "%s", path_in("img.safetensors"));
    nb_model *m;
    int64_t in[3] = {8, 8, 1};
    assert_int_equal(nb_model_from_spec("flatten; dense 10", 3, in, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 3), NB_OK);
    assert_int_equal(nb_model_save(m, f), NB_OK);
    nb_model_free(m);
    return f;
}

/* Where the examples come from: --input or --data, within the data. */
static void test_examples_source(void **state)
{
    (void)state;
    const char *m = save_image_model();
    EXPECT_CLI(2, "nabla predict: --input FILE or --data D is required (e.g. --data fashion-mnist)", "predict",
               "--model", m);
    EXPECT_CLI(2, "nabla jacobian: give --input or --data, not both", "jacobian", "--model", m, "--input", "x.npy",
               "--data", data, "-o", "J.npy");
    EXPECT_CLI(2, "nabla grad: --labels is required with --input", "grad", "--model", m, "--input", "x.npy", "-o",
               "g.safetensors");
    char want[3400];
    tu_fmt(want, sizeof want, "nabla predict: reading the input: --start 40: the test split of '%s' has 32 examples "
                              "(0..31)", data);
    EXPECT_CLI(1, want, "predict", "--model", m, "--data", data, "--start", "40");
    /* NCHW, as PyTorch lays images out: (2, 1, 8, 8) for a model of (8, 8, 1). */
    int64_t shape[4] = {2, 1, 8, 8};
    nb_tensor *x = nb_tensor_new(4, shape);
    assert_int_equal(nb_npy_write(path_in("nchw.npy"), x), NB_OK);
    nb_tensor_free(x);
    tu_fmt(want, sizeof want, "input '%s' has shape (2, 1, 8, 8), the model takes (N, 8, 8, 1) (or (N, H, W) for its "
                              "one channel); this looks like channels-first (N, C, H, W) as in PyTorch, but nabla is "
                              "channels-last (N, H, W, C): transpose it (NumPy: x.transpose(0, 2, 3, 1))",
           path_in("nchw.npy"));
    EXPECT_CLI(1, want, "predict", "--model", m, "--input", path_in("nchw.npy"));
    /* --classes with fewer names than classes. */
    assert_int_equal(tu_write(path_in("three.txt"), "cat\ndog\nbird\n", 13), 0);
    tu_fmt(want, sizeof want, "nabla predict: --classes: '%s' has 3 class names (one per line), the model has 10 classes",
           path_in("three.txt"));
    EXPECT_CLI(1, want, "predict", "--model", m, "--data", data, "--classes", path_in("three.txt"));
    /* Integer labels where mse wants targets of the output's shape. */
    tu_fmt(want, sizeof want, "nabla grad: the labels of '%s' have shape (4,); mse needs targets of the output's shape (4, 10) "
                              "(these look like class indices: use --loss cce, or one-hot targets for mse)", data);
    EXPECT_CLI(1, want, "grad", "--model", m, "--data", data, "--count", "4", "--loss", "mse", "-o",
               path_in("g.safetensors"));
    assert_int_equal(access(path_in("g.safetensors"), F_OK), -1);
}

/* CSV data sets: the label column by a name that is not there, by an index
 * past the end, by name in a file without a header; contradicting header
 * options; --input that does not hold a row. */
static void test_csv_arguments(void **state)
{
    (void)state;
    const char *hdr = path_in("h.csv");
    assert_int_equal(tu_write(hdr, "label,a,b,c\n0,1,2,3\n1,4,5,6\n", 28), 0);
    char want[1400], hdr_copy[1200];
    tu_fmt(hdr_copy, sizeof hdr_copy, "%s", hdr);
    tu_fmt(want, sizeof want, "nabla train: loading the training data: '%s': --label-col 'lable': no column of that "
                              "name; did you mean 'label'? (the columns: label, a, b, c)", hdr_copy);
    EXPECT_CLI(1, want, "train", "--data", hdr_copy, "--label-col", "lable", "--model", "dense 2");
    tu_fmt(want, sizeof want, "nabla eval: loading the data: '%s': --label-col 4: there is no such column (4 columns, "
                              "0..3)", hdr_copy);
    EXPECT_CLI(1, want, "eval", "--model", save_image_model(), "--data", hdr_copy, "--label-col", "4");
    const char *nh = path_in("nh.csv");
    assert_int_equal(tu_write(nh, "0,1,2,3\n1,4,5,6\n", 16), 0);
    char nh_copy[1200];
    tu_fmt(nh_copy, sizeof nh_copy, "%s", nh);
    tu_fmt(want, sizeof want, "nabla train: loading the training data: '%s': --label-col 'label': the file has no header "
                              "line to find the name in (give the column's index)", nh_copy);
    EXPECT_CLI(1, want, "train", "--data", nh_copy, "--label-col", "label", "--model", "dense 2");
    EXPECT_CLI(1, "nabla train: building the model: model 'nosuch.safetensors': no such file", "train", "--data", data,
               "--model", "nosuch.safetensors");
    EXPECT_CLI(1, "nabla summary: building the model: model 'specs/cnn.txt': no such file", "summary", "--model",
               "specs/cnn.txt", "--input", "28,28,1");
    EXPECT_CLI(2, "nabla train: --header and --no-header contradict each other", "train", "--data", nh_copy, "--header",
               "--no-header", "--model", "dense 2");
    EXPECT_CLI(1, "nabla train: --input: --input 5,5,1 holds 25 values per example, the data's examples hold 3",
               "train", "--data", hdr_copy, "--label-col", "label", "--input", "5,5,1", "--model", "flatten; dense 2");
    EXPECT_CLI(1, "targets have 1 value per example, the loss needs 2 (one per model output); these look like class "
                  "indices: use --loss cce, or one-hot targets for mse",
               "train", "--data", hdr_copy, "--label-col", "label", "--loss", "mse", "--model", "dense 2");
    assert_int_equal(access(path_in("model.safetensors"), F_OK), -1);
}

static int setup(void **state)
{
    (void)state;
    tu_mkdtemp(dir, sizeof dir, "bad");
    tu_fmt(data, sizeof data, "%s/data", dir);
    mkdir(data, 0755);
    tu_write_dataset(data, "train", 64, 64, 8, 8, 10, 0);
    tu_write_dataset(data, "t10k", 32, 32, 8, 8, 10, 0);
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
        cmocka_unit_test(test_wrong_magic),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_shape_offset_mismatch),
        cmocka_unit_test(test_huge_claims),
        cmocka_unit_test(test_zero_dim_shapes),
        cmocka_unit_test(test_deep_json),
        cmocka_unit_test(test_unknown_dtype),
        cmocka_unit_test(test_bad_csv),
        cmocka_unit_test(test_labels_out_of_range),
        cmocka_unit_test(test_count_mismatch),
        cmocka_unit_test(test_spec_does_not_fit),
        cmocka_unit_test(test_bad_learning_rate),
        cmocka_unit_test(test_batch_zero),
        cmocka_unit_test(test_input_dim_over_limit),
        cmocka_unit_test(test_output_in_missing_dir),
        cmocka_unit_test(test_output_in_readonly_dir),
        cmocka_unit_test(test_full_disk_during_checkpoint),
        cmocka_unit_test(test_nan_in_weights),
        cmocka_unit_test(test_overflow_forward),
        cmocka_unit_test(test_inf_in_inputs),
        cmocka_unit_test(test_overflow_backward),
        cmocka_unit_test(test_model_file_spec_mismatch),
        cmocka_unit_test(test_model_file_extra_tensor),
        cmocka_unit_test(test_model_file_nonfinite),
        cmocka_unit_test(test_mistyped_arguments),
        cmocka_unit_test(test_summary_refusals),
        cmocka_unit_test(test_plot_not_svg),
        cmocka_unit_test(test_examples_source),
        cmocka_unit_test(test_csv_arguments),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
