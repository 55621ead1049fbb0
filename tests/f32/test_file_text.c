/* Text that comes from files, in messages and labels (issue 14, reviewers):
 * nb_escape_text and nb_set_error's escaping of control characters, hostile
 * tensor names, labels and spec text quoted escaped, a NUL inside a
 * safetensors string refused (nabla.gemm), CSV quotes ("" is one quote),
 * short CSV rows that never take another field as their label, and
 * `nabla predict` refusing labels that are no class of the model.
 * docs/bad-inputs.md's rows H1-H6. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "f32/nb_test_util.h"

#include <sys/stat.h>

static char dir[1024];

static const char *path_in(const char *name) { return tu_path_in(dir, name); }

/* Runs the CLI with the arguments; *out gets stdout and stderr. */
static int cli(char **out, ...)
{
    const char *args[64];
    int n = 0;
    va_list ap;
    va_start(ap, out);
    for (const char *a; n < 63 && (a = va_arg(ap, const char *));)
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    return tu_run_cli(args, out, NULL);
}
#define CLI(out, ...) cli(out, __VA_ARGS__, (const char *)NULL)

/* No byte of text below 0x20 or DEL: nothing a terminal acts on. */
static void assert_no_controls(const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if ((*p < 0x20 && *p != '\n') || *p == 0x7F) {
            fprintf(stderr, "control byte 0x%02x at %td in:\n%s\n", *p, (const char *)p - text, text);
            fail();
        }
}

static void put_text(const char *name, const char *text) { assert_int_equal(tu_write(path_in(name), text, strlen(text)), 0); }

/* A safetensors file of one 2-value F32 tensor under the raw JSON header. */
static void put_safetensors(const char *name, const char *header, size_t hlen)
{
    unsigned char buf[1024] = {0};
    assert_true(hlen + 16 <= sizeof buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, header, hlen);
    assert_int_equal(tu_write(path_in(name), buf, 8 + hlen + 8), 0);
}

static void test_escape_text(void **state)
{
    (void)state;
    char b[64];
    assert_string_equal(nb_escape_text(b, sizeof b, "0.kernel", SIZE_MAX), "0.kernel");
    assert_string_equal(nb_escape_text(b, sizeof b, "a\nb\x1b[31mc\x7f", SIZE_MAX), "a\\x0ab\\x1b[31mc\\x7f");
    assert_string_equal(nb_escape_text(b, sizeof b, "back\\slash", SIZE_MAX), "back\\\\slash");
    assert_string_equal(nb_escape_text(b, sizeof b, "caf\xc3\xa9 \xe2\x82\xac", SIZE_MAX), "caf\xc3\xa9 \xe2\x82\xac");
    /* invalid UTF-8, an overlong '/', a cut sequence, C1 CSI, a bidi override, a surrogate */
    assert_string_equal(nb_escape_text(b, sizeof b, "\xff\xc0\xaf\xe2\x82", SIZE_MAX), "\\xff\\xc0\\xaf\\xe2\\x82");
    assert_string_equal(nb_escape_text(b, sizeof b, "\xc2\x9b" "2J\xe2\x80\xae", SIZE_MAX), "\\xc2\\x9b2J\\xe2\\x80\\xae");
    assert_string_equal(nb_escape_text(b, sizeof b, "\xed\xa0\x80", SIZE_MAX), "\\xed\\xa0\\x80");
    /* U+2028 and U+2029 end a line for Unicode; U+061C, U+200E, U+200F are bidi marks (review) */
    assert_string_equal(nb_escape_text(b, sizeof b, "a\xe2\x80\xa8" "b\xe2\x80\xa9", SIZE_MAX),
                        "a\\xe2\\x80\\xa8b\\xe2\\x80\\xa9");
    assert_string_equal(nb_escape_text(b, sizeof b, "\xd8\x9c\xe2\x80\x8e\xe2\x80\x8f", SIZE_MAX),
                        "\\xd8\\x9c\\xe2\\x80\\x8e\\xe2\\x80\\x8f");
    /* len bounds the text; cap cuts it with "..." and never splits an escape */
    assert_string_equal(nb_escape_text(b, sizeof b, "abcdef", 3), "abc"); /* a line of a longer text: not cut */
    assert_string_equal(nb_escape_text(b, 8, "abcdefghij", SIZE_MAX), "abcd...");
    assert_string_equal(nb_escape_text(b, 8, "abcdefg", SIZE_MAX), "abcdefg");
    assert_string_equal(nb_escape_text(b, 9, "ab\x1b\x1b\x1b", SIZE_MAX), "ab...");
    assert_string_equal(nb_escape_text(b, 2, "abc", SIZE_MAX), "a");
    assert_string_equal(nb_escape_text(b, 1, "abc", SIZE_MAX), "");
    assert_string_equal(nb_escape_text(b, sizeof b, NULL, 5), "");
    assert_string_equal(nb_escape_text(b, sizeof b, "", SIZE_MAX), "");
    assert_null(nb_escape_text(NULL, 8, "abc", SIZE_MAX));
    b[0] = 'x';
    nb_escape_text(b, 0, "abc", SIZE_MAX);
    assert_int_equal(b[0], 'x'); /* cap 0: nothing written */
}

