/* `nabla jacobian --of LAYER --wrt LAYER` (the lecture's dA_i/dA_j) run as
 * the float CLI, checked against the double library's nb_jacobian on the
 * same weights and inputs; the conv2d fused with its maxpool is exposed for
 * it. Then the refusals (rows J1..J3 of docs/bad-inputs.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "f32/nb_test_util.h"
#include "nb_test_f64.h"

static char dir[1024];

static const char *path_in(const char *name)
{
    static char p[8][1200];
    static int k;
    k = (k + 1) % 8;
    tu_fmt(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

#define CLI(out, ...) tu_run_cli((const char *const[]){__VA_ARGS__, NULL}, out, NULL)

static const char *PLAIN = "conv2d 2 3 relu; maxpool 2; flatten; dense 4 tanh as h; dense 3";
static const char *NAMED = "conv2d 2 3 relu as c; maxpool 2; flatten; dense 4 tanh as h; dense 3";
static const int64_t IN[3] = {6, 6, 1};
enum { N = 2 };

/* m.safetensors (PLAIN, its conv fused) and x.npy of N inputs; ref gets the
 * double model with the file's weights and layer 0 named (not fused). */
static nb_model *write_model_and_input(void)
{
    nb_model *plain = NULL, *saved = NULL, *ref = NULL;
    assert_int_equal(nb_model_from_spec(PLAIN, 3, IN, &plain), NB_OK);
    assert_int_equal(nb_model_init(plain, NB_INIT_GLOROT_UNIFORM, 5), NB_OK);
    assert_int_equal(nb_model_save(plain, path_in("m.safetensors")), NB_OK);
    nb_model_free(plain);
    assert_int_equal(nb_model_load(path_in("m.safetensors"), &saved), NB_OK); /* the weights as float */
    assert_int_equal(nb_model_from_spec(NAMED, 3, IN, &ref), NB_OK);
    assert_int_equal(nb_model_param_count(ref), nb_model_param_count(saved));
    for (int p = 0; p < nb_model_param_count(ref); p++) {
        nb_tensor *to = nb_value(nb_model_param(ref, p));
        const nb_tensor *from = nb_value(nb_model_find_param(saved, nb_node_name(nb_model_param(ref, p))));
        assert_int_equal(to->size, from->size);
        memcpy(to->data, from->data, (size_t)to->size * sizeof(nb_real));
    }
    nb_model_free(saved);
    nb_tensor *x = nb_tensor_new(4, (const int64_t[]){N, 6, 6, 1});
    assert_non_null(x);
    for (int64_t i = 0; i < x->size; i++) x->data[i] = (nb_real)((i * 37 % 64) - 31) / 32; /* exact in float */
    assert_int_equal(nb_npy_write(path_in("x.npy"), x), NB_OK);
    assert_int_equal(nb_model_set_batch(ref, N), NB_OK);
    memcpy(nb_value(nb_model_input(ref))->data, x->data, (size_t)x->size * sizeof(nb_real));
    nb_tensor_free(x);
    nb_graph_set_training(nb_model_graph(ref), 0, 0);
    return ref;
}

/* The CLI's J (--of of --wrt wrt) against the library's d layer of / d layer wrt. */
static void check_against_library(nb_model *ref, const char *of, int of_i, const char *wrt, int wrt_i)
{
    char *out;
    assert_int_equal(CLI(&out, "jacobian", "--model", path_in("m.safetensors"), "--input", path_in("x.npy"), "--of",
                         of, "--wrt", wrt, "-o", path_in("J.npy")),
                     0);
    assert_non_null(strstr(out, "sparsity: "));
    free(out);
    nb_tensor *J = NULL, *want = NULL;
    assert_int_equal(nb_npy_read(path_in("J.npy"), &J), NB_OK);
    nb_jacobian_opts jo = {.mode = NB_JAC_REV};
    assert_int_equal(nb_jacobian(nb_model_layer_output(ref, of_i), nb_model_layer_output(ref, wrt_i), &jo, &want),
                     NB_OK);
    assert_int_equal(J->rank, want->rank);
    for (int d = 0; d < J->rank; d++) assert_int_equal(J->shape[d], want->shape[d]);
    double worst = 0, norm = 0;
    for (int64_t k = 0; k < J->size; k++) {
        double e = fabs((double)J->data[k] - (double)want->data[k]) / (1 + fabs((double)want->data[k]));
        worst = e > worst ? e : worst;
        norm += fabs((double)want->data[k]);
    }
    assert_true(norm > 0.1); /* not an all-zero Jacobian */
    if (worst > 1e-5) fail_msg("--of %s --wrt %s: worst relative difference %g", of, wrt, worst);
    nb_tensor_free(J);
    nb_tensor_free(want);
}

