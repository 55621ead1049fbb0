/* Tests of the io section: IDX (Fashion-MNIST), .npy (fixtures written by
 * NumPy), CSV, safetensors, atomic writes; and hostile input: every prefix of
 * valid files, lying headers, huge shapes, overlapping offsets, gzip bombs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the four above first. */
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "nabla.h"

#define FIXTURE(name) NB_SOURCE_DIR "/tests/data/io/" name
#define TMPFILE(name) NB_BINARY_DIR "/test_io_" name
#define FASHION "/usr/share/datasets/fashion-mnist/"

static int contains(const char *hay, const char *needle)
{
    return strstr(hay, needle) != NULL;
}

#define assert_error_has(needle)                                                                                       \
    do {                                                                                                               \
        if (!contains(nb_last_error(), needle)) {                                                                      \
            print_error("message '%s' lacks '%s'\n", nb_last_error(), needle);                                         \
            fail();                                                                                                    \
        }                                                                                                              \
    } while (0)

static unsigned char *slurp(const char *path, size_t *len)
{
    void *data = NULL;
    assert_int_equal(nb_read_file(path, 0, &data, len), NB_OK);
    return data;
}

static int have_python_numpy(void)
{
    if (access("/usr/bin/python3", X_OK) != 0) return 0;
    return system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0;
}

/* gzip of data (zlib, gzip wrapper), malloc'ed. */
static unsigned char *gzip_bytes(const unsigned char *data, size_t len, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, (uLong)len) + 64;
    unsigned char *out = malloc(cap);
    assert_non_null(out);
    zs.next_in = (unsigned char *)data;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_len = cap - zs.avail_out;
    deflateEnd(&zs);
    return out;
}

/* ------------------------------------------------------------------- IDX */

static void test_idx_fashion_mnist_t10k(void **state)
{
    (void)state;
    if (access(FASHION "t10k-images-idx3-ubyte.gz", R_OK) != 0) {
        print_message("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)\n");
        skip();
    }
    nb_tensor *img = NULL, *lab = NULL;
    assert_int_equal(nb_idx_read(FASHION "t10k-images-idx3-ubyte.gz", &img), NB_OK);
    assert_int_equal(nb_idx_read(FASHION "t10k-labels-idx1-ubyte.gz", &lab), NB_OK);
    assert_int_equal(img->rank, 3);
    assert_int_equal(img->shape[0], 10000);
    assert_int_equal(img->shape[1], 28);
    assert_int_equal(img->shape[2], 28);
    assert_int_equal(lab->rank, 1);
    assert_int_equal(lab->shape[0], 10000);
    int counts[10] = {0};
    for (int64_t i = 0; i < lab->size; i++) {
        float v = lab->data[i];
        assert_true(v >= 0 && v <= 9 && v == floorf(v));
        counts[(int)v]++;
    }
    for (int c = 0; c < 10; c++)
        assert_int_equal(counts[c], 1000);
    /* First labels, as NumPy reads them: 9 2 1 1 6. */
    assert_float_equal(lab->data[0], 9, 0);
    assert_float_equal(lab->data[1], 2, 0);
    assert_float_equal(lab->data[4], 6, 0);
    double sum = 0, first = 0;
    float lo = 1e9f, hi = -1e9f;
    for (int64_t i = 0; i < img->size; i++) {
        float v = img->data[i];
        assert_true(v == floorf(v));
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        sum += v;
        if (i < 784) first += v;
    }
    assert_float_equal(lo, 0, 0);
    assert_float_equal(hi, 255, 0);
    assert_float_equal(sum, 573469082.0, 0);
    assert_float_equal(first, 33456.0, 0);
    assert_float_equal(img->data[14 * 28 + 14], 110, 0);
    nb_tensor_free(img);
    nb_tensor_free(lab);
}

/* An IDX file of the given type with dims (2, 3) and values v[i]. */
static size_t make_idx(unsigned char *buf, int type, const double *v)
{
    unsigned char *p = buf;
    *p++ = 0;
    *p++ = 0;
    *p++ = (unsigned char)type;
    *p++ = 2;
    const uint32_t dims[2] = {2, 3};
    for (int d = 0; d < 2; d++)
        for (int k = 3; k >= 0; k--)
            *p++ = (unsigned char)(dims[d] >> (8 * k));
    for (int i = 0; i < 6; i++) {
        uint64_t u = 0;
        int n = 0;
        switch (type) {
        case 0x08:
            u = (uint8_t)v[i];
            n = 1;
            break;
        case 0x09:
            u = (uint8_t)(int8_t)v[i];
            n = 1;
            break;
        case 0x0B:
            u = (uint16_t)(int16_t)v[i];
            n = 2;
            break;
        case 0x0C:
            u = (uint32_t)(int32_t)v[i];
            n = 4;
            break;
        case 0x0D: {
            float f = (float)v[i];
            uint32_t b;
            memcpy(&b, &f, 4);
            u = b;
            n = 4;
            break;
        }
        default: {
            double d = v[i];
            memcpy(&u, &d, 8);
            n = 8;
        }
        }
        for (int k = n - 1; k >= 0; k--)
            *p++ = (unsigned char)(u >> (8 * k));
    }
    return (size_t)(p - buf);
}