/* Every message is one line without control characters, and wrapping a
 * message in another leaves its escapes as they were. */
static void test_set_error_escapes_controls(void **state)
{
    (void)state;
    assert_int_equal(nb_set_error(NB_ERR_FORMAT, "name '%s'", "a\nb\x1b[2J\r\t"), NB_ERR_FORMAT);
    assert_string_equal(nb_last_error(), "name 'a\\x0ab\\x1b[2J\\x0d\\x09'");
    char copy[512];
    snprintf(copy, sizeof copy, "%s", nb_last_error());
    nb_set_error(NB_ERR_FORMAT, "%s", copy);
    assert_string_equal(nb_last_error(), copy);
    /* a message near the buffer's size is cut, not overrun */
    char big[600];
    memset(big, '\x1b', sizeof big - 1), big[sizeof big - 1] = '\0';
    nb_set_error(NB_ERR_FORMAT, "%s", big);
    assert_true(strlen(nb_last_error()) < 512);
    assert_no_controls(nb_last_error());
}

/* Row H1: a tensor name with a newline and an ANSI escape (library, show). */
static void test_hostile_tensor_name(void **state)
{
    (void)state;
    const char h[] = "{\"w\\n\\u001b[31mforged\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,9]}}";
    put_safetensors("name.safetensors", h, sizeof h - 1);
    nb_safetensors *st = (nb_safetensors *)1;
    assert_int_equal(nb_safetensors_read(path_in("name.safetensors"), &st), NB_ERR_FORMAT);
    char want[1400];
    tu_fmt(want, sizeof want,
           "%s: header: tensor 'w\\x0a\\x1b[31mforged': field 'data_offsets': end 9 is past the end of the data (8 "
           "bytes)",
           path_in("name.safetensors"));
    assert_string_equal(nb_last_error(), want);
    /* the same name in a valid file: nabla show lists it escaped */
    const char ok[] = "{\"w\\n\\u001b[31mforged\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    put_safetensors("name2.safetensors", ok, sizeof ok - 1);
    char *out;
    assert_int_equal(CLI(&out, "show", path_in("name2.safetensors")), 0);
    assert_has(out, "w\\x0a\\x1b[31mforged  (2,)  F32  2 values");
    assert_no_controls(out);
    free(out);
}

