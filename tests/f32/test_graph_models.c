/* Graph models (issue 13): `as NAME`, `from`, `add`, `concat` and
 * `globalavgpool` parse, print back as themselves, build the graph they
 * say (values checked by hand), refuse what makes no graph with a message
 * naming the entry (each a row of docs/bad-inputs.md, "Graph models"),
 * keep a named convolution out of the conv+maxpool fusion, and survive a
 * save and load bit for bit. NB_SHOW=1 prints the refusals' messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the headers it needs */

#include <math.h>

#include "nb_test_util.h"
#include "nn/nn_internal.h" /* layer_out, fused_into: what the fusion did */

/* The issue's residual block with a projection shortcut, plus a concat. */
static const char *resblock = "conv2d 4 3 padding=same; relu as a\n"
                              "conv2d 6 3 stride=2 padding=same; relu\n"
                              "conv2d 6 3 padding=same as main\n"
                              "from a; conv2d 6 1 stride=2 as short\n"
                              "add main; relu as sum\n"
                              "from short; concat sum input_half # a comment\n";

static void test_print_parse_print(void **state)
{
    (void)state;
    const char *spec = "conv2d 4 3 padding=same; relu as a; conv2d 6 3 stride=2 padding=same; relu; "
                       "conv2d 6 3 padding=same as main; from a; conv2d 6 1 stride=2 as short; add main; relu as sum; "
                       "from short; concat sum short; globalavgpool; dense 3";
    nb_model *m, *m2;
    assert_int_equal(nb_model_from_spec(spec, 3, (const int64_t[]){8, 8, 1}, &m), NB_OK);
    assert_string_equal(nb_model_spec(m), spec); /* printed as written */
    assert_int_equal(nb_model_num_layers(m), 13);
    assert_string_equal(nb_model_layer(m, 4)->name, "main");
    assert_int_equal(nb_model_layer(m, 10)->nrefs, 2);
    assert_string_equal(nb_model_layer(m, 10)->refs[1], "short");
    int64_t shape[4];
    assert_int_equal(nb_model_layer_shape(m, 10, shape), 3);
    assert_true(shape[0] == 4 && shape[1] == 4 && shape[2] == 18); /* 6 + 6 + 6 channels */
    assert_int_equal(nb_model_layer_shape(m, 11, shape), 1);
    assert_true(shape[0] == 18);
    assert_int_equal(nb_model_from_spec(nb_model_spec(m), 3, (const int64_t[]){8, 8, 1}, &m2), NB_OK);
    assert_string_equal(nb_model_spec(m2), spec); /* a fixed point */
    nb_model_free(m2);
    nb_model_free(m);
    /* New lines, comments and a name used before a later one. */
    nb_layer_spec *l;
    int n;
    assert_int_equal(nb_spec_parse(resblock, &l, &n), NB_OK);
    assert_int_equal(n, 11);
    char b[400];
    assert_string_equal(nb_layer_spec_str(&l[10], b, sizeof b), "concat sum input_half");
    assert_string_equal(nb_layer_spec_str(&l[9], b, sizeof b), "from short");
    assert_string_equal(nb_layer_spec_str(&l[8], b, sizeof b), "relu as sum");
    free(l);
}

/* from, add and concat compute what they say: y = concat(x + relu(x), x). */
static void test_values(void **state)
{
    (void)state;
    nb_model *m;
    assert_int_equal(nb_model_from_spec("relu as r; from input; add r; concat input; globalavgpool", 3,
                                        (const int64_t[]){2, 2, 2}, &m),
                     NB_OK);
    nb_tensor *x = nb_value(nb_model_input(m));
    const float v[8] = {1, -2, 3, -4, 0.5f, 6, -7, 8};
    memcpy(x->data, v, sizeof v);
    assert_int_equal(nb_forward(nb_model_graph(m)), NB_OK);
    const nb_tensor *y = nb_value(nb_model_output(m));
    assert_int_equal(y->rank, 2);
    assert_int_equal(y->shape[1], 4);
    /* channel 0: x = 1, 3, 0.5, -7 -> x + relu x = 2, 6, 1, -7, mean 0.5;
     * channel 1: -2, -4, 6, 8 -> -2, -4, 12, 16, mean 5.5; then x's means. */
    assert_float_equal(y->data[0], 0.5f, 1e-6);
    assert_float_equal(y->data[1], 5.5f, 1e-6);
    assert_float_equal(y->data[2], -0.625f, 1e-6);
    assert_float_equal(y->data[3], 2.0f, 1e-6);
    nb_model_free(m);
}