static void test_idx_types(void **state)
{
    (void)state;
    const int types[6] = {0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E};
    const double vals[6][6] = {{0, 1, 2, 127, 200, 255},         {-128, -1, 0, 1, 2, 127},
                               {-32768, -300, 0, 1, 300, 32767}, {-2000000000, -70000, 0, 1, 70000, 2000000000},
                               {-1.5, 0.25, 0, 1, 1e10, -3e-5},  {-1.5, 0.125, 0, 1, 1e-300, 2.5e300}};
    unsigned char buf[128];
    for (int t = 0; t < 6; t++) {
        size_t len = make_idx(buf, types[t], vals[t]);
        nb_tensor *x = NULL;
        assert_int_equal(nb_idx_parse(buf, len, &x), NB_OK);
        assert_int_equal(x->rank, 2);
        assert_int_equal(x->shape[0], 2);
        assert_int_equal(x->shape[1], 3);
        for (int i = 0; i < 6; i++)
            assert_float_equal(x->data[i], (float)vals[t][i], 0);
        nb_tensor_free(x);

        /* The same, gzip-compressed. */
        size_t glen;
        unsigned char *gz = gzip_bytes(buf, len, &glen);
        assert_int_equal(nb_idx_parse(gz, glen, &x), NB_OK);
        for (int i = 0; i < 6; i++)
            assert_float_equal(x->data[i], (float)vals[t][i], 0);
        nb_tensor_free(x);

        /* Every truncation of both fails cleanly. */
        for (size_t n = 0; n < len; n++) {
            assert_int_equal(nb_idx_parse(buf, n, &x), NB_ERR_FORMAT);
            assert_null(x);
            assert_true(contains(nb_last_error(), "<memory>"));
        }
        for (size_t n = 0; n < glen; n++) {
            assert_int_not_equal(nb_idx_parse(gz, n, &x), NB_OK);
            assert_null(x);
        }
        free(gz);
    }
}

static void test_idx_hostile(void **state)
{
    (void)state;
    const double v[6] = {1, 2, 3, 4, 5, 6};
    unsigned char buf[128];
    size_t len = make_idx(buf, 0x08, v);
    nb_tensor *x = NULL;

    unsigned char bad[128];
    memcpy(bad, buf, len);
    bad[1] = 1; /* wrong magic */
    assert_int_equal(nb_idx_parse(bad, len, &x), NB_ERR_FORMAT);
    assert_error_has("magic");
    memcpy(bad, buf, len);
    bad[2] = 0x0A; /* no such type */
    assert_int_equal(nb_idx_parse(bad, len, &x), NB_ERR_FORMAT);
    assert_error_has("0x0a");
    memcpy(bad, buf, len);
    bad[3] = 9; /* too many dims */
    assert_int_equal(nb_idx_parse(bad, len, &x), NB_ERR_FORMAT);
    assert_error_has("ndims");
    memcpy(bad, buf, len);
    bad[3] = 0;
    assert_int_equal(nb_idx_parse(bad, len, &x), NB_ERR_FORMAT);
    /* A header that lies: dims (2, 4) but data for (2, 3). */
    memcpy(bad, buf, len);
    bad[11] = 4;
    assert_int_equal(nb_idx_parse(bad, len, &x), NB_ERR_FORMAT);
    assert_error_has("(2, 4)");
    /* Extra data after what the dims imply is refused too. */
    memcpy(bad, buf, len);
    bad[len] = 7;
    assert_int_equal(nb_idx_parse(bad, len + 1, &x), NB_ERR_FORMAT);
    /* 2^40 elements: refused, not allocated. */
    memcpy(bad, buf, len);
    bad[4] = 0;
    bad[5] = 0x10;
    bad[6] = 0;
    bad[7] = 0; /* 1048576 */
    bad[8] = 0;
    bad[9] = 0x10;
    bad[10] = 0;
    bad[11] = 0;
    assert_int_equal(nb_idx_parse(bad, len, &x), NB_ERR_FORMAT);
    assert_error_has("(1048576, 1048576)");
    /* Dims whose product overflows 64 bits. */
    unsigned char big[4 + 32] = {0, 0, 0x0E, 8};
    memset(big + 4, 0xff, 32);
    assert_int_equal(nb_idx_parse(big, sizeof big, &x), NB_ERR_FORMAT);
    assert_error_has("too many elements");
    assert_null(x);

    /* gzip with a header claiming 2^40 bytes: refused before inflating the
     * data, since deflate cannot compress that much into so few bytes. */
    size_t glen;
    memcpy(bad, buf, len);
    bad[4] = 0;
    bad[5] = 0x10;
    bad[6] = 0;
    bad[7] = 0;
    bad[8] = 0;
    bad[9] = 0x10;
    bad[10] = 0;
    bad[11] = 0;
    unsigned char *gz = gzip_bytes(bad, len, &glen);
    assert_int_equal(nb_idx_parse(gz, glen, &x), NB_ERR_FORMAT);
    assert_error_has("compressed");
    free(gz);

    /* A gzip bomb: the header says 6 bytes, 64 MB of zeros follow. Inflating
     * stops right after the 6 bytes. */
    size_t bomb_len = 64u << 20;
    unsigned char *bomb = calloc(1, bomb_len);
    assert_non_null(bomb);
    memcpy(bomb, buf, len);
    gz = gzip_bytes(bomb, bomb_len, &glen);
    free(bomb);
    assert_true(glen < 200000);
    assert_int_equal(nb_idx_parse(gz, glen, &x), NB_ERR_FORMAT);
    assert_error_has("longer");
    assert_null(x);
    free(gz);

    /* Trailing garbage after the gzip stream; a corrupt stream. */
    gz = gzip_bytes(buf, len, &glen);
    unsigned char *gz2 = malloc(glen + 4);
    memcpy(gz2, gz, glen);
    memcpy(gz2 + glen, "junk", 4);
    assert_int_equal(nb_idx_parse(gz2, glen + 4, &x), NB_ERR_FORMAT);
    assert_error_has("trailing");
    memcpy(gz2, gz, glen);
    gz2[glen / 2] ^= 0x55;
    gz2[glen - 5] ^= 0x55;
    assert_int_equal(nb_idx_parse(gz2, glen, &x), NB_ERR_FORMAT);
    free(gz2);
    free(gz);

    /* A file that is not there: an I/O error naming it. */
    assert_int_equal(nb_idx_read(TMPFILE("no-such-file.idx"), &x), NB_ERR_IO);
    assert_error_has("no-such-file.idx");
}

