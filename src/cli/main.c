/* nabla: the command-line tool. One file per command (commands.c lists
 * them); this one dispatches. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: nabla <command> [options]\n\ncommands:\n");
    for (int i = 0; i < cli_ncommands; i++) fprintf(f, "  %-12s %s\n", cli_commands[i].name, cli_commands[i].help);
    fprintf(f, "\n  nabla --version      print the version\n"
               "  nabla help COMMAND   a command's options (the same as nabla COMMAND --help)\n");
}

/* nabla help [COMMAND] */
static int help(int argc, char **argv)
{
    if (argc < 3) {
        usage(stdout);
        return 0;
    }
    const cli_command *c = cli_find_command(argv[2]);
    if (!c) return cli_unknown_command(argv[2]);
    char *args[3] = {argv[2], "--help", NULL};
    return c->run(2, args);
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
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "help") || !strcmp(argv[1], "-h")) return help(argc, argv);
    const cli_command *c = cli_find_command(argv[1]);
    if (!c) return cli_unknown_command(argv[1]);
    return c->run(argc - 1, argv + 1);
}
