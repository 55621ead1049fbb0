/* Shared by the CLI's command files. */
#ifndef NB_CLI_H
#define NB_CLI_H

#include "nabla.h"
#include "options.h"

#include <math.h>
#include <stdio.h>

/* commands.c: the commands. run runs one (argv[0] is the command's name);
 * check parses and validates its arguments only, as run does, printing the
 * same usage errors, reading and writing nothing: -1 if valid, else the exit
 * code (0 after --help, 2 after a usage error). */
typedef struct {
    const char *name, *help;
    int (*run)(int argc, char **argv);
    int (*check)(int argc, char **argv);
} cli_command;
extern const cli_command cli_commands[];
extern const int cli_ncommands;
const cli_command *cli_find_command(const char *name);
/* "unknown command 'trian' (did you mean train?)" on stderr; returns 2. */
int cli_unknown_command(const char *name);

/* names.c: the names of the library's enums, as option choices. */
enum { CLI_SPLIT_TEST = 0, CLI_SPLIT_TRAIN = 1 };
extern cli_choice cli_losses[], cli_optimizers[], cli_schedules[], cli_inits[], cli_jac_modes[];
extern const cli_choice cli_splits[];
/* Fills the choices above from the library's names (cli_parse calls it). */
void cli_choices_init(void);

