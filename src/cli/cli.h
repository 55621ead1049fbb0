/* Shared by the CLI's command files. */
#ifndef NB_CLI_H
#define NB_CLI_H

#include "nabla.h"

typedef struct {
    const char *name, *help;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
} cli_command;

int cmd_gradcheck(int argc, char **argv);

#endif
