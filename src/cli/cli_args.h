/* Parse-only entry points of the CLI's commands, for the argument fuzzer
 * (fuzz/fuzz_cli_args.c) and tests: they parse and validate the arguments
 * exactly as the command does, print the same usage errors, and run
 * nothing (no file is read or written). Each returns -1 if the arguments are
 * valid, else the exit code the command would return (0 after --help, 2
 * after a usage error). */
#ifndef NB_CLI_ARGS_H
#define NB_CLI_ARGS_H

/* argv[0] is the command's name ("train", "jacobian", ...); an unknown
 * command returns 2 with nabla's "unknown command" message. */
int cli_check_args(int argc, char **argv);
/* The commands' names, for the fuzzer to pick one (NULL-terminated). */
extern const char *const cli_command_names[];

int cmd_train_check_args(int argc, char **argv);
int cmd_export_check_args(int argc, char **argv);
int cmd_import_check_args(int argc, char **argv);
int cmd_eval_check_args(int argc, char **argv);
int cmd_predict_check_args(int argc, char **argv);
int cmd_summary_check_args(int argc, char **argv);
int cmd_show_check_args(int argc, char **argv);
int cmd_jacobian_check_args(int argc, char **argv);
int cmd_grad_check_args(int argc, char **argv);
int cmd_gradcheck_check_args(int argc, char **argv);
int cmd_saliency_check_args(int argc, char **argv);
int cmd_filters_check_args(int argc, char **argv);
int cmd_demo_check_args(int argc, char **argv);
int cmd_hvp_check_args(int argc, char **argv);
int cmd_hessian_check_args(int argc, char **argv);
int cmd_curvature_check_args(int argc, char **argv);
int cmd_boundary_check_args(int argc, char **argv);

#endif