static void test_layer_jacobians_match_the_library(void **state)
{
    (void)state;
    nb_model *ref = write_model_and_input();
    check_against_library(ref, "h", 3, "0", 0); /* dA3/dA0 through the pool: the fused conv exposed */
    check_against_library(ref, "4", 4, "h", 3); /* the last layer w.r.t. the one before */
    check_against_library(ref, "3", 3, "2", 2); /* dense w.r.t. the flatten */
    nb_model_free(ref);
}

/* J1..J3: a later layer, an unknown name, a layer with --mode numeric. */
static void test_refusals(void **state)
{
    (void)state;
    nb_model *ref = write_model_and_input();
    nb_model_free(ref);
    const char *m = path_in("m.safetensors"), *x = path_in("x.npy"), *J = path_in("J.npy");
    char *out;
    assert_int_equal(CLI(&out, "jacobian", "--model", m, "--input", x, "--of", "1", "--wrt", "h", "-o", J), 1);
    assert_non_null(strstr(out, "nabla jacobian: --wrt h (layer 3) is not before --of 1 (layer 1): the Jacobian is "
                                "of a layer's output with respect to an earlier one's; swap them\n"));
    free(out);
    assert_int_equal(CLI(&out, "jacobian", "--model", m, "--input", x, "--of", "hh", "-o", J), 1);
    assert_non_null(strstr(out, "nabla jacobian: --of 'hh': no such layer (did you mean h?); the model has layers "
                                "0..4 and: logits, output, h\n"));
    free(out);
    assert_int_equal(CLI(&out, "jacobian", "--model", m, "--input", x, "--of", "4", "--wrt", "9", "-o", J), 1);
    assert_non_null(strstr(out, "nabla jacobian: --wrt '9': no such parameter or layer; the model has layers 0..4 "
                                "and: input, 0.kernel, 0.bias, 3.kernel, 3.bias, 4.kernel, 4.bias, h\n"));
    free(out);
    assert_int_equal(CLI(&out, "jacobian", "--model", m, "--input", x, "--wrt", "h", "--mode", "numeric", "-o", J), 1);
    assert_non_null(strstr(out, "nabla jacobian: --wrt h is a layer's output, which central differences cannot "
                                "perturb: use --mode auto, rev or fwd, or --wrt input or a parameter for numeric and "
                                "--compare\n"));
    free(out);
}

/* The library's refusal: no layer 9, a fused layer, NULL. */
static void test_layer_output_refusals(void **state)
{
    (void)state;
    nb_model *m = NULL;
    assert_int_equal(nb_model_from_spec(PLAIN, 3, IN, &m), NB_OK);
    assert_null(nb_model_layer_output(m, 9));
    assert_non_null(strstr(nb_last_error(), "no layer 9 (the model has 5)"));
    assert_null(nb_model_layer_output(m, 0));
    assert_non_null(strstr(nb_last_error(), "layer 0 (conv2d 2 3 relu) is fused with the pool after it: its output "
                                            "is never computed; name it in the spec (ENTRY as NAME) to keep it"));
    assert_non_null(nb_model_layer_output(m, 1));
    assert_null(nb_model_layer_output(NULL, 0));
    nb_model_free(m);
}

static int setup(void **state)
{
    (void)state;
    tu_mkdtemp(dir, sizeof dir, "layerjac");
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
        cmocka_unit_test(test_layer_jacobians_match_the_library),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_layer_output_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
