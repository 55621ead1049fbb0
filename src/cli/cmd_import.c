/* nabla import: an ONNX model (e.g. from torch.onnx.export) as a nabla
 * model file. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const char *usage_text =
    "usage: nabla import M.onnx -o M.safetensors\n"
    "\n"
    "Converts a sequential ONNX model into a nabla model file: NCHW graphs (PyTorch's)\n"
    "become NHWC, conv kernels are transposed to (f, f, C_in, C_out) and dense ones to\n"
    "(in, out), and the rows of the first dense kernel after a flatten are reordered to\n"
    "nabla's (h, w, c) flatten order. An operator, attribute or value nabla cannot\n"
    "compute exactly is refused, naming the node. Every --model option also takes the\n"
    ".onnx file directly; import saves the conversion once.\n"
    "\n"
    "  M.onnx        the ONNX model (or --model M.onnx)\n"
    "  -o, --out P   the .safetensors file to write\n"
    "  --allow-nonfinite  import weights that hold NaN or Inf\n"
    "\n"
    "Operators read: %s.\n";

int cmd_import(int argc, char **argv)
{
    const char *model = NULL, *out = NULL;
    unsigned flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            printf(usage_text, nb_onnx_supported_ops());
            return 0;
        }
        if (!strcmp(k, "--allow-nonfinite")) {
            flags |= NB_LOAD_ALLOW_NONFINITE;
            continue;
        }
        if (k[0] != '-') {
            if (model) return cli_usage_error("import", "one ONNX file only, got a second: '%s'", k);
            model = k;
            continue;
        }
        if (strcmp(k, "--model") && strcmp(k, "-o") && strcmp(k, "--out"))
            return cli_usage_error("import", "unknown option '%s'", k);
        if (!v) return cli_usage_error("import", "option '%s' needs a value", k);
        i++;
        if (!strcmp(k, "--model")) model = v;
        else out = v;
    }
    if (!model || !out) return cli_usage_error("import", "%s", "an ONNX file and -o are required");
    if (!cli_is_file(model)) {
        nb_set_error(NB_ERR_IO, "'%s': no such file", model);
        return cli_fail("import", NULL);
    }
    if (!cli_check_output("import", "-o", out)) return 1;
    nb_model *m = NULL;
    if (nb_onnx_load(model, flags, &m)) return cli_fail("import", NULL);
    int rc = 0;
    if (nb_model_save(m, out)) rc = cli_fail("import", "writing the model");
    else printf("wrote %s: %s (%lld parameters)\n", out, nb_model_spec(m), (long long)nb_model_num_params(m));
    nb_model_free(m);
    return rc;
}