/* Row H1 too: a .npy header's key and dtype are the file's text. */
static void test_hostile_npy_header(void **state)
{
    (void)state;
    const char *hdr[2] = {"{'d\x1b[2J': '<f4', 'fortran_order': False, 'shape': (2,), }",
                          "{'descr': '<\x1b" "8', 'fortran_order': False, 'shape': (2,), }"};
    const char *want[2] = {"header: unknown key 'd\\x1b[2J' (expected descr, fortran_order, shape)",
                           "header: field 'descr': dtype '<\\x1b8' is not supported"};
    for (int k = 0; k < 2; k++) {
        unsigned char buf[256] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
        size_t n = strlen(hdr[k]), len = 128 - 10; /* header padded to 128 bytes in all, ending in '\n' */
        assert_true(n < len);
        memset(buf + 10, ' ', len);
        memcpy(buf + 10, hdr[k], n);
        buf[10 + len - 1] = '\n';
        buf[8] = (unsigned char)len, buf[9] = 0;
        assert_int_equal(tu_write(path_in("h.npy"), buf, 128 + 8), 0);
        nb_tensor *t = (nb_tensor *)1;
        assert_int_equal(nb_npy_read(path_in("h.npy"), &t), NB_ERR_FORMAT);
        assert_has(nb_last_error(), want[k]);
        assert_no_controls(nb_last_error());
    }
}

/* Row H2: a NUL inside a string of the header (nabla.gemm by \u0000, a raw
 * 0 byte in another value) is refused; an escaped backslash before "u0000"
 * is text and kept whole. */
static void test_nul_in_header_strings(void **state)
{
    (void)state;
    const char h[] = "{\"__metadata__\":{\"nabla.gemm\":\"fixed\\u0000,nn.m1-2=avx512\"},"
                     "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    put_safetensors("nul.safetensors", h, sizeof h - 1);
    nb_safetensors *st = (nb_safetensors *)1;
    assert_int_equal(nb_safetensors_read(path_in("nul.safetensors"), &st), NB_ERR_FORMAT);
    assert_null(st);
    char want[1400];
    tu_fmt(want, sizeof want,
           "%s: header: a string holds a NUL byte (\\u0000) at byte 36 of the header: names and metadata end at a "
           "NUL, so its rest would be lost (a damaged or hand-made file)",
           path_in("nul.safetensors"));
    assert_string_equal(nb_last_error(), want);
    const char raw[] = "{\"__metadata__\":{\"x\":\"a\0b\"},\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    put_safetensors("raw.safetensors", raw, sizeof raw - 1);
    assert_int_equal(nb_safetensors_read(path_in("raw.safetensors"), &st), NB_ERR_FORMAT);
    assert_has(nb_last_error(), "header: a string holds a NUL byte (a raw 0 byte) at byte 23 of the header");
    const char text[] = "{\"__metadata__\":{\"note\":\"a\\\\u0000b\"},"
                        "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    put_safetensors("text.safetensors", text, sizeof text - 1);
    assert_int_equal(nb_safetensors_read(path_in("text.safetensors"), &st), NB_OK);
    assert_string_equal(nb_safetensors_meta(st, "note"), "a\\u0000b");
    nb_safetensors_free(st);
    /* the CLI: --resume of such a checkpoint stops at reading it */
    char *out;
    assert_int_equal(CLI(&out, "train", "--data", "xor", "--resume", "--out", path_in("nul.safetensors")), 1);
    assert_has(out, "nabla train: --resume: reading the checkpoint: ");
    assert_has(out, "a string holds a NUL byte (\\u0000)");
    free(out);
}

/* A small CSV data set: two numbers and a label column of the given names
 * (one per row, cycling), 12 rows. */
static void put_label_csv(const char *name, const char *const *labels, int nlabels)
{
    char text[2048];
    size_t u = (size_t)snprintf(text, sizeof text, "x,y,label\n");
    for (int i = 0; i < 12; i++)
        u += (size_t)snprintf(text + u, sizeof text - u, "%d,%d,%s\n", i % 2, (i / 2) % 2, labels[i % nlabels]);
    assert_true(u < sizeof text);
    put_text(name, text);
}

