/* nabla import: an ONNX model (e.g. from torch.onnx.export) as a nabla
 * model file. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *model, *out;
    int allow_nonfinite;
} import_args;

#define F(field) offsetof(import_args, field)
static const cli_opt import_opts[] = {
    {"--model", NULL, CLI_STR, F(model), "M.onnx", NULL, "the ONNX model (or as the first argument: nabla import M.onnx)",
     CLI_REQUIRED, 0, 0, NULL},
    {"--out", "-o", CLI_STR, F(out), "P", NULL, "the .safetensors file to write", CLI_REQUIRED, 0, 0, NULL},
    {"--allow-nonfinite", NULL, CLI_FLAG, F(allow_nonfinite), NULL, NULL, "import weights that hold NaN or Inf", 0,
     0, 0, NULL},
};
#undef F

static const cli_spec import_spec = {
    "import", "M.onnx -o M.safetensors",
    "Converts a sequential ONNX model into a nabla model file: NCHW graphs (PyTorch's)\n"
    "become NHWC, conv kernels are transposed to (f, f, C_in, C_out) and dense ones to\n"
    "(in, out), and the rows of the first dense kernel after a flatten are reordered to\n"
    "nabla's (h, w, c) flatten order. An operator, attribute or value nabla cannot\n"
    "compute exactly is refused, naming the node. Every --model option also takes the\n"
    ".onnx file directly; import saves the conversion once.\n",
    import_opts, CLI_NOPTS(import_opts), "The operators read: see nb_onnx_supported_ops (nabla import with an\n"
                                         "unsupported one lists them).\n"};

/* `nabla import M.onnx ...`: the first argument, when it is not an option,
 * is --model's value (the table parser takes options only). */
static int parse(int argc, char **argv, import_args *a)
{
    char *args[64];
    if (argc < 2 || argv[1][0] == '-' || argc + 1 > 64) return cli_parse(&import_spec, argc, argv, a);
    args[0] = argv[0], args[1] = "--model";
    for (int i = 1; i < argc; i++) args[i + 1] = argv[i];
    return cli_parse(&import_spec, argc + 1, args, a);
}

int cmd_import_check_args(int argc, char **argv)
{
    import_args a = {0};
    return parse(argc, argv, &a);
}

int cmd_import(int argc, char **argv)
{
    import_args a = {0};
    int rc = parse(argc, argv, &a);
    if (rc >= 0) return rc;
    if (!cli_is_file(a.model)) {
        nb_set_error(NB_ERR_IO, "'%s': no such file", a.model);
        return cli_fail("import", NULL);
    }
    if (!cli_check_output("import", "-o", a.out)) return 1;
    nb_model *m = NULL;
    if (nb_onnx_load(a.model, a.allow_nonfinite ? NB_LOAD_ALLOW_NONFINITE : 0, &m)) return cli_fail("import", NULL);
    rc = 0;
    if (nb_model_save(m, a.out)) rc = cli_fail("import", "writing the model");
    else
        printf("wrote %s: %s (%lld parameters)\n", a.out, nb_model_spec(m), (long long)nb_model_num_params(m));
    nb_model_free(m);
    return rc;
}