/* ------------------------------------------------------------------- npy */

static nb_tensor *read_npy_ok(const char *path)
{
    nb_tensor *t = NULL;
    nb_status s = nb_npy_read(path, &t);
    if (s) print_error("%s\n", nb_last_error());
    assert_int_equal(s, NB_OK);
    assert_non_null(t);
    return t;
}

static void test_npy_numpy_fixtures(void **state)
{
    (void)state;
    nb_tensor *t = read_npy_ok(FIXTURE("u8.npy"));
    assert_int_equal(t->rank, 1);
    assert_int_equal(t->shape[0], 5);
    const float u8[5] = {0, 1, 2, 254, 255};
    for (int i = 0; i < 5; i++)
        assert_float_equal(t->data[i], u8[i], 0);
    nb_tensor_free(t);

    t = read_npy_ok(FIXTURE("i64.npy"));
    assert_int_equal(t->shape[0], 4);
    assert_float_equal(t->data[0], -3, 0);
    assert_float_equal(t->data[1], 0, 0);
    assert_float_equal(t->data[2], 7, 0);
    assert_float_equal(t->data[3], 1099511627776.0f, 0);
    nb_tensor_free(t);

    t = read_npy_ok(FIXTURE("f64.npy"));
    assert_int_equal(t->shape[0], 4);
    assert_float_equal(t->data[0], 0.5, 0);
    assert_float_equal(t->data[1], -1.25, 0);
    assert_float_equal(t->data[2], 3.0e10f, 0);
    assert_true(t->data[3] == 0 && signbit(t->data[3]));
    nb_tensor_free(t);

    t = read_npy_ok(FIXTURE("f32_2d.npy"));
    assert_int_equal(t->rank, 2);
    assert_int_equal(t->shape[0], 2);
    assert_int_equal(t->shape[1], 3);
    const float f[6] = {0.1f, 0.2f, 0.3f, -1.5f, 2.5f, 1e-3f};
    for (int i = 0; i < 6; i++)
        assert_float_equal(t->data[i], f[i], 0);
    nb_tensor_free(t);

    t = read_npy_ok(FIXTURE("i32_be.npy"));
    assert_float_equal(t->data[0], 1, 0);
    assert_float_equal(t->data[1], -2, 0);
    assert_float_equal(t->data[2], 65536, 0);
    nb_tensor_free(t);

    t = read_npy_ok(FIXTURE("bool.npy"));
    assert_float_equal(t->data[0], 1, 0);
    assert_float_equal(t->data[1], 0, 0);
    assert_float_equal(t->data[2], 1, 0);
    nb_tensor_free(t);

    t = read_npy_ok(FIXTURE("f32_v2.npy")); /* format version 2.0 */
    assert_int_equal(t->shape[0], 3);
    assert_int_equal(t->shape[1], 2);
    for (int i = 0; i < 6; i++)
        assert_float_equal(t->data[i], i, 0);
    nb_tensor_free(t);

    assert_int_equal(nb_npy_read(FIXTURE("fortran.npy"), &t), NB_ERR_FORMAT);
    assert_null(t);
    assert_error_has("fortran_order");
    assert_error_has("fortran.npy");
}

