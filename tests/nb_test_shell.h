/* Shell helpers of the CLI tests (tests/f32/test_cli.c, test_cli_second.c,
 * tests/mpi/test_mpi.c): run a command line through the shell, keep its
 * output (stdout and stderr merged) in `out`, and look for text in it.
 * Header-only (static): include it after <cmocka.h>, once per program. */
#ifndef NB_TEST_SHELL_H
#define NB_TEST_SHELL_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* The output of the last run(), NUL-terminated (cut at 64 KiB). */
static char out[1 << 16];

/* Runs a shell command (printf-style) with stderr merged into stdout, its
 * output into out; returns its exit code (-1 when it did not exit). */
static inline int run(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
static inline int run(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    const int len = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    assert_true(len >= 0 && (size_t)len + sizeof " 2>&1" <= sizeof cmd); /* never a cut command */
    strcat(cmd, " 2>&1");
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    const size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    const int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Whether out holds needle; prints both when it does not. */
static inline int contains(const char *needle)
{
    if (strstr(out, needle)) return 1;
    print_error("expected '%s' in the output:\n%s\n", needle, out);
    return 0;
}

/* How many times needle stands in out. */
static inline int count_of(const char *needle)
{
    int n = 0;
    for (const char *p = strstr(out, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

/* The whole file, malloc'ed (with one spare byte), its length in *len;
 * NULL when it cannot be read. */
static inline unsigned char *slurp(const char *path, size_t *len)
{
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    unsigned char *b = n >= 0 && fseek(f, 0, SEEK_SET) == 0 ? malloc((size_t)n + 1) : NULL;
    if (b) *len = fread(b, 1, (size_t)n, f);
    fclose(f);
    return b;
}

#endif
