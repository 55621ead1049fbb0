/* Helpers of the reliability tests (test_bad_inputs.c, test_crash_safety.c):
 * temporary directories, small files, small IDX data sets, and running the
 * CLI in a child process with its output captured. Header-only (static), so
 * each test program includes what it uses. */
#ifndef NB_TEST_UTIL_H
#define NB_TEST_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nabla.h"

#define NB_CLI NB_BINARY_DIR "/nabla"

/* snprintf that fails loudly instead of truncating (and keeps gcc's
 * -Wformat-truncation quiet: the format is not a literal here). */
static inline void tu_fmt(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    if (r < 0 || (size_t)r >= n) {
        fprintf(stderr, "tu_fmt: '%s' truncated\n", fmt);
        exit(1);
    }
}

/* A fresh directory under the build directory (mode 0755, so that a child
 * that dropped root can read it). */
static inline void tu_mkdtemp(char *buf, size_t n, const char *tag)
{
    tu_fmt(buf, n, "%s/tmp-%s-XXXXXX", NB_BINARY_DIR, tag);
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        exit(1);
    }
    chmod(buf, 0755);
}

/* Asserts that text contains want, printing both when it does not (and
 * always with NB_SHOW set). Needs <cmocka.h> where it is used. */
#define assert_has(text, want)                                                                                        \
    do {                                                                                                              \
        const char *t_ = (text), *w_ = (want);                                                                        \
        if (!strstr(t_, w_) || getenv("NB_SHOW")) fprintf(stderr, "expected:\n  %s\ngot:\n  %s\n", w_, t_);           \
        assert_non_null(strstr(t_, w_));                                                                              \
    } while (0)

/* dir/name in one of 8 rotating buffers (a call may hold 8 paths at once). */
static inline const char *tu_path_in(const char *dir, const char *name)
{
    static char p[8][1200];
    static int k;
    k = (k + 1) % 8;
    tu_fmt(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static inline void tu_rm_rf(const char *dir)
{
    char cmd[1200];
    tu_fmt(cmd, sizeof cmd, "chmod -R u+w '%s' 2>/dev/null; rm -rf '%s'", dir, dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

static inline int tu_write(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

/* The whole file, NUL-terminated; *n its length. NULL if unreadable. */
static inline char *tu_read(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    char *b = malloc(cap);
    for (;;) {
        if (len + 1 >= cap) b = realloc(b, cap *= 2);
        size_t r = fread(b + len, 1, cap - len - 1, f);
        if (r == 0) break;
        len += r;
    }
    fclose(f);
    b[len] = '\0';
    if (n) *n = len;
    return b;
}

static inline void tu_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* An IDX u8 file of the given dims and bytes. */
static inline int tu_write_idx_u8(const char *path, int rank, const uint32_t *dims, const unsigned char *data)
{
    size_t count = 1;
    for (int i = 0; i < rank; i++) count *= dims[i];
    size_t n = 4 + 4 * (size_t)rank + count;
    unsigned char *b = malloc(n);
    b[0] = b[1] = 0, b[2] = 0x08, b[3] = (unsigned char)rank;
    for (int i = 0; i < rank; i++) tu_be32(b + 4 + 4 * i, dims[i]);
    memcpy(b + 4 + 4 * rank, data, count);
    int r = tu_write(path, b, n);
    free(b);
    return r;
}

/* A small MNIST-like data set in dir: split "train" (and "test"), nimg
 * images of h x w pixels drawn from a fixed generator, labels 0..classes-1
 * (label_bias is added to every label, to make bad ones). nlab labels. */
static inline void tu_write_dataset(const char *dir, const char *split, int nimg, int nlab, int h, int w,
                                    int classes, int label_bias)
{
    char path[1100];
    unsigned char *img = malloc((size_t)nimg * (size_t)(h * w)), *lab = malloc((size_t)nlab);
    uint32_t state = 12345;
    for (int i = 0; i < nlab; i++) lab[i] = (unsigned char)(i % classes + label_bias);
    for (int i = 0; i < nimg; i++)
        for (int p = 0; p < h * w; p++) {
            state = state * 1664525u + 1013904223u;
            /* class-dependent blobs plus noise, so a model can learn */
            int c = i % classes;
            int v = (int)(state >> 25) + ((p % classes) == c ? 120 : 0);
            img[(size_t)i * (size_t)(h * w) + (size_t)p] = (unsigned char)(v > 255 ? 255 : v);
        }
    uint32_t idims[3] = {(uint32_t)nimg, (uint32_t)h, (uint32_t)w}, ldims[1] = {(uint32_t)nlab};
    tu_fmt(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, split);
    tu_write_idx_u8(path, 3, idims, img);
    tu_fmt(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, split);
    tu_write_idx_u8(path, 1, ldims, lab);
    free(img);
    free(lab);
}

typedef struct tu_run_opts {
    long long fsize_limit; /* RLIMIT_FSIZE in bytes if > 0 (SIGXFSZ ignored) */
    int drop_root;         /* run as nobody when started as root */
} tu_run_opts;

/* Runs the CLI with args (NULL-terminated, without argv[0]); stdout and
 * stderr go to outpath. Returns the exit status, or 128 + signal. */
static inline int tu_run_cli_to(const char *const *args, const char *outpath, const tu_run_opts *o)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)NB_CLI;
    for (int i = 0; args[i] && argc < 63; i++) argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open(outpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) _exit(126);
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
        setenv("NB_NO_PROGRESS", "1", 1);
        if (o && o->fsize_limit > 0) {
            struct rlimit rl = {(rlim_t)o->fsize_limit, (rlim_t)o->fsize_limit};
            signal(SIGXFSZ, SIG_IGN);
            if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(125);
        }
        if (o && o->drop_root && geteuid() == 0) {
            if (setgid(65534) != 0 || setuid(65534) != 0) _exit(124);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* As tu_run_cli_to, into a buffer (*out, malloc'ed, NUL-terminated). */
static inline int tu_run_cli(const char *const *args, char **out, const tu_run_opts *o)
{
    char path[1100];
    tu_fmt(path, sizeof path, "%s/tmp-cli-out-%ld.txt", NB_BINARY_DIR, (long)getpid());
    int rc = tu_run_cli_to(args, path, o);
    char *s = tu_read(path, NULL);
    unlink(path);
    if (out) *out = s ? s : strdup("");
    else free(s);
    return rc;
}

#endif
