/* nabla summary: a model's layer table (Keras's model.summary()). */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *model, *input;
    int allow_nonfinite;
} summary_args;

#define F(field) offsetof(summary_args, field)
static const cli_opt summary_opts[] = {
    {"--model", NULL, CLI_STR, F(model), "M", NULL,
     "a model file (.safetensors), a spec file, or spec text, e.g.\n"
     "'conv2d 32 3 relu; conv2d 64 3 relu; maxpool 2; flatten; dense 128 relu; dense 10'",
     CLI_REQUIRED, 0, 0, NULL},
    {"--input", NULL, CLI_STR, F(input), "SHAPE", NULL,
     "input shape without the batch, e.g. 28,28,1 (needed for a spec;\n"
     "a .safetensors model carries its own)", 0, 0, 0, NULL},
    {"--allow-nonfinite", NULL, CLI_FLAG, F(allow_nonfinite), NULL, NULL,
     "load a model file whose weights hold NaN or Inf (refused otherwise)", 0, 0, 0, NULL},
};
#undef F

static const cli_spec summary_spec = {"summary", "--model M.safetensors|SPEC|SPEC-FILE [--input SHAPE]",
                                      "Prints the layers, their output shapes (N is the batch) and parameter counts.\n",
                                      summary_opts, CLI_NOPTS(summary_opts), NULL};

int cmd_summary_check_args(int argc, char **argv)
{
    summary_args a = {0};
    return cli_parse(&summary_spec, argc, argv, &a);
}

int cmd_summary(int argc, char **argv)
{
    summary_args a = {0};
    int rc = cli_parse(&summary_spec, argc, argv, &a);
    if (rc >= 0) return rc;
    nb_model *m = NULL;
    if (cli_load_model_flags(a.model, a.input, NULL, a.allow_nonfinite ? NB_LOAD_ALLOW_NONFINITE : 0, &m))
        return cli_fail("summary", "building the model");
    size_t n = 4096 + (size_t)nb_model_num_layers(m) * 256;
    char *buf = malloc(n);
    rc = 0;
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