static void test_npy_roundtrip(void **state)
{
    (void)state;
    const int64_t shape[3] = {2, 3, 2};
    nb_tensor *t = nb_tensor_new(3, shape);
    for (int64_t i = 0; i < t->size; i++)
        t->data[i] = (nb_real)(i * 0.5 - 2.25);
    const char *path = TMPFILE("roundtrip.npy");
    assert_int_equal(nb_npy_write(path, t), NB_OK);

    size_t len;
    unsigned char *bytes = slurp(path, &len);
    assert_memory_equal(bytes, "\x93NUMPY\x01\x00", 8);
    size_t hlen = (size_t)bytes[8] | ((size_t)bytes[9] << 8);
    assert_int_equal((10 + hlen) % 64, 0);
    assert_int_equal(bytes[10 + hlen - 1], '\n');
    assert_int_equal(len, 10 + hlen + 12 * sizeof(nb_real));
    assert_non_null(strstr((const char *)bytes + 10, "'descr': '<f4'"));
    assert_non_null(strstr((const char *)bytes + 10, "'shape': (2, 3, 2)"));
    free(bytes);

    nb_tensor *u = read_npy_ok(path);
    assert_int_equal(u->rank, 3);
    for (int k = 0; k < 3; k++)
        assert_int_equal(u->shape[k], shape[k]);
    assert_memory_equal(u->data, t->data, 12 * sizeof(nb_real));
    nb_tensor_free(u);

    /* Scalars and 1-D shapes keep Python's tuple syntax. */
    nb_tensor *s0 = nb_tensor_new(0, NULL);
    s0->data[0] = 42;
    assert_int_equal(nb_npy_write(TMPFILE("scalar.npy"), s0), NB_OK);
    u = read_npy_ok(TMPFILE("scalar.npy"));
    assert_int_equal(u->rank, 0);
    assert_float_equal(u->data[0], 42, 0);
    nb_tensor_free(u);
    nb_tensor_free(s0);

    if (!have_python_numpy()) {
        nb_tensor_free(t);
        print_message("no /usr/bin/python3 with numpy: NumPy's view of the file not checked\n");
        skip();
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import numpy as np; a = np.load('%s'); "
             "assert a.dtype == np.float32 and a.shape == (2, 3, 2), (a.dtype, a.shape); "
             "assert (a.ravel() == np.arange(12) * 0.5 - 2.25).all(), a\"",
             path);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import numpy as np; a = np.load('%s'); assert a.shape == () and a == 42\"",
             TMPFILE("scalar.npy"));
    assert_int_equal(system(cmd), 0);
    nb_tensor_free(t);
}

/* A .npy v1.0 file from a header dict and some data bytes. */
static size_t make_npy(unsigned char *buf, const char *dict, const void *data, size_t dlen)
{
    size_t n = strlen(dict);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)((n + 1) & 0xff);
    buf[9] = (unsigned char)((n + 1) >> 8);
    memcpy(buf + 10, dict, n);
    buf[10 + n] = '\n';
    if (dlen) memcpy(buf + 11 + n, data, dlen);
    return 11 + n + dlen;
}

static void expect_npy_error(const char *dict, size_t dlen, const char *needle)
{
    unsigned char buf[512];
    unsigned char data[64] = {0};
    size_t len = make_npy(buf, dict, data, dlen);
    nb_tensor *t = NULL;
    assert_int_equal(nb_npy_parse(buf, len, &t), NB_ERR_FORMAT);
    assert_null(t);
    if (!contains(nb_last_error(), needle)) {
        print_error("for %s: message '%s' lacks '%s'\n", dict, nb_last_error(), needle);
        fail();
    }
}

static void test_npy_hostile(void **state)
{
    (void)state;
    size_t len;
    unsigned char *good = slurp(FIXTURE("f32_2d.npy"), &len);
    nb_tensor *t = NULL;
    for (size_t n = 0; n < len; n++) {
        assert_int_equal(nb_npy_parse(good, n, &t), NB_ERR_FORMAT);
        assert_null(t);
    }
    assert_int_equal(nb_npy_parse(good, len, &t), NB_OK);
    nb_tensor_free(t);
    good[0] = 'X';
    assert_int_equal(nb_npy_parse(good, len, &t), NB_ERR_FORMAT);
    assert_error_has("magic");
    good[0] = 0x93;
    good[6] = 4;
    assert_int_equal(nb_npy_parse(good, len, &t), NB_ERR_FORMAT);
    assert_error_has("version");
    good[6] = 1;
    good[8] = 0xff; /* header length past the end */
    assert_int_equal(nb_npy_parse(good, len, &t), NB_ERR_FORMAT);
    assert_error_has("header length");
    free(good);

    expect_npy_error(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000,), }", 12,
        "<memory>: header says shape (1000000,) of <f4 = 4000000 bytes, but the file holds 12 bytes of data");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }", 16, "(1099511627776,)");
    expect_npy_error("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", 16,
                     "too many elements");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 4, "overflows");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", 4, "negative");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", 4, "more than 8");
    expect_npy_error("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", 8, "'<c8'");
    expect_npy_error("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", 8, "'|O'");
    expect_npy_error("{'descr': '|f4', 'fortran_order': False, 'shape': (1,), }", 8, "'|f4'");
    expect_npy_error("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", 8, "structured");
    expect_npy_error("{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }", 4, "fortran_order");
    expect_npy_error("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,), }", 4, "True or False");
    expect_npy_error("{'descr': '<f4', 'shape': (1,), }", 4, "missing key 'fortran_order'");
    expect_npy_error("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", 4, "twice");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}", 4, "unknown key 'extra'");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (1,", 4, "shape");
    expect_npy_error("{'descr': '<f4, 'fortran_order': False, 'shape': (1,)}", 4, "header");
    expect_npy_error("['descr', '<f4']", 4, "dict");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} trailing", 4, "after the dict");

    /* Accepted variations: double quotes, lists, Python 2 longs, no trailing
     * comma, extra data after the array (np.save appends). */
    unsigned char buf[256];
    const float vals[2] = {1.5f, -2};
    len = make_npy(buf, "{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":[2L]}", vals, 8);
    assert_int_equal(nb_npy_parse(buf, len + 3, &t), NB_OK);
    assert_int_equal(t->shape[0], 2);
    assert_float_equal(t->data[0], 1.5f, 0);
    assert_float_equal(t->data[1], -2, 0);
    nb_tensor_free(t);
    /* A zero-size array. */
    len = make_npy(buf, "{'descr': '<f8', 'fortran_order': False, 'shape': (0, 5), }", NULL, 0);
    assert_int_equal(nb_npy_parse(buf, len, &t), NB_OK);
    assert_int_equal(t->size, 0);
    assert_int_equal(t->shape[1], 5);
    nb_tensor_free(t);
}