/* Row H3: labels quoted as RFC 4180 says ("" inside quotes is one "), kept
 * in the model file; a label with an ANSI escape, quoted escaped. */
static void test_csv_quoted_labels(void **state)
{
    (void)state;
    const char *labels[2] = {"\"say \"\"hi\"\"\"", "plain"};
    put_label_csv("q.csv", labels, 2);
    char *out, m[1200]; /* (path_in's buffers are reused) */
    tu_fmt(m, sizeof m, "%s", path_in("q.safetensors"));
    assert_int_equal(CLI(&out, "train", "--data", path_in("q.csv"), "--model", "dense 2", "--epochs", "1", "--out", m),
                     0);
    assert_has(out, "the labels are names: 2 classes, numbered in sorted order: 0 plain, 1 say \"hi\"\n");
    free(out);
    nb_safetensors *st;
    assert_int_equal(nb_safetensors_read(m, &st), NB_OK);
    assert_string_equal(nb_safetensors_meta(st, "nabla.classes"), "plain\nsay \"hi\"");
    nb_safetensors_free(st);
    /* the same names read back by eval: every row is one of the model's classes */
    assert_int_equal(CLI(&out, "eval", "--model", m, "--data", path_in("q.csv")), 0);
    assert_has(out, "12 examples");
    free(out);
    const char *evil[2] = {"plain", "\x1b[2Jevil"};
    put_label_csv("evil.csv", evil, 2);
    assert_int_equal(CLI(&out, "eval", "--model", m, "--data", path_in("evil.csv")), 1);
    char want[1400];
    tu_fmt(want, sizeof want,
           "nabla eval: loading the data: '%s': line 3: label '\\x1b[2Jevil' is not one of the model's 2 classes",
           path_in("evil.csv"));
    assert_has(out, want);
    assert_no_controls(out);
    free(out);
    /* a new model from it: the names are listed escaped, then refused as class names */
    assert_int_equal(CLI(&out, "train", "--data", path_in("evil.csv"), "--model", "dense 2", "--epochs", "1", "--out",
                         path_in("evil.safetensors")),
                     1);
    assert_has(out, "numbered in sorted order: 0 \\x1b[2Jevil, 1 plain");
    assert_has(out, "nabla train: the class names: class names: control character 0x1b in the names");
    assert_no_controls(out);
    assert_int_equal(access(path_in("evil.safetensors"), F_OK), -1);
    free(out);
}

/* Row H4: a short row never takes another field as its label: the parser's
 * "fields" message, not a label that is field 1 of the same row. */
