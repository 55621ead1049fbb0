/* The table of nabla's commands, and what main and the argument fuzzer
 * share: finding a command by name, with a "did you mean" when none fits. */
#include "cli.h"
#include "cli_args.h"

#include <stdio.h>
#include <string.h>

const cli_command cli_commands[] = {
    {"train", "train a model on a data set (the main job)", cmd_train, cmd_train_check_args},
    {"eval", "loss, accuracy, per-class accuracy and confusion matrix of a model", cmd_eval, cmd_eval_check_args},
    {"predict", "run a model on inputs or a data set: top classes, probabilities as .npy", cmd_predict,
     cmd_predict_check_args},
    {"summary", "a model's layers, output shapes and parameter counts", cmd_summary, cmd_summary_check_args},
    {"show", "what a .npy, IDX, safetensors, model or ONNX file holds: shapes, dtypes, statistics", cmd_show,
     cmd_show_check_args},
    {"jacobian", "the Jacobian of a model's output w.r.t. its input or a parameter", cmd_jacobian,
     cmd_jacobian_check_args},
    {"grad", "the gradient of the mean loss w.r.t. every parameter", cmd_grad, cmd_grad_check_args},
    {"gradcheck", "check every op's VJP and JVP against finite differences", cmd_gradcheck,
     cmd_gradcheck_check_args},
    {"saliency", "test images beside d(predicted logit)/d(input), as a PNG grid", cmd_saliency,
     cmd_saliency_check_args},
    {"filters", "a convolution layer's kernels as a PNG", cmd_filters, cmd_filters_check_args},
    {"export", "write a model as ONNX (opset 13, 17 with a layernorm), for ONNX Runtime and other tools", cmd_export,
     cmd_export_check_args},
    {"import", "convert an ONNX model (e.g. from torch.onnx.export) to a nabla model file", cmd_import,
     cmd_import_check_args},
    {"hvp", "Hessian-vector products of the mean loss w.r.t. the parameters", cmd_hvp, cmd_hvp_check_args},
    {"hessian", "the Hessian of the mean loss w.r.t. a parameter or the input", cmd_hessian, cmd_hessian_check_args},
    {"curvature", "top Hessian eigenvalues and trace of the training loss, and 2 / lambda_max", cmd_curvature,
     cmd_curvature_check_args},
    {"demo", "lecture demos: 'demo gd' (gradient descent on f(x) = 2x^2)", cmd_demo, cmd_demo_check_args},
    {"boundary", "a 2-D classifier's decision boundary with the data's points, as PNG or SVG", cmd_boundary,
     cmd_boundary_check_args},
};
const int cli_ncommands = (int)(sizeof cli_commands / sizeof cli_commands[0]);

const char *const cli_command_names[] = {"train",     "eval",     "predict", "summary", "show", "jacobian", "grad",
                                         "gradcheck", "saliency", "filters", "export", "import", "hvp", "hessian", "curvature", "demo", "boundary", NULL};

const cli_command *cli_find_command(const char *name)
{
    for (int i = 0; i < cli_ncommands; i++)
        if (!strcmp(name, cli_commands[i].name)) return &cli_commands[i];
    return NULL;
}

int cli_unknown_command(const char *name)
{
    const char *guess = cli_did_you_mean(name, cli_command_names, cli_ncommands);
    if (guess) fprintf(stderr, "nabla: unknown command '%s' (did you mean %s?)\n", name, guess);
    else fprintf(stderr, "nabla: unknown command '%s'\n", name);
    fprintf(stderr, "(see 'nabla --help' for the commands)\n");
    return 2;
}

int cli_check_args(int argc, char **argv)
{
    const cli_command *c = argc > 0 ? cli_find_command(argv[0]) : NULL;
    if (!c) return cli_unknown_command(argc > 0 ? argv[0] : "");
    return c->check(argc, argv);
}