/* ------------------------------------------------------------------- CSV */

static void test_csv_basic(void **state)
{
    (void)state;
    const char *text = "\xEF\xBB\xBFx, y ,\"label, with comma\"\r\n1, 2.5, -3\r\n  4,5e-1,6\r\n\r\n\n";
    nb_tensor *t = NULL;
    char **names = NULL;
    assert_int_equal(nb_csv_parse(text, strlen(text), 1, &t, &names), NB_OK);
    assert_int_equal(t->rank, 2);
    assert_int_equal(t->shape[0], 2);
    assert_int_equal(t->shape[1], 3);
    const float want[6] = {1, 2.5f, -3, 4, 0.5f, 6};
    for (int i = 0; i < 6; i++)
        assert_float_equal(t->data[i], want[i], 0);
    assert_non_null(names);
    assert_string_equal(names[0], "x");
    assert_string_equal(names[1], "y");
    assert_string_equal(names[2], "label, with comma");
    nb_csv_free_names(names, 3);
    nb_tensor_free(t);

    /* No header; no final newline. */
    const char *plain = "1,2\n3,4";
    assert_int_equal(nb_csv_parse(plain, strlen(plain), 0, &t, &names), NB_OK);
    assert_null(names);
    assert_int_equal(t->shape[0], 2);
    assert_int_equal(t->shape[1], 2);
    assert_float_equal(t->data[3], 4, 0);
    nb_tensor_free(t);

    /* A header alone gives zero rows. */
    assert_int_equal(nb_csv_parse("a,b\n", 4, 1, &t, NULL), NB_OK);
    assert_int_equal(t->shape[0], 0);
    assert_int_equal(t->shape[1], 2);
    nb_tensor_free(t);

    /* Through a file. */
    const char *path = TMPFILE("basic.csv");
    assert_int_equal(nb_write_file_atomic(path, "a,b\n1,2\n", 8), NB_OK);
    assert_int_equal(nb_csv_read(path, 1, &t, &names), NB_OK);
    assert_float_equal(t->data[1], 2, 0);
    assert_string_equal(names[1], "b");
    nb_csv_free_names(names, 2);
    nb_tensor_free(t);
}

static void expect_csv_error(const char *text, int header, const char *needle)
{
    nb_tensor *t = NULL;
    char **names = NULL;
    assert_int_equal(nb_csv_parse(text, strlen(text), header, &t, &names), NB_ERR_FORMAT);
    assert_null(t);
    assert_null(names);
    if (!contains(nb_last_error(), needle)) {
        print_error("message '%s' lacks '%s'\n", nb_last_error(), needle);
        fail();
    }
}

static void test_csv_errors(void **state)
{
    (void)state;
    expect_csv_error("a,b,c,d\n1,2,3,4\n5,6,7,8\n1,2,3,4\n1,2,3,4\n1,2,3,4\n1,2,3\n", 1,
                     "<memory>: line 7 has 3 fields, expected 4");
    expect_csv_error("1,2\n3,4,5\n", 0, "line 2 has 3 fields, expected 2");
    expect_csv_error("a,b\n1,2\n3,abc\n", 1, "line 3, column 2: 'abc' is not a number");
    expect_csv_error("1,2\n3,\n", 0, "line 2, column 2: empty field");
    expect_csv_error("1,2\n\n3,4\n", 0, "line 2 is empty");
    expect_csv_error("1,2e999\n", 0, "out of range");
    expect_csv_error("1,\"2\n", 0, "unterminated");
    expect_csv_error("1,\"2\"x\n", 0, "after a closing quote");
    /* A NUL byte inside a number. */
    nb_tensor *z = NULL;
    assert_int_equal(nb_csv_parse("1,2\0"
                                  "5\n",
                                  5, 0, &z, NULL),
                     NB_ERR_FORMAT);
    assert_null(z);
    assert_error_has("line 1, column 2: '2?5' is not a number");

    /* Every prefix of a valid file: an error or a consistent tensor. */
    const char *text = "a,b,c\n1,2,3\n4.5,-6,7e2\n";
    size_t len = strlen(text);
    for (size_t n = 0; n <= len; n++) {
        nb_tensor *t = NULL;
        char **names = NULL;
        nb_status s = nb_csv_parse(text, n, 1, &t, &names);
        if (s == NB_OK) {
            /* Within the header line the names are cut short: no rows. */
            if (n >= 6)
                assert_int_equal(t->shape[1], 3);
            else
                assert_int_equal(t->shape[0], 0);
            assert_true(t->shape[0] <= 2 && t->shape[1] <= 3);
            nb_csv_free_names(names, t->shape[1]);
            nb_tensor_free(t);
        } else {
            assert_int_equal(s, NB_ERR_FORMAT);
            assert_null(t);
        }
    }
    nb_tensor *t = NULL;
    assert_int_equal(nb_csv_read(TMPFILE("missing.csv"), 0, &t, NULL), NB_ERR_IO);
    assert_error_has("missing.csv");
}

/* ----------------------------------------------------------- safetensors */