static void test_csv_short_rows(void **state)
{
    (void)state;
    put_text("short.csv", "x,y,label\n0,0,cat\n1,7\n0,1,dog\n");
    char *out, want[1400];
    assert_int_equal(CLI(&out, "train", "--data", path_in("short.csv"), "--model", "dense 2", "--epochs", "1", "--out",
                         path_in("short.safetensors")),
                     1);
    assert_has(out, "the labels are names: 2 classes, numbered in sorted order: 0 cat, 1 dog\n");
    tu_fmt(want, sizeof want, "nabla train: loading the training data: %s: line 3 has 2 fields, expected 3",
           path_in("short.csv"));
    assert_has(out, want);
    assert_null(strstr(out, "0 7")); /* the short row's y was not taken as a class */
    free(out);
    assert_int_equal(access(path_in("short.safetensors"), F_OK), -1);
    /* with the model's names known, the same: no "label '7' is not one of ..." */
    const char *cats[2] = {"cat", "dog"};
    put_label_csv("cats.csv", cats, 2);
    assert_int_equal(CLI(&out, "train", "--data", path_in("cats.csv"), "--model", "dense 2", "--epochs", "1", "--out",
                         path_in("cats.safetensors")),
                     0);
    free(out);
    put_text("short2.csv", "x,y,label\n0,0,cat\n7\n");
    assert_int_equal(CLI(&out, "eval", "--model", path_in("cats.safetensors"), "--data", path_in("short2.csv")), 1);
    tu_fmt(want, sizeof want, "%s: line 3 has 1 fields, expected 3", path_in("short2.csv"));
    assert_has(out, want);
    assert_null(strstr(out, "label '7'"));
    free(out);
    /* a NUL byte inside a label (review): the rows after it were dropped
     * without a word; refused with its line (row H8) */
    static const char nul_csv[] = "a,b,label\n1,2,c\0at\n3,4,dog\n5,6,dog\n7,8,cat\n";
    assert_int_equal(tu_write(path_in("nul.csv"), nul_csv, sizeof nul_csv - 1), 0);
    assert_int_equal(CLI(&out, "train", "--data", path_in("nul.csv"), "--model", "dense 2", "--epochs", "1", "--out",
                         path_in("nulcsv.safetensors")),
                     1);
    tu_fmt(want, sizeof want, "%s: line 2 holds a NUL byte: a CSV file is text; remove it", path_in("nul.csv"));
    assert_has(out, want);
    free(out);
    assert_int_equal(access(path_in("nulcsv.safetensors"), F_OK), -1);
    /* an unterminated quote in the label column became a class named '"cat' (review; row H9) */
    put_text("quote.csv", "a,b,label\n1,2,\"cat\n3,4,dog\n");
    assert_int_equal(CLI(&out, "train", "--data", path_in("quote.csv"), "--model", "dense 2", "--epochs", "1", "--out",
                         path_in("quote.safetensors")),
                     1);
    tu_fmt(want, sizeof want, "%s: line 2, column 3: unterminated quoted field", path_in("quote.csv"));
    assert_has(out, want);
    free(out);
}

/* Row H5: predict's labels (from --data) must be class indices of the
 * model's outputs: 5 and -1 for 2 classes, 1e30, NaN, 0.5; nothing written. */
static void test_predict_label_range(void **state)
{
    (void)state;
    put_text("n.csv", "x,y,l\n0,0,0\n1,1,1\n0,1,0\n1,0,1\n");
    char *out, m[1200]; /* (path_in's buffers are reused) */
    tu_fmt(m, sizeof m, "%s", path_in("n.safetensors"));
    assert_int_equal(CLI(&out, "train", "--data", path_in("n.csv"), "--model", "dense 2", "--epochs", "1", "--out", m),
                     0);
    free(out);
    const char *bad[5] = {"5", "-1", "1e30", "nan", "0.5"}, *shown[5] = {"5", "-1", "1e+30", "nan", "0.5"};
    for (int k = 0; k < 5; k++) {
        char text[128], want[1400];
        tu_fmt(text, sizeof text, "x,y,l\n0,0,0\n1,1,%s\n0,1,1\n", bad[k]);
        put_text("bad.csv", text);
        assert_int_equal(CLI(&out, "predict", "--model", m, "--data", path_in("bad.csv"), "-o", path_in("p.npy")), 1);
        tu_fmt(want, sizeof want,
               "nabla predict: the test split of '%s' examples 0..2: labels: example 1 has label %s, not a class "
               "index 0..1 (2 classes)",
               path_in("bad.csv"), shown[k]);
        assert_has(out, want);
        assert_null(strstr(out, "(label:"));
        free(out);
        assert_int_equal(access(path_in("p.npy"), F_OK), -1);
    }
    /* after --start the index is of the rows read, and says so */
    put_text("bad.csv", "x,y,l\n0,0,0\n1,1,0\n0,1,7\n");
    assert_int_equal(CLI(&out, "predict", "--model", m, "--data", path_in("bad.csv"), "--start", "1"), 1);
    assert_has(out, "labels (example 0 is example 1): example 1 has label 7, not a class index 0..1 (2 classes)");
    free(out);
    /* labels in range: printed, and counted right or wrong */
    assert_int_equal(CLI(&out, "predict", "--model", m, "--data", path_in("n.csv"), "--top", "1"), 0);
    assert_has(out, "of 4 right");
    free(out);
}

