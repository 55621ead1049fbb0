/* libFuzzer target: the argument parsing of every CLI command (the shared
 * option tables and each command's checks between options), without
 * running anything. The first byte picks the command (cli_command_names,
 * modulo their count); the rest is split on NUL bytes into its argv after
 * argv[0] = the command's name. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/cli/cli_args.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ARGS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int ncommands = 0;
    while (cli_command_names[ncommands]) ncommands++;
    const char *cmd = cli_command_names[data[0] % ncommands];
    data++, size--;
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = (char *)cmd;
    for (size_t i = 0; size && i <= size && argc <= MAX_ARGS;) {
        argv[argc++] = buf + i;
        i += strlen(buf + i) + 1;
    }
    argv[argc] = NULL;
    int r = cli_check_args(argc, argv);
    if (r != -1 && r != 0 && r != 2) abort();
    free(buf);
    return 0;
}
