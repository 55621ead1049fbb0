/* nabla export: a model file as ONNX (opset 13), for ONNX Runtime and the
 * other tools of the field. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const char *usage_text =
    "usage: nabla export --model M.safetensors -o M.onnx [--nchw]\n"
    "\n"
    "Writes the model as an ONNX file (opset 13): the weights as initializers, the\n"
    "spec under metadata_props (nabla.spec, nabla.input). The graph's input is called\n"
    "'input', its output 'output'; the batch dimension is symbolic (N).\n"
    "\n"
    "  --model M     a model file (.safetensors written by 'nabla train', or .onnx)\n"
    "  -o, --out P   the ONNX file to write\n"
    "  --nchw        take images as (N, C, H, W), as PyTorch does, instead of nabla's\n"
    "                (N, H, W, C); inside, Conv and pooling run in ONNX's NCHW either way\n"
    "  --allow-nonfinite  export a model whose weights hold NaN or Inf\n";

int cmd_export(int argc, char **argv)
{
    const char *model = NULL, *out = NULL;
    unsigned flags = 0, load_flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (!strcmp(k, "--nchw")) {
            flags |= NB_ONNX_NCHW;
            continue;
        }
        if (!strcmp(k, "--allow-nonfinite")) {
            load_flags |= NB_LOAD_ALLOW_NONFINITE;
            continue;
        }
        if (strcmp(k, "--model") && strcmp(k, "-o") && strcmp(k, "--out"))
            return cli_usage_error("export", "unknown option '%s'", k);
        if (!v) return cli_usage_error("export", "option '%s' needs a value", k);
        i++;
        if (!strcmp(k, "--model")) model = v;
        else out = v;
    }
    if (!model || !out) return cli_usage_error("export", "%s", "--model and -o are required");
    if (!cli_check_output("export", "-o", out)) return 1;
    nb_model *m = NULL;
    if (cli_load_trained_model_flags(model, load_flags, &m)) return cli_fail("export", "loading the model");
    int rc = 0;
    if (nb_onnx_save(m, out, flags)) rc = cli_fail("export", "writing the ONNX file");
    else {
        int64_t shape[8];
        const int r = nb_model_input_shape(m, shape);
        printf("wrote %s (ONNX opset 13): input 'input' (N", out);
        if (r == 3 && (flags & NB_ONNX_NCHW))
            printf(", %lld, %lld, %lld", (long long)shape[2], (long long)shape[0], (long long)shape[1]);
        else
            for (int d = 0; d < r; d++) printf(", %lld", (long long)shape[d]);
        printf(")%s, output 'output'; spec: %s\n", r == 3 ? (flags & NB_ONNX_NCHW ? " NCHW" : " NHWC") : "",
               nb_model_spec(m));
    }
    nb_model_free(m);
    return rc;
}
