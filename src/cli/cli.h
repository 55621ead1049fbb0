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
int cmd_saliency(int argc, char **argv);
int cmd_filters(int argc, char **argv);
int cmd_hvp(int argc, char **argv);
int cmd_hessian(int argc, char **argv);
int cmd_curvature(int argc, char **argv);

/* cmd_hvp.c: what hvp and hessian share, a model with its loss on a batch
 * of inputs and labels, the forward pass run (dropout off). */
typedef struct {
    nb_model *m;
    nb_node *loss;
    nb_tensor *x, *y;
} cli_second;
nb_status cli_second_setup(const char *cmd, const char *model, const char *input, const char *labels,
                           const char *loss_name, cli_second *out);
void cli_second_free(cli_second *c);
/* cmd_curvature.c: the second-order part of 'nabla demo gd' (f'' = 4 by
 * nb_hvp, the critical rate, the rates around it); 0 or an exit status. */
int cli_demo_gd_second_order(double alpha, double x0);

/* Prints "nabla CMD: WHAT: <nb_last_error()>" to stderr; returns 1. */
int cli_fail(const char *cmd, const char *what);
/* Prints a usage error with one %s argument; returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, const char *arg);
int cli_parse_double(const char *s, double *out);
int cli_parse_int(const char *s, long long lo, long long hi, long long *out);
int cli_is_file(const char *path);
/* 1 if path's directory exists and is writable, else prints why and returns 0
 * (so a long run does not fail at its first checkpoint). */
int cli_check_output(const char *cmd, const char *option, const char *path);
/* Fashion-MNIST's ten class names when the data set's name says fashion and
 * there are 10 classes, else NULL. */
const char *const *cli_class_names(const char *data, int64_t classes);
/* "fashion-mnist" -> its Debian directory; other names unchanged. */
const char *cli_data_dir(const char *name);
/* A data set by name (fashion-mnist, mnist, a directory of IDX files, a .csv). */
nb_status cli_load_data(const char *name, const char *split, int label_col, nb_dataset *out);
/* A model from a .safetensors file, a spec file, or spec text; the input
 * shape from --input or else from the data. */
nb_status cli_load_model(const char *model, const char *input, const nb_dataset *data, nb_model **out);
/* As cli_load_model with nb_model_load_flags's flags (NB_LOAD_ALLOW_NONFINITE
 * for --allow-nonfinite). */
nb_status cli_load_model_flags(const char *model, const char *input, const nb_dataset *data, unsigned flags,
                               nb_model **out);
/* After a model failed to load with status s: a model refused for NaN/Inf
 * weights gets the hint of --allow-nonfinite appended to its message. */
void cli_hint_nonfinite(nb_status s);

/* input.c: a model input from a .npy or IDX file, fitted to the model's input
 * shape ((N, input...), (N, H, W) for one channel, or one example without N);
 * integer-typed files with values > 1 are divided by 255 (*scaled set). */
nb_status cli_load_input(const char *path, const nb_model *m, nb_tensor **out, int *scaled);
/* A trained model from a .safetensors file, with a clear message if it is missing. */
nb_status cli_load_trained_model(const char *path, nb_model **out);
nb_status cli_load_trained_model_flags(const char *path, unsigned flags, nb_model **out);

/* plots.c: pictures drawn as a side job of jacobian, demo gd and train. */
/* A rows x cols matrix as a diverging heatmap PNG with a title and a colour bar. */
nb_status cli_matrix_png(const char *path, const nb_real *data, int64_t rows, int64_t cols, const char *title,
                         const char *subtitle);
/* The iterates x_0..x_{n-1} of gradient descent over the curve f(x) = 2x^2, as SVG. */
nb_status cli_gd_svg(const char *path, const double *xs, int n, double alpha);
/* Loss and accuracy per epoch (training and validation), recorded by on_epoch. */
typedef struct {
    int n, cap;
    double *v; /* n rows of epoch, loss, accuracy, val_loss, val_accuracy */
} cli_curves;
int cli_curves_add(cli_curves *c, const nb_epoch_stats *s);
nb_status cli_curves_svg(const char *path, const cli_curves *c);
void cli_curves_free(cli_curves *c);

#endif