static void test_safetensors_fixture(void **state)
{
    (void)state;
    nb_safetensors *st = NULL;
    nb_status s = nb_safetensors_read(FIXTURE("mixed.safetensors"), &st);
    if (s) print_error("%s\n", nb_last_error());
    assert_int_equal(s, NB_OK);
    assert_int_equal(nb_safetensors_count(st), 6);
    assert_string_equal(nb_safetensors_meta(st, "format"), "pt");
    assert_string_equal(nb_safetensors_meta(st, "note"), "fixture");
    assert_null(nb_safetensors_meta(st, "absent"));

    const nb_tensor *t = nb_safetensors_get(st, "a.f16");
    assert_non_null(t);
    const float f16[5] = {1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f};
    for (int i = 0; i < 5; i++)
        assert_float_equal(t->data[i], f16[i], fabsf(f16[i]) * 1e-6f);
    t = nb_safetensors_get(st, "b.bf16");
    assert_float_equal(t->data[0], 1.0f, 0);
    assert_float_equal(t->data[1], -3.0f, 0);
    assert_float_equal(t->data[2], 0.15625f, 0);
    t = nb_safetensors_get(st, "c.i64");
    assert_int_equal(t->rank, 2);
    assert_float_equal(t->data[0], -1, 0);
    assert_float_equal(t->data[3], 8589934592.0f, 0);
    t = nb_safetensors_get(st, "d.u8");
    assert_float_equal(t->data[1], 200, 0);
    assert_float_equal(t->data[2], 255, 0);
    t = nb_safetensors_get(st, "e.bool");
    assert_float_equal(t->data[0], 1, 0);
    assert_float_equal(t->data[1], 0, 0);
    t = nb_safetensors_get(st, "f.f64");
    assert_int_equal(t->rank, 2);
    assert_float_equal(t->data[0], 0.25f, 0);
    assert_null(nb_safetensors_get(st, "nope"));
    nb_safetensors_free(st);
}

static nb_safetensors *sample_model(void)
{
    nb_safetensors *st = nb_safetensors_new();
    const int64_t ks[2] = {3, 2}, bs[1] = {2}, cs[4] = {2, 2, 1, 3};
    nb_tensor *k = nb_tensor_new(2, ks), *b = nb_tensor_new(1, bs), *c = nb_tensor_new(4, cs);
    for (int i = 0; i < 6; i++)
        k->data[i] = (nb_real)(0.1 * i - 0.3);
    b->data[0] = 1.5f;
    b->data[1] = -2.0f;
    for (int i = 0; i < 12; i++)
        c->data[i] = (nb_real)(i * i);
    assert_int_equal(nb_safetensors_add(st, "1.kernel", k), NB_OK); /* added out of order on purpose */
    assert_int_equal(nb_safetensors_add(st, "1.bias", b), NB_OK);
    assert_int_equal(nb_safetensors_add(st, "0.kernel", c), NB_OK);
    assert_int_equal(nb_safetensors_set_meta(st, "nabla.spec", "conv2d 3 2 relu; flatten; dense 2"), NB_OK);
    assert_int_equal(nb_safetensors_set_meta(st, "nabla.input", "4,4,1"), NB_OK);
    assert_int_equal(nb_safetensors_set_meta(st, "quote\"and\\slash\n", "tab\there"), NB_OK);
    nb_tensor_free(k);
    nb_tensor_free(b);
    nb_tensor_free(c);
    return st;
}

static void assert_same_model(const nb_safetensors *a, const nb_safetensors *b)
{
    assert_int_equal(nb_safetensors_count(a), nb_safetensors_count(b));
    for (int i = 0; i < nb_safetensors_count(a); i++) {
        const char *name = nb_safetensors_name(a, i);
        const nb_tensor *x = nb_safetensors_get(a, name), *y = nb_safetensors_get(b, name);
        assert_non_null(y);
        assert_int_equal(x->rank, y->rank);
        for (int k = 0; k < x->rank; k++)
            assert_int_equal(x->shape[k], y->shape[k]);
        assert_memory_equal(x->data, y->data, (size_t)x->size * sizeof(nb_real));
    }
    assert_string_equal(nb_safetensors_meta(b, "nabla.spec"), "conv2d 3 2 relu; flatten; dense 2");
    assert_string_equal(nb_safetensors_meta(b, "nabla.input"), "4,4,1");
    assert_string_equal(nb_safetensors_meta(b, "quote\"and\\slash\n"), "tab\there");
}

