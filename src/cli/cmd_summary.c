/* nabla summary: a model's layer table (Keras's model.summary()). */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_text =
    "usage: nabla summary --model M.safetensors|SPEC|SPEC-FILE [--input SHAPE]\n"
    "\n"
    "Prints the layers, their output shapes (N is the batch) and parameter counts.\n"
    "\n"
    "  --model M      a model file (.safetensors), a spec file, or spec text, e.g.\n"
    "                 'conv2d 32 3 relu; conv2d 64 3 relu; maxpool 2; flatten; dense 128 relu; dense 10'\n"
    "  --input SHAPE  input shape without the batch, e.g. 28,28,1 (needed for a spec;\n"
    "                 a .safetensors model carries its own)\n"
    "  --allow-nonfinite  load a model file whose weights hold NaN or Inf (refused otherwise)\n";

int cmd_summary(int argc, char **argv)
{
    const char *model = NULL, *input = NULL;
    unsigned flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (!strcmp(k, "--allow-nonfinite")) {
            flags |= NB_LOAD_ALLOW_NONFINITE;
            continue;
        }
        if (strcmp(k, "--model") && strcmp(k, "--input")) return cli_usage_error("summary", "unknown option '%s'", k);
        if (!v) return cli_usage_error("summary", "option '%s' needs a value", k);
        if (!strcmp(k, "--model")) model = v;
        else input = v;
        i++;
    }
    if (!model) return cli_usage_error("summary", "%s", "--model is required");
    nb_model *m = NULL;
    if (cli_load_model_flags(model, input, NULL, flags, &m)) return cli_fail("summary", "building the model");
    size_t n = 4096 + (size_t)nb_model_num_layers(m) * 256;
    char *buf = malloc(n);
    int rc = 0;
    if (!buf) rc = cli_fail("summary", "out of memory");
    else if (nb_model_summary(m, buf, n)) rc = cli_fail("summary", NULL);
    else {
        printf("model: %s\n", nb_model_spec(m));
        fputs(buf, stdout);
    }
    free(buf);
    nb_model_free(m);
    return rc;
}