/* A convolution whose output is named is read elsewhere: the max pool
 * after it must not fuse it away (a fused convolution is never computed). */
static void test_named_conv_not_fused(void **state)
{
    (void)state;
    nb_model *fused, *named;
    const int64_t in[3] = {6, 6, 1};
    assert_int_equal(nb_model_from_spec("conv2d 3 3 relu; maxpool 2; globalavgpool", 3, in, &fused), NB_OK);
    assert_int_equal(nb_model_from_spec("conv2d 3 3 relu as c; maxpool 2; globalavgpool as p; from c; "
                                        "globalavgpool; add p",
                                        3, in, &named),
                     NB_OK);
    assert_non_null(fused->layer_out[0]->fused_into); /* the test would see a fusion */
    assert_null(named->layer_out[0]->fused_into);
    assert_int_equal(nb_model_init(fused, NB_INIT_HE_UNIFORM, 5), NB_OK);
    assert_int_equal(nb_model_init(named, NB_INIT_HE_UNIFORM, 5), NB_OK);
    for (int i = 0; i < 2; i++) {
        nb_tensor *a = nb_value(nb_model_param(fused, i)), *b = nb_value(nb_model_param(named, i));
        for (int64_t k = 0; k < a->size; k++)
            a->data[k] = b->data[k] = (float)(0.3 + 0.1 * (double)((k * 7) % 5));
    }
    nb_tensor *xa = nb_value(nb_model_input(fused)), *xb = nb_value(nb_model_input(named));
    for (int64_t k = 0; k < xa->size; k++)
        xa->data[k] = xb->data[k] = (float)((k * 5) % 11) / 11.0f;
    assert_int_equal(nb_forward(nb_model_graph(fused)), NB_OK);
    assert_int_equal(nb_forward(nb_model_graph(named)), NB_OK);
    /* named = mean(maxpool(conv)) + mean(conv): the conv's own value exists. */
    const nb_tensor *c = nb_value(named->layer_out[0]);
    for (int ch = 0; ch < 3; ch++) {
        double mean = 0;
        for (int64_t p = 0; p < 16; p++)
            mean += c->data[p * 3 + ch];
        mean /= 16;
        assert_true(mean > 0.1);
        assert_float_equal(nb_value(nb_model_output(named))->data[ch],
                           nb_value(nb_model_output(fused))->data[ch] + (float)mean, 1e-5);
    }
    nb_model_free(fused);
    nb_model_free(named);
}

/* Saved and loaded: the same spec, parameters and outputs, bit for bit. */
static void test_save_load(void **state)
{
    (void)state;
    char dir[512], path[600];
    tu_mkdtemp(dir, sizeof dir, "graph");
    tu_fmt(path, sizeof path, "%s/g.safetensors", dir);
    const char *spec = "conv2d 4 3 relu padding=same as a; conv2d 4 3 padding=same; add a; from a; concat input; "
                       "conv2d 2 3 padding=same as b; from a; conv2d 2 1; concat b; globalavgpool; dense 3";
    nb_model *m, *l;
    assert_int_equal(nb_model_from_spec(spec, 3, (const int64_t[]){5, 5, 1}, &m), NB_ERR_FORMAT); /* unused add */
    spec = "conv2d 4 3 relu padding=same as a; conv2d 4 3 padding=same; add a as s; from a; concat input s; "
           "conv2d 2 3 padding=same as b; from a; conv2d 2 1; concat b; globalavgpool; dense 3";
    assert_int_equal(nb_model_from_spec(spec, 3, (const int64_t[]){5, 5, 1}, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 11), NB_OK);
    assert_int_equal(nb_model_save(m, path), NB_OK);
    assert_int_equal(nb_model_load(path, &l), NB_OK);
    assert_string_equal(nb_model_spec(l), spec);
    assert_int_equal(nb_model_param_count(l), nb_model_param_count(m));
    for (int i = 0; i < nb_model_param_count(m); i++) {
        const nb_tensor *a = nb_value(nb_model_param(m, i)), *b = nb_value(nb_model_param(l, i));
        assert_string_equal(nb_node_name(nb_model_param(m, i)), nb_node_name(nb_model_param(l, i)));
        assert_memory_equal(a->data, b->data, (size_t)a->size * sizeof(float));
    }
    nb_tensor *xa = nb_value(nb_model_input(m)), *xb = nb_value(nb_model_input(l));
    for (int64_t k = 0; k < xa->size; k++)
        xa->data[k] = xb->data[k] = (float)k / 25.0f;
    assert_int_equal(nb_forward(nb_model_graph(m)), NB_OK);
    assert_int_equal(nb_forward(nb_model_graph(l)), NB_OK);
    assert_memory_equal(nb_value(nb_model_output(m))->data, nb_value(nb_model_output(l))->data, 3 * sizeof(float));
    assert_true(fabsf(nb_value(nb_model_output(m))->data[0]) > 1e-6f);
    nb_model_free(m);
    nb_model_free(l);
    tu_rm_rf(dir);
}

