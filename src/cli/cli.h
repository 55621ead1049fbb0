/* Shared by the CLI's command files. */
#ifndef NB_CLI_H
#define NB_CLI_H

#include "nabla.h"

#include <stdio.h>

typedef struct {
    const char *name, *help;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
} cli_command;

int cmd_gradcheck(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_summary(int argc, char **argv);
int cmd_jacobian(int argc, char **argv);
int cmd_grad(int argc, char **argv);
int cmd_demo(int argc, char **argv);

/* Prints "nabla CMD: WHAT: <nb_last_error()>" to stderr; returns 1. */
int cli_fail(const char *cmd, const char *what);
/* Prints a usage error with one %s argument; returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, const char *arg);
int cli_parse_double(const char *s, double *out);
int cli_parse_int(const char *s, long long lo, long long hi, long long *out);
int cli_is_file(const char *path);
/* "fashion-mnist" -> its Debian directory; other names unchanged. */
const char *cli_data_dir(const char *name);
/* A data set by name (fashion-mnist, mnist, a directory of IDX files, a .csv). */
nb_status cli_load_data(const char *name, const char *split, int label_col, nb_dataset *out);
/* A model from a .safetensors file, a spec file, or spec text; the input
 * shape from --input or else from the data. */
nb_status cli_load_model(const char *model, const char *input, const nb_dataset *data, nb_model **out);

/* input.c: a model input from a .npy or IDX file, fitted to the model's input
 * shape ((N, input...), (N, H, W) for one channel, or one example without N);
 * integer-typed files with values > 1 are divided by 255 (*scaled set). */
nb_status cli_load_input(const char *path, const nb_model *m, nb_tensor **out, int *scaled);
/* A trained model from a .safetensors file, with a clear message if it is missing. */
nb_status cli_load_trained_model(const char *path, nb_model **out);

#endif
