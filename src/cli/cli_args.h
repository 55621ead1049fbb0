/* Parse-only entry points of the CLI's commands, for the argument fuzzer
 * (fuzz/fuzz_cli_args.c) and tests: they parse and validate the arguments
 * exactly as the command does, print the same usage errors, and run
 * nothing (no file is read or written). */
#ifndef NB_CLI_ARGS_H
#define NB_CLI_ARGS_H

/* 'nabla train' arguments (argv[0] is "train"): -1 if valid, else the exit
 * code the command would return (0 after --help, 2 after a usage error). */
int cmd_train_check_args(int argc, char **argv);

#endif