/* summary names each layer's inputs in a graph (and only there). */
static void test_summary_inputs(void **state)
{
    (void)state;
    nb_model *m;
    char buf[4096];
    assert_int_equal(nb_model_from_spec("conv2d 2 3 as a; conv2d 2 1; add a; from a; concat input", 3,
                                        (const int64_t[]){6, 6, 1}, &m),
                     NB_ERR_FORMAT); /* the add's output is an unused branch */
    assert_int_equal(nb_model_from_spec("conv2d 2 3 as a; conv2d 2 1 as b; from a; add b; conv2d 2 1; concat a b", 3,
                                        (const int64_t[]){6, 6, 1}, &m),
                     NB_OK);
    assert_int_equal(nb_model_summary(m, buf, sizeof buf), NB_OK);
    assert_non_null(strstr(buf, "Param #  Inputs\n"));
    assert_non_null(strstr(buf, " 20  input\n"));
    assert_non_null(strstr(buf, "  0  a\n")); /* from a */
    assert_non_null(strstr(buf, "add b                              (N, 4, 4, 2)                      0  a, b\n"));
    assert_non_null(strstr(buf, "  6  3\n")); /* the conv after add reads layer 3 */
    assert_non_null(strstr(buf, "  0  4, a, b\n"));
    nb_model_free(m);
    assert_int_equal(nb_model_from_spec("flatten; dense 3", 3, (const int64_t[]){6, 6, 1}, &m), NB_OK);
    assert_int_equal(nb_model_summary(m, buf, sizeof buf), NB_OK);
    assert_null(strstr(buf, "Inputs")); /* a stack's summary is as before */
    nb_model_free(m);
}

/* The length of the line that starts at line (to its '\n'). */
static long line_len(const char *line)
{
    const char *e = strchr(line, '\n');
    return e ? (long)(e - line) : (long)strlen(line);
}

/* summary's columns stay aligned when a spec line is longer than the Layer
 * column (the counts end where "Param #" ends in every row, the Inputs
 * column starts at one place), and every parameter is listed with its shape. */
static void test_summary_aligned_with_params(void **state)
{
    (void)state;
    nb_model *m;
    static char buf[8192];
    const char *spec = "conv2d 4 3 relu padding=same dilation=2 as first_block_output; conv2d 4 1 as second; "
                       "add first_block_output; flatten; dense 3";
    assert_int_equal(nb_model_from_spec(spec, 3, (const int64_t[]){6, 6, 1}, &m), NB_OK);
    assert_int_equal(nb_model_summary(m, buf, sizeof buf), NB_OK);
    const char *head = strstr(buf, "Param #  Inputs\n");
    assert_non_null(head);
    const long param_end = (long)(head - buf) + 7, inputs_at = param_end + 2;
    int rows = 0;
    for (const char *l = strchr(buf, '\n') + 1; *l && strncmp(l, "Total", 5); l = strchr(l, '\n') + 1) {
        if (*l == '=') continue;
        /* Each row: its count ends at param_end, then "  " and the inputs
         * (none for the input's row). */
        assert_true(l[param_end - 1] >= '0' && l[param_end - 1] <= '9');
        if (!strncmp(l, "     input", 10)) {
            assert_int_equal(line_len(l), param_end);
        } else {
            assert_true(line_len(l) > inputs_at);
            assert_true(l[param_end] == ' ' && l[param_end + 1] == ' ' && l[inputs_at] != ' ');
        }
        rows++;
    }
    assert_int_equal(rows, 1 + 5); /* input and the five entries */
    assert_non_null(strstr(buf, "0    conv2d 4 3 relu padding=same dilation=2 as first_block_output (N, 6, 6, 4)"));
    /* The parameters in order, names padded to the longest, shapes to theirs. */
    const char *p = strstr(buf, "Parameters:\n");
    assert_non_null(p);
    static const struct {
        const char *line;
        long long size;
    } want[] = {{"  0.kernel (3, 3, 1, 4) ", 36}, {"  0.bias   (4,)         ", 4}, {"  1.kernel (1, 1, 4, 4) ", 16},
                {"  1.bias   (4,)         ", 4},  {"  4.kernel (144, 3)     ", 432}, {"  4.bias   (3,)         ", 3}};
    long count_end = -1;
    for (int k = 0; k < 6; k++) {
        p = strchr(p, '\n') + 1;
        assert_memory_equal(p, want[k].line, strlen(want[k].line));
        assert_int_equal(strtoll(p + strlen(want[k].line), NULL, 10), want[k].size);
        if (count_end < 0) count_end = line_len(p);
        assert_int_equal(line_len(p), count_end); /* the sizes right-aligned */
    }
    assert_int_equal(p[line_len(p) + 1], '\0');
    /* A buffer too small for it all is an error, not a cut table. */
    assert_int_equal(nb_model_summary(m, buf, 200), NB_ERR_ARG);
    assert_string_equal(nb_last_error(), "summary: the table needs 1271 bytes, the buffer holds 200");
    assert_int_equal(nb_model_summary(m, buf, 1271), NB_OK); /* exactly enough */
    assert_int_equal(nb_model_summary(m, buf, 1270), NB_ERR_ARG);
    nb_model_free(m);
    /* A model without parameters lists none. */
    assert_int_equal(nb_model_from_spec("flatten", 3, (const int64_t[]){2, 2, 1}, &m), NB_OK);
    assert_int_equal(nb_model_summary(m, buf, sizeof buf), NB_OK);
    assert_null(strstr(buf, "Parameters:"));
    assert_non_null(strstr(buf, "Total params: 0 "));
    nb_model_free(m);
}