int cmd_gradcheck(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_summary(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_jacobian(int argc, char **argv);
int cmd_grad(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_saliency(int argc, char **argv);
int cmd_filters(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_hvp(int argc, char **argv);
int cmd_hessian(int argc, char **argv);
int cmd_curvature(int argc, char **argv);
int cmd_boundary(int argc, char **argv);

/* second.c: what hvp and hessian share. Their arguments that name the
 * batch and the loss (the first member of each command's args struct, its
 * options rows by CLI_SECOND_OPTS), and the model with its loss on that
 * batch of inputs and labels, the forward pass run (dropout off). */
typedef struct {
    const char *model, *input, *labels;
    int loss; /* nb_loss_kind */
    int eval; /* --eval: inference mode (batchnorm's moving statistics) */
} cli_second_args;
#define CLI_SECOND_OPTS(type, member)                                                                                 \
    {"--model", NULL, CLI_STR, offsetof(type, member.model), "M", NULL, "a model file written by 'nabla train'",      \
     CLI_REQUIRED, 0, 0, NULL},                                                                                       \
        {"--input", NULL, CLI_STR, offsetof(type, member.input), "X", NULL,                                           \
         "inputs (.npy or IDX; as 'nabla predict')", CLI_REQUIRED, 0, 0, NULL},                                       \
        {"--labels", NULL, CLI_STR, offsetof(type, member.labels), "Y", NULL,                                         \
         "cce: class indices (N); mse, bce: targets of the output's shape", CLI_REQUIRED, 0, 0, NULL},                \
        {"--loss", NULL, CLI_CHOICE, offsetof(type, member.loss), NULL, "cce", "the loss averaged over the examples", \
         0, 0, 0, cli_losses},                                                                                     \
        {"--eval", NULL, CLI_FLAG, offsetof(type, member.eval), NULL, NULL,                                           \
         "inference mode: batchnorm's moving statistics (default: the batch's)", 0, 0, 0, NULL}
typedef struct {
    nb_model *m;
    nb_node *loss;
    nb_tensor *x, *y;
} cli_second;
nb_status cli_second_setup(const cli_second_args *a, cli_second *out);
/* "loss (cce, mean over N examples): L", the line both commands print first. */
void cli_second_print_loss(const cli_second_args *a, const cli_second *c);
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
/* 1 if path ends in .svg (plots are SVG: a .png name would hold SVG text). */
int cli_is_svg_name(const char *path);
/* 1 if path's directory exists and is writable, else prints why and returns 0
 * (so a long run does not fail at its first checkpoint). */
int cli_check_output(const char *cmd, const char *option, const char *path);
/* Fashion-MNIST's ten class names when the data set's name says fashion and
 * there are 10 classes, else NULL. */
const char *const *cli_class_names(const char *data, int64_t classes);
/* Class names: n of them (0: none known). */
typedef struct {
    int64_t n;
    const char *const *name;
    char *text; /* owned: the --classes file's text */
    const char **lines;
} cli_names;
/* The names of C classes: from the file classes (one per line; or the word
 * fashion-mnist), else from the data set's name (cli_class_names), else
 * none. A file with fewer names than C is refused. */
nb_status cli_names_load(const char *classes, const char *data, int64_t C, cli_names *out);
/* As cli_names_load, but without --classes the model file's class names
 * (nb_model_class_names) come first. */
nb_status cli_names_for_model(const char *classes, const char *data, const nb_model *m, int64_t C, cli_names *out);
void cli_names_free(cli_names *n);
/* "fashion-mnist" -> its Debian directory; other names unchanged. */
const char *cli_data_dir(const char *name);
/* How a CSV data set is read (csv_data.c): --label-col INDEX|NAME,
 * --header / --no-header (neither: detected from the first line, and said
 * on stderr), --scale D (inputs divided by D). */
typedef struct {
    const char *label_col;
    int header, no_header;
    double scale;
    /* toy data (--data circles|xor|spiral|gaussians): --noise,
     * --data-seed, --toy-classes, and --count (0: 1000 train, 500 test) */
    double noise;
    long long data_seed, toy_classes, toy_count;
    /* not an option: the model's class names ('\n'-joined), which string
     * labels must be among (NULL: the labels' own, sorted) */
    const char *classes;
} cli_csv_opts;
#define CLI_CSV_OPTS(type, field)                                                                                     \
    {"--label-col", NULL, CLI_STR, offsetof(type, field.label_col), "K|NAME", "-1",                                   \
     "CSV: the label column, by index (-1: the last) or header name", 0, 0, 0, NULL},                                  \
    {"--header", NULL, CLI_FLAG, offsetof(type, field.header), NULL, NULL, "CSV: the first line is a header", 0, 0, 0, \
     NULL},                                                                                                            \
    {"--no-header", NULL, CLI_FLAG, offsetof(type, field.no_header), NULL, NULL,                                      \
     "CSV: the first line is data (default: detected)", 0, 0, 0, NULL},                                                \
    {"--scale", NULL, CLI_REAL, offsetof(type, field.scale), "D", NULL,                                               \
     "CSV: divide the inputs by D (255 for 0..255 pixels)", CLI_GT_LO, 0, HUGE_VAL, NULL},                           \
    {"--noise", NULL, CLI_REAL, offsetof(type, field.noise), "S", "0.1",                                              \
     "toy data: standard deviation of the noise (gaussians: blobs of 4 S)", 0, 0, 10, NULL},                           \
    {"--data-seed", NULL, CLI_INT, offsetof(type, field.data_seed), "S", "1",                                         \
     "toy data: the seed of the points (the test split is another draw)", 0, 0, 4611686018427387904.0, NULL},        \
    {"--toy-classes", NULL, CLI_INT, offsetof(type, field.toy_classes), "K", "2",                                     \
     "toy data: spiral arms / gaussian blobs (circles and xor have 2)", 0, 2, 16, NULL}
/* --count for toy data, in commands without a cli_source (train, eval). */
#define CLI_TOY_COUNT_OPT(type, field)                                                                                \
    {"--count", NULL, CLI_INT, offsetof(type, field.toy_count), "N", NULL,                                            \
     "toy data: the number of points (default 1000 train, 500 test)", 0, 1, 16777216, NULL}
/* --header with --no-header: a usage error (2), else -1. */
int cli_csv_check(const char *cmd, const cli_csv_opts *o);
/* --count without toy data: a usage error (2), else -1. */
int cli_toy_check(const char *cmd, const char *data, const cli_csv_opts *o);
nb_status cli_load_csv(const char *path, const cli_csv_opts *o, nb_dataset *out);
/* As cli_load_csv; with string labels *classes gets the class names joined
 * by '\n' (else NULL; free it). */
nb_status cli_load_csv_classes(const char *path, const cli_csv_opts *o, nb_dataset *out, char **classes);
/* A toy data set's split (nb_dataset_toy) by the options o. */
nb_status cli_load_toy(nb_toy_kind kind, const char *split, const cli_csv_opts *o, nb_dataset *out);
/* A data set by name (fashion-mnist, mnist, a directory of IDX files, a .csv
 * read by csv, which may be NULL for the defaults). */
nb_status cli_load_data(const char *name, const char *split, const cli_csv_opts *csv, nb_dataset *out);
/* As cli_load_data, a CSV's string labels mapped through m's class names. */
nb_status cli_load_data_for_model(const char *name, const char *split, const cli_csv_opts *csv, const nb_model *m,
                                  nb_dataset *out);
/* As cli_load_data; *classes as cli_load_csv_classes's (NULL unless a CSV
 * with string labels). Toy data sets by name: circles, xor, spiral, gaussians. */
nb_status cli_load_data_classes(const char *name, const char *split, const cli_csv_opts *csv, nb_dataset *out,
                                char **classes);
/* *x (N, ...) replaced by its copy of shape (N, input...) when the sizes agree (CSV
 * rows as images); else an error naming both. */
nb_status cli_reshape_rows(nb_tensor **x, const char *input);
/* Flat rows *x (N, P) for a model of images (P = H * W * C) replaced by
 * their copy of shape (N, H, W, C); anything else left as it is. */
nb_status cli_fit_rows(nb_tensor **x, const nb_model *m);
/* d becomes its examples start..start+count-1 (nb_dataset_subset). */
nb_status cli_dataset_limit(nb_dataset *d, int64_t start, int64_t count);
/* A model from a .safetensors file, a spec file, or spec text; the input
 * shape from --input or else from the data. */
nb_status cli_load_model(const char *model, const char *input, const nb_dataset *data, nb_model **out);
/* --fold-bn of predict and eval: nb_model_fold_batchnorm, and on stderr how
 * many batchnorm layers it folded. */
nb_status cli_fold_bn(const char *cmd, nb_model *m);
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
/* Where predict, jacobian and grad take their examples from: --input FILE,
 * or --data D [--split S] [--start K] [--count N] (--start and --count
 * select rows of --input too). */
typedef struct {
    const char *input, *data;
    int split;
    long long start, count;
    cli_csv_opts csv;
} cli_source;
/* The options of a cli_source field of a command's args struct; count_help
 * says the default of --count with --data. */
#define CLI_SOURCE_OPTS(type, field, count_help)                                                                      \
    {"--input", NULL, CLI_STR, offsetof(type, field.input), "X", NULL,                                                 \
     "the inputs: a .npy or IDX file (raw or .gz), (N, input...), (N, H, W)\n"                                         \
     "for one channel, or one example without N (or --data)", 0, 0, 0, NULL},                                          \
    {"--data", NULL, CLI_STR, offsetof(type, field.data), "D", NULL,                                                   \
     "or the examples of a data set: fashion-mnist, mnist, a directory of IDX\n"                                       \
     "files, a CSV file (with its labels), or a toy 2-D data set:\n"                                                   \
     "circles, xor, spiral, gaussians", 0, 0, 0, NULL},                                                                \
    {"--split", NULL, CLI_CHOICE, offsetof(type, field.split), NULL, "test", "--data: the split", 0, 0, 0, cli_splits}, \
    {"--start", NULL, CLI_INT, offsetof(type, field.start), "K", "0", "the first example (from 0)", 0, 0,              \
     1099511627776.0, NULL},                                                                                            \
    {"--count", NULL, CLI_INT, offsetof(type, field.count), "N", NULL, count_help, 0, 1, 1099511627776.0, NULL},       \
    CLI_CSV_OPTS(type, field.csv)
/* Exactly one of --input and --data: -1, else a usage error (2). */
int cli_source_check(const char *cmd, const cli_source *src);
/* The examples (fitted to m's input as cli_load_input does), and with
 * labels != NULL their labels: the data set's, or none (*labels NULL) for
 * --input. data_count: --count's default with --data (0: all). *what gets
 * where they came from, e.g. "fashion-mnist test examples 0..9". */
nb_status cli_load_examples(const cli_source *src, int64_t data_count, const nb_model *m, nb_tensor **x,
                            nb_tensor **labels, int *scaled, char *what, size_t what_len);
/* What the first bytes of a .npy or IDX file (raw or gzip) say: *is_npy,
 * dtype the element type (npy's descr, "<f4"; IDX's "u8", "f32", ...; "" if
 * unknown); returns 1 for an integer type, 0 for another, -1 if unknown. */
int cli_file_dtype(const char *path, char *dtype, size_t n, int *is_npy);
/* A tensor from a .npy or IDX file (by its first bytes). */
nb_status cli_read_tensor(const char *path, nb_tensor **out);

/* image_input.c: whether path is a folder or a .png/.jpg/.jpeg file, and
 * the images it holds as the model's input (N, H, W, C), with a note on
 * stderr of what was done (resize, channels, scaling). */
int cli_is_image_input(const char *path);
nb_status cli_load_images(const char *path, const nb_model *m, nb_tensor **out);
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
    int sharp_n, sharp_cap;
    double *sharp; /* sharp_n rows of step, lambda_max, 2 / lr (train --sharpness) */
} cli_curves;
int cli_curves_add(cli_curves *c, const nb_epoch_stats *s);
int cli_curves_add_sharpness(cli_curves *c, const nb_sharpness *s);
nb_status cli_curves_svg(const char *path, const cli_curves *c);
void cli_curves_free(cli_curves *c);

#endif
