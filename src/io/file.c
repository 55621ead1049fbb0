/* Whole-file reads, and atomic writes: a temporary file in the same
 * directory, fsync, rename over the target, fsync of the directory, so that a
 * crash leaves either the old file or the new one, never half of one. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "io_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

/* A hint after strerror for the errors people most often meet. */
static const char *errno_hint(int e)
{
    if (e == ENOENT) return " (does the directory exist?)";
    if (e == ENOSPC) return " (is the disk full?)";
    return "";
}

/* The size to allocate first for an open file (stat's size + 1, to see EOF
 * without growing; 4096 for pipes), refusing files over max_bytes. */
static nb_status first_capacity(const char *path, int fd, size_t max_bytes, size_t *cap)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        return nb_fail(NB_ERR_IO, "cannot stat '%s': %s", path, strerror(e));
    }
    if (S_ISDIR(sb.st_mode)) return nb_fail(NB_ERR_IO, "cannot read '%s': it is a directory", path);
    *cap = 4096;
    if (!S_ISREG(sb.st_mode) || sb.st_size <= 0) return NB_OK;
    if ((uint64_t)sb.st_size >= SIZE_MAX - 1)
        return nb_fail(NB_ERR_TOO_LARGE, "cannot read '%s': the file is too large for memory", path);
    if (max_bytes && (uint64_t)sb.st_size > max_bytes)
        return nb_fail(NB_ERR_TOO_LARGE, "cannot read '%s': %lld bytes is more than the limit of %zu bytes", path,
                       (long long)sb.st_size, max_bytes);
    *cap = (size_t)sb.st_size + 1;
    return NB_OK;
}

/* Reads fd to its end into *buf (of *cap bytes, doubled as needed: the file
 * may change while it is read); stops past max_bytes. */
static nb_status read_to_end(const char *path, int fd, size_t max_bytes, unsigned char **buf, size_t *cap, size_t *n)
{
    *n = 0;
    for (;;) {
        if (*n == *cap) {
            if (max_bytes && *n > max_bytes) return NB_OK;
            size_t ncap = *cap < SIZE_MAX / 2 ? *cap * 2 : SIZE_MAX;
            if (ncap == *cap) return nb_fail(NB_ERR_TOO_LARGE, "cannot read '%s': the file is too large for memory", path);
            unsigned char *nbuf = realloc(*buf, ncap);
            if (!nbuf) return nb_fail(NB_ERR_NOMEM, "cannot read '%s': out of memory for %zu bytes", path, ncap);
            *buf = nbuf;
            *cap = ncap;
        }
        ssize_t r = read(fd, *buf + *n, *cap - *n);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            return nb_fail(NB_ERR_IO, "cannot read '%s': %s", path, strerror(e));
        }
        if (r == 0) return NB_OK;
        *n += (size_t)r;
    }
}

nb_status nb_read_file(const char *path, size_t max_bytes, void **data, size_t *len)
{
    if (data) *data = NULL;
    if (len) *len = 0;
    if (!path || !data || !len) return nb_fail(NB_ERR_ARG, "read_file: NULL argument");
    int fd;
    do {
        fd = open(path, O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        int e = errno;
        return nb_fail(NB_ERR_IO, "cannot open '%s': %s", path, strerror(e));
    }
    size_t cap = 0, n = 0;
    unsigned char *buf = NULL;
    nb_status s = first_capacity(path, fd, max_bytes, &cap);
    if (!s && !(buf = malloc(cap))) s = nb_fail(NB_ERR_NOMEM, "cannot read '%s': out of memory for %zu bytes", path, cap);
    if (!s) s = read_to_end(path, fd, max_bytes, &buf, &cap, &n);
    close(fd);
    if (!s && max_bytes && n > max_bytes)
        s = nb_fail(NB_ERR_TOO_LARGE, "cannot read '%s': more than the limit of %zu bytes", path, max_bytes);
    if (s) {
        free(buf);
        return s;
    }
    *data = buf;
    *len = n;
    return NB_OK;
}

static int write_all(int fd, const unsigned char *p, size_t len)
{
    while (len > 0) {
        size_t chunk = len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len;
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* fsync of the directory holding path, so that the rename is durable. Some
 * file systems cannot fsync a directory (EINVAL): that is not an error. */
static int fsync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash) {
        dir = malloc(2);
        if (!dir) return -1;
        strcpy(dir, ".");
    } else {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        dir = malloc(n + 1);
        if (!dir) return -1;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    free(dir);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0 && (e == EINVAL || e == EROFS || e == EBADF)) rc = 0;
    errno = e;
    return rc;
}

nb_status nb_write_file_atomic(const char *path, const void *data, size_t len)
{
    if (!path || (!data && len > 0)) return nb_fail(NB_ERR_ARG, "write_file: NULL argument");
    if (!*path) return nb_fail(NB_ERR_ARG, "write_file: empty path");
    size_t plen = strlen(path);
    size_t tcap = plen + 32;
    char *tmp = malloc(tcap);
    if (!tmp) return nb_fail(NB_ERR_NOMEM, "cannot write '%s': out of memory", path);
    snprintf(tmp, tcap, "%s.tmp.%ld", path, (long)getpid());

    int fd;
    do {
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return nb_fail(NB_ERR_IO, "cannot write '%s': %s%s", path, strerror(e), errno_hint(e));
    }
    const char *step = NULL;
    if (write_all(fd, data, len) != 0)
        step = "";
    else if (fsync(fd) != 0 && errno != EINVAL)
        step = " (fsync)";
    int e = errno;
    if (close(fd) != 0 && !step) {
        step = " (close)";
        e = errno;
    }
    if (!step && rename(tmp, path) != 0) {
        step = " (rename)";
        e = errno;
    }
    if (step) {
        unlink(tmp);
        free(tmp);
        return nb_fail(NB_ERR_IO, "cannot write '%s'%s: %s%s", path, step, strerror(e), errno_hint(e));
    }
    free(tmp);
    if (fsync_parent_dir(path) != 0) {
        e = errno;
        return nb_fail(NB_ERR_IO, "wrote '%s' but could not sync its directory: %s", path, strerror(e));
    }
    return NB_OK;
}
