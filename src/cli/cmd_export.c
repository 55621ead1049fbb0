/* nabla export: a model file as ONNX (opset 13; 17 with a layernorm), for
 * ONNX Runtime and the other tools of the field. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *model, *out;
    int nchw, allow_nonfinite;
} export_args;

#define F(field) offsetof(export_args, field)
static const cli_opt export_opts[] = {
    {"--model", NULL, CLI_STR, F(model), "M", NULL, "a model file (.safetensors written by 'nabla train', or .onnx)",
     CLI_REQUIRED, 0, 0, NULL},
    {"--out", "-o", CLI_STR, F(out), "P", NULL, "the ONNX file to write", CLI_REQUIRED, 0, 0, NULL},
    {"--nchw", NULL, CLI_FLAG, F(nchw), NULL, NULL,
     "take images as (N, C, H, W), as PyTorch does, instead of nabla's (N, H, W, C);\n"
     "inside, Conv and pooling run in ONNX's NCHW either way",
     0, 0, 0, NULL},
    {"--allow-nonfinite", NULL, CLI_FLAG, F(allow_nonfinite), NULL, NULL,
     "export a model whose weights hold NaN or Inf (refused otherwise)", 0, 0, 0, NULL},
};
#undef F

static const cli_spec export_spec = {
    "export", "--model M.safetensors -o M.onnx [--nchw]",
    "Writes the model as an ONNX file (opset 13; 17 for a model with a layernorm,\n"
    "written as LayerNormalization): the weights as initializers, the\n"
    "spec under metadata_props (nabla.spec, nabla.input). The graph's input is called\n"
    "'input', its output 'output'; the batch dimension is symbolic (N).\n",
    export_opts, CLI_NOPTS(export_opts), NULL};

int cmd_export_check_args(int argc, char **argv)
{
    export_args a = {0};
    return cli_parse(&export_spec, argc, argv, &a);
}

/* "wrote M.onnx (ONNX opset 13): input 'input' (N, 28, 28, 1) NHWC, ..." */
static void print_written(const nb_model *m, const char *out, unsigned flags)
{
    int64_t shape[8];
    const int r = nb_model_input_shape(m, shape);
    printf("wrote %s (ONNX opset %d): input 'input' (N", out, nb_onnx_opset(m));
    if (r == 3 && (flags & NB_ONNX_NCHW))
        printf(", %lld, %lld, %lld", (long long)shape[2], (long long)shape[0], (long long)shape[1]);
    else
        for (int d = 0; d < r; d++) printf(", %lld", (long long)shape[d]);
    printf(")%s, output 'output'; spec: %s\n", r == 3 ? (flags & NB_ONNX_NCHW ? " NCHW" : " NHWC") : "",
           nb_model_spec(m));
}

int cmd_export(int argc, char **argv)
{
    export_args a = {0};
    int rc = cli_parse(&export_spec, argc, argv, &a);
    if (rc >= 0) return rc;
    const unsigned flags = a.nchw ? NB_ONNX_NCHW : 0;
    if (!cli_check_output("export", "-o", a.out)) return 1;
    nb_model *m = NULL;
    if (cli_load_trained_model_flags(a.model, a.allow_nonfinite ? NB_LOAD_ALLOW_NONFINITE : 0, &m))
        return cli_fail("export", "loading the model");
    rc = 0;
    if (nb_onnx_save(m, a.out, flags)) rc = cli_fail("export", "writing the ONNX file");
    else print_written(m, a.out, flags);
    nb_model_free(m);
    return rc;
}
