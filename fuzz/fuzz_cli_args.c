/* libFuzzer target: the CLI's argument parsing ('nabla train' options and
 * their validation), without running anything. The input is split on NUL
 * bytes into argv after argv[0] = "train". */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/cli/cli_args.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ARGS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = "train";
    for (size_t i = 0; i <= size && argc <= MAX_ARGS;) {
        argv[argc++] = buf + i;
        i += strlen(buf + i) + 1;
    }
    argv[argc] = NULL;
    int r = cmd_train_check_args(argc, argv);
    if (r != -1 && r != 0 && r != 2) abort();
    free(buf);
    return 0;
}
