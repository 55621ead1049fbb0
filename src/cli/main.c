/* nabla: the command-line tool. One file per command; this one dispatches. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const cli_command commands[] = {
    {"train", "train a model on a data set (the main job)", cmd_train},
    {"eval", "loss, accuracy, per-class accuracy and confusion matrix of a model", cmd_eval},
    {"predict", "run a model on inputs (.npy or IDX), write probabilities as .npy", cmd_predict},
    {"summary", "a model's layers, output shapes and parameter counts", cmd_summary},
    {"jacobian", "the Jacobian of a model's output w.r.t. its input or a parameter", cmd_jacobian},
    {"grad", "the gradient of the mean loss w.r.t. every parameter", cmd_grad},
    {"gradcheck", "check every op's VJP and JVP against finite differences", cmd_gradcheck},
    {"saliency", "test images beside d(predicted logit)/d(input), as a PNG grid", cmd_saliency},
    {"filters", "a convolution layer's kernels as a PNG", cmd_filters},
    {"hvp", "Hessian-vector products of the mean loss w.r.t. the parameters", cmd_hvp},
    {"hessian", "the Hessian of the mean loss w.r.t. a parameter or the input", cmd_hessian},
    {"curvature", "top Hessian eigenvalues and trace of the training loss, and 2 / lambda_max", cmd_curvature},
    {"demo", "lecture demos: 'demo gd' (gradient descent on f(x) = 2x^2)", cmd_demo},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: nabla <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n  nabla --version      print the version\n  nabla <command> --help\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("nabla %s (%s)\n", nb_version(), nb_precision());
        return 0;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "nabla: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