/* Row H5 too: an IDX data set whose test labels run past the model's 3
 * classes (1..3): predict and saliency (which draws the "true" class
 * under each image) refuse them; no picture is written. */
static void test_data_set_labels_out_of_range(void **state)
{
    (void)state;
    char ds[1200], m[1200], *out;
    tu_fmt(ds, sizeof ds, "%s", path_in("ds"));
    tu_fmt(m, sizeof m, "%s", path_in("ds.safetensors"));
    assert_int_equal(mkdir(ds, 0755), 0);
    tu_write_dataset(ds, "train", 12, 12, 4, 4, 3, 0);
    tu_write_dataset(ds, "t10k", 12, 12, 4, 4, 3, 1);
    assert_int_equal(CLI(&out, "train", "--data", ds, "--model", "flatten; dense 3", "--epochs", "1", "--no-test",
                         "--out", m),
                     0);
    free(out);
    assert_int_equal(CLI(&out, "predict", "--model", m, "--data", ds, "--count", "4"), 1);
    assert_has(out, "labels: example 2 has label 3, not a class index 0..2 (3 classes)");
    free(out);
    assert_int_equal(CLI(&out, "saliency", "--model", m, "--data", ds, "--count", "4", "-o", path_in("s.png")), 1);
    assert_has(out, "nabla saliency: the test labels: example 2 has label 3, not a class index 0..2 (3 classes) (the "
                    "model's outputs are its classes)");
    free(out);
    assert_int_equal(access(path_in("s.png"), F_OK), -1);
    /* the first two examples' labels (1, 2) are classes: both commands run */
    assert_int_equal(CLI(&out, "saliency", "--model", m, "--data", ds, "--count", "2", "-o", path_in("s.png")), 0);
    free(out);
    size_t n = 0;
    char *png = tu_read(path_in("s.png"), &n);
    assert_non_null(png);
    assert_true(n > 8 && !memcmp(png, "\x89PNG\r\n\x1a\n", 8));
    free(png);
    assert_int_equal(CLI(&out, "predict", "--model", m, "--data", ds, "--count", "2", "--top", "1"), 0);
    assert_has(out, "of 2 right");
    free(out);
}

/* Row H6: spec text with an escape sequence (from --model or a model
 * file's nabla.spec) is quoted escaped. */
static void test_spec_text_escaped(void **state)
{
    (void)state;
    char *out;
    assert_int_equal(CLI(&out, "train", "--data", "xor", "--model", "dense 2; \x1b[2Jbad", "--epochs", "1", "--out",
                         path_in("spec.safetensors")),
                     1);
    assert_has(out, "nabla train: building the model: spec layer 1 (line 1, '\\x1b[2Jbad'): unknown layer '\\x1b[2Jbad'");
    assert_no_controls(out);
    free(out);
    nb_model *mdl = (nb_model *)1;
    assert_int_not_equal(nb_model_from_spec("dense 2\x07; dense 2", 2, (const int64_t[]){2}, &mdl), NB_OK);
    assert_no_controls(nb_last_error());
}

static int setup(void **state)
{
    (void)state;
    tu_mkdtemp(dir, sizeof dir, "filetext");
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
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_text),
        cmocka_unit_test(test_set_error_escapes_controls),
        cmocka_unit_test(test_hostile_tensor_name),
        cmocka_unit_test(test_hostile_npy_header),
        cmocka_unit_test(test_nul_in_header_strings),
        cmocka_unit_test(test_csv_quoted_labels),
        cmocka_unit_test(test_csv_short_rows),
        cmocka_unit_test(test_predict_label_range),
        cmocka_unit_test(test_data_set_labels_out_of_range),
        cmocka_unit_test(test_spec_text_escaped),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