static void test_safetensors_roundtrip(void **state)
{
    (void)state;
    nb_safetensors *st = sample_model();
    /* Replacing keeps one entry. */
    const int64_t one[1] = {2};
    nb_tensor *b2 = nb_tensor_new(1, one);
    b2->data[0] = 1.5f;
    b2->data[1] = -2.0f;
    assert_int_equal(nb_safetensors_add(st, "1.bias", b2), NB_OK);
    nb_tensor_free(b2);
    assert_int_equal(nb_safetensors_count(st), 3);
    assert_int_equal(nb_safetensors_add(st, "__metadata__", b2 = nb_tensor_new(1, one)), NB_ERR_ARG);
    nb_tensor_free(b2);
    char longname[300];
    memset(longname, 'n', sizeof longname);
    longname[256] = '\0';
    assert_int_equal(nb_safetensors_add(st, longname, nb_safetensors_get(st, "1.bias")), NB_ERR_ARG);
    longname[255] = '\0';
    assert_int_equal(nb_safetensors_add(st, longname, nb_safetensors_get(st, "1.bias")), NB_OK);

    for (int f64 = 0; f64 <= 1; f64++) {
        void *buf;
        size_t len;
        assert_int_equal(nb_safetensors_serialize(st, f64, &buf, &len), NB_OK);
        const unsigned char *p = buf;
        uint64_t n = 0;
        for (int k = 7; k >= 0; k--)
            n = (n << 8) | p[k];
        assert_int_equal(n % 8, 0);
        assert_true(8 + n <= len);
        /* The header: names sorted, offsets contiguous in that order. */
        cJSON *h = cJSON_ParseWithLength((const char *)p + 8, (size_t)n);
        assert_non_null(h);
        const char *order[5] = {"__metadata__", "0.kernel", "1.bias", "1.kernel", longname};
        int i = 0;
        double off = 0;
        for (cJSON *c = h->child; c; c = c->next, i++) {
            assert_true(i < 5);
            assert_string_equal(c->string, order[i]);
            if (i == 0) continue;
            assert_string_equal(cJSON_GetObjectItem(c, "dtype")->valuestring, f64 ? "F64" : "F32");
            cJSON *o = cJSON_GetObjectItem(c, "data_offsets");
            assert_float_equal(o->child->valuedouble, off, 0);
            off = o->child->next->valuedouble;
        }
        assert_int_equal(i, 5);
        assert_float_equal(off, (double)(len - 8 - n), 0);
        cJSON_Delete(h);

        nb_safetensors *back = NULL;
        assert_int_equal(nb_safetensors_parse(buf, len, &back), NB_OK);
        assert_same_model(st, back);
        nb_safetensors_free(back);
        free(buf);
    }

    /* To a file, then read by another reader: Python's json + NumPy. */
    const char *path = TMPFILE("model.safetensors");
    assert_int_equal(nb_safetensors_write(path, st, 0), NB_OK);
    nb_safetensors *back = NULL;
    assert_int_equal(nb_safetensors_read(path, &back), NB_OK);
    assert_same_model(st, back);
    nb_safetensors_free(back);
    nb_safetensors_free(st);

    if (!have_python_numpy()) {
        print_message("no /usr/bin/python3 with numpy: the foreign reader is not checked\n");
        skip();
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"\n"
             "import json, struct, numpy as np\n"
             "b = open('%s', 'rb').read()\n"
             "n = struct.unpack('<Q', b[:8])[0]\n"
             "h = json.loads(b[8:8 + n])\n"
             "assert h['__metadata__']['nabla.input'] == '4,4,1', h\n"
             "e = h['1.kernel']\n"
             "assert e['dtype'] == 'F32' and e['shape'] == [3, 2], e\n"
             "a = np.frombuffer(b[8 + n + e['data_offsets'][0]:8 + n + e['data_offsets'][1]], '<f4').reshape(3, 2)\n"
             "assert np.allclose(a.ravel(), np.arange(6) * 0.1 - 0.3), a\n"
             "c = h['0.kernel']\n"
             "a = np.frombuffer(b[8 + n + c['data_offsets'][0]:8 + n + c['data_offsets'][1]], '<f4')\n"
             "assert (a == np.arange(12) ** 2).all() and c['shape'] == [2, 2, 1, 3], a\n"
             "\"",
             path);
    assert_int_equal(system(cmd), 0);
}

/* A safetensors buffer from a JSON header and data bytes. */
static size_t make_st(unsigned char *buf, const char *json, size_t dlen)
{
    size_t n = strlen(json);
    for (int k = 0; k < 8; k++)
        buf[k] = (unsigned char)((uint64_t)n >> (8 * k));
    memcpy(buf + 8, json, n);
    memset(buf + 8 + n, 0x3f, dlen);
    return 8 + n + dlen;
}

static void expect_st_error(const char *json, size_t dlen, const char *needle)
{
    unsigned char buf[1024];
    size_t len = make_st(buf, json, dlen);
    nb_safetensors *st = NULL;
    assert_int_equal(nb_safetensors_parse(buf, len, &st), NB_ERR_FORMAT);
    assert_null(st);
    if (!contains(nb_last_error(), needle)) {
        print_error("for %s: message '%s' lacks '%s'\n", json, nb_last_error(), needle);
        fail();
    }
}