/* Every refusal, message and all (rows G1.. of docs/bad-inputs.md). */
static void test_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *spec, *msg;
    } rows[] = {
        {"conv2d 4 3; add q",
         "layer 1 (add q): unknown name 'q': an entry can use only the outputs named before it (input); name one "
         "with 'ENTRY as NAME'"},
        {"conv2d 4 3; add b; conv2d 4 1 as b",
         "layer 1 ('b'): 'b' is the output of layer 2, a later one; an entry can use only earlier outputs (a model "
         "has no cycles)"},
        {"conv2d 4 3; add a as a",
         "layer 1 ('a'): 'a' is the output of layer 1, itself; an entry can use only earlier outputs (a model has "
         "no cycles)"},
        {"conv2d 4 3 as a; conv2d 4 1 as a",
         "layer 1: the name 'a' is already layer 0's; give each output its own name"},
        {"conv2d 4 3 as a; conv2d 4 3; from a; flatten",
         "layer 2 (from a): the output of layer 1 is never used (an unused branch); name it with 'as NAME' and use "
         "it in an 'add' or 'concat', or remove it"},
        {"conv2d 4 3 as a; conv2d 4 3; add a",
         "layer 2 (add a): cannot add 'a' of shape (N, 6, 6, 4) to the current tensor of shape (N, 4, 4, 4) (add "
         "needs equal shapes)"},
        {"conv2d 4 3 as a; conv2d 4 3; concat a",
         "layer 2 (concat a): cannot concat 'a' of shape (N, 6, 6, 4) with the current tensor of shape (N, 4, 4, 4) "
         "(all but the last axis must be equal)"},
        {"conv2d 4 3 as", "spec layer 0 (line 1, 'conv2d'): 'as' needs a name after it (ENTRY as NAME)"},
        {"conv2d 4 3 as 1x",
         "spec layer 0 (line 1, 'conv2d'): '1x' cannot name an output (letters, digits and '_', not starting with a "
         "digit, at most 31 characters, not 'input')"},
        {"conv2d 4 3 as input",
         "spec layer 0 (line 1, 'conv2d'): 'input' cannot name an output (letters, digits and '_', not starting with "
         "a digit, at most 31 characters, not 'input')"},
        {"conv2d 4 3; add",
         "spec layer 1 (line 1, 'add'): add takes 1 to 8 names of earlier outputs (or 'input'), got 0"},
        {"conv2d 4 3; from a b",
         "spec layer 1 (line 1, 'from'): from takes 1 name of an earlier output (or 'input'), got 2"},
        {"flatten; dense 3; globalavgpool",
         "layer 2 (globalavgpool): globalavgpool needs an image input (N, H, W, C), got (1, 3)"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        nb_model *m = NULL;
        nb_status s = nb_model_from_spec(rows[i].spec, 3, (const int64_t[]){8, 8, 1}, &m);
        if (getenv("NB_SHOW")) fprintf(stderr, "%s\n    %s\n", rows[i].spec, nb_last_error());
        assert_int_not_equal(s, NB_OK);
        assert_null(m);
        assert_string_equal(nb_last_error(), rows[i].msg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_print_parse_print),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_named_conv_not_fused),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_summary_inputs),
        cmocka_unit_test(test_summary_aligned_with_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
