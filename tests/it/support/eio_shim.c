/* An I/O fault for a real process, loaded with LD_PRELOAD: while the file named by
 * EIO_SHIM_FLAG exists, every write and sync to a file whose path contains
 * EIO_SHIM_MATCH fails with EIO, as a dying disk or a lost network volume would
 * answer. Everything else (reads, sockets, logs) goes through untouched, so the
 * process under test keeps serving and can say what it sees.
 *
 * Built by the test itself with the machine's C compiler (tests/it/ingest_faults.rs).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* Whether a call on `fd` is to fail now. */
static int failing(int fd) {
    const char *flag = getenv("EIO_SHIM_FLAG");
    const char *match = getenv("EIO_SHIM_MATCH");
    if (flag == NULL || match == NULL || access(flag, F_OK) != 0) {
        return 0;
    }
    char link[64];
    char path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) {
        return 0;
    }
    path[n] = '\0';
    return strstr(path, match) != NULL;
}

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    if (failing(fd)) {
        errno = EIO;
        return -1;
    }
    return REAL(pwrite)(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    if (failing(fd)) {
        errno = EIO;
        return -1;
    }
    return REAL(pwrite64)(fd, buf, count, offset);
}

ssize_t write(int fd, const void *buf, size_t count) {
    if (failing(fd)) {
        errno = EIO;
        return -1;
    }
    return REAL(write)(fd, buf, count);
}

int fsync(int fd) {
    if (failing(fd)) {
        errno = EIO;
        return -1;
    }
    return REAL(fsync)(fd);
}

int fdatasync(int fd) {
    if (failing(fd)) {
        errno = EIO;
        return -1;
    }
    return REAL(fdatasync)(fd);
}