static void test_safetensors_hostile(void **state)
{
    (void)state;
    /* Every prefix of a valid file. */
    size_t len;
    unsigned char *good = slurp(FIXTURE("mixed.safetensors"), &len);
    nb_safetensors *st = NULL;
    for (size_t n = 0; n < len; n++) {
        assert_int_equal(nb_safetensors_parse(good, n, &st), NB_ERR_FORMAT);
        assert_null(st);
    }
    /* Header lengths that lie. */
    good[0] = 0xff;
    good[1] = 0xff;
    assert_int_equal(nb_safetensors_parse(good, len, &st), NB_ERR_FORMAT);
    assert_error_has("header length");
    memset(good, 0xff, 8);
    assert_int_equal(nb_safetensors_parse(good, len, &st), NB_ERR_FORMAT);
    assert_error_has("limit");
    free(good);

    const char *e1 = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    unsigned char buf[256];
    size_t n = make_st(buf, e1, 8);
    assert_int_equal(nb_safetensors_parse(buf, n, &st), NB_OK);
    nb_safetensors_free(st);

    expect_st_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "past the end");
    expect_st_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "after end");
    expect_st_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 16, "12 bytes");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                    16, "overlap");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                    16, "twice");
    expect_st_error("{\"w\":{\"dtype\":\"C64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, "'C64'");
    expect_st_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1048576,1048576],\"data_offsets\":[0,8]}}", 8,
                    "(1048576, 1048576)");
    expect_st_error("{\"w\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
                    "too many elements");
    expect_st_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "non-negative");
    expect_st_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, "non-negative integer");
    expect_st_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                    "more than 8");
    expect_st_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,1e300]}}", 4, "data_offsets");
    expect_st_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "data_offsets");
    expect_st_error("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype");
    expect_st_error("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "shape");
    expect_st_error("{\"w\":[1,2]}", 4, "expected an object");
    expect_st_error("[1,2]", 4, "not an object");
    expect_st_error("{\"w\":", 4, "not valid JSON");
    expect_st_error("{} x", 0, "after the JSON");
    expect_st_error("{\"__metadata__\":{\"k\":1}}", 0, "not a string");
    expect_st_error("{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, "twice");
    expect_st_error("{\"__metadata__\":[]}", 0, "not an object");
    char json[600];
    char name[300];
    memset(name, 'x', 256);
    name[256] = '\0';
    snprintf(json, sizeof json, "{\"%s\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", name);
    expect_st_error(json, 1, "longer than 255");

    /* Allowed: zero-size tensors sharing an offset, padding spaces, gaps. */
    n = make_st(buf,
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
                "\"b\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,4]},"
                "\"c\":{\"dtype\":\"I16\",\"shape\":[],\"data_offsets\":[6,8]}}    ",
                8);
    assert_int_equal(nb_safetensors_parse(buf, n, &st), NB_OK);
    assert_int_equal(nb_safetensors_count(st), 3);
    assert_int_equal(nb_safetensors_get(st, "a")->size, 0);
    assert_int_equal(nb_safetensors_get(st, "c")->rank, 0);
    assert_float_equal(nb_safetensors_get(st, "c")->data[0], 0x3f3f, 0);
    nb_safetensors_free(st);
}

/* ------------------------------------------------------------------ files */

static void test_files(void **state)
{
    (void)state;
    const char *bad = NB_BINARY_DIR "/no-such-dir/out/model.safetensors";
    assert_int_equal(nb_write_file_atomic(bad, "x", 1), NB_ERR_IO);
    assert_error_has("'" NB_BINARY_DIR "/no-such-dir/out/model.safetensors'");
    assert_error_has("No such file or directory");
    assert_error_has("does the directory exist?");
    nb_safetensors *st = nb_safetensors_new();
    assert_int_equal(nb_safetensors_write(bad, st, 0), NB_ERR_IO);
    assert_error_has("no-such-dir/out/model.safetensors");
    nb_safetensors_free(st);

    /* A write over a directory fails at the rename: the temporary file must
     * not be left behind. */
    const char *dir = TMPFILE("a-directory");
    mkdir(dir, 0755);
    assert_int_equal(nb_write_file_atomic(dir, "abc", 3), NB_ERR_IO);
    assert_error_has("a-directory");
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dir, (long)getpid());
    assert_int_not_equal(access(tmp, F_OK), 0);

    /* Replace a file; read it back; a size limit. */
    const char *path = TMPFILE("atomic.bin");
    assert_int_equal(nb_write_file_atomic(path, "first version", 13), NB_OK);
    assert_int_equal(nb_write_file_atomic(path, "second", 6), NB_OK);
    void *data;
    size_t len;
    assert_int_equal(nb_read_file(path, 0, &data, &len), NB_OK);
    assert_int_equal(len, 6);
    assert_memory_equal(data, "second", 6);
    free(data);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    assert_int_not_equal(access(tmp, F_OK), 0);
    assert_int_equal(nb_read_file(path, 5, &data, &len), NB_ERR_TOO_LARGE);
    assert_null(data);
    assert_int_equal(nb_read_file(path, 6, &data, &len), NB_OK);
    free(data);
    /* An empty file. */
    assert_int_equal(nb_write_file_atomic(path, NULL, 0), NB_OK);
    assert_int_equal(nb_read_file(path, 0, &data, &len), NB_OK);
    assert_int_equal(len, 0);
    free(data);
    assert_int_equal(nb_read_file(TMPFILE("nope.bin"), 0, &data, &len), NB_ERR_IO);
    assert_error_has("nope.bin");
    assert_int_equal(nb_read_file(dir, 0, &data, &len), NB_ERR_IO);
    assert_error_has("directory");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idx_fashion_mnist_t10k),
        cmocka_unit_test(test_idx_types),
        cmocka_unit_test(test_idx_hostile),
        cmocka_unit_test(test_npy_numpy_fixtures),
        cmocka_unit_test(test_npy_roundtrip),
        cmocka_unit_test(test_npy_hostile),
        cmocka_unit_test(test_csv_basic),
        cmocka_unit_test(test_csv_errors),
        cmocka_unit_test(test_safetensors_fixture),
        cmocka_unit_test(test_safetensors_roundtrip),
        cmocka_unit_test(test_safetensors_hostile),
        cmocka_unit_test(test_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
